"""Channels: deployment records, the rollout state machine, history and rollback.

A channel (``RefName(model, "channels", name)``) points at an immutable *deployment record*, a
metadata object (``type: deployment``) naming which targets serve, in which role, with what share
of traffic, and the record it replaced (``previous``). A target is a version of the channel's
model, optionally with an adapter version on top (``bert@v2 + sql-lora@v1.3``).

Invariants every record keeps (``decode_record`` checks them on records from anywhere):

- its arms form exactly one of the states in ``STATES`` and their weights sum to 100;
- ``refs`` lists every version id (base and adapter) the arms name, so gc, fsck and transfers
  keep them; ``previous`` chains records back to the channel's first one;
- a record is never changed: every move (rollback included) appends a new record and moves the
  ref by compare-and-swap from the record the move was planned on, so a concurrent deployer
  gets RefConflict, never a lost update.

The allowed transitions are the table in docs/deployment.md; ``plan_*`` functions refuse any
other with a message that names the current state and the command to run instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from mvc.errors import (
    AmbiguousSpec,
    CorruptObject,
    InvalidInput,
    MvcError,
    NotFound,
    NothingToDo,
    RefConflict,
    UsageError,
)
from mvc.ids import ObjectId, is_object_id, short
from mvc.ops.specs import parse_spec, resolve
from mvc.refnames import TAGS, RefName, channel, validate_channel, validate_model
from mvc.refs import RefEntry
from mvc.repo import Repo

RECORD_TYPE = "deployment"
FORMAT = 1

STABLE, CANARY, GREEN, BLUE, SHADOW, AB = "stable", "canary", "green", "blue", "shadow", "ab"
ROLES = (STABLE, CANARY, GREEN, BLUE, SHADOW, AB)

# States, named after what the arms are doing.
S_STABLE = "stable"  # one target serves all traffic
S_CANARY = "canary"  # stable (100-w) and canary (w), 1 <= w <= 99
S_STAGED = "staged"  # blue-green: stable serves 100, green staged at 0
S_SWITCHED = "switched"  # blue-green after the switch: stable 100, blue (the old one) warm at 0
S_SHADOW = "shadow"  # stable 100, one shadow receiving a mirrored copy of traffic
S_AB = "ab"  # two or more named A/B arms, each >= 1, summing to 100
STATES = (S_STABLE, S_CANARY, S_STAGED, S_SWITCHED, S_SHADOW, S_AB)
# States in which one target serves all traffic: a new rollout may start from them.
SETTLED = (S_STABLE, S_SHADOW, S_SWITCHED)

DEPRECATED_TAG_PREFIX = "deprecated/"
_AB_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_UNSET: Any = object()


# --- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterRef:
    model: str
    version: ObjectId

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version}


@dataclass(frozen=True)
class Target:
    """What an arm serves: a version of the channel's model, maybe with an adapter on top."""

    version: ObjectId
    adapter: AdapterRef | None = None

    def ids(self) -> list[ObjectId]:
        return [self.version] + ([self.adapter.version] if self.adapter else [])


@dataclass(frozen=True)
class Arm:
    role: str
    version: ObjectId
    weight: int
    name: str | None = None  # A/B arms: "a", "b", …
    adapter: AdapterRef | None = None

    @property
    def label(self) -> str:
        """The arm's name in specs (``bert@prod:canary``), exports and routing decisions."""
        return self.name or self.role

    @property
    def target(self) -> Target:
        return Target(self.version, self.adapter)

    def value(self) -> dict[str, Any]:
        """The arm as stored in a record."""
        item: dict[str, Any] = {"role": self.role, "version": self.version, "weight": self.weight}
        if self.name is not None:
            item["name"] = self.name
        if self.adapter is not None:
            item["adapter"] = self.adapter.to_json()
        return item

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "role": self.role,
            "name": self.name,
            "version": self.version,
            "weight": self.weight,
            "adapter": self.adapter.to_json() if self.adapter else None,
        }


