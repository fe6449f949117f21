"""Use cases over version-tagged metrics: log points, show a window's summaries, read either kind.

- ``log_metrics``: points for one SPEC from ``NAME=VALUE`` pairs or from rows of a JSON-lines
  or CSV file (``parse_rows``); the SPEC is resolved once (per arm, for a channel spec), and the
  whole lot is one transaction: a bad row fails with ``FILE:LINE`` and nothing is written.
- ``show_metrics``: per metric, one summary per arm and/or version (and channel) over a window.
- ``CommitMetrics``: the metrics typed at commit time (``mvc commit --metric``), read through the
  same ``MetricSource`` protocol as production points, so compare, guards and gates can read
  either (``metric_source(repo, origin)``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mvc.errors import NotFound, UsageError
from mvc.ids import ObjectId
from mvc.instants import parse_instant
from mvc.jsonshape import JsonShaped
from mvc.metrics.model import MetricSource, Point, Query, Source, Summary
from mvc.metrics.recorder import this_process
from mvc.metrics.sqlite import GROUP_KEYS, MetricsDB
from mvc.metrics.stats import exact
from mvc.ops.channels import Namer
from mvc.policy.text import parse_duration
from mvc.refnames import validate_channel
from mvc.repo import Repo
from mvc.specs import Resolved, channel_arm, parse_spec, resolve

#: Keys of a row that are not metric names.
RESERVED = ("at", "channel", "arm", "host", "process")
FORMATS = ("auto", "jsonl", "csv")
ORIGINS = ("production", "commit")


def format_at(at: float) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_at(text: str | float) -> float:
    """An instant as epoch seconds: ISO-8601 (UTC unless it names a zone) or a number."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if not math.isfinite(text):
            raise UsageError(f"time {text!r} is not a finite number")
        return float(text)
    try:
        return float(text)
    except ValueError:
        return parse_instant(str(text)).timestamp()


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration back from now (``1h``, ``30m``) or an instant."""
    try:
        return now - parse_duration(text)
    except UsageError:
        pass
    try:
        return parse_at(text)
    except UsageError as exc:
        raise UsageError(
            f"--since {text!r} is neither a duration nor an instant",
            hint="e.g. --since 1h, --since 30m or --since 2026-03-03T14:00",
        ) from exc


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UsageError(f"{what} must be a number, got {json.dumps(value)}")
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise UsageError(f"{what} must be a finite number, got {value!r}")
    return number


def parse_pairs(pairs: Sequence[str]) -> dict[str, float]:
    """``latency_ms=212 error=0`` -> {name: value}."""
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"{pair!r} is not NAME=VALUE", hint="e.g. latency_ms=212 error=0")
        if name in RESERVED:
            raise UsageError(
                f"{name!r} is not a metric name here", hint=f"use --{name} (or a file column)"
            )
        values[name] = _number(text.strip(), f"metric {name}")
    return values


@dataclass(frozen=True)
class Row:
    """One line of input: where it came from, and what it says."""

    where: str  # FILE:LINE
    values: Mapping[str, float]
    at: float | None = None
    channel: str | None = None
    arm: str | None = None
    host: str | None = None
    process: str | None = None


def _row(where: str, data: Mapping[str, object]) -> Row:
    values: dict[str, float] = {}
    fields: dict[str, str | None] = {}
    at: float | None = None
    for key, value in data.items():
        if key == "at":
            if value not in (None, ""):
                at = (
                    parse_at(value)
                    if isinstance(value, int | float | str)
                    else _number(value, "at")
                )
        elif key in RESERVED:
            fields[key] = None if value in (None, "") else str(value)
        elif value not in (None, ""):  # an empty CSV cell: no value of that metric
            values[key] = _number(value, f"metric {key}")
    if not values:
        raise UsageError("no metric values")
    return Row(
        where,
        values,
        at,
        fields.get("channel"),
        fields.get("arm"),
        fields.get("host"),
        fields.get("process"),
    )


def parse_rows(lines: Iterable[str], name: str, fmt: str = "auto") -> list[Row]:
    """Rows of a JSON-lines file (one object per line) or a CSV file with a header line.
    Reserved keys: ``at`` (ISO-8601 or epoch seconds), ``channel``, ``arm``, ``host``,
    ``process``; every other key is a metric name with a numeric value."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    numbered = list(enumerate(lines, start=1))
    if fmt == "auto":
        first = next((text.lstrip() for _, text in numbered if text.strip()), "")
        fmt = "jsonl" if first.startswith("{") else "csv"
    rows: list[Row] = []
    if fmt == "jsonl":
        for number, text in numbered:
            if not text.strip():
                continue
            where = f"{name}:{number}"
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise UsageError(f"{where}: not a JSON object: {exc}") from exc
            if not isinstance(data, dict):
                raise UsageError(f"{where}: not a JSON object")
            rows.append(_at_line(where, data))
        return rows
    reader = csv.reader(io.StringIO("".join(text for _, text in numbered)))
    header: list[str] | None = None
    for cells in reader:
        where = f"{name}:{reader.line_num}"
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            if not header or any(not h for h in header) or len(set(header)) != len(header):
                raise UsageError(f"{where}: the CSV header needs distinct, non-empty column names")
            continue
        if len(cells) != len(header):
            raise UsageError(f"{where}: {len(cells)} cells, the header has {len(header)}")
        rows.append(_at_line(where, {h: c.strip() for h, c in zip(header, cells, strict=True)}))
    return rows


