"""Walking the object graph: what a set of roots reaches, ancestry, first parents.

Every walk over versions, trees, manifests, chunks and deployment records lives here, below the
use cases (gc, fsck, push, pull) and spec resolution that call them. They differ on purpose in
what they read and in how they treat an absent object; each says so:

- ``walk_reachable`` (gc, fsck): closure and history of every object, delta bases included;
  chunks are never decoded; an absent object is reported in ``missing`` and not followed; with
  ``strict`` an unreadable metadata object is an error (gc must not delete what it names);
  ``known`` lets gc's second pass stop where its first one already went.
- ``metadata_reach`` (what a remote promises): the ids metadata names, present or not; chunk
  ids come from file manifests and are never read, so delta bases of absent chunks are unknown.
- ``is_ancestor`` (fast-forward checks of push and pull): history only; an absent object ends
  that path (it proves nothing).
- ``first_parent`` (``REV~N``): first parents only; running out of history is an error naming
  how far back there is.
"""

from __future__ import annotations

from collections.abc import Iterable

from mvc import codec
from mvc.errors import CorruptObject, MvcError, NotFound
from mvc.ids import ObjectId
from mvc.objects import child_ids, history_ids
from mvc.repo import Repo
from mvc.store import ObjectStore


def walk_reachable(
    objects: ObjectStore,
    roots: Iterable[ObjectId],
    *,
    missing: list[tuple[ObjectId, str]] | None = None,
    history: bool = True,
    strict: bool = False,
    known: set[ObjectId] | None = None,
) -> set[ObjectId]:
    """Every object reachable from ``roots`` (closure and, with ``history``, ancestry).

    Chunks are recognised without decoding them: only metadata objects are parsed. Objects
    that are absent are reported in ``missing`` (with who needed them) and not followed.
    With ``strict`` (gc), a metadata object that cannot be read is an error: what it names
    would otherwise look unreachable and be deleted. ``known``: objects already found
    reachable with everything below them (a previous walk); the walk stops there.
    """
    seen: set[ObjectId] = set(known or ())
    stack: list[tuple[ObjectId, str]] = [(r, "a ref") for r in roots]
    while stack:
        oid, needed_by = stack.pop()
        if oid in seen:
            continue
        try:
            stored = objects.read_stored(oid)
        except NotFound:
            if missing is not None:
                missing.append((oid, needed_by))
            continue
        seen.add(oid)
        base = codec.delta_base(stored)
        if base:
            stack.append((ObjectId(base[0]), f"delta {oid[:12]}"))
        if not codec.is_meta(stored):
            continue  # a chunk: its data is never parsed here
        try:
            value = objects.get_meta(oid)
        except MvcError as exc:
            if strict:
                raise CorruptObject(
                    f"object {oid[:12]} (needed by {needed_by}) cannot be read: {exc.message}; "
                    "gc stops rather than delete what it names",
                    object_id=oid,
                    hint="run `mvc fsck`, restore the object (e.g. `mvc pull` from a remote), "
                    "then run gc again",
                ) from exc
            continue
        for child in child_ids(value):
            stack.append((child, f"{value['type']} {oid[:12]}"))
        if history:
            for parent in history_ids(value):
                stack.append((parent, f"{value['type']} {oid[:12]}"))
    return seen


def metadata_reach(objects: ObjectStore, roots: Iterable[ObjectId]) -> set[ObjectId]:
    """Every id the metadata below ``roots`` names (history included), present or not.

    Walks metadata objects only; chunk ids are taken from file manifests, never read.
    """
    seen: set[ObjectId] = set()
    stack = list(roots)
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        if not objects.has(oid):
            continue
        try:
            value = objects.get_meta(oid)
        except MvcError:
            continue  # a chunk, or damage fsck reports on its own
        if value["type"] == "file":
            seen.update(child_ids(value))
        else:
            stack.extend(child_ids(value))
            stack.extend(history_ids(value))
    return seen


def is_ancestor(objects: ObjectStore, ancestor: ObjectId, descendant: ObjectId) -> bool:
    """Whether ``ancestor`` is in the history of ``descendant`` (parents, earlier records)."""
    seen: set[ObjectId] = set()
    stack = [descendant]
    while stack:
        oid = stack.pop()
        if oid == ancestor:
            return True
        if oid in seen:
            continue
        seen.add(oid)
        try:
            stack.extend(history_ids(objects.get_meta(oid)))
        except NotFound:
            continue
    return False


def first_parent(repo: Repo, version: ObjectId, steps: int, what: str) -> ObjectId:
    current = version
    for step in range(steps):
        parents = repo.objects.get_version(current).parents
        if not parents:
            raise NotFound(
                f"{what} has only {step} earlier version(s); ~{steps} goes past the first",
                hint=f"use at most ~{step}; `mvc log` lists the history",
            )
        current = parents[0]
    return current
