"""PEFT adapters in a store: find an adapter folder, check it against a base, merge it.

The PEFT rules themselves (config, pairing, fit, what is refused, the merge arithmetic) live in
``mvc.peft``; this module only reads adapters and bases out of versions and folders, and commits
merged weights. ``check`` proves that every module the adapter targets exists in the base with
shapes that fit — a mismatch is an error, never a silent success (serving stacks that load a
mismatched adapter often fall back to the base model without a word). ``merge_adapter`` writes
W + (B·A)·scale for every LoRA module block by block in the base's dtype and commits the result
as a new version whose lineage names the base and the adapter.

Only plain LoRA is used; anything else (other PEFT types, DoRA, LoRA biases, convolutions…) is
refused with ``mvc.peft.UnsupportedAdapter`` by check-compat, merge-adapter, deployments and
``mvc.load`` alike. Committing such an adapter still records what it is.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from mvc import peft
from mvc.errors import InvalidInput, UsageError
from mvc.formats.safetensors import TensorInfo
from mvc.ids import ObjectId, short
from mvc.objects import KIND_SAFETENSORS, Tree
from mvc.peft import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterConfig,
    AdapterWeights,
    CompatReport,
    MergePlan,
    UnsupportedAdapter,
)
from mvc.progress import NullProgress, Progress
from mvc.repo import Repo
from mvc.tensors import DiskTensorFile, StoredTensorFile, TensorFile

# --- where adapters and bases live ---------------------------------------------------------------


def adapter_folders(tree: Tree) -> list[str]:
    return sorted(
        posixpath.dirname(p)
        for p in tree.files
        if posixpath.basename(p) == ADAPTER_CONFIG
        and posixpath.join(posixpath.dirname(p), ADAPTER_WEIGHTS) in tree.files
    )


def is_adapter_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, ADAPTER_CONFIG)) and os.path.isfile(
        os.path.join(path, ADAPTER_WEIGHTS)
    )


@dataclass
class Adapter:
    """An adapter ready to check or merge: its config and its weights file."""

    label: str
    config: AdapterConfig
    weights_file: TensorFile
    weights: AdapterWeights
    version: ObjectId | None = None
    model: str | None = None


def load_adapter_dir(path: str, stack: ExitStack) -> Adapter:
    where = os.path.join(path, ADAPTER_CONFIG)
    with open(where, "rb") as handle:
        config = peft.parse_adapter_config(handle.read(1 << 20), "", where)
    source = stack.enter_context(
        DiskTensorFile(os.path.join(path, ADAPTER_WEIGHTS), ADAPTER_WEIGHTS)
    )
    return Adapter(path, config, source, peft.pair_tensors(source.header().tensors))


def load_adapter_version(repo: Repo, version: ObjectId, label: str) -> Adapter:
    tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
    folders = adapter_folders(tree)
    if not folders:
        raise InvalidInput(
            f"{label} is not a PEFT adapter: it has no {ADAPTER_CONFIG} beside an {ADAPTER_WEIGHTS}",
            hint=f"see its files with `mvc ls {label.split(' ')[0]}`",
        )
    if len(folders) > 1:
        raise UsageError(
            f"{label} holds {len(folders)} adapters ({', '.join(f or '.' for f in folders)}); "
            "mvc checks one adapter per version",
        )
    folder = folders[0]
    config_entry = tree.files[posixpath.join(folder, ADAPTER_CONFIG)]
    manifest = repo.objects.get_manifest(config_entry.manifest)
    data = b"".join(repo.objects.iter_file(manifest, ADAPTER_CONFIG))
    config = peft.parse_adapter_config(data, folder, f"{label}: {ADAPTER_CONFIG}")
    weights_entry = tree.files[posixpath.join(folder, ADAPTER_WEIGHTS)]
    source = StoredTensorFile(
        repo.objects, repo.objects.get_manifest(weights_entry.manifest), ADAPTER_WEIGHTS
    )
    model = repo.objects.get_version(version).model
    return Adapter(
        label, config, source, peft.pair_tensors(source.header().tensors), version, model
    )


@dataclass
class BaseTensor:
    path: str
    info: TensorInfo
    source: TensorFile


def base_tensors(repo: Repo, version: ObjectId) -> dict[str, BaseTensor]:
    """Every tensor of a version's safetensors files, adapter folders left out."""
    tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
    skip = set(adapter_folders(tree))
    found: dict[str, BaseTensor] = {}
    for path, entry in sorted(tree.files.items()):
        if entry.kind != KIND_SAFETENSORS or (
            posixpath.dirname(path) in skip and posixpath.basename(path) == ADAPTER_WEIGHTS
        ):
            continue
        source = StoredTensorFile(repo.objects, repo.objects.get_manifest(entry.manifest), path)
        for info in source.header().tensors:
            found.setdefault(info.name, BaseTensor(path, info, source))
    return found


# --- checking ------------------------------------------------------------------------------------


def _infos(base: dict[str, BaseTensor]) -> dict[str, TensorInfo]:
    return {name: found.info for name, found in base.items()}


