"""KServe: an ``InferenceService`` whose ``storageUri`` names the exported files.

Files go to ``versions/<id12>/`` (adapters to ``adapters/<model>/<id12>/``), so a new version is a
new URI and KServe rolls out a new revision. KServe's canary keeps the *previously rolled-out*
revision serving ``100 - canaryTrafficPercent``: apply the export of each record in order (the
stable's export first) and KServe serves exactly the record's split. A staged blue-green green is
``canaryTrafficPercent: 0``. An A/B test becomes one InferenceService per arm and an
``InferenceGraph`` whose ``Splitter`` node carries the weights. KServe has no traffic mirroring
and no warm standby: shadow and blue arms are named in annotations only (and warned about).
"""

from __future__ import annotations

from typing import Any

from mvc.deployment.records import BLUE, CANARY, GREEN, S_AB, SHADOW, Arm, Target
from mvc.exports.context import ExportContext, served_name
from mvc.ids import short

API = "serving.kserve.io/v1beta1"
GRAPH_API = "serving.kserve.io/v1alpha1"
ANNOTATION = "mvc.dev"


def _folder(ctx: ExportContext, target: Target) -> str:
    folder = f"versions/{short(target.version)}"
    ctx.sink.put_version(ctx.repo, target.version, folder)
    if target.adapter:
        ctx.sink.put_version(
            ctx.repo,
            target.adapter.version,
            f"adapters/{target.adapter.model}/{short(target.adapter.version)}",
        )
    return folder


def _service(
    ctx: ExportContext, name: str, arm: Arm, annotations: dict[str, str], canary: int | None
) -> dict[str, Any]:
    model_format = ctx.options.backend or "huggingface"
    predictor: dict[str, Any] = {
        "model": {
            "modelFormat": {"name": model_format},
            "storageUri": ctx.uri(_folder(ctx, arm.target)),
        }
    }
    if model_format == "huggingface":
        predictor["model"]["args"] = [f"--model_name={name}"]
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    notes = {
        f"{ANNOTATION}/model": ctx.record.model,
        f"{ANNOTATION}/channel": ctx.record.channel,
        f"{ANNOTATION}/record": ctx.record.id or "",
        f"{ANNOTATION}/arm": arm.label,
        f"{ANNOTATION}/version": arm.version,
        **annotations,
    }
    if arm.adapter:
        adapter_key = f"adapters/{arm.adapter.model}/{short(arm.adapter.version)}"
        notes[f"{ANNOTATION}/adapter-storage-uri"] = ctx.uri(adapter_key)
        ctx.result.warnings.append(
            f"arm {arm.label}: KServe's InferenceService has no adapter field; the adapter's URI "
            f"is in the {ANNOTATION}/adapter-storage-uri annotation for your runtime to load"
        )
    return {
        "apiVersion": API,
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": notes},
        "spec": {"predictor": predictor},
    }


def write_kserve(ctx: ExportContext) -> None:
    import yaml

    record = ctx.record
    name = served_name(ctx.options.name or f"{record.model}-{record.channel}")
    documents: list[dict[str, Any]] = []
    if record.state == S_AB:
        steps = []
        for arm in record.arms:
            service = served_name(f"{name}-{arm.label}")
            documents.append(_service(ctx, service, arm, {}, None))
            steps.append({"serviceName": service, "weight": arm.weight})
        documents.append(
            {
                "apiVersion": GRAPH_API,
                "kind": "InferenceGraph",
                "metadata": {"name": name},
                "spec": {"nodes": {"root": {"routerType": "Splitter", "steps": steps}}},
            }
        )
    else:
        stable = record.by_role("stable")
        assert stable is not None
        moving = record.by_role(CANARY) or record.by_role(GREEN)
        annotations: dict[str, str] = {}
        for role in (SHADOW, BLUE):
            extra = record.by_role(role)
            if extra is not None:
                _folder(ctx, extra.target)
                annotations[f"{ANNOTATION}/{role}-storage-uri"] = ctx.uri(
                    f"versions/{short(extra.version)}"
                )
                ctx.result.warnings.append(
                    f"KServe cannot {'mirror traffic to' if role == SHADOW else 'keep warm'} "
                    f"the {role} arm; its URI is in the {ANNOTATION}/{role}-storage-uri annotation"
                )
        if moving is not None:
            annotations[f"{ANNOTATION}/stable-storage-uri"] = ctx.uri(_folder(ctx, stable.target))
            annotations[f"{ANNOTATION}/stable-version"] = stable.version
            documents.append(_service(ctx, name, moving, annotations, moving.weight))
        else:
            documents.append(_service(ctx, name, stable, annotations, None))
    ctx.config("inferenceservice.yaml", yaml.safe_dump_all(documents, sort_keys=False))
    ctx.result.details = {"name": name, "documents": len(documents)}
