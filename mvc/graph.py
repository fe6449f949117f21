"""Walking the object graph: the one traversal behind gc, fsck, push, pull and ``REV~N``.

``Walk`` visits every object reachable from some roots, each once, over the edges a ``Rule``
names. A rule says, explicitly and typed, what a caller means by "reachable":

- ``edges`` (``Edges`` flags): ``CLOSURE`` (a version's tree, a tree's file manifests or, for a
  one-chunk file, its chunk, a manifest's chunks, the versions a deployment record names),
  ``HISTORY`` (every parent of a version, a record's previous record), ``FIRST_PARENT`` (a
  version's first parent only), ``DELTA_BASES`` (the base a delta-encoded object is stored
  against), ``LINEAGE`` (the versions a version's lineage names: an adapter's ``base``,
  ``derived_from``), ``SERVED``
  (the versions a deployment record, or another object that is not a version, tree or file,
  names in its ``refs``: part of ``CLOSURE``, on its own for a walk over versions only).
- ``missing`` (``Missing``): an absent object is ``RAISE``\\ d (``NotFound`` naming it and the
  path that reached it), ``REPORT``\\ ed (in ``Walk.missing`` with that path; not reached), or
  taken as ``PROMISED`` (reached, as something another store holds; not followed).
- ``unreadable`` (``Unreadable``): a present object that cannot be read or holds edges that
  do not parse is ``RAISE``\\ d (``CorruptObject``) or ``SKIP``\\ ped (not followed; fsck
  reports the damage on its own).
- ``read_chunks``: whether the chunks a file manifest names are read (their envelopes say
  whether they are deltas) or taken as reached from the manifest alone.

The rules of the callers, side by side:

============== ============================== ======== ========== ===========
rule           edges                          missing  unreadable read_chunks
============== ============================== ======== ========== ===========
``GC``         closure, history, delta bases  report   raise      yes
``FSCK``       closure, history, delta bases  report   skip       yes
``PROMISES``   closure, history               promised skip       no
``ANCESTRY``   history                        promised raise      —
``FIRST``      first parent                   raise    raise      —
``LOG``        first parent                   report   raise      —
``DATA``       closure, delta bases           report   raise      yes
``FSCK_DATA``  closure, delta bases           report   skip       yes
``LIVE``       history, served                report   skip       —
============== ============================== ======== ========== ===========

gc raises on an unreadable object because what it names would otherwise look unreachable and
be deleted; it follows delta bases because a live delta needs its base. Ancestry (fast-forward
and history-rewrite checks of push, fetch and pull) takes an absent object as the end of that
path: it proves nothing either way. ``log`` (``LOG``) shows the history that is here and ends
quietly where a partial pull left the rest out; ``REV~N`` (``FIRST``) needs it and says so.

Invariants: every object is visited at most once, so a cycle (impossible with content
addressing, possible in hostile data) ends the walk; the walk reads through the narrow
``ObjectReader`` (one method), so it runs on a dict in tests; ``StoreReader`` is that reader over
an ``ObjectStore``. The transfer's planning walk (``mvc.transfer``) is not this one: it runs in
parallel rounds, per metadata/data mode, and stops at what the destination holds.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from mvc import codec
from mvc.errors import CorruptObject, MvcError, NotFound
from mvc.ids import ObjectId, is_object_id, short
from mvc.store import ObjectStore


class Edges(enum.Flag):
    """Which edges a walk follows out of each object."""

    CLOSURE = enum.auto()
    HISTORY = enum.auto()
    FIRST_PARENT = enum.auto()
    DELTA_BASES = enum.auto()
    LINEAGE = enum.auto()
    SERVED = enum.auto()


class Missing(enum.Enum):
    """What a walk does with an object some edge names and the reader does not have."""

    RAISE = "raise"
    REPORT = "report"
    PROMISED = "promised"


class Unreadable(enum.Enum):
    """What a walk does with a present object that cannot be read."""

    RAISE = "raise"
    SKIP = "skip"


@dataclass(frozen=True)
class Rule:
    edges: Edges
    missing: Missing
    unreadable: Unreadable
    read_chunks: bool = True


GC = Rule(Edges.CLOSURE | Edges.HISTORY | Edges.DELTA_BASES, Missing.REPORT, Unreadable.RAISE)
FSCK = Rule(Edges.CLOSURE | Edges.HISTORY | Edges.DELTA_BASES, Missing.REPORT, Unreadable.SKIP)
PROMISES = Rule(Edges.CLOSURE | Edges.HISTORY, Missing.PROMISED, Unreadable.SKIP, read_chunks=False)
ANCESTRY = Rule(Edges.HISTORY, Missing.PROMISED, Unreadable.RAISE)
FIRST = Rule(Edges.FIRST_PARENT, Missing.RAISE, Unreadable.RAISE)
LOG = Rule(Edges.FIRST_PARENT, Missing.REPORT, Unreadable.RAISE)
#: The data some versions need, without their history: tree, manifests, chunks and the bases
#: those chunks are stored against (what archiving must leave in place for live versions).
DATA = Rule(Edges.CLOSURE | Edges.DELTA_BASES, Missing.REPORT, Unreadable.RAISE)
#: The same, for fsck: an unreadable object is reported on its own and not followed.
FSCK_DATA = Rule(Edges.CLOSURE | Edges.DELTA_BASES, Missing.REPORT, Unreadable.SKIP)
#: Versions and deployment records only: history, and the versions records serve, never a tree
#: (which versions archiving must keep).
LIVE = Rule(Edges.HISTORY | Edges.SERVED, Missing.REPORT, Unreadable.SKIP)


@dataclass(frozen=True)
class Node:
    """What the walk needs of one object: its metadata value (None for a chunk, whose data is
    never parsed here) and the base it is stored against as a delta, if any."""

    value: dict[str, Any] | None
    delta_base: ObjectId | None = None


class ObjectReader(Protocol):
    def read_node(self, oid: ObjectId) -> Node:
        """The object's ``Node``; ``NotFound`` when absent, another ``MvcError`` when present
        but unreadable."""
        ...


class StoreReader:
    """``ObjectReader`` over an object store: chunks are recognised by their envelope, only
    metadata objects are decoded."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def read_node(self, oid: ObjectId) -> Node:
        stored = self.objects.read_stored(oid)
        base = codec.delta_base(stored)
        if base is not None and not is_object_id(base[0]):
            raise CorruptObject(f"object {short(oid)} names a delta base that is not an id")
        delta = ObjectId(base[0]) if base else None
        if not codec.is_meta(stored):
            return Node(None, delta)
        return Node(self.objects.get_meta(oid), delta)


