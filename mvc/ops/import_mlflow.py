"""``mvc import mlflow``: commit an MLflow model as a version, with its run's metadata.

The source is a local MLflow model folder (the ``MLmodel`` file and its artifacts), or a URI the
MLflow client resolves: a registered model version (``models:/bert/3``, ``models:/bert@champion``)
or a run's artifact (``runs:/<run_id>/model``). Run params and metrics become the version's
params and metrics; the run id, experiment, flavors, registered name/version/aliases and the
run's own tags go in ``lineage.mlflow``; the run's dataset inputs become lineage datasets.
A local folder needs no MLflow; anything else needs the ``mlflow`` extra (the MLflow client).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

from mvc.errors import InvalidInput, MvcError, NotFound, UsageError
from mvc.formats.mlmodel import MLMODEL, MLmodelFacts, parse_mlmodel
from mvc.ops.commit import commit
from mvc.ops.imported import ImportResult
from mvc.progress import Progress
from mvc.refnames import validate_model
from mvc.repo import Repo

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))$")
_RUNS_URI = re.compile(r"^runs:/(?P<run>[^/]+)(?:/.*)?$")
_PIP_HINT = "pip install 'mvc[mlflow]' (the MLflow client), or import a local model folder"


def import_mlflow(
    repo: Repo,
    uri: str,
    *,
    model: str | None = None,
    branch: str | None = None,
    message: str | None = None,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    local = uri[len("file://") :] if uri.startswith("file://") else uri
    registered: dict[str, Any] | None = None
    with _model_folder(local, uri, tracking_uri) as folder:
        facts = _read_mlmodel(folder)
        if not os.path.isdir(local):
            registered = _registered(uri, tracking_uri)
        run_id = facts.run_id or (registered or {}).get("run_id")
        # A URI went through the MLflow client, which knows its tracking store; a local folder's
        # run is looked up only when a tracking store is named.
        remote = not os.path.isdir(local)
        run = _run(run_id, tracking_uri) if run_id and (tracking_uri or remote) else None
        name = model or (registered or {}).get("name") or os.path.basename(os.path.abspath(local))
        try:
            name = validate_model(str(name))
        except MvcError as exc:
            raise UsageError(
                f"cannot use {name!r} as a model name", hint="pass --model NAME"
            ) from exc
        mlflow_facts: dict[str, Any] = {"model_uri": uri, **facts.lineage()}
        if run_id:
            mlflow_facts["run_id"] = run_id
        if registered:
            mlflow_facts["registered_model"] = {
                k: v for k, v in registered.items() if k != "run_id"
            }
        lineage: dict[str, Any] = {"mlflow": mlflow_facts}
        params: dict[str, object] = {}
        metrics: dict[str, object] = {}
        if run is not None:
            params, metrics = run["params"], run["metrics"]
            mlflow_facts.update(
                experiment_id=run["experiment_id"], run_name=run["run_name"], run_tags=run["tags"]
            )
            if run["datasets"]:
                lineage["datasets"] = run["datasets"]
        result = commit(
            repo,
            folder,
            message=message or f"import {uri} from MLflow",
            model=name,
            branch=branch,
            params=params,
            metrics=metrics,
            lineage=lineage,
            temporary=True,
            allow_empty=True,
            progress=progress,
        )
    mapped = {
        "run_id": run_id,
        "flavors": list(facts.flavors),
        "params": len(params),
        "metrics": len(metrics),
        "datasets": len(lineage.get("datasets", [])),
        "run_found": run is not None,
    }
    if registered:
        mapped["registered_model"] = f"{registered['name']}/{registered['version']}"
    return ImportResult("mlflow", uri, result, mapped)


@contextlib.contextmanager
def _model_folder(local: str, uri: str, tracking_uri: str | None) -> Iterator[str]:
    """A folder holding the model: the local folder itself, or a download of the URI."""
    if os.path.isdir(local):
        yield os.path.abspath(local)
        return
    if not (_MODELS_URI.match(uri) or _RUNS_URI.match(uri) or "://" in uri):
        raise NotFound(
            f"{uri} is neither an MLflow model folder here nor a models:/ or runs:/ URI",
            hint="e.g. mvc import mlflow ./mlruns/.../artifacts or mvc import mlflow models:/bert/3",
        )
    artifacts = _mlflow_artifacts()
    with tempfile.TemporaryDirectory(prefix="mvc-import-mlflow-") as scratch:
        try:
            path = artifacts.download_artifacts(
                artifact_uri=uri, dst_path=scratch, tracking_uri=tracking_uri
            )
        except Exception as exc:  # MLflow raises its own and the storage clients' errors
            raise NotFound(
                f"MLflow could not fetch {uri}: {_one_line(exc)}",
                hint="check the URI and --tracking-uri (or MLFLOW_TRACKING_URI)",
            ) from exc
        # A registered model's download carries a marker file of MLflow's own; it is not part
        # of the model the run logged.
        marker = os.path.join(path, "registered_model_meta")
        if os.path.isfile(marker):
            os.unlink(marker)
        yield path


def _read_mlmodel(folder: str) -> MLmodelFacts:
    path = os.path.join(folder, MLMODEL)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise NotFound(
            f"{folder} has no {MLMODEL} file: not an MLflow model folder",
            hint="point at the folder mlflow.<flavor>.save_model wrote (it holds MLmodel)",
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text") from exc
    return parse_mlmodel(text, path)


def _registered(uri: str, tracking_uri: str | None) -> dict[str, Any] | None:
    match = _MODELS_URI.match(uri)
    if match is None:
        return None
    client = _client(tracking_uri)
    try:
        if match.group("alias"):
            found = client.get_model_version_by_alias(match.group("name"), match.group("alias"))
        else:
            found = client.get_model_version(match.group("name"), match.group("version"))
    except Exception as exc:
        raise NotFound(f"MLflow has no model version {uri}: {_one_line(exc)}") from exc
    return {
        "name": found.name,
        "version": str(found.version),
        "aliases": sorted(getattr(found, "aliases", None) or []),
        "tags": dict(found.tags or {}),
        "description": found.description or None,
        "run_id": found.run_id,
    }


def _run(run_id: str, tracking_uri: str | None) -> dict[str, Any] | None:
    client = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        raise NotFound(
            f"MLflow run {run_id} (named by the model) was not found: {_one_line(exc)}",
            hint="pass --tracking-uri for the server or folder that holds the run",
        ) from exc
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    return {
        "params": dict(run.data.params),
        "metrics": {k: float(v) for k, v in run.data.metrics.items()},
        "tags": tags,
        "experiment_id": run.info.experiment_id,
        "run_name": run.data.tags.get("mlflow.runName"),
        "datasets": [_dataset(item) for item in run.inputs.dataset_inputs],
    }


def _dataset(item: Any) -> dict[str, Any]:
    """An MLflow dataset input as a lineage dataset (its digest as MLflow computed it)."""
    dataset = item.dataset
    uri = dataset.source
    with contextlib.suppress(ValueError, TypeError):
        source = json.loads(dataset.source)
        if isinstance(source, dict):
            uri = source.get("uri") or source.get("url") or source.get("path") or dataset.source
    context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), None)
    entry: dict[str, Any] = {
        "name": dataset.name,
        "uri": str(uri),
        "hash": f"mlflow:{dataset.digest}" if dataset.digest else None,
        "hashed": False,
        "source_type": dataset.source_type,
    }
    if context:
        entry["context"] = context
    return entry


def _mlflow_artifacts() -> Any:
    try:
        import mlflow.artifacts
    except ImportError as exc:
        raise _missing(exc) from exc
    return mlflow.artifacts


def _client(tracking_uri: str | None) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise _missing(exc) from exc
    return MlflowClient(tracking_uri=tracking_uri)


def _missing(exc: ImportError) -> UsageError:
    return UsageError(f"this needs the MLflow client ({exc.name} is not installed)", hint=_PIP_HINT)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
