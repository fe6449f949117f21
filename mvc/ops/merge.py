"""``mvc merge-adapter``: a LoRA adapter version merged into its base version, committed as a
new model version.

The merge is streamed file by file and block by block (``mvc.peft.merged_blocks``), so memory
stays bounded by the largest LoRA update, not by the model. Loading and checking the adapter
is :mod:`mvc.ops.adapters`; the merge arithmetic is :mod:`mvc.peft`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from mvc import peft
from mvc.formats.safetensors import TensorInfo
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.ops.adapters import Adapter, BaseTensor, prepare_merge, read_matrix
from mvc.ops.commit import commit
from mvc.ops.lineage import version_ref
from mvc.peft import (
    MergePlan,
)
from mvc.progress import NullProgress, Progress
from mvc.refnames import validate_model
from mvc.repo import Repo
from mvc.specs import resolve
from mvc.tensors import (
    StoredTensorFile,
    TensorFile,
    decode,
    element_unit,
    encode,
    numpy_dtype,
    tensor_windows,
)


def _merged_blocks(
    base: BaseTensor, plan: MergePlan, adapter: Adapter, progress: Progress
) -> Iterator[bytes]:
    info = base.info
    row_bytes = info.nbytes // info.shape[0] if info.shape and info.shape[0] else 0

    def read_rows(lo: int, hi: int) -> Any:
        return decode(
            base.source.read(info.start + lo * row_bytes, info.start + hi * row_bytes), info.dtype
        )

    a = read_matrix(adapter.weights_file, plan.module.a)  # type: ignore[arg-type]
    b = read_matrix(adapter.weights_file, plan.module.b)  # type: ignore[arg-type]
    for lo, hi, rows in peft.merged_blocks(plan, info.shape, info.dtype, read_rows, a, b):
        yield encode(rows, info.dtype)
        progress.advance((hi - lo) * row_bytes)


def _copy_blocks(source: TensorFile, start: int, end: int, progress: Progress) -> Iterator[bytes]:
    for piece in source.pieces(start, end):
        lo, hi = max(start, piece.offset), min(end, piece.end)
        yield source.read(lo, hi)
        progress.advance(hi - lo)


@dataclass
class MergeResult(JsonShaped):
    base: ObjectId
    adapter: ObjectId
    merged_tensors: list[str]
    replaced_tensors: list[str]
    commit: Any  # mvc.ops.commit.CommitResult

    json_shape: ClassVar[Shape] = Shape(
        flatten=("commit",)
    )  # the merge, then the commit that recorded it


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
                manifest = repo.objects.manifest_of(entry)
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
