"""vLLM: one base model served with the channel's adapters as LoRA modules.

vLLM serves one base model per process; each arm's adapter becomes a LoRA module named
``CHANNEL-LABEL`` (``prod-canary``), which clients select with the OpenAI ``model`` field. An arm
without an adapter is the base itself, served as NAME. A channel whose arms use different base
versions cannot be one vLLM server: the export refuses and says which formats can.

``--lora-modules`` takes the JSON form (``{"name", "path", "base_model_name"}``: a comma in a
path breaks ``name=path``); ``--max-lora-rank`` holds every module's rank, ``rank_pattern``
included; an adapter vLLM refuses (``vllm_engine.adapter_problems``) is refused here first.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from mvc.errors import UsageError
from mvc.exports.context import ExportContext, served_name
from mvc.exports.vllm_engine import lora_rank, require_servable
from mvc.ids import ObjectId, short
from mvc.ops.deploy import read_json_file
from mvc.peft import config_from_dict


def write_vllm(ctx: ExportContext) -> None:
    record = ctx.record
    bases = sorted({a.version for a in record.arms})
    if len(bases) != 1:
        raise UsageError(
            f"vLLM serves one base model, but channel {record.channel!r} of {record.model!r} "
            f"serves {len(bases)} base versions ({', '.join(short(b) for b in bases)})",
            hint="export it with --format triton, kserve or dir; vllm needs arms that differ "
            "only in their adapters",
        )
    base_key = f"versions/{short(bases[0])}"
    ctx.sink.put_version(ctx.repo, bases[0], base_key)
    name = served_name(ctx.options.name or record.model)
    modules: list[dict[str, Any]] = []
    routing: list[dict[str, Any]] = []
    max_rank = 0
    for arm in record.arms:
        served = name
        if arm.adapter:
            key = f"adapters/{arm.adapter.model}/{short(arm.adapter.version)}"
            ctx.sink.put_version(ctx.repo, arm.adapter.version, key)
            served = served_name(f"{record.channel}-{arm.label}")
            modules.append({"name": served, "path": ctx.uri(key), "base_model_name": name})
            max_rank = max(max_rank, adapter_rank(ctx, arm.adapter.model, arm.adapter.version))
        routing.append(
            {"label": arm.label, "role": arm.role, "weight": arm.weight, "served_model": served}
        )
    args = [ctx.uri(base_key), "--served-model-name", name]
    if modules:
        args.append("--enable-lora")
        args.append("--lora-modules")
        args.extend(json.dumps(m, separators=(",", ":"), ensure_ascii=False) for m in modules)
        args.extend(["--max-lora-rank", str(lora_rank(max_rank, f"channel {record.channel!r}"))])
        args.extend(["--max-loras", str(len(modules))])
    document = {
        "model": ctx.uri(base_key),
        "served_model_name": name,
        "lora_modules": modules,
        "args": args,
        "routing": routing,
        "record": record.id,
    }
    ctx.config("vllm.json", json.dumps(document, indent=2) + "\n")
    ctx.config("vllm-args.txt", shlex.join(["vllm", "serve", *args]) + "\n")
    ctx.result.details = {"served_model_name": name, "lora_modules": modules, "args": args}


def adapter_rank(ctx: ExportContext, model: str, version: ObjectId) -> int:
    """The largest rank of an adapter's modules (``r`` and ``rank_pattern``), after checking
    that vLLM loads it at all."""
    label = f"{model}@{short(version)}"
    raw = read_json_file(ctx.repo, version, "adapter_config.json")
    if raw is None:
        raise UsageError(
            f"adapter {label} has no adapter_config.json; vLLM loads PEFT adapter folders",
            hint="commit the adapter folder peft's save_pretrained writes",
        )
    require_servable(raw, label)
    return config_from_dict(raw, "", f"{label}: adapter_config.json").max_rank
