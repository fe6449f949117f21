"""``metrics compare``: two sides' points, per metric, through the statistics of
``mvc.metrics.compare``.

A side is a spec. ``bert@prod:canary`` (a channel, optionally ``:ARM``; the stable arm when
none) is that arm of the channel *as it is now*: the points recorded on that channel and arm
for the version it serves. Any other spec (``bert@v1.5.0``, ``bert@main``) is the points of
that version on every channel and arm. Or one channel spec and ``around=RECORD``: the same arm
before and after a channel move (a record id prefix as ``mvc channel history`` shows it, or
``last``): A is the window after the move, B the window of the same length before it, on that
channel and arm whichever version served.

Points come from a metric source: the store's database (``production``, the default), the
commit-time metrics (``commit``), or a source named in ``mvc.yaml``'s ``sources:`` (a
Prometheus server, which gives summaries, not raw values: Welch's test then runs from the
means and standard deviations).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from mvc.errors import NotFound, UsageError
from mvc.ids import ObjectId, short
from mvc.instants import parse_instant
from mvc.jsonshape import JsonShaped, Shape
from mvc.metrics.compare import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_SAMPLES,
    Comparison,
    compare_summaries,
    compare_values,
)
from mvc.metrics.model import MetricSource, Query
from mvc.metrics.prometheus import PrometheusSource
from mvc.metrics.sqlite import MetricsDB
from mvc.ops.channel_history import history
from mvc.ops.metrics import ORIGINS, format_at, metric_source, parse_since
from mvc.policy.file import read_policy
from mvc.policy.sources import SOURCES
from mvc.repo import Repo
from mvc.specs import parse_spec, resolve

#: Raw values read per side at most (the newest); beyond it the test runs on the newest ones.
VALUES_LIMIT = 1_000_000
# 0/1 metrics by name, for sources that give summaries only (raw values are looked at instead).
_RATE_NAME = re.compile(
    r"(^|[_.])(errors?|fail(ed|ures?)?|success(es)?|ok|hits?|miss(es)?|agree(ment)?|timeouts?|rate)($|[_.])",
    re.IGNORECASE,
)
DEFAULT_WINDOW = "1h"


def is_rate_name(metric: str) -> bool:
    return _RATE_NAME.search(metric) is not None


def open_source(repo: Repo, name: str | None = None) -> MetricSource:
    """A metric source by name: ``production`` (default), ``commit``, or one of ``mvc.yaml``'s
    ``sources:``."""
    if name is None or name in ORIGINS:
        return metric_source(repo, name or "production")
    sources = read_policy(repo.root).get(SOURCES)
    spec = None if sources is None else sources.by_name.get(name)
    if spec is None:
        known = [*ORIGINS, *(sorted(sources.by_name) if sources else [])]
        raise UsageError(
            f"no metric source {name!r}",
            hint=f"sources: {', '.join(known)}; name more under sources: in mvc.yaml",
        )
    return PrometheusSource(spec, clock=lambda: repo.clock().timestamp())


@dataclass(frozen=True)
class CompareSide(JsonShaped):
    label: str  # as the user wrote it, or "after"/"before" around a move
    model: str
    version: ObjectId | None  # None: whichever version served (around a move)
    channel: str | None
    arm: str | None
    since: str
    until: str

    def query(self, name: str) -> Query:
        return Query(
            self.model,
            name,
            channel=self.channel,
            arm=self.arm,
            version=self.version,
            since=parse_instant(self.since).timestamp(),
            until=parse_instant(self.until).timestamp(),
        )


@dataclass(frozen=True)
class CompareReport(JsonShaped):
    a: CompareSide
    b: CompareSide
    source: str
    around: str | None  # the record id of the move, when comparing before and after one
    confidence: float
    min_samples: int
    metrics: list[Comparison]

    @property
    def decided(self) -> bool:
        """At least one metric could be tested (the CLI exits 21 Inconclusive otherwise)."""
        return any(c.decided for c in self.metrics)

    json_shape: ClassVar[Shape] = Shape(computed={"decided": "decided"})


def _side(repo: Repo, text: str, since: float, until: float) -> CompareSide:
    spec = parse_spec(text)
    if spec.rev is None:
        raise UsageError(
            f"{text!r} names no version or arm",
            hint="write MODEL@REV (bert@v1.5.0) or MODEL@CHANNEL:ARM (bert@prod:canary)",
        )
    found = resolve(repo, spec)
    channel = arm = None
    if found.kind == "channel" and found.name is not None:
        channel, _, label = found.name.partition(":")
        arm = label or "stable"
    return CompareSide(
        text, spec.model, found.version, channel, arm, format_at(since), format_at(until)
    )


def _around(
    repo: Repo, text: str, move: str, length: float, now: float
) -> tuple[CompareSide, CompareSide, str]:
    spec = parse_spec(text)
    channel, _, label = (spec.rev or "").partition(":")
    if not channel or spec.back or resolve(repo, spec).kind != "channel":
        raise UsageError(
            f"--around needs a channel spec, not {text!r}",
            hint="e.g. mvc metrics compare bert@prod:canary --around last",
        )
    moves = history(repo, spec.model, channel)
    if move == "last":
        chosen = moves[-1].record
    else:
        hits = [m.record for m in moves if m.record.id and m.record.id.startswith(move)]
        if len(hits) != 1:
            raise (NotFound if not hits else UsageError)(
                f"{'no' if not hits else len(hits)} move{'s' if len(hits) > 1 else ''} of "
                f"{spec.model}@{channel} with record id {move!r}",
                hint=f"see `mvc channel history {spec.model} {channel}`",
            )
        chosen = hits[0]
    assert chosen.id is not None
    at = parse_instant(chosen.when).timestamp()
    arm = label or "stable"
    after = CompareSide(
        "after", spec.model, None, channel, arm, format_at(at), format_at(min(at + length, now))
    )
    before = CompareSide(
        "before", spec.model, None, channel, arm, format_at(at - length), format_at(at)
    )
    if at >= now:
        raise UsageError(f"the move {short(chosen.id)} is not in the past; nothing after it yet")
    return after, before, chosen.id


def _names(source: MetricSource, sides: Sequence[CompareSide]) -> list[str]:
    if isinstance(source, PrometheusSource):
        return sorted(source.spec.queries)
    if isinstance(source, MetricsDB):
        found = [
            {
                s.name
                for s in source.series(
                    side.model, channel=side.channel, arm=side.arm, version=side.version
                )
            }
            for side in sides
        ]
        return sorted(found[0] & found[1])
    return []


def _compare_one(
    source: MetricSource,
    name: str,
    a: CompareSide,
    b: CompareSide,
    confidence: float,
    min_samples: int,
) -> Comparison:
    qa, qb = a.query(name), b.query(name)
    try:
        xs, ys = source.values(qa, VALUES_LIMIT), source.values(qb, VALUES_LIMIT)
    except NotImplementedError:
        kind = "rate" if is_rate_name(name) else "values"
        return compare_summaries(
            name,
            (a.label, source.summary(qa)),
            (b.label, source.summary(qb)),
            kind=kind,
            confidence=confidence,
            min_samples=min_samples,
        )
    return compare_values(
        name,
        (a.label, xs),
        (b.label, ys),
        confidence=confidence,
        min_samples=min_samples,
    )


def compare_metrics(
    repo: Repo,
    a: str,
    b: str | None = None,
    *,
    metrics: Sequence[str] = (),
    since: str | None = None,
    around: str | None = None,
    source: str | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> CompareReport:
    """Compare ``a`` with ``b`` (the baseline), or ``a`` after a channel move with before it."""
    if not 0 < confidence < 1:
        raise UsageError(f"--confidence must be between 0 and 1 (e.g. 0.95), not {confidence}")
    if min_samples < 2:
        raise UsageError(f"--min-samples must be at least 2, not {min_samples}")
    now = repo.clock().timestamp()
    start = parse_since(since or DEFAULT_WINDOW, now)
    if start >= now:
        raise UsageError(f"--since {since!r} is not in the past")
    if around is not None:
        if b is not None:
            raise UsageError(
                "--around compares one channel arm before and after a move: give one spec",
                hint="e.g. mvc metrics compare bert@prod --around last --since 1h",
            )
        side_a, side_b, record = _around(repo, a, around, now - start, now)
    else:
        if b is None:
            raise UsageError(
                "compare needs two specs, or one channel spec and --around",
                hint="e.g. mvc metrics compare bert@prod:canary bert@prod:stable",
            )
        side_a, side_b, record = _side(repo, a, start, now), _side(repo, b, start, now), None
    reader = open_source(repo, source)
    try:
        names = list(metrics) or _names(reader, (side_a, side_b))
        results = [
            _compare_one(reader, name, side_a, side_b, confidence, min_samples) for name in names
        ]
    finally:
        if isinstance(reader, MetricsDB):
            reader.close()
    return CompareReport(
        side_a,
        side_b,
        source or "production",
        record,
        confidence,
        min_samples,
        results,
    )
