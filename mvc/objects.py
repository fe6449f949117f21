"""The metadata objects of a store: file manifests, trees and versions.

Each is canonical JSON with a ``type`` and a ``format`` field; its id is the blake3 of those bytes.
``decode_*`` validate everything, because objects also arrive from remotes we do not trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mvc.canonical import decode_json, encode_canonical
from mvc.errors import CorruptObject, InvalidInput, UnknownFormat
from mvc.ids import ObjectId, is_object_id
from mvc.paths import check_twins, validate_version_path

FORMAT = 1

# How a file's bytes are understood: decides chunking and what `show` says about it.
KIND_SAFETENSORS = "safetensors"
KIND_PICKLE = "pickle"  # stored as bytes, never unpickled
KIND_BLOB = "blob"
KINDS = (KIND_SAFETENSORS, KIND_PICKLE, KIND_BLOB)


@dataclass(frozen=True)
class ChunkRef:
    id: ObjectId
    size: int


@dataclass(frozen=True)
class FileManifest:
    """A file's content: its chunks in order, total size and whole-file blake3."""

    size: int
    b3: str
    kind: str
    chunks: tuple[ChunkRef, ...]

    @property
    def one_chunk(self) -> bool:
        """Whether the file is one chunk, so its tree entry names the chunk, not a manifest
        (``TreeEntry.one_chunk``)."""
        return len(self.chunks) == 1 and self.chunks[0].id == self.b3

    def to_json(self) -> dict[str, Any]:
        # Canonical object bytes (ids are their hash): spelled out, so a new field can never
        # change an id unnoticed; not a --json shape (tests/property/test_objects.py pins the bytes).
        return {
            "type": "file",
            "format": FORMAT,
            "size": self.size,
            "b3": self.b3,
            "kind": self.kind,
            "chunks": [[c.id, c.size] for c in self.chunks],
        }


@dataclass(frozen=True)
class TreeEntry:
    """One file of a version: its manifest and, for cheap listings, its size and blake3.

    A file stored as one chunk has no manifest object (store format 2): ``manifest`` is then
    the chunk's id, which is the file's blake3 (a chunk's id is the blake3 of its bytes), so
    ``manifest == b3`` says so. No manifest can have that id: it would have to hold its own
    hash. Such a file costs one object instead of two, which is most of a folder of small
    files."""

    manifest: ObjectId
    size: int
    b3: str
    kind: str
    executable: bool = False

    @property
    def one_chunk(self) -> bool:
        """Whether the file is the one chunk ``b3`` and has no manifest object."""
        return self.manifest == self.b3

    def implied_manifest(self) -> FileManifest:
        """The manifest a one-chunk entry stands for (never stored)."""
        return FileManifest(
            self.size, self.b3, self.kind, (ChunkRef(ObjectId(self.b3), self.size),)
        )


@dataclass(frozen=True)
class Tree:
    files: dict[str, TreeEntry]

    @property
    def store_format(self) -> int:
        """The store format a store must have to hold this tree (2: it has one-chunk entries)."""
        return 2 if any(e.one_chunk for e in self.files.values()) else 1

    def to_json(self) -> dict[str, Any]:
        # Canonical object bytes (ids are their hash): spelled out, so a new field can never
        # change an id unnoticed; not a --json shape (tests/property/test_objects.py pins the bytes).
        return {
            "type": "tree",
            "format": FORMAT,
            "files": {
                path: {
                    "m": e.manifest,
                    "size": e.size,
                    "b3": e.b3,
                    "kind": e.kind,
                    "x": e.executable,
                }
                for path, e in sorted(self.files.items())
            },
        }


@dataclass(frozen=True)
class Version:
    """An immutable snapshot of a model with its provenance."""

    model: str
    tree: ObjectId
    parents: tuple[ObjectId, ...]
    author: str
    time: str  # ISO-8601 UTC, seconds precision, 'Z' suffix
    message: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] | None = None
    # datasets, base model of an adapter, derivation source, adapter facts…
    lineage: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # Canonical object bytes (ids are their hash): spelled out, so a new field can never
        # change an id unnoticed; not a --json shape (tests/property/test_objects.py pins the bytes).
        return {
            "type": "version",
            "format": FORMAT,
            "model": self.model,
            "tree": self.tree,
            "parents": list(self.parents),
            "author": self.author,
            "time": self.time,
            "message": self.message,
            "params": self.params,
            "metrics": self.metrics,
            "git": self.git,
            "lineage": self.lineage,
        }


def encode_object(obj: FileManifest | Tree | Version | dict[str, Any]) -> bytes:
    return encode_canonical(obj if isinstance(obj, dict) else obj.to_json())


# --- decoding: every field checked, because remotes are not trusted -------------------------


def _require(cond: bool, what: str, oid: str) -> None:
    if not cond:
        raise CorruptObject(f"object {oid[:12]} is malformed: {what}", object_id=oid)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def decode_meta(data: bytes, oid: str) -> dict[str, Any]:
    try:
        value: Any = decode_json(data, f"object {oid[:12]}")
    except InvalidInput as exc:
        raise CorruptObject(str(exc), object_id=oid) from exc
    _require(isinstance(value, dict) and isinstance(value.get("type"), str), "no type", oid)
    if value.get("format") != FORMAT:
        raise UnknownFormat(
            f"object {oid[:12]} has format {value.get('format')!r}; this mvc knows {FORMAT}",
            hint="upgrade mvc",
        )
    meta: dict[str, Any] = value  # a dict: checked by _require above
    return meta


