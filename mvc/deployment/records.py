"""Deployment records: their values, the states their arms form, and their canonical encoding.

A channel (``RefName(model, "channels", name)``) points at an immutable *deployment record*, a
metadata object (``type: deployment``) naming which targets serve, in which role, with what share
of traffic, and the record it replaced (``previous``). A target is a version of the channel's
model, optionally with an adapter version on top (``bert@v2 + sql-lora@v1.3``).

Invariants every record keeps (``decode_record`` checks them on records from anywhere):

- its arms form exactly one of the states in ``STATES`` and their weights sum to 100;
- ``refs`` lists every version id (base and adapter) the arms name, so gc, fsck and transfers
  keep them; ``previous`` chains records back to the channel's first one.

``Record.value()`` is the canonical value whose bytes (``mvc.objects.encode_object``) are stored;
a golden test pins them. Pure: no I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from mvc.errors import CorruptObject, InvalidInput, InvalidName, NotFound
from mvc.ids import ObjectId, hash_bytes, is_object_id
from mvc.jsonshape import JsonShaped, Shape
from mvc.objects import encode_object
from mvc.refnames import validate_channel, validate_model

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

_AB_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class AdapterRef(JsonShaped):
    model: str
    version: ObjectId


@dataclass(frozen=True)
class Target:
    """What an arm serves: a version of the channel's model, maybe with an adapter on top."""

    version: ObjectId
    adapter: AdapterRef | None = None

    def ids(self) -> list[ObjectId]:
        return [self.version] + ([self.adapter.version] if self.adapter else [])


@dataclass(frozen=True)
class Arm(JsonShaped):
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

    json_shape: ClassVar[Shape] = Shape(computed={"label": "label"})


@dataclass(frozen=True)
class Record(JsonShaped):
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
    # A move forced past a promotion gate: who, when, why, and the rules it broke. Absent
    # from the stored value when None, so records written before it keep their ids.
    override: dict[str, Any] | None = None

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
        } | ({"override": self.override} if self.override is not None else {})

    json_shape: ClassVar[Shape] = Shape(computed={"state": "state"}, optional=("override",))


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
    except (InvalidInput, InvalidName) as exc:
        raise _bad(oid, exc.message) from exc
    override = value.get("override")
    if override is not None and not (
        isinstance(override, dict)
        and all(isinstance(override.get(k), str) for k in ("who", "when", "why"))
        and isinstance(override.get("broken"), list)
        and all(isinstance(item, str) for item in override["broken"])
    ):
        raise _bad(oid, "override is not {who, when, why, broken}")
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
        override,
    )
    listed = value.get("refs")
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise _bad(oid, "refs is not a list of object ids")
    if not set(record.refs()) <= set(listed):
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
        except (InvalidInput, InvalidName) as exc:
            raise _bad(oid, exc.message) from exc
        ref = AdapterRef(adapter["model"], ObjectId(adapter["version"]))
    return Arm(role, ObjectId(version), weight, name, ref)


def record_id(record: Record) -> ObjectId:
    """The id the record gets when it is stored (the blake3 of its canonical bytes)."""
    return hash_bytes(encode_object(record.value()))


# --- what ``bert@prod[:arm]`` means ---------------------------------------------------------------


def arm_rev(record: Record, arm: Arm) -> str:
    """The REV that names ``arm`` in a spec: the channel for its stable arm, ``CHANNEL:LABEL``
    for the others."""
    return record.channel if arm.role == STABLE else f"{record.channel}:{arm.label}"


def serving_arm(record: Record, label: str = STABLE) -> Arm:
    """The arm ``model@channel[:label]`` names: ``stable`` is the stable arm, or during an A/B
    test its first arm; any other label is an arm's name (``a``, ``b``…) or role (``canary``)."""
    found = record.stable if label == STABLE else record.arm(label)
    if found is None:
        raise NotFound(
            f"channel {record.channel!r} of {record.model!r} has no {label!r} arm right now",
            hint=f"see `mvc channel show {record.model} {record.channel}`",
        )
    return found
