"""KServe: an ``InferenceService`` whose storage URIs name the exported files.

Files go to ``versions/<id12>/`` (adapters to ``adapters/<model>/<id12>/``), so a new version is a
new URI and KServe rolls out a new revision. KServe's canary keeps the *previously rolled-out*
revision serving ``100 - canaryTrafficPercent``: apply the export of each record in order (the
stable's export first) and KServe serves exactly the record's split. A staged blue-green green is
``canaryTrafficPercent: 0`` with ``serving.kserve.io/enable-tag-routing: "true"``, so KServe
creates the ``latest-`` (green) and ``prev-`` (stable) tagged URLs. An A/B test becomes one
InferenceService per arm and an ``InferenceGraph`` whose ``Splitter`` node carries the weights.
KServe has no traffic mirroring and no warm standby: shadow and blue arms are named in
annotations only (and warned about).

**Adapter channels** (an arm with a LoRA adapter): KServe's canary splits between revisions,
while a LoRA request names its adapter, so every arm must share one base version. The export is
then one InferenceService whose ``predictor.storageUris`` mount the base at
``/mnt/models/base`` and each adapter at ``/mnt/models/adapters/<name>``, and whose huggingface
runtime args are ``--backend=vllm --enable-lora --lora-modules {json}…``: the arms are LoRA
modules named ``CHANNEL-LABEL`` (an arm without adapter is the base, ``--model_name``), and the
router in front picks one per request with the OpenAI ``model`` field (the split is in the
``mvc.dev/routing`` annotation). Arms on different bases with adapters are refused.
"""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from mvc.deployment.records import (
    BLUE,
    CANARY,
    GREEN,
    S_AB,
    S_CANARY,
    S_STAGED,
    SHADOW,
    Arm,
    Record,
    Target,
)
from mvc.errors import UsageError
from mvc.exports.context import ExportContext, served_name
from mvc.exports.vllm import adapter_rank
from mvc.exports.vllm_engine import lora_rank
from mvc.ids import short
from mvc.ops.channels import chain

API = "serving.kserve.io/v1beta1"
GRAPH_API = "serving.kserve.io/v1alpha1"
ANNOTATION = "mvc.dev"
TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
MOUNT = "/mnt/models"
# storageUri schemes KServe's storage initializer downloads from (a bare path is the host's).
POD_SCHEMES = ("s3", "gs", "pvc", "hdfs", "webhdfs", "https", "http", "hf", "oci", "azure")


def _folder(ctx: ExportContext, target: Target) -> str:
    folder = f"versions/{short(target.version)}"
    ctx.sink.put_version(ctx.repo, target.version, folder)
    if target.adapter:
        ctx.sink.put_version(ctx.repo, target.adapter.version, _adapter_key(target))
    return folder


def _adapter_key(target: Target) -> str:
    assert target.adapter is not None
    return f"adapters/{target.adapter.model}/{short(target.adapter.version)}"


def _notes(ctx: ExportContext, arm: Arm, extra: dict[str, str]) -> dict[str, str]:
    return {
        f"{ANNOTATION}/model": ctx.record.model,
        f"{ANNOTATION}/channel": ctx.record.channel,
        f"{ANNOTATION}/record": ctx.record.id or "",
        f"{ANNOTATION}/arm": arm.label,
        f"{ANNOTATION}/version": arm.version,
        **extra,
    }


def _model(ctx: ExportContext, name: str) -> dict[str, Any]:
    model_format = ctx.options.backend or "huggingface"
    model: dict[str, Any] = {"modelFormat": {"name": model_format}}
    args = [f"--model_name={name}"] if model_format == "huggingface" else []
    args += ctx.options.args
    if args:
        model["args"] = args
    return model


def _service(
    ctx: ExportContext, name: str, arm: Arm, annotations: dict[str, str], canary: int | None
) -> dict[str, Any]:
    model = _model(ctx, name)
    model["storageUri"] = ctx.uri(_folder(ctx, arm.target))
    predictor: dict[str, Any] = {"model": model}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    return {
        "apiVersion": API,
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": _notes(ctx, arm, annotations)},
        "spec": {"predictor": predictor},
    }


