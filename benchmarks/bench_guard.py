#!/usr/bin/env python3
"""Guard benchmark: how long one `mvc guard` decision takes over a busy canary.

Usage:
    python benchmarks/bench_guard.py [--dir /tmp/mvc-bench-guard] [--requests 1000000]
                                     [--reps 5] [--json]

A store with two committed versions of a small model; channel prod with v2 as a 10% canary;
--requests requests over the last hour, each recording latency_ms and error (so twice as many
points), 90% stable and 10% canary, appended through ``MetricsDB``. The SLO: three 10-minute
windows 5 minutes apart, an absolute and a relative latency rule and an error-rate rule.

    decide      ``ops.guard.evaluate``: every window's candidate and stable summaries and the
                assessment (median of --reps)
    guard       ``guard(dry_run=False)`` on a copy of the store: the decision, the rollback
                (a deployment record by compare-and-swap) and the explanation (the versions'
                diff with tensor statistics, per-arm summaries, serving environments)

Data lives under --dir, never in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from mvc.deployment.analysis import guarded_arms  # noqa: E402
from mvc.metrics.model import Point, Source  # noqa: E402
from mvc.metrics.sqlite import MetricsDB  # noqa: E402
from mvc.ops import deploy  # noqa: E402
from mvc.ops.commit import commit  # noqa: E402
from mvc.ops.guard import evaluate, guard, slo_spec  # noqa: E402
from mvc.ops.names import create_tag  # noqa: E402
from mvc.repo import Repo  # noqa: E402

POLICY = """\
slo:
  bert:
    window: 10m
    interval: 5m
    count: 3
    min_samples: 100
    rules:
      - error_rate <= 0.01
      - latency_p99_ms <= 250
      - latency_p99_ms: no worse than stable + 10%
"""
START = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
ENV = {"MVC_USER_NAME": "Bench", "MVC_USER_EMAIL": "bench@example.com", "MVC_CORE_FSYNC": "false"}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def build(root: str, requests: int) -> tuple[Repo, Clock]:
    clock = Clock()
    repo = Repo.init(root, env=ENV, clock=clock)
    for seed, tag in ((1, "v1.0.0"), (2, "v2.0.0")):
        folder = os.path.join(root, "work", tag)
        os.makedirs(folder)
        rng = np.random.default_rng(seed)
        save_file(
            {
                f"layer.{i}.weight": rng.normal(0, 0.02, (256, 256)).astype(np.float32)
                for i in range(8)
            },
            os.path.join(folder, "model.safetensors"),
        )
        with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
            json.dump({"seed": seed}, handle)
        result = commit(repo, folder, message=tag, model="bert")
        create_tag(repo, "bert", tag, f"id={result.version_id}")
    deploy.set_channel(repo, "bert", "prod", "v1.0.0")
    clock.now = START.replace(hour=13)
    deploy.deploy_canary(repo, "bert", "prod", "v2.0.0", 10)
    with open(os.path.join(root, "mvc.yaml"), "w", encoding="utf-8") as handle:
        handle.write(POLICY)
    record = deploy.require_current(repo, "bert", "prod")
    stable, canary = record.stable, record.by_role("canary")
    assert stable is not None and canary is not None
    rng = random.Random(0)
    sources = (
        Source("web-a", "1", (("torch", "2.12.0"),)),
        Source("web-b", "2", (("torch", "2.13.0"),)),
    )
    t0 = clock.now.timestamp()
    with MetricsDB.open(repo) as db:
        batch: list[Point] = []
        for i in range(requests):
            arm, source, slow = (
                (canary, sources[1], 1.3) if i % 10 == 0 else (stable, sources[0], 1.0)
            )
            at = t0 + 3600.0 * i / requests
            latency = rng.lognormvariate(4.6, 0.3) * slow
            error = float(rng.random() < (0.02 if arm is canary else 0.002))
            batch.append(
                Point("bert", arm.version, "latency_ms", latency, at, "prod", arm.label, source)
            )
            batch.append(Point("bert", arm.version, "error", error, at, "prod", arm.label, source))
            if len(batch) >= 20_000:
                db.append(batch)
                batch = []
        db.append(batch)
    clock.now = START.replace(hour=14)
    return repo, clock


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", default="/tmp/mvc-bench-guard")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    root = os.path.join(args.dir, "store")
    started = time.perf_counter()
    repo, clock = build(root, args.requests)
    built = time.perf_counter() - started
    spec = slo_spec(repo, "bert")
    record = deploy.require_current(repo, "bert", "prod")
    arms = guarded_arms(record)
    assert arms is not None
    times = []
    for _ in range(args.reps):
        with MetricsDB.open(repo, create=False) as db:
            begin = time.perf_counter()
            _since, _measurements, assessment = evaluate(
                spec, record, arms, db, clock().timestamp()
            )
            times.append(time.perf_counter() - begin)
    copy = os.path.join(args.dir, "copy")
    shutil.copytree(root, copy)
    again = Repo(copy, env=ENV, clock=clock)
    begin = time.perf_counter()
    result = guard(again, "bert", "prod")
    full = time.perf_counter() - begin
    out = {
        "points": 2 * args.requests,
        "build_seconds": round(built, 2),
        "decide_seconds_median": round(statistics.median(times), 4),
        "decision": assessment.status,
        "guard_with_rollback_and_explain_seconds": round(full, 3),
        "rolled_back": result.move is not None,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key:>42}: {value}")


if __name__ == "__main__":
    main()
