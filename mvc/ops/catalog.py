"""The catalog: every version reachable from a ref, and the names that point at it.

It is the index behind ``find`` and ``lineage``. Roots are read fresh on every use (branches,
tags, the versions channel records serve); history is followed through parents and lineage edges
(base, derived_from, merged_adapter). Version objects never change, so what the catalog keeps
about a version — its metadata, never its files — stays valid forever: it is cached in
``.mvc/cache/catalog.json`` (written atomically) and only versions not seen before are read from
the object store. A missing, damaged or foreign cache file is simply rebuilt from the objects; the
cache is never the only copy of anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mvc.deployment.records import arm_rev, decode_record
from mvc.errors import CorruptObject, InvalidInput, MvcError, NotFound
from mvc.ids import ObjectId, is_object_id
from mvc.jsonshape import JsonShaped
from mvc.objects import Version, decode_version
from mvc.refnames import CHANNELS, HEADS, TAGS
from mvc.repo import Repo

CACHE_KEY = "cache/catalog.json"
FORMAT = 1
LINEAGE_EDGES = ("base", "derived_from", "merged_adapter")


@dataclass(frozen=True)
class Name(JsonShaped):
    model: str
    kind: str  # branch, tag, channel
    name: str


def lineage_links(record: dict[str, Any]) -> list[tuple[ObjectId, str]]:
    """(version id, relation) for every lineage edge a version's metadata names."""
    lineage = record.get("lineage")
    if not isinstance(lineage, dict):
        return []
    links: list[tuple[ObjectId, str]] = []
    for relation in LINEAGE_EDGES:
        value = lineage.get(relation)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and is_object_id(str(item.get("version"))):
                links.append((ObjectId(item["version"]), relation))
    return links


def edges(record: dict[str, Any]) -> list[tuple[ObjectId, str]]:
    """Parents first (relation ``parent``), then lineage edges.

    Records are validated once, when they enter the catalog (``decode_version``), so parents
    are trusted here; this runs for every version on every query.
    """
    parents = [(p, "parent") for p in record["parents"]]
    return parents + lineage_links(record) if record["lineage"] else parents


@dataclass
class Catalog:
    records: dict[ObjectId, dict[str, Any]] = field(default_factory=dict)  # version JSON
    names: dict[ObjectId, list[Name]] = field(default_factory=dict)
    reachable: set[ObjectId] = field(default_factory=set)

    def version(self, oid: ObjectId) -> Version:
        return decode_version(self.records[oid], oid)

    def live(self) -> Iterator[tuple[ObjectId, dict[str, Any]]]:
        for oid in self.reachable:
            yield oid, self.records[oid]

    def children(self) -> dict[ObjectId, list[tuple[ObjectId, str]]]:
        """Reverse edges: for each version, who names it as parent, base, source or adapter."""
        out: dict[ObjectId, list[tuple[ObjectId, str]]] = {}
        for oid in self.reachable:
            for target, relation in edges(self.records[oid]):
                out.setdefault(target, []).append((oid, relation))
        return out

    def names_of(self, oid: ObjectId) -> list[Name]:
        return self.names.get(oid, [])


def _read_cache(repo: Repo) -> dict[ObjectId, dict[str, Any]]:
    try:
        data = json.loads(repo.storage.read(CACHE_KEY))
    except (NotFound, ValueError, UnicodeDecodeError, OSError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    versions = data.get("versions")
    if not isinstance(versions, dict):
        return {}
    return {
        ObjectId(k): v
        for k, v in versions.items()
        if isinstance(v, dict)
        and v.get("type") == "version"
        and isinstance(v.get("parents"), list)
        and isinstance(v.get("lineage"), dict)
    }


def _write_cache(repo: Repo, records: dict[ObjectId, dict[str, Any]]) -> None:
    body = json.dumps({"format": FORMAT, "versions": records}, separators=(",", ":"))
    try:
        repo.storage.write(CACHE_KEY, [body.encode()])
    except (OSError, MvcError):
        pass  # a cache that cannot be written is rebuilt next time


def drop_cache(repo: Repo) -> None:
    try:
        repo.storage.delete(CACHE_KEY)
    except (NotFound, OSError):
        pass


def roots(repo: Repo, models: Iterable[str] | None = None) -> Iterator[tuple[ObjectId, Name]]:
    """Every version a live ref names: branch tips, tags, and the arms of channel records."""
    wanted = set(models) if models is not None else None
    for kind in (HEADS, TAGS, CHANNELS):
        for ref in repo.refs.list_refs(kind):
            if wanted is not None and ref.model not in wanted:
                continue
            value = repo.refs.get(ref)
            if value is None:
                continue
            if kind != CHANNELS:
                yield value, Name(ref.model, "branch" if kind == HEADS else "tag", ref.name)
                continue
            try:
                record = decode_record(repo.objects.get_meta(value), value)
            except (NotFound, CorruptObject):
                continue
            for arm in record.arms:
                yield arm.version, Name(ref.model, "channel", arm_rev(record, arm))


def load_catalog(repo: Repo, models: Iterable[str] | None = None) -> Catalog:
    """The catalog of versions reachable from the refs of ``models`` (default: every model)."""
    cached = _read_cache(repo)
    catalog = Catalog(records=cached)
    added = 0
    stack: list[ObjectId] = []
    for oid, name in roots(repo, models):
        catalog.names.setdefault(oid, []).append(name)
        stack.append(oid)
    seen = catalog.reachable
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        record = catalog.records.get(oid)
        if record is None:
            try:
                record = repo.objects.get_meta(oid)
            except (NotFound, CorruptObject, InvalidInput):
                continue  # history beyond a partial pull, or damage fsck reports
            if record.get("type") != "version":
                continue
            try:
                decode_version(record, oid)  # every field checked once, before it is trusted
            except CorruptObject:
                continue
            catalog.records[oid] = record
            added += 1
        seen.add(oid)
        stack.extend(target for target, _ in edges(record) if target not in seen)
    if added or not cached and catalog.records:
        # keep what is still reachable (a full walk knows), and everything on a partial walk
        keep = catalog.records if models is not None else {k: catalog.records[k] for k in seen}
        _write_cache(repo, keep)
    return catalog
