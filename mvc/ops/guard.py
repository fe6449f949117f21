"""``mvc guard MODEL CHANNEL``: hold a rollout's candidate arm to the model's SLOs.

One evaluation (``guard``) reads the model's ``slo:`` spec from mvc.yaml and the channel's
current record, summarises the candidate and stable arms over the measurement windows
(``mvc.deployment.analysis.windows``) from the metric source, and assesses them:

- **broken**: rolls the channel back through ``ops.deploy.rollback`` (a new record whose reason
  names each broken rule's metric, value, threshold, window and sample count), with the record
  it evaluated as the compare-and-swap's expected value: two guards that race roll back once,
  the other finds the channel moved and says so;
- **healthy** with ``advance``: the next configured move through the same deploy functions
  (``step_canary`` to the next of ``steps``, then ``promote``; ``switch`` for a staged green;
  ``promote --arm`` for an A/B arm), compare-and-swapped the same way;
- **inconclusive** (too little data): nothing changes;
- a channel with no candidate (settled, e.g. after a rollback or promote) is ``idle``.

``dry_run`` decides and changes nothing. ``watch`` repeats the evaluation every interval until
the channel has no candidate any more. Returns values; never prints, never sleeps except in
``watch`` through the ``sleep`` it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from mvc.deployment.analysis import (
    BROKEN,
    GUARDED,
    HEALTHY,
    Advance,
    Arms,
    Assessment,
    Measurement,
    Window,
    assess,
    format_epoch,
    guarded_arms,
    measure,
    next_move,
    windows,
)
from mvc.deployment.records import Arm, Record
from mvc.errors import MvcError, PolicyError, RefConflict, UsageError
from mvc.ids import ObjectId, short
from mvc.instants import parse_instant
from mvc.jsonshape import JsonShaped, Shape
from mvc.metrics.model import MetricSource, Query, Summary
from mvc.metrics.sqlite import MetricsDB
from mvc.ops.channels import require_current
from mvc.ops.compare import open_source as open_named_source
from mvc.ops.deploy import Move, promote, rollback, step_canary, switch
from mvc.ops.explain import Explanation, explain
from mvc.policy.file import POLICY_FILE, read_policy
from mvc.policy.slo import SLO, STORE, SloSpec
from mvc.policy.sources import SOURCES
from mvc.repo import Repo

IDLE = "idle"  # the channel has no candidate arm: nothing to guard


@dataclass
class GuardResult(JsonShaped):
    """One evaluation: the decision, the measurements behind it, and what was done."""

    model: str
    channel: str
    record: ObjectId  # the record evaluated (the compare-and-swap's expected value)
    state: str
    status: str  # healthy / broken / inconclusive / idle
    why: str
    at: str  # when it was evaluated
    since: str | None = None  # when the rollout step began
    candidate: Arm | None = None
    baseline: Arm | None = None
    assessment: Assessment | None = None
    action: str | None = None  # what was (or, dry run, would be) done: rollback/step/promote/switch
    advance: Advance | None = None
    move: Move | None = None  # the move made (None: nothing changed)
    dry_run: bool = False
    conflict: str | None = None  # another writer moved the channel first
    explanation: Explanation | None = None  # broken: what differs, for the report
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.move is not None

    json_shape: ClassVar[Shape] = Shape(computed={"changed": "changed"})


def slo_spec(repo: Repo, model: str) -> SloSpec:
    """The model's SLOs from mvc.yaml, or a usage error saying how to declare them."""
    section = read_policy(repo.root).get(SLO)
    spec = section.get(model) if section else None
    if spec is None:
        raise UsageError(
            f"{POLICY_FILE} declares no SLOs for model {model!r}",
            hint=f"add `slo: {{{model}: {{rules: [error_rate <= 0.01]}}}}` to {POLICY_FILE} "
            "at the project root; docs/policy.md",
        )
    return spec


def open_source(repo: Repo, spec: SloSpec) -> MetricSource:
    """The metric source a spec names: ``store`` (the store's SQLite metric database, also
    called ``production``) or a Prometheus server named under ``sources:`` in mvc.yaml."""
    if spec.source in (STORE, "production"):
        return MetricsDB.open(repo, create=False)
    sources = read_policy(repo.root).get(SOURCES)
    if sources is None or spec.source not in sources.by_name:
        known = ", ".join([STORE, *sorted(sources.by_name if sources else ())])
        raise PolicyError(
            f"{spec.source_where}: slo.{spec.model}.source: no metric source {spec.source!r}",
            hint=f"sources: {known}; name a Prometheus server under `sources:` in {POLICY_FILE}",
        )
    return open_named_source(repo, spec.source)


def evaluate(
    spec: SloSpec,
    record: Record,
    arms: Arms,
    source: MetricSource,
    now: float,
) -> tuple[float, tuple[Measurement, ...], Assessment]:
    """Measure every window since the record's step began and assess them (reads only)."""
    since = parse_instant(record.when).timestamp()
    taken = []
    relative = tuple(dict.fromkeys(rule.metric for rule in spec.rules if rule.relative))
    for window in windows(spec, since, now):
        candidate = _summaries(source, spec.metrics, record, arms.candidate, window)
        stable = _summaries(source, relative, record, arms.baseline, window)
        taken.append(measure(spec, window, candidate, stable, candidate_label=arms.candidate.label))
    measurements = tuple(taken)
    return since, measurements, assess(spec, measurements)


