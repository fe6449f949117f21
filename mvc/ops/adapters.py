"""PEFT adapters: recognise an adapter folder, check it against a base model, merge LoRA weights.

An adapter folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` (PEFT's layout).
``check`` proves that every module the adapter targets exists in the base with shapes that fit —
a mismatch is an error, never a silent success (serving stacks that load a mismatched adapter
often fall back to the base model without a word). ``merge`` computes W + (B·A)·scale for every
LoRA module, in float32 (float64 for F64 weights), written in the base's dtype block by block,
and commits the result as a new version whose lineage names the base and the adapter.

Only LoRA (``peft_type: LORA``) is understood; other adapter types, DoRA and LoRA on
convolutions (for merging) are refused with a clear "unsupported" error.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from mvc.errors import InvalidInput, MvcError, UsageError
from mvc.formats.safetensors import SafetensorsHeader, TensorInfo
from mvc.ids import ObjectId, short
from mvc.objects import KIND_SAFETENSORS, Tree
from mvc.progress import NullProgress, Progress
from mvc.repo import Repo
from mvc.tensors import DiskTensorFile, StoredTensorFile, TensorFile

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
MERGE_BLOCK = 4 << 20  # bytes of float32 work per block of rows
MERGEABLE_DTYPES = ("F16", "BF16", "F32", "F64")

_LORA = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>A|B)(?:\.(?P<name>[^.]+))?\.weight$")
_LORA_EMBEDDING = re.compile(r"^(?P<module>.+)\.lora_embedding_(?P<ab>A|B)(?:\.(?P<name>[^.]+))?$")
_DORA = re.compile(r"\.lora_magnitude_vector(\.|$)")


class Unsupported(MvcError):
    """An adapter (or a merge) of a kind mvc does not handle."""


class IncompatibleAdapter(InvalidInput):
    """The adapter does not fit the base model; ``report`` says where."""

    def __init__(self, message: str, report: CompatReport, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


# --- what an adapter says about itself -----------------------------------------------------------


@dataclass
class AdapterConfig:
    folder: str  # the adapter's folder inside its version ('' for the root)
    peft_type: str
    rank: int
    alpha: float
    target_modules: list[str] | str | None
    base_model_name_or_path: str | None = None
    fan_in_fan_out: bool = False
    use_rslora: bool = False
    use_dora: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    modules_to_save: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def facts(self) -> dict[str, Any]:
        """What a version's lineage records about the adapter."""
        targets = self.target_modules
        return {
            "type": self.peft_type,
            "rank": self.rank,
            "alpha": self.alpha,
            "target_modules": sorted(targets) if isinstance(targets, list) else targets,
            "base_model_name_or_path": self.base_model_name_or_path,
            "path": self.folder,
        }

    def _pattern(self, patterns: dict[str, Any], module: str) -> Any:
        for key, value in patterns.items():
            if re.match(rf"^(.*\.)?({key})$", module):
                return value
        return None

    def rank_of(self, module: str) -> int:
        found = self._pattern(self.rank_pattern, module)
        return int(found) if found is not None else self.rank

    def scale_of(self, module: str) -> float:
        alpha = self._pattern(self.alpha_pattern, module)
        alpha = float(alpha) if alpha is not None else self.alpha
        rank = self.rank_of(module)
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank

    def targets(self, module: str) -> bool:
        """Whether ``module`` is one PEFT's ``target_modules`` would select."""
        targets = self.target_modules
        if targets is None:
            return True
        if isinstance(targets, str):
            return re.fullmatch(targets, module) is not None or targets == "all-linear"
        return any(module == t or module.endswith("." + t) for t in targets)


def _number(raw: dict[str, Any], key: str, default: Any, where: str) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidInput(f"{where}: {key} must be a positive number, got {value!r}")
    return value


