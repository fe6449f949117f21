"""The policy audit log: every action ``mvc policy apply``, ``mvc archive`` and ``mvc restore``
took, append-only, in the store.

Each entry is one canonical-JSON file ``.mvc/audit/<seq>.json`` (ten digits), created with
create-if-absent (``O_EXCL``), so two writers never share a number and nothing is ever
rewritten; the log is the files in order. An entry names the action, the version, the rule and
the facts behind it, and ``key``: what makes the action unique (``archive <version> <record
time>``), which lets a re-run recognise an action already logged and never log it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mvc.canonical import decode_json, encode_canonical
from mvc.errors import CorruptObject, InvalidInput, MvcError
from mvc.ids import ObjectId
from mvc.jsonshape import JsonShaped
from mvc.storage.base import Storage

FOLDER = "audit"
SEQ_DIGITS = 10
ENTRY_TYPE = "audit"


@dataclass(frozen=True)
class AuditEntry(JsonShaped):
    seq: int
    when: str
    who: str
    action: str  # archive, restore
    model: str
    version: ObjectId
    rule: str | None
    why: str
    key: str
    detail: Mapping[str, Any] = field(default_factory=dict)


def _key(seq: int) -> str:
    return f"{FOLDER}/{seq:0{SEQ_DIGITS}d}.json"


def read_log(storage: Storage) -> list[AuditEntry]:
    """Every entry, oldest first."""
    entries = []
    for name in storage.list(FOLDER):
        stem = name.removesuffix(".json")
        if not (name.endswith(".json") and stem.isdigit() and len(stem) == SEQ_DIGITS):
            continue
        what = f"audit log entry {FOLDER}/{name}"
        try:
            value = decode_json(storage.read(f"{FOLDER}/{name}"), what)
            entries.append(
                AuditEntry(
                    int(stem),
                    str(value["when"]),
                    str(value["who"]),
                    str(value["action"]),
                    str(value["model"]),
                    ObjectId(value["version"]),
                    value["rule"] if isinstance(value["rule"], str) else None,
                    str(value["why"]),
                    str(value["key"]),
                    dict(value.get("detail") or {}),
                )
            )
        except (KeyError, TypeError, ValueError, InvalidInput) as exc:
            raise CorruptObject(f"{what} is damaged ({exc})", hint="run `mvc fsck`") from exc
    return entries


def logged_keys(storage: Storage) -> set[str]:
    return {entry.key for entry in read_log(storage)}


def append(
    storage: Storage,
    *,
    when: str,
    who: str,
    action: str,
    model: str,
    version: ObjectId,
    rule: str | None,
    why: str,
    key: str,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry at the next free number (create-if-absent; a lost race takes the next)."""
    seq = len(storage.list(FOLDER)) + 1
    value = {
        "type": ENTRY_TYPE,
        "when": when,
        "who": who,
        "action": action,
        "model": model,
        "version": version,
        "rule": rule,
        "why": why,
        "key": key,
        "detail": dict(detail or {}),
    }
    data = encode_canonical(value)
    for _attempt in range(1000):
        if storage.create_exclusive(_key(seq), data):
            return AuditEntry(
                seq, when, who, action, model, version, rule, why, key, dict(detail or {})
            )
        seq += 1
    raise MvcError("could not append to the audit log: too many concurrent writers")
