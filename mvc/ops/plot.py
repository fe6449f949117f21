"""``metrics plot``: each arm of a channel over time, with the channel's moves marked.

The window is cut into buckets (``mvc.metrics.series``); each arm that served, shadowed or was
recorded on the channel in the window is one line of its bucketed statistic (mean, p99 …),
broken where a bucket is empty. Every move of the channel inside the window (its history) is a
dashed vertical line labelled with what the move did. The arms are read by label, whichever
version served them: the move lines say when that changed.

The picture is drawn by matplotlib (the optional extra ``plot``) on its Agg canvas, without
pyplot (no global state, no display), and written to a temporary file beside the target that
is renamed into place, so a reader never sees half a PNG. The result lists the plotted series
and moves, so scripts (and tests) can read what the picture shows.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mvc.errors import MvcError, UsageError
from mvc.instants import parse_instant
from mvc.jsonshape import JsonShaped
from mvc.metrics.model import STATISTICS, Query
from mvc.metrics.series import Bucket, bucketed
from mvc.metrics.sqlite import MetricsDB
from mvc.ops.channel_history import history
from mvc.ops.channels import Namer
from mvc.ops.compare import open_source
from mvc.ops.metrics import format_at, parse_at, parse_since
from mvc.policy.text import parse_duration
from mvc.refnames import validate_channel, validate_model
from mvc.repo import Repo

DEFAULT_WINDOW = "6h"
#: Buckets per window when no step is given.
DEFAULT_BUCKETS = 60


@dataclass(frozen=True)
class ArmSeries(JsonShaped):
    arm: str
    points: int  # points in the window, over every bucket
    buckets: list[Bucket]


@dataclass(frozen=True)
class MoveMark(JsonShaped):
    at: str
    record: str
    action: str
    label: str


@dataclass(frozen=True)
class PlotResult(JsonShaped):
    path: str
    model: str
    channel: str
    metric: str
    statistic: str
    since: str
    until: str
    step_seconds: float
    arms: list[ArmSeries]
    moves: list[MoveMark]


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MvcError(
            "metrics plot needs matplotlib, which is not installed",
            hint="pip install 'mvc[plot]'  (or: pip install matplotlib)",
        ) from exc
    return matplotlib


def plot_channel(
    repo: Repo,
    model: str,
    channel: str,
    output: str,
    *,
    metric: str = "latency_ms",
    statistic: str = "mean",
    since: str | None = None,
    until: str | None = None,
    step: str | None = None,
    source: str | None = None,
) -> PlotResult:
    validate_model(model)
    validate_channel(channel)
    if statistic not in STATISTICS or statistic == "count":
        raise UsageError(
            f"cannot plot statistic {statistic!r}",
            hint="one of " + ", ".join(s for s in STATISTICS if s != "count"),
        )
    _matplotlib()
    now = repo.clock().timestamp()
    start = parse_since(since or DEFAULT_WINDOW, now)
    end = now if until is None else parse_at(until)
    if end <= start:
        raise UsageError(
            f"nothing to plot: the window {format_at(start)} to {format_at(end)} is empty"
        )
    seconds = (end - start) / DEFAULT_BUCKETS if step is None else parse_duration(step)
    if seconds <= 0 or (end - start) / seconds > 2000:
        raise UsageError(f"--step {step} is too short for this window (at most 2000 buckets)")
    moves = history(repo, model, channel)
    namer = Namer(repo)
    times = [parse_instant(m.record.when).timestamp() for m in moves]
    labels: list[str] = []
    for item, at in zip(moves, times, strict=True):
        # arms of every record in force at some time of the window
        later = [t for t in times if t > at]
        if at < end and (not later or min(later) > start):
            labels += [a.label for a in item.record.arms if a.label not in labels]
    reader = open_source(repo, source)
    try:
        if isinstance(reader, MetricsDB):
            for series in reader.series(model, metric, channel=channel):
                if series.arm is not None and series.arm not in labels:
                    labels.append(series.arm)
        arms = []
        for label in labels:
            query = Query(model, metric, channel=channel, arm=label)
            buckets = bucketed(reader, query, start, end, seconds, statistic)
            arms.append(ArmSeries(label, sum(b.count for b in buckets), buckets))
    finally:
        if isinstance(reader, MetricsDB):
            reader.close()
    marks = [
        MoveMark(
            format_at(at),
            item.record.id or "",
            item.record.action,
            f"{item.record.action}: {namer.arms(item.record)}",
        )
        for item, at in zip(moves, times, strict=True)
        if start <= at < end
    ]
    result = PlotResult(
        os.path.abspath(output),
        model,
        channel,
        metric,
        statistic,
        format_at(start),
        format_at(end),
        seconds,
        [a for a in arms if a.points],
        marks,
    )
    if not result.arms:
        raise UsageError(
            f"no {metric} points of {model}@{channel} from {result.since} to {result.until}",
            hint="widen the window (--since), or record some: mvc metrics log, mvc.metrics.record",
        )
    draw(result, output)
    return result


def draw(result: PlotResult, output: str) -> None:
    """Draw ``result`` as a PNG at ``output`` (atomically: a temp file renamed into place)."""
    _matplotlib()
    from matplotlib import dates as typed_dates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dates: Any = typed_dates  # its converters have no annotations

    def x(at: float) -> float:
        return float(dates.date2num(datetime.fromtimestamp(at, UTC)))

    figure = Figure(figsize=(11, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for arm in result.arms:
        axes.plot(
            [x(b.middle) for b in arm.buckets],
            [float("nan") if b.value is None else b.value for b in arm.buckets],
            marker=".",
            linewidth=1.5,
            label=f"{arm.arm} ({arm.points:,} points)",
        )
    top = axes.get_ylim()[1]
    for move in result.moves:
        at = x(parse_instant(move.at).timestamp())
        axes.axvline(at, color="0.35", linestyle="--", linewidth=1)
        axes.annotate(
            move.label,
            (at, top),
            xytext=(3, -3),
            textcoords="offset points",
            rotation=90,
            va="top",
            ha="left",
            fontsize=7,
            color="0.25",
            bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1},
        )
    axes.set_xlim(
        x(parse_instant(result.since).timestamp()), x(parse_instant(result.until).timestamp())
    )
    axes.xaxis.set_major_formatter(dates.DateFormatter("%m-%d %H:%M", tz=UTC))
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel(f"{result.metric} ({result.statistic})")
    step = result.step_seconds
    every = f"{step / 60:g} min" if step >= 60 else f"{step:g} s"
    axes.set_title(
        f"{result.model}@{result.channel}: {result.metric} {result.statistic} per {every}",
        fontsize=11,
    )
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    folder = os.path.dirname(os.path.abspath(output))
    temp = os.path.join(folder, f".{os.path.basename(output)}.tmp-{secrets.token_hex(4)}")
    try:
        figure.savefig(temp, format="png")
        os.replace(temp, output)
    except OSError as exc:
        raise MvcError(f"cannot write the plot {output}: {exc.strerror or exc}") from exc
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
