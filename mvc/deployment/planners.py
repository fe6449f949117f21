"""The rollout state machine: one pure planner per move, ``plan(old, request, context)``.

Each planner takes the channel's current record (None: the channel does not exist yet), a
request value naming the move and its resolved targets, and a ``Context`` (who, when, why, and
the names of versions for messages). It returns the new record, not stored yet
(``previous`` is the old record's id), or raises a refusal: ``UsageError`` for a move the current
state does not allow, ``NotFound`` for a missing channel or rollback target, ``NothingToDo`` when
the move would change nothing. Messages name the current state and the command to run instead.
The allowed transitions are the table in docs/deployment.md.

Invariants of every planned record: its arms form one of ``STATES`` (weights sum to 100, labels
unique), every target a move introduces is not deprecated, and a rollback's arms are exactly the
arms of the record it ``restores``. Pure: no I/O here; the use cases in ``mvc.ops.deploy`` load
the inputs and store the result by compare-and-swap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from mvc.deployment.names import Names
from mvc.deployment.records import (
    AB,
    BLUE,
    CANARY,
    GREEN,
    S_AB,
    S_CANARY,
    S_SHADOW,
    S_STABLE,
    S_STAGED,
    S_SWITCHED,
    SETTLED,
    SHADOW,
    STABLE,
    Arm,
    Record,
    Target,
    state_of,
)
from mvc.errors import AmbiguousSpec, MvcError, NotFound, NothingToDo, UsageError
from mvc.ids import ObjectId, short

# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetTo:
    """``mvc channel set``: one target, 100%, from any state (creates the channel)."""

    target: Target


@dataclass(frozen=True)
class StartCanary:
    """``mvc deploy --canary W``: the stable keeps 100-W percent, the target gets W."""

    target: Target
    weight: int


@dataclass(frozen=True)
class StepCanary:
    """``mvc deploy --step W``: the running canary's share becomes W."""

    weight: int


@dataclass(frozen=True)
class StageGreen:
    """``mvc deploy --blue-green``: stage the target as green at 0% beside the stable."""

    target: Target


@dataclass(frozen=True)
class StartShadow:
    """``mvc deploy --shadow``: mirror the stable's traffic to the target."""

    target: Target


@dataclass(frozen=True)
class StartAB:
    """``mvc deploy --ab``: named arms ``a``, ``b``, … with these targets and weights."""

    arms: tuple[tuple[Target, int], ...]


@dataclass(frozen=True)
class Promote:
    """``mvc promote [--arm NAME]``: finish the rollout."""

    arm: str | None = None


@dataclass(frozen=True)
class Switch:
    """``mvc switch``: blue-green, send all traffic to the other version."""


@dataclass(frozen=True)
class Rollback:
    """``mvc rollback [--to RECORD|REV]``.

    ``history`` is the channel's earlier records, newest first (the chain behind the current
    one, as far as this store has it); ``to_target`` is ``to`` read as a version, when it is one.
    """

    history: tuple[Record, ...] = ()
    to: str | None = None
    to_target: Target | None = None


Request: TypeAlias = (
    SetTo
    | StartCanary
    | StepCanary
    | StageGreen
    | StartShadow
    | StartAB
    | Promote
    | Switch
    | Rollback
)


@dataclass(frozen=True)
class Context:
    """Who moves which channel, when and why; ``names`` names versions in messages and knows
    which are deprecated."""

    model: str
    channel: str
    who: str
    when: str
    message: str = ""
    names: Names = field(default_factory=Names)

    @property
    def where(self) -> str:
        return f"channel {self.channel!r} of {self.model!r}"


@dataclass(frozen=True)
class Planned:
    """A planned move: the new record (``id`` None until it is stored) and notes for people."""

    record: Record
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Arms:
    arms: tuple[Arm, ...]
    action: str
    why: str  # the generated description of the move
    restores: ObjectId | None = None
    notes: tuple[str, ...] = ()


# --- checks on requests (also run by the use cases before they resolve anything) -----------------


