"""The result of ``mvc import``, whatever the source (DVC, MLflow)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mvc.jsonshape import JsonShaped
from mvc.ops.commit import CommitResult


@dataclass
class ImportResult(JsonShaped):
    """What an import committed, and where it came from."""

    source: str  # "dvc" or "mlflow"
    origin: str  # the path or URI the user named
    commit: CommitResult
    mapped: dict[str, Any] = field(default_factory=dict)  # the source's facts, as recorded
