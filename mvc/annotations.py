"""Annotations: facts attached to a version after it was committed (pure: no store).

Evaluation results and deprecations arrive after the weights do. An annotation is an immutable
metadata object (``type: annotation``) naming the version it is about, who wrote it and when,
metrics, a note, and optionally a deprecation; ``previous`` chains it to the version's earlier
annotation, so the chain is the whole history (like a channel's deployment records) and travels
to remotes with the notes ref ``refs/notes/<model>/<version id>`` that names its newest link.
A version's id never changes: the version object is never rewritten.

What a chain says, newest first wins: ``merged_metrics`` (a metric's newest value),
``deprecation_of`` (the newest annotation that speaks about deprecation). Invariants
``decode_annotation`` checks on objects from anywhere: metrics are finite numbers, ``refs``
lists the version, ``previous`` is an object id or null.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mvc.errors import CorruptObject, InvalidInput, NotFound
from mvc.ids import ObjectId, is_object_id

ANNOTATION_TYPE = "annotation"
FORMAT = 1


@dataclass(frozen=True)
class DeprecationNote:
    """A deprecation an annotation declares: the cutoff day (ISO date, or None: no cutoff),
    the reason, and the replacement (a spec as typed, and the version it named then)."""

    on: str | None
    reason: str
    replacement: str | None = None
    replacement_id: ObjectId | None = None
    lifted: bool = False  # ``mvc deprecate --lift``: the version is no longer deprecated

    def value(self) -> dict[str, Any]:
        return {
            "on": self.on,
            "reason": self.reason,
            "replacement": self.replacement,
            "replacement_id": self.replacement_id,
            "lifted": self.lifted,
        }


@dataclass(frozen=True)
class Annotation:
    model: str
    version: ObjectId
    who: str
    when: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    note: str = ""
    deprecation: DeprecationNote | None = None
    previous: ObjectId | None = None
    id: ObjectId | None = None  # None until stored
    # ``mvc sign``: a model-signing bundle (Sigstore JSON) over the version's files. Left out of
    # the stored value when None, so annotations without one keep their ids.
    signature: str | None = None

    def value(self) -> dict[str, Any]:
        """The canonical value stored (``mvc.objects.encode_object`` gives its bytes)."""
        out: dict[str, Any] = {
            "type": ANNOTATION_TYPE,
            "format": FORMAT,
            "model": self.model,
            "version": self.version,
            "refs": [self.version],
            "previous": self.previous,
            "who": self.who,
            "when": self.when,
            "metrics": dict(self.metrics),
            "note": self.note,
        }
        if self.deprecation is not None:
            out["deprecation"] = self.deprecation.value()
        if self.signature is not None:
            out["signature"] = self.signature
        return out

    def to_json(self) -> dict[str, Any]:
        out = self.value()
        del out["type"], out["format"], out["refs"]
        out["id"] = self.id
        if out.pop("signature", None) is not None:
            out["signed"] = True  # the bundle itself: `mvc verify`, not every `show --json`
        return out


def check_metrics(metrics: Mapping[str, object]) -> dict[str, float]:
    """Metric values must be finite numbers (canonical JSON has no NaN)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if (
            not isinstance(name, str)
            or not name
            or isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidInput(f"metric {name!r}: {value!r} is not a finite number")
        out[name] = value
    return out


def _bad(oid: str, what: str) -> CorruptObject:
    return CorruptObject(f"annotation {oid[:12]} is malformed: {what}", object_id=oid)


def decode_annotation(value: dict[str, Any], oid: str) -> Annotation:
    if value.get("type") != ANNOTATION_TYPE:
        raise NotFound(f"object {oid[:12]} is a {value.get('type')}, not an annotation")
    for key in ("model", "who", "when", "note"):
        if not isinstance(value.get(key), str):
            raise _bad(oid, f"{key} is not text")
    version, previous = value.get("version"), value.get("previous")
    if not (isinstance(version, str) and is_object_id(version)):
        raise _bad(oid, "version is not an object id")
    if previous is not None and not (isinstance(previous, str) and is_object_id(previous)):
        raise _bad(oid, "previous is not an object id")
    refs = value.get("refs")
    if not isinstance(refs, list) or version not in refs:
        raise _bad(oid, "refs does not list the version")
    raw_metrics = value.get("metrics")
    if not isinstance(raw_metrics, dict):
        raise _bad(oid, "metrics is not an object")
    try:
        metrics = check_metrics(raw_metrics)
    except InvalidInput as exc:
        raise _bad(oid, exc.message) from exc
    return Annotation(
        value["model"],
        ObjectId(version),
        value["who"],
        value["when"],
        metrics,
        value["note"],
        _decode_deprecation(value.get("deprecation"), oid),
        ObjectId(previous) if previous else None,
        ObjectId(oid),
        _decode_signature(value.get("signature"), oid),
    )


def _decode_signature(raw: Any, oid: str) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise _bad(oid, "signature is not text")
    return raw


def _decode_deprecation(raw: Any, oid: str) -> DeprecationNote | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _bad(oid, "deprecation is not an object")
    on, reason = raw.get("on"), raw.get("reason")
    replacement, replacement_id = raw.get("replacement"), raw.get("replacement_id")
    if on is not None and not isinstance(on, str):
        raise _bad(oid, "deprecation.on is not a date")
    if not isinstance(reason, str) or not isinstance(raw.get("lifted", False), bool):
        raise _bad(oid, "deprecation.reason is not text")
    if replacement is not None and not isinstance(replacement, str):
        raise _bad(oid, "deprecation.replacement is not text")
    if replacement_id is not None and not (
        isinstance(replacement_id, str) and is_object_id(replacement_id)
    ):
        raise _bad(oid, "deprecation.replacement_id is not an object id")
    return DeprecationNote(
        on,
        reason,
        replacement,
        ObjectId(replacement_id) if replacement_id else None,
        bool(raw.get("lifted", False)),
    )


def merged_metrics(chain: Sequence[Annotation]) -> dict[str, float]:
    """Every metric the chain (newest first) records, each at its newest value."""
    out: dict[str, float] = {}
    for note in reversed(chain):  # oldest first: newer values overwrite
        out.update(note.metrics)
    return out


def deprecation_of(chain: Iterable[Annotation]) -> DeprecationNote | None:
    """The deprecation in force by the chain (newest first): the newest annotation that
    speaks about deprecation, unless it lifts it."""
    for note in chain:
        if note.deprecation is not None:
            return None if note.deprecation.lifted else note.deprecation
    return None
