"""Is A different from B, per metric, and how sure are we? (pure: values in, numbers out).

Two tests, chosen by the metric's kind, both computed by scipy (the optional extra ``stats``):

- **per-request values** (latency_ms, tokens …): Welch's t-test, which does not assume equal
  variances. With raw values, ``scipy.stats.ttest_ind(a, b, equal_var=False)`` gives the
  p-value and its ``confidence_interval``; from summaries only (a Prometheus source),
  ``ttest_ind_from_stats`` gives the p-value and the interval is the difference ± the Student
  t quantile (``scipy.stats.t.ppf``) at the Welch–Satterthwaite degrees of freedom times the
  standard error, which is the same interval.
- **rates** (a 0/1 metric such as ``error``, whose mean is its rate): the two-proportion z-test
  (pooled standard error; p-value from ``scipy.stats.norm``), the Wald interval of the
  difference (unpooled standard error); when an expected cell count is under 5 the normal
  approximation is poor, so the p-value is Fisher's exact test (``scipy.stats.fisher_exact``).

The difference is A − B and the relative difference (A − B) / |B|: B is the baseline (put the
stable arm, or "before", second). Too few samples on either side (``min_samples``), or a
source that gives no spread for a Welch test, make a comparison *undecided*: its numbers are
None and ``note`` says why, plainly. Nothing here is a home-made distribution table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mvc.errors import MvcError
from mvc.jsonshape import JsonShaped
from mvc.metrics.model import Summary

WELCH = "welch"
TWO_PROPORTION = "two-proportion"
FISHER = "fisher-exact"
KINDS = ("values", "rate")
DEFAULT_CONFIDENCE = 0.95
DEFAULT_MIN_SAMPLES = 20
#: Below this expected count in a cell of the 2x2 table, the z-test's p-value gives way to Fisher's.
MIN_EXPECTED = 5.0


def stats() -> Any:
    """``scipy.stats``, or an error saying how to install it."""
    try:
        import scipy.stats
    except ImportError as exc:
        raise MvcError(
            "metrics compare needs scipy for its statistical tests, and it is not installed",
            hint="pip install 'mvc[stats]'  (or: pip install scipy)",
        ) from exc
    return scipy.stats


@dataclass(frozen=True)
class Side(JsonShaped):
    """One side's numbers: how many samples, their mean (a rate for a 0/1 metric), spread."""

    label: str
    n: int
    mean: float | None
    stdev: float | None = None


@dataclass(frozen=True)
class Comparison(JsonShaped):
    metric: str
    kind: str  # "values" or "rate"
    a: Side
    b: Side
    test: str | None = None  # welch, two-proportion, fisher-exact; None: undecided
    difference: float | None = None  # a.mean - b.mean
    relative: float | None = None  # difference / |b.mean| (None when b.mean is 0)
    ci_low: float | None = None  # confidence interval of the difference
    ci_high: float | None = None
    confidence: float = DEFAULT_CONFIDENCE
    p_value: float | None = None
    significant: bool | None = None  # p_value < 1 - confidence
    note: str | None = None  # why undecided, or a caveat

    @property
    def decided(self) -> bool:
        return self.test is not None


def is_rate(values: Sequence[float]) -> bool:
    """A 0/1 metric (every value 0 or 1): its mean is a rate."""
    return bool(values) and all(v in (0.0, 1.0) for v in values)


def _side(label: str, n: int, mean: float | None, stdev: float | None) -> Side:
    return Side(label, n, mean, stdev)


def _too_few(a: Side, b: Side, min_samples: int) -> str | None:
    short = [s for s in (a, b) if s.n < min_samples]
    if not short:
        return None
    counts = ", ".join(f"{s.label} has {s.n}" for s in short)
    return f"too few samples to decide: {counts}; at least {min_samples} on each side are needed"


def _finish(
    metric: str,
    kind: str,
    a: Side,
    b: Side,
    test: str,
    low: float,
    high: float,
    p_value: float,
    confidence: float,
    note: str | None = None,
) -> Comparison:
    assert a.mean is not None and b.mean is not None
    difference = a.mean - b.mean
    return Comparison(
        metric,
        kind,
        a,
        b,
        test,
        difference,
        difference / abs(b.mean) if b.mean else None,
        low,
        high,
        confidence,
        p_value,
        p_value < 1 - confidence,
        note,
    )


