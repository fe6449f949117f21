"""Triton model repository: ``NAME/config.pbtxt`` and one numbered folder per served target.

Triton versions are positive integers; mvc maps each target (version, plus adapter if any) to
the number of its first appearance in the channel's history, oldest first. History is
append-only, so a target keeps its number in every later export. ``version_policy: specific``
lists the numbers the current record serves (shadow, green and warm blue arms included: they
must be loaded to receive mirrored or switched traffic); the traffic split travels in the
``mvc.routing`` parameter for the router in front of Triton.

With ``--backend vllm`` each version folder gets the ``model.json`` Triton's vLLM backend turns
into ``AsyncEngineArgs(**model.json)`` (only keys vLLM accepts: ``vllm_engine``), with
``gpu_memory_utilization`` split between the versions loaded together, and for an adapter arm
``multi_lora.json`` naming the adapter ``lora_name``, which that arm's requests must carry in
their sampling parameters (without it the backend silently answers with the base model); each
arm's ``lora_name`` is in ``mvc.routing``.
"""

from __future__ import annotations

import json
from typing import Any

from mvc.errors import UsageError
from mvc.exports.context import ExportContext, served_name
from mvc.exports.triton_python import MODEL_PY, io_config, not_transformers, task_of
from mvc.exports.vllm import adapter_rank
from mvc.exports.vllm_engine import TESTED_VLLM, engine_arguments, lora_rank, memory_share
from mvc.ids import short
from mvc.ops.deploy import Record, Target, chain, read_json_file
from mvc.repo import Repo

BACKENDS_WITH_MODEL_JSON = ("vllm",)


def version_numbers(repo: Repo, record: Record) -> dict[Target, int]:
    """Each target the channel ever served -> its Triton version number (1, 2, …)."""
    numbers: dict[Target, int] = {}
    for past in reversed(list(chain(repo, record))):
        for arm in past.arms:
            numbers.setdefault(arm.target, len(numbers) + 1)
    return numbers


def pbtxt_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid pbtxt string


def render_config(
    name: str,
    backend: str,
    versions: list[int],
    parameters: dict[str, str],
    io: list[str] | None = None,
) -> str:
    lines = [
        f"name: {pbtxt_string(name)}",
        f"backend: {pbtxt_string(backend)}",
        "max_batch_size: 0",
        "version_policy: { specific: { versions: [" + ", ".join(map(str, versions)) + "] } }",
    ]
    if backend in BACKENDS_WITH_MODEL_JSON:
        lines.append("instance_group [ { count: 1, kind: KIND_MODEL } ]")
        # The vLLM backend streams its answers: it refuses to start without this.
        lines.append("model_transaction_policy { decoupled: true }")
    lines.extend(io or [])
    for key, value in parameters.items():
        lines.append(
            f"parameters: {{ key: {pbtxt_string(key)} value: {{ string_value: "
            f"{pbtxt_string(value)} }} }}"
        )
    return "\n".join(lines) + "\n"


def lora_name(target: Target) -> str | None:
    """The name an arm's requests carry (``lora_name``) to get its adapter: fixed per target, so
    a version folder's multi_lora.json never changes while Triton has it loaded."""
    if target.adapter is None:
        return None
    return served_name(f"{target.adapter.model}-{short(target.adapter.version)}")


def _vllm_version(ctx: ExportContext, folder: str, target: Target, engines: int) -> None:
    wanted: dict[str, Any] = {
        "model": ctx.uri(f"{folder}/weights"),
        "gpu_memory_utilization": memory_share(engines),
    }
    name = lora_name(target)
    if target.adapter and name:
        rank = adapter_rank(ctx, target.adapter.model, target.adapter.version)
        wanted |= {"enable_lora": True, "max_lora_rank": lora_rank(rank, name), "max_loras": 1}
        ctx.config(
            f"{folder}/multi_lora.json",
            json.dumps({name: ctx.uri(f"{folder}/adapter")}, indent=2) + "\n",
        )
    engine = engine_arguments(wanted, ctx.result.warnings)
    ctx.config(f"{folder}/model.json", json.dumps(engine, indent=2) + "\n")


def _python_task(ctx: ExportContext, targets: list[Target]) -> str | None:
    """The one task the generated model.py serves for every version loaded together (None,
    with a warning, for a version that is not a transformers model)."""
    tasks: set[str] = set()
    for target in targets:
        task = task_of(read_json_file(ctx.repo, target.version, "config.json"))
        if task is None:
            label = f"{ctx.record.model}@{short(target.version)}"
            ctx.result.warnings.append(not_transformers(label))
            return None
        tasks.add(task)
    if len(tasks) != 1:
        raise UsageError(
            f"the versions channel {ctx.record.channel!r} loads together serve different tasks "
            f"({', '.join(sorted(tasks))}), and one config.pbtxt declares one set of outputs",
            hint="pass --python-model FILE, or deploy versions of one architecture",
        )
    return tasks.pop()


def write_triton(ctx: ExportContext) -> None:
    record, options = ctx.record, ctx.options
    backend = options.backend or "python"
    name = served_name(options.name or record.model)
    numbers = version_numbers(ctx.repo, record)
    serving: dict[int, Target] = {}
    for arm in record.arms:
        serving[numbers[arm.target]] = arm.target
    task = None
    if backend == "python" and not options.python_model:
        task = _python_task(ctx, list(serving.values()))
    for number, target in sorted(serving.items()):
        folder = f"{name}/{number}"
        ctx.sink.put_version(ctx.repo, target.version, f"{folder}/weights")
        if target.adapter:
            ctx.sink.put_version(ctx.repo, target.adapter.version, f"{folder}/adapter")
        if backend == "vllm":
            _vllm_version(ctx, folder, target, len(serving))
        elif backend == "python" and options.python_model:
            with open(options.python_model, encoding="utf-8") as handle:
                ctx.config(f"{folder}/model.py", handle.read())
        elif task is not None:
            ctx.sink.put_text(f"{folder}/model.py", MODEL_PY)
    if task is not None:
        ctx.result.warnings.append(
            f"wrote <N>/model.py ({task}, transformers): Triton's python environment needs "
            "numpy, torch and transformers (peft for adapters); --python-model FILE to use yours"
        )
    uses_lora = backend == "vllm"
    routing: list[dict[str, Any]] = [
        {
            "label": a.label,
            "version": numbers[a.target],
            "weight": a.weight,
            "role": a.role,
            **({"lora_name": lora_name(a.target)} if uses_lora else {}),
        }
        for a in record.arms
    ]
    parameters = {
        "mvc.model": record.model,
        "mvc.channel": record.channel,
        "mvc.record": record.id or "",
        "mvc.routing": json.dumps(routing, separators=(",", ":")),
    }
    if task is not None:
        parameters["mvc.task"] = task
    io = io_config(task) if task is not None else None
    ctx.config(
        f"{name}/config.pbtxt", render_config(name, backend, sorted(serving), parameters, io)
    )
    ctx.result.details = {
        "name": name,
        "backend": backend,
        "versions": {
            str(number): {
                "version": target.version,
                "adapter": target.adapter.to_json() if target.adapter else None,
                "serving": number in serving,
            }
            for target, number in sorted(numbers.items(), key=lambda item: item[1])
        },
        "version_policy": sorted(serving),
        "routing": routing,
        **({"vllm": TESTED_VLLM} if backend == "vllm" else {}),
    }
