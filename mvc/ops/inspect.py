"""Read-only views: log, show, ls, cat and the list of models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, ClassVar

from mvc.annotations import Annotation
from mvc.archives import ArchiveRecord, read_archive
from mvc.errors import CorruptObject, InvalidInput, NotFound
from mvc.formats.safetensors import SafetensorsHeader, parse_header
from mvc.formats.shards import BadIndex, check_index, is_index, parse_index
from mvc.graph import LOG, first_parents
from mvc.ids import ObjectId
from mvc.jsonshape import JsonShaped, Shape
from mvc.objects import KIND_PICKLE, KIND_SAFETENSORS, Tree, TreeEntry, Version
from mvc.ops.annotate import chain as annotation_chain
from mvc.refnames import CHANNELS, HEADS, TAGS
from mvc.remotes import ensure_present
from mvc.repo import Repo
from mvc.specs import Resolved, SpecLike, channel_arm, resolve


@dataclass
class LogEntry(JsonShaped):
    id: ObjectId
    version: Version

    json_shape: ClassVar[Shape] = Shape(
        convert={"version": lambda version: _version_json(version)}, flatten=("version",)
    )


def _entry_json(entry: TreeEntry) -> dict[str, Any]:
    """A file's tree entry under the names ``mvc show --json`` documents."""
    return {
        "size": entry.size,
        "blake3": entry.b3,
        "kind": entry.kind,
        "executable": entry.executable,
        "manifest": entry.manifest,  # a one-chunk file's chunk id (store format 2)
    }


def _version_json(version: Version) -> dict[str, Any]:
    data = version.to_json()
    data.pop("type")
    data.pop("format")
    return data


def log(repo: Repo, spec: SpecLike, *, limit: int | None = None) -> Iterator[LogEntry]:
    """Versions newest first along first parents (``--first-parent`` history)."""
    head = resolve(repo, spec).version
    # History beyond a partial pull is simply not here: the walk ends there (``LOG``).
    for current in islice(first_parents(repo.objects, head, LOG), limit):
        try:
            version = repo.objects.get_version(current)
        except NotFound:
            return  # not a version: nothing before it to show
        yield LogEntry(current, version)


@dataclass
class TensorSummary(JsonShaped):
    count: int
    parameters: int
    dtypes: dict[str, int]  # dtype -> parameter count
    metadata: dict[str, str]

    json_shape: ClassVar[Shape] = Shape(rename={"count": "tensors"})


@dataclass
class FileInfo(JsonShaped):
    path: str
    entry: TreeEntry
    tensors: TensorSummary | None = None

    @property
    def note(self) -> str | None:
        return "pickle: unsafe to load" if self.entry.kind == KIND_PICKLE else None

    json_shape: ClassVar[Shape] = Shape(
        convert={"entry": lambda entry: _entry_json(entry)},
        flatten=("entry",),
        computed={"note": "note"},
    )


@dataclass
class ShardInfo(JsonShaped):
    """A sharded checkpoint's index (``model.safetensors.index.json``) checked against its shards."""

    index: str
    shards: list[str]
    tensors: int
    total_size: int | None
    problems: list[str] = field(default_factory=list)


@dataclass
class VersionDetails(JsonShaped):
    resolved: Resolved
    version: Version
    files: list[FileInfo]
    names: dict[str, list[str]] = field(default_factory=dict)  # branches/tags/channels here
    shards: list[ShardInfo] | None = None  # one per shard index the version holds
    annotations: list[Annotation] = field(default_factory=list)  # newest first
    archived: ArchiveRecord | None = None  # its data is on a cold remote (`mvc restore`)

    @property
    def size(self) -> int:
        return sum(f.entry.size for f in self.files)

    json_shape: ClassVar[Shape] = Shape(
        rename={"resolved": "id"},
        convert={
            "resolved": lambda resolved: resolved.version,
            "version": lambda v: _version_json(v),
            "annotations": lambda notes: [n.to_json() for n in notes],
            "archived": lambda record: record.to_json(),
        },
        flatten=("version",),
        computed={"size": "size"},
        optional=("shards", "archived"),
    )


def _stored_header(repo: Repo, entry: TreeEntry) -> SafetensorsHeader | None:
    """The header of a stored safetensors file (its first chunk holds it), or None."""
    if entry.kind != KIND_SAFETENSORS:
        return None
    manifest = repo.objects.manifest_of(entry)
    if not manifest.chunks:
        return None
    head = repo.objects.get_bytes(manifest.chunks[0].id)
    try:
        return parse_header(head, manifest.size, "stored file")
    except InvalidInput:
        return None


def tensor_summary(repo: Repo, entry: TreeEntry) -> TensorSummary | None:
    header = _stored_header(repo, entry)
    if header is None:
        return None
    dtypes: dict[str, int] = {}
    total = 0
    for tensor in header.tensors:
        count = 1
        for dim in tensor.shape:
            count *= dim
        dtypes[tensor.dtype] = dtypes.get(tensor.dtype, 0) + count
        total += count
    return TensorSummary(len(header.tensors), total, dtypes, dict(header.metadata))