@dataclass(frozen=True)
class Missed:
    """An absent object and the path that reached it, from a root: ``("a ref", "version
    1a2b…", "tree 3c4d…")`` means a ref's version needs a tree that needs it."""

    object: ObjectId
    path: tuple[str, ...]

    @property
    def needed_by(self) -> str:
        return self.path[-1]

    @property
    def trail(self) -> str:
        """The path for a message, shortened in the middle when long (deep history)."""
        path = self.path
        if len(path) > 5:
            path = (*path[:2], f"… {len(path) - 4} more", *path[-2:])
        return " → ".join(path)


@dataclass(slots=True)
class _Step:
    oid: ObjectId
    came_from: ObjectId | None  # None for a root
    via: str  # the kind of what named it ("version", "tree"…), or "delta" for a delta's base
    chunk: bool = False  # named by a file manifest (or a tree's one-chunk entry)

    @property
    def label(self) -> str:
        """Who needed it: "a ref", "version 1a2b…", "delta 3c4d…"."""
        return "a ref" if self.came_from is None else f"{self.via} {short(self.came_from)}"


@dataclass
class Walk:
    """One traversal under ``rule``. ``reached`` holds every object reached (with ``known``:
    objects a previous walk reached with everything below them; the walk stops there);
    ``missing`` what ``Missing.REPORT`` left out."""

    reader: ObjectReader
    rule: Rule
    reached: set[ObjectId] = field(default_factory=set)
    missing: list[Missed] = field(default_factory=list)
    _came: dict[ObjectId, _Step] = field(default_factory=dict)  # how each was reached

    def run(self, roots: Iterable[ObjectId]) -> Iterator[ObjectId]:
        """Walk from ``roots``, yielding each object as it is reached (depth first)."""
        stack = [_Step(ObjectId(r), None, "") for r in reversed(list(roots))]
        while stack:
            step = stack.pop()
            if step.oid in self.reached:
                continue
            if step.chunk and not self.rule.read_chunks:
                self.reached.add(step.oid)
                yield step.oid
                continue
            try:
                node = self.reader.read_node(step.oid)
            except NotFound as exc:
                if self._absent(step, exc):
                    yield step.oid
                continue
            except MvcError as exc:
                self._unreadable(step, exc)
                self.reached.add(step.oid)  # present, so reached; what it names is unknown
                yield step.oid
                continue
            self.reached.add(step.oid)
            self._came[step.oid] = step
            try:
                children = self._edges(step.oid, node)
            except (KeyError, TypeError, IndexError, AttributeError) as exc:
                self._unreadable(step, CorruptObject(f"its edges do not parse ({exc!r})"))
                children = []
            yield step.oid
            stack.extend(reversed(children))

    def _absent(self, step: _Step, exc: NotFound) -> bool:
        """Handle an absent object; whether it counts as reached."""
        if self.rule.missing is Missing.PROMISED:
            self.reached.add(step.oid)
            return True
        missed = Missed(step.oid, self._path_to(step))
        if self.rule.missing is Missing.RAISE:
            raise NotFound(f"{exc.message} (needed by {missed.trail})", hint=exc.hint) from exc
        self.missing.append(missed)
        return False

    def _unreadable(self, step: _Step, exc: MvcError) -> None:
        if self.rule.unreadable is Unreadable.RAISE:
            raise CorruptObject(
                f"object {short(step.oid)} (needed by {step.label}) cannot be read: {exc.message}",
                object_id=step.oid,
                hint=exc.hint,
            ) from exc

    def _path_to(self, step: _Step) -> tuple[str, ...]:
        labels = [step.label]
        while step.came_from is not None:
            step = self._came[step.came_from]
            labels.append(step.label)
        return tuple(reversed(labels))

    def _edges(self, oid: ObjectId, node: Node) -> list[_Step]:
        edges = self.rule.edges
        out: list[_Step] = []
        if node.delta_base is not None and Edges.DELTA_BASES in edges:
            out.append(_Step(node.delta_base, oid, "delta"))
        value = node.value
        if value is None:
            return out
        kind = sys.intern(value["type"])  # one string per kind, however many steps name it

        def add(ids: Iterable[Any], *, chunk: bool = False) -> None:
            for child in ids:
                if not (isinstance(child, str) and is_object_id(child)):
                    raise TypeError(f"{child!r:.80} is not an object id")
                out.append(_Step(ObjectId(child), oid, kind, chunk))

        if Edges.CLOSURE in edges:
            if kind == "file":
                add((c[0] for c in value["chunks"]), chunk=True)
            elif kind == "tree":  # a one-chunk file's entry names its chunk (m == b3)
                entries = value["files"].values()
                add(e["m"] for e in entries if e["m"] != e.get("b3"))
                add((e["m"] for e in entries if e["m"] == e.get("b3")), chunk=True)
            elif kind == "version":
                add([value["tree"]])
            else:  # deployment records and other kinds list what they name in ``refs``
                add(x for x in value.get("refs", []) if isinstance(x, str) and is_object_id(x))
        elif Edges.SERVED in edges and kind not in ("file", "tree", "version"):
            add(x for x in value.get("refs", []) if isinstance(x, str) and is_object_id(x))
        if kind == "version":
            parents = value["parents"]
            if Edges.HISTORY in edges:
                add(parents)
            elif Edges.FIRST_PARENT in edges:
                add(parents[:1])
            if Edges.LINEAGE in edges:
                add(lineage_ids(value))
        elif Edges.HISTORY in edges:
            previous = value.get("previous")
            add([previous] if isinstance(previous, str) and is_object_id(previous) else [])
        return out