@dataclass(frozen=True)
class Record:
    """A deployment record (``id`` is None until it is stored)."""

    model: str
    channel: str
    arms: tuple[Arm, ...]
    previous: ObjectId | None
    who: str
    when: str
    why: str
    action: str
    restores: ObjectId | None = None  # rollbacks: the earlier record whose arms they restore
    id: ObjectId | None = None

    @property
    def state(self) -> str:
        state = state_of(self.arms)
        assert state is not None  # records are validated when built or decoded
        return state

    def arm(self, label: str) -> Arm | None:
        return next((a for a in self.arms if a.label == label), None)

    def by_role(self, role: str) -> Arm | None:
        return next((a for a in self.arms if a.role == role), None)

    @property
    def stable(self) -> Arm | None:
        """The arm ``bert@prod`` means: the stable one, or during an A/B test its first arm."""
        return self.by_role(STABLE) or next((a for a in self.arms if a.role == AB), None)

    def refs(self) -> list[ObjectId]:
        return sorted({oid for arm in self.arms for oid in arm.target.ids()})

    def value(self) -> dict[str, Any]:
        return {
            "type": RECORD_TYPE,
            "format": FORMAT,
            "model": self.model,
            "channel": self.channel,
            "state": self.state,
            "action": self.action,
            "arms": [arm.value() for arm in self.arms],
            "previous": self.previous,
            "restores": self.restores,
            "refs": self.refs(),
            "who": self.who,
            "when": self.when,
            "why": self.why,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "channel": self.channel,
            "state": self.state,
            "action": self.action,
            "arms": [arm.to_json() for arm in self.arms],
            "previous": self.previous,
            "restores": self.restores,
            "who": self.who,
            "when": self.when,
            "why": self.why,
        }


def state_of(arms: tuple[Arm, ...] | list[Arm]) -> str | None:
    """The state a list of arms is in, or None if it is not a valid state."""
    roles = [a.role for a in arms]
    weights = {a.role: a.weight for a in arms}
    if sum(a.weight for a in arms) != 100:
        return None
    if roles and all(r == AB for r in roles):
        names = [a.name for a in arms]
        ok = (
            len(arms) >= 2
            and all(isinstance(n, str) and _AB_NAME.match(n) for n in names)
            and len(set(names)) == len(names)
            and all(a.weight >= 1 for a in arms)
            and not any(a.name in ROLES for a in arms)
        )
        return S_AB if ok else None
    if any(a.name is not None for a in arms) or roles.count(STABLE) != 1:
        return None
    others = sorted(r for r in roles if r != STABLE)
    if not others:
        return S_STABLE if weights[STABLE] == 100 else None
    if len(others) != 1:
        return None
    other = others[0]
    if other == CANARY:
        return S_CANARY if 1 <= weights[CANARY] <= 99 else None
    if weights[STABLE] != 100:
        return None
    return {GREEN: S_STAGED, BLUE: S_SWITCHED, SHADOW: S_SHADOW}.get(other)


# --- decoding (records arrive from remotes too: check everything) ---------------------------------


def _bad(oid: str, what: str) -> CorruptObject:
    return CorruptObject(f"deployment record {oid[:12]} is malformed: {what}", object_id=oid)


def _opt_id(value: Any) -> bool:
    return value is None or (isinstance(value, str) and is_object_id(value))


def decode_record(value: dict[str, Any], oid: str) -> Record:
    if value.get("type") != RECORD_TYPE:
        raise NotFound(f"object {oid[:12]} is a {value.get('type')}, not a deployment record")
    for key in ("model", "channel", "who", "when", "why", "action"):
        if not isinstance(value.get(key), str):
            raise _bad(oid, f"{key} is not text")
    if not _opt_id(value.get("previous")) or not _opt_id(value.get("restores")):
        raise _bad(oid, "previous/restores is not an object id")
    try:
        validate_model(value["model"])
        validate_channel(value["channel"])
    except InvalidInput as exc:
        raise _bad(oid, exc.message) from exc
    raw_arms = value.get("arms")
    if not isinstance(raw_arms, list) or not raw_arms:
        raise _bad(oid, "no arms")
    arms = tuple(_decode_arm(item, oid) for item in raw_arms)
    if state_of(arms) is None:
        raise _bad(oid, "its arms are not a valid deployment state")
    record = Record(
        value["model"],
        value["channel"],
        arms,
        value.get("previous"),
        value["who"],
        value["when"],
        value["why"],
        value["action"],
        value.get("restores"),
        ObjectId(oid),
    )
    listed = value.get("refs")
    if not isinstance(listed, list) or not set(record.refs()) <= set(listed):
        raise _bad(oid, "refs does not list every version its arms name")
    return record