def check_share(weight: int, flag: str) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 99:
        raise UsageError(
            f"{flag} {weight!r}: a canary's share is a whole percentage from 1 to 99",
            hint="100% is `mvc promote`; dropping the canary is `mvc rollback`",
        )


def check_ab_weights(weights: list[int]) -> None:
    if not 2 <= len(weights) <= 26:
        raise UsageError("an A/B test needs between 2 and 26 arms")
    if any(w < 1 for w in weights) or sum(weights) != 100:
        raise UsageError(
            f"A/B weights {weights} must each be at least 1 and sum to 100 (they sum to "
            f"{sum(weights)})"
        )


def check_request(request: Request) -> None:
    """Refuse a request that is wrong whatever the channel's state."""
    if isinstance(request, StartCanary):
        check_share(request.weight, "--canary")
    elif isinstance(request, StepCanary):
        check_share(request.weight, "--step")
    elif isinstance(request, StartAB):
        check_ab_weights([w for _t, w in request.arms])
        targets = [t for t, _w in request.arms]
        if len(set(targets)) != len(targets):
            raise UsageError("the same target appears in two A/B arms")


def ab_names(count: int) -> list[str]:
    return [chr(ord("a") + i) for i in range(count)] if count <= 26 else []


# --- the planners ---------------------------------------------------------------------------------


def plan(old: Record | None, request: Request, ctx: Context) -> Planned:
    """The record ``request`` moves the channel to from ``old``, or a refusal (raised)."""
    check_request(request)
    planner = _PLANNERS[type(request)]
    return _finish(old, planner(old, request, ctx), ctx)


def _finish(old: Record | None, planned: _Arms, ctx: Context) -> Planned:
    introduced = [a.target for a in planned.arms if not old or a.target not in _targets(old)]
    for target in dict.fromkeys(introduced):
        _check_not_deprecated(ctx, target)
    record = Record(
        ctx.model,
        ctx.channel,
        planned.arms,
        old.id if old else None,
        ctx.who,
        ctx.when,
        ctx.message.strip() or planned.why,
        planned.action,
        planned.restores,
    )
    if state_of(record.arms) is None:  # a bug of ours, never a user error
        raise MvcError(f"internal error: planned arms are not a valid state: {record.arms}")
    return Planned(record, planned.notes)


def _check_not_deprecated(ctx: Context, target: Target) -> None:
    checks = [(ctx.model, target.version)]
    if target.adapter:
        checks.append((target.adapter.model, target.adapter.version))
    for which, version in checks:
        reason = ctx.names.deprecation(which, version)
        if reason:
            raise UsageError(
                f"{which}@{short(version)} is deprecated ({reason}); it cannot be deployed",
                hint=f"deploy another version, or end the deprecation: mvc deprecate {which}@{short(version)} --lift",
            )


def plan_set(old: Record | None, request: SetTo, ctx: Context) -> _Arms:
    wanted, names = request.target, ctx.names
    if old and old.state == S_STABLE and _stable(old).target == wanted:
        raise NothingToDo(
            f"{ctx.where} already serves {names.target(ctx.model, wanted)} alone; nothing changed"
        )
    return _Arms(
        (Arm(STABLE, wanted.version, 100, adapter=wanted.adapter),),
        "set",
        f"set {names.target(ctx.model, wanted)} as the only version",
    )


def plan_canary(old: Record | None, request: StartCanary, ctx: Context) -> _Arms:
    wanted, weight = request.target, request.weight
    base = _refuse_unsettled(old, ctx, "start a canary")
    _new_vs_stable(ctx, base, wanted, "start a canary")
    stable = _stable(base)
    return _Arms(
        (
            Arm(STABLE, stable.version, 100 - weight, adapter=stable.adapter),
            Arm(CANARY, wanted.version, weight, adapter=wanted.adapter),
        ),
        "deploy",
        f"canary {ctx.names.target(ctx.model, wanted)} at {weight}%",
        notes=_dropped(base),
    )


