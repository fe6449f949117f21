"""``mvc import``: commit models from where they live today (DVC, MLflow)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mvc.cli.common import JsonOption, Wanted, every_command, handles_errors, open_repo
from mvc.cli.output import Output

if TYPE_CHECKING:
    from mvc.ops.imported import ImportResult


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    if not wanted("import"):
        return
    group = typer.Typer(
        help="Commit a model from another tool: a DVC-tracked folder, an MLflow model.",
        no_args_is_help=True,
    )
    group.command(name="dvc")(handles_errors(import_dvc))
    group.command(name="mlflow")(handles_errors(import_mlflow))
    app.add_typer(group, name="import")


ModelOption = Annotated[
    str | None, typer.Option("--model", help="Model to commit to (default: from the source).")
]
MessageOption = Annotated[str | None, typer.Option("-m", "--message", help="Commit message.")]
BranchOption = Annotated[
    str | None, typer.Option("--branch", "-b", help="Branch to commit onto (default main).")
]


def import_dvc(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            help="A .dvc file, a path `dvc add` tracks, or an output of a dvc.lock stage.",
            metavar="PATH",
            show_default=False,
        ),
    ],
    model: ModelOption = None,
    message: MessageOption = None,
    branch: BranchOption = None,
    rev: Annotated[
        str | None,
        typer.Option(
            "--rev", help="Import what this git revision pinned (default: the work tree)."
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Commit a DVC-tracked model, read from DVC's cache with every md5 checked.

    The version's lineage records the DVC file, the md5 and the git commit that pinned it; a
    dvc.lock stage's params become params and its deps become datasets. DVC itself is not needed.

    Example: mvc import dvc models/bert.dvc --model bert
    Example: mvc import dvc models/bert --rev v1.0 -m "the model as of release v1.0"
    """
    from mvc.ops.import_dvc import import_dvc as run

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = run(
        repo, target, model=model, branch=branch, message=message, rev=rev, progress=out.progress()
    )
    _report(out, result, as_json)


def import_mlflow(
    ctx: typer.Context,
    uri: Annotated[
        str,
        typer.Argument(
            help="An MLflow model folder (holding MLmodel), models:/NAME/VERSION, "
            "models:/NAME@ALIAS or runs:/RUN_ID/PATH.",
            metavar="MODEL_URI",
            show_default=False,
        ),
    ],
    model: ModelOption = None,
    message: MessageOption = None,
    branch: BranchOption = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help="MLflow tracking server or store (default: MLFLOW_TRACKING_URI).",
            metavar="URI",
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Commit an MLflow model with its run's params, metrics, tags and dataset inputs.

    A local model folder needs no MLflow (its run is looked up when a tracking URI is known);
    models:/ and runs:/ URIs need the MLflow client (pip install 'mvc[mlflow]').

    Example: mvc import mlflow models:/bert/3 --tracking-uri http://127.0.0.1:5000
    Example: mvc import mlflow ./exported/bert-model --model bert
    """
    from mvc.ops.import_mlflow import import_mlflow as run

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = run(
        repo,
        uri,
        model=model,
        branch=branch,
        message=message,
        tracking_uri=tracking_uri,
        progress=out.progress(),
    )
    _report(out, result, as_json)


def _report(out: Output, result: ImportResult, as_json: bool) -> None:
    if as_json:
        out.json(result.to_json())
        return
    commit = result.commit
    out.line(commit.version_id or "")
    facts = ", ".join(
        f"{key} {value}" for key, value in result.mapped.items() if value not in (None, [], "")
    )
    out.info(
        f"imported {result.origin} from {result.source} into "
        f"{commit.model}@{commit.branch} {(commit.version_id or '')[:12]} ({facts})"
    )