def _decode_arm(item: Any, oid: str) -> Arm:
    if not isinstance(item, dict):
        raise _bad(oid, "an arm is not an object")
    role, version, weight = item.get("role"), item.get("version"), item.get("weight")
    name, adapter = item.get("name"), item.get("adapter")
    if role not in ROLES or not (isinstance(version, str) and is_object_id(version)):
        raise _bad(oid, "an arm has no valid role or version")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise _bad(oid, "an arm weight is not a whole percentage")
    if name is not None and not isinstance(name, str):
        raise _bad(oid, "an arm name is not text")
    ref = None
    if adapter is not None:
        if not (
            isinstance(adapter, dict)
            and isinstance(adapter.get("model"), str)
            and isinstance(adapter.get("version"), str)
            and is_object_id(adapter["version"])
        ):
            raise _bad(oid, "an arm's adapter is malformed")
        try:
            validate_model(adapter["model"])
        except InvalidInput as exc:
            raise _bad(oid, exc.message) from exc
        ref = AdapterRef(adapter["model"], ObjectId(adapter["version"]))
    return Arm(role, ObjectId(version), weight, name, ref)


def load_record(repo: Repo, oid: str) -> Record:
    return decode_record(repo.objects.get_meta(oid), oid)


# --- reading channels -----------------------------------------------------------------------------


def channel_ref(model: str, name: str) -> RefName:
    return channel(model, name)


def current(repo: Repo, model: str, name: str) -> Record | None:
    record_id = repo.refs.get(channel_ref(model, name))
    return load_record(repo, record_id) if record_id else None


def require_current(repo: Repo, model: str, name: str) -> Record:
    record = current(repo, model, name)
    if record is None:
        raise NotFound(
            f"channel {name!r} of model {model!r} does not exist",
            hint=f"create it with `mvc channel set {model} {name} REV`",
        )
    return record


def chain(repo: Repo, record: Record) -> Iterator[Record]:
    """The record and its predecessors, newest first (ends early where a partial pull left
    older records out)."""
    current_record: Record | None = record
    while current_record is not None:
        yield current_record
        previous = current_record.previous
        try:
            current_record = load_record(repo, previous) if previous else None
        except NotFound:
            return


def arm_for(repo: Repo, model: str, name: str, label: str = STABLE) -> Arm:
    """The arm ``model@name[:label]`` means (``stable`` is the first arm during an A/B test)."""
    record = require_current(repo, model, name)
    found = record.stable if label == STABLE else record.arm(label)
    if found is None:
        raise NotFound(
            f"channel {name!r} of {model!r} has no {label!r} arm right now",
            hint=f"see `mvc channel show {model} {name}`",
        )
    return found


@dataclass
class ChannelSummary:
    model: str
    channel: str
    record: Record

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "channel": self.channel, "record": self.record.to_json()}


def list_channels(repo: Repo, model: str | None = None) -> list[ChannelSummary]:
    if model is not None:
        validate_model(model)
    found = []
    for ref in repo.refs.list_refs("channels", model):
        record = current(repo, ref.model, ref.name)
        if record is not None:
            found.append(ChannelSummary(ref.model, ref.name, record))
    return found


# --- history --------------------------------------------------------------------------------------


