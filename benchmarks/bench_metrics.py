#!/usr/bin/env python3
"""Metric store benchmarks: ingest rate and windowed per-arm aggregates over 10 million points.

Usage:
    python benchmarks/bench_metrics.py [--dir /tmp/mvc-bench] [--points 10000000] [--reps 5]
                                       [--json] [-q]

What it measures (issue 9, "Version-tagged metrics"), through the library (``MetricsDB``):

    ingest      --points points of one metric (latency_ms, lognormal) for model bert, channel
                prod, arms stable (90%, two versions over the day) and canary (10%), spread
                over 24 hours, appended in batches of 10,000 (one transaction each): points/s.
    record      mvc.metrics.Recorder.record(decision, latency_ms=, error=) from a real
                RouteDecision, 200,000 calls: microseconds per call buffered only (the hot
                path), (batches of 1,000 calls, the buffer emptied untimed between them), and with its flushes
                of 1,000 points per transaction (on the calling thread).
    per-point   2,000 appends of one point each (one transaction each): points/s, against
                SQLite's own rate for a one-row INSERT transaction on the same kind of file
                (the floor per-point costs sit on).
    window-1h   ``groups(Query(since=last hour), by=("arm",))``: count, mean, p99 per arm,
                median of --reps, against the same count/mean computed by one SQL aggregate
                over the covering index (SQLite's own scan, no percentiles).
    window-24h  the same over the whole day (every point): the rollup path; its p99 is from
                the sketches (1% relative accuracy), checked here against the exact p99.

Data lives under --dir (``metrics/`` below it), never in the repository; a second run with the
same --points reuses the database.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mvc.ids import ObjectId  # noqa: E402
from mvc.metrics.model import Point, Query, Source  # noqa: E402
from mvc.metrics.sqlite import MetricsDB, database_path  # noqa: E402
from mvc.repo import Repo  # noqa: E402

DAY = 86_400.0
T0 = 1_772_539_200.0  # 2026-03-03T12:00:00Z
V1, V2, V3 = (ObjectId(c * 64) for c in "123")
BATCH = 10_000


@dataclass
class Result:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""

    def line(self) -> str:
        text = f"{self.name:12} {self.value:14,.3f} {self.unit:8}"
        if self.baseline is not None:
            text += f"  vs {self.baseline_name} {self.baseline:,.3f} (x{self.value / self.baseline:.2f})"
        return text + (f"  target {self.target}" if self.target else "")


def say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def points(total: int, seed: int = 0) -> Any:
    """Batches of points: 90% stable (v1 for the first half of the day, v2 after), 10% canary."""
    rng = random.Random(seed)
    source = Source("bench", "1", (("python", sys.version.split()[0]),))
    step = DAY / total
    batch: list[Point] = []
    for i in range(total):
        at = T0 + i * step
        canary = rng.random() < 0.1
        arm, version = ("canary", V3) if canary else ("stable", V1 if i < total // 2 else V2)
        value = rng.lognormvariate(math.log(120 if canary else 100), 0.5)
        batch.append(Point("bert", version, "latency_ms", value, at, "prod", arm, source))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def open_store(folder: str) -> Repo:
    root = os.path.join(folder, "store")
    if not os.path.isdir(os.path.join(root, ".mvc")):
        os.makedirs(root, exist_ok=True)
        Repo.init(root)
    end = datetime.fromtimestamp(T0 + DAY, UTC)  # "now" is the end of the benchmark's day
    return Repo(root, clock=lambda: end)


def bench_ingest(repo: Repo, total: int, quiet: bool) -> Result | None:
    db = MetricsDB.open(repo)
    have = db.summary(Query("bert", "latency_ms")).count
    if have == total:
        say(quiet, f"reusing {total:,} points in {database_path(repo)}")
        return None
    db.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(database_path(repo) + suffix):
            os.unlink(database_path(repo) + suffix)
    db = MetricsDB.open(repo)
    start = time.perf_counter()
    done = 0
    for batch in points(total):
        done += db.append(batch)
        if done % 1_000_000 == 0:
            say(
                quiet, f"  ingested {done:,} ({done / (time.perf_counter() - start):,.0f} points/s)"
            )
    seconds = time.perf_counter() - start
    db.close()
    return Result("ingest", total / seconds, "points/s", target="batched, 10k per transaction")


def bench_per_point(folder: str, quiet: bool) -> Result:
    scratch = os.path.join(folder, "per-point")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    Repo.init(scratch)
    db = MetricsDB.open(Repo(scratch))
    source = Source("bench", "1")
    n = 2000
    start = time.perf_counter()
    for i in range(n):
        db.append(
            [Point("bert", V1, "latency_ms", 100.0 + i % 7, T0 + i, "prod", "stable", source)]
        )
    ours = n / (time.perf_counter() - start)
    raw = sqlite3.connect(os.path.join(scratch, "raw.db"), isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    raw.execute("CREATE TABLE t (series INTEGER, at REAL, value REAL)")
    start = time.perf_counter()
    for i in range(n):
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO t VALUES (1, ?, ?)", (T0 + i, 100.0))
        raw.execute("COMMIT")
    floor = n / (time.perf_counter() - start)
    say(quiet, f"  per-point: {ours:,.0f}/s, raw SQLite one-row transactions {floor:,.0f}/s")
    return Result("per-point", ours, "points/s", floor, "raw sqlite insert txn")


def bench_record(folder: str, quiet: bool) -> list[Result]:
    """mvc.metrics.Recorder.record from a real RouteDecision: the hot path alone (buffer only),
    and with its flushes (1,000 points per transaction)."""
    from mvc.api import commit
    from mvc.metrics.recorder import Recorder
    from mvc.ops.deploy import set_channel
    from mvc.router import Router

    scratch = os.path.join(folder, "record")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(os.path.join(scratch, "model"))
    with open(os.path.join(scratch, "model", "config.json"), "w", encoding="utf-8") as handle:
        handle.write("{}")
    repo = Repo.init(scratch, overrides={"user.name": "bench"})
    commit(os.path.join(scratch, "model"), "one", repo=repo, model="bert")
    set_channel(repo, "bert", "prod", "main")
    decision = Router(repo, "bert", "prod").route("user-1")
    n = 200_000
    buffered = Recorder(repo, max_points=n + 1, max_delay=0)
    hot = 0.0
    for _ in range(n // 1000):  # batches of 1,000 calls, the buffer emptied between them
        start = time.perf_counter()
        for i in range(1000):
            buffered.record(decision, latency_ms=100.0 + i % 50, error=0)
        hot += time.perf_counter() - start
        buffered._take()  # untimed: the points a flush would write, dropped
    hot /= n
    buffered.close()
    flushing = Recorder(repo, max_points=1000, max_delay=0)
    start = time.perf_counter()
    for i in range(n):
        flushing.record(decision, latency_ms=100.0 + i % 50, error=0)
    flushing.close()
    total = (time.perf_counter() - start) / n
    say(quiet, f"  record(): {hot * 1e6:.1f} us buffered, {total * 1e6:.1f} us with flushes")
    return [
        Result("record-hot", hot * 1e6, "us/call", target="2 metrics per call, buffer only"),
        Result("record-all", total * 1e6, "us/call", target="with flushes of 1,000 points"),
    ]


def bench_window(repo: Repo, since: float, name: str, reps: int, quiet: bool) -> tuple[Result, Any]:
    db = MetricsDB.open(repo)
    query = Query("bert", "latency_ms", channel="prod", since=since, until=T0 + DAY)
    times = []
    groups = []
    for _ in range(reps):
        start = time.perf_counter()
        groups = db.groups(query, by=("arm",))
        times.append(time.perf_counter() - start)
    ours = statistics.median(times)
    assert db._db is not None
    ids = [s.id for s in db.series("bert", "latency_ms", channel="prod")]
    sql_times = []
    marks = ",".join("?" * len(ids))
    for _ in range(reps):
        start = time.perf_counter()
        db._db.execute(
            f"SELECT count(*), avg(value) FROM points WHERE series IN ({marks}) AND at >= ? AND at < ?",
            [*ids, since, T0 + DAY],
        ).fetchone()
        sql_times.append(time.perf_counter() - start)
    baseline = statistics.median(sql_times)
    for group in groups:
        s = group.summary
        say(quiet, f"  {name} {group.arm}: count {s.count:,} mean {s.mean:.2f} p99 {s.p99:.2f}")
    return (
        Result(name, ours, "s", baseline, "SQL count+avg scan", target="well under 1 s"),
        groups,
    )


def exact_p99(repo: Repo, arm: str) -> float:
    db = MetricsDB.open(repo)
    values = sorted(db.values(Query("bert", "latency_ms", channel="prod", arm=arm)))
    return values[round(0.99 * (len(values) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", default="/tmp/mvc-bench")
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    folder = os.path.join(args.dir, "metrics")
    os.makedirs(folder, exist_ok=True)
    repo = open_store(folder)
    results: list[Result] = []
    say(args.quiet, f"ingesting {args.points:,} points")
    ingest = bench_ingest(repo, args.points, args.quiet)
    if ingest:
        results.append(ingest)
    results.append(bench_per_point(folder, args.quiet))
    results += bench_record(folder, args.quiet)
    hour, _ = bench_window(repo, T0 + DAY - 3600, "window-1h", args.reps, args.quiet)
    day, groups = bench_window(repo, T0, "window-24h", args.reps, args.quiet)
    results += [hour, day]
    errors = {}
    for group in groups:
        assert group.arm is not None and group.summary.p99 is not None
        truth = exact_p99(repo, group.arm)
        errors[group.arm] = group.summary.p99 / truth - 1
        say(
            args.quiet,
            f"  window-24h {group.arm}: sketch p99 {group.summary.p99:.3f}, exact {truth:.3f}",
        )
    size = sum(
        os.path.getsize(database_path(repo) + s)
        for s in ("", "-wal")
        if os.path.exists(database_path(repo) + s)
    )
    if args.json:
        print(
            json.dumps(
                {
                    "results": [asdict(r) for r in results],
                    "p99_relative_error": errors,
                    "database_bytes": size,
                },
                indent=2,
            )
        )
    else:
        for result in results:
            print(result.line())
        for arm, error in errors.items():
            print(f"p99 error    {arm:8} {error:+.4%} (sketch vs exact, 24 h window)")
        print(f"database     {size / 2**20:,.0f} MiB for {args.points:,} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
