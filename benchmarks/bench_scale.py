#!/usr/bin/env python3
"""How ``log``, ``status``, ``commit`` and ``find`` grow with the length of a model's history.

Usage:
    python benchmarks/bench_scale.py [--dir /tmp/mvc-bench-scale] [--at 10,100,200,500,1000]
                                     [--reps 5] [--json]

Data (under --dir, rebuilt every run): one store, one bound working folder ``models/bert`` with
a small safetensors file (4 tensors, 256 KiB) and a ``config.json``. The history is built in
this process through the library (``mvc.ops.commit.commit``, the use case behind ``mvc commit``,
with ``core.fsync`` off while building): each version changes ``config.json`` (a ``step``
counter) and every 16th also rewrites one tensor; every version records params (``step``,
``lr``) and a metric; every 50th is tagged. So the store really holds N versions, N trees, the
changed manifests and chunks, and a ref log of N entries, as N real commits make them.

At each size in --at the history is grown to that many versions, ``core.fsync`` is switched
back on, and each line below runs the real ``mvc`` CLI as a subprocess, REPS times (median and
spread reported, in CPU seconds of the child, user + system, so a busy machine moves them
less than wall time; a fresh process each time, so start-up is included):

| line | what runs |
|---|---|
| log | ``mvc log bert`` (every version, printed) |
| log -n 10 | ``mvc log bert -n 10`` |
| log --json | ``mvc log bert --json`` |
| status | ``mvc status`` in the store (one clean bound folder) |
| commit | change ``config.json``, then ``mvc commit models/bert -m ...`` (adds a version) |
| find | ``mvc find --where 'step>=0' -n 5 --json`` right after a commit (the catalog has one new version to read) |
| find, warm | the same query again (nothing new) |
| python -c pass | the interpreter's own start-up, the floor of every line |

"Flat" means the 1,000-version time is within noise of the 10-version time for every line but
the full ``log`` (which prints N lines and must grow linearly; its per-version cost is reported).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

TENSORS = 4
ELEMENTS = 16384  # fp32: 64 KiB per tensor


def _safetensors(seed: int, changed: int) -> bytes:
    import struct

    header: dict[str, Any] = {}
    offset = 0
    for t in range(TENSORS):
        header[f"layer.{t}.weight"] = {
            "dtype": "F32",
            "shape": [ELEMENTS],
            "data_offsets": [offset, offset + 4 * ELEMENTS],
        }
        offset += 4 * ELEMENTS
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    body = bytearray()
    for t in range(TENSORS):
        value = float(seed if t == changed else 0) + t
        body += struct.pack("<f", value) * ELEMENTS
    return struct.pack("<Q", len(text)) + text + bytes(body)


class History:
    """A store and its bound folder, grown version by version through the library."""

    def __init__(self, root: str) -> None:
        from mvc.repo import Repo

        self.root = root
        self.folder = os.path.join(root, "models", "bert")
        os.makedirs(self.folder)
        repo = Repo.init(root)
        with repo.editing_config() as values:
            values["user.name"] = "Bench"
            values["user.email"] = "bench@example.com"
        self.count = 0
        self.step = 0

    def set_fsync(self, on: bool) -> None:
        from mvc.repo import Repo

        with Repo(self.root).editing_config() as values:
            values["core.fsync"] = on

    def change(self) -> None:
        self.step += 1
        with open(os.path.join(self.folder, "config.json"), "w", encoding="utf-8") as handle:
            json.dump({"hidden_size": 256, "step": self.step}, handle)
        if self.step % 16 == 1:
            data = _safetensors(self.step, self.step % TENSORS)
            with open(os.path.join(self.folder, "model.safetensors"), "wb") as handle:
                handle.write(data)

    def grow(self, versions: int) -> float:
        from mvc.ops.commit import commit
        from mvc.ops.names import create_tag
        from mvc.repo import Repo
        from mvc.specs import by_id

        started = time.perf_counter()
        self.set_fsync(False)
        repo = Repo(self.root)
        while self.count < versions:
            self.change()
            done = commit(
                repo,
                self.folder,
                message=f"step {self.step}",
                model="bert",
                params={"step": self.step, "lr": 1e-4},
                metrics={"loss": 1.0 / self.step},
            )
            assert done.created and done.version_id
            self.count += 1
            if self.count % 50 == 0:
                create_tag(repo, "bert", f"v0.{self.count // 50}.0", by_id("bert", done.version_id))
        self.set_fsync(True)
        return time.perf_counter() - started


def timed(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    """CPU seconds (user + system) of the child: on a shared machine wall time mostly measures
    the neighbours."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