@dataclass
class HistoryItem:
    """One move of a channel: the record it made current, and this store's ref-log entry for
    that move when this store made it or pulled it (a clone knows the records, not the entries)."""

    record: Record
    entry: RefEntry | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.entry.seq if self.entry else None,
            "old": self.record.previous,
            "new": self.record.id,
            "who": self.record.who,
            "when": self.record.when,
            "why": self.record.why,
            "record": self.record.to_json(),
        }


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant; UTC unless it names a zone."""
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T").replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"{text!r} is not an ISO-8601 instant", hint="e.g. 2026-03-03T14:00 (UTC) or …+01:00"
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _record_time(record: Record) -> datetime:
    try:
        return parse_instant(record.when)
    except UsageError as exc:
        raise CorruptObject(
            f"deployment record {(record.id or '')[:12]} has a bad time {record.when!r}"
        ) from exc


def history(repo: Repo, model: str, name: str) -> list[HistoryItem]:
    """Every move of the channel, oldest first.

    The record chain is the history: it travels with the channel to remotes and clones, and
    each record says who made the move, when and why. Local ref-log entries add their numbers.
    """
    record = current(repo, model, name)
    if record is None:
        raise NotFound(
            f"channel {name!r} of model {model!r} does not exist",
            hint=f"list channels with `mvc channel list {model}`",
        )
    entries = {e.new: e for e in repo.refs.entries(channel_ref(model, name)) if e.new}
    return [
        HistoryItem(r, entries.get(r.id) if r.id else None)
        for r in reversed(list(chain(repo, record)))
    ]


def at(repo: Repo, model: str, name: str, moment: datetime | str) -> HistoryItem:
    """The channel's state at an instant: the last move at or before it."""
    if isinstance(moment, str):
        moment = parse_instant(moment)
    items = history(repo, model, name)
    chosen = None
    for item in items:
        if _record_time(item.record) <= moment:
            chosen = item
    if chosen is None:
        raise NotFound(
            f"channel {name!r} of {model!r} did not exist yet at "
            f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')} (it was first set at "
            f"{items[0].record.when})"
        )
    return chosen


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


def resolve_target(repo: Repo, model: str, text: str, *, check: bool = True) -> Target:
    """A target typed by a user: ``v1.5.0``, ``bert@v1.5.0`` or ``v2 + sql-lora@v1.3``."""
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
    adapter = None
    if adapter_text is not None:
        resolved = resolve(repo, adapter_text)
        adapter = AdapterRef(resolved.model, resolved.version)
        if check:
            check_adapter_compat(repo, model, base.version, adapter)
    return Target(base.version, adapter)


def check_adapter_compat(repo: Repo, model: str, base: ObjectId, adapter: AdapterRef) -> None:
    """Refuse an adapter mvc cannot serve, or whose target modules do not exist in the base with
    matching shapes (``mvc.peft``'s one check, as check-compat, merge-adapter and load run it)."""
    from mvc.ops.adapters import check_versions
    from mvc.peft import require_compatible

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
    data = b"".join(repo.objects.iter_file(repo.objects.get_manifest(entry.manifest), path))
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
    for ref in repo.refs.list_refs(TAGS, model):
        if not ref.name.startswith(DEPRECATED_TAG_PREFIX):
            continue
        entry = repo.refs.latest(ref)
        if entry is not None and entry.new == version:
            return f"tag {ref.name}" + (f": {entry.why}" if entry.why else "")
    return None


def _check_not_deprecated(repo: Repo, model: str, target: Target) -> None:
    checks = [(model, target.version)]
    if target.adapter:
        checks.append((target.adapter.model, target.adapter.version))
    for which, version in checks:
        reason = deprecation(repo, which, version)
        if reason:
            raise UsageError(
                f"{which}@{short(version)} is deprecated ({reason}); it cannot be deployed",
                hint="deploy another version, or lift the deprecation by deleting that tag",
            )


# --- naming versions for people -------------------------------------------------------------------


