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
from mvc.errors import NotFound, UsageError

if TYPE_CHECKING:
    from mvc.ops.compare import CompareReport
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
        raise NotFound(
            f"no such file or folder: {file}", hint="give a file of points, or - for stdin"
        ) from exc
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


def compare(
    ctx: typer.Context,
    a: Annotated[
        str,
        typer.Argument(
            help="A: a channel arm (bert@prod:canary) or a version (bert@v1.5.0).",
            show_default=False,
        ),
    ],
    b: Annotated[
        str | None,
        typer.Argument(
            help="B, the baseline (bert@prod:stable); omitted with --around.", show_default=False
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="Only this metric (repeat; default every metric both have).",
            metavar="NAME",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Window: a duration back from now (default 1h) or an instant; around a move, "
            "the length before and after it.",
        ),
    ] = None,
    around: Annotated[
        str | None,
        typer.Option(
            "--around",
            help="Compare A's channel arm after a move with before it: the move's record id "
            "(mvc channel history) or 'last'.",
            metavar="RECORD",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Where the points are: production (default), commit, or a source of mvc.yaml.",
            metavar="NAME",
        ),
    ] = None,
    confidence: Annotated[
        float, typer.Option("--confidence", help="Confidence level of the intervals.")
    ] = 0.95,
    min_samples: Annotated[
        int, typer.Option("--min-samples", help="Fewer samples on a side: undecided.")
    ] = 20,
    as_json: bool = JsonOption,
) -> None:
    """Is A different from B? Per metric: both values, the difference, its confidence interval
    and p-value (Welch's t-test; the two-proportion test for 0/1 metrics such as error).

    Exits 21 (inconclusive) when no metric has enough samples to decide.

    Examples:
      mvc metrics compare bert@prod:canary bert@prod:stable --since 1h
      mvc metrics compare bert@v1.5.0 bert@v1.4.0 --metric latency_ms --json
      mvc metrics compare bert@prod --around last --since 30m
      mvc metrics compare bert@prod:canary bert@prod:stable --source fleet
    """
    from mvc.errors import Inconclusive
    from mvc.ops.compare import compare_metrics

    repo = open_repo(ctx)
    report = compare_metrics(
        repo,
        a,
        b,
        metrics=metric or (),
        since=since,
        around=around,
        source=source,
        confidence=confidence,
        min_samples=min_samples,
    )
    out = Output(as_json=as_json)
    if as_json:
        out.json(report.to_json())
    else:
        _render_comparison(out, report)
    if not report.decided:
        raise Inconclusive(
            "inconclusive: no metric has enough samples on both sides to decide"
            if report.metrics
            else f"inconclusive: no metric points of both {report.a.label} and "
            f"{report.b.label} from {report.a.since} to {report.a.until}",
            hint="widen the window (--since), wait for more traffic, or lower --min-samples",
        )


def _signed(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{value * 100:+.1f}%"
    return f"{value:+,.4g}" if abs(value) < 1e6 else f"{value:+,.0f}"


def _render_comparison(out: Output, report: CompareReport) -> None:
    a, b = report.a, report.b
    if report.around:
        out.info(
            f"{a.model}@{a.channel}:{a.arm} around the move {report.around[:12]} "
            f"({a.since}): after {a.since} to {a.until}, before {b.since} to {b.until}"
        )
    else:
        out.info(f"{a.label} vs {b.label} (baseline), {a.since} to {a.until}")
    if not report.metrics:
        return
    level = f"{report.confidence * 100:g}%"
    for c in report.metrics:
        out.line(f"{c.metric} ({'rate' if c.kind == 'rate' else 'mean'})")
        for side in (c.a, c.b):
            out.line(
                f"  {side.label:<24} n={side.n:<8,} {_number(side.mean)}"
                + (
                    f"  sd {_number(side.stdev)}"
                    if side.stdev is not None and c.kind != "rate"
                    else ""
                )
            )
        if c.decided:
            out.line(
                f"  difference {_signed(c.difference)} ({_signed(c.relative, percent=True)}), "
                f"{level} CI [{_signed(c.ci_low)}, {_signed(c.ci_high)}], "
                f"p = {c.p_value:.3g} ({c.test})"
                + ("  significant" if c.significant else "  not significant")
            )
        if c.note:
            out.line(f"  {c.note}")


def plot(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    channel: Annotated[str, typer.Argument(help="Channel (prod, staging…).", show_default=False)],
    output: Annotated[str, typer.Option("--output", help="The PNG to write.", metavar="FILE.png")],
    metric: Annotated[
        str, typer.Option("--metric", help="Metric to plot.", metavar="NAME")
    ] = "latency_ms",
    stat: Annotated[
        str,
        typer.Option("--stat", help="Statistic per bucket: mean, p50, p95, p99, max, per_second…"),
    ] = "mean",
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Window start: a duration back from now (default 6h) or an instant."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Window end, an instant (default now).", metavar="TIME"),
    ] = None,
    step: Annotated[
        str | None, typer.Option("--step", help="Bucket length (5m, 30s; default: 60 buckets).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Where the points are: production (default) or a source of mvc.yaml.",
            metavar="NAME",
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Draw each arm of a channel over time, with the channel's moves marked (needs matplotlib).

    Examples:
      mvc metrics plot bert prod --output latency.png
      mvc metrics plot bert prod --metric latency_ms --stat p99 --since 24h --step 15m --output p99.png
      mvc metrics plot bert prod --metric error --since 2h --output errors.png --json
    """
    from mvc.ops.plot import plot_channel

    repo = open_repo(ctx)
    result = plot_channel(
        repo,
        model,
        channel,
        output,
        metric=metric,
        statistic=stat,
        since=since,
        until=until,
        step=step,
        source=source,
    )
    out = Output(as_json=as_json)
    if as_json:
        out.json(result.to_json())
        return
    arms = ", ".join(f"{a.arm} ({a.points:,} points)" for a in result.arms)
    out.info(
        f"wrote {output}: {result.metric} {result.statistic} of {arms}, "
        f"{len(result.moves)} channel move{'s' if len(result.moves) != 1 else ''} marked"
    )


#: The subcommands of ``mvc metrics``, in help order.
COMMANDS: list[Callable[..., None]] = [log, show, compare, plot]


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