def _at_line(where: str, data: Mapping[str, object]) -> Row:
    try:
        return _row(where, data)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.message}", hint=exc.hint) from exc


class _Targets:
    """SPEC -> version, resolved once per arm (a channel spec names each arm's version)."""

    def __init__(self, repo: Repo, spec: str, channel: str | None, arm: str | None) -> None:
        self.repo = repo
        self.resolved: Resolved = resolve(repo, parse_spec(spec))
        self.spec = spec
        self.named_channel: str | None = None
        self.named_arm: str | None = None
        if self.resolved.kind == "channel" and self.resolved.name:
            self.named_channel, _, label = self.resolved.name.partition(":")
            self.named_arm = label or "stable"
        if channel is not None and self.named_channel is not None and channel != self.named_channel:
            raise UsageError(
                f"{spec} names channel {self.named_channel!r}, not {channel!r}",
                hint="leave out --channel, or give a version spec",
            )
        self.channel = channel or self.named_channel
        self.arm = arm or self.named_arm
        self._versions: dict[str | None, ObjectId] = {}

    def version(self, arm: str | None) -> ObjectId:
        if self.named_channel is None or arm in (None, self.named_arm):
            return self.resolved.version
        found = self._versions.get(arm)
        if found is None:
            version = channel_arm(self.repo, self.resolved.model, self.named_channel, arm)
            if version is None:
                raise NotFound(
                    f"channel {self.named_channel!r} of {self.resolved.model!r} has no arm {arm!r}",
                    hint=f"`mvc channel show {self.resolved.model} {self.named_channel}` lists its arms",
                )
            found = self._versions[arm] = version
        return found


@dataclass(frozen=True)
class LogResult(JsonShaped):
    model: str
    version: ObjectId
    channel: str | None
    arm: str | None
    points: int
    rows: int
    metrics: list[str]
    first_at: str | None
    last_at: str | None
    versions: list[ObjectId] = field(default_factory=list)  # every version a point went to


def log_metrics(
    repo: Repo,
    spec: str,
    *,
    values: Mapping[str, float] | None = None,
    rows: Sequence[Row] = (),
    channel: str | None = None,
    arm: str | None = None,
    at: float | None = None,
    source: Source | None = None,
) -> LogResult:
    """Record points of ``spec``'s version: ``values`` at ``at`` (default now), and each row
    (its own time, channel and arm, or the command's). One transaction for all of them."""
    if channel is not None:
        validate_channel(channel)
    targets = _Targets(repo, spec, channel, arm)
    default_at = at
    here = source or this_process()
    points: list[Point] = []
    inputs = list(rows)
    if values:
        inputs.insert(0, Row("command line", values))
    if not inputs:
        raise UsageError(
            "no metric values to log",
            hint="e.g. `mvc metrics log bert@v1 latency_ms=212`, or --file F",
        )
    for row in inputs:
        row_arm = row.arm or targets.arm
        row_channel = row.channel or targets.channel
        try:
            if row.channel is not None:
                validate_channel(row.channel)
            version = targets.version(row_arm)
        except (UsageError, NotFound) as exc:
            raise type(exc)(f"{row.where}: {exc.message}", hint=exc.hint) from exc
        row_source = here
        if row.host is not None or row.process is not None:
            row_source = Source(row.host or here.host, row.process or "", ())
        when = row.at if row.at is not None else default_at
        if when is None:  # the clock is read only when some point needs it
            when = default_at = repo.clock().timestamp()
        points.extend(
            Point(
                targets.resolved.model, version, name, value, when, row_channel, row_arm, row_source
            )
            for name, value in row.values.items()
        )
    with MetricsDB.open(repo) as db:
        db.append(points)
    times = [p.at for p in points]
    return LogResult(
        model=targets.resolved.model,
        version=targets.version(targets.arm),
        channel=targets.channel,
        arm=targets.arm,
        points=len(points),
        rows=len(inputs),
        metrics=sorted({p.name for p in points}),
        first_at=format_at(min(times)),
        last_at=format_at(max(times)),
        versions=sorted({p.version for p in points}),
    )


