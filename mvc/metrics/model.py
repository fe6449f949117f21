"""Metric points and the one protocol every metric source implements (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mvc.ids import ObjectId

#: Statistics a source summarises a series with. ``mean`` of a 0/1 metric (``error=1``) is its
#: rate; ``per_second`` is count over the window.
STATISTICS = ("count", "mean", "stdev", "min", "max", "p50", "p90", "p95", "p99", "per_second")


@dataclass(frozen=True)
class Source:
    """Where a point was measured: the serving environment ``explain`` shows beside the diff."""

    host: str
    process: str  # e.g. "1234" or "gateway-7f9c/1234"
    environment: tuple[tuple[str, str], ...] = ()  # ("python", "3.11.7"), ("torch", "2.13.0")...


@dataclass(frozen=True)
class Point:
    model: str
    version: ObjectId
    name: str  # metric name: latency_ms, error, accuracy ...
    value: float
    at: float  # seconds since the epoch, UTC
    channel: str | None = None
    arm: str | None = None  # an arm label: stable, canary, green, blue, shadow, or an A/B name
    source: Source | None = None


@dataclass(frozen=True)
class Query:
    """One series: a metric of a model, narrowed to a channel, arm and/or version, in a window."""

    model: str
    name: str
    channel: str | None = None
    arm: str | None = None
    version: ObjectId | None = None
    since: float | None = None  # inclusive, epoch seconds
    until: float | None = None  # exclusive


@dataclass(frozen=True)
class Summary:
    count: int
    mean: float | None = None
    stdev: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    per_second: float | None = None

    def statistic(self, name: str) -> float | None:
        if name not in STATISTICS:
            raise ValueError(f"unknown statistic {name!r}; one of {', '.join(STATISTICS)}")
        value = getattr(self, name)
        return None if value is None else float(value)


class MetricSource(Protocol):
    """What guards, ``metrics compare`` and gates read. Implemented by the store's SQLite
    database (``mvc/metrics/sqlite.py``) and by a Prometheus server (``prometheus.py``)."""

    def summary(self, query: Query) -> Summary:
        """Count, mean, spread and percentiles of the series (``Summary(0)`` when empty)."""
        ...

    def values(self, query: Query, limit: int | None = None) -> Sequence[float]:
        """The raw values (for statistical tests); a source that cannot give them raises
        ``NotImplementedError`` and callers fall back to the summary."""
        ...
