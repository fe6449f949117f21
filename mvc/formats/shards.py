"""Hugging Face's sharded checkpoints: ``model-00001-of-00003.safetensors`` files and the index
that maps every tensor to its shard (``model.safetensors.index.json``, or
``pytorch_model.bin.index.json`` for pickle shards)::

    {"metadata": {"total_size": 1334542336}, "weight_map": {"embeddings.weight": "model-00001-of-00002.safetensors", ...}}

``check_index`` compares an index with the shards a version holds: every shard it names is
there, every tensor it maps is in that shard and nowhere else, no shard tensor is left out, and
``total_size`` is the tensors' bytes. Pure: the caller reads the index and the shard headers.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

INDEX_SUFFIXES = (".safetensors.index.json", ".bin.index.json")


def is_index(path: str) -> bool:
    return path.endswith(INDEX_SUFFIXES)


@dataclass(frozen=True)
class ShardIndex:
    weight_map: dict[str, str]  # tensor -> shard path, relative to the index's folder
    total_size: int | None


class BadIndex(ValueError):
    pass


def parse_index(data: bytes) -> ShardIndex:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise BadIndex(f"not JSON ({exc})") from exc
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise BadIndex("no weight_map of tensor name -> shard file")
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    total = metadata.get("total_size")
    return ShardIndex(
        dict(weight_map), total if isinstance(total, int) and not isinstance(total, bool) else None
    )


@dataclass
class IndexReport:
    shards: list[str] = field(default_factory=list)  # version paths, in order
    tensors: int = 0
    tensor_bytes: int = 0
    problems: list[str] = field(default_factory=list)


def check_index(
    index_path: str,
    index: ShardIndex,
    shard_tensors: Mapping[str, Mapping[str, int] | None],
) -> IndexReport:
    """``shard_tensors``: for each file of the version, its tensor names -> byte sizes (None:
    not a readable safetensors file, e.g. a pickle shard, whose tensors cannot be listed)."""
    folder = posixpath.dirname(index_path)
    report = IndexReport()
    by_shard: dict[str, list[str]] = {}
    for tensor, shard in index.weight_map.items():
        by_shard.setdefault(posixpath.normpath(posixpath.join(folder, shard)), []).append(tensor)
    report.shards = sorted(by_shard)
    report.tensors = len(index.weight_map)
    for orphan in sorted(set(_siblings(index_path, shard_tensors)) - set(by_shard)):
        for name in sorted(shard_tensors[orphan] or {}):
            report.problems.append(f"{orphan} holds {name}, which the index does not map")
    for shard, names in sorted(by_shard.items()):
        if shard not in shard_tensors:
            report.problems.append(f"{shard} is named by the index but not in this version")
            continue
        listed = shard_tensors[shard]
        if listed is None:
            continue  # a pickle shard: its contents cannot be checked without unpickling
        for name in sorted(set(names) - set(listed)):
            report.problems.append(f"{name} is mapped to {shard}, which does not hold it")
        for name in sorted(set(listed) - set(names)):
            report.problems.append(f"{shard} holds {name}, which the index does not map")
        report.tensor_bytes += sum(size for name, size in listed.items() if name in names)
    if (
        index.total_size is not None
        and not report.problems
        and all(shard_tensors.get(s) is not None for s in report.shards)
        and index.total_size != report.tensor_bytes
    ):
        report.problems.append(
            f"metadata.total_size is {index.total_size}, the shards' tensors are {report.tensor_bytes} bytes"
        )
    return report


def _siblings(index_path: str, files: Mapping[str, object]) -> list[str]:
    """The version's files that are named as shards of this index (``model-00002-of-00003
    .safetensors`` beside ``model.safetensors.index.json``), named by it or not."""
    folder, name = posixpath.split(index_path)
    stem = name.removesuffix(".index.json")  # model.safetensors
    base, dot, extension = stem.rpartition(".")
    pattern = re.compile(rf"^{re.escape(base)}-\d{{5}}-of-\d{{5}}{re.escape(dot + extension)}$")
    return [
        path
        for path in files
        if posixpath.dirname(path) == folder and pattern.match(posixpath.basename(path))
    ]
