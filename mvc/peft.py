"""PEFT LoRA adapters as pure values: the config, the tensor pairs, their fit, the merge.

The one implementation behind ``mvc check-compat``, ``mvc merge-adapter``, deployments of
``BASE + ADAPTER`` targets and ``mvc.load("base + adapter")``. No I/O: callers hand in the
adapter's ``adapter_config.json`` bytes, tensor headers (names, dtypes, shapes) and a way to
read rows of a base weight; this module says what fits, what is refused and what the merged
rows are. Invariants:

- Only plain LoRA is accepted for use (checking, merging, serving): ``peft_type: LORA`` on
  Linear, GPT-2-style Conv1D (``fan_in_fan_out``) and Embedding weights. Every other method or
  option that changes the merged weights (DoRA, LoRA biases, trained biases, convolutions,
  other LoRA variants, other PEFT types) raises ``UnsupportedAdapter`` with one message shape,
  on every path — never a silent plain-LoRA merge.
- ``rank_pattern`` / ``alpha_pattern`` keys match module names exactly as peft matches them
  (``peft.utils.other.get_pattern_key``: the first key, in file order, for which
  ``re.match(rf"(.*\\.)?({key})$", module)``); ``target_modules`` and ``exclude_modules`` as
  ``peft.tuners.tuners_utils.check_target_module_exists``: a string is a full regex match, a
  list matches a module equal to or ending in ``.`` + an entry.
- The merge is peft's ``merge_and_unload`` arithmetic: W + transpose?(B·A)·scale with
  scale = alpha/r (alpha/√r with ``use_rslora``), in float32 (float64 for F64 weights), cast
  back to the base's dtype; computed in blocks of rows (``MERGE_BLOCK`` bytes of work), so a
  huge weight never needs a second full copy in memory. The blocks depend only on the weight's
  shape and dtype, so every caller gets the same bits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from mvc.errors import InvalidInput, MvcError
from mvc.jsonshape import JsonShaped, Shape

if TYPE_CHECKING:
    import numpy as np

    from mvc.formats.safetensors import TensorInfo

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
MERGE_BLOCK = 4 << 20  # bytes of float32 (or float64) work per block of rows
MERGEABLE_DTYPES = ("F16", "BF16", "F32", "F64")
SUPPORTED = "plain LoRA (peft_type LORA) on Linear, Conv1D (fan_in_fan_out) and Embedding layers"

_LORA = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>A|B)(?:\.(?P<name>[^.]+))?\.weight$")
_LORA_EMBEDDING = re.compile(r"^(?P<module>.+)\.lora_embedding_(?P<ab>A|B)(?:\.(?P<name>[^.]+))?$")
_DORA = re.compile(r"\.lora_magnitude_vector(\.|$)")
_SAVED = re.compile(r"\.modules_to_save(\.[^.]+)?(?=\.)")

# LoraConfig options that change what merging means (peft's LoRA variants and friends): a
# truthy value makes the adapter unsupported. Options that only affect training
# (lora_dropout, init_lora_weights other than a variant, layers_to_transform, …) merge as LoRA.
_UNSUPPORTED_OPTIONS = {
    "use_dora": "DoRA (use_dora: true)",
    "lora_bias": "LoRA biases (lora_bias: true)",
    "use_qalora": "QA-LoRA (use_qalora: true)",
    "velora_config": "VeLoRA (velora_config)",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
    "monteclora_config": "MonteCLoRA (monteclora_config)",
    "use_bdlora": "block-diagonal LoRA (use_bdlora)",
    "arrow_config": "Arrow routing (arrow_config)",
    "kasa_config": "KaSA (kasa_config)",
    "layer_replication": "layer replication (layer_replication)",
    "target_parameters": "LoRA on parameters (target_parameters)",
    "trainable_token_indices": "trainable tokens (trainable_token_indices)",
    "megatron_config": "Megatron parallel layers (megatron_config)",
}


class UnsupportedAdapter(MvcError):
    """An adapter mvc cannot check, merge or serve faithfully (the one refusal, on every path)."""


def unsupported(label: str, reason: str) -> UnsupportedAdapter:
    """The refusal, worded once: what the adapter uses and what mvc supports instead."""
    return UnsupportedAdapter(
        f"{label} uses {reason}; mvc checks, merges and serves LoRA adapters only: {SUPPORTED}",
        hint="merge it with peft's merge_and_unload() and commit the merged model instead",
    )


class IncompatibleAdapter(InvalidInput):
    """The adapter does not fit the base model; ``report`` says where."""

    def __init__(self, message: str, report: CompatReport, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


# --- adapter_config.json ---------------------------------------------------------------------


def pattern_key(patterns: Iterable[str], module: str) -> str | None:
    """The rank_pattern/alpha_pattern key that applies to ``module``, as peft picks it."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return None


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
    exclude_modules: list[str] | str | None = None
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

    def rank_of(self, module: str) -> int:
        key = pattern_key(self.rank_pattern, module)
        return int(self.rank_pattern[key]) if key is not None else self.rank

    def alpha_of(self, module: str) -> float:
        key = pattern_key(self.alpha_pattern, module)
        return float(self.alpha_pattern[key]) if key is not None else self.alpha

    def scale_of(self, module: str) -> float:
        """peft's ``scaling``: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora."""
        rank = self.rank_of(module)
        alpha = self.alpha_of(module)
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank

    def targets(self, module: str) -> bool:
        """Whether ``module`` is one peft's ``target_modules`` (minus ``exclude_modules``) selects."""
        if _selects(self.exclude_modules, module):
            return False
        if self.target_modules is None or self.target_modules == "all-linear":
            return True
        return _selects(self.target_modules, module)

    @property
    def max_rank(self) -> int:
        """The largest rank of any module (what a server must be able to hold)."""
        return max([self.rank, *self.rank_pattern.values()])

    def unsupported_reason(self) -> str | None:
        """Why mvc cannot merge this adapter faithfully, or None for plain LoRA."""
        if self.peft_type != "LORA":
            return f"peft_type {self.peft_type} (not LoRA)"
        for key, what in _UNSUPPORTED_OPTIONS.items():
            if self.raw.get(key):
                return what
        bias = self.raw.get("bias", "none")
        if bias not in (None, "none"):
            return f"trained biases (bias: {bias!r})"
        if self.raw.get("init_lora_weights") == "mica":
            return "MiCA (init_lora_weights: mica)"
        return None