def _adapter_service(ctx: ExportContext, name: str) -> dict[str, Any]:
    """One revision serving the shared base and every arm's adapter as a LoRA module."""
    record = ctx.record
    if (ctx.options.backend or "huggingface") != "huggingface":
        raise UsageError(
            f"channel {record.channel!r} of {record.model!r} serves LoRA adapters, which mvc "
            "exports to KServe's huggingface runtime only (--enable-lora --lora-modules)",
            hint="leave --backend unset (huggingface), or export with --format triton or vllm",
        )
    bases = sorted({a.version for a in record.arms})
    if len(bases) != 1:
        raise UsageError(
            f"channel {record.channel!r} of {record.model!r} serves adapters on "
            f"{len(bases)} base versions ({', '.join(short(b) for b in bases)}); a KServe canary "
            "splits between revisions, but a LoRA request names one adapter",
            hint="export it with --format triton or dir, or deploy arms that differ only in "
            "their adapters",
        )
    base = _folder(ctx, Target(bases[0]))
    uris: list[dict[str, str]] = [{"uri": ctx.uri(base), "mountPath": f"{MOUNT}/base"}]
    modules: list[str] = []
    routing: list[dict[str, Any]] = []
    max_rank = 0
    for arm in record.arms:
        served = name
        if arm.adapter:
            key = _adapter_key(arm.target)
            ctx.sink.put_version(ctx.repo, arm.adapter.version, key)
            served = served_name(f"{record.channel}-{arm.label}")
            mount = f"{MOUNT}/adapters/{served}"
            uris.append({"uri": ctx.uri(key), "mountPath": mount})
            module = {"name": served, "path": mount, "base_model_name": name}
            modules.append(json.dumps(module, separators=(",", ":")))
            max_rank = max(max_rank, adapter_rank(ctx, arm.adapter.model, arm.adapter.version))
        routing.append(
            {"label": arm.label, "role": arm.role, "weight": arm.weight, "served_model": served}
        )
    model = _model(ctx, name)
    model["args"] = [
        *model.get("args", []),
        f"--model_dir={MOUNT}/base",
        "--backend=vllm",  # only its parser knows --enable-lora; the other ignores it silently
        "--enable-lora",
        "--lora-modules",
        *modules,
        f"--max-lora-rank={lora_rank(max_rank, f'channel {record.channel!r}')}",
        f"--max-loras={len(modules)}",
    ]
    stable = record.stable
    assert stable is not None
    notes = {f"{ANNOTATION}/routing": json.dumps(routing, separators=(",", ":"))}
    ctx.result.warnings.append(
        "KServe serves every arm from one revision here: route each request by its OpenAI "
        f"`model` field ({', '.join(r['served_model'] + ' ' + str(r['weight']) + '%' for r in routing)}; "
        f"in the {ANNOTATION}/routing annotation)"
    )
    ctx.result.details["routing"] = routing
    return {
        "apiVersion": API,
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": _notes(ctx, stable, notes)},
        "spec": {"predictor": {"model": model, "storageUris": uris}},
    }


def _previous(ctx: ExportContext) -> Record | None:
    past = list(islice(chain(ctx.repo, ctx.record), 2))
    return past[1] if len(past) > 1 else None


def _retirement_notes(ctx: ExportContext, name: str) -> None:
    """Say which InferenceServices an export of the previous record created that an export of
    this one no longer has (kubectl apply never deletes them)."""
    previous = _previous(ctx)
    before = previous.state if previous else None
    record = ctx.record
    arms = [served_name(f"{name}-{a.label}") for a in previous.arms] if previous else []
    if record.state == S_AB and before is not None and before != S_AB:
        ctx.result.warnings.append(
            f"the channel moved to an A/B test: once the InferenceGraph {name} is ready, retire "
            f"the single InferenceService of the earlier export: kubectl delete "
            f"inferenceservice {name}"
        )
    elif record.state != S_AB and before == S_AB:
        ctx.result.warnings.append(
            "the channel left its A/B test: once this InferenceService is ready, retire the A/B "
            f"services and their graph: kubectl delete inferencegraph {name}; kubectl delete "
            "inferenceservice " + " ".join(arms)
        )


def _check_reachable(ctx: ExportContext) -> None:
    root = ctx.serve_root
    scheme = root.split("://", 1)[0].lower() if "://" in root else ""
    if scheme not in POD_SCHEMES:
        ctx.result.warnings.append(
            f"storage URIs start with {root!r}, which KServe's storage initializer cannot read "
            "from a pod (a path on this machine): export to s3:// or gs://, or pass "
            "--serve-root pvc://CLAIM/PATH for the volume the files are on"
        )


def write_kserve(ctx: ExportContext) -> None:
    import yaml

    record = ctx.record
    _check_reachable(ctx)
    name = served_name(ctx.options.name or f"{record.model}-{record.channel}")
    documents: list[dict[str, Any]] = []
    if any(a.adapter for a in record.arms):
        documents.append(_adapter_service(ctx, name))
    elif record.state == S_AB:
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
        if record.state in (S_CANARY, S_STAGED):
            # KServe tags the canary's revision latest- and the stable's prev-: the staged
            # green is reachable before the switch only with this annotation.
            annotations[TAG_ROUTING] = "true"
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
    _retirement_notes(ctx, name)
    ctx.config("inferenceservice.yaml", yaml.safe_dump_all(documents, sort_keys=False))
    ctx.result.details.update({"name": name, "documents": len(documents)})
