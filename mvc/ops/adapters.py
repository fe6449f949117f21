"""PEFT adapters in a store: find an adapter folder, check it against a base, plan its merge.

The PEFT rules themselves (config, pairing, fit, what is refused, the merge arithmetic) live in
``mvc.peft``; this module only reads adapters and bases out of versions and folders and plans a
merge (``mvc.ops.merge`` commits merged weights). ``check`` proves that every module the adapter
targets exists in the base with shapes that fit — a mismatch is an error, never a silent success
(serving stacks that load a mismatched adapter often fall back to the base model without a
word). ``merge_adapter`` writes W + (B·A)·scale for every LoRA module block by block in the
base's dtype and commits the result as a new version whose lineage names the base and the
adapter.

Only plain LoRA is used; anything else (other PEFT types, DoRA, LoRA biases, convolutions…) is
refused with ``mvc.peft.UnsupportedAdapter`` by check-compat, merge-adapter, deployments and
``mvc.load`` alike. Committing such an adapter still records what it is.
"""

from __future__ import annotations

import os
import posixpath
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
from mvc.repo import Repo
from mvc.specs import resolve
from mvc.tensors import DiskTensorFile, StoredTensorFile, TensorFile, decode

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
    manifest = repo.objects.manifest_of(config_entry)
    data = b"".join(repo.objects.iter_file(manifest, ADAPTER_CONFIG))
    config = peft.parse_adapter_config(data, folder, f"{label}: {ADAPTER_CONFIG}")
    weights_entry = tree.files[posixpath.join(folder, ADAPTER_WEIGHTS)]
    source = StoredTensorFile(
        repo.objects, repo.objects.manifest_of(weights_entry), ADAPTER_WEIGHTS
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
        source = StoredTensorFile(repo.objects, repo.objects.manifest_of(entry), path)
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


def read_matrix(source: TensorFile, info: TensorInfo) -> Any:
    return decode(source.read(info.start, info.end), info.dtype).reshape(info.shape)


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
    return read_matrix(source, plan.module.a), read_matrix(source, plan.module.b)  # type: ignore[arg-type]


def read_replacement(prepared: Prepared, name: str, dtype: Any) -> Any:
    """The modules_to_save tensor replacing base tensor ``name``, in ``dtype``."""
    info = prepared.replaced[name]
    values = read_matrix(prepared.adapter.weights_file, info)
    return peft.cast_replacement(values, dtype)
