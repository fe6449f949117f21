"""Summary statistics against numpy and the statistics module, and the sketch's accuracy bound."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvc.metrics.stats import ACCURACY, Aggregate, Sketch, exact

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=1, max_size=300)


@given(samples)
@settings(max_examples=200, deadline=None)
def test_exact_summary_matches_numpy_and_statistics(values: list[float]) -> None:
    s = exact(values, seconds=10.0)
    array = np.array(values)
    assert s.count == len(values)
    assert s.mean == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-6)
    assert (s.min, s.max) == (min(values), max(values))
    for name, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert getattr(s, name) == pytest.approx(np.percentile(array, q), rel=1e-9, abs=1e-6)
    if len(values) > 1:
        assert s.stdev == pytest.approx(statistics.stdev(values), rel=1e-6, abs=1e-6)
    else:
        assert s.stdev is None
    assert s.per_second == pytest.approx(len(values) / 10.0)


@given(st.lists(samples, min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_merged_aggregates_equal_the_aggregate_of_everything(parts: list[list[float]]) -> None:
    merged = Aggregate()
    for part in parts:
        merged.merge(Aggregate.of(part))
    every = [v for part in parts for v in part]
    whole = exact(every)
    rolled = merged.summary()
    assert rolled.count == whole.count
    assert rolled.mean == pytest.approx(whole.mean, rel=1e-9, abs=1e-6)
    assert (rolled.min, rolled.max) == (whole.min, whole.max)
    if whole.stdev is not None:
        assert rolled.stdev == pytest.approx(whole.stdev, rel=1e-6, abs=1e-5)
    assert Sketch.decode(merged.sketch.encode()) == merged.sketch


@given(
    st.lists(st.floats(min_value=1e-3, max_value=1e6), min_size=1, max_size=500),
    st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
@settings(max_examples=200, deadline=None)
def test_sketch_quantiles_are_within_their_relative_accuracy(values: list[float], q: float) -> None:
    sketch = Sketch()
    for value in values:
        sketch.add(value)
    ordered = sorted(values)
    truth = ordered[int(q * (len(ordered) - 1))]  # the value at the rank the sketch reads
    assert sketch.quantile(q) == pytest.approx(truth, rel=ACCURACY * 1.0001)


def test_sketch_orders_negative_zero_and_positive_values() -> None:
    sketch = Sketch()
    for value in (-100.0, -1.0, 0.0, 0.0, 1.0, 100.0):
        sketch.add(value)
    assert sketch.quantile(0.0) == pytest.approx(-100.0, rel=ACCURACY)
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(1.0) == pytest.approx(100.0, rel=ACCURACY)
    assert Sketch().quantile(0.5) is None