class Namer:
    """Short human names for versions: a tag if one names it, else the short id."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._tags: dict[str, dict[str, list[str]]] = {}

    def tags(self, model: str) -> dict[str, list[str]]:
        if model not in self._tags:
            found: dict[str, list[str]] = {}
            for ref in self.repo.refs.list_refs(TAGS, model):
                value = self.repo.refs.get(ref)
                if value and not ref.name.startswith(DEPRECATED_TAG_PREFIX):
                    found.setdefault(value, []).append(ref.name)
            self._tags[model] = found
        return self._tags[model]

    def version(self, model: str, version: str) -> str:
        names = self.tags(model).get(version)
        return _best_tag(names) if names else short(version)

    def target(self, model: str, arm: Arm | Target) -> str:
        text = self.version(model, arm.version)
        if arm.adapter:
            text += f" + {arm.adapter.model}@{self.version(arm.adapter.model, arm.adapter.version)}"
        return text

    def arms(self, record: Record) -> str:
        return ", ".join(
            f"{a.label} {self.target(record.model, a)} {a.weight}%" for a in record.arms
        )


def _best_tag(names: list[str]) -> str:
    from mvc.versioning import parse_semver

    semvers = [(parse_semver(n), n) for n in names]
    ranked = sorted((v, n) for v, n in semvers if v is not None)
    return ranked[-1][1] if ranked else sorted(names)[0]


# --- moves ----------------------------------------------------------------------------------------


@dataclass
class Move:
    """A channel move: the record it replaced (None: the channel is new) and the new one."""

    model: str
    channel: str
    old: Record | None
    record: Record
    entry: RefEntry
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "channel": self.channel,
            "old": self.old.to_json() if self.old else None,
            "record": self.record.to_json(),
            "seq": self.entry.seq,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Plan:
    arms: tuple[Arm, ...]
    action: str
    why: str  # the generated description of the move
    restores: ObjectId | None = None
    notes: tuple[str, ...] = ()


def _move(
    repo: Repo,
    model: str,
    name: str,
    plan: Callable[[Record | None], Plan],
    message: str,
    expected: Any,
) -> Move:
    """Plan against the current record, store the new record, then compare-and-swap the ref."""
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
    planned = plan(old)
    introduced = [a.target for a in planned.arms if not old or a.target not in _targets(old)]
    for target in dict.fromkeys(introduced):
        _check_not_deprecated(repo, model, target)
    record = Record(
        model,
        name,
        planned.arms,
        current_id,
        repo.identity(),
        repo.now(),
        message.strip() or planned.why,
        planned.action,
        planned.restores,
    )
    if state_of(record.arms) is None:  # a bug of ours, never a user error
        raise MvcError(f"internal error: planned arms are not a valid state: {record.arms}")
    from mvc.ops.remotes import ensure_present

    for oid in record.refs():
        # Closure before reference: a fetched-but-not-pulled version gets its data first.
        ensure_present(repo, oid)
    with repo.writing_objects():
        record_id = repo.objects.put_meta(record.value())
        entry = repo.refs.set_if_equals(
            ref, current_id, record_id, f"{planned.action}: {record.why}"
        )
    return Move(model, name, old, replace(record, id=record_id), entry, list(planned.notes))


def _matches(current_id: str | None, expected: str | None) -> bool:
    if not expected:
        return current_id is None
    return current_id is not None and current_id.startswith(expected.lower())


def _targets(record: Record) -> set[Target]:
    return {a.target for a in record.arms}


def _stable(record: Record) -> Arm:
    arm = record.by_role(STABLE)
    assert arm is not None
    return arm


def _describe(namer: Namer, model: str, target: Target) -> str:
    return namer.target(model, target)


def _refuse_unsettled(
    record: Record | None, model: str, name: str, doing: str, namer: Namer
) -> Record:
    """The record a new rollout starts from: it must exist and be settled."""
    where = f"channel {name!r} of {model!r}"
    if record is None:
        raise NotFound(
            f"cannot {doing}: {where} does not exist",
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
            f"cannot {doing}: {where} is in state {record.state!r} ({namer.arms(record)})",
            hint=hints.get(record.state),
        )
    return record


def _new_vs_stable(namer: Namer, model: str, base: Record, target: Target, doing: str) -> None:
    if target == _stable(base).target:
        raise UsageError(
            f"cannot {doing}: {_describe(namer, model, target)} already serves as the stable "
            f"version"
        )


def set_channel(
    repo: Repo, model: str, name: str, target: str, *, message: str = "", expected: Any = _UNSET
) -> Move:
    """Point a channel at one target, 100% (creates the channel; from any state)."""
    validate_channel(name)
    wanted = resolve_target(repo, model, target)
    namer = Namer(repo)

    def plan(old: Record | None) -> Plan:
        if old and old.state == S_STABLE and _stable(old).target == wanted:
            raise NothingToDo(
                f"channel {name!r} of {model!r} already serves {namer.target(model, wanted)} "
                "alone; nothing changed"
            )
        return Plan(
            (Arm(STABLE, wanted.version, 100, adapter=wanted.adapter),),
            "set",
            f"set {namer.target(model, wanted)} as the only version",
        )

    return _move(repo, model, name, plan, message, expected)


def deploy_canary(
    repo: Repo,
    model: str,
    name: str,
    target: str,
    weight: int,
    *,
    message: str = "",
    expected: Any = _UNSET,
) -> Move:
    """Start a canary: the stable keeps 100-weight percent, the new target gets weight."""
    _check_share(weight, "--canary")
    wanted = resolve_target(repo, model, target)
    namer = Namer(repo)

    def plan(old: Record | None) -> Plan:
        base = _refuse_unsettled(old, model, name, "start a canary", namer)
        _new_vs_stable(namer, model, base, wanted, "start a canary")
        stable = _stable(base)
        return Plan(
            (
                Arm(STABLE, stable.version, 100 - weight, adapter=stable.adapter),
                Arm(CANARY, wanted.version, weight, adapter=wanted.adapter),
            ),
            "deploy",
            f"canary {namer.target(model, wanted)} at {weight}%",
            notes=_dropped(base),
        )

    return _move(repo, model, name, plan, message, expected)


def _check_share(weight: int, flag: str) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 99:
        raise UsageError(
            f"{flag} {weight!r}: a canary's share is a whole percentage from 1 to 99",
            hint="100% is `mvc promote`; dropping the canary is `mvc rollback`",
        )


def _dropped(base: Record) -> tuple[str, ...]:
    if base.state == S_SHADOW:
        return (f"the shadow {short(_only(base, SHADOW).version)} stops receiving traffic",)
    if base.state == S_SWITCHED:
        return (f"the warm blue {short(_only(base, BLUE).version)} is released",)
    return ()


def _only(record: Record, role: str) -> Arm:
    arm = record.by_role(role)
    assert arm is not None
    return arm


def step_canary(
    repo: Repo, model: str, name: str, weight: int, *, message: str = "", expected: Any = _UNSET
) -> Move:
    """Change the running canary's share of traffic."""
    _check_share(weight, "--step")
    namer = Namer(repo)

    def plan(old: Record | None) -> Plan:
        if old is None:
            require_current(repo, model, name)
        assert old is not None
        if old.state != S_CANARY:
            raise UsageError(
                f"cannot --step: channel {name!r} of {model!r} has no canary (it is in state "
                f"{old.state!r})",
                hint=f"start one with `mvc deploy {model} {name} REV --canary N`",
            )
        canary, stable = _only(old, CANARY), _stable(old)
        if canary.weight == weight:
            raise UsageError(f"the canary already receives {weight}%")
        return Plan(
            (replace(stable, weight=100 - weight), replace(canary, weight=weight)),
            "step",
            f"canary {namer.target(model, canary)} from {canary.weight}% to {weight}%",
        )

    return _move(repo, model, name, plan, message, expected)


