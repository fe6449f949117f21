"""The one grammar of thresholds, shared by SLOs (observability) and promotion gates.

A condition compares a measured value with a bound::

    ">= 0.90"                      absolute: the value must be at least 0.90
    "<= 250"                       absolute: at most 250
    "<= stable + 10%"              relative: at most the stable arm's value times 1.10
    ">= stable - 0.02"             relative: at least the stable arm's value minus 0.02
    "no worse than stable + 10%"   relative, the direction taken from the metric: for a metric
                                   where lower is better (latency, error rate), "<= stable +
                                   10%"; where higher is better (accuracy), ">= stable - 10%"

A rule names its metric in front: ``"error_rate <= 0.01"``, or with a colon
``"latency_p99_ms: no worse than stable + 10%"``. ``parse_rule`` splits the two.
Conditions are values: ``check`` is pure and returns the numbers it compared, so a refusal can
print the rule, the value and the bound.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_ABSOLUTE = re.compile(rf"^(>=|<=|==|>|<)\s*({_NUMBER})$")
_RELATIVE = re.compile(rf"^(>=|<=|>|<)\s*stable(?:\s*([-+])\s*({_NUMBER})\s*(%?))?$")
_NO_WORSE = re.compile(rf"^no worse than stable(?:\s*([-+])\s*({_NUMBER})\s*(%?))?$")
_RULE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.:/-]*?)\s*:?\s+(.+)$")  # "m <= 1", "m: <= 1"

# Metrics whose larger values are better, by name; everything else (latency, error rate,
# loss, cost) is better smaller. A section may say so explicitly for a metric not named here.
_HIGHER_IS_BETTER = re.compile(
    r"(accuracy|acc|f1|precision|recall|auc|score|bleu|rouge|throughput|agreement|hit_rate|"
    r"success|map|ndcg|mrr|qps|rps)",
    re.IGNORECASE,
)


def higher_is_better(metric: str) -> bool:
    return _HIGHER_IS_BETTER.search(metric) is not None


class ConditionSyntax(ValueError):
    """The text is not a condition; the message says what the grammar accepts."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    value: float
    bound: float  # the threshold the value was compared with (for a relative rule: computed)
    text: str  # e.g. "latency_p99_ms 312.0 > bound 275.0 (stable 250.0 + 10%)"


@dataclass(frozen=True)
class Condition:
    op: str
    threshold: float | None  # absolute bound; None for a relative condition
    margin: float = 0.0  # relative: added to the stable value (a fraction when percent)
    percent: bool = False
    source: str = ""  # the text as written

    @property
    def relative(self) -> bool:
        return self.threshold is None

    def bound(self, stable: float | None) -> float:
        if self.threshold is not None:
            return self.threshold
        if stable is None:
            raise ValueError("a relative condition needs the stable arm's value")
        if self.percent:
            return stable + abs(stable) * self.margin
        return stable + self.margin

    def check(self, value: float, stable: float | None = None) -> Verdict:
        bound = self.bound(stable)
        ok = not math.isnan(value) and _OPS[self.op](value, bound)
        shown = self.op if ok else _NEGATION[self.op]
        text = f"{_fmt(value)} {shown} {_fmt(bound)}"
        if self.relative:
            text += f" (stable {_fmt(stable)} {self._margin_text()})"
        return Verdict(ok, value, bound, text)

    def _margin_text(self) -> str:
        if self.margin == 0:
            return "+ 0"
        sign = "+" if self.margin > 0 else "-"
        amount = abs(self.margin) * (100 if self.percent else 1)
        return f"{sign} {_fmt(amount)}{'%' if self.percent else ''}"

    def __str__(self) -> str:
        return self.source


_NEGATION = {">=": "<", "<=": ">", ">": "<=", "<": ">=", "==": "!="}


def parse_condition(text: str, *, higher_better: bool = False) -> Condition:
    """``">= 0.9"``, ``"<= stable + 10%"`` or ``"no worse than stable + 10%"``."""
    source = " ".join(str(text).split())
    if match := _ABSOLUTE.match(source):
        return Condition(match.group(1), float(match.group(2)), source=source)
    if match := _RELATIVE.match(source):
        op, sign, amount, percent = match.groups()
        return Condition(op, None, _margin(sign, amount, percent), bool(percent), source)
    if match := _NO_WORSE.match(source):
        sign, amount, percent = match.groups()
        margin = abs(_margin(sign, amount, percent))
        # "no worse than stable + 10%": the tolerance goes in the worse direction.
        if higher_better:
            return Condition(">=", None, -margin, bool(percent), source)
        return Condition("<=", None, margin, bool(percent), source)
    raise ConditionSyntax(
        f"{text!r} is not a condition; write e.g. '>= 0.90', '<= 250', '<= stable + 10%' "
        "or 'no worse than stable + 10%'"
    )


def parse_rule(text: str) -> tuple[str, Condition]:
    """``"error_rate <= 0.01"`` -> (``"error_rate"``, its condition)."""
    match = _RULE.match(" ".join(str(text).split()))
    if match is None:
        raise ConditionSyntax(f"{text!r} is not a rule; write e.g. 'error_rate <= 0.01'")
    metric, rest = match.groups()
    return metric, parse_condition(rest, higher_better=higher_is_better(metric))


def _margin(sign: str | None, amount: str | None, percent: str | None) -> float:
    if amount is None:
        return 0.0
    value = float(amount) / (100 if percent else 1)
    return -value if sign == "-" else value


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.6g}"