def _selects(patterns: list[str] | str | None, module: str) -> bool:
    if not patterns:
        return False
    if isinstance(patterns, str):
        return re.fullmatch(patterns, module) is not None
    return any(module == p or module.endswith("." + p) for p in patterns)


def _positive(value: Any, kind: Any) -> bool:
    """A finite number above zero of ``kind`` (JSON's NaN and Infinity are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, kind):
        return False
    return bool(math.isfinite(value) and value > 0)


def _number(raw: dict[str, Any], key: str, default: Any, where: str) -> Any:
    value = raw.get(key, default)
    if not _positive(value, int | float):
        raise InvalidInput(f"{where}: {key} must be a positive number, got {value!r}")
    return value


def _names(raw: dict[str, Any], key: str, where: str) -> list[str] | str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            re.compile(value)
        except re.error as exc:
            raise InvalidInput(f"{where}: {key} {value!r} is not a regex: {exc}") from exc
        return value
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InvalidInput(f"{where}: {key} must be a list of module names or a regex")
    return list(value)


def _pattern(raw: dict[str, Any], key: str, integer: bool, where: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: {key} must be an object of module pattern -> number")
    for name, number in value.items():
        try:
            re.compile(rf"(.*\.)?({name})$")  # the very pattern pattern_key matches with
        except re.error as exc:
            raise InvalidInput(f"{where}: {key} key {name!r} is not a regex: {exc}") from exc
        if not _positive(number, int if integer else int | float):
            kind = "a positive integer" if integer else "a positive number"
            raise InvalidInput(f"{where}: {key}[{name!r}] must be {kind}, got {number!r}")
    return dict(value)


def _flag(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: {key} must be true or false, got {value!r}")
    return value


def parse_adapter_config(data: bytes, folder: str, where: str) -> AdapterConfig:
    """``adapter_config.json`` bytes as a checked value; ``where`` names the file in errors."""
    import json

    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} is not a JSON object")
    return config_from_dict(raw, folder, where)


def config_from_dict(raw: dict[str, Any], folder: str, where: str) -> AdapterConfig:
    """An ``adapter_config.json`` object as a checked value."""
    peft_type = str(raw.get("peft_type") or "LORA").upper()
    if peft_type != "LORA":
        return AdapterConfig(
            folder, peft_type, 0, 0.0, None, raw.get("base_model_name_or_path"), raw=raw
        )
    rank = _number(raw, "r", 8, where)
    if not isinstance(rank, int):
        raise InvalidInput(f"{where}: r must be a positive integer, got {rank!r}")
    alpha = _number(raw, "lora_alpha", 8, where)
    saved = raw.get("modules_to_save") or []
    return AdapterConfig(
        folder,
        peft_type,
        rank,
        float(alpha),
        _names(raw, "target_modules", where),
        raw.get("base_model_name_or_path"),
        _flag(raw, "fan_in_fan_out", where),
        _flag(raw, "use_rslora", where),
        bool(raw.get("use_dora")),
        _pattern(raw, "rank_pattern", True, where),
        _pattern(raw, "alpha_pattern", False, where),
        [str(m) for m in saved] if isinstance(saved, list) else [],
        _names(raw, "exclude_modules", where),
        raw,
    )


# --- the adapter's tensors ---------------------------------------------------------------------


@dataclass
class LoraModule:
    module: str  # the module path in the base model, e.g. model.layers.0.self_attn.q_proj
    kind: str  # linear or embedding
    a: TensorInfo | None = None
    b: TensorInfo | None = None


@dataclass
class AdapterWeights:
    modules: dict[str, LoraModule]
    saved: dict[str, TensorInfo]  # full replacement tensors (modules_to_save), by base name
    unsupported: str | None = None  # the first tensor mvc cannot merge, said as a reason


def strip_prefix(name: str) -> str:
    return name[len(PEFT_PREFIX) :] if name.startswith(PEFT_PREFIX) else name


def pair_tensors(tensors: Iterable[TensorInfo]) -> AdapterWeights:
    """Group an adapter file's tensors: lora_A/lora_B per module, replaced tensors, the rest."""
    modules: dict[str, LoraModule] = {}
    saved: dict[str, TensorInfo] = {}
    reason: str | None = None
    for info in tensors:
        match = _LORA.match(info.name) or _LORA_EMBEDDING.match(info.name)
        if match:
            kind = "embedding" if "lora_embedding_" in info.name else "linear"
            module = strip_prefix(match.group("module"))
            entry = modules.setdefault(module, LoraModule(module, kind))
            if match.group("ab") == "A":
                entry.a = info
            else:
                entry.b = info
        elif _DORA.search(info.name):
            reason = reason or f"DoRA (magnitude vector {info.name})"
        elif "lora_" in info.name or "trainable_tokens_" in info.name:
            reason = reason or f"a tensor plain LoRA does not have ({info.name})"
        else:
            saved[_SAVED.sub("", strip_prefix(info.name))] = info
    for pair in modules.values():
        for part in (pair.a, pair.b):
            if reason is None and part is not None and len(part.shape) != 2:
                reason = f"LoRA on a convolution ({pair.module}, {len(part.shape)}-d factors)"
    return AdapterWeights(modules, saved, reason)


