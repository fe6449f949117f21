"""``mlflow``: each arm as an MLflow model folder (the reverse of ``mvc import mlflow``).

A version that holds an ``MLmodel`` file (one ``mvc import mlflow`` committed, or any MLflow
model folder committed as it is) is written byte for byte as the folder MLflow saved, so
``mlflow.pyfunc.load_model``, ``mlflow models serve`` and ``mlflow.register_model`` take it as
they took the original. ``LABEL/`` holds each arm; ``routing.json`` (as the ``dir`` export
writes it) says which arm serves which share. A version without ``MLmodel`` is refused: mvc does
not invent a flavor (which loader, which environment) that MLflow would then run.
"""

from __future__ import annotations

from mvc.errors import UsageError
from mvc.exports.context import ExportContext
from mvc.exports.folders import write_dir
from mvc.formats.mlmodel import MLMODEL, parse_mlmodel
from mvc.ids import short


def write_mlflow(ctx: ExportContext) -> None:
    record = ctx.record
    flavors: dict[str, list[str]] = {}
    for arm in record.arms:
        if arm.adapter is not None:
            raise UsageError(
                f"arm {arm.label} serves an adapter on its base; an MLflow model folder holds one "
                "model",
                hint="merge it first (mvc merge-adapter) and deploy the merged version, or "
                "export --format dir",
            )
        version = ctx.repo.objects.get_version(arm.version)
        tree = ctx.repo.objects.get_tree(version.tree)
        entry = tree.files.get(MLMODEL)
        if entry is None:
            raise UsageError(
                f"{record.model}@{short(arm.version)} (arm {arm.label}) is not an MLflow model: "
                f"it has no {MLMODEL} file",
                hint="export --format dir for a plain folder; `mvc import mlflow` commits MLflow "
                "models with their MLmodel",
            )
        manifest = ctx.repo.objects.manifest_of(entry)
        text = b"".join(ctx.repo.objects.iter_file(manifest, MLMODEL)).decode("utf-8", "replace")
        flavors[arm.label] = list(parse_mlmodel(text, f"{arm.label}/{MLMODEL}").flavors)
    write_dir(ctx)
    ctx.result.details["flavors"] = flavors
