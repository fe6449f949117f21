"""metrics compare's statistics, checked against scipy on known samples."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import scipy.stats

from mvc.metrics.compare import (
    FISHER,
    TWO_PROPORTION,
    WELCH,
    compare_summaries,
    compare_values,
    is_rate,
)
from mvc.metrics.model import Summary

# Known samples: Welch's classic example values (unequal sizes and spreads).
A = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
B = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


def test_welch_on_raw_values_equals_scipy() -> None:
    got = compare_values("latency_ms", ("canary", A), ("stable", B), min_samples=10)
    expected = scipy.stats.ttest_ind(A, B, equal_var=False)
    ci = expected.confidence_interval(0.95)
    assert got.test == WELCH and got.kind == "values"
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert got.p_value == pytest.approx(0.021, abs=5e-4)  # Wikipedia, "Welch's t-test", example 1
    assert (got.ci_low, got.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert got.difference == pytest.approx(np.mean(A) - np.mean(B))
    assert got.relative == pytest.approx((np.mean(A) - np.mean(B)) / np.mean(B))
    assert got.a.stdev == pytest.approx(np.std(A, ddof=1))
    assert got.significant is True


def test_welch_from_summaries_gives_the_same_numbers() -> None:
    """A Prometheus source gives summaries only; the test and its interval must not change."""

    def summary(values: list[float]) -> Summary:
        return Summary(
            len(values), mean=float(np.mean(values)), stdev=float(np.std(values, ddof=1))
        )

    raw = compare_values("latency_ms", ("a", A), ("b", B), min_samples=10, confidence=0.9)
    got = compare_summaries(
        "latency_ms",
        ("a", summary(A)),
        ("b", summary(B)),
        kind="values",
        min_samples=10,
        confidence=0.9,
    )
    assert got.p_value == pytest.approx(raw.p_value, rel=1e-9)
    assert (got.ci_low, got.ci_high) == (pytest.approx(raw.ci_low), pytest.approx(raw.ci_high))
    assert got.confidence == 0.9


def test_welch_on_a_large_seeded_sample_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    xs, ys = list(rng.normal(212, 30, 5000)), list(rng.normal(210, 45, 3000))
    got = compare_values("latency_ms", ("a", xs), ("b", ys))
    expected = scipy.stats.ttest_ind(xs, ys, equal_var=False)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert got.ci_low < got.difference < got.ci_high  # type: ignore[operator]


def test_two_proportions_equal_scipy_chi_square_and_the_z_formula() -> None:
    # canary: 30 errors in 1000; stable: 18 errors in 1200
    canary = [1.0] * 30 + [0.0] * 970
    stable = [1.0] * 18 + [0.0] * 1182
    got = compare_values("error", ("canary", canary), ("stable", stable))
    assert got.kind == "rate" and got.test == TWO_PROPORTION
    table = [[30, 970], [18, 1182]]
    chi2 = scipy.stats.chi2_contingency(table, correction=False)
    assert got.p_value == pytest.approx(chi2.pvalue, rel=1e-9)  # the z-test is the 2x2 chi-square
    pa, pb = 30 / 1000, 18 / 1200
    se = math.sqrt(pa * (1 - pa) / 1000 + pb * (1 - pb) / 1200)
    z = scipy.stats.norm.ppf(0.975)
    assert got.difference == pytest.approx(pa - pb)
    assert (got.ci_low, got.ci_high) == (
        pytest.approx(pa - pb - z * se),
        pytest.approx(pa - pb + z * se),
    )
    assert got.relative == pytest.approx((pa - pb) / pb)
    assert got.significant is True


def test_rates_from_summaries_use_the_same_test() -> None:
    got = compare_summaries(
        "error", ("a", Summary(1000, mean=0.03)), ("b", Summary(1200, mean=0.015)), kind="rate"
    )
    raw = compare_values("error", ("a", [1.0] * 30 + [0.0] * 970), ("b", [1.0] * 18 + [0.0] * 1182))
    assert (got.p_value, got.ci_low, got.ci_high) == (
        pytest.approx(raw.p_value),
        pytest.approx(raw.ci_low),
        pytest.approx(raw.ci_high),
    )


def test_rare_events_use_fishers_exact_test() -> None:
    canary = [1.0] * 3 + [0.0] * 47
    stable = [0.0] * 60
    got = compare_values("error", ("canary", canary), ("stable", stable))
    assert got.test == FISHER
    assert got.p_value == pytest.approx(scipy.stats.fisher_exact([[3, 47], [0, 60]]).pvalue)
    assert "Fisher" in (got.note or "")


def test_too_few_samples_is_said_plainly_and_decides_nothing() -> None:
    got = compare_values("latency_ms", ("canary", A[:5]), ("stable", B), min_samples=10)
    assert not got.decided and got.p_value is None and got.ci_low is None
    assert got.note == (
        "too few samples to decide: canary has 5; at least 10 on each side are needed"
    )
    empty = compare_values("error", ("canary", []), ("stable", []), kind="rate")
    assert not empty.decided and "canary has 0, stable has 0" in (empty.note or "")


def test_summaries_without_spread_cannot_be_welch_tested() -> None:
    got = compare_summaries(
        "latency_ms", ("a", Summary(100, mean=1.0)), ("b", Summary(100, mean=2.0)), kind="values"
    )
    assert not got.decided and "standard deviation" in (got.note or "")


def test_identical_constant_samples() -> None:
    got = compare_values("latency_ms", ("a", [5.0] * 30), ("b", [5.0] * 30))
    assert (got.p_value, got.difference, got.significant) == (1.0, 0.0, False)
    none = compare_values("error", ("a", [0.0] * 30), ("b", [0.0] * 40))
    assert (none.p_value, none.difference, none.relative) == (1.0, 0.0, None)


def test_is_rate() -> None:
    assert is_rate([0.0, 1.0, 1.0]) and not is_rate([0.0, 0.5]) and not is_rate([])


def test_without_scipy_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from mvc.errors import MvcError

    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    with pytest.raises(MvcError, match="needs scipy") as caught:
        compare_values("latency_ms", ("a", A), ("b", B), min_samples=10)
    assert caught.value.hint == "pip install 'mvc[stats]'  (or: pip install scipy)"