def require_supported(config: AdapterConfig, weights: AdapterWeights | None, label: str) -> None:
    """Raise ``UnsupportedAdapter`` unless this is plain LoRA mvc merges exactly as peft does."""
    reason = config.unsupported_reason() or (weights.unsupported if weights else None)
    if reason is not None:
        raise unsupported(label, reason)


def check_ranks(config: AdapterConfig, weights: AdapterWeights, label: str) -> None:
    """An adapter against itself: each module has lora_A and lora_B of its configured rank."""
    for name, module in weights.modules.items():
        rank = config.rank_of(name)
        if module.a is None or module.b is None:
            raise IncompatibleAdapter(
                f"adapter {label}: module {name} lacks lora_{'A' if module.a is None else 'B'}",
                CompatReport("", label, config),
            )
        if module.a.shape[0] != rank or module.b.shape[1:2] != (rank,):
            raise IncompatibleAdapter(
                f"adapter {label}: module {name} has lora_A {list(module.a.shape)} and "
                f"lora_B {list(module.b.shape)}, but adapter_config.json says r={rank}",
                CompatReport("", label, config),
            )


# --- fit against a base ------------------------------------------------------------------------


@dataclass
class ModuleCheck(JsonShaped):
    module: str
    kind: str
    base_tensor: str | None
    base_shape: tuple[int, ...] | None
    a_shape: tuple[int, ...] | None
    b_shape: tuple[int, ...] | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    json_shape: ClassVar[Shape] = Shape(
        rename={"a_shape": "lora_A_shape", "b_shape": "lora_B_shape"}, computed={"ok": "ok"}
    )