def plan_step(old: Record | None, request: StepCanary, ctx: Context) -> _Arms:
    weight = request.weight
    old = _require(old, ctx)
    if old.state != S_CANARY:
        raise UsageError(
            f"cannot --step: {ctx.where} has no canary (it is in state {old.state!r})",
            hint=f"start one with `mvc deploy {ctx.model} {ctx.channel} REV --canary N`",
        )
    canary, stable = _only(old, CANARY), _stable(old)
    if canary.weight == weight:
        raise UsageError(f"the canary already receives {weight}%")
    return _Arms(
        (replace(stable, weight=100 - weight), replace(canary, weight=weight)),
        "step",
        f"canary {ctx.names.target(ctx.model, canary)} from {canary.weight}% to {weight}%",
    )


def plan_blue_green(old: Record | None, request: StageGreen, ctx: Context) -> _Arms:
    wanted = request.target
    base = _refuse_unsettled(old, ctx, "stage a blue-green deployment")
    _new_vs_stable(ctx, base, wanted, "stage a blue-green deployment")
    stable = _stable(base)
    return _Arms(
        (replace(stable, weight=100), Arm(GREEN, wanted.version, 0, adapter=wanted.adapter)),
        "deploy",
        f"stage green {ctx.names.target(ctx.model, wanted)} at 0%",
        notes=_dropped(base),
    )


def plan_shadow(old: Record | None, request: StartShadow, ctx: Context) -> _Arms:
    wanted = request.target
    base = _refuse_unsettled(old, ctx, "start a shadow")
    _new_vs_stable(ctx, base, wanted, "shadow")
    if base.state == S_SHADOW and _only(base, SHADOW).target == wanted:
        raise UsageError(f"{ctx.names.target(ctx.model, wanted)} is already the shadow")
    stable = _stable(base)
    return _Arms(
        (replace(stable, weight=100), Arm(SHADOW, wanted.version, 0, adapter=wanted.adapter)),
        "deploy",
        f"shadow {ctx.names.target(ctx.model, wanted)}",
        notes=_dropped(base),
    )


def plan_ab(old: Record | None, request: StartAB, ctx: Context) -> _Arms:
    new_arms = tuple(
        Arm(AB, t.version, w, name=n, adapter=t.adapter)
        for (t, w), n in zip(request.arms, ab_names(len(request.arms)), strict=True)
    )
    base = old if old is not None and old.state == S_AB else None
    if base is None:
        base = _refuse_unsettled(old, ctx, "start an A/B test")
    if base.arms == new_arms:
        raise UsageError("the A/B test already runs with exactly these arms")
    return _Arms(
        new_arms,
        "deploy",
        "A/B "
        + ", ".join(f"{a.name}={ctx.names.target(ctx.model, a)} {a.weight}%" for a in new_arms),
        notes=_dropped(base),
    )


def plan_promote(old: Record | None, request: Promote, ctx: Context) -> _Arms:
    model, name, arm = ctx.model, ctx.channel, request.arm
    old = _require(old, ctx)
    if arm is not None and old.state != S_AB:
        raise UsageError(f"--arm is for A/B tests; channel {name!r} is in state {old.state!r}")
    if old.state == S_CANARY:
        chosen = _only(old, CANARY)
    elif old.state == S_SWITCHED:
        chosen = _stable(old)
    elif old.state == S_AB:
        labels = [a.label for a in old.arms]
        if arm is None:
            raise UsageError(
                "promote an A/B test with --arm NAME (arms: " + ", ".join(labels) + ")"
            )
        found = old.arm(arm)
        if found is None:
            raise UsageError(f"no A/B arm {arm!r}; arms: {', '.join(labels)}")
        chosen = found
    else:
        hints = {
            S_STABLE: "nothing is being rolled out",
            S_STAGED: f"green is staged at 0%: `mvc switch {model} {name}` sends traffic to it",
            S_SHADOW: f"a shadow serves no users; canary it first: "
            f"`mvc deploy {model} {name} REV --canary 10`",
        }
        raise UsageError(
            f"cannot promote: {ctx.where} is in state {old.state!r}", hint=hints[old.state]
        )
    return _Arms(
        (Arm(STABLE, chosen.version, 100, adapter=chosen.adapter),),
        "promote",
        f"promote {chosen.label} {ctx.names.target(model, chosen)} to 100%",
    )