def measure(history: History, mvc: str, reps: int, env: dict[str, str]) -> dict[str, Any]:
    root = history.root
    fixed = {
        "log": [mvc, "log", "bert"],
        "log -n 10": [mvc, "log", "bert", "-n", "10"],
        "log --json": [mvc, "log", "bert", "--json"],
        "status": [mvc, "status"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    find = [mvc, "find", "--where", "step>=0", "-n", "5", "--json"]
    for argv in fixed.values():
        timed(argv, root, env)  # page cache, .pyc files
    samples: dict[str, list[float]] = {name: [] for name in fixed}
    samples.update({"commit": [], "find": [], "find, warm": []})
    for _ in range(reps):
        for name, argv in fixed.items():
            samples[name].append(timed(argv, root, env))
        history.change()
        samples["commit"].append(
            timed([mvc, "commit", "models/bert", "-m", f"cli {history.step}"], root, env)
        )
        history.count += 1
        samples["find"].append(timed(find, root, env))
        samples["find, warm"].append(timed(find, root, env))
    return {name: summary(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/mvc-bench-scale")
    parser.add_argument("--at", default="10,100,200,500,1000")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--mvc", default=shutil.which("mvc"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-q", action="store_true", help="no progress on stderr")
    args = parser.parse_args()
    if not args.mvc:
        sys.exit("mvc is not on PATH (pass --mvc)")
    sizes = sorted(int(s) for s in args.at.split(","))
    root = os.path.join(args.dir, "store")
    shutil.rmtree(root, ignore_errors=True)
    env = {**os.environ, "NO_COLOR": "1", "MVC_NO_PROGRESS": "1"}
    history = History(root)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        if history.count > size:
            continue
        seconds = history.grow(size)
        if not args.q:
            print(f"built {size} versions (+{seconds:.1f} s)", file=sys.stderr)
        rows.append(
            {"versions": history.count, "lines": measure(history, args.mvc, args.reps, env)}
        )
    first, last = rows[0], rows[-1]
    growth = {
        name: last["lines"][name]["median"] / first["lines"][name]["median"]
        for name in first["lines"]
    }
    span = last["versions"] - first["versions"]
    log_per_version = (
        (last["lines"]["log"]["median"] - first["lines"]["log"]["median"]) / span if span else 0.0
    )
    report = {
        "sizes": rows,
        "growth_first_to_last": growth,
        "log_seconds_per_version": log_per_version,
        "reps": args.reps,
        "build": "N real commits through mvc.ops.commit.commit in this process, fsync off",
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    names = list(first["lines"])
    print(f"{'versions':>10} " + " ".join(f"{n:>14}" for n in names))
    for row in rows:
        cells = []
        for name in names:
            line = row["lines"][name]
            cells.append(f"{line['median']:6.3f}±{(line['max'] - line['min']) / 2:5.3f}")
        print(f"{row['versions']:>10} " + " ".join(f"{c:>14}" for c in cells))
    print(
        f"{'growth':>10} "
        + " ".join(f"{growth[n]:>13.2f}x" for n in names)
        + f"   (median at {last['versions']} / at {first['versions']})"
    )
    print(f"full log: {log_per_version * 1e3:.3f} ms per extra version")


if __name__ == "__main__":
    main()