# --- show ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricGroup(JsonShaped):
    arm: str | None
    version: ObjectId | None
    version_name: str | None
    channel: str | None
    count: int
    mean: float | None
    stdev: float | None
    min: float | None
    max: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    per_second: float | None


@dataclass(frozen=True)
class MetricTable(JsonShaped):
    name: str
    groups: list[MetricGroup]


@dataclass(frozen=True)
class MetricsReport(JsonShaped):
    model: str
    channel: str | None
    version: ObjectId | None
    since: str | None
    until: str | None
    by: list[str]
    metrics: list[MetricTable]


def _group(
    namer: Namer,
    model: str,
    arm: str | None,
    version: ObjectId | None,
    channel: str | None,
    s: Summary,
) -> MetricGroup:
    return MetricGroup(
        arm=arm,
        version=version,
        version_name=namer.version(model, version) if version else None,
        channel=channel,
        count=s.count,
        mean=s.mean,
        stdev=s.stdev,
        min=s.min,
        max=s.max,
        p50=s.p50,
        p90=s.p90,
        p95=s.p95,
        p99=s.p99,
        per_second=s.per_second,
    )


def show_metrics(
    repo: Repo,
    target: str,
    channel: str | None = None,
    *,
    since: str | None = None,
    until: str | None = None,
    by: Sequence[str] = ("arm", "version"),
    metric: str | None = None,
) -> MetricsReport:
    """Per metric of ``target`` (MODEL, or a SPEC: that version only), one summary per value
    of ``by`` over the window ``[since, until)``; ``since`` is a duration back from now or an
    instant, ``until`` an instant (default: now)."""
    for key in by:
        if key not in GROUP_KEYS:
            raise UsageError(f"cannot group metrics by {key!r}; by one of {', '.join(GROUP_KEYS)}")
    if channel is not None:
        validate_channel(channel)
    spec = parse_spec(target)
    version = resolve(repo, spec).version if spec.rev is not None or spec.back else None
    end = None if until is None else parse_at(until)
    now = end if end is not None else repo.clock().timestamp()
    start = None if since is None else parse_since(since, now)
    if start is not None and end is None:
        end = now
    db = MetricsDB.open(repo, create=False)
    names = (
        [metric]
        if metric
        else sorted({s.name for s in db.series(spec.model, channel=channel, version=version)})
    )
    namer = Namer(repo)
    tables = []
    for name in names:
        query = Query(spec.model, name, channel=channel, version=version, since=start, until=end)
        groups = [
            _group(namer, spec.model, g.arm, g.version, g.channel, g.summary)
            for g in db.groups(query, by=tuple(by))
        ]
        tables.append(MetricTable(name, groups))
    db.close()
    return MetricsReport(
        model=spec.model,
        channel=channel,
        version=version,
        since=None if start is None else format_at(start),
        until=None if end is None else format_at(end),
        by=list(by),
        metrics=tables,
    )


# --- commit-time metrics as a metric source ----------------------------------------------------


class CommitMetrics:
    """The metrics typed at commit time, as a ``MetricSource``: a version's numeric metric
    ``name`` is one point at the version's commit time, with no channel and no arm. So a query
    naming a channel or an arm matches none; a query without a version reads nothing either
    (commit metrics belong to versions: name one)."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def _points(self, query: Query) -> list[float]:
        if query.version is None or query.channel is not None or query.arm is not None:
            return []
        version = self.repo.objects.get_version(query.version)
        if version.model != query.model:
            return []
        at = parse_instant(version.time).timestamp()
        if (query.since is not None and at < query.since) or (
            query.until is not None and at >= query.until
        ):
            return []
        value = version.metrics.get(query.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return []
        return [float(value)]

    def summary(self, query: Query) -> Summary:
        return exact(self._points(query))

    def values(self, query: Query, limit: int | None = None) -> Sequence[float]:
        found = self._points(query)
        return found if limit is None else found[-limit:] if limit else []


def metric_source(repo: Repo, origin: str = "production") -> MetricSource:
    """The source to read: ``production`` (the store's metric database) or ``commit``."""
    if origin == "production":
        return MetricsDB.open(repo, create=False)
    if origin == "commit":
        return CommitMetrics(repo)
    raise UsageError(f"unknown metric origin {origin!r}; one of {', '.join(ORIGINS)}")
