"""``diff``: what changed between two versions (or a version and its working folder), and the
semver bump that change implies.

Work is proportional to what changed: files with equal blake3 are not opened; tensors are compared
by the ids of the chunks that hold them, so an unchanged tensor is skipped without being read or
decoded. Changed tensors are streamed window by window (``mvc.tensors``), so memory stays bounded
whatever the model's size. Tensors are matched by name within a folder (a sharded checkpoint's
shards share one namespace), so a tensor that moved between shards is not "removed and added".

The bump rules themselves, and the value types that describe a change, are pure and live in
``mvc.bump_rules``; this module reads the two sides and gathers the evidence for them.
"""

from __future__ import annotations

import json
import os
import posixpath
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mvc.bump_rules import (
    Changes,
    ConfigDiff,
    Evidence,
    FileChange,
    TensorChange,
    TensorGroupDiff,
    adapter_folders,
    file_role,
    grade,
    highest,
    verdict,
)
from mvc.chunking import WHOLE_SAFETENSORS
from mvc.errors import InvalidInput, NotFound, UsageError
from mvc.formats.safetensors import SafetensorsHeader, TensorInfo
from mvc.ids import ObjectId, hash_bytes, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.objects import KIND_SAFETENSORS, Tree, Version
from mvc.ops.snapshot import snapshot, stat_cache_for
from mvc.ops.status import head_version
from mvc.progress import NullProgress, Progress
from mvc.remotes import ensure_present
from mvc.repo import Repo
from mvc.specs import resolve
from mvc.tensors import (
    DiskTensorFile,
    StoredTensorFile,
    TensorFile,
    TensorStats,
    element_unit,
    tensor_windows,
)
from mvc.yamltext import load_yaml

CONFIG_LIMIT = 8 << 20  # config files above this size are compared as bytes only
SHOWN_VALUE = 200  # characters of a config value kept in a report


# --- the two sides ------------------------------------------------------------------------------


@dataclass
class Side(JsonShaped):
    """One end of a comparison: a stored version, or a working folder (read from disk)."""

    label: str
    model: str
    tree: Tree
    version_id: ObjectId | None = None
    version: Version | None = None
    folder: str | None = None  # absolute path, for a working-folder side
    disk_paths: dict[str, str] = field(default_factory=dict)

    json_shape: ClassVar[Shape] = Shape(
        rename={"version_id": "version"}, exclude=("tree", "version", "disk_paths")
    )

    def open(self, repo: Repo, path: str, stack: ExitStack) -> TensorFile:
        if self.folder is not None:
            return stack.enter_context(DiskTensorFile(self.disk_paths[path], path))
        entry = self.tree.files[path]
        return StoredTensorFile(repo.objects, repo.objects.manifest_of(entry), path)

    def read_small(self, repo: Repo, path: str) -> bytes | None:
        entry = self.tree.files[path]
        if entry.size > CONFIG_LIMIT:
            return None
        if self.folder is not None:
            with open(self.disk_paths[path], "rb") as handle:
                return handle.read(CONFIG_LIMIT + 1)
        manifest = repo.objects.manifest_of(entry)
        return b"".join(repo.objects.iter_file(manifest, path))


def version_side(repo: Repo, version_id: ObjectId, label: str | None = None) -> Side:
    version = repo.objects.get_version(version_id)
    return Side(
        label or f"{version.model}@{short(version_id)}",
        version.model,
        repo.objects.get_tree(version.tree),
        version_id,
        version,
    )


def folder_side(repo: Repo, model: str, progress: Progress | None = None) -> Side:
    binding = repo.binding(model)
    if binding is None:
        raise UsageError(
            f"model {model!r} has no working folder to compare with",
            hint=f"name both versions: mvc diff {model}@A {model}@B",
        )
    folder = repo.abspath(binding.path)
    if not os.path.isdir(folder):
        raise NotFound(
            f"the working folder of {model!r} ({binding.path}) is missing",
            hint=f"name both versions: mvc diff {model}@A {model}@B",
        )
    cache = stat_cache_for(repo, folder)
    head = head_version(repo, binding)
    like = repo.objects.get_tree(repo.objects.get_version(head).tree) if head else None
    snap = snapshot(repo, folder, store=False, cache=cache, progress=progress, like=like)
    cache.save()
    return Side(
        f"working folder {binding.path}",
        model,
        snap.tree,
        folder=folder,
        disk_paths={rel: scanned.path for rel, scanned in snap.files.items()},
    )