def _summaries(
    source: MetricSource, metrics: tuple[str, ...], record: Record, arm: Arm, window: Window
) -> dict[str, Summary]:
    return {
        metric: source.summary(
            Query(record.model, metric, record.channel, arm.label, arm.version, *window.bounds)
        )
        for metric in metrics
    }


def guard(
    repo: Repo,
    model: str,
    channel: str,
    *,
    arm: str | None = None,
    advance: bool = False,
    dry_run: bool = False,
    source: MetricSource | None = None,
) -> GuardResult:
    """Evaluate the channel's candidate once; roll back when broken, advance when asked."""
    spec = slo_spec(repo, model)
    record = require_current(repo, model, channel)
    assert record.id is not None
    now = repo.clock().timestamp()
    result = GuardResult(
        model, channel, record.id, record.state, IDLE, "", format_epoch(now), dry_run=dry_run
    )
    arms = guarded_arms(record, arm)
    if arms is None:
        result.why = (
            f"channel {channel!r} serves one version (state {record.state!r}): nothing to guard"
        )
        return result
    result.candidate, result.baseline = arms.candidate, arms.baseline
    reader = source if source is not None else open_source(repo, spec)
    try:
        since, _measurements, assessment = evaluate(spec, record, arms, reader, now)
    finally:
        if source is None and isinstance(reader, MetricsDB):
            reader.close()
    result.since = format_epoch(since)
    result.assessment = assessment
    result.status, result.why = assessment.status, assessment.why
    if assessment.status == BROKEN:
        result.action = "rollback"
        if not dry_run:  # first: a diff of two large models must not delay the rollback
            _rollback(repo, result, record, arms, spec)
        _explain(repo, result, record, arms, since)
    elif assessment.status == HEALTHY and advance:
        result.advance = next_move(spec, record, arms)
        result.action = result.advance.action
        if not dry_run:
            _advance(repo, result, record, arms)
    return result


def _explain(repo: Repo, result: GuardResult, record: Record, arms: Arms, since: float) -> None:
    """The report's body: what differs between the arms of the record the guard judged. A
    failure to explain (a version whose data cannot be fetched) is a note, never a reason to
    undo or hide the decision."""
    try:
        result.explanation = explain(
            repo, record.model, record.channel, arm=arms.candidate.label, record=record, since=since
        )
    except MvcError as exc:
        result.notes.append(f"cannot explain what differs: {exc.message}")


def rollback_reason(spec: SloSpec, arms: Arms, assessment: Assessment) -> str:
    """The rollback record's why: the arm, and each rule the deciding measurement found broken,
    with its value, threshold, window and sample count."""
    decisive = assessment.decisive
    reasons = (decisive.describe_failures() if decisive else []) or [assessment.why]
    return (
        f"mvc guard: SLO broken by {arms.candidate.label} {short(arms.candidate.version)}: "
        + "; ".join(reasons)
        + f" [{assessment.failed} of {len(assessment.measurements)} measurements failed, "
        f"failure_limit {spec.failure_limit}]"
    )


def _rollback(repo: Repo, result: GuardResult, record: Record, arms: Arms, spec: SloSpec) -> None:
    assert result.assessment is not None and record.id is not None
    reason = rollback_reason(spec, arms, result.assessment)
    try:
        result.move = rollback(
            repo, record.model, record.channel, message=reason, expected=record.id
        )
    except RefConflict:
        _conflict(repo, result, record)


def _advance(repo: Repo, result: GuardResult, record: Record, arms: Arms) -> None:
    move = result.advance
    assert move is not None and result.assessment is not None and record.id is not None
    model, name = record.model, record.channel
    why = (
        f"mvc guard: {arms.candidate.label} {short(arms.candidate.version)} healthy ({result.why})"
    )
    try:
        if move.action == "step":
            assert move.weight is not None
            result.move = step_canary(
                repo, model, name, move.weight, message=why, expected=record.id
            )
        elif move.action == "switch":
            result.move = switch(repo, model, name, message=why, expected=record.id)
        else:
            result.move = promote(repo, model, name, arm=move.arm, message=why, expected=record.id)
    except RefConflict:
        _conflict(repo, result, record)


def _conflict(repo: Repo, result: GuardResult, record: Record) -> None:
    now = require_current(repo, record.model, record.channel)
    result.conflict = (
        f"the channel moved from record {short(record.id or '')} to {short(now.id or '')} "
        f"({now.action}: {now.why}) while this guard decided; it did not move it again"
    )


def watch(
    repo_factory: Callable[[], Repo],
    model: str,
    channel: str,
    *,
    interval: float | None = None,
    arm: str | None = None,
    advance: bool = False,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[GuardResult]:
    """Evaluate every ``interval`` seconds (default: the spec's), yielding each result, until
    the channel has no candidate arm (this guard or anyone else rolled it back, promoted it or
    set it). The policy file is read again every time."""
    while True:
        repo = repo_factory()
        result = guard(repo, model, channel, arm=arm, advance=advance, dry_run=dry_run)
        yield result
        if result.status == IDLE:
            return
        if result.move is not None and result.move.record.state not in GUARDED:
            return  # rolled back, promoted or switched: nothing left to guard
        sleep(interval if interval is not None else slo_spec(repo, model).interval)
