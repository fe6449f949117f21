"""What every export format receives and returns: the options, the context a writer works in,
the result, and the one naming rule every server accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mvc.deployment.records import Record
from mvc.exports.sink import Sink
from mvc.jsonshape import JsonShaped
from mvc.ops.deploy import Namer
from mvc.repo import Repo


@dataclass
class ExportOptions:
    name: str | None = None  # the served model's name (default: the model, or MODEL-CHANNEL)
    backend: str | None = None  # triton: python | vllm | …; kserve: the modelFormat name
    serve_root: str | None = None  # how the server sees the destination (default: it as given)
    python_model: str | None = None  # triton python backend: model.py copied into each version
    storage_options: dict[str, str] = field(default_factory=dict)
    allow_deprecated: bool = False  # export a version past its deprecation cutoff anyway
    args: list[str] = field(default_factory=list)  # kserve: runtime args (--task=…, --dtype=…)


@dataclass
class ExportResult(JsonShaped):
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


def served_name(text: str) -> str:
    """A name every server accepts: lowercase letters, digits and '-', starting with a letter."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "m-" + cleaned
    return cleaned[:63].rstrip("-")
