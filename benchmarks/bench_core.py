#!/usr/bin/env python3
"""Core benchmarks of the real ``mvc`` CLI, as ratios against baselines measured in the same run.

Usage:
    python benchmarks/bench_core.py [--dir /tmp/mvc-bench] [--reps 3] [--json] [--skip NAMES]

What it measures (issue 2, "Performance"); every timed step is a subprocess of the installed
``mvc`` (or ``--mvc PATH``), with stdout captured:

    commit    `mvc commit` of the ~1 GiB model into a fresh store, median of --reps, vs
              `cp` of the same file (target <= 2x) and `sha256sum` (target: faster);
              also, for information, `cp` + `sync FILE` (cp's time with the same durability)
              and a commit with core.compress=true (compression at commit time).
    noop      on the committed model: the FIRST `mvc status` right after the commit (it may
              re-verify entries too fresh to trust), then a second `mvc status` and a no-op
              `mvc commit` (medians), each target <= 0.5 s.
    checkout  `mvc checkout big@main --to NEW_FOLDER`, median of --reps, vs cp (target <= 1.5x);
              peak RSS of the checkout (wait4's ru_maxrss).
    delta     a fine-tune of the big model (float32 low bits changed) committed after it and
              `mvc repack`ed into deltas; `mvc checkout` of the fine-tune vs cp of its file,
              median of --reps (target <= 2x), with repack time and peak RSS.
    repack    store size of the 1 GiB model before and after `mvc repack` (information).
    minilm    store size after committing the real MiniLM folder, before and after `mvc repack`:
              the stored bytes of model.safetensors' chunks vs the file (target <= 85%).
    startup   `mvc --version` vs `python -c "import typer"`, best of 10 (target <= 1.5x).

The page cache cannot be dropped here (no root-only /proc/sys/vm/drop_caches in a container),
so every measurement is WARM: the input files are read once before timing, and `sync` runs
(untimed) before each timed step so one step's dirty pages are not written back on the next
step's clock. Data lives under --dir, never in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from corpus import DEFAULT_DIR, WEIGHTS, BigSpec, ensure_corpus  # noqa: E402

STEPS = ("commit", "noop", "checkout", "delta", "repack", "minilm", "startup")
MIB = 2**20


# --- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    """One line of the table: a value, optionally against a baseline and a target ratio."""

    name: str
    value: float
    unit: str  # "s" or "MiB"
    baseline_name: str | None = None
    baseline: float | None = None
    limit: float | None = None  # the target: ratio (value / baseline) at most this
    target: str = ""
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def ok(self) -> bool | None:
        if self.limit is None:
            return None
        measured = self.ratio if self.baseline is not None else self.value
        return measured is not None and measured <= self.limit

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["ratio"] = self.ratio
        body["ok"] = self.ok
        return body


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.2f} s"
    return f"{value:.1f} {unit}"


def render_table(results: Sequence[Result]) -> str:
    rows = [("measurement", "mvc", "baseline", "ratio", "target", "ok")]
    for r in results:
        baseline = f"{r.baseline_name} {_fmt(r.baseline, r.unit)}" if r.baseline is not None else ""
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        ok = {True: "yes", False: "NO", None: ""}[r.ok]
        rows.append((r.name, _fmt(r.value, r.unit), baseline, ratio, r.target, ok))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    notes = [f"  {r.name}: {r.note}" for r in results if r.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


# --- running things --------------------------------------------------------------------------


class Runner:
    def __init__(self, mvc: str, verbose: bool) -> None:
        self.mvc = mvc
        self.verbose = verbose
        # A user's environment: no MVC_DIR, and Python caches bytecode (some sandboxes set
        # PYTHONDONTWRITEBYTECODE, which would recompile mvc's modules on every start).
        drop = ("MVC_DIR", "PYTHONDONTWRITEBYTECODE")
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env["NO_COLOR"] = "1"

    def log(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    def run(self, argv: Sequence[str], *, cwd: str | None = None) -> tuple[float, str]:
        """Seconds the command took (wall clock), and its stdout. Fails loudly on error."""
        start = time.perf_counter()
        done = subprocess.run(
            list(argv), cwd=cwd, env=self.env, capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(
                f"{' '.join(argv)} failed with exit {done.returncode}:\n{done.stderr[-2000:]}"
            )
        self.log(f"  {elapsed:8.3f} s  {' '.join(argv)}")
        return elapsed, done.stdout

    def mvc_run(self, store: str, *args: str) -> tuple[float, str]:
        return self.run([self.mvc, "-C", store, *args])

    def timed(self, argv: Sequence[str], **kwargs: Any) -> float:
        return self.run(argv, **kwargs)[0]


#: Runs a command and writes "seconds maxrss-KiB exit-code" to the file ``argv[1]``. The
#: command is spawned from this small process, not from the benchmark: Linux counts into a
#: child's ``ru_maxrss`` the resident size of the process it was spawned from at its exec, so
#: spawned straight from a benchmark holding a 1 GiB fine-tune it "peaked" at 1 GiB. The
#: probe's own ~11 MiB is the floor of what it reports (`/bin/true` reads 11 MiB).
_RSS_PROBE = r"""
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_pid, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as handle:
    handle.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def timed_rss(runner: Runner, argv: Sequence[str]) -> tuple[float, float]:
    """Seconds a command took and its peak resident memory in MiB (``wait4``'s ``ru_maxrss``
    of that one process, spawned from a small probe: see ``_RSS_PROBE``). Fails loudly on
    error."""
    import tempfile

    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as result:
        subprocess.run(
            [sys.executable, "-c", _RSS_PROBE, result.name, *argv],
            env=runner.env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            check=True,
        )
        elapsed_text, rss_text, code_text = result.read().split()
        elapsed, rss_kib, code = float(elapsed_text), int(rss_text), int(code_text)
        if code != 0:
            err.seek(0)
            raise SystemExit(
                f"{' '.join(argv)} failed with exit {code}:\n"
                + err.read()[-2000:].decode(errors="replace")
            )
    runner.log(f"  {elapsed:8.3f} s  {rss_kib / 1024:6.0f} MiB  {' '.join(argv)}")
    return elapsed, rss_kib / 1024  # Linux reports KiB


