"""Lifecycle commands: annotate, deprecate, deprecations."""

from __future__ import annotations

from typing import Annotated

import typer

from mvc.cli.common import (
    JsonOption,
    SpecArg,
    Wanted,
    every_command,
    handles_errors,
    open_repo,
    parse_pairs,
    read_metrics_file,
)
from mvc.cli.output import Output


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    for command in (annotate, deprecate, deprecations):
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
    note: Annotated[str, typer.Option("--note", help="A note for people.")] = "",
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


def deprecate(
    ctx: typer.Context,
    spec: Annotated[
        str,
        typer.Argument(
            help="The version, or a range of tagged versions (bert@<1.2, bert@~1.4).",
            show_default=False,
        ),
    ],
    on: Annotated[
        str | None,
        typer.Option(
            "--on", help="Cutoff day (YYYY-MM-DD, UTC): from then on, using it fails (exit 23)."
        ),
    ] = None,
    message: Annotated[
        str, typer.Option("-m", "--message", help="Why, and what to do instead.")
    ] = "",
    replacement: Annotated[
        str | None, typer.Option("--replacement", help="The version to use instead (a spec).")
    ] = None,
    lift: Annotated[
        bool, typer.Option("--lift", help="End the deprecation of these versions.")
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """Deprecate versions from a date: consumers are warned until then, refused after.

    Recorded as an annotation of each version (it travels with push and pull). Before the
    cutoff, checkout, load, pull, export, resolve and the Router warn; from the cutoff on,
    using the version fails with exit 23 unless --allow-deprecated, and deploying it always
    fails. The policy's webhook, if any, is told once.

    Examples:
      mvc deprecate "bert@<1.2" --on 2027-01-31 -m "use 2.x" --replacement "bert@^2"
      mvc deprecate bert@v1.1.0 --lift
    """
    from mvc.ops.lifecycle import deprecate as do_deprecate
    from mvc.policy.deprecations import parse_date

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_deprecate(
        repo,
        spec,
        on=parse_date(on) if on else None,
        reason=message,
        replacement=replacement,
        lift=lift,
    )
    if as_json:
        out.json(result.to_json())
        return
    if lift:
        out.info(f"lifted the deprecation of {spec}")
        return
    for item in result.deprecations:
        out.line(item.name)
        out.info(item.message)
    for name in result.notified:
        out.info(f"webhook told about {name}")


def deprecations(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """List every deprecated version: cutoff, reason, replacement, where it stands today.

    Deprecations come from `mvc deprecate`, the deprecations section of mvc.yaml, and the
    deprecated/* tags of older stores. The policy's webhook, if any, is told about each one
    once (the store remembers). For CI: `mvc deprecations --json`.

    Example: mvc deprecations --json
    """
    from mvc.ops.lifecycle import deprecations_report

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    report = deprecations_report(repo)
    if as_json:
        out.json(report.to_json())
        return
    if not report.deprecations:
        out.info("no deprecated versions")
    for status in report.deprecations:
        item = status.deprecation
        when = item.on or "-"
        left = "" if status.days_left is None else f" ({status.days_left} days left)"
        if status.state == "past-cutoff":
            left = " (cutoff passed)"
        out.line(
            f"{item.name}  {when}{left}  {item.reason}"
            + (f"  -> {item.replacement}" if item.replacement else "")
        )
    for name in report.notified:
        out.info(f"webhook told about {name}")