# --- results ------------------------------------------------------------------------------------


@dataclass
class DiffResult(JsonShaped):
    a: Side
    b: Side
    files: list[FileChange] = field(default_factory=list)
    unchanged_files: int = 0
    tensors: list[TensorGroupDiff] = field(default_factory=list)
    configs: list[ConfigDiff] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)
    stats: bool = True

    @property
    def bump(self) -> str:
        return highest(e.level for e in self.evidence)

    @property
    def verdict(self) -> str:
        return verdict(self.evidence)

    json_shape: ClassVar[Shape] = Shape(computed={"bump": "bump", "verdict": "verdict"})


# --- config files ------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "(root)": value}


def _shown(value: Any) -> Any:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if len(text) <= SHOWN_VALUE:
        return value
    return text[: SHOWN_VALUE - 1] + "…"


def _load_config(data: bytes | None, path: str) -> Any:
    if data is None:
        raise ValueError("too large to compare key by key")
    text = data.decode("utf-8", errors="strict")
    if path.lower().endswith((".yaml", ".yml")):
        return load_yaml(text).value  # bounded, tag-free; its YamlProblem is a ValueError
    if path.lower().endswith(".toml"):
        import tomllib

        return tomllib.loads(text)
    return json.loads(text)


def diff_config(repo: Repo, a: Side, b: Side, path: str) -> ConfigDiff:
    """Key-level differences of a config file; a side without the file counts as empty."""
    result = ConfigDiff(path)
    try:
        old = _load_config(a.read_small(repo, path), path) if path in a.tree.files else {}
        new = _load_config(b.read_small(repo, path), path) if path in b.tree.files else {}
    except (ValueError, UnicodeDecodeError):  # JSON, TOML and (converted) YAML errors
        result.parsed = False
        return result
    flat_old, flat_new = _flatten(old), _flatten(new)
    for key in sorted(flat_old.keys() | flat_new.keys()):
        if key not in flat_new:
            result.removed[key] = _shown(flat_old[key])
        elif key not in flat_old:
            result.added[key] = _shown(flat_new[key])
        elif flat_old[key] != flat_new[key]:
            result.changed[key] = (_shown(flat_old[key]), _shown(flat_new[key]))
    return result


# --- tensors ------------------------------------------------------------------------------------


@dataclass
class _Located:
    path: str
    info: TensorInfo
    source: TensorFile


def _collect(
    repo: Repo, side: Side, paths: list[str], stack: ExitStack, unreadable: list[str]
) -> tuple[dict[str, _Located], dict[str, SafetensorsHeader]]:
    tensors: dict[str, _Located] = {}
    headers: dict[str, SafetensorsHeader] = {}
    for path in paths:
        try:
            source = side.open(repo, path, stack)
            header = source.header()
        except InvalidInput:
            unreadable.append(path)  # a malformed file is compared as bytes only
            continue
        headers[path] = header
        for info in header.tensors:
            tensors.setdefault(info.name, _Located(path, info, source))
    return tensors, headers


def _change(
    name: str,
    status: str,
    old: _Located | None,
    new: _Located | None,
    renamed_from: str | None = None,
) -> TensorChange:
    return TensorChange(
        name,
        status,
        old_file=old.path if old else None,
        new_file=new.path if new else None,
        old_dtype=old.info.dtype if old else None,
        new_dtype=new.info.dtype if new else None,
        old_shape=old.info.shape if old else None,
        new_shape=new.info.shape if new else None,
        renamed_from=renamed_from,
    )