def deploy_blue_green(
    repo: Repo, model: str, name: str, target: str, *, message: str = "", expected: Any = _UNSET
) -> Move:
    """Stage a green target at 0% beside the stable (which is the blue); ``switch`` flips them."""
    wanted = resolve_target(repo, model, target)
    namer = Namer(repo)

    def plan(old: Record | None) -> Plan:
        base = _refuse_unsettled(old, model, name, "stage a blue-green deployment", namer)
        _new_vs_stable(namer, model, base, wanted, "stage a blue-green deployment")
        stable = _stable(base)
        return Plan(
            (
                replace(stable, weight=100),
                Arm(GREEN, wanted.version, 0, adapter=wanted.adapter),
            ),
            "deploy",
            f"stage green {namer.target(model, wanted)} at 0%",
            notes=_dropped(base),
        )

    return _move(repo, model, name, plan, message, expected)


def deploy_shadow(
    repo: Repo, model: str, name: str, target: str, *, message: str = "", expected: Any = _UNSET
) -> Move:
    """Mirror the stable's traffic to a shadow target whose responses are discarded."""
    wanted = resolve_target(repo, model, target)
    namer = Namer(repo)

    def plan(old: Record | None) -> Plan:
        base = _refuse_unsettled(old, model, name, "start a shadow", namer)
        _new_vs_stable(namer, model, base, wanted, "shadow")
        if base.state == S_SHADOW and _only(base, SHADOW).target == wanted:
            raise UsageError(f"{namer.target(model, wanted)} is already the shadow")
        stable = _stable(base)
        return Plan(
            (
                replace(stable, weight=100),
                Arm(SHADOW, wanted.version, 0, adapter=wanted.adapter),
            ),
            "deploy",
            f"shadow {namer.target(model, wanted)}",
            notes=_dropped(base),
        )

    return _move(repo, model, name, plan, message, expected)


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