def names_at(repo: Repo, model: str, version: ObjectId) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"branches": [], "tags": [], "channels": []}
    names = [ref for kind in (HEADS, TAGS, CHANNELS) for ref in repo.refs.list_refs(kind, model)]
    for ref in names:  # not the notes refs: one per annotated version, and none names one
        if ref.kind == CHANNELS:
            try:
                if channel_arm(repo, model, ref.name, "stable") == version:
                    found["channels"].append(ref.name)
            except NotFound:
                pass
        elif repo.refs.get(ref) == version:
            found["branches" if ref.kind == HEADS else "tags"].append(ref.name)
    return found


def show(repo: Repo, spec: SpecLike, *, tensors: bool = True) -> VersionDetails:
    resolved = resolve(repo, spec)
    version = repo.objects.get_version(resolved.version)
    tree = repo.objects.get_tree(version.tree)
    files = [
        FileInfo(path, entry, tensor_summary(repo, entry) if tensors else None)
        for path, entry in sorted(tree.files.items())
    ]
    return VersionDetails(
        resolved,
        version,
        files,
        names_at(repo, resolved.model, resolved.version),
        _shards(repo, tree) or None,
        annotation_chain(repo, resolved.model, resolved.version),
        read_archive(repo.storage, resolved.version),
    )


_MAX_INDEX = 64 << 20  # a real index is kilobytes; a hostile one is not read whole


def _shards(repo: Repo, tree: Tree) -> list[ShardInfo]:
    indexes = [path for path in sorted(tree.files) if is_index(path)]
    if not indexes:
        return []
    listed: dict[str, dict[str, int] | None] = {}
    for path, entry in tree.files.items():
        header = _stored_header(repo, entry)
        listed[path] = {t.name: t.nbytes for t in header.tensors} if header else None
    found = []
    for path in indexes:
        if tree.files[path].size > _MAX_INDEX:
            found.append(ShardInfo(path, [], 0, None, [f"index over {_MAX_INDEX} bytes: not read"]))
            continue
        data = b"".join(repo.objects.iter_file(repo.objects.manifest_of(tree.files[path]), path))
        try:
            index = parse_index(data)
        except BadIndex as exc:
            found.append(ShardInfo(path, [], 0, None, [f"unreadable index: {exc}"]))
            continue
        report = check_index(path, index, listed)
        found.append(
            ShardInfo(path, report.shards, report.tensors, index.total_size, report.problems)
        )
    return found


def tree_of(repo: Repo, spec: SpecLike) -> tuple[Resolved, Tree]:
    resolved = resolve(repo, spec)
    return resolved, repo.objects.get_tree(repo.objects.get_version(resolved.version).tree)


def cat(repo: Repo, spec: SpecLike, path: str) -> Iterator[bytes]:
    """One file of a version, verified chunk by chunk."""
    resolved, tree = tree_of(repo, spec)
    entry = tree.files.get(path)
    if entry is None:
        raise NotFound(
            f"{path!r} is not in {resolved.model}@{resolved.version[:12]}",
            hint=f"list its files with `mvc ls {spec}`",
        )
    manifest = repo.objects.manifest_of(entry)
    if not all(repo.objects.has(chunk.id) for chunk in manifest.chunks):
        ensure_present(repo, resolved.version)  # fetched, not pulled: bring its data now
    return repo.objects.iter_file(manifest, path)


@dataclass
class ModelSummary(JsonShaped):
    model: str
    latest: ObjectId | None
    latest_time: str | None
    branches: list[str]
    tags: list[str]
    channels: list[str]
    path: str | None
    damaged: str | None = None  # why this model's refs cannot be read (the others still list)

    # "damaged" only for a model whose ref log cannot be read (then the other fields are empty).
    json_shape: ClassVar[Shape] = Shape(optional=("damaged",))


def models(repo: Repo) -> list[ModelSummary]:
    """Every model with live refs. A model whose ref log is damaged is listed with ``damaged``
    set, so one bad ref never hides the other models."""
    out = []
    for model in repo.refs.models():
        try:
            summary = _summary(repo, model)
        except CorruptObject as exc:
            binding = repo.binding(model)
            summary = ModelSummary(
                model, None, None, [], [], [], binding.path if binding else None, exc.message
            )
        if summary is not None:
            out.append(summary)
    return out


def _summary(repo: Repo, model: str) -> ModelSummary | None:
    refs = repo.refs.list_refs(model=model)
    if not refs:
        return None
    branches = [r.name for r in refs if r.kind == HEADS]
    tips = [repo.refs.get(r) for r in refs if r.kind == HEADS]
    newest: tuple[str, ObjectId] | None = None
    for tip in tips:
        if tip is None:
            continue
        try:
            when = repo.objects.get_version(tip).time
        except NotFound:
            continue
        if newest is None or when > newest[0]:
            newest = (when, tip)
    binding = repo.binding(model)
    return ModelSummary(
        model,
        newest[1] if newest else None,
        newest[0] if newest else None,
        branches,
        [r.name for r in refs if r.kind == TAGS],
        [r.name for r in refs if r.kind == CHANNELS],
        binding.path if binding else None,
    )