def _content_key(loc: _Located) -> tuple[str, ...] | None:
    """What identifies a tensor's bytes: the ids of the chunks that tile it, read from no
    data. A file small enough to be one chunk (``WHOLE_SAFETENSORS``) has no chunk per
    tensor, so its tensor's key is the hash of its bytes (a few KiB to read). Keys of the two
    kinds never match: a caller compares such tensors byte by byte (``_same_bytes``)."""
    ids = loc.source.chunk_ids(loc.info.start, loc.info.end)
    if ids is not None:
        sizes = tuple(str(p.length) for p in loc.source.pieces(loc.info.start, loc.info.end))
        return ("chunks", *ids, *sizes)
    if loc.source.size <= WHOLE_SAFETENSORS:
        return ("bytes", hash_bytes(loc.source.read(loc.info.start, loc.info.end)))
    return None


def _same_bytes(a: _Located, b: _Located, block: int = 4 << 20) -> bool:
    """Byte comparison for tensors whose chunk layouts differ (never decoded)."""
    if a.info.nbytes != b.info.nbytes:
        return False
    offset = 0
    while offset < a.info.nbytes:
        step = min(block, a.info.nbytes - offset)
        if a.source.read(a.info.start + offset, a.info.start + offset + step) != b.source.read(
            b.info.start + offset, b.info.start + offset + step
        ):
            return False
        offset += step
    return True


def tensor_stats(a: _Located, b: _Located, progress: Progress) -> TensorStats:
    """Streamed statistics of a tensor present on both sides with the same dtype and shape.

    Windows follow A's chunks; a chunk whose id is the same on both sides is decoded on one side
    only (its elements count as unchanged but still weigh in the norms).
    """
    dtype = a.info.dtype
    unit = element_unit(dtype)
    shift = b.info.start - a.info.start
    stats = TensorStats()
    same_piece: dict[int, bool] = {}
    for lo, hi in tensor_windows(a.source, a.info.start, a.info.end, unit):
        pieces = a.source.pieces(lo, hi)
        same = False
        if len(pieces) == 1:
            piece = pieces[0]
            if piece.offset not in same_piece:
                inside = piece.offset >= a.info.start and piece.end <= a.info.end
                ids_a = a.source.chunk_ids(piece.offset, piece.end) if inside else None
                ids_b = (
                    b.source.chunk_ids(piece.offset + shift, piece.end + shift) if inside else None
                )
                same_piece[piece.offset] = ids_a is not None and ids_a == ids_b
            same = same_piece[piece.offset]
        if same:
            stats.add_identical(a.source.read(lo, hi), dtype)
        else:
            stats.add(a.source.read(lo, hi), b.source.read(lo + shift, hi + shift), dtype)
        progress.advance(hi - lo)
    return stats