def plan_switch(old: Record | None, request: Switch, ctx: Context) -> _Arms:
    old = _require(old, ctx)
    if old.state not in (S_STAGED, S_SWITCHED):
        raise UsageError(
            f"cannot switch: {ctx.where} is in state {old.state!r}; switch needs a staged green",
            hint=f"stage one with `mvc deploy {ctx.model} {ctx.channel} REV --blue-green`",
        )
    stable = _stable(old)
    other = _only(old, GREEN if old.state == S_STAGED else BLUE)
    return _Arms(
        (
            Arm(STABLE, other.version, 100, adapter=other.adapter),
            Arm(BLUE, stable.version, 0, adapter=stable.adapter),
        ),
        "switch",
        f"switch traffic to {ctx.names.target(ctx.model, other.target)}; "
        f"{ctx.names.target(ctx.model, stable.target)} kept warm as blue",
    )


def plan_rollback(old: Record | None, request: Rollback, ctx: Context) -> _Arms:
    old = _require(old, ctx)
    earlier = _Earlier(old, request.history)
    if request.to:
        target: Record | None = _find_earlier(old, request, earlier)
    else:
        target = rollback_target(old, earlier)
    if target is None:
        position = earlier.position(old)
        if old.state != S_STABLE:
            why = "no stable version served it alone before this rollout"
        elif position.id != old.id:
            why = (
                f"this record restores record {short(position.id or '')}, "
                "and no other version served alone before that"
            )
        else:
            why = "no other version served it alone before"
        raise NotFound(
            f"{ctx.where} has no earlier state to roll back to: {why}",
            hint=f"see `mvc channel history {ctx.model} {ctx.channel}`; "
            "`mvc rollback --to RECORD` or `mvc channel set` point it anywhere",
        )
    if target.arms == old.arms:
        raise UsageError(
            f"record {short(target.id or '')} serves exactly what the channel serves now"
        )
    return _Arms(
        target.arms,
        "rollback",
        f"roll back to record {short(target.id or '')} ({ctx.names.arms(target)})",
        restores=target.id,
    )


_PLANNERS: Mapping[type, Callable[[Record | None, Any, Context], _Arms]] = {
    SetTo: plan_set,
    StartCanary: plan_canary,
    StepCanary: plan_step,
    StageGreen: plan_blue_green,
    StartShadow: plan_shadow,
    StartAB: plan_ab,
    Promote: plan_promote,
    Switch: plan_switch,
    Rollback: plan_rollback,
}


# --- rollback -------------------------------------------------------------------------------------


class _Earlier:
    """The records behind the current one, by id."""

    def __init__(self, current: Record, history: tuple[Record, ...]) -> None:
        self.current = current
        self.history = history
        self.by_id = {r.id: r for r in history if r.id}

    def get(self, oid: ObjectId) -> Record:
        found = self.by_id.get(oid)
        if found is None:
            raise NotFound(
                f"record {short(oid)} of channel {self.current.channel!r} of "
                f"{self.current.model!r} is not in this store",
                hint="pull the channel from the remote it came from to get its whole history",
            )
        return found

    def position(self, record: Record) -> Record:
        """Where a record stands in history: a rollback stands where the record it restored
        stood."""
        while record.action == "rollback" and record.restores:
            record = self.get(record.restores)
        return record


def rollback_target(record: Record, earlier: _Earlier) -> Record | None:
    """The last state where one stable version served alone, before the rollout in progress
    (or, if none is, before the most recent one). Rolled-back stretches are skipped."""
    settled = record.state == S_STABLE
    serving = _stable(record).target if settled else None
    candidate = earlier.position(record)
    while candidate.previous:
        candidate = earlier.position(earlier.get(candidate.previous))
        if candidate.state == S_STABLE and _stable(candidate).target != serving:
            return candidate
    return None