def lineage_ids(version: dict[str, Any]) -> list[ObjectId]:
    """The versions a version's lineage names: its ``base`` and each ``derived_from``."""
    lineage = version.get("lineage")
    if not isinstance(lineage, dict):
        return []
    named = [lineage.get("base"), *(lineage.get("derived_from") or [])]
    return [
        ObjectId(ref["version"])
        for ref in named
        if isinstance(ref, dict)
        and isinstance(ref.get("version"), str)
        and is_object_id(ref["version"])
    ]


def walk(
    reader: ObjectReader,
    roots: Iterable[ObjectId],
    rule: Rule,
    *,
    known: Iterable[ObjectId] = (),
) -> Walk:
    """Run a whole walk from ``roots`` and return it (``reached``, ``missing``)."""
    done = Walk(reader, rule, reached=set(known))
    for _ in done.run(roots):
        pass
    return done


# --- the callers' walks, over an object store -------------------------------------------------


def reachable(
    objects: ObjectStore,
    roots: Iterable[ObjectId],
    rule: Rule = FSCK,
    *,
    known: Iterable[ObjectId] = (),
) -> Walk:
    """What ``roots`` reach in a store under ``rule`` (gc: ``GC``, fsck: ``FSCK``)."""
    return walk(StoreReader(objects), roots, rule, known=known)


def metadata_reach(objects: ObjectStore, roots: Iterable[ObjectId]) -> set[ObjectId]:
    """Every id the metadata below ``roots`` names (history included), present or not: what a
    remote the roots came from promises. Chunk ids come from file manifests, never read."""
    return walk(StoreReader(objects), roots, PROMISES).reached


def is_ancestor(objects: ObjectStore, ancestor: ObjectId, descendant: ObjectId) -> bool:
    """Whether ``ancestor`` is ``descendant`` or in its history (parents, earlier records)."""
    return any(oid == ancestor for oid in Walk(StoreReader(objects), ANCESTRY).run([descendant]))


def first_parents(
    objects: ObjectStore, version: ObjectId, rule: Rule = FIRST
) -> Iterator[ObjectId]:
    """``version``, its first parent, that one's first parent… (read as they are yielded).
    With ``FIRST`` an absent one is an error; with ``LOG`` the history ends there."""
    return Walk(StoreReader(objects), rule).run([version])


def first_parent(objects: ObjectStore, version: ObjectId, steps: int, what: str) -> ObjectId:
    """The ``steps``-th first parent of ``version`` (``REV~N``); ``what`` names the REV."""
    found = -1
    for found, oid in enumerate(first_parents(objects, version)):
        if found == steps:
            return oid
    raise NotFound(
        f"{what} has only {found} earlier version(s); ~{steps} goes past the first",
        hint=f"use at most ~{found}; `mvc log` lists the history",
    )