def _tensor_groups(
    repo: Repo,
    a: Side,
    b: Side,
    changed_paths: set[str],
    stats: bool,
    progress: Progress,
    stack: ExitStack,
) -> list[TensorGroupDiff]:
    def safetensors_in(side: Side, folder: str) -> list[str]:
        return sorted(
            p
            for p, e in side.tree.files.items()
            if e.kind == KIND_SAFETENSORS and posixpath.dirname(p) == folder
        )

    folders = sorted(
        {
            posixpath.dirname(p)
            for p in changed_paths
            if any(
                side.tree.files.get(p) is not None and side.tree.files[p].kind == KIND_SAFETENSORS
                for side in (a, b)
            )
        }
    )
    groups = []
    for folder in folders:
        config = posixpath.join(folder, "adapter_config.json") if folder else "adapter_config.json"
        adapter = config in a.tree.files or config in b.tree.files
        group = TensorGroupDiff(folder, adapter)
        paths_a, paths_b = safetensors_in(a, folder), safetensors_in(b, folder)
        # A file unchanged on both sides holds unchanged tensors: no need to open it.
        same_files = {
            p for p in set(paths_a) & set(paths_b) if a.tree.files[p].b3 == b.tree.files[p].b3
        }
        unreadable = group.unreadable
        tensors_a, headers_a = _collect(
            repo, a, [p for p in paths_a if p not in same_files], stack, unreadable
        )
        tensors_b, headers_b = _collect(
            repo, b, [p for p in paths_b if p not in same_files], stack, unreadable
        )
        for path in sorted(headers_a.keys() & headers_b.keys()):
            meta_a, meta_b = headers_a[path].metadata, headers_b[path].metadata
            if meta_a != meta_b:
                group.metadata[path] = {
                    "added": {k: v for k, v in meta_b.items() if k not in meta_a},
                    "removed": {k: v for k, v in meta_a.items() if k not in meta_b},
                    "changed": {
                        k: {"old": meta_a[k], "new": v}
                        for k, v in meta_b.items()
                        if k in meta_a and meta_a[k] != v
                    },
                }
        removed = {n: t for n, t in tensors_a.items() if n not in tensors_b}
        added = {n: t for n, t in tensors_b.items() if n not in tensors_a}
        # renames: a removed and an added tensor with the same dtype, shape and chunks
        by_content: dict[tuple[Any, ...], str] = {}
        for name, loc in removed.items():
            key = _content_key(loc)
            if key is not None:
                by_content.setdefault((loc.info.dtype, loc.info.shape, key), name)
        for name, loc in sorted(added.items()):
            key = _content_key(loc)
            old_name = by_content.pop((loc.info.dtype, loc.info.shape, key), None) if key else None
            if old_name is not None and old_name in removed:
                group.changes.append(_change(name, "renamed", removed.pop(old_name), loc, old_name))
            else:
                group.changes.append(_change(name, "added", None, loc))
        for name, loc in sorted(removed.items()):
            group.changes.append(_change(name, "removed", loc, None))
        for name in sorted(tensors_a.keys() & tensors_b.keys()):
            old, new = tensors_a[name], tensors_b[name]
            if old.info.dtype != new.info.dtype or old.info.shape != new.info.shape:
                status = "retyped" if old.info.dtype != new.info.dtype else "reshaped"
                group.changes.append(_change(name, status, old, new))
                continue
            key_a, key_b = _content_key(old), _content_key(new)
            if key_a is not None and key_a == key_b:
                group.unchanged += 1
                group.skipped_identical += 1
                progress.advance(old.info.nbytes)
                continue
            comparable = key_a is not None and key_b is not None and key_a[0] == key_b[0]
            if not comparable and _same_bytes(old, new):
                group.unchanged += 1
                progress.advance(old.info.nbytes)
                continue
            change = _change(name, "changed", old, new)
            if stats:
                result = tensor_stats(old, new, progress)
                if result.changed == 0:  # same bytes under a different chunk layout
                    group.unchanged += 1
                    continue
                change.stats = result.to_json()
            else:
                progress.advance(old.info.nbytes)
            group.changes.append(change)
        groups.append(group)
    return groups


# --- metadata -----------------------------------------------------------------------------------


