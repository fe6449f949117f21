"""Lineage: what a version was made from, and what was made from it.

A version records its parents in the version object itself; everything else goes in its
``lineage`` mapping, written at commit time and immutable afterwards:

- ``datasets``: ``[{"name", "uri", "hash", "hashed", ...}]`` from ``--dataset NAME=URI[@HASH]``;
  a local path is hashed with blake3 (a folder: the blake3 of its sorted file list with each
  file's blake3), a URI with a scheme is recorded as given;
- ``base``: the base model of an adapter (``--base SPEC``), as ``{"model", "version", "tree",
  "spec"}`` — the version id and its content (tree) hash;
- ``derived_from``: a list of the same, for distillation, quantisation… (``--from SPEC``);
- ``adapter``: facts about a PEFT adapter folder (type, rank, alpha, target modules);
- ``merged_adapter`` and ``derivation``: written by ``merge-adapter``.

Queries walk the catalog (``mvc.ops.catalog``): ancestors through parents and lineage edges,
descendants through the reverse edges. ``layout_graph`` draws branch lines for ``log --graph``.
"""

from __future__ import annotations

import heapq
import os
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mvc.errors import CorruptObject, InvalidInput, NotFound, UsageError
from mvc.ids import ObjectId, new_hasher, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.objects import decode_version
from mvc.ops.catalog import Catalog, Name, edges, load_catalog
from mvc.repo import Repo
from mvc.specs import resolve