def parse_adapter_config(data: bytes, folder: str, where: str) -> AdapterConfig:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} is not a JSON object")
    peft_type = str(raw.get("peft_type") or "LORA").upper()
    if peft_type not in ("LORA",):
        return AdapterConfig(
            folder, peft_type, 0, 0.0, None, raw.get("base_model_name_or_path"), raw=raw
        )
    rank = _number(raw, "r", 8, where)
    alpha = _number(raw, "lora_alpha", rank, where)
    targets = raw.get("target_modules")
    if targets is not None and not isinstance(targets, str):
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise InvalidInput(f"{where}: target_modules must be a list of names or a regex")
        targets = list(targets)
    patterns = {}
    for key in ("rank_pattern", "alpha_pattern"):
        value = raw.get(key) or {}
        if not isinstance(value, dict):
            raise InvalidInput(f"{where}: {key} must be an object")
        patterns[key] = value
    saved = raw.get("modules_to_save") or []
    return AdapterConfig(
        folder,
        peft_type,
        int(rank),
        float(alpha),
        targets,
        raw.get("base_model_name_or_path"),
        bool(raw.get("fan_in_fan_out", False)),
        bool(raw.get("use_rslora", False)),
        bool(raw.get("use_dora", False)),
        patterns["rank_pattern"],
        patterns["alpha_pattern"],
        [str(m) for m in saved] if isinstance(saved, list) else [],
        raw,
    )


@dataclass
class LoraModule:
    module: str  # the module path in the base model, e.g. model.layers.0.self_attn.q_proj
    kind: str  # linear (also conv, by rank of A) or embedding
    a: TensorInfo | None = None
    b: TensorInfo | None = None


@dataclass
class AdapterWeights:
    modules: dict[str, LoraModule]
    saved: dict[str, TensorInfo]  # full replacement tensors (modules_to_save), by base name
    dora: bool


def _strip_prefix(name: str) -> str:
    return name[len(PEFT_PREFIX) :] if name.startswith(PEFT_PREFIX) else name


def read_adapter_weights(header: SafetensorsHeader) -> AdapterWeights:
    modules: dict[str, LoraModule] = {}
    saved: dict[str, TensorInfo] = {}
    dora = False
    for info in header.tensors:
        match = _LORA.match(info.name) or _LORA_EMBEDDING.match(info.name)
        if match:
            kind = "embedding" if "lora_embedding_" in info.name else "linear"
            module = _strip_prefix(match.group("module"))
            entry = modules.setdefault(module, LoraModule(module, kind))
            if match.group("ab") == "A":
                entry.a = info
            else:
                entry.b = info
        elif _DORA.search(info.name):
            dora = True
        else:
            name = _strip_prefix(info.name)
            name = re.sub(r"\.modules_to_save(\.[^.]+)?(?=\.)", "", name)
            saved[name] = info
    return AdapterWeights(modules, saved, dora)


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
        config = parse_adapter_config(handle.read(1 << 20), "", where)
    source = stack.enter_context(
        DiskTensorFile(os.path.join(path, ADAPTER_WEIGHTS), ADAPTER_WEIGHTS)
    )
    return Adapter(path, config, source, read_adapter_weights(source.header()))


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
    config = parse_adapter_config(data, folder, f"{label}: {ADAPTER_CONFIG}")
    weights_entry = tree.files[posixpath.join(folder, ADAPTER_WEIGHTS)]
    source = StoredTensorFile(
        repo.objects, repo.objects.get_manifest(weights_entry.manifest), ADAPTER_WEIGHTS
    )
    model = repo.objects.get_version(version).model
    return Adapter(label, config, source, read_adapter_weights(source.header()), version, model)


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


@dataclass
class ModuleCheck:
    module: str
    kind: str
    base_tensor: str | None
    base_shape: tuple[int, ...] | None
    a_shape: tuple[int, ...] | None
    b_shape: tuple[int, ...] | None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "kind": self.kind,
            "base_tensor": self.base_tensor,
            "base_shape": list(self.base_shape) if self.base_shape is not None else None,
            "lora_A_shape": list(self.a_shape) if self.a_shape is not None else None,
            "lora_B_shape": list(self.b_shape) if self.b_shape is not None else None,
            "ok": self.problem is None,
            "problem": self.problem,
        }