def ab_names(count: int) -> list[str]:
    return [chr(ord("a") + i) for i in range(count)] if count <= 26 else []


def deploy_ab(
    repo: Repo,
    model: str,
    name: str,
    arms: list[tuple[str, int]],
    *,
    message: str = "",
    expected: Any = _UNSET,
) -> Move:
    """Split traffic between named A/B arms ``a``, ``b``, … (weights sum to 100)."""
    if not 2 <= len(arms) <= 26:
        raise UsageError("an A/B test needs between 2 and 26 arms")
    weights = [w for _t, w in arms]
    if any(w < 1 for w in weights) or sum(weights) != 100:
        raise UsageError(
            f"A/B weights {weights} must each be at least 1 and sum to 100 (they sum to "
            f"{sum(weights)})"
        )
    targets = [resolve_target(repo, model, t) for t, _w in arms]
    if len(set(targets)) != len(targets):
        raise UsageError("the same target appears in two A/B arms")
    namer = Namer(repo)
    new_arms = tuple(
        Arm(AB, t.version, w, name=n, adapter=t.adapter)
        for t, w, n in zip(targets, weights, ab_names(len(arms)), strict=True)
    )

    def plan(old: Record | None) -> Plan:
        base = old if old is not None and old.state == S_AB else None
        if base is None:
            base = _refuse_unsettled(old, model, name, "start an A/B test", namer)
        if base.arms == new_arms:
            raise UsageError("the A/B test already runs with exactly these arms")
        return Plan(
            new_arms,
            "deploy",
            "A/B " + ", ".join(f"{a.name}={namer.target(model, a)} {a.weight}%" for a in new_arms),
            notes=_dropped(base),
        )

    return _move(repo, model, name, plan, message, expected)


def promote(
    repo: Repo,
    model: str,
    name: str,
    *,
    arm: str | None = None,
    message: str = "",
    expected: Any = _UNSET,
) -> Move:
    """Finish a rollout: the canary (or the chosen A/B arm) becomes the stable 100%;
    after a blue-green switch, the warm blue is released."""
    namer = Namer(repo)

    def plan(old: Record | None) -> Plan:
        if old is None:
            require_current(repo, model, name)
        assert old is not None
        if arm is not None and old.state != S_AB:
            raise UsageError(f"--arm is for A/B tests; channel {name!r} is in state {old.state!r}")
        if old.state == S_CANARY:
            chosen = _only(old, CANARY)
        elif old.state == S_SWITCHED:
            chosen = _stable(old)
        elif old.state == S_AB:
            names = [a.label for a in old.arms]
            if arm is None:
                raise UsageError(
                    "promote an A/B test with --arm NAME (arms: " + ", ".join(names) + ")"
                )
            found = old.arm(arm)
            if found is None:
                raise UsageError(f"no A/B arm {arm!r}; arms: {', '.join(names)}")
            chosen = found
        else:
            hints = {
                S_STABLE: "nothing is being rolled out",
                S_STAGED: f"green is staged at 0%: `mvc switch {model} {name}` sends traffic to it",
                S_SHADOW: f"a shadow serves no users; canary it first: "
                f"`mvc deploy {model} {name} REV --canary 10`",
            }
            raise UsageError(
                f"cannot promote: channel {name!r} of {model!r} is in state {old.state!r}",
                hint=hints[old.state],
            )
        return Plan(
            (Arm(STABLE, chosen.version, 100, adapter=chosen.adapter),),
            "promote",
            f"promote {chosen.label} {namer.target(model, chosen)} to 100%",
        )

    return _move(repo, model, name, plan, message, expected)


