"""The store's embedded metric database: version-tagged points in SQLite, in WAL mode.

``.mvc/metrics/points.db`` is a side database of the store (docs/storage-format.md): not
content-addressed, never referenced by an object or a ref, not copied by push, pull or clone,
and never touched by gc. Deleting it loses the recorded metrics and nothing else.

Tables (schema version in ``PRAGMA user_version``):

- ``series``: one row per (model, name, channel, arm, version); a point names its series by id.
  A point without a channel or arm is stored with ``''`` there (SQLite's UNIQUE treats NULLs as
  distinct).
- ``sources``: one row per (host, process, environment): where points were measured and the
  serving environment (Python, key package versions, platform, hardware), written once per
  source, read by ``mvc explain``.
- ``points``: (series, at, value, source); the covering index ``(series, at, value)`` answers
  every windowed read from the index alone.
- ``rollup``: per series and ``BUCKET_SECONDS`` bucket of time, count, sum, M2, min, max and a
  quantile sketch (``stats.Sketch``), kept up to date in the same transaction as the points.

Reads: a window's count, mean, stdev, min and max are always exact. Its percentiles are exact
(from the values) when the window holds at most ``EXACT_LIMIT`` points; above that they come
from the rollup's sketches (whole buckets inside the window) plus the raw points of the two
partial buckets at its edges, within 1% of the true rank's value (``stats.ACCURACY``). So a
window over ten million points reads a few thousand rollup rows, not ten million points.

Writes: ``append(points)`` is one transaction (``BEGIN IMMEDIATE``: the write lock is taken
up front, so concurrent writers queue instead of deadlocking on a lock upgrade). Many processes
may append at once: each waits for the lock (SQLite's busy timeout) and retries a transaction
that still finds the database busy until ``lock_timeout``; no point is lost or half-written.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from mvc.errors import LockTimeout, MvcError, UnknownFormat, UsageError
from mvc.ids import ObjectId
from mvc.metrics.model import Point, Query, Source, Summary
from mvc.metrics.stats import Aggregate, Sketch, exact
from mvc.repo import Repo

FOLDER = "metrics"
FILE = "points.db"
SCHEMA_VERSION = 1
BUCKET_SECONDS = 60.0
EXACT_LIMIT = 200_000
GROUP_KEYS = ("arm", "version", "channel")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    model TEXT NOT NULL,
    name TEXT NOT NULL,
    channel TEXT NOT NULL,
    arm TEXT NOT NULL,
    version TEXT NOT NULL,
    UNIQUE (model, name, channel, arm, version)
);
CREATE INDEX IF NOT EXISTS series_by_version ON series (model, version);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    process TEXT NOT NULL,
    environment TEXT NOT NULL,
    first_seen REAL NOT NULL,
    UNIQUE (host, process, environment)
);
CREATE TABLE IF NOT EXISTS points (
    series INTEGER NOT NULL REFERENCES series (id),
    at REAL NOT NULL,
    value REAL NOT NULL,
    source INTEGER REFERENCES sources (id)
);
CREATE INDEX IF NOT EXISTS points_by_series ON points (series, at, value);
CREATE INDEX IF NOT EXISTS points_by_source ON points (source, series);
CREATE TABLE IF NOT EXISTS rollup (
    series INTEGER NOT NULL,
    bucket REAL NOT NULL,
    count INTEGER NOT NULL,
    total REAL NOT NULL,
    m2 REAL NOT NULL,
    low REAL NOT NULL,
    high REAL NOT NULL,
    sketch TEXT NOT NULL,
    PRIMARY KEY (series, bucket)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Series:
    """One series: the points of one metric of one version, on one channel arm."""

    id: int
    model: str
    name: str
    channel: str | None
    arm: str | None
    version: ObjectId


@dataclass(frozen=True)
class Group:
    """The summary of the series sharing the values of ``by`` (others are None)."""

    arm: str | None
    version: ObjectId | None
    channel: str | None
    summary: Summary


@dataclass(frozen=True)
class SourceUse:
    """A source that measured points of a query's series, and how many."""

    source: Source
    points: int
    first_seen: float


def database_path(repo: Repo) -> str:
    return os.path.join(repo.store_dir, FOLDER, FILE)


def _bucket(at: float) -> float:
    return math.floor(at / BUCKET_SECONDS) * BUCKET_SECONDS


def _blank(value: str | None) -> str:
    return value or ""