_HASH = re.compile(r"^(?:[a-z0-9-]+:)?[0-9a-fA-F]{8,128}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DATASET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
_READ = 1 << 20


# --- recording ------------------------------------------------------------------------------------


def version_ref(repo: Repo, version: ObjectId, spec: str) -> dict[str, Any]:
    """How lineage names another version: its id, its content (tree) hash, and the spec given."""
    value = repo.objects.get_version(version)
    return {"model": value.model, "version": version, "tree": value.tree, "spec": spec}


def _hash_file(path: str) -> str:
    hasher = new_hasher()
    with open(path, "rb") as handle:
        while block := handle.read(_READ):
            hasher.update(block)
    return str(hasher.hexdigest())


def hash_local_dataset(path: str) -> dict[str, Any]:
    """blake3 of a file, or of a folder's sorted ``path\\0blake3\\n`` listing."""
    if os.path.isfile(path):
        return {"hash": "blake3:" + _hash_file(path), "files": 1, "size": os.path.getsize(path)}
    listing = new_hasher()
    files = size = 0
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            if not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            listing.update(f"{rel}\0{_hash_file(full)}\n".encode())
            files += 1
            size += os.path.getsize(full)
    return {"hash": "blake3:" + listing.hexdigest(), "files": files, "size": size}


def parse_dataset(text: str) -> tuple[str, str, str | None]:
    """``NAME=URI[@HASH]`` -> (name, uri, hash or None). Pure."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not rest:
        raise UsageError(
            f"--dataset {text!r} is not NAME=URI[@HASH]",
            hint="e.g. --dataset squad=data/squad or --dataset wiki=s3://corp/wiki@sha256:ab12…",
        )
    if not _DATASET_NAME.match(name):
        raise UsageError(f"dataset name {name!r} uses letters, digits, '.', '_', '-' and '/' only")
    uri, at, digest = rest.rpartition("@")
    if at and uri and _HASH.match(digest):
        return name, uri, digest
    return name, rest, None


def dataset_entry(text: str) -> dict[str, Any]:
    name, uri, given = parse_dataset(text)
    local = uri[len("file://") :] if uri.startswith("file://") else None
    if local is None and not _SCHEME.match(uri):
        local = uri
    entry: dict[str, Any] = {"name": name, "uri": uri, "hash": given, "hashed": False}
    if local is None:
        return entry
    if not os.path.exists(local):
        raise NotFound(
            f"dataset {name!r}: {local} does not exist here",
            hint="give an existing file or folder (it is hashed), or a URI with a scheme "
            "(s3://, hf://, https://) and optionally @HASH",
        )
    facts = hash_local_dataset(local)
    if given is not None:
        ours = facts["hash"].split(":", 1)[1]
        theirs = given.split(":", 1)[1] if ":" in given else given
        if (
            given.split(":", 1)[0] if ":" in given else "blake3"
        ) != "blake3" or not ours.startswith(theirs.lower()):
            raise InvalidInput(
                f"dataset {name!r}: {local} hashes to {facts['hash']}, not {given}",
                hint="drop @HASH to record what is there now, or point at the right data",
            )
    entry.update(facts, hash=facts["hash"], hashed=True)
    return entry


def build_lineage(
    repo: Repo,
    *,
    datasets: list[str] | None = None,
    base: str | None = None,
    derived_from: list[str] | None = None,
) -> dict[str, Any]:
    """The ``lineage`` mapping for a commit, from the command line's --dataset/--base/--from."""
    lineage: dict[str, Any] = {}
    entries = [dataset_entry(text) for text in datasets or []]
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise UsageError("each --dataset needs its own NAME")
    if entries:
        lineage["datasets"] = entries
    if base:
        lineage["base"] = version_ref(repo, resolve(repo, base).version, base)
    if derived_from:
        lineage["derived_from"] = [
            version_ref(repo, resolve(repo, spec).version, spec) for spec in derived_from
        ]
    return lineage


# --- querying -------------------------------------------------------------------------------------


@dataclass
class Node(JsonShaped):
    id: str  # a version id, or "dataset:NAME@HASH-or-URI"
    kind: str  # version, dataset, missing
    model: str | None = None
    time: str | None = None
    message: str | None = None
    names: list[Name] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        if self.kind == "dataset":
            where = str(self.detail.get("uri"))
            digest = self.detail.get("hash")
            return f"{self.detail.get('name')} {where}" + (
                f" ({str(digest)[:19]})" if digest else ""
            )
        if self.kind == "missing":
            return f"{short(self.id)} (not in this store)"
        names = ", ".join(n.name for n in self.names if n.model == self.model)
        first = (self.message or "").splitlines()[0] if self.message else ""
        return (
            f"{self.model}@{short(self.id)}"
            + (f" ({names})" if names else "")
            + (f" {self.time}" if self.time else "")
            + (f"  {first}" if first else "")
        )

    @property
    def dataset(self) -> dict[str, Any] | None:
        return self.detail if self.kind == "dataset" else None

    json_shape: ClassVar[Shape] = Shape(
        exclude=("detail",), computed={"dataset": "dataset"}, optional=("dataset",)
    )


@dataclass(frozen=True)
class Edge(JsonShaped):
    child: str  # the later version
    parent: str  # what it came from
    relation: str  # parent, base, derived_from, merged_adapter, dataset

    json_shape: ClassVar[Shape] = Shape(rename={"child": "from", "parent": "to"})


@dataclass
class LineageGraph(JsonShaped):
    root: ObjectId
    nodes: dict[str, Node] = field(default_factory=dict)
    ancestry: list[Edge] = field(default_factory=list)
    descendants: list[Edge] = field(default_factory=list)
    truncated: bool = False  # depth stopped the walk somewhere

    def up(self, node: str) -> list[Edge]:
        return [e for e in self.ancestry if e.child == node]

    def down(self, node: str) -> list[Edge]:
        return [e for e in self.descendants if e.parent == node]

    json_shape: ClassVar[Shape] = Shape(
        convert={"nodes": lambda nodes: dict(sorted(nodes.items()))}
    )

    def to_dot(self) -> str:
        def quote(text: str) -> str:
            escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            return '"' + escaped + '"'

        lines = ["digraph lineage {", "  rankdir=BT;", '  node [fontname="Helvetica"];']
        for key, node in sorted(self.nodes.items()):
            if node.kind == "dataset":
                label = f"{node.detail.get('name')}\n{node.detail.get('hash') or node.detail.get('uri')}"
                shape = "cylinder"
            elif node.kind == "missing":
                label, shape = f"{short(key)}\n(not here)", "box, style=dashed"
            else:
                tags = ", ".join(n.name for n in node.names if n.model == node.model)
                label = f"{node.model}\n{short(key)}" + (f"\n{tags}" if tags else "")
                shape = "box, style=bold" if key == self.root else "box"
            lines.append(f"  {quote(key)} [label={quote(label)}, shape={shape}];")
        for edge in dict.fromkeys(self.ancestry + self.descendants):
            style = "" if edge.relation == "parent" else ", style=dashed"
            lines.append(
                f"  {quote(edge.child)} -> {quote(edge.parent)} [label={quote(edge.relation)}{style}];"
            )
        lines.append("}")
        return "\n".join(lines) + "\n"


def _record(repo: Repo, catalog: Catalog, oid: ObjectId) -> dict[str, Any] | None:
    record = catalog.records.get(oid)
    if record is None:
        try:
            record = repo.objects.get_meta(oid)
            if record.get("type") != "version":
                return None
            decode_version(record, oid)  # checked once before the catalog trusts it
        except (NotFound, CorruptObject):
            return None
        catalog.records[oid] = record
    return record


def _node(repo: Repo, catalog: Catalog, oid: ObjectId) -> Node:
    record = _record(repo, catalog, oid)
    if record is None:
        return Node(oid, "missing")
    return Node(
        oid,
        "version",
        record.get("model"),
        record.get("time"),
        record.get("message"),
        catalog.names_of(oid),
    )


def _dataset_nodes(record: dict[str, Any]) -> list[Node]:
    lineage = record.get("lineage") if isinstance(record.get("lineage"), dict) else {}
    out = []
    for item in lineage.get("datasets", []) if isinstance(lineage, dict) else []:
        if isinstance(item, dict) and item.get("name"):
            key = f"dataset:{item['name']}@{item.get('hash') or item.get('uri')}"
            out.append(Node(key, "dataset", detail=dict(item)))
    return out


def lineage(
    repo: Repo, spec: str, *, depth: int = 10, catalog: Catalog | None = None
) -> LineageGraph:
    """Ancestry and descendants of a version, each at most ``depth`` steps away (0: no limit)."""
    if depth < 0:
        raise UsageError("--depth must be 0 (no limit) or more")
    root = resolve(repo, spec).version
    catalog = catalog or load_catalog(repo)
    graph = LineageGraph(root)
    graph.nodes[root] = _node(repo, catalog, root)
    limit = depth or None

    queue: deque[tuple[ObjectId, int]] = deque([(root, 0)])
    seen = {root}
    while queue:
        oid, level = queue.popleft()
        record = _record(repo, catalog, oid)
        if record is None:
            continue
        if limit is not None and level >= limit:
            if edges(record):
                graph.truncated = True
            continue
        for dataset in _dataset_nodes(record):
            graph.nodes.setdefault(dataset.id, dataset)
            graph.ancestry.append(Edge(oid, dataset.id, "dataset"))
        for target, relation in edges(record):
            graph.ancestry.append(Edge(oid, target, relation))
            if target not in seen:
                seen.add(target)
                graph.nodes[target] = _node(repo, catalog, target)
                queue.append((target, level + 1))

    children = catalog.children()
    queue = deque([(root, 0)])
    seen = {root}
    while queue:
        oid, level = queue.popleft()
        below = children.get(oid, [])
        if limit is not None and level >= limit:
            graph.truncated = graph.truncated or bool(below)
            continue
        for child, relation in sorted(
            below, key=lambda c: (catalog.records[c[0]].get("time", ""), c[0])
        ):
            graph.descendants.append(Edge(child, oid, relation))
            if child not in seen:
                seen.add(child)
                graph.nodes.setdefault(child, _node(repo, catalog, child))
                queue.append((child, level + 1))
    return graph


# --- log --graph ----------------------------------------------------------------------------------


@dataclass
class GraphRow:
    graph: str  # the lane drawing, e.g. "| * " or "|/"
    version: ObjectId | None  # None on connector-only rows


def topo_order(
    times: dict[ObjectId, str], parents: dict[ObjectId, list[ObjectId]]
) -> list[ObjectId]:
    """Newest first, every version before its parents (ties broken by id)."""
    pending = {oid: 0 for oid in times}
    for oid in times:
        for parent in parents.get(oid, []):
            if parent in pending:
                pending[parent] += 1
    ready = [(_desc(times[o]), o) for o, n in pending.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, oid = heapq.heappop(ready)
        order.append(oid)
        for parent in parents.get(oid, []):
            if parent in pending:
                pending[parent] -= 1
                if pending[parent] == 0:
                    heapq.heappush(ready, (_desc(times[parent]), parent))
    return order


def _desc(time: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in time)


def layout_graph(order: list[ObjectId], parents: dict[ObjectId, list[ObjectId]]) -> list[GraphRow]:
    """Lanes for ``log --graph``: ``*`` a version, ``|`` a line going on, ``/`` lines joining,
    ``\\`` a merge's other parent branching off. Pure."""
    present = set(order)
    lanes: list[ObjectId | None] = []
    rows: list[GraphRow] = []

    def draw(marks: dict[int, str], between: dict[int, str]) -> str:
        cells = [" "] * (2 * len(lanes))
        for index, lane in enumerate(lanes):
            if lane is not None:
                cells[2 * index] = "|"
        for index, char in marks.items():
            cells[2 * index] = char
        for index, char in between.items():
            cells[max(0, 2 * index - 1)] = char
            cells[2 * index] = " "  # the lane starts (or ends) on the slant
        return "".join(cells).rstrip()

    for oid in order:
        if oid not in lanes:
            if None in lanes:
                lanes[lanes.index(None)] = oid
            else:
                lanes.append(oid)
        column = lanes.index(oid)
        joining = [i for i, lane in enumerate(lanes) if lane == oid and i != column]
        if joining:
            rows.append(GraphRow(draw({}, {i: "/" for i in joining}), None))
            for i in joining:
                lanes[i] = None
        rows.append(GraphRow(draw({column: "*"}, {}), oid))
        mine = [p for p in parents.get(oid, []) if p in present]
        lanes[column] = mine[0] if mine else None
        for parent in mine[1:]:
            if parent in lanes:
                continue
            free = [i for i in range(column + 1, len(lanes)) if lanes[i] is None]
            if free:
                lanes[free[0]] = parent
                index = free[0]
            else:
                lanes.append(parent)
                index = len(lanes) - 1
            rows.append(GraphRow(draw({}, {index: "\\"}), None))
        while lanes and lanes[-1] is None:
            lanes.pop()
    return rows


@dataclass
class GraphLog:
    rows: list[GraphRow]
    records: dict[ObjectId, dict[str, Any]]
    names: dict[ObjectId, list[Name]]


def graph_log(repo: Repo, spec: str, *, limit: int | None = None) -> GraphLog:
    """Every version on the model's branches (and the spec's), drawn as lanes, newest first."""
    resolved = resolve(repo, spec)
    model = resolved.model
    catalog = load_catalog(repo, [model])
    tips = [oid for oid, names in catalog.names.items() if any(n.kind == "branch" for n in names)]
    tips.append(resolved.version)
    parents: dict[ObjectId, list[ObjectId]] = {}
    times: dict[ObjectId, str] = {}
    stack = list(tips)
    while stack:
        oid = stack.pop()
        if oid in times:
            continue
        record = _record(repo, catalog, oid)
        if record is None or record.get("model") != model:
            continue
        times[oid] = str(record.get("time", ""))
        parents[oid] = [ObjectId(p) for p in record.get("parents", [])]
        stack.extend(parents[oid])
    order = topo_order(times, parents)
    if limit is not None:
        order = order[:limit]
    rows = layout_graph(order, parents)
    return GraphLog(rows, {o: catalog.records[o] for o in order}, catalog.names)