def check(adapter: Adapter, base: dict[str, BaseTensor], base_label: str) -> CompatReport:
    """Every LoRA module of ``adapter`` against ``base`` (read ``report.ok``); raises
    ``UnsupportedAdapter`` for anything but plain LoRA."""
    return peft.check(adapter.config, adapter.weights, _infos(base), base_label, adapter.label)


def check_compat(repo: Repo, base_spec: str, adapter: str) -> CompatReport:
    """``mvc check-compat BASE ADAPTER``: ADAPTER is a version spec or an adapter folder."""
    from mvc.specs import resolve

    base = resolve(repo, base_spec)
    with ExitStack() as stack:
        if os.path.isdir(adapter):
            if not is_adapter_dir(adapter):
                raise InvalidInput(
                    f"folder {adapter} is not a PEFT adapter: it needs {ADAPTER_CONFIG} and "
                    f"{ADAPTER_WEIGHTS}",
                    hint="name an adapter folder, or an adapter version (MODEL@REV)",
                )
            loaded = load_adapter_dir(adapter, stack)
        else:
            resolved = resolve(repo, adapter)
            loaded = load_adapter_version(
                repo, resolved.version, f"{adapter} ({short(resolved.version)})"
            )
        return check(
            loaded, base_tensors(repo, base.version), f"{base_spec} ({short(base.version)})"
        )


def check_versions(
    repo: Repo, base: ObjectId, adapter: ObjectId, base_label: str, adapter_label: str
) -> CompatReport:
    """An adapter version against a base version: the check deployments run before a move."""
    loaded = load_adapter_version(repo, adapter, adapter_label)
    return check(loaded, base_tensors(repo, base), base_label)


def check_folder_against(
    repo: Repo, folder: str, base: ObjectId, base_label: str
) -> CompatReport | None:
    """A folder about to be committed against its base; None for an adapter mvc cannot use
    (it is recorded for what it is, not checked — using it is refused later)."""
    with ExitStack() as stack:
        loaded = load_adapter_dir(folder, stack)
        try:
            return check(loaded, base_tensors(repo, base), base_label)
        except UnsupportedAdapter:
            return None


def folder_facts(folder: str) -> dict[str, Any] | None:
    """The adapter facts of a folder about to be committed, or None if it is no adapter.

    Also checks a LoRA adapter against itself (each module has lora_A and lora_B of its rank).
    """
    if not is_adapter_dir(folder):
        return None
    with ExitStack() as stack:
        loaded = load_adapter_dir(folder, stack)
        if loaded.config.peft_type == "LORA":
            peft.check_ranks(loaded.config, loaded.weights, folder)
        return loaded.config.facts()


# --- merging -------------------------------------------------------------------------------------


def _read_matrix(source: TensorFile, info: TensorInfo) -> Any:
    from mvc.tensors import decode

    return decode(source.read(info.start, info.end), info.dtype).reshape(info.shape)


def _merged_blocks(
    base: BaseTensor, plan: MergePlan, adapter: Adapter, progress: Progress
) -> Iterator[bytes]:
    from mvc.tensors import decode, encode

    info = base.info
    row_bytes = info.nbytes // info.shape[0] if info.shape and info.shape[0] else 0

    def read_rows(lo: int, hi: int) -> Any:
        return decode(
            base.source.read(info.start + lo * row_bytes, info.start + hi * row_bytes), info.dtype
        )

    a = _read_matrix(adapter.weights_file, plan.module.a)  # type: ignore[arg-type]
    b = _read_matrix(adapter.weights_file, plan.module.b)  # type: ignore[arg-type]
    for lo, hi, rows in peft.merged_blocks(plan, info.shape, info.dtype, read_rows, a, b):
        yield encode(rows, info.dtype)
        progress.advance((hi - lo) * row_bytes)


def _copy_blocks(source: TensorFile, start: int, end: int, progress: Progress) -> Iterator[bytes]:
    for piece in source.pieces(start, end):
        lo, hi = max(start, piece.offset), min(end, piece.end)
        yield source.read(lo, hi)
        progress.advance(hi - lo)


@dataclass
class Prepared:
    """An adapter checked against a base and ready to merge."""

    adapter: Adapter
    tensors: dict[str, BaseTensor]
    plans: dict[str, MergePlan]
    replaced: dict[str, TensorInfo]


def prepare_merge(
    repo: Repo, base: ObjectId, adapter: ObjectId, base_label: str, adapter_label: str
) -> Prepared:
    """Check an adapter version against a base version and plan the merge (both merge paths:
    ``merge_adapter`` and ``mvc.load``)."""
    loaded = load_adapter_version(repo, adapter, adapter_label)
    tensors = base_tensors(repo, base)
    report = check(loaded, tensors, base_label)
    plans, replaced = peft.plan_merge(report, loaded.weights, _infos(tensors))
    return Prepared(loaded, tensors, plans, replaced)


def read_factors(prepared: Prepared, plan: MergePlan) -> tuple[Any, Any]:
    """(lora_A, lora_B) of one plan as arrays of their stored dtype."""
    source = prepared.adapter.weights_file
    return _read_matrix(source, plan.module.a), _read_matrix(source, plan.module.b)  # type: ignore[arg-type]


