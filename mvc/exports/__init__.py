"""Exports: a channel's current record, materialised in the layout an inference server loads.

``export(repo, "bert", "prod", "triton", "s3://bucket/serving")`` writes the real model files of
every arm (streamed from the store, each chunk verified) and then the server's configuration, so
a config never names files that are not there yet. Formats:

- ``triton``: a model repository ``NAME/config.pbtxt`` + ``NAME/<N>/weights/`` (``<N>/adapter/``)
  with Triton version numbers mapped stably from mvc versions (order of first appearance in the
  channel's history) and a ``version_policy`` selecting the channel's current ones;
- ``kserve``: ``inferenceservice.yaml`` with ``storageUri`` per version and
  ``canaryTrafficPercent`` from the record (an ``InferenceGraph`` splitter for A/B tests);
- ``vllm``: ``vllm-args.txt`` and ``vllm.json``: one base model plus ``--lora-modules`` for the
  arms' adapters;
- ``istio``: ``istio.yaml``, a ``DestinationRule`` (a subset per target) and a ``VirtualService``
  (weighted routes per arm, an ``X-Model-Version`` header match per version, ``mirror`` for a
  shadow), for a mesh in front of pods that load the files another format exported;
- ``mlflow``: each arm as the MLflow model folder it was imported as (``MLmodel`` and all);
- ``dir``: one plain folder per arm and ``routing.json``.

What each server does with these files is in docs/deployment.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from mvc.errors import MvcError, UsageError
from mvc.exports.context import ExportContext, ExportOptions, ExportResult, served_name
from mvc.exports.folders import write_dir
from mvc.exports.istio import write_istio
from mvc.exports.kserve import write_kserve
from mvc.exports.mlflow import write_mlflow
from mvc.exports.sink import Sink, default_serve_root, is_url
from mvc.exports.triton import write_triton
from mvc.exports.vllm import write_vllm
from mvc.lastuse import note_use
from mvc.ops.deploy import Namer, require_current
from mvc.ops.lifecycle import check_use
from mvc.refnames import validate_channel, validate_model
from mvc.remotes import list_remotes, validate_option
from mvc.repo import Repo

#: Each format's writer; adding a format is a module with a ``write_*(ctx)`` and a line here.
WRITERS: dict[str, Callable[[ExportContext], None]] = {
    "triton": write_triton,
    "kserve": write_kserve,
    "vllm": write_vllm,
    "istio": write_istio,
    "mlflow": write_mlflow,
    "dir": write_dir,
}
FORMATS = tuple(WRITERS)


def storage_options(repo: Repo, dest: str, given: dict[str, str]) -> dict[str, str]:
    """The fsspec options for ``dest``: those of a remote whose URL holds ``dest`` (the longest
    such URL), then ``given`` over them, each checked as ``remote add -o`` checks it (names like
    endpoint_url; never a credential)."""
    options: dict[str, str] = {}
    if is_url(dest):
        holders = [
            r for r in list_remotes(repo) if is_url(r.url) and _holds(r.url.rstrip("/"), dest)
        ]
        if holders:
            options.update(max(holders, key=lambda r: len(r.url)).options)
    for key, value in given.items():
        validate_option(key, value)
    options.update(given)
    return options


def _holds(prefix: str, url: str) -> bool:
    return url == prefix or url.startswith(prefix + "/")


def export(
    repo: Repo,
    model: str,
    channel: str,
    fmt: str,
    dest: str,
    options: ExportOptions | None = None,
) -> ExportResult:
    options = options or ExportOptions()
    validate_model(model)
    validate_channel(channel)
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}", hint="one of: " + ", ".join(FORMATS))
    record = require_current(repo, model, channel)
    assert record.id is not None
    told = [
        check_use(repo, m, v, allow_deprecated=options.allow_deprecated)
        for arm in record.arms
        for m, v in [(model, arm.version)]
        + ([(arm.adapter.model, arm.adapter.version)] if arm.adapter else [])
    ]
    sink = Sink.open(dest, storage_options(repo, dest, options.storage_options))
    result = ExportResult(fmt, dest, model, channel, record.id)
    result.warnings += [item.message for item in dict.fromkeys(told) if item is not None]
    ctx = ExportContext(
        repo,
        record,
        sink,
        options,
        options.serve_root or default_serve_root(dest),
        Namer(repo),
        result,
    )
    writer = WRITERS[fmt]
    about = {"model": model, "channel": channel, "record": record.id, "export": fmt}
    try:
        writer(ctx)
    except BaseException:
        # Remember what this attempt did write, so a rerun recognises its own files.
        with contextlib.suppress(MvcError, OSError):  # the first error is the one to report
            sink.finish({**about, "complete": False})
        raise
    sink.finish(about)
    for arm in record.arms:
        note_use(repo, model, arm.version)
        if arm.adapter is not None:
            note_use(repo, arm.adapter.model, arm.adapter.version)
    result.written, result.skipped = sink.written, sink.skipped
    result.bytes_written, result.removed = sink.bytes_written, sink.removed
    return result


__all__ = ["FORMATS", "ExportContext", "ExportOptions", "ExportResult", "export", "served_name"]