def warm(path: str) -> None:
    """Read a file, or every file below a folder, into the page cache."""
    paths = (
        [os.path.join(root, name) for root, _dirs, files in os.walk(path) for name in files]
        if os.path.isdir(path)
        else [path]
    )
    for name in paths:
        with open(name, "rb") as handle:
            while handle.read(16 * MIB):
                pass


def settle(*inputs: str) -> None:
    """Before a timed step (untimed): flush dirty pages, so the step does not pay for earlier
    writes, and re-read its inputs, so it runs on a warm page cache (this machine's memory
    manager pages out files untouched for about a minute)."""
    subprocess.run(["sync"], check=True)
    for path in inputs:
        warm(path)


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.unlink(path)


def new_store(runner: Runner, path: str, **config: str) -> str:
    remove(path)
    os.makedirs(path)
    runner.run([runner.mvc, "init", path])
    for key, value in config.items():
        runner.mvc_run(path, "config", "set", key, value)
    return path


def objects_bytes(store: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(os.path.join(store, ".mvc", "objects")):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


def stored_file_bytes(store: str, spec: str, path: str) -> int:
    """On-disk bytes of the chunks (and manifest) of one file of a version."""
    from mvc.repo import Repo
    from mvc.specs import resolve
    from mvc.store import object_key

    repo = Repo(store)
    version = repo.objects.get_version(resolve(repo, spec).version)
    entry = repo.objects.get_tree(version.tree).files[path]
    manifest = repo.objects.manifest_of(entry)
    ids = {entry.manifest, *(ref.id for ref in manifest.chunks)}
    return sum(repo.storage.size(object_key(oid)) for oid in ids)


def write_fine_tune(src: str, dst: str, *, seed: int = 1, scale: float = 1e-3) -> None:
    """A fine-tune of the safetensors file ``src``: every float32 tensor times (1 + N(0,
    ``scale``)), its low bits changed as a few training steps change them; bf16 tensors (the
    embedding and LM head of the synthetic model) change by less than their precision and stay
    as they are, like frozen layers. Streamed tensor by tensor: memory stays small."""
    import numpy as np

    with open(src, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    start = 8 + length
    source = np.memmap(src, dtype=np.uint8, mode="r")
    rng = np.random.default_rng(seed)
    temp = dst + ".partial"
    with open(temp, "wb") as out:
        out.write(source[:start].tobytes())
        tensors = sorted(
            (info["data_offsets"], info["dtype"])
            for name, info in header.items()
            if name != "__metadata__"
        )
        for (begin, end), dtype in tensors:
            data = source[start + begin : start + end]
            if dtype == "F32":
                values = data.view(np.float32)
                noise = rng.standard_normal(values.shape, dtype=np.float32)
                noise *= np.float32(scale)
                noise += np.float32(1.0)
                data = (values * noise).view(np.uint8)
            out.write(data.tobytes())
    os.replace(temp, dst)


# --- the benchmarks --------------------------------------------------------------------------


class Bench:
    def __init__(self, runner: Runner, base: str, corpus: dict[str, Any], reps: int) -> None:
        self.r = runner
        self.base = base
        self.runs = os.path.join(base, "runs")
        self.corpus = corpus
        self.reps = reps
        self.big = corpus["big"]
        self.big_file = os.path.join(self.big, WEIGHTS)
        self.big_mib = corpus["big_bytes"] / MIB
        self.store = os.path.join(self.runs, "store")  # holds the committed big model
        self.objects = os.path.join(self.store, ".mvc", "objects")
        self.results: list[Result] = []
        self.cp: list[float] = []
        os.makedirs(self.runs, exist_ok=True)

    def warm_up(self) -> None:
        """Run every timed command once on the small model (untimed), so Python's bytecode
        cache holds every module they import, as it does for an installed package."""
        store = new_store(self.r, os.path.join(self.runs, "warm-up"))
        self.r.mvc_run(store, "commit", self.corpus["minilm"], "--model", "warm", "-m", "warm")
        self.r.mvc_run(store, "status")
        self.r.mvc_run(store, "checkout", "warm@main", "--to", os.path.join(store, "out"))
        self.r.mvc_run(store, "repack")
        remove(store)

    def add(self, result: Result) -> None:
        self.results.append(result)
        self.r.log(f"> {result.name}: {_fmt(result.value, result.unit)}")

    @property
    def cp_s(self) -> float:
        return statistics.median(self.cp)

    def time_cp(self, out: str) -> float:
        remove(out)
        settle(self.big_file)
        seconds = self.r.timed(["cp", self.big_file, out])
        self.cp.append(seconds)
        remove(out)
        return seconds

    def commit(self) -> None:
        """Interleaved: each round times cp, cp+sync, sha256sum and a commit into a new store,
        so a slow spell of the machine hits baselines and mvc alike."""
        out = os.path.join(self.runs, "cp.out")
        cp_sync, sha, samples = [], [], []
        stores = [os.path.join(self.runs, f"commit-{i}") for i in range(self.reps)]
        for i in range(self.reps):
            self.time_cp(out)
            settle(self.big_file)
            cp_sync.append(
                self.r.timed(["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", self.big_file, out])
            )
            remove(out)
            settle(self.big_file)
            sha.append(self.r.timed(["sha256sum", self.big_file]))
            new_store(self.r, stores[i])
            settle(self.big_file)
            samples.append(
                self.r.mvc_run(stores[i], "commit", self.big, "--model", "big", "-m", "bench")[0]
            )
            if i < self.reps - 1:
                remove(stores[i])
        # Keep the last store (with its fresh stat cache) for the no-op and checkout steps.
        remove(self.store)
        os.rename(stores[-1], self.store)
        median = statistics.median(samples)
        note = f"{self.big_mib / median:.0f} MiB/s; fsync'd store writes (core.fsync=true)"
        self.add(
            Result(
                f"commit {self.big_mib:.0f} MiB (median of {self.reps})",
                median,
                "s",
                "cp",
                self.cp_s,
                2.0,
                "<= 2x cp",  # issue 14; cp's data is not durable, mvc's is (the next lines)
                samples,
                note,
            )
        )
        self.add(
            Result(
                "commit vs sha256sum",
                median,
                "s",
                "sha256sum",
                statistics.median(sha),
                1.0,
                "< 1x",
                sha,
            )
        )
        self.add(
            Result(
                "commit vs cp + sync FILE",
                median,
                "s",
                "cp+sync",
                statistics.median(cp_sync),
                samples=cp_sync,
                target="(info: same durability)",
            )
        )
        # Compression at commit time: one run, for information.
        zstore = new_store(self.r, os.path.join(self.runs, "commit-z"), **{"core.compress": "true"})
        settle(self.big_file)
        seconds = self.r.mvc_run(zstore, "commit", self.big, "--model", "big", "-m", "bench")[0]
        size = objects_bytes(zstore) / MIB
        remove(zstore)
        self.add(
            Result(
                "commit with core.compress=true",
                seconds,
                "s",
                "cp",
                self.cp_s,
                target="(info)",
                note=f"store {size:.0f} MiB = {100 * size / self.big_mib:.1f}% of the file",
            )
        )

    def noop(self) -> None:
        # Right after the commit: the first status may re-hash entries that are still racy.
        settle()
        first, out = self.r.mvc_run(self.store, "status", "--json")
        hashed = sum(m.get("hashed_files", 0) for m in json.loads(out))
        self.add(
            Result(
                "status, first after commit",
                first,
                "s",
                limit=0.5,
                target="<= 0.5 s",
                note=f"re-hashed {hashed} file(s) (racy entries are re-verified once)",
            )
        )
        second = [self.r.mvc_run(self.store, "status")[0] for _ in range(self.reps)]
        self.add(
            Result(
                "status, no-op (later runs)",
                statistics.median(second),
                "s",
                limit=0.5,
                target="<= 0.5 s",
                samples=second,
            )
        )
        commits = []
        for _ in range(self.reps):
            seconds, out = self.r.mvc_run(self.store, "commit", self.big, "-m", "noop", "--json")
            if json.loads(out).get("created"):
                raise SystemExit("a no-op commit created a version: the benchmark is invalid")
            commits.append(seconds)
        self.add(
            Result(
                "commit, no-op",
                statistics.median(commits),
                "s",
                limit=0.5,
                target="<= 0.5 s",
                samples=commits,
            )
        )

    def checkout_once(self, folder: str) -> float:
        return self.checkout_rss(folder)[0]

    def checkout_rss(
        self, folder: str, store: str | None = None, spec: str = "big@main"
    ) -> tuple[float, float]:
        store = store or self.store
        remove(folder)
        settle(os.path.join(store, ".mvc", "objects"))
        result = timed_rss(self.r, [self.r.mvc, "-C", store, "checkout", spec, "--to", folder])
        remove(folder)
        return result

    def checkout(self) -> None:
        out = os.path.join(self.runs, "cp.out")
        cp, cp_sync, samples, rss = [], [], [], []
        for i in range(self.reps):
            cp.append(self.time_cp(out))
            settle(self.big_file)
            cp_sync.append(
                self.r.timed(["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", self.big_file, out])
            )
            remove(out)
            seconds, peak = self.checkout_rss(os.path.join(self.runs, f"checkout-{i}"))
            samples.append(seconds)
            rss.append(peak)
        median = statistics.median(samples)
        self.add(
            Result(
                f"checkout {self.big_mib:.0f} MiB (median of {self.reps})",
                median,
                "s",
                "cp",
                statistics.median(cp),
                1.5,
                "<= 1.5x cp",
                samples,
                f"{self.big_mib / median:.0f} MiB/s; not fsync'd (checkout.fsync=false, as in "
                f"git), each byte hashed once (whole-file blake3); peak RSS {max(rss):.0f} MiB",
            )
        )
        self.add(
            Result(
                "checkout vs cp + sync FILE",
                median,
                "s",
                "cp+sync",
                statistics.median(cp_sync),
                samples=cp_sync,
                target="(info: cp made durable)",
            )
        )

    def delta(self) -> None:
        """A fine-tune of the big model stored as deltas: commit the base and the fine-tune
        (its float32 tensors' low bits changed) on one model, `mvc repack`, then check out the
        fine-tune (every changed chunk a depth-1 delta on the base's chunk, itself compressed)
        vs `cp` of the fine-tune's file, interleaved."""
        tuned = os.path.join(self.base, "finetune")
        tuned_file = os.path.join(tuned, WEIGHTS)
        if not os.path.exists(tuned_file) or os.path.getmtime(tuned_file) < os.path.getmtime(
            self.big_file
        ):
            self.r.log("  writing the fine-tune of the big model…")
            os.makedirs(tuned, exist_ok=True)
            write_fine_tune(self.big_file, tuned_file)
            shutil.copy(os.path.join(self.big, "config.json"), tuned)
        store = new_store(self.r, os.path.join(self.runs, "delta-store"))
        settle(self.big_file)
        self.r.mvc_run(store, "commit", self.big, "--model", "ft", "-m", "base")
        settle(tuned_file)
        self.r.mvc_run(store, "commit", tuned, "--model", "ft", "-m", "fine-tune")
        settle(os.path.join(store, ".mvc", "objects"))
        start = time.perf_counter()
        packed = json.loads(self.r.mvc_run(store, "repack", "--json")[1])
        repack_s = time.perf_counter() - start
        out = os.path.join(self.runs, "cp.out")
        cp, samples, rss = [], [], []
        for i in range(self.reps):
            remove(out)
            settle(tuned_file)
            cp.append(self.r.timed(["cp", tuned_file, out]))
            remove(out)
            folder = os.path.join(self.runs, f"checkout-delta-{i}")
            seconds, peak = self.checkout_rss(folder, store, "ft@main")
            samples.append(seconds)
            rss.append(peak)
        stored = objects_bytes(store) / MIB
        remove(store)
        tuned_mib = os.path.getsize(tuned_file) / MIB
        median = statistics.median(samples)
        self.add(
            Result(
                f"checkout, delta-stored {tuned_mib:.0f} MiB (median of {self.reps})",
                median,
                "s",
                "cp",
                statistics.median(cp),
                2.0,
                "<= 2x cp",
                samples,
                f"{tuned_mib / median:.0f} MiB/s; {packed['deltas']} delta chunks on a "
                f"compressed base; repack {repack_s:.1f} s, store {stored:.0f} MiB for both "
                f"versions; peak RSS {max(rss):.0f} MiB",
            )
        )

    def repack(self) -> None:
        before = objects_bytes(self.store) / MIB
        settle(self.objects)
        seconds = self.r.mvc_run(self.store, "repack")[0]
        after = objects_bytes(self.store) / MIB
        self.add(
            Result(
                "repack 1 GiB store (time)",
                seconds,
                "s",
                "cp",
                self.cp_s,
                target="(info)",
                note=f"{before / seconds:.0f} MiB/s",
            )
        )
        self.add(
            Result(
                "1 GiB store after repack",
                after,
                "MiB",
                "before",
                before,
                target="(info)",
                note=f"{100 * after / self.big_mib:.1f}% of the file",
            )
        )
        seconds = self.checkout_once(os.path.join(self.runs, "checkout-packed"))
        self.add(
            Result(
                "checkout from the repacked store",
                seconds,
                "s",
                "cp",
                self.cp_s,
                target="(info)",
                note=f"{self.big_mib / seconds:.0f} MiB/s",
            )
        )

    def minilm(self) -> None:
        store = new_store(self.r, os.path.join(self.runs, "minilm"))
        folder = self.corpus["minilm"]
        file_mib = self.corpus["minilm_bytes"] / MIB
        folder_mib = self.corpus["minilm_folder_bytes"] / MIB
        settle(folder)
        seconds = self.r.mvc_run(store, "commit", folder, "--model", "minilm", "-m", "base")[0]
        loose = stored_file_bytes(store, "minilm@main", WEIGHTS) / MIB
        loose_all = objects_bytes(store) / MIB
        settle(os.path.join(store, ".mvc", "objects"))
        repack_s = self.r.mvc_run(store, "repack")[0]
        packed = stored_file_bytes(store, "minilm@main", WEIGHTS) / MIB
        packed_all = objects_bytes(store) / MIB
        remove(store)
        self.add(
            Result(
                "MiniLM model.safetensors stored, loose",
                loose,
                "MiB",
                "file",
                file_mib,
                target="(info)",
                note=f"commit took {seconds:.2f} s",
            )
        )
        self.add(
            Result(
                "MiniLM model.safetensors stored, repacked",
                packed,
                "MiB",
                "file",
                file_mib,
                0.85,
                "<= 85%",
                note=f"repack took {repack_s:.2f} s",
            )
        )
        self.add(
            Result(
                "MiniLM whole folder stored, repacked",
                packed_all,
                "MiB",
                "folder",
                folder_mib,
                target="(info)",
                note=f"loose: {loose_all:.1f} MiB",
            )
        )

    def startup(self) -> None:
        def best(argv: list[str]) -> tuple[float, list[float]]:
            samples = [self.r.timed(argv) for _ in range(10)]
            return min(samples), samples

        self.r.timed([self.r.mvc, "--version"])  # compile caches, warm imports
        mvc_s, mvc_samples = best([self.r.mvc, "--version"])
        typer_s, typer_samples = best([sys.executable, "-c", "import typer"])
        python_s, _ = best([sys.executable, "-c", "pass"])
        self.add(
            Result(
                "mvc --version (best of 10)",
                mvc_s,
                "s",
                "import typer",
                typer_s,
                1.5,
                "<= 1.5x",
                mvc_samples,
                f"bare `python -c pass`: {python_s:.3f} s",
            )
        )


def print_report(
    env: dict[str, Any], started: float, results: Sequence[Result], *, as_json: bool
) -> None:
    """The run's environment (with its duration and the load after it) and its results: one
    JSON document, or an environment line and the table."""
    env["seconds"] = round(time.time() - started, 1)
    env["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    if as_json:
        body = {"environment": env, "results": [r.to_json() for r in results]}
        print(json.dumps(body, indent=2))
        return
    print(" · ".join(f"{k}: {v}" for k, v in env.items()))
    print()
    print(render_table(results))


def environment(runner: Runner, base: str) -> dict[str, Any]:
    version = runner.run([runner.mvc, "--version"])[1].strip()
    fs = subprocess.run(["df", "-T", base], capture_output=True, text=True).stdout.splitlines()
    return {
        "mvc": version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "filesystem": fs[-1].split()[1] if len(fs) > 1 else "?",
        "page_cache": "warm (caches cannot be dropped here)",
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "dir": base,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir", default=DEFAULT_DIR, help=f"data and scratch (default {DEFAULT_DIR})"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions of timed steps (median)")
    parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    parser.add_argument(
        "--skip", default="", help=f"comma-separated steps to skip: {','.join(STEPS)}"
    )
    parser.add_argument("--mvc", default=shutil.which("mvc") or "mvc", help="the mvc executable")
    parser.add_argument("--size-mib", type=int, default=BigSpec.size_mib)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep DIR/runs/store (the committed model) for profiling",
    )
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    if unknown := skip - set(STEPS):
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    base = os.path.abspath(args.dir)
    runner = Runner(args.mvc, verbose=not args.quiet)
    corpus = ensure_corpus(base, BigSpec(size_mib=args.size_mib), log=not args.quiet)
    bench = Bench(runner, base, corpus, args.reps)
    env = environment(runner, base)
    started = time.time()
    bench.warm_up()
    if "commit" not in skip or {"noop", "checkout", "repack"} - skip:
        runner.log("== commit")
        bench.commit()
    for step in ("noop", "checkout", "delta", "repack", "minilm", "startup"):
        if step not in skip:
            runner.log(f"== {step}")
            getattr(bench, step)()
    if not args.keep:
        remove(bench.runs)
    print_report(env, started, bench.results, as_json=args.json)


if __name__ == "__main__":
    main()