@dataclass
class CompatReport(JsonShaped):
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

    json_shape: ClassVar[Shape] = Shape(
        rename={"config": "adapter_info"},
        convert={"config": lambda config: config.facts()},
        computed={"compatible": "ok", "problems": "all_problems"},
    )


def find_base(
    module: str, suffix: str, base: Mapping[str, TensorInfo]
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


def expected_shapes(
    kind: str, w: tuple[int, ...], rank: int, fan_in_fan_out: bool
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The (lora_A, lora_B) shapes a base weight of shape ``w`` calls for."""
    if len(w) != 2:
        return None
    if kind == "embedding":  # lora_embedding_A is (r, num_embeddings), B (embedding_dim, r)
        return (rank, w[0]), (w[1], rank)
    out_f, in_f = (w[1], w[0]) if fan_in_fan_out else (w[0], w[1])
    return (rank, in_f), (out_f, rank)


def check(
    config: AdapterConfig,
    weights: AdapterWeights,
    base: Mapping[str, TensorInfo],
    base_label: str,
    adapter_label: str,
) -> CompatReport:
    """Every LoRA module against the base's tensors; read ``report.ok``.

    Raises ``UnsupportedAdapter`` first for anything but plain LoRA.
    """
    require_supported(config, weights, adapter_label)
    report = CompatReport(base_label, adapter_label, config)
    if not weights.modules:
        report.problems.append(f"{ADAPTER_WEIGHTS} holds no LoRA tensors (lora_A/lora_B)")
    if isinstance(config.target_modules, list):
        for target in config.target_modules:
            if not any(m == target or m.endswith("." + target) for m in weights.modules):
                report.problems.append(f"target module {target!r} has no LoRA weights")
    for name, module in sorted(weights.modules.items()):
        report.modules.append(_check_module(config, name, module, base))
    for name, info in sorted(weights.saved.items()):
        base_name, problem = find_base(name, "", base)
        check_ = ModuleCheck(name, "replaced", base_name, None, info.shape, None)
        report.modules.append(check_)
        if base_name is None:
            check_.problem = f"saved module tensor: {problem}"
            continue
        check_.base_shape = base[base_name].shape
        if base[base_name].shape != info.shape:
            check_.problem = (
                f"saved module tensor is {list(info.shape)} but base {base_name} is "
                f"{list(base[base_name].shape)}"
            )
    return report


def _check_module(
    config: AdapterConfig, name: str, module: LoraModule, base: Mapping[str, TensorInfo]
) -> ModuleCheck:
    a, b = module.a, module.b
    found = ModuleCheck(
        name, module.kind, None, None, a.shape if a else None, b.shape if b else None
    )
    if a is None or b is None:
        found.problem = f"has lora_{'B' if a else 'A'} but no lora_{'A' if a else 'B'}"
        return found
    if not config.targets(name):
        found.problem = "is not selected by target_modules in adapter_config.json"
        return found
    base_name, problem = find_base(name, ".weight", base)
    if base_name is None:
        found.problem = problem
        return found
    shape = base[base_name].shape
    found.base_tensor, found.base_shape = base_name, shape
    rank = config.rank_of(name)
    if a.shape[0] != rank or b.shape[1:2] != (rank,):
        found.problem = (
            f"rank mismatch: adapter_config says r={rank}, lora_A is {list(a.shape)} "
            f"and lora_B is {list(b.shape)}"
        )
        return found
    expected = expected_shapes(module.kind, shape, rank, config.fan_in_fan_out)
    if expected is None:
        found.problem = f"base tensor {base_name} has shape {list(shape)}, which LoRA cannot adapt"
    elif (a.shape, b.shape) != expected:
        found.problem = (
            f"shape mismatch: base {base_name} is {list(shape)}, so lora_A should be "
            f"{list(expected[0])} and lora_B {list(expected[1])}, but they are "
            f"{list(a.shape)} and {list(b.shape)}"
        )
    return found


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


# --- merging -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergePlan:
    """How one base weight changes: W + transpose?(B·A)·scale."""

    base_name: str
    module: LoraModule
    scale: float
    transposed: bool  # delta = (B·A)ᵀ: fan_in_fan_out (Conv1D) weights and Embeddings


def plan_merge(
    report: CompatReport, weights: AdapterWeights, base: Mapping[str, TensorInfo]
) -> tuple[dict[str, MergePlan], dict[str, TensorInfo]]:
    """(base tensor -> merge plan, base tensor -> replacing adapter tensor) of a fitting adapter."""
    require_compatible(report)
    config = report.config
    plans: dict[str, MergePlan] = {}
    replaced: dict[str, TensorInfo] = {}
    for check_ in report.modules:
        assert check_.base_tensor is not None
        if check_.kind == "replaced":
            replaced[check_.base_tensor] = weights.saved[check_.module]
            continue
        dtype = base[check_.base_tensor].dtype
        if dtype not in MERGEABLE_DTYPES:
            raise unsupported(
                report.adapter,
                f"a base weight of dtype {dtype} ({check_.base_tensor}; dequantise the base first)",
            )
        module = weights.modules[check_.module]
        transposed = module.kind == "embedding" or config.fan_in_fan_out
        plans[check_.base_tensor] = MergePlan(
            check_.base_tensor, module, config.scale_of(check_.module), transposed
        )
    return plans, replaced


def work_dtype(dtype: str) -> Any:
    import numpy as np

    return np.float64 if dtype == "F64" else np.float32


def row_blocks(shape: tuple[int, ...], dtype: str) -> Iterator[tuple[int, int]]:
    """The (lo, hi) row ranges a weight of ``shape`` and ``dtype`` is merged in."""
    import numpy as np

    rows = shape[0] if shape else 0
    cols = int(np.prod(shape[1:], dtype=np.int64))
    step = max(1, MERGE_BLOCK // max(1, cols * np.dtype(work_dtype(dtype)).itemsize))
    for lo in range(0, rows, step):
        yield lo, min(rows, lo + step)


def merged_blocks(
    plan: MergePlan,
    shape: tuple[int, ...],
    dtype: str,
    read_rows: Callable[[int, int], np.ndarray],
    a: np.ndarray,
    b: np.ndarray,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(lo, hi, merged rows lo:hi in the work dtype) of one weight, block by block.

    ``read_rows(lo, hi)`` returns the base weight's rows lo:hi (any float dtype, any shape of
    that many elements); ``a`` and ``b`` are lora_A and lora_B. The caller casts each block to
    the base's dtype.
    """
    import numpy as np

    work = work_dtype(dtype)
    cols = int(np.prod(shape[1:], dtype=np.int64))
    a, b = np.asarray(a, dtype=work), np.asarray(b, dtype=work)
    left, right = (a.T, b.T) if plan.transposed else (b, a)
    scale = work(plan.scale)
    for lo, hi in row_blocks(shape, dtype):
        rows = np.array(read_rows(lo, hi), dtype=work).reshape(hi - lo, cols)
        rows += (left[lo:hi] @ right) * scale
        yield lo, hi, rows


def merge_array(plan: MergePlan, weight: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The merged weight as a new array of ``weight``'s dtype (``weight`` is only read)."""
    import numpy as np

    dtype = "F64" if weight.dtype == np.float64 else "F32"  # only the work dtype depends on it
    out = np.empty(weight.shape, dtype=weight.dtype)
    flat = out.reshape(weight.shape[0], -1)
    source = weight.reshape(weight.shape[0], -1)
    for lo, hi, rows in merged_blocks(
        plan, tuple(weight.shape), dtype, lambda lo, hi: source[lo:hi], a, b
    ):
        flat[lo:hi] = rows.astype(weight.dtype)
    return out


def cast_replacement(values: np.ndarray, dtype: Any) -> np.ndarray:
    """A modules_to_save tensor in the base's dtype (through float64 when the dtypes differ)."""
    import numpy as np

    if values.dtype == dtype:
        return values
    return np.asarray(values, dtype=np.float64).astype(dtype)
