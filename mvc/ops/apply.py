"""``mvc apply``: make the channels what the ``channels:`` section of mvc.yaml declares.

The plan compares each declared channel with its current record and lists the moves that
would make them equal (set the stable arm, start or re-weight a canary, start a shadow); apply
makes them one by one, each a normal deployment record through the same planners (and gates)
as ``mvc channel set`` / ``mvc deploy``, each a compare-and-swap on the record the plan read.
A channel already as declared gets no move, so applying twice changes nothing. Declared
versions are resolved once, when planning; the moves name the resolved ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

from mvc.deployment.records import CANARY, SHADOW, STABLE, Record, Target
from mvc.errors import NotFound
from mvc.ids import ObjectId
from mvc.jsonshape import JsonShaped, Shape
from mvc.ops.channels import current, list_channels
from mvc.ops.deploy import deploy_canary, deploy_shadow, resolve_target, set_channel, step_canary
from mvc.policy.desired import CHANNELS, Desired
from mvc.policy.file import policy_path, read_policy
from mvc.refnames import TAGS
from mvc.repo import Repo


@dataclass
class Step(JsonShaped):
    model: str
    channel: str
    action: str  # set, canary, weight, shadow
    target: str | None  # the declared version text (None for a weight change)
    version: ObjectId | None  # what it resolved to
    weight: int | None
    reason: str
    record: ObjectId | None = None  # the record the move stored, once applied

    json_shape: ClassVar[Shape] = Shape(optional=("record",))


@dataclass
class ApplyResult(JsonShaped):
    steps: list[Step] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # MODEL/CHANNEL already as declared
    applied: bool = False


def _arm_target(record: Record | None, role: str) -> Target | None:
    arm = record.by_role(role) if record else None
    return arm.target if arm else None


def _plan_one(repo: Repo, want: Desired) -> tuple[list[tuple[Step, Target | None]], Record | None]:
    record = current(repo, want.model, want.channel)
    stable = resolve_target(repo, want.model, want.stable)
    state = record.state if record else None
    steps: list[tuple[Step, Target | None]] = []

    def step(
        action: str, text: str | None, target: Target | None, weight: int | None, why: str
    ) -> None:
        version = target.version if target else None
        steps.append((Step(want.model, want.channel, action, text, version, weight, why), target))

    stable_ok = _arm_target(record, STABLE) == stable
    if want.canary is not None:
        canary = resolve_target(repo, want.model, want.canary)
        if state == "canary" and stable_ok and _arm_target(record, CANARY) == canary:
            arm = record.by_role(CANARY) if record else None
            if arm is not None and arm.weight != want.weight:
                step(
                    "weight",
                    None,
                    None,
                    want.weight,
                    f"canary share {arm.weight}% -> {want.weight}%",
                )
            return steps, record
        if state != "stable" or not stable_ok:
            step("set", want.stable, stable, None, _why_set(record, stable_ok))
        step("canary", want.canary, canary, want.weight, f"start the canary at {want.weight}%")
        return steps, record
    if want.shadow is not None:
        shadow = resolve_target(repo, want.model, want.shadow)
        if state == "shadow" and stable_ok and _arm_target(record, SHADOW) == shadow:
            return steps, record
        if state != "stable" or not stable_ok:
            step("set", want.stable, stable, None, _why_set(record, stable_ok))
        step("shadow", want.shadow, shadow, None, "start the shadow")
        return steps, record
    if state != "stable" or not stable_ok:
        step("set", want.stable, stable, None, _why_set(record, stable_ok))
    return steps, record


def _why_set(record: Record | None, stable_ok: bool) -> str:
    if record is None:
        return "the channel does not exist yet"
    if not stable_ok:
        return "the stable arm serves another version"
    return f"the channel is in the {record.state} state"


def apply(repo: Repo, *, plan_only: bool = False, message: str = "") -> ApplyResult:
    declared = read_policy(repo.root).get(CHANNELS)
    if declared is None:
        there = os.path.exists(policy_path(repo.root))
        raise NotFound(
            "mvc.yaml has no channels: section" if there else f"no mvc.yaml in {repo.root}",
            hint="declare what each channel serves, e.g. channels: {bert: {prod: v1.4.0}}; "
            "`mvc channel show MODEL CHANNEL --format yaml` prints the current state",
        )
    result = ApplyResult()
    # Plan everything first: a bad version anywhere stops the run before any channel moves.
    planned = [(want, *_plan_one(repo, want)) for want in declared]
    for want, steps, _record in planned:
        if not steps:
            result.unchanged.append(f"{want.model}/{want.channel}")
        result.steps.extend(step for step, _target in steps)
    if plan_only:
        return result
    why = message or "mvc apply: the channels section of mvc.yaml"
    for want, steps, record in planned:
        expected: str | None = record.id if record else None
        for step, target in steps:
            if step.action == "set" and target is not None:
                move = set_channel(
                    repo, want.model, want.channel, target, message=why, expected=expected
                )
            elif step.action == "canary" and target is not None and step.weight is not None:
                move = deploy_canary(
                    repo,
                    want.model,
                    want.channel,
                    target,
                    step.weight,
                    message=why,
                    expected=expected,
                )
            elif step.action == "shadow" and target is not None:
                move = deploy_shadow(
                    repo, want.model, want.channel, target, message=why, expected=expected
                )
            elif step.action == "weight" and step.weight is not None:
                move = step_canary(
                    repo, want.model, want.channel, step.weight, message=why, expected=expected
                )
            else:  # pragma: no cover - _plan_one makes only these
                raise AssertionError(step)
            expected = move.record.id
            step.record = move.record.id
    result.applied = True
    return result


def render_state(repo: Repo, model: str, channel: str | None = None) -> str:
    """The current state of ``model``'s channels (or one) as a ``channels:`` section: versions
    by their tag where one names them (the newest), by id otherwise."""
    names = [
        c.channel for c in list_channels(repo, model) if channel is None or c.channel == channel
    ]
    if channel is not None and not names:
        raise NotFound(f"channel {channel!r} of model {model!r} does not exist")
    tags = _tag_names(repo)
    lines = ["channels:", f"  {model}:"]
    for name in sorted(names):
        record = current(repo, model, name)
        if record is None:
            continue
        lines.extend(_state_lines(record, tags))
    return "\n".join(lines) + "\n"


def _tag_names(repo: Repo) -> dict[tuple[str, ObjectId], str]:
    found: dict[tuple[str, ObjectId], str] = {}
    for ref in sorted(repo.refs.list_refs(TAGS), key=lambda r: r.name):
        value = repo.refs.get(ref)
        if value is not None:
            found[(ref.model, value)] = ref.name  # sorted: the last (newest-named) wins
    return found


def _state_lines(record: Record, tags: dict[tuple[str, ObjectId], str]) -> list[str]:
    stable = record.by_role(STABLE)
    canary, shadow = record.by_role(CANARY), record.by_role(SHADOW)
    head = f"    {record.channel}:"
    if stable is None or record.state not in ("stable", "canary", "shadow"):
        return [
            f"    # {record.channel}: in the {record.state} state, which the channels section cannot declare"
        ]
    model = record.model

    def shown(target: Target) -> str:
        text = tags.get((model, target.version)) or f"id={target.version}"
        if target.adapter is not None:
            adapter = target.adapter
            name = tags.get((adapter.model, adapter.version)) or f"id={adapter.version}"
            text += f" + {adapter.model}@{name}"
        return f'"{text}"'

    if record.state == "stable":
        return [f"{head} {shown(stable.target)}"]
    lines = [head, f"      version: {shown(stable.target)}"]
    if canary is not None:
        lines.append(f"      canary: {{version: {shown(canary.target)}, weight: {canary.weight}}}")
    if shadow is not None:
        lines.append(f"      shadow: {shown(shadow.target)}")
    return lines