def switch(repo: Repo, model: str, name: str, *, message: str = "", expected: Any = _UNSET) -> Move:
    """Blue-green: send all traffic to green, keeping the old stable warm as blue at 0%.
    Run again to switch back."""
    namer = Namer(repo)

    def plan(old: Record | None) -> Plan:
        if old is None:
            require_current(repo, model, name)
        assert old is not None
        if old.state not in (S_STAGED, S_SWITCHED):
            raise UsageError(
                f"cannot switch: channel {name!r} of {model!r} is in state {old.state!r}; "
                "switch needs a staged green",
                hint=f"stage one with `mvc deploy {model} {name} REV --blue-green`",
            )
        stable = _stable(old)
        other = _only(old, GREEN if old.state == S_STAGED else BLUE)
        return Plan(
            (
                Arm(STABLE, other.version, 100, adapter=other.adapter),
                Arm(BLUE, stable.version, 0, adapter=stable.adapter),
            ),
            "switch",
            f"switch traffic to {namer.target(model, other.target)}; "
            f"{namer.target(model, stable.target)} kept warm as blue",
        )

    return _move(repo, model, name, plan, message, expected)


# --- rollback -------------------------------------------------------------------------------------


def _position(repo: Repo, record: Record) -> Record:
    """Where a record stands in history: a rollback stands where the record it restored stood."""
    while record.action == "rollback" and record.restores:
        record = load_record(repo, record.restores)
    return record


def rollback_target(repo: Repo, record: Record) -> Record | None:
    """The last state where one stable version served alone, before the rollout in progress
    (or, if none is, before the most recent one). Rolled-back stretches are skipped."""
    settled = record.state == S_STABLE
    serving = _stable(record).target if settled else None
    candidate = _position(repo, record)
    while candidate.previous:
        candidate = _position(repo, load_record(repo, candidate.previous))
        if candidate.state == S_STABLE and _stable(candidate).target != serving:
            return candidate
    return None


def _find_earlier(repo: Repo, record: Record, to: str) -> Record:
    """``--to``: a record id (prefix) of this channel's history, or a version REV that once
    served alone (the most recent such record)."""
    earlier = list(chain(repo, record))[1:]
    lowered = to.lower()
    by_id = (
        [r for r in earlier if r.id and r.id.startswith(lowered)]
        if re.fullmatch(r"[0-9a-f]{4,64}", lowered)
        else []
    )
    by_id = list({r.id: r for r in by_id}.values())
    by_version: list[Record] = []
    try:
        wanted = resolve_target(repo, record.model, to, check=False)
    except MvcError:
        wanted = None
    if wanted is not None:
        by_version = [r for r in earlier if r.state == S_STABLE and _stable(r).target == wanted][:1]
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


def rollback(
    repo: Repo,
    model: str,
    name: str,
    *,
    to: str | None = None,
    message: str = "",
    expected: Any = _UNSET,
) -> Move:
    """Append a record restoring an earlier state (never rewrites history)."""
    namer = Namer(repo)

    def plan(old: Record | None) -> Plan:
        if old is None:
            require_current(repo, model, name)
        assert old is not None
        target = _find_earlier(repo, old, to) if to else rollback_target(repo, old)
        if target is None:
            if old.state != S_STABLE:
                why = "no stable version served it alone before this rollout"
            elif _position(repo, old).id != old.id:
                why = (
                    f"this record restores record {short(_position(repo, old).id or '')}, "
                    "and no other version served alone before that"
                )
            else:
                why = "no other version served it alone before"
            raise NotFound(
                f"channel {name!r} of {model!r} has no earlier state to roll back to: {why}",
                hint=f"see `mvc channel history {model} {name}`; `mvc rollback --to RECORD` or "
                "`mvc channel set` point it anywhere",
            )
        if target.arms == old.arms:
            raise UsageError(
                f"record {short(target.id or '')} serves exactly what the channel serves now"
            )
        return Plan(
            target.arms,
            "rollback",
            f"roll back to record {short(target.id or '')} ({namer.arms(target)})",
            restores=target.id,
        )

    return _move(repo, model, name, plan, message, expected)
