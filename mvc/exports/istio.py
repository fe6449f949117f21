"""Istio: a ``DestinationRule`` and a ``VirtualService`` that route a channel at mesh scale.

``istio.yaml`` holds two ``networking.istio.io/v1`` documents for the Kubernetes service HOST
(``--name``, default the model's name):

- the DestinationRule names one **subset per target** the record serves (base version, plus
  adapter), selected by the pod labels ``mvc.dev/version: <id12>`` (and ``mvc.dev/adapter:
  <id12>``); the pods serving a target must carry them (the export lists them);
- the VirtualService's HTTP routes are, in order: one **pin route per target**, matching the
  ``x-model-version`` header (Istio matches header names in lower case; HTTP headers are case
  blind, so clients send ``X-Model-Version``) exactly against the version's tags (``v1.2.0`` and
  ``1.2.0``), its 12-digit short id and its full id; then the **default route**, weighted per
  arm (arms that take traffic), with ``mirror`` (100%) to the shadow arm's subset.

The model files of each subset go to ``versions/<id12>/`` (its adapter to
``adapters/<model>/<id12>/``) for the pods of that subset to load (``details.subsets`` gives
each one's URIs). Istio's weighted routes pick per request, not per key: mvc's sticky hashing
(``mvc.Router``) needs a router that hashes the key in front.
"""

from __future__ import annotations

from typing import Any

from mvc.deployment.records import SHADOW, Arm, Target
from mvc.exports.context import ExportContext, served_name
from mvc.ids import ObjectId, short
from mvc.router import serving_order

API = "networking.istio.io/v1"
PIN_HEADER = "x-model-version"  # lower case: Istio refuses upper-case header names
VERSION_LABEL = "mvc.dev/version"
ADAPTER_LABEL = "mvc.dev/adapter"


def subset_name(target: Target) -> str:
    """A DNS-label subset name, fixed per target."""
    name = f"v-{short(target.version)}"
    if target.adapter:
        name += f"-{short(target.adapter.version)}"
    return name


def subset_labels(target: Target) -> dict[str, str]:
    labels = {VERSION_LABEL: short(target.version)}
    if target.adapter:
        labels[ADAPTER_LABEL] = short(target.adapter.version)
    return labels


def _pin_values(ctx: ExportContext, version: ObjectId) -> list[str]:
    tags = sorted(ctx.namer.tags[ctx.record.model].names.get(version, ()))
    values: list[str] = []
    for tag in tags:
        values.append(tag)
        if tag[:1] == "v" and tag[1:2].isdigit():
            values.append(tag[1:])  # the spec grammar takes 1.2.0 for v1.2.0
    return [*values, short(version), str(version)]


def write_istio(ctx: ExportContext) -> None:
    import yaml

    record = ctx.record
    host = ctx.options.name or served_name(record.model)
    answering = serving_order(record.arms)
    ordered: list[Arm] = answering + [a for a in record.arms if a not in answering]
    targets: list[Target] = []
    for arm in ordered:
        if arm.target not in targets:
            targets.append(arm.target)
    files: dict[str, dict[str, str]] = {}
    for target in targets:
        key = f"versions/{short(target.version)}"
        ctx.sink.put_version(ctx.repo, target.version, key)
        files[subset_name(target)] = {"weights": ctx.uri(key)}
        if target.adapter:
            adapter = f"adapters/{target.adapter.model}/{short(target.adapter.version)}"
            ctx.sink.put_version(ctx.repo, target.adapter.version, adapter)
            files[subset_name(target)]["adapter"] = ctx.uri(adapter)
    notes = {
        "mvc.dev/model": record.model,
        "mvc.dev/channel": record.channel,
        "mvc.dev/record": record.id or "",
    }
    rule: dict[str, Any] = {
        "apiVersion": API,
        "kind": "DestinationRule",
        "metadata": {"name": served_name(f"{record.model}-{record.channel}"), "annotations": notes},
        "spec": {
            "host": host,
            "subsets": [{"name": subset_name(t), "labels": subset_labels(t)} for t in targets],
        },
    }
    claimed: set[str] = set()
    routes: list[dict[str, Any]] = []
    for target in targets:
        values = [v for v in _pin_values(ctx, target.version) if v not in claimed]
        claimed.update(values)
        if not values:
            continue  # another target of the same base version already takes these pins
        routes.append(
            {
                "name": f"pin-{subset_name(target)}",
                "match": [{"headers": {PIN_HEADER: {"exact": value}}} for value in values],
                "route": [{"destination": {"host": host, "subset": subset_name(target)}}],
            }
        )
    default: dict[str, Any] = {
        "name": "channel",
        "route": [
            {"destination": {"host": host, "subset": subset_name(a.target)}, "weight": a.weight}
            for a in answering
        ],
    }
    shadow = record.by_role(SHADOW)
    if shadow is not None:
        default["mirror"] = {"host": host, "subset": subset_name(shadow.target)}
        default["mirrorPercentage"] = {"value": 100.0}
    routes.append(default)
    service = {
        "apiVersion": API,
        "kind": "VirtualService",
        "metadata": {"name": served_name(f"{record.model}-{record.channel}"), "annotations": notes},
        "spec": {"hosts": [host], "http": routes},
    }
    ctx.config("istio.yaml", yaml.safe_dump_all([rule, service], sort_keys=False))
    ctx.result.details = {
        "host": host,
        "header": "X-Model-Version",
        "subsets": {
            subset_name(t): {
                "labels": subset_labels(t),
                "arms": [a.label for a in record.arms if a.target == t],
                **files[subset_name(t)],
            }
            for t in targets
        },
    }
    ctx.result.warnings.append(
        "label the pods serving each subset as listed (e.g. "
        + ", ".join(
            f"{subset_name(t)}: " + ",".join(f"{k}={v}" for k, v in subset_labels(t).items())
            for t in targets
        )
        + "); Istio splits per request, not per key (sticky routing needs mvc serve or mvc.Router)"
    )
