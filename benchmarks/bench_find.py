#!/usr/bin/env python3
"""``mvc find`` over 10,000 versions: query time with the catalog, against a full scan.

Usage:
    python benchmarks/bench_find.py [--dir /tmp/mvc-bench-find] [--versions 10000] [--json]

Data (under --dir): a store whose versions are built through the API (objects and refs, no
model files): 20 models, linear histories, every 10th version tagged, params, metrics, a dataset
on every version and a base model on some. Measured:

    build       writing the versions and refs (information)
    cold        the first `find` (in-process): walks the refs, reads every version once, writes
                the catalog cache
    warm        the same query again in a new Repo (in-process, median of 5): refs + cache
    cli         `mvc find --where 'accuracy>=0.99' --dataset squad --json` as a subprocess
                (Python start-up and imports included), median of 3
    scan        the baseline without an index: reading and decoding every version object
                (in-process, a new Repo so nothing is cached in memory)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

MODELS = 20


def build(root: str, versions: int) -> float:
    from mvc.objects import Tree, Version
    from mvc.refnames import branch, tag
    from mvc.repo import Repo

    repo = Repo.init(root)
    with repo.editing_config() as values:
        values["user.name"] = "bench"
        values["core.fsync"] = False
    repo = Repo(root)
    started = time.perf_counter()
    tree = repo.objects.put_meta(Tree({}))
    per_model = versions // MODELS
    first_tip = None
    for m in range(MODELS):
        parent = None
        for i in range(per_model):
            minute = m * per_model + i
            lineage: dict = {
                "datasets": [{"name": "squad" if i % 2 else "wiki", "uri": f"data/{i % 7}"}]
            }
            if m and i == 0 and first_tip:
                lineage["base"] = {"model": "m0", "version": first_tip, "tree": tree, "spec": "m0"}
            parent = repo.objects.put_meta(
                Version(
                    model=f"m{m}",
                    tree=tree,
                    parents=(parent,) if parent else (),
                    author="bench",
                    time=f"2026-{1 + minute // 40000:02d}-{1 + minute // 1440 % 28:02d}T"
                    f"{minute // 60 % 24:02d}:{minute % 60:02d}:00Z",
                    message=f"version {i} of m{m}",
                    params={"lr": 10 ** -(1 + i % 4), "epochs": i % 5},
                    metrics={"accuracy": i / per_model, "loss": 1 - i / per_model},
                    lineage=lineage,
                )
            )
            if i % 10 == 0:
                repo.refs.set_if_equals(tag(f"m{m}", f"v{i // 100}.{i % 100}.0"), None, parent, "b")
        repo.refs.set_if_equals(branch(f"m{m}", "main"), None, parent, "bench")
        first_tip = first_tip or parent
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/mvc-bench-find")
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = os.path.abspath(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    build_seconds = build(root, args.versions)

    from mvc.ops.find import Query, find, parse_where
    from mvc.repo import Repo

    def query() -> Query:
        return Query(where=[parse_where("accuracy>=0.99")], datasets=["squad"])

    started = time.perf_counter()
    found = find(Repo(root), query())
    cold = time.perf_counter() - started
    warm_runs = []
    for _ in range(5):
        started = time.perf_counter()
        again = find(Repo(root), query())
        warm_runs.append(time.perf_counter() - started)
    assert [f.id for f in again] == [f.id for f in found]
    tag_runs = []
    for _ in range(5):
        started = time.perf_counter()
        tagged = find(Repo(root), Query(tag="^1.2", models=["m1*"]))
        tag_runs.append(time.perf_counter() - started)

    cli_runs = []
    env = {**os.environ, "MVC_DIR": root, "MVC_NO_PROGRESS": "1"}
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mvc",
                "find",
                "--where",
                "accuracy>=0.99",
                "--dataset",
                "squad",
                "--json",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        cli_runs.append(time.perf_counter() - started)

    repo = Repo(root)
    started = time.perf_counter()
    scanned = 0
    for oid in repo.objects.iter_ids():
        value = repo.objects.get_meta(oid)
        if value.get("type") == "version":
            scanned += 1
    scan = time.perf_counter() - started

    warm = statistics.median(warm_runs)
    summary = {
        "versions": scanned,
        "matches": len(found),
        "tag_range_matches": len(tagged),
        "build_seconds": round(build_seconds, 2),
        "cold_seconds": round(cold, 3),
        "warm_seconds": round(warm, 3),
        "warm_tag_range_seconds": round(statistics.median(tag_runs), 3),
        "cli_seconds": round(statistics.median(cli_runs), 3),
        "scan_seconds": round(scan, 3),
        "scan_vs_warm": round(scan / warm, 1),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
