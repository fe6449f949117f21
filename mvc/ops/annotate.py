"""``annotate``: attach metrics and a note to an existing version, and read them back.

An annotation is appended to the version's notes ref (``refs/notes/<model>/<version id>``) by
compare-and-swap: the new annotation object names the previous one, then the ref moves from
the previous one to it. Closure before reference: the annotation names the version, whose data
is made present first. The version object is never touched, so its id never changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mvc.annotations import (
    Annotation,
    DeprecationNote,
    check_metrics,
    decode_annotation,
    merged_metrics,
)
from mvc.errors import CorruptObject, NotFound, RefConflict, UsageError
from mvc.faults import crashpoint
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped
from mvc.refnames import notes
from mvc.remotes import ensure_present
from mvc.repo import Repo
from mvc.specs import Resolved, SpecLike, resolve

#: How many times an annotation is retried when another writer appended first.
_RETRIES = 5


@dataclass
class AnnotateResult(JsonShaped):
    model: str
    version: ObjectId
    annotation: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)  # every metric, newest value


def chain(repo: Repo, model: str, version: ObjectId) -> list[Annotation]:
    """A version's annotations, newest first (empty when it has none)."""
    head = repo.refs.get(notes(model, version))
    return list(walk_chain(repo, head)) if head else []


def walk_chain(repo: Repo, head: ObjectId) -> Iterator[Annotation]:
    seen: set[str] = set()
    current: ObjectId | None = head
    while current is not None and current not in seen:
        seen.add(current)
        try:
            note = decode_annotation(repo.objects.get_meta(current), current)
        except NotFound:
            return  # a clone that has the newest annotations but not the oldest
        yield note
        current = note.previous


def annotated_metrics(repo: Repo, model: str, version: ObjectId) -> dict[str, float]:
    return merged_metrics(chain(repo, model, version))


def annotate(
    repo: Repo,
    spec: SpecLike,
    *,
    metrics: Mapping[str, object] | None = None,
    note: str = "",
    deprecation: DeprecationNote | None = None,
) -> AnnotateResult:
    """Append an annotation to the version ``spec`` names."""
    values = check_metrics(dict(metrics or {}))
    if not values and not note.strip() and deprecation is None:
        raise UsageError(
            "nothing to annotate",
            hint="give --metric NAME=NUMBER, --metrics FILE.json or --note TEXT",
        )
    resolved = resolve(repo, spec)
    stored = append(repo, resolved, values, note.strip(), deprecation)
    return AnnotateResult(
        resolved.model,
        resolved.version,
        stored.to_json(),
        annotated_metrics(repo, resolved.model, resolved.version),
    )


def append(
    repo: Repo,
    resolved: Resolved,
    metrics: Mapping[str, float],
    note: str,
    deprecation: DeprecationNote | None,
    signature: str | None = None,
) -> Annotation:
    """Store one annotation of a resolved version and move its notes ref onto it."""
    ref = notes(resolved.model, resolved.version)
    ensure_present(repo, resolved.version)  # closure before reference
    for attempt in range(_RETRIES):
        previous = repo.refs.get(ref)
        if previous is not None:
            try:
                decode_annotation(repo.objects.get_meta(previous), previous)
            except NotFound as exc:
                raise CorruptObject(
                    f"the notes ref of {resolved} names {short(previous)}, which is not an "
                    "annotation here",
                    hint="`mvc fsck` reports what is missing",
                ) from exc
        value = Annotation(
            resolved.model,
            resolved.version,
            repo.identity(),
            repo.now(),
            dict(metrics),
            note,
            deprecation,
            previous,
            signature=signature,
        )
        with repo.writing_objects():
            oid = repo.objects.put_meta(value.value())
            crashpoint("annotate.object")
            try:
                repo.refs.set_if_equals(ref, previous, oid, "annotate")
            except RefConflict:
                if attempt + 1 == _RETRIES:
                    raise
                continue  # another annotation landed first: chain onto it
        return replace(value, id=oid)
    raise AssertionError("unreachable")
