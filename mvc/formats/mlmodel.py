"""MLflow's ``MLmodel`` file, read without MLflow and without trusting it.

An MLflow model folder is its artifacts plus ``MLmodel``, YAML that names the run that logged it,
the flavors it can be loaded as, and its signature::

    artifact_path: model
    flavors:
      python_function: {loader_module: mlflow.pyfunc.model, python_version: 3.11.7, ...}
      transformers: {...}
    mlflow_version: 3.17.2
    model_uuid: 9f2c...
    run_id: 98b18ebeed114fffb7bf8e41f41817a6
    signature: {inputs: '[{"type": "string"}]', outputs: '...'}
    utc_time_created: '2026-12-01 11:06:33.217561'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mvc.errors import InvalidInput
from mvc.yamltext import YamlProblem, load_yaml

MLMODEL = "MLmodel"
_RUN_ID = re.compile(r"^[0-9a-zA-Z_-]{1,64}$")


@dataclass(frozen=True)
class MLmodelFacts:
    run_id: str | None
    flavors: tuple[str, ...]
    mlflow_version: str | None = None
    model_uuid: str | None = None
    model_id: str | None = None  # MLflow 3's logged-model id
    artifact_path: str | None = None
    utc_time_created: str | None = None
    signature: dict[str, str] = field(default_factory=dict)  # inputs/outputs/params as JSON text

    def lineage(self) -> dict[str, Any]:
        """The facts as a version's ``lineage.mlflow`` records them (None values left out)."""
        facts: dict[str, Any] = {
            "run_id": self.run_id,
            "flavors": list(self.flavors),
            "mlflow_version": self.mlflow_version,
            "model_uuid": self.model_uuid,
            "model_id": self.model_id,
            "artifact_path": self.artifact_path,
            "utc_time_created": self.utc_time_created,
        }
        if self.signature:
            facts["signature"] = dict(self.signature)
        return {key: value for key, value in facts.items() if value is not None}


def parse_mlmodel(text: str, source: str = MLMODEL) -> MLmodelFacts:
    try:
        loaded = load_yaml(text, aliases=False)
    except YamlProblem as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        raise InvalidInput(
            f"{where}: {exc.message}", hint="is this an MLflow model folder?"
        ) from exc
    doc = loaded.value
    if not isinstance(doc, dict) or not isinstance(doc.get("flavors"), dict):
        raise InvalidInput(
            f"{source}: not an MLflow MLmodel file (no 'flavors' mapping)",
            hint="an MLflow model folder holds an MLmodel file written by mlflow.<flavor>.save_model",
        )
    run_id = doc.get("run_id")
    if run_id is not None and (not isinstance(run_id, str) or not _RUN_ID.match(run_id)):
        raise InvalidInput(
            f"{source}:{loaded.line_of('run_id') or '?'}: run_id {run_id!r} is malformed"
        )
    signature = doc.get("signature")
    return MLmodelFacts(
        run_id=run_id,
        flavors=tuple(sorted(str(name) for name in doc["flavors"])),
        mlflow_version=_text(doc.get("mlflow_version")),
        model_uuid=_text(doc.get("model_uuid")),
        model_id=_text(doc.get("model_id")),
        artifact_path=_text(doc.get("artifact_path")),
        utc_time_created=_text(doc.get("utc_time_created")),
        signature={
            str(key): value
            for key, value in (signature.items() if isinstance(signature, dict) else ())
            if isinstance(value, str)
        },
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)
