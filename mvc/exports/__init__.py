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
- ``dir``: one plain folder per arm and ``routing.json``.

What each server does with these files is in docs/deployment.md.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from mvc.errors import MvcError, UsageError
from mvc.exports.sink import Sink, default_serve_root
from mvc.ops.deploy import Namer, Record, require_current
from mvc.refnames import validate_channel, validate_model
from mvc.repo import Repo

FORMATS = ("triton", "kserve", "vllm", "dir")


@dataclass
class ExportOptions:
    name: str | None = None  # the served model's name (default: the model, or MODEL-CHANNEL)
    backend: str | None = None  # triton: python | vllm | …; kserve: the modelFormat name
    serve_root: str | None = None  # how the server sees the destination (default: it as given)
    python_model: str | None = None  # triton python backend: model.py copied into each version
    storage_options: dict[str, str] = field(default_factory=dict)


@dataclass
class ExportResult:
    format: str
    dest: str
    model: str
    channel: str
    record: str
    written: list[str] = field(default_factory=list)
    skipped: int = 0
    bytes_written: int = 0
    removed: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "dest": self.dest,
            "model": self.model,
            "channel": self.channel,
            "record": self.record,
            "written": self.written,
            "skipped": self.skipped,
            "bytes_written": self.bytes_written,
            "removed": self.removed,
            "configs": self.configs,
            "warnings": self.warnings,
            "details": self.details,
        }


@dataclass
class ExportContext:
    repo: Repo
    record: Record
    sink: Sink
    options: ExportOptions
    serve_root: str
    namer: Namer
    result: ExportResult

    def uri(self, key: str) -> str:
        """Where the server finds ``key`` of the destination."""
        return f"{self.serve_root.rstrip('/')}/{key}"

    def config(self, key: str, text: str) -> None:
        self.sink.put_text(key, text)
        self.result.configs.append(key)


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
    sink = Sink.open(dest, options.storage_options)
    result = ExportResult(fmt, dest, model, channel, record.id)
    ctx = ExportContext(
        repo,
        record,
        sink,
        options,
        options.serve_root or default_serve_root(dest),
        Namer(repo),
        result,
    )
    if fmt == "triton":
        from mvc.exports.triton import write_triton as writer
    elif fmt == "kserve":
        from mvc.exports.kserve import write_kserve as writer
    elif fmt == "vllm":
        from mvc.exports.vllm import write_vllm as writer
    else:
        from mvc.exports.folders import write_dir as writer
    about = {"model": model, "channel": channel, "record": record.id, "export": fmt}
    try:
        writer(ctx)
    except BaseException:
        # Remember what this attempt did write, so a rerun recognises its own files.
        with contextlib.suppress(MvcError, OSError):  # the first error is the one to report
            sink.finish({**about, "complete": False})
        raise
    sink.finish(about)
    result.written, result.skipped = sink.written, sink.skipped
    result.bytes_written, result.removed = sink.bytes_written, sink.removed
    return result


def served_name(text: str) -> str:
    """A name every server accepts: lowercase letters, digits and '-', starting with a letter."""
    import re

    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "m-" + cleaned
    return cleaned[:63].rstrip("-")
