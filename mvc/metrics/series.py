"""A metric over time: the window cut into equal buckets, one statistic per bucket.

``bucketed(source, query, start, end, step, "p99")`` asks the source for the summary of each
bucket ``[start + k*step, start + (k+1)*step)`` (the last one ends at ``end``) and keeps the
statistic, None where a bucket has no points. It reads only through the ``MetricSource``
protocol, so the store's database and a Prometheus server draw the same way. Pure: the
source does the reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mvc.jsonshape import JsonShaped
from mvc.metrics.model import STATISTICS, MetricSource, Query

#: At most this many buckets per series (a finer --step is refused: the picture could not show it).
MAX_BUCKETS = 2000


@dataclass(frozen=True)
class Bucket(JsonShaped):
    start: float  # epoch seconds, inclusive
    end: float  # exclusive
    count: int
    value: float | None  # the statistic; None when the bucket is empty

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2


def edges(start: float, end: float, step: float) -> list[tuple[float, float]]:
    if step <= 0 or end <= start:
        raise ValueError(f"no buckets from {start} to {end} by {step}")
    n = math.ceil((end - start) / step - 1e-9)
    if n > MAX_BUCKETS:
        raise ValueError(f"{n} buckets is too many (at most {MAX_BUCKETS}): take a longer step")
    return [(start + k * step, min(start + (k + 1) * step, end)) for k in range(n)]


def bucketed(
    source: MetricSource, query: Query, start: float, end: float, step: float, statistic: str
) -> list[Bucket]:
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; one of {', '.join(STATISTICS)}")
    out = []
    for low, high in edges(start, end, step):
        summary = source.summary(replace(query, since=low, until=high))
        value = summary.statistic(statistic) if summary.count else None
        out.append(Bucket(low, high, summary.count, value))
    return out