def read_replacement(prepared: Prepared, name: str, dtype: Any) -> Any:
    """The modules_to_save tensor replacing base tensor ``name``, in ``dtype``."""
    info = prepared.replaced[name]
    values = _read_matrix(prepared.adapter.weights_file, info)
    return peft.cast_replacement(values, dtype)


@dataclass
class MergeResult:
    base: ObjectId
    adapter: ObjectId
    merged_tensors: list[str]
    replaced_tensors: list[str]
    commit: Any  # mvc.ops.commit.CommitResult

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "adapter": self.adapter,
            "merged_tensors": self.merged_tensors,
            "replaced_tensors": self.replaced_tensors,
            **self.commit.to_json(),
        }


def merge_adapter(
    repo: Repo,
    base_spec: str,
    adapter_spec: str,
    *,
    model: str,
    message: str = "",
    branch: str | None = None,
    progress: Progress | None = None,
) -> MergeResult:
    """Merge a LoRA adapter version into its base version and commit the merged model."""
    import tempfile

    from mvc.ops.commit import commit
    from mvc.ops.lineage import version_ref
    from mvc.refnames import validate_model
    from mvc.specs import resolve

    validate_model(model)
    progress = progress or NullProgress()
    base = resolve(repo, base_spec)
    adapter_resolved = resolve(repo, adapter_spec)
    prepared = prepare_merge(
        repo,
        base.version,
        adapter_resolved.version,
        f"{base_spec} ({short(base.version)})",
        f"{adapter_spec} ({short(adapter_resolved.version)})",
    )
    adapter, tensors, plans, replaced = (
        prepared.adapter,
        prepared.tensors,
        prepared.plans,
        prepared.replaced,
    )
    base_version = repo.objects.get_version(base.version)
    tree = repo.objects.get_tree(base_version.tree)
    touched = {tensors[name].path for name in (*plans, *replaced)}
    progress.start("merging", sum(e.size for e in tree.files.values()))
    try:
        with tempfile.TemporaryDirectory(prefix="mvc-merge-") as folder:
            for path, entry in sorted(tree.files.items()):
                target = os.path.join(folder, *path.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                manifest = repo.objects.get_manifest(entry.manifest)
                if path in touched:
                    source = StoredTensorFile(repo.objects, manifest, path)
                    parts = _merged_file(source, tensors, plans, replaced, adapter, progress)
                else:
                    parts = _counted(repo.objects.iter_file(manifest, path), progress)
                _write(target, parts, entry.executable)
            lineage = {
                "base": version_ref(repo, base.version, base_spec),
                "merged_adapter": {
                    **version_ref(repo, adapter_resolved.version, adapter_spec),
                    "adapter": adapter.config.facts(),
                },
                "derivation": "merge-adapter",
            }
            result = commit(
                repo,
                folder,
                message=message or f"merge {adapter_spec} into {base_spec}",
                model=model,
                branch=branch,
                params={},
                lineage=lineage,
                temporary=True,
                allow_empty=True,
            )
    finally:
        progress.finish()
    return MergeResult(
        base.version, adapter_resolved.version, sorted(plans), sorted(replaced), result
    )


def _counted(parts: Iterator[bytes], progress: Progress) -> Iterator[bytes]:
    for part in parts:
        progress.advance(len(part))
        yield part


def _merged_file(
    source: TensorFile,
    tensors: dict[str, BaseTensor],
    plans: dict[str, MergePlan],
    replaced: dict[str, TensorInfo],
    adapter: Adapter,
    progress: Progress,
) -> Iterator[bytes]:
    from mvc.tensors import decode, element_unit, encode, numpy_dtype, tensor_windows

    header = source.header()
    yield source.read(0, header.header_size)  # same names, dtypes and shapes: same header
    for info in header.tensors:
        own = tensors.get(info.name)
        if own is not None and own.path != source.name:
            own = None  # a duplicate name in another file: leave this copy alone
        if own is not None and info.name in plans:
            yield from _merged_blocks(own, plans[info.name], adapter, progress)
        elif own is not None and info.name in replaced:
            saved = replaced[info.name]
            source_file = adapter.weights_file
            if saved.dtype == info.dtype:
                yield from _copy_blocks(source_file, saved.start, saved.end, progress)
                continue
            target = numpy_dtype(info.dtype)
            for lo, hi in tensor_windows(
                source_file, saved.start, saved.end, element_unit(saved.dtype)
            ):
                values = decode(source_file.read(lo, hi), saved.dtype)
                yield encode(peft.cast_replacement(values, target), info.dtype)
            progress.advance(info.nbytes)
        else:
            yield from _copy_blocks(source, info.start, info.end, progress)


def _write(target: str, parts: Iterator[bytes], executable: bool) -> None:
    """Write a file of the temporary merge folder (it is committed, then thrown away)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if executable else 0o644)
    with os.fdopen(fd, "wb") as handle:
        for part in parts:
            handle.write(part)
