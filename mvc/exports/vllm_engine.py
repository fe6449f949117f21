"""What vLLM accepts, for the exports that configure it (``vllm`` and Triton's vLLM backend).

Three rules, each written down from vLLM's own source and tested against the real thing
(tests/integration/test_exports.py runs vLLM's ``vllm serve`` parser, ``AsyncEngineArgs``,
``LoRAConfig`` and ``PEFTHelper``):

- **engine arguments**: Triton's vLLM backend calls ``AsyncEngineArgs(**model.json)``, so a key
  the installed vLLM does not have stops the model from loading. mvc emits only the keys of
  ``ENGINE_KEYS`` for the vLLM versions it is tested with; where vLLM is installed beside mvc, its
  ``vllm/engine/arg_utils.py`` is read (never imported: importing vLLM takes seconds and wants a
  device) and a key it lacks is left out, with a warning.
- **LoRA ranks**: ``--max-lora-rank`` / ``max_lora_rank`` must be one of vLLM's
  ``MaxLoRARanks`` and at least every module's rank, ``rank_pattern`` included (``PEFTHelper.
  validate_legal`` compares ``max(r, *rank_pattern.values())``).
- **adapters vLLM refuses**: ``PEFTHelper._validate_features`` and ``validate_legal`` of vLLM
  0.33 (DoRA, LoRA bias, ``bias`` other than ``none``, ``modules_to_save`` other than
  ``classifier``/``score``, base-modifying ``init_lora_weights``, aLoRA, layer replication,
  BD-LoRA, QA-LoRA, and missing required fields). vLLM would refuse such an adapter only when a
  request first asks for it; the export refuses it up front, with vLLM's reason.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from typing import Any

from mvc.errors import UsageError
from mvc.peft import UnsupportedAdapter

#: The vLLM release the rules here are tested against (the tests run its parsers).
TESTED_VLLM = "0.33"
#: ``MaxLoRARanks`` in vllm/config/lora.py.
LORA_RANK_CHOICES = (1, 8, 16, 32, 64, 128, 256, 320, 512)
#: vLLM's default ``gpu_memory_utilization``: the share of a GPU one engine takes.
GPU_MEMORY_UTILIZATION = 0.9
#: The ``AsyncEngineArgs`` keys mvc writes to model.json, per tested vLLM version (every one is
#: checked against that version's dataclass fields by the tests). ``disable_log_requests`` is
#: gone since 0.11 and is never written.
ENGINE_KEYS: dict[str, frozenset[str]] = {
    "0.33": frozenset(
        {"model", "gpu_memory_utilization", "enable_lora", "max_lora_rank", "max_loras"}
    ),
}
REQUIRED_KEYS = frozenset({"model"})
# PEFTHelper's required fields (no default in the dataclass).
_REQUIRED_ADAPTER_FIELDS = ("r", "lora_alpha", "target_modules")
_SAVED_OK = ("classifier", "score")
_INITS_OK = ("gaussian", "eva", "orthogonal", "mica", "lora_ga")


def lora_rank(max_rank: int, label: str) -> int:
    """The smallest rank vLLM accepts for ``--max-lora-rank`` that holds ``max_rank``."""
    for choice in LORA_RANK_CHOICES:
        if choice >= max_rank:
            return choice
    raise UsageError(
        f"{label} has LoRA rank {max_rank}; vLLM holds ranks up to {LORA_RANK_CHOICES[-1]}",
        hint="merge the adapter into its base (mvc merge-adapter) and deploy the merged model",
    )


def adapter_problems(raw: dict[str, Any]) -> list[str]:
    """Why vLLM refuses an ``adapter_config.json`` (empty: it loads), in vLLM's own words."""
    problems = [
        f"a required field is missing: {name}"
        for name in _REQUIRED_ADAPTER_FIELDS
        if name not in raw
    ]
    saved = raw.get("modules_to_save") or []
    if isinstance(saved, str):
        saved = [saved]
    unsupported = [m for m in saved if m not in _SAVED_OK]
    if unsupported:
        problems.append(
            "vLLM supports modules_to_save only as None or ['classifier', 'score'] "
            f"(classification models); this adapter saves {unsupported}"
        )
    if raw.get("use_dora"):
        problems.append("vLLM does not support DoRA (use_dora)")
    if raw.get("lora_bias"):
        problems.append("vLLM does not support LoRA bias (lora_bias)")
    init = raw.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in _INITS_OK:
        problems.append(
            f"vLLM does not support init_lora_weights={init!r}, which modifies the base weights "
            "(convert it to a plain LoRA with peft's path_initial_model_for_weight_conversion)"
        )
    if raw.get("alora_invocation_tokens"):
        problems.append("vLLM does not support activated LoRA (alora_invocation_tokens)")
    if raw.get("layer_replication"):
        problems.append("vLLM does not support layer_replication")
    if raw.get("use_bdlora"):
        problems.append("vLLM does not support block-diagonal LoRA (use_bdlora)")
    if raw.get("use_qalora"):
        problems.append("vLLM does not support QA-LoRA (use_qalora)")
    if raw.get("bias", "none") not in (None, "none"):
        problems.append(f"vLLM does not support adapter biases (bias: {raw.get('bias')!r})")
    return problems


def require_servable(raw: dict[str, Any], label: str) -> None:
    """Raise ``UnsupportedAdapter`` with vLLM's reasons unless vLLM loads this adapter."""
    problems = adapter_problems(raw)
    if problems:
        raise UnsupportedAdapter(
            f"vLLM cannot serve adapter {label}: " + "; ".join(problems),
            hint="merge it into its base (mvc merge-adapter) and deploy the merged model, or "
            "export with --format triton (python backend) or kserve",
        )


def installed_engine_fields() -> frozenset[str] | None:
    """``AsyncEngineArgs``' field names in the vLLM installed here, read from its source
    (``EngineArgs`` and ``AsyncEngineArgs`` class bodies), or None without vLLM."""
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "engine", "arg_utils.py")
        try:
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), path)
        except (OSError, SyntaxError, ValueError):
            continue
        fields: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in ("EngineArgs", "AsyncEngineArgs"):
                fields.update(
                    item.target.id
                    for item in node.body
                    if isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and not _is_classvar(item.annotation)
                )
        if fields:
            return frozenset(fields)
    return None


def _is_classvar(annotation: ast.expr) -> bool:
    text = ast.unparse(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def engine_arguments(wanted: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """``wanted`` reduced to keys every tested vLLM accepts and, where vLLM is installed, that
    one accepts too; a dropped key is warned about, a required one refused."""
    tested = ENGINE_KEYS[TESTED_VLLM]
    installed = installed_engine_fields()
    accepted = tested if installed is None else tested & installed
    for key in wanted:
        if key in accepted:
            continue
        where = "the vLLM installed here" if key in tested else f"vLLM {TESTED_VLLM}"
        if key in REQUIRED_KEYS:
            raise UsageError(
                f"model.json needs {key!r}, which {where} does not accept",
                hint=f"mvc's Triton vLLM export is tested with vLLM {TESTED_VLLM}",
            )
        warnings.append(f"model.json: left out {key!r}: {where} has no such engine argument")
    return {k: v for k, v in wanted.items() if k in accepted}


def memory_share(engines: int) -> float:
    """Each engine's ``gpu_memory_utilization`` when ``engines`` share one GPU (two decimals,
    rounded down, so the sum stays within vLLM's default for one engine)."""
    return int(GPU_MEMORY_UTILIZATION * 100 / max(1, engines)) / 100
