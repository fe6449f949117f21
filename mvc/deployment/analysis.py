"""SLO analysis of a rollout: measurements of the candidate arm, assessed as Argo Rollouts does.

A *measurement* summarises one window of points of the candidate arm (and of the stable arm,
for relative rules) and checks every rule of the model's ``SloSpec``: it is ``failed`` when a
rule is broken, else ``inconclusive`` when an arm has fewer than ``min_samples`` points of a
metric a rule reads (or the statistic is missing), else ``successful``.

The windows (``windows``) end at ``now``, ``now - interval``, … (``count`` of them), and never
reach back before the rollout step began (``since``: the time of the channel's current record),
so every cron run of ``mvc guard`` sees the same measurements a long-lived watcher would have
taken, and a step's data is never judged with an earlier step's.

The measurements are assessed oldest first, exactly as Argo's ``assessMetricStatus`` does after
each one: more failed measurements than ``failure_limit`` -> **broken**; otherwise more
inconclusive ones than ``inconclusive_limit`` -> **inconclusive**; otherwise ``count``
measurements taken -> **healthy**; otherwise (fewer than ``count`` windows fit since the step
began) -> inconclusive, still measuring. Pure: summaries in, decisions out; no clock, no store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from mvc.deployment.records import (
    AB,
    CANARY,
    GREEN,
    S_AB,
    S_CANARY,
    S_SHADOW,
    S_STAGED,
    SHADOW,
    Arm,
    Record,
)
from mvc.errors import UsageError
from mvc.jsonshape import JsonShaped, Shape
from mvc.metrics.model import Summary
from mvc.policy.slo import SloRule, SloSpec

# Phases of one measurement (Argo's names).
SUCCESSFUL, FAILED, INCONCLUSIVE = "successful", "failed", "inconclusive"
# What the guard concludes.
HEALTHY, BROKEN = "healthy", "broken"
STATUSES = (HEALTHY, BROKEN, INCONCLUSIVE)

#: States with a candidate arm a guard judges, and the role of that arm.
GUARDED = {S_CANARY: CANARY, S_STAGED: GREEN, S_SHADOW: SHADOW, S_AB: AB}


@dataclass(frozen=True)
class Window(JsonShaped):
    start: float  # epoch seconds, inclusive
    end: float  # exclusive

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def bounds(self) -> tuple[float, float]:
        return self.start, self.end

    def describe(self) -> str:
        return f"{format_duration(self.seconds)} window ending {format_epoch(self.end)}"

    json_shape: ClassVar[Shape] = Shape(
        convert={"start": lambda t: format_epoch(t), "end": lambda t: format_epoch(t)}
    )


@dataclass(frozen=True)
class RuleResult(JsonShaped):
    """One rule checked in one measurement, with the numbers it compared."""

    rule: str  # as written: "latency_p99_ms <= 250"
    metric: str  # the stored metric: latency_ms
    statistic: str  # p99
    phase: str  # successful / failed / inconclusive
    value: float | None
    bound: float | None
    stable: float | None  # the stable arm's value (relative rules)
    samples: int  # candidate points in the window
    stable_samples: int | None  # stable points (relative rules)
    text: str  # "312 > 250" or why it is inconclusive


@dataclass(frozen=True)
class Measurement(JsonShaped):
    window: Window
    phase: str
    results: tuple[RuleResult, ...]

    def failures(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.results if r.phase == FAILED)

    def describe_failures(self) -> list[str]:
        """``latency_p99_ms 312 > 250 over the 10m window ending … (412 samples)``, per rule."""
        out = []
        for r in self.failures():
            samples = f"{r.samples} samples" + (
                f", stable {r.stable_samples}" if r.stable_samples is not None else ""
            )
            out.append(
                f"{r.rule.split()[0]} {r.text} over the {self.window.describe()} ({samples})"
            )
        return out


@dataclass(frozen=True)
class Assessment(JsonShaped):
    """What the measurements add up to (``status``), and why, in one line."""

    status: str  # healthy / broken / inconclusive
    why: str
    measurements: tuple[Measurement, ...]  # the ones assessed, oldest first
    successful: int
    failed: int
    inconclusive: int
    wanted: int  # spec.count

    @property
    def decisive(self) -> Measurement | None:
        """The measurement that decided a broken or inconclusive status."""
        return self.measurements[-1] if self.measurements and self.status != HEALTHY else None

    def reasons(self) -> list[str]:
        """Every broken rule of every failed measurement (newest first)."""
        found: list[str] = []
        for m in reversed(self.measurements):
            found.extend(m.describe_failures())
        return found


# --- windows --------------------------------------------------------------------------------------


def windows(spec: SloSpec, since: float, now: float) -> tuple[Window, ...]:
    """The measurement windows at ``now``, oldest first: up to ``count`` windows ending at
    ``now - k * interval``, each ``window`` long but clipped to start no earlier than ``since``;
    a window that would end at or before ``since`` is not taken."""
    found = []
    for k in range(spec.count):
        end = now - k * spec.interval
        if end <= since:
            break
        found.append(Window(max(since, end - spec.window), end))
    return tuple(reversed(found))


def next_due(spec: SloSpec, since: float) -> float:
    """After this instant ``count`` windows fit since ``since`` (a healthy verdict can come)."""
    return since + (spec.count - 1) * spec.interval


# --- one measurement ------------------------------------------------------------------------------


def measure(
    spec: SloSpec,
    window: Window,
    candidate: Mapping[str, Summary],
    stable: Mapping[str, Summary],
    *,
    candidate_label: str = "candidate",
) -> Measurement:
    """Check every rule on the window's summaries (by stored metric name; a missing metric is
    an empty series)."""
    results = tuple(
        check_rule(spec, rule, candidate.get(rule.metric), stable.get(rule.metric), candidate_label)
        for rule in spec.rules
    )
    phases = {r.phase for r in results}
    phase = FAILED if FAILED in phases else INCONCLUSIVE if INCONCLUSIVE in phases else SUCCESSFUL
    return Measurement(window, phase, results)


def check_rule(
    spec: SloSpec,
    rule: SloRule,
    candidate: Summary | None,
    stable: Summary | None,
    candidate_label: str = "candidate",
) -> RuleResult:
    cand = candidate or Summary(0)
    base = (stable or Summary(0)) if rule.relative else None
    value = cand.statistic(rule.statistic) if cand.count else None
    stable_value = base.statistic(rule.statistic) if base is not None and base.count else None
    text = str(rule)

    def inconclusive(why: str) -> RuleResult:
        return RuleResult(
            text,
            rule.metric,
            rule.statistic,
            INCONCLUSIVE,
            value,
            None,
            stable_value,
            cand.count,
            base.count if base is not None else None,
            why,
        )

    few = spec.min_samples
    if cand.count < few:
        return inconclusive(
            f"{candidate_label} has {cand.count} points of {rule.metric}, fewer than "
            f"min_samples {few}"
        )
    if base is not None and base.count < few:
        return inconclusive(
            f"stable has {base.count} points of {rule.metric}, fewer than min_samples {few}"
        )
    if value is None or (base is not None and stable_value is None):
        return inconclusive(f"the metric source has no {rule.statistic} of {rule.metric}")
    verdict = rule.condition.check(value, stable_value)
    return RuleResult(
        text,
        rule.metric,
        rule.statistic,
        SUCCESSFUL if verdict.ok else FAILED,
        value,
        verdict.bound,
        stable_value,
        cand.count,
        base.count if base is not None else None,
        verdict.text,
    )


# --- the assessment -------------------------------------------------------------------------------


def assess(spec: SloSpec, measurements: Sequence[Measurement]) -> Assessment:
    """Argo's assessment, applied after each measurement, oldest first; the first decision
    stands (a later measurement never un-breaks a broken rollout)."""
    successful = failed = inconclusive = 0
    taken: list[Measurement] = []

    def done(status: str, why: str) -> Assessment:
        return Assessment(status, why, tuple(taken), successful, failed, inconclusive, spec.count)

    for m in measurements:
        taken.append(m)
        successful += m.phase == SUCCESSFUL
        failed += m.phase == FAILED
        inconclusive += m.phase == INCONCLUSIVE
        if failed > spec.failure_limit:
            return done(
                BROKEN,
                f"{failed} failed measurement{'s' if failed != 1 else ''}, more than "
                f"failure_limit {spec.failure_limit}: " + "; ".join(m.describe_failures()),
            )
        if inconclusive > spec.inconclusive_limit:
            why = next(r.text for r in m.results if r.phase == INCONCLUSIVE)
            return done(
                INCONCLUSIVE,
                f"too little data: {inconclusive} inconclusive measurement"
                f"{'s' if inconclusive != 1 else ''}, more than inconclusive_limit "
                f"{spec.inconclusive_limit} ({why} in the {m.window.describe()})",
            )
        if len(taken) >= spec.count:
            return done(
                HEALTHY,
                f"{successful} of {len(taken)} measurements successful"
                + (f" ({failed} failed, within failure_limit)" if failed else ""),
            )
    return done(
        INCONCLUSIVE,
        f"too little data yet: {len(taken)} of {spec.count} measurements fit since this "
        f"rollout step began (one every {format_duration(spec.interval)})",
    )


# --- which arms -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arms:
    candidate: Arm
    baseline: Arm  # the stable arm, or an A/B test's first arm


def guarded_arms(record: Record, label: str | None = None) -> Arms | None:
    """The candidate and baseline arms of a record, or None when the channel is settled (no
    candidate: state stable or switched). ``label`` picks an A/B arm (needed with three or
    more arms)."""
    if record.state not in GUARDED:
        return None
    baseline = record.stable
    assert baseline is not None
    if record.state == S_AB:
        others = [a for a in record.arms if a is not baseline]
        if label is None:
            if len(others) != 1:
                raise UsageError(
                    f"channel {record.channel!r} runs an A/B test with arms "
                    f"{', '.join(a.label for a in record.arms)}; say which arm with --arm",
                )
            return Arms(others[0], baseline)
        chosen = record.arm(label)
        if chosen is None or chosen is baseline:
            raise UsageError(
                f"{label!r} is not a candidate arm of the A/B test on {record.channel!r}; "
                f"arms: {', '.join(a.label for a in others)} (the first, "
                f"{baseline.label!r}, is the baseline)"
            )
        return Arms(chosen, baseline)
    role = GUARDED[record.state]
    if label is not None and label != role:
        raise UsageError(
            f"channel {record.channel!r} is in state {record.state!r}: its candidate arm is "
            f"{role!r}, not {label!r}"
        )
    candidate = record.by_role(role)
    assert candidate is not None
    return Arms(candidate, baseline)


@dataclass(frozen=True)
class Advance(JsonShaped):
    """The move ``guard --advance`` makes on a healthy candidate."""

    action: str  # step / promote / switch
    weight: int | None = None  # step: the canary's next share
    arm: str | None = None  # promote of an A/B arm


def next_move(spec: SloSpec, record: Record, arms: Arms) -> Advance:
    """The next configured step: the canary's next share in ``spec.steps``, then promote; a
    staged green is switched to; an A/B arm is promoted. A shadow serves no users: refused."""
    if record.state == S_CANARY:
        weight = spec.next_step(arms.candidate.weight)
        return Advance("step", weight) if weight is not None else Advance("promote")
    if record.state == S_STAGED:
        return Advance("switch")
    if record.state == S_AB:
        return Advance("promote", arm=arms.candidate.label)
    raise UsageError(
        f"a shadow serves no users, so there is no next step for {record.channel!r}",
        hint=f"start a canary of it: `mvc deploy {record.model} {record.channel} REV --canary N`",
    )


# --- formatting -----------------------------------------------------------------------------------


def format_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