def _mapping_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {
        "added": {k: v for k, v in sorted(new.items()) if k not in old},
        "removed": {k: v for k, v in sorted(old.items()) if k not in new},
        "changed": {
            k: {"old": old[k], "new": v} for k, v in sorted(new.items()) if k in old and old[k] != v
        },
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _delta(old: Any, new: Any) -> Any:
    return new - old if _is_number(old) and _is_number(new) else None


def metadata_diff(a: Version, b: Version) -> dict[str, Any]:
    out: dict[str, Any] = {}
    params = _mapping_diff(a.params, b.params)
    if any(params.values()):
        out["params"] = params
    metrics = {}
    for key in sorted(a.metrics.keys() | b.metrics.keys()):
        old, new = a.metrics.get(key), b.metrics.get(key)
        if old == new:
            continue
        metrics[key] = {"old": old, "new": new, "delta": _delta(old, new)}
    if metrics:
        out["metrics"] = metrics
    datasets_a = {
        str(d.get("name")): d for d in a.lineage.get("datasets", []) if isinstance(d, dict)
    }
    datasets_b = {
        str(d.get("name")): d for d in b.lineage.get("datasets", []) if isinstance(d, dict)
    }
    datasets = _mapping_diff(datasets_a, datasets_b)
    if any(datasets.values()):
        out["datasets"] = datasets
    for key in ("base", "derived_from", "adapter", "merged"):
        if a.lineage.get(key) != b.lineage.get(key):
            out.setdefault("lineage", {})[key] = {
                "old": a.lineage.get(key),
                "new": b.lineage.get(key),
            }
    commit_a = (a.git or {}).get("commit")
    commit_b = (b.git or {}).get("commit")
    if commit_a != commit_b or bool((a.git or {}).get("dirty")) != bool((b.git or {}).get("dirty")):
        out["git"] = {"old": a.git, "new": b.git}
    if a.author != b.author:
        out["author"] = {"old": a.author, "new": b.author}
    if a.message != b.message:
        out["message"] = {"old": a.message, "new": b.message}
    if a.model != b.model:
        out["model"] = {"old": a.model, "new": b.model}
    out["time"] = {"old": a.time, "new": b.time}
    return out


# --- evidence -----------------------------------------------------------------------------------


def _evidence(result: DiffResult) -> list[Evidence]:
    return grade(
        Changes(
            result.files,
            result.configs,
            result.tensors,
            result.metadata,
            adapter_folders(result.a.tree.files),
        )
    )


# --- entry points -------------------------------------------------------------------------------


def compare(
    repo: Repo, a: Side, b: Side, *, stats: bool = True, progress: Progress | None = None
) -> DiffResult:
    progress = progress or NullProgress()
    result = DiffResult(a, b, stats=stats)
    files_a, files_b = a.tree.files, b.tree.files
    for path in sorted(files_a.keys() | files_b.keys()):
        old, new = files_a.get(path), files_b.get(path)
        if (
            old is not None
            and new is not None
            and old.b3 == new.b3
            and old.executable == new.executable
        ):
            result.unchanged_files += 1
            continue
        result.files.append(FileChange(path, old, new))
    content = {
        f.path for f in result.files if f.old is None or f.new is None or f.old.b3 != f.new.b3
    }
    for change in result.files:
        entry = change.new or change.old
        role = file_role(change.path, entry.kind) if entry else "other"
        if change.path in content and role in ("config", "adapter-config"):
            result.configs.append(diff_config(repo, a, b, change.path))
    with ExitStack() as stack:
        work = sum(
            max(f.old.size if f.old else 0, f.new.size if f.new else 0)
            for f in result.files
            if f.path in content
        )
        progress.start("comparing", work)
        try:
            result.tensors = _tensor_groups(repo, a, b, content, stats, progress, stack)
        finally:
            progress.finish()
    if a.version is not None and b.version is not None:
        result.metadata = metadata_diff(a.version, b.version)
    result.evidence = _evidence(result)
    return result


def diff_versions(
    repo: Repo, a: ObjectId, b: ObjectId, *, stats: bool = True, progress: Progress | None = None
) -> DiffResult:
    return compare(
        repo, version_side(repo, a), version_side(repo, b), stats=stats, progress=progress
    )


def diff(
    repo: Repo,
    a_spec: str,
    b_spec: str | None = None,
    *,
    stats: bool = True,
    progress: Progress | None = None,
) -> DiffResult:
    """``mvc diff A [B]``: B defaults to A's model's working folder."""
    ra = resolve(repo, a_spec)
    if stats:  # tensor statistics read the data: a fetched-only version gets it first
        ensure_present(repo, ra.version, progress=progress)
    a = version_side(repo, ra.version, _label(a_spec, ra.version))
    if b_spec is None:
        b = folder_side(repo, ra.model, progress)
    else:
        rb = resolve(repo, b_spec)
        if stats:
            ensure_present(repo, rb.version, progress=progress)
        b = version_side(repo, rb.version, _label(b_spec, rb.version))
    return compare(repo, a, b, stats=stats, progress=progress)


def _label(spec: str, version: ObjectId) -> str:
    return f"{spec} ({short(version)})"