def _find_earlier(record: Record, request: Rollback, earlier: _Earlier) -> Record:
    """``--to``: a record id (prefix) of this channel's history, or a version that once served
    alone, stable or switched to after a blue-green (the most recent such record)."""
    to = request.to or ""
    lowered = to.lower()
    by_id = (
        [r for r in earlier.history if r.id and r.id.startswith(lowered)]
        if re.fullmatch(r"[0-9a-f]{4,64}", lowered)
        else []
    )
    by_id = list({r.id: r for r in by_id}.values())
    by_version: list[Record] = []
    wanted = request.to_target
    if wanted is not None:
        by_version = [
            r
            for r in earlier.history
            # After a blue-green switch the stable serves alone too (the blue is warm at 0%).
            if r.state in (S_STABLE, S_SWITCHED) and _stable(r).target == wanted
        ][:1]
    if len(by_id) > 1:
        raise AmbiguousSpec(
            f"{to!r} matches {len(by_id)} records: " + ", ".join(short(r.id or "") for r in by_id),
            hint="give more digits",
        )
    if by_id and by_version and by_id[0].id != by_version[0].id:
        raise AmbiguousSpec(
            f"{to!r} is both record {short(by_id[0].id or '')} and a version that served "
            f"in record {short(by_version[0].id or '')}",
            hint="give more digits of the record id, or a tag",
        )
    if by_id or by_version:
        return (by_id or by_version)[0]
    if record.id and record.id.startswith(lowered):
        raise UsageError(f"{to!r} is the current record; there is nothing to roll back")
    raise NotFound(
        f"{to!r} is neither an earlier record of channel {record.channel!r} nor a version that "
        "served it alone",
        hint=f"see `mvc channel history {record.model} {record.channel}`",
    )


# --- helpers --------------------------------------------------------------------------------------


def _require(old: Record | None, ctx: Context) -> Record:
    if old is None:
        raise NotFound(
            f"channel {ctx.channel!r} of model {ctx.model!r} does not exist",
            hint=f"create it with `mvc channel set {ctx.model} {ctx.channel} REV`",
        )
    return old


def _targets(record: Record) -> set[Target]:
    return {a.target for a in record.arms}


def _stable(record: Record) -> Arm:
    arm = record.by_role(STABLE)
    assert arm is not None
    return arm


def _only(record: Record, role: str) -> Arm:
    arm = record.by_role(role)
    assert arm is not None
    return arm


def _dropped(base: Record) -> tuple[str, ...]:
    if base.state == S_SHADOW:
        return (f"the shadow {short(_only(base, SHADOW).version)} stops receiving traffic",)
    if base.state == S_SWITCHED:
        return (f"the warm blue {short(_only(base, BLUE).version)} is released",)
    return ()


def _refuse_unsettled(record: Record | None, ctx: Context, doing: str) -> Record:
    """The record a new rollout starts from: it must exist and be settled."""
    model, name = ctx.model, ctx.channel
    if record is None:
        raise NotFound(
            f"cannot {doing}: {ctx.where} does not exist",
            hint=f"give it a stable version first: `mvc channel set {model} {name} REV`",
        )
    hints = {
        S_CANARY: f"a canary is in progress; `mvc promote {model} {name}`, "
        f"`mvc rollback {model} {name}` or `mvc deploy {model} {name} --step N` first",
        S_STAGED: f"a green version is staged; `mvc switch {model} {name}` or "
        f"`mvc rollback {model} {name}` first",
        S_AB: f"an A/B test is running; `mvc promote {model} {name} --arm NAME` or "
        f"`mvc rollback {model} {name}` first",
    }
    if record.state not in SETTLED:
        raise UsageError(
            f"cannot {doing}: {ctx.where} is in state {record.state!r} ({ctx.names.arms(record)})",
            hint=hints.get(record.state),
        )
    return record


def _new_vs_stable(ctx: Context, base: Record, target: Target, doing: str) -> None:
    if target == _stable(base).target:
        raise UsageError(
            f"cannot {doing}: {ctx.names.target(ctx.model, target)} already serves as the "
            "stable version"
        )
