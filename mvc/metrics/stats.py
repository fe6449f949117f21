"""Summary statistics of a series, exact or from mergeable partial aggregates (pure: no I/O).

Two ways to a ``Summary``:

- ``exact(values, seconds)``: from the values themselves. Percentiles interpolate linearly
  between the two nearest ranks (numpy's default ``linear`` method, ``statistics.quantiles``'
  ``inclusive`` method); ``stdev`` is the sample standard deviation (n - 1), as
  ``statistics.stdev``.
- ``Aggregate``: count, sum, M2 (the sum of squared deviations from the mean), min, max and a
  ``Sketch`` of the values, merged bucket by bucket (Chan et al.'s parallel variance). Count,
  mean, stdev, min and max stay exact; percentiles come from the sketch.

The ``Sketch`` is DDSketch's log-bucket histogram (Masson, Rim and Lee, VLDB 2019): a value
``v > 0`` goes to bucket ``ceil(log_gamma(v))`` with ``gamma = (1 + a) / (1 - a)``, and a bucket
is read back as the value ``2 gamma^k / (gamma + 1)``, within a relative error ``a`` of every
value it holds (``a = 1%``). Negative values mirror the positive buckets; zero (and anything
closer to zero than ``1e-9``) has its own count. Sketches merge by adding bucket counts, so a
window's sketch is the sum of its buckets' sketches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mvc.metrics.model import Summary

ACCURACY = 0.01
_GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_TINY = 1e-9
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99))


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, by linear interpolation between closest ranks."""
    if not ordered:
        raise ValueError("quantile of no values")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def _rate(count: int, seconds: float | None) -> float | None:
    return count / seconds if seconds and seconds > 0 else None


def exact(values: Iterable[float], seconds: float | None = None) -> Summary:
    """The summary of ``values`` computed from all of them; ``seconds`` is the window's length
    (``per_second`` is None without it)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return Summary(0, per_second=_rate(0, seconds))
    mean = math.fsum(ordered) / n
    stdev = math.sqrt(math.fsum((v - mean) ** 2 for v in ordered) / (n - 1)) if n > 1 else None
    ranks = {name: quantile(ordered, q) for name, q in PERCENTILES}
    return Summary(
        n,
        mean=mean,
        stdev=stdev,
        min=ordered[0],
        max=ordered[-1],
        per_second=_rate(n, seconds),
        **ranks,
    )


def _key(value: float) -> int:
    return math.ceil(math.log(value) / _LOG_GAMMA)


def _estimate(key: int) -> float:
    return 2.0 * _GAMMA**key / (_GAMMA + 1.0)


@dataclass
class Sketch:
    """A mergeable log-bucket histogram (see the module docstring)."""

    zero: int = 0
    positive: dict[int, int] = field(default_factory=dict)
    negative: dict[int, int] = field(default_factory=dict)

    def add(self, value: float) -> None:
        if value > _TINY:
            key = _key(value)
            self.positive[key] = self.positive.get(key, 0) + 1
        elif value < -_TINY:
            key = _key(-value)
            self.negative[key] = self.negative.get(key, 0) + 1
        else:
            self.zero += 1

    def merge(self, other: Sketch) -> None:
        self.zero += other.zero
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count

    def count(self) -> int:
        return self.zero + sum(self.positive.values()) + sum(self.negative.values())

    def quantile(self, q: float) -> float | None:
        """The value at rank ``q * (n - 1)``, within the sketch's relative accuracy."""
        total = self.count()
        if total == 0:
            return None
        rank = q * (total - 1)
        seen = 0
        for key in sorted(self.negative, reverse=True):
            seen += self.negative[key]
            if seen > rank:
                return -_estimate(key)
        seen += self.zero
        if seen > rank:
            return 0.0
        for key in sorted(self.positive):
            seen += self.positive[key]
            if seen > rank:
                return _estimate(key)
        return _estimate(max(self.positive)) if self.positive else 0.0

    def encode(self) -> str:
        return json.dumps(
            [self.zero, sorted(self.positive.items()), sorted(self.negative.items())],
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> Sketch:
        zero, positive, negative = json.loads(text)
        return cls(
            int(zero), {int(k): int(c) for k, c in positive}, {int(k): int(c) for k, c in negative}
        )


@dataclass
class Aggregate:
    """Mergeable partial statistics of a set of values."""

    count: int = 0
    total: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    sketch: Sketch = field(default_factory=Sketch)

    @classmethod
    def of(cls, values: Sequence[float]) -> Aggregate:
        aggregate = cls()
        if not values:
            return aggregate
        n = len(values)
        total = math.fsum(values)
        mean = total / n
        aggregate.count = n
        aggregate.total = total
        aggregate.m2 = math.fsum((v - mean) ** 2 for v in values)
        aggregate.low = min(values)
        aggregate.high = max(values)
        for value in values:
            aggregate.sketch.add(value)
        return aggregate

    def merge(self, other: Aggregate) -> None:
        self.merge_parts(other.count, other.total, other.m2, other.low, other.high)
        self.sketch.merge(other.sketch)

    def merge_parts(self, count: int, total: float, m2: float, low: float, high: float) -> None:
        """Merge the scalar parts of another aggregate (its sketch is merged separately)."""
        if count == 0:
            return
        if self.count == 0:
            self.count, self.total, self.m2, self.low, self.high = count, total, m2, low, high
            return
        n = self.count + count
        delta = total / count - self.total / self.count
        self.m2 += m2 + delta * delta * self.count * count / n
        self.count = n
        self.total += total
        self.low = min(self.low, low)
        self.high = max(self.high, high)

    def summary(self, seconds: float | None = None) -> Summary:
        if self.count == 0:
            return Summary(0, per_second=_rate(0, seconds))

        def clamp(value: float | None) -> float | None:
            return None if value is None else min(max(value, self.low), self.high)

        ranks = {name: clamp(self.sketch.quantile(q)) for name, q in PERCENTILES}
        return Summary(
            self.count,
            mean=self.total / self.count,
            stdev=math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else None,
            min=self.low,
            max=self.high,
            per_second=_rate(self.count, seconds),
            **ranks,
        )
