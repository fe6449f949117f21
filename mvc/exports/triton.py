"""Triton model repository: ``NAME/config.pbtxt`` and one numbered folder per served target.

Triton versions are positive integers; mvc maps each target (version, plus adapter if any) to
the number of its first appearance in the channel's history, oldest first. History is
append-only, so a target keeps its number in every later export. ``version_policy: specific``
lists the numbers the current record serves (shadow, green and warm blue arms included: they
must be loaded to receive mirrored or switched traffic); the traffic split travels in the
``mvc.routing`` parameter for the router in front of Triton.
"""

from __future__ import annotations

import json

from mvc.exports.context import ExportContext, served_name
from mvc.ops.deploy import Record, Target, chain
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


def render_config(name: str, backend: str, versions: list[int], parameters: dict[str, str]) -> str:
    lines = [
        f"name: {pbtxt_string(name)}",
        f"backend: {pbtxt_string(backend)}",
        "max_batch_size: 0",
        "version_policy: { specific: { versions: [" + ", ".join(map(str, versions)) + "] } }",
    ]
    if backend in BACKENDS_WITH_MODEL_JSON:
        lines.append("instance_group [ { count: 1, kind: KIND_MODEL } ]")
    for key, value in parameters.items():
        lines.append(
            f"parameters: {{ key: {pbtxt_string(key)} value: {{ string_value: "
            f"{pbtxt_string(value)} }} }}"
        )
    return "\n".join(lines) + "\n"


def write_triton(ctx: ExportContext) -> None:
    record, options = ctx.record, ctx.options
    backend = options.backend or "python"
    name = served_name(options.name or record.model)
    numbers = version_numbers(ctx.repo, record)
    serving: dict[int, Target] = {}
    for arm in record.arms:
        serving[numbers[arm.target]] = arm.target
    for number, target in sorted(serving.items()):
        folder = f"{name}/{number}"
        ctx.sink.put_version(ctx.repo, target.version, f"{folder}/weights")
        if target.adapter:
            ctx.sink.put_version(ctx.repo, target.adapter.version, f"{folder}/adapter")
        if backend == "vllm":
            engine: dict[str, object] = {
                "model": ctx.uri(f"{folder}/weights"),
                "disable_log_requests": True,
            }
            if target.adapter:
                engine["enable_lora"] = True
                ctx.config(
                    f"{folder}/multi_lora.json",
                    json.dumps({name: ctx.uri(f"{folder}/adapter")}, indent=2) + "\n",
                )
            ctx.config(f"{folder}/model.json", json.dumps(engine, indent=2) + "\n")
        elif backend == "python" and options.python_model:
            with open(options.python_model, encoding="utf-8") as handle:
                ctx.config(f"{folder}/model.py", handle.read())
    if backend == "python" and not options.python_model:
        ctx.result.warnings.append(
            "the python backend loads <N>/model.py: pass --python-model FILE, or add it yourself"
        )
    routing = [
        {"label": a.label, "version": numbers[a.target], "weight": a.weight, "role": a.role}
        for a in record.arms
    ]
    parameters = {
        "mvc.model": record.model,
        "mvc.channel": record.channel,
        "mvc.record": record.id or "",
        "mvc.routing": json.dumps(routing, separators=(",", ":")),
    }
    ctx.config(f"{name}/config.pbtxt", render_config(name, backend, sorted(serving), parameters))
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
    }
