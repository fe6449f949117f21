"""The ``metrics`` group: log version-tagged points, show a window's summaries per arm and version.

Each subcommand is a function in ``COMMANDS``; ``register`` adds them all to one Typer group, so
a new subcommand (compare, plot) is one function and one entry in that list.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from mvc.cli.common import JsonOption, Wanted, every_command, handles_errors, open_repo
from mvc.cli.output import Output
from mvc.errors import UsageError

if TYPE_CHECKING:
    from mvc.ops.metrics import MetricsReport

ChannelOption = typer.Option(
    None, "--channel", help="Channel the points were served on (prod, staging…).", metavar="NAME"
)
ArmOption = typer.Option(
    None,
    "--arm",
    help="Arm of the channel: stable, canary, green, shadow, an A/B arm.",
    metavar="LABEL",
)


def log(
    ctx: typer.Context,
    spec: Annotated[
        str,
        typer.Argument(
            help="Version the points are of: MODEL@REV; a channel spec (bert@prod) with --arm "
            "names that arm's version.",
            show_default=False,
        ),
    ],
    values: Annotated[
        list[str] | None,
        typer.Argument(help="NAME=VALUE pairs: latency_ms=212 error=0.", show_default=False),
    ] = None,
    channel: str | None = ChannelOption,
    arm: str | None = ArmOption,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="When (ISO-8601, UTC unless a zone is given); default now.", metavar="TIME"
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help="JSON lines or CSV (header line) of points; '-' reads stdin. Keys at, channel, "
            "arm, host, process; every other key is a metric.",
            metavar="F",
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="Format of --file: auto, jsonl or csv.")
    ] = "auto",
    as_json: bool = JsonOption,
) -> None:
    """Record metric points of a version (one transaction: a bad line writes nothing).

    Examples:
      mvc metrics log bert@v1.5.0 latency_ms=212 error=0 --channel prod --arm canary
      mvc metrics log bert@prod --arm canary latency_ms=190
      mvc metrics log bert@v1.5.0 --file points.jsonl
      exporter | mvc metrics log bert@prod --file -
    """
    from mvc.ops import metrics as ops

    pairs = list(values or [])
    if pairs == ["-"] and file is None:
        pairs, file = [], "-"
    rows: list[ops.Row] = []
    if file is not None:
        rows = _read_rows(file, fmt)
    repo = open_repo(ctx)
    result = ops.log_metrics(
        repo,
        spec,
        values=ops.parse_pairs(pairs),
        rows=rows,
        channel=channel,
        arm=arm,
        at=None if at is None else ops.parse_at(at),
    )
    out = Output(as_json=as_json)
    if as_json:
        out.json(result.to_json())
        return
    where = " ".join(
        part
        for part in (
            f"channel {result.channel}" if result.channel else "",
            f"arm {result.arm}" if result.arm else "",
        )
        if part
    )
    out.info(
        f"logged {result.points} point{'s' if result.points != 1 else ''} "
        f"({', '.join(result.metrics)}) of "
        + (
            f"{len(result.versions)} versions of {result.model}"
            if len(result.versions) > 1
            else f"{result.model}@{result.version[:12]}"
        )
        + (f", {where}" if where else ""),
    )


def _read_rows(file: str, fmt: str) -> list:  # type: ignore[type-arg]
    from mvc.ops.metrics import parse_rows

    if file == "-":
        return parse_rows(sys.stdin, "<stdin>", fmt)
    try:
        with open(file, encoding="utf-8", newline="") as handle:
            return parse_rows(handle, file, fmt)
    except FileNotFoundError as exc:
        raise UsageError(f"points file {file} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"points file {file} is not UTF-8 text: {exc.reason}") from exc


def show(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            help="MODEL, or a SPEC (bert@v1.5.0): that version only.", show_default=False
        ),
    ],
    channel: Annotated[
        str | None,
        typer.Argument(help="Channel (default: every channel and none).", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Window start: a duration back from --until or now (1h, 30m), or an instant.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Window end, an instant (default now).", metavar="TIME"),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by", help="Group by arm, version and/or channel (repeat; default arm and version)."
        ),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Only this metric.", metavar="NAME")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Count, mean, p50/p95/p99 and rate of each metric, per arm and version.

    Examples:
      mvc metrics show bert prod --since 1h
      mvc metrics show bert prod --since 30m --by arm --metric latency_ms
      mvc metrics show bert@v1.5.0 --json
    """
    from mvc.ops import metrics as ops

    groups = [key for item in by or [] for key in item.split(",") if key.strip()]
    repo = open_repo(ctx)
    report = ops.show_metrics(
        repo,
        target,
        channel,
        since=since,
        until=until,
        by=tuple(k.strip() for k in groups) or ("arm", "version"),
        metric=metric,
    )
    out = Output(as_json=as_json)
    if as_json:
        out.json(report.to_json())
        return
    _render(out, report)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    text = f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.1f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _render(out: Output, report: MetricsReport) -> None:
    window = ""
    if report.since or report.until:
        window = f" from {report.since or 'the start'} to {report.until or 'now'}"
    if not any(table.groups for table in report.metrics):
        scope = f"{report.model}" + (f" {report.channel}" if report.channel else "")
        out.info(
            f"no metric points of {scope}{window}; `mvc metrics log` or mvc.metrics.record "
            "records some"
        )
        return
    out.info(f"{report.model}" + (f" {report.channel}" if report.channel else "") + window)
    keys = [k for k in ("arm", "version", "channel") if k in report.by]
    header = [*keys, "count", "mean", "p50", "p95", "p99", "rate/s"]
    for table in report.metrics:
        if not table.groups:
            continue
        rows = [header]
        for g in table.groups:
            labels = {
                "arm": g.arm or "-",
                "version": f"{g.version_name} ({g.version[:8]})"
                if g.version and g.version_name and not g.version.startswith(g.version_name)
                else (g.version[:12] if g.version else "-"),
                "channel": g.channel or "-",
            }
            rows.append(
                [
                    *(labels[k] for k in keys),
                    f"{g.count:,}",
                    *(_number(v) for v in (g.mean, g.p50, g.p95, g.p99, g.per_second)),
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        out.line(table.name)
        for row in rows:
            cells = [
                cell.ljust(widths[i]) if i < len(keys) else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ]
            out.line("  " + "  ".join(cells).rstrip())


#: The subcommands of ``mvc metrics``, in help order.
COMMANDS: list[Callable[..., None]] = [log, show]


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    if not wanted("metrics"):
        return
    group = typer.Typer(
        help="Version-tagged metrics: log points from serving and batch jobs, summarise them "
        "per arm and version.",
        no_args_is_help=True,
    )
    for command in COMMANDS:
        group.command(name=command.__name__)(handles_errors(command))
    app.add_typer(group, name="metrics")