def _none(value: str) -> str | None:
    return value or None


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class MetricsDB:
    """The store's metric database; a ``MetricSource``. One instance per thread (SQLite
    connections are not shared between threads); processes share the file safely."""

    def __init__(
        self,
        path: str,
        *,
        now: Callable[[], float] = time.time,
        lock_timeout: float = 60.0,
        create: bool = True,
    ) -> None:
        self.path = path
        self.now = now
        self.lock_timeout = lock_timeout
        if not create and not os.path.exists(path):
            self._db: sqlite3.Connection | None = None
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._db = self._connect()
        self._series: dict[tuple[str, str, str, str, str], int] = {}
        self._sources: dict[Source, int] = {}

    @classmethod
    def open(cls, repo: Repo, *, create: bool = True) -> MetricsDB:
        """The database of ``repo``'s store (made on first write; ``create=False`` reads an
        absent database as empty, so a read never creates files)."""
        return cls(
            database_path(repo),
            now=lambda: repo.clock().timestamp(),
            lock_timeout=repo.lock_timeout,
            create=create,
        )

    # --- connection -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise UnknownFormat(
                    f"metric database {self.path} has schema {version}; this mvc knows up to "
                    f"{SCHEMA_VERSION}",
                    hint="upgrade mvc to read it",
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if version < SCHEMA_VERSION:
                with self._transaction(db):  # idempotent: two first writers agree
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise MvcError(
                f"cannot open the metric database {self.path}: {exc}",
                hint="it is a side database: move it away to start a new one",
            ) from exc
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> MetricsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, db: sqlite3.Connection) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, retried while another writer holds the lock."""
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise LockTimeout(
                        f"the metric database {self.path} stayed locked for {self.lock_timeout:g}s",
                        hint="another process is writing a long batch; retry, or raise "
                        "--lock-timeout",
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        while True:
            try:
                db.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    db.execute("ROLLBACK")
                    raise LockTimeout(
                        f"could not commit to the metric database {self.path}"
                    ) from exc
                time.sleep(delay)

    # --- writing --------------------------------------------------------------------------------

    def append(self, points: Iterable[Point]) -> int:
        """Add points, all or none (one transaction); the number added."""
        batch = list(points)
        if not batch:
            return 0
        for point in batch:
            if not math.isfinite(point.value) or not math.isfinite(point.at):
                raise UsageError(
                    f"metric {point.name} of {point.model}: {point.value!r} at {point.at!r} is "
                    "not a finite number"
                )
        assert self._db is not None
        db = self._db
        with self._transaction(db):
            try:
                rows = [
                    (self._series_id(db, p), p.at, p.value, self._source_id(db, p.source, p.at))
                    for p in batch
                ]
                db.executemany(
                    "INSERT INTO points (series, at, value, source) VALUES (?,?,?,?)", rows
                )
                self._roll_up(db, rows)
            except BaseException:
                # ids handed out inside the failed transaction are gone with it
                self._series.clear()
                self._sources.clear()
                raise
        return len(batch)

    def _series_id(self, db: sqlite3.Connection, point: Point) -> int:
        key = (
            point.model,
            point.name,
            _blank(point.channel),
            _blank(point.arm),
            str(point.version),
        )
        found = self._series.get(key)
        if found is None:
            db.execute(
                "INSERT OR IGNORE INTO series (model, name, channel, arm, version) VALUES (?,?,?,?,?)",
                key,
            )
            found = db.execute(
                "SELECT id FROM series WHERE model=? AND name=? AND channel=? AND arm=? AND version=?",
                key,
            ).fetchone()[0]
            self._series[key] = found
        return found

    def _source_id(self, db: sqlite3.Connection, source: Source | None, at: float) -> int | None:
        if source is None:
            return None
        found = self._sources.get(source)
        if found is None:
            key = (
                source.host,
                source.process,
                json.dumps(dict(source.environment), sort_keys=True, separators=(",", ":")),
            )
            db.execute(
                "INSERT OR IGNORE INTO sources (host, process, environment, first_seen) "
                "VALUES (?,?,?,?)",
                (*key, at),  # the time of the first point seen from it
            )
            found = db.execute(
                "SELECT id FROM sources WHERE host=? AND process=? AND environment=?", key
            ).fetchone()[0]
            self._sources[source] = found
        return found

    def _roll_up(
        self, db: sqlite3.Connection, rows: list[tuple[int, float, float, int | None]]
    ) -> None:
        grouped: dict[tuple[int, float], list[float]] = {}
        for series, at, value, _ in rows:
            grouped.setdefault((series, _bucket(at)), []).append(value)
        for (series, bucket), values in grouped.items():
            aggregate = Aggregate.of(values)
            old = db.execute(
                "SELECT count, total, m2, low, high, sketch FROM rollup WHERE series=? AND bucket=?",
                (series, bucket),
            ).fetchone()
            if old is not None:
                before = Aggregate(old[0], old[1], old[2], old[3], old[4], Sketch.decode(old[5]))
                before.merge(aggregate)
                aggregate = before
            db.execute(
                "INSERT OR REPLACE INTO rollup (series, bucket, count, total, m2, low, high, sketch)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (
                    series,
                    bucket,
                    aggregate.count,
                    aggregate.total,
                    aggregate.m2,
                    aggregate.low,
                    aggregate.high,
                    aggregate.sketch.encode(),
                ),
            )

    # --- reading --------------------------------------------------------------------------------

    def series(
        self,
        model: str,
        name: str | None = None,
        *,
        channel: str | None = None,
        arm: str | None = None,
        version: ObjectId | None = None,
    ) -> list[Series]:
        """The series of a model, narrowed by whatever is given (None: any)."""
        if self._db is None:
            return []
        where, args = ["model=?"], [model]
        for column, value in (
            ("name", name),
            ("channel", channel),
            ("arm", arm),
            ("version", version),
        ):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        rows = self._db.execute(
            "SELECT id, model, name, channel, arm, version FROM series WHERE "
            + " AND ".join(where)
            + " ORDER BY name, channel, arm, version",
            args,
        ).fetchall()
        return [Series(r[0], r[1], r[2], _none(r[3]), _none(r[4]), ObjectId(r[5])) for r in rows]

    def _of(self, query: Query) -> list[Series]:
        return self.series(
            query.model, query.name, channel=query.channel, arm=query.arm, version=query.version
        )

    def _seconds(self, query: Query, ids: Sequence[int]) -> float | None:
        """The window's length: since to until (or now); without ``since``, first to last point."""
        if query.since is not None:
            end = query.until if query.until is not None else self.now()
            return max(end - query.since, 0.0)
        if not ids or self._db is None:
            return None
        # one index lookup per end and series (SQLite's min/max shortcut needs one series)
        bound, args = ("", []) if query.until is None else (" AND at < ?", [query.until])
        firsts, lasts = [], []
        for series in ids:
            (first,) = self._db.execute(
                f"SELECT min(at) FROM points WHERE series = ?{bound}", [series, *args]
            ).fetchone()
            (last,) = self._db.execute(
                f"SELECT max(at) FROM points WHERE series = ?{bound}", [series, *args]
            ).fetchone()
            if first is not None:
                firsts.append(first)
                lasts.append(last)
        return max(lasts) - min(firsts) if firsts else None

    def _window(self, query: Query) -> tuple[str, list[float]]:
        clauses, args = [], []
        if query.since is not None:
            clauses.append(" AND at >= ?")
            args.append(query.since)
        if query.until is not None:
            clauses.append(" AND at < ?")
            args.append(query.until)
        return "".join(clauses), args

    def _raw(self, ids: Sequence[int], low: float | None, high: float | None) -> list[float]:
        assert self._db is not None
        marks = ",".join("?" * len(ids))
        sql = f"SELECT value FROM points WHERE series IN ({marks})"
        args: list[float] = [*ids]
        if low is not None:
            sql += " AND at >= ?"
            args.append(low)
        if high is not None:
            sql += " AND at < ?"
            args.append(high)
        return [row[0] for row in self._db.execute(sql, args)]

    def _summarise(self, query: Query, ids: Sequence[int]) -> Summary:
        seconds = self._seconds(query, ids)
        if not ids or self._db is None:
            return Summary(0, per_second=0.0 if seconds else None)
        db = self._db
        marks = ",".join("?" * len(ids))
        since, until = query.since, query.until
        args: list[float] = [*ids]
        overlap = f"FROM rollup WHERE series IN ({marks})"
        if since is not None:
            overlap += " AND bucket >= ?"
            args.append(_bucket(since))
        if until is not None:
            overlap += " AND bucket < ?"
            args.append(until)
        if (
            db.execute("SELECT coalesce(sum(count), 0) " + overlap, args).fetchone()[0]
            <= EXACT_LIMIT
        ):
            return exact(self._raw(ids, since, until), seconds)
        # whole buckets inside the window from the rollup, the partial ones at its edges raw
        first = None if since is None else math.ceil(since / BUCKET_SECONDS) * BUCKET_SECONDS
        end = None if until is None else _bucket(until)
        aggregate = Aggregate()
        if first is not None and end is not None and first >= end:
            edges: list[tuple[float | None, float | None]] = [(since, until)]
        else:
            whole = f"FROM rollup WHERE series IN ({marks})"
            args = [*ids]
            if first is not None:
                whole += " AND bucket >= ?"
                args.append(first)
            if end is not None:
                whole += " AND bucket < ?"
                args.append(end)
            for count, total, m2, low, high, sketch in db.execute(
                "SELECT count, total, m2, low, high, sketch " + whole, args
            ):
                aggregate.merge_parts(count, total, m2, low, high)
                aggregate.sketch.merge(Sketch.decode(sketch))
            edges = []
            if since is not None and first is not None and since < first:
                edges.append((since, first))
            if until is not None and end is not None and end < until:
                edges.append((end, until))
        for low_at, high_at in edges:
            aggregate.merge(Aggregate.of(self._raw(ids, low_at, high_at)))
        return aggregate.summary(seconds)

    def summary(self, query: Query) -> Summary:
        """Count, mean, stdev, min, max, p50/p90/p95/p99 and rate of one query's points."""
        return self._summarise(query, [s.id for s in self._of(query)])

    def values(self, query: Query, limit: int | None = None) -> Sequence[float]:
        """The query's values in time order; with ``limit``, the newest ``limit`` of them."""
        ids = [s.id for s in self._of(query)]
        if not ids or self._db is None:
            return []
        marks = ",".join("?" * len(ids))
        window, args = self._window(query)
        if limit is None:
            sql = f"SELECT value FROM points WHERE series IN ({marks}){window} ORDER BY at"
            return [row[0] for row in self._db.execute(sql, [*ids, *args])]
        rows = self._db.execute(
            f"SELECT value FROM points WHERE series IN ({marks}){window} ORDER BY at DESC LIMIT ?",
            [*ids, *args, int(limit)],
        ).fetchall()
        return [row[0] for row in reversed(rows)]

    def groups(self, query: Query, by: Sequence[str] = ("arm", "version")) -> list[Group]:
        """One summary per distinct value of ``by`` (any of arm, version, channel) among the
        query's series, in the order of those values."""
        unknown = [key for key in by if key not in GROUP_KEYS]
        if unknown:
            raise UsageError(
                f"cannot group metrics by {unknown[0]!r}; by one of {', '.join(GROUP_KEYS)}"
            )
        grouped: dict[tuple[str | None, ...], list[Series]] = {}
        for series in self._of(query):
            key = tuple(getattr(series, k) for k in GROUP_KEYS)
            kept = tuple(v if k in by else None for k, v in zip(GROUP_KEYS, key, strict=True))
            grouped.setdefault(kept, []).append(series)
        out = []
        for (arm, version, channel), members in sorted(
            grouped.items(), key=lambda kv: [v or "" for v in kv[0]]
        ):
            out.append(
                Group(
                    arm,
                    ObjectId(version) if version else None,
                    channel,
                    self._summarise(query, [s.id for s in members]),
                )
            )
        return out

    def names(self, model: str, *, channel: str | None = None) -> list[str]:
        """The metric names recorded for a model (on a channel)."""
        return sorted({s.name for s in self.series(model, channel=channel)})

    def sources(self, query: Query) -> list[SourceUse]:
        """Where the query's points were measured (``name`` may be ``""``: every metric)."""
        if self._db is None:
            return []
        ids = [
            s.id
            for s in self.series(
                query.model,
                query.name or None,
                channel=query.channel,
                arm=query.arm,
                version=query.version,
            )
        ]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        window, args = self._window(query)
        rows = self._db.execute(
            "SELECT s.host, s.process, s.environment, s.first_seen, count(*) FROM points p "
            f"JOIN sources s ON s.id = p.source WHERE p.series IN ({marks}){window} "
            "GROUP BY p.source ORDER BY s.first_seen, s.id",
            [*ids, *args],
        ).fetchall()
        return [
            SourceUse(
                Source(host, process, tuple(sorted(json.loads(environment).items()))),
                count,
                first_seen,
            )
            for host, process, environment, first_seen, count in rows
        ]