def _check(confidence: float, min_samples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if min_samples < 2:
        raise ValueError(f"min_samples must be at least 2, got {min_samples}")


def compare_values(
    metric: str,
    a: tuple[str, Sequence[float]],
    b: tuple[str, Sequence[float]],
    *,
    kind: str | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> Comparison:
    """Compare two labelled samples of raw values (``kind``: from the values when None)."""
    _check(confidence, min_samples)
    (label_a, xs), (label_b, ys) = a, b
    if kind is None:
        kind = "rate" if is_rate(xs) and is_rate(ys) else "values"
    side_a, side_b = _summarised(label_a, xs), _summarised(label_b, ys)
    if kind == "rate":
        return _proportions(metric, side_a, side_b, confidence, min_samples)
    note = _too_few(side_a, side_b, min_samples)
    if note:
        return Comparison(metric, kind, side_a, side_b, note=note, confidence=confidence)
    if side_a.stdev == 0 and side_b.stdev == 0:
        return _constant(metric, kind, side_a, side_b, confidence)
    result = stats().ttest_ind(list(xs), list(ys), equal_var=False)
    interval = result.confidence_interval(confidence_level=confidence)
    return _finish(
        metric,
        kind,
        side_a,
        side_b,
        WELCH,
        float(interval.low),
        float(interval.high),
        float(result.pvalue),
        confidence,
    )


def compare_summaries(
    metric: str,
    a: tuple[str, Summary],
    b: tuple[str, Summary],
    *,
    kind: str,
    confidence: float = DEFAULT_CONFIDENCE,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> Comparison:
    """Compare two labelled summaries (a source without raw values); ``kind`` must be given."""
    _check(confidence, min_samples)
    (label_a, sa), (label_b, sb) = a, b
    side_a = _side(label_a, sa.count, sa.mean, sa.stdev)
    side_b = _side(label_b, sb.count, sb.mean, sb.stdev)
    if kind == "rate":
        return _proportions(metric, side_a, side_b, confidence, min_samples)
    note = _too_few(side_a, side_b, min_samples)
    if note:
        return Comparison(metric, kind, side_a, side_b, note=note, confidence=confidence)
    if side_a.mean is None or side_b.mean is None or side_a.stdev is None or side_b.stdev is None:
        return Comparison(
            metric,
            kind,
            side_a,
            side_b,
            confidence=confidence,
            note="the source gives no mean or standard deviation here, and Welch's t-test needs "
            "both (add a stdev template to the source, or compare raw values from the store)",
        )
    if side_a.stdev == 0 and side_b.stdev == 0:
        return _constant(metric, kind, side_a, side_b, confidence)
    scipy_stats = stats()
    na, nb = side_a.n, side_b.n
    va, vb = side_a.stdev**2 / na, side_b.stdev**2 / nb
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    result = scipy_stats.ttest_ind_from_stats(
        side_a.mean, side_a.stdev, na, side_b.mean, side_b.stdev, nb, equal_var=False
    )
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, df)) * se
    difference = side_a.mean - side_b.mean
    return _finish(
        metric,
        kind,
        side_a,
        side_b,
        WELCH,
        difference - half,
        difference + half,
        float(result.pvalue),
        confidence,
    )


def _summarised(label: str, values: Sequence[float]) -> Side:
    n = len(values)
    if n == 0:
        return Side(label, 0, None)
    mean = math.fsum(values) / n
    stdev = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Side(label, n, mean, stdev)


def _constant(metric: str, kind: str, a: Side, b: Side, confidence: float) -> Comparison:
    assert a.mean is not None and b.mean is not None
    difference = a.mean - b.mean
    return _finish(
        metric,
        kind,
        a,
        b,
        WELCH,
        difference,
        difference,
        1.0 if difference == 0 else 0.0,
        confidence,
        note="no spread on either side: every value is the same, so the difference is exact",
    )


def _proportions(metric: str, a: Side, b: Side, confidence: float, min_samples: int) -> Comparison:
    note = _too_few(a, b, min_samples)
    if note or a.mean is None or b.mean is None:
        return Comparison(metric, "rate", a, b, note=note, confidence=confidence)
    scipy_stats = stats()
    na, nb = a.n, b.n
    xa, xb = round(a.mean * na), round(b.mean * nb)
    pa, pb = xa / na, xb / nb
    a, b = Side(a.label, na, pa, a.stdev), Side(b.label, nb, pb, b.stdev)
    pooled = (xa + xb) / (na + nb)
    z_se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    difference = pa - pb
    expected = min(pooled * na, pooled * nb, (1 - pooled) * na, (1 - pooled) * nb)
    if z_se == 0:  # no events at all, or nothing but events: the rates are equal
        p_value, test, caveat = 1.0, TWO_PROPORTION, "both rates are 0 (or both 1): no difference"
    elif expected < MIN_EXPECTED:
        table = [[xa, na - xa], [xb, nb - xb]]
        p_value = float(scipy_stats.fisher_exact(table).pvalue)
        test = FISHER
        caveat = f"an expected count is {expected:.1f} (< {MIN_EXPECTED:g}): Fisher's exact p-value"
    else:
        z = difference / z_se
        p_value, test, caveat = float(2 * scipy_stats.norm.sf(abs(z))), TWO_PROPORTION, None
    half = float(scipy_stats.norm.ppf((1 + confidence) / 2)) * math.sqrt(
        pa * (1 - pa) / na + pb * (1 - pb) / nb
    )
    return _finish(
        metric,
        "rate",
        a,
        b,
        test,
        difference - half,
        difference + half,
        p_value,
        confidence,
        caveat,
    )