@dataclass
class CompatReport:
    base: str
    adapter: str
    config: AdapterConfig
    modules: list[ModuleCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(m.problem is None for m in self.modules)

    def all_problems(self) -> list[str]:
        return self.problems + [f"{m.module}: {m.problem}" for m in self.modules if m.problem]

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "adapter": self.adapter,
            "compatible": self.ok,
            "adapter_info": self.config.facts(),
            "modules": [m.to_json() for m in self.modules],
            "problems": self.all_problems(),
        }


def _find_base(
    module: str, suffix: str, base: dict[str, BaseTensor]
) -> tuple[str | None, str | None]:
    """(base tensor name, problem) for ``module`` + ``suffix`` (e.g. '.weight')."""
    wanted = module + suffix
    if wanted in base:
        return wanted, None
    # PEFT module paths and checkpoint names can differ by a leading wrapper segment
    # ("model." in one, not the other): accept exactly one name that lines up at a dot.
    hits = [n for n in base if n.endswith("." + wanted) or wanted.endswith("." + n)]
    if len(hits) == 1:
        return hits[0], None
    if hits:
        return None, f"matches several base tensors: {', '.join(sorted(hits)[:4])}"
    return None, f"no tensor {wanted!r} in the base"


def _expected_shapes(
    kind: str, w: tuple[int, ...], rank: int, fan_in_fan_out: bool
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The (lora_A, lora_B) shapes a base weight of shape ``w`` calls for."""
    if kind == "embedding":
        return ((rank, w[0]), (w[1], rank)) if len(w) == 2 else None
    if len(w) == 2:
        out_f, in_f = (w[1], w[0]) if fan_in_fan_out else (w[0], w[1])
        return (rank, in_f), (out_f, rank)
    if len(w) == 4:  # Conv2d: A is a conv from in to r channels, B a 1x1 conv from r to out
        return (rank, w[1], w[2], w[3]), (w[0], rank, 1, 1)
    return None


def check(adapter: Adapter, base: dict[str, BaseTensor], base_label: str) -> CompatReport:
    """Every LoRA module of ``adapter`` against ``base``. Raises nothing; read ``report.ok``."""
    config = adapter.config
    report = CompatReport(base_label, adapter.label, config)
    if config.peft_type != "LORA":
        raise Unsupported(
            f"{adapter.label} is a {config.peft_type} adapter; mvc checks and merges LoRA adapters only",
            hint="check this adapter with the library that trained it",
        )
    weights = adapter.weights
    if not weights.modules:
        report.problems.append(f"{ADAPTER_WEIGHTS} holds no LoRA tensors (lora_A/lora_B)")
    if isinstance(config.target_modules, list):
        for target in config.target_modules:
            if not any(m == target or m.endswith("." + target) for m in weights.modules):
                report.problems.append(f"target module {target!r} has no LoRA weights")
    for name, module in sorted(weights.modules.items()):
        rank = config.rank_of(name)
        check_ = ModuleCheck(
            name,
            module.kind,
            None,
            None,
            module.a.shape if module.a else None,
            module.b.shape if module.b else None,
        )
        report.modules.append(check_)
        if module.a is None or module.b is None:
            check_.problem = (
                f"has lora_{'B' if module.a else 'A'} but no lora_{'A' if module.a else 'B'}"
            )
            continue
        if not config.targets(name):
            check_.problem = "is not selected by target_modules in adapter_config.json"
            continue
        base_name, problem = _find_base(name, ".weight", base)
        if base_name is None:
            check_.problem = problem
            continue
        found = base[base_name]
        check_.base_tensor, check_.base_shape = base_name, found.info.shape
        if module.a.shape[0] != rank or module.b.shape[1:2] != (rank,):
            check_.problem = (
                f"rank mismatch: adapter_config says r={rank}, lora_A is {list(module.a.shape)} "
                f"and lora_B is {list(module.b.shape)}"
            )
            continue
        expected = _expected_shapes(module.kind, found.info.shape, rank, config.fan_in_fan_out)
        if expected is None:
            check_.problem = f"base tensor {base_name} has shape {list(found.info.shape)}, which LoRA cannot adapt"
        elif (module.a.shape, module.b.shape) != expected:
            check_.problem = (
                f"shape mismatch: base {base_name} is {list(found.info.shape)}, so lora_A should be "
                f"{list(expected[0])} and lora_B {list(expected[1])}, but they are "
                f"{list(module.a.shape)} and {list(module.b.shape)}"
            )
    for name, info in sorted(weights.saved.items()):
        base_name, problem = _find_base(name, "", base)
        check_ = ModuleCheck(name, "replaced", base_name, None, info.shape, None)
        report.modules.append(check_)
        if base_name is None:
            check_.problem = f"saved module tensor: {problem}"
            continue
        check_.base_shape = base[base_name].info.shape
        if base[base_name].info.shape != info.shape:
            check_.problem = (
                f"saved module tensor is {list(info.shape)} but base {base_name} is "
                f"{list(base[base_name].info.shape)}"
            )
    return report


def require_compatible(report: CompatReport) -> CompatReport:
    if not report.ok:
        problems = report.all_problems()
        listing = "; ".join(problems[:5]) + (
            f"; … {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise IncompatibleAdapter(
            f"adapter {report.adapter} does not fit base {report.base}: {listing}",
            report,
            hint="use the base model the adapter was trained on (see base_model_name_or_path in adapter_config.json)",
        )
    return report


def check_compat(repo: Repo, base_spec: str, adapter: str) -> CompatReport:
    """``mvc check-compat BASE ADAPTER``: ADAPTER is a version spec or an adapter folder."""
    from mvc.ops.specs import resolve

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


def check_folder_against(repo: Repo, folder: str, base: ObjectId, base_label: str) -> CompatReport:
    with ExitStack() as stack:
        loaded = load_adapter_dir(folder, stack)
        return check(loaded, base_tensors(repo, base), base_label)


def folder_facts(folder: str) -> dict[str, Any] | None:
    """The adapter facts of a folder about to be committed, or None if it is no adapter.

    Also checks the adapter against itself (each module has lora_A and lora_B of its rank).
    """
    if not is_adapter_dir(folder):
        return None
    with ExitStack() as stack:
        loaded = load_adapter_dir(folder, stack)
        if loaded.config.peft_type == "LORA":
            for name, module in loaded.weights.modules.items():
                rank = loaded.config.rank_of(name)
                if module.a is None or module.b is None:
                    raise IncompatibleAdapter(
                        f"adapter {folder}: module {name} lacks lora_{'A' if module.a is None else 'B'}",
                        CompatReport("", folder, loaded.config),
                    )
                if module.a.shape[0] != rank or module.b.shape[1:2] != (rank,):
                    raise IncompatibleAdapter(
                        f"adapter {folder}: module {name} has lora_A {list(module.a.shape)} and "
                        f"lora_B {list(module.b.shape)}, but adapter_config.json says r={rank}",
                        CompatReport("", folder, loaded.config),
                    )
        return loaded.config.facts()


# --- merging -------------------------------------------------------------------------------------


@dataclass
class _Plan:
    module: LoraModule
    scale: float
    transposed: bool  # delta = (B·A)ᵀ (fan_in_fan_out Linear, Embedding)


def _read_matrix(source: TensorFile, info: TensorInfo, wide: bool) -> Any:
    from mvc.tensors import decode, to_float

    values = to_float(decode(source.read(info.start, info.end), info.dtype), info.dtype, wide=wide)
    return values.reshape(info.shape)


def _merged_blocks(
    base: BaseTensor, plan: _Plan, adapter: Adapter, progress: Progress
) -> Iterator[bytes]:
    import numpy as np

    from mvc.tensors import decode, encode

    info = base.info
    wide = info.dtype == "F64"
    work = np.float64 if wide else np.float32
    a = _read_matrix(adapter.weights_file, plan.module.a, wide).astype(work)  # type: ignore[arg-type]
    b = _read_matrix(adapter.weights_file, plan.module.b, wide).astype(work)  # type: ignore[arg-type]
    rows, cols = info.shape[0], int(np.prod(info.shape[1:], dtype=np.int64))
    row_bytes = info.nbytes // rows if rows else 0
    step = max(1, MERGE_BLOCK // max(1, cols * np.dtype(work).itemsize))
    scale = work(plan.scale)
    left, right = (a.T, b.T) if plan.transposed else (b, a)
    for lo in range(0, rows, step):
        hi = min(rows, lo + step)
        raw = base.source.read(info.start + lo * row_bytes, info.start + hi * row_bytes)
        weights: Any = decode(raw, info.dtype).astype(work).reshape(hi - lo, cols)
        delta = (left[lo:hi] @ right) * scale
        weights += delta
        yield encode(weights, info.dtype)
        progress.advance(len(raw))


def _copy_blocks(source: TensorFile, start: int, end: int, progress: Progress) -> Iterator[bytes]:
    for piece in source.pieces(start, end):
        lo, hi = max(start, piece.offset), min(end, piece.end)
        yield source.read(lo, hi)
        progress.advance(hi - lo)


def _plans(
    adapter: Adapter, report: CompatReport
) -> tuple[dict[str, _Plan], dict[str, TensorInfo]]:
    config = adapter.config
    if config.use_dora or adapter.weights.dora:
        raise Unsupported(
            f"{adapter.label} is a DoRA adapter (magnitude vectors); mvc merges plain LoRA only"
        )
    if config.raw.get("lora_bias"):
        raise Unsupported(f"{adapter.label} trains LoRA biases (lora_bias); mvc cannot merge them")
    plans: dict[str, _Plan] = {}
    replaced: dict[str, TensorInfo] = {}
    for check_ in report.modules:
        assert check_.base_tensor is not None
        if check_.kind == "replaced":
            replaced[check_.base_tensor] = adapter.weights.saved[check_.module]
            continue
        module = adapter.weights.modules[check_.module]
        if module.a is not None and len(module.a.shape) != 2:
            raise Unsupported(
                f"{adapter.label}: module {check_.module} is a convolution; mvc merges LoRA on "
                "Linear and Embedding layers only"
            )
        transposed = module.kind == "embedding" or config.fan_in_fan_out
        plans[check_.base_tensor] = _Plan(module, config.scale_of(check_.module), transposed)
    return plans, replaced


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
    from mvc.ops.specs import resolve
    from mvc.refnames import validate_model

    validate_model(model)
    progress = progress or NullProgress()
    base = resolve(repo, base_spec)
    adapter_resolved = resolve(repo, adapter_spec)
    base_label = f"{base_spec} ({short(base.version)})"
    adapter = load_adapter_version(
        repo, adapter_resolved.version, f"{adapter_spec} ({short(adapter_resolved.version)})"
    )
    tensors = base_tensors(repo, base.version)
    report = require_compatible(check(adapter, tensors, base_label))
    plans, replaced = _plans(adapter, report)
    for name in plans:
        dtype = tensors[name].info.dtype
        if dtype not in MERGEABLE_DTYPES:
            raise Unsupported(
                f"base tensor {name} is {dtype}; mvc merges into {', '.join(MERGEABLE_DTYPES)} weights only",
                hint="dequantise the base first",
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
    plans: dict[str, _Plan],
    replaced: dict[str, TensorInfo],
    adapter: Adapter,
    progress: Progress,
) -> Iterator[bytes]:
    from mvc.tensors import decode, element_unit, encode, tensor_windows, to_float

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
            for lo, hi in tensor_windows(
                source_file, saved.start, saved.end, element_unit(saved.dtype)
            ):
                values = to_float(decode(source_file.read(lo, hi), saved.dtype), saved.dtype)
                yield encode(values, info.dtype)
            progress.advance(info.nbytes)
        else:
            yield from _copy_blocks(source, info.start, info.end, progress)


def _write(target: str, parts: Iterator[bytes], executable: bool) -> None:
    """Write a file of the temporary merge folder (it is committed, then thrown away)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if executable else 0o644)
    with os.fdopen(fd, "wb") as handle:
        for part in parts:
            handle.write(part)
