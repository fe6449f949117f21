"""Channel moves: the deployment use cases (set, canary, step, blue-green, shadow, A/B, promote,
switch, rollback).

Each use case resolves its inputs (targets typed by users, the channel's current record, the
tags that name versions), asks the pure planner in ``mvc.deployment`` for the new record, stores
the record and moves the channel's ref by compare-and-swap from the record the move was planned
on, so a concurrent deployer gets RefConflict, never a lost update. A record is never changed:
every move (rollback included) appends a new one. Returns a ``Move``; never prints.

Reading channels is ``mvc.ops.channels``; their history is ``mvc.ops.channel_history``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from mvc.deployment.planners import (
    Context,
    Promote,
    Request,
    Rollback,
    SetTo,
    StageGreen,
    StartAB,
    StartCanary,
    StartShadow,
    StepCanary,
    Switch,
    check_ab_weights,
    check_request,
    check_share,
    plan,
)
from mvc.deployment.records import STABLE, STATES, AdapterRef, Record, Target
from mvc.errors import InvalidInput, MvcError, RefConflict, UsageError
from mvc.faults import crashpoint
from mvc.ids import ObjectId, short
from mvc.instants import parse_instant
from mvc.jsonshape import JsonShaped, Shape
from mvc.ops.adapters import check_versions
from mvc.ops.channel_history import at, history
from mvc.ops.channels import (
    Namer,
    arm_for,
    chain,
    channel_ref,
    current,
    list_channels,
    load_model_tags,
    load_names,
    load_record,
    require_current,
)
from mvc.ops.lifecycle import check_move, override_value
from mvc.ops.signing import require_signed
from mvc.peft import require_compatible
from mvc.refnames import validate_channel, validate_model
from mvc.refs import RefEntry
from mvc.remotes import ensure_present
from mvc.repo import Repo
from mvc.specs import parse_spec, resolve

# Callers reach these through this module (``ops.require_current``…); they live next door.
__all__ = [
    "STABLE",
    "STATES",
    "AdapterRef",
    "Move",
    "Namer",
    "Record",
    "Target",
    "TargetLike",
    "arm_for",
    "at",
    "chain",
    "channel_ref",
    "current",
    "deprecation",
    "deploy_ab",
    "deploy_blue_green",
    "deploy_canary",
    "deploy_shadow",
    "history",
    "list_channels",
    "load_record",
    "parse_ab",
    "parse_instant",
    "promote",
    "require_current",
    "resolve_target",
    "rollback",
    "set_channel",
    "split_target",
    "step_canary",
    "switch",
    "target_on",
]

_UNSET: Any = object()


# --- targets --------------------------------------------------------------------------------------

_PLUS = re.compile(r"\s+\+\s+")


def split_target(text: str) -> tuple[str, str | None]:
    """``REV + ADAPTER@REV`` → (base, adapter). Spaces around '+' are optional when unambiguous."""
    text = text.strip()
    parts = _PLUS.split(text)
    if len(parts) == 1 and "+" in text:
        base, _, adapter = text.rpartition("+")
        if "@" in adapter:
            parts = [base.strip(), adapter.strip()]
    if len(parts) > 2 or any(not p for p in parts):
        raise UsageError(
            f"bad deployment target {text!r}",
            hint="write REV, or REV + ADAPTER@REV for a base model with one adapter",
        )
    return parts[0], parts[1] if len(parts) == 2 else None


TargetLike = str | Target
"""A target as a user typed it (``v2 + sql-lora@v1.3``), or one a use case already resolved."""


def resolve_target(repo: Repo, model: str, text: TargetLike, *, check: bool = True) -> Target:
    """A target typed by a user: ``v1.5.0``, ``bert@v1.5.0`` or ``v2 + sql-lora@v1.3``; a
    ``Target`` (ids a use case resolved) as it is, its adapter checked to fit unless ``check``
    is False."""
    if isinstance(text, Target):
        if check and text.adapter is not None:
            check_adapter_compat(repo, model, text.version, text.adapter)
        return text
    base_text, adapter_text = split_target(text)
    if "@" in base_text:
        spec = parse_spec(base_text)
        if spec.model != model:
            raise UsageError(
                f"{base_text!r} is a version of {spec.model!r}; channels of {model!r} serve "
                f"versions of {model!r}",
                hint=f"write a REV of {model} (e.g. v1.2.0), or `MODEL + ADAPTER@REV`",
            )
        base = resolve(repo, spec)
    else:
        base = resolve(repo, f"{model}@{base_text}")
    return target_on(repo, model, base.version, adapter_text, check=check)


def target_on(
    repo: Repo, model: str, base: ObjectId, adapter_text: str | None, *, check: bool = True
) -> Target:
    """A resolved base version of ``model`` with the adapter a user typed (``sql-lora@v1.3``),
    checked to fit the base unless ``check`` is False."""
    adapter = None
    if adapter_text is not None:
        resolved = resolve(repo, adapter_text)
        adapter = AdapterRef(resolved.model, resolved.version)
        if check:
            check_adapter_compat(repo, model, base, adapter)
    return Target(base, adapter)


def check_adapter_compat(repo: Repo, model: str, base: ObjectId, adapter: AdapterRef) -> None:
    """Refuse an adapter mvc cannot serve, or whose target modules do not exist in the base with
    matching shapes (``mvc.peft``'s one check, as check-compat, merge-adapter and load run it)."""
    report = check_versions(
        repo,
        base,
        adapter.version,
        f"{model}@{short(base)}",
        f"{adapter.model}@{short(adapter.version)}",
    )
    require_compatible(report)  # raises IncompatibleAdapter (an InvalidInput) naming the modules


def read_json_file(repo: Repo, version: ObjectId, path: str) -> dict[str, Any] | None:
    import json

    tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
    entry = tree.files.get(path)
    if entry is None:
        return None
    data = b"".join(repo.objects.iter_file(repo.objects.manifest_of(entry), path))
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise InvalidInput(f"{path} of version {short(version)} is not valid JSON") from exc
    return value if isinstance(value, dict) else None


# --- deprecation ----------------------------------------------------------------------------------


def deprecation(repo: Repo, model: str, version: ObjectId) -> str | None:
    """Why a version is deprecated, or None.

    A version is deprecated while a tag ``deprecated/…`` of its model names it
    (``mvc tag bert deprecated/v1.3.0 v1.3.0 -m "leaks PII"``); the tag's message is the reason.
    """
    return load_model_tags(repo, model).deprecated.get(version)


# --- moves ----------------------------------------------------------------------------------------


@dataclass
class Move(JsonShaped):
    """A channel move: the record it replaced (None: the channel is new) and the new one."""

    model: str
    channel: str
    old: Record | None
    record: Record
    entry: RefEntry
    notes: list[str] = field(default_factory=list)

    json_shape: ClassVar[Shape] = Shape(
        rename={"entry": "seq"}, convert={"entry": lambda entry: entry.seq}
    )


def _move(
    repo: Repo,
    model: str,
    name: str,
    request: Request | Callable[[Record | None], Request],
    message: str,
    expected: Any,
    force: bool = False,
) -> Move:
    """Plan against the current record, check it against the gates and deprecations (every
    move passes here), store the new record, then compare-and-swap the ref."""
    validate_model(model)
    ref = channel_ref(model, name)
    current_id = repo.refs.get(ref)
    if expected is not _UNSET and not _matches(current_id, expected):
        raise RefConflict(
            f"channel {name!r} of {model!r} is at record "
            f"{short(current_id) if current_id else 'nothing'}, not {expected or 'nothing'}",
            hint=f"look at `mvc channel show {model} {name}` and run again",
        )
    old = load_record(repo, current_id) if current_id else None
    if callable(request):
        request = request(old)
    names = load_names(repo, _models(model, old, request))
    ctx = Context(model, name, repo.identity(), repo.now(), message, names)
    planned = plan(old, request, ctx)
    record = planned.record
    checked = check_move(repo, old, record, force=force, reason=message)
    if record.action != "rollback":  # the way back is never held up (as with gates)
        served = {a.target for a in old.arms} if old else set()
        for arm in record.arms:
            if arm.target not in served:
                require_signed(repo, "deploy", model, arm.version)
                if arm.adapter is not None:  # the adapter is new too (or alone is)
                    require_signed(repo, "deploy", arm.adapter.model, arm.adapter.version)
    record = replace(record, override=override_value(checked, ctx.who, ctx.when, message))

    for oid in record.refs():
        # Closure before reference: a fetched-but-not-pulled version gets its data first.
        ensure_present(repo, oid)
    with repo.writing_objects():
        record_id = repo.objects.put_meta(record.value())
        crashpoint("deploy.record")
        entry = repo.refs.set_if_equals(
            ref, current_id, record_id, f"{record.action}: {record.why}"
        )
    notes = [*planned.notes, *checked.warnings]
    notes += [f"gate overridden (--force): {b.rule}: {b.detail}" for b in checked.broken]
    return Move(model, name, old, replace(record, id=record_id), entry, notes)


def _matches(current_id: str | None, expected: str | None) -> bool:
    if not expected:
        return current_id is None
    return current_id is not None and current_id.startswith(expected.lower())


def _models(model: str, old: Record | None, request: Request) -> Iterator[str]:
    """The models whose tags name the versions a move's messages mention."""
    yield model
    records = [old] if old else []
    targets: list[Target] = []
    if isinstance(request, (SetTo, StartCanary, StageGreen, StartShadow)):
        targets.append(request.target)
    elif isinstance(request, StartAB):
        targets.extend(t for t, _w in request.arms)
    elif isinstance(request, Rollback):
        records.extend(request.history)
    targets.extend(a.target for r in records for a in r.arms)
    yield from (t.adapter.model for t in targets if t.adapter)


def set_channel(
    repo: Repo,
    model: str,
    name: str,
    target: TargetLike,
    *,
    message: str = "",
    expected: Any = _UNSET,
    force: bool = False,
) -> Move:
    """Point a channel at one target, 100% (creates the channel; from any state)."""
    validate_channel(name)
    request = SetTo(resolve_target(repo, model, target))
    return _move(repo, model, name, request, message, expected, force)


def deploy_canary(
    repo: Repo,
    model: str,
    name: str,
    target: TargetLike,
    weight: int,
    *,
    message: str = "",
    expected: Any = _UNSET,
    force: bool = False,
) -> Move:
    """Start a canary: the stable keeps 100-weight percent, the new target gets weight."""
    check_share(weight, "--canary")
    request = StartCanary(resolve_target(repo, model, target), weight)
    return _move(repo, model, name, request, message, expected, force)


def step_canary(
    repo: Repo,
    model: str,
    name: str,
    weight: int,
    *,
    message: str = "",
    expected: Any = _UNSET,
    force: bool = False,
) -> Move:
    """Change the running canary's share of traffic."""
    return _move(repo, model, name, _checked(StepCanary(weight)), message, expected, force)


def deploy_blue_green(
    repo: Repo,
    model: str,
    name: str,
    target: TargetLike,
    *,
    message: str = "",
    expected: Any = _UNSET,
    force: bool = False,
) -> Move:
    """Stage a green target at 0% beside the stable (which is the blue); ``switch`` flips them."""
    request = StageGreen(resolve_target(repo, model, target))
    return _move(repo, model, name, request, message, expected, force)


def deploy_shadow(
    repo: Repo,
    model: str,
    name: str,
    target: TargetLike,
    *,
    message: str = "",
    expected: Any = _UNSET,
    force: bool = False,
) -> Move:
    """Mirror the stable's traffic to a shadow target whose responses are discarded."""
    request = StartShadow(resolve_target(repo, model, target))
    return _move(repo, model, name, request, message, expected, force)


def parse_ab(text: str) -> list[tuple[str, int]]:
    """``v1.5.0=50,v1.6.0=50`` → [(target, weight)]; the weight follows the last '='."""
    items = []
    for part in (p.strip() for p in text.split(",")):
        target, eq, weight = part.rpartition("=")
        if not eq or not target.strip() or not weight.strip().isdigit():
            raise UsageError(
                f"bad A/B arm {part!r}",
                hint="write REV=WEIGHT,REV=WEIGHT, e.g. v1.5.0=50,v1.6.0=50",
            )
        items.append((target.strip(), int(weight)))
    return items


def deploy_ab(
    repo: Repo,
    model: str,
    name: str,
    arms: Sequence[tuple[TargetLike, int]],
    *,
    message: str = "",
    expected: Any = _UNSET,
    force: bool = False,
) -> Move:
    """Split traffic between named A/B arms ``a``, ``b``, … (weights sum to 100)."""
    check_ab_weights([w for _t, w in arms])
    request = StartAB(tuple((resolve_target(repo, model, t), w) for t, w in arms))
    return _move(repo, model, name, _checked(request), message, expected, force)


def promote(
    repo: Repo,
    model: str,
    name: str,
    *,
    arm: str | None = None,
    message: str = "",
    expected: Any = _UNSET,
    force: bool = False,
) -> Move:
    """Finish a rollout: the canary (or the chosen A/B arm) becomes the stable 100%;
    after a blue-green switch, the warm blue is released."""
    return _move(repo, model, name, Promote(arm), message, expected, force)


def switch(
    repo: Repo,
    model: str,
    name: str,
    *,
    message: str = "",
    expected: Any = _UNSET,
    force: bool = False,
) -> Move:
    """Blue-green: send all traffic to green, keeping the old stable warm as blue at 0%.
    Run again to switch back."""
    return _move(repo, model, name, Switch(), message, expected, force)


def rollback(
    repo: Repo,
    model: str,
    name: str,
    *,
    to: str | None = None,
    message: str = "",
    expected: Any = _UNSET,
    force: bool = False,
) -> Move:
    """Append a record restoring an earlier state (never rewrites history).

    ``to``: an earlier record (id prefix), a version that served alone, or an ISO-8601 instant
    (``2026-03-03T14:00``, with '-' or ':' so it is never a hex id prefix): what the channel
    served at that instant."""
    if to is not None and _is_instant(to):
        to = at(repo, model, name, to).record.id  # the move in force then

    def request(old: Record | None) -> Request:
        earlier = tuple(chain(repo, old))[1:] if old else ()
        return Rollback(earlier, to, _as_target(repo, model, to) if to and old else None)

    return _move(repo, model, name, request, message, expected, force)


def _is_instant(text: str) -> bool:
    if not re.search(r"[-:]", text):
        return False
    try:
        parse_instant(text)
    except UsageError:
        return False
    return True


def _as_target(repo: Repo, model: str, text: str) -> Target | None:
    """``rollback --to`` text read as a version, if it is one."""
    try:
        return resolve_target(repo, model, text, check=False)
    except MvcError:
        return None


def _checked(request: Request) -> Request:
    check_request(request)
    return request