def decode_file_manifest(value: dict[str, Any], oid: str) -> FileManifest:
    _require(value.get("type") == "file", "not a file manifest", oid)
    chunks: Any = value.get("chunks")
    _require(isinstance(chunks, list), "chunks is not a list", oid)
    refs = []
    for item in chunks:
        _require(
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and is_object_id(item[0])
            and _is_size(item[1]),
            "bad chunk entry",
            oid,
        )
        refs.append(ChunkRef(ObjectId(item[0]), item[1]))
    size: Any = value.get("size")
    b3: Any = value.get("b3")
    kind: Any = value.get("kind")
    _require(_is_size(size) and sum(r.size for r in refs) == size, "sizes do not add up", oid)
    _require(isinstance(b3, str) and is_object_id(b3), "bad whole-file hash", oid)
    _require(kind in KINDS, "unknown file kind", oid)
    return FileManifest(size=size, b3=b3, kind=kind, chunks=tuple(refs))


def decode_tree(value: dict[str, Any], oid: str, *, portable: bool = False) -> Tree:
    """A tree's value, checked. ``portable``: hold its paths to the rule for everything that
    enters a store (``paths.path_problem``: no Windows device names, case twins...); without
    it, only to what is unsafe here, so what this store already holds stays readable."""
    _require(value.get("type") == "tree", "not a tree", oid)
    files: Any = value.get("files")
    _require(isinstance(files, dict), "files is not a mapping", oid)
    entries = {}
    for path, raw in files.items():
        try:
            validate_version_path(path, portable=portable)
        except InvalidInput as exc:
            raise CorruptObject(
                f"tree {oid[:12]} holds an unsafe path: {exc}", object_id=oid
            ) from exc
        _require(isinstance(raw, dict), "bad entry", oid)
        manifest, size, b3, kind = raw.get("m"), raw.get("size"), raw.get("b3"), raw.get("kind")
        _require(isinstance(manifest, str) and is_object_id(manifest), "bad manifest id", oid)
        _require(_is_size(size) and isinstance(b3, str) and is_object_id(b3), "bad entry", oid)
        _require(kind in KINDS and isinstance(raw.get("x"), bool), "bad entry", oid)
        _require(manifest != b3 or size > 0, "an empty file cannot be a chunk", oid)
        entries[path] = TreeEntry(ObjectId(manifest), size, b3, kind, raw["x"])
    try:
        if portable:
            check_twins(entries)
    except InvalidInput as exc:
        raise CorruptObject(f"tree {oid[:12]} holds {exc}", object_id=oid) from exc
    for path in entries:  # a path cannot be both a file and a folder ("a" and "a/b")
        folder = path
        while "/" in folder:
            folder = folder.rsplit("/", 1)[0]
            _require(folder not in entries, f"{path!r} is inside the file {folder!r}", oid)
    return Tree(entries)


def decode_version(value: dict[str, Any], oid: str) -> Version:
    _require(value.get("type") == "version", "not a version", oid)
    tree: Any = value.get("tree")
    parents: Any = value.get("parents")
    _require(isinstance(tree, str) and is_object_id(tree), "bad tree id", oid)
    _require(
        isinstance(parents, list) and all(isinstance(p, str) and is_object_id(p) for p in parents),
        "bad parents",
        oid,
    )
    for key in ("model", "author", "time", "message"):
        _require(isinstance(value.get(key), str), f"{key} is not text", oid)
    for key in ("params", "metrics", "lineage"):
        _require(isinstance(value.get(key), dict), f"{key} is not a mapping", oid)
    _require(value.get("git") is None or isinstance(value.get("git"), dict), "bad git", oid)
    return Version(
        model=value["model"],
        tree=ObjectId(tree),
        parents=tuple(ObjectId(p) for p in parents),
        author=value["author"],
        time=value["time"],
        message=value["message"],
        params=value["params"],
        metrics=value["metrics"],
        git=value["git"],
        lineage=value["lineage"],
    )


def child_ids(value: dict[str, Any]) -> list[ObjectId]:
    """Ids whose presence a validated metadata object needs to be complete (its closure).

    A version's closure is its tree; its parents are history (see ``history_ids``), which a
    partial pull may leave out. Other object types (deployment records, …) list what they name
    in a top-level ``refs`` array.
    """
    kind = value["type"]
    if kind == "file":
        return [ObjectId(c[0]) for c in value["chunks"]]
    if kind == "tree":
        return [ObjectId(e["m"]) for e in value["files"].values()]
    if kind == "version":
        return [ObjectId(value["tree"])]
    return [ObjectId(x) for x in value.get("refs", []) if isinstance(x, str) and is_object_id(x)]


def history_ids(value: dict[str, Any]) -> list[ObjectId]:
    """Earlier objects this one descends from: a version's parents, a record's predecessor."""
    if value["type"] == "version":
        return [ObjectId(p) for p in value["parents"]]
    previous = value.get("previous")
    return [ObjectId(previous)] if isinstance(previous, str) and is_object_id(previous) else []
