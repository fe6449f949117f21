"""Lifecycle commands: annotate, deprecate, deprecations."""

from __future__ import annotations

from typing import Annotated

import typer

from mvc.cli.common import (
    JsonOption,
    Wanted,
    every_command,
    handles_errors,
    open_repo,
    parse_pairs,
    read_metrics_file,
)
from mvc.cli.output import Output

SpecArg = Annotated[
    str,
    typer.Argument(
        help="Version spec: MODEL\\[@REV]\\[~N] (see docs/versioning.md).", show_default=False
    ),
]


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    for command in (annotate,):
        name = command.__name__.rstrip("_")
        if wanted(name):
            app.command(name=name)(handles_errors(command))


def annotate(
    ctx: typer.Context,
    spec: SpecArg,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Metric KEY=NUMBER (repeatable).")
    ] = None,
    metrics_file: Annotated[
        str | None, typer.Option("--metrics", help="JSON file of metric: number.")
    ] = None,
    note: Annotated[str, typer.Option("--note", "-m", help="A note for people.")] = "",
    as_json: bool = JsonOption,
) -> None:
    """Attach metrics or a note to an existing version (its id never changes).

    Annotations are append-only (who, when, what), kept in the version's notes ref, pushed and
    pulled with it, shown by `mvc show` and searched by `mvc find --where`. A metric's newest
    value wins.

    Examples:
      mvc annotate bert@v1.4.0 --metric accuracy=0.91 --note "eval on test-2026-03"
      mvc annotate bert@main --metrics eval.json
    """
    from mvc.ops.annotate import annotate as do_annotate

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    metrics = parse_pairs(metric, "metric", numeric=True)
    if metrics_file:
        metrics = {**read_metrics_file(metrics_file), **metrics}
    result = do_annotate(repo, spec, metrics=metrics, note=note)
    if as_json:
        out.json(result.to_json())
        return
    out.line(str(result.annotation["id"]))
    shown = ", ".join(f"{k}={v}" for k, v in sorted(result.annotation["metrics"].items()))
    out.info(
        f"annotated {result.version[:12]}" + (f": {shown}" if shown else ""),
        lead=f"{result.model}@{result.version[:12]}",
    )
