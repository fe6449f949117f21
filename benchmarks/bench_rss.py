#!/usr/bin/env python3
"""Peak memory of the big operations, at two model sizes, so that "independent of size" shows.

Usage:
    python benchmarks/bench_rss.py [--dir /tmp/mvc-bench-rss] [--sizes 1024,4096] [--json]
                                   [--keep]

For each size (MiB) the synthetic transformer of ``corpus.py`` (``write_big``) is generated
under ``DIR/SIZE/``, then each line runs the real ``mvc`` CLI as a subprocess, once:

| line | what runs |
|---|---|
| commit | ``mvc commit model`` of the whole model into a fresh store (v1) |
| commit, fine-tune | every 4th fp32 tensor's low mantissa byte perturbed in place, ``mvc commit`` (v2) |
| diff | ``mvc diff model@v1.0.0 model@v2.0.0 --json`` (changed tensors read and compared) |
| repack | ``mvc repack``: v2's changed chunks become deltas against v1's, everything compressed |
| checkout | ``mvc checkout model@main --to OUT`` from the repacked store (deltas decoded) |
| push | ``mvc push origin model`` to a fresh ``file://`` remote |
| python -c "import mvc.cli.main" | the floor: the interpreter with mvc's command line loaded |

Peak RSS is the child's ``ru_maxrss`` from ``os.wait4`` (this child only, not the others this
script ran; the model is generated in another child, since a child's ``ru_maxrss`` starts at
the size of the process it was forked from). A sampler also reads ``/proc/PID/status`` every 20 ms and keeps the largest
``RssAnon`` (heap: what a bound must hold) and ``RssFile`` (file pages mapped, e.g. a memory-map
of the model; the kernel can drop these at any time, so they are not a memory cost): a number
that grows with the model in RssFile only is the page cache seen through a mapping.

The data is deleted when a size is done unless ``--keep`` (4 GiB needs ~16 GiB of free disk:
the model, the store, the checkout and the remote).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MIB = 1 << 20


class Failed(Exception):
    """An mvc command exited non-zero."""


class Peak:
    """The largest RssAnon and RssFile of one process, sampled from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.anon = 0
        self.file = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self.done.is_set():
            try:
                with open(path, encoding="ascii") as handle:
                    for line in handle:
                        if line.startswith("RssAnon:"):
                            self.anon = max(self.anon, int(line.split()[1]) * 1024)
                        elif line.startswith("RssFile:"):
                            self.file = max(self.file, int(line.split()[1]) * 1024)
            except OSError:
                return
            self.done.wait(0.02)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def run(argv: list[str], cwd: str, env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    child = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = Peak(child.pid)
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    peak.stop()
    if child.returncode != 0:
        raise Failed(f"{' '.join(argv)} failed ({child.returncode}):\n{err.decode()[-2000:]}")
    return {
        "seconds": time.perf_counter() - started,
        "max_rss_mib": usage.ru_maxrss * 1024 / MIB,  # Linux: KiB
        "rss_anon_mib": peak.anon / MIB,
        "rss_file_mib": peak.file / MIB,
    }


def fine_tune(path: str, every: int = 4) -> int:
    """Perturb the lowest mantissa byte of every ``every``-th fp32 tensor, in place, window by
    window (what a fine-tune does to the bits of a tensor it barely moves)."""
    import numpy as np

    rng = np.random.default_rng(7)
    changed = 0
    with open(path, "r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        base = 8 + size
        tensors = sorted(
            (info["data_offsets"], name)
            for name, info in header.items()
            if name != "__metadata__" and info["dtype"] == "F32"
        )
        for index, ((start, end), _name) in enumerate(tensors):
            if index % every:
                continue
            for at in range(start, end, 64 * MIB):
                count = min(64 * MIB, end - at)
                handle.seek(base + at)
                data = np.frombuffer(handle.read(count), dtype=np.uint8).copy()
                data[0::4] ^= rng.integers(0, 4, size=data[0::4].shape, dtype=np.uint8)
                handle.seek(base + at)
                handle.write(data.tobytes())
            changed += 1
    return changed


def in_child(code: str) -> str:
    """Run numpy work in a child: a child's ru_maxrss starts at its parent's size when it forks,
    so this process must stay small for the numbers of the mvc children to mean anything."""
    here = os.path.dirname(os.path.abspath(__file__))
    prelude = "from corpus import BigSpec, write_big\nfrom bench_rss import fine_tune\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=here, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def measure_size(base: str, size_mib: int, mvc: str, env: dict[str, str], log: Any) -> dict:
    shutil.rmtree(base, ignore_errors=True)
    model = os.path.join(base, "model")
    store = os.path.join(base, "store")
    remote = os.path.join(base, "remote")
    out = os.path.join(base, "out")
    log(f"generating {size_mib} MiB model…")
    file_bytes = int(in_child(f"print(write_big({model!r}, BigSpec(size_mib={size_mib})))"))
    os.makedirs(store)
    lines: dict[str, dict[str, Any]] = {}

    def step(name: str, *args: str) -> None:
        log(f"  {name}: mvc {' '.join(args)}")
        lines[name] = run([mvc, "-C", store, *args], store, env)
        log(f"    {lines[name]['max_rss_mib']:.0f} MiB peak, {lines[name]['seconds']:.1f} s")

    for argv in (
        ["init"],
        ["config", "set", "user.name", "Bench"],
    ):
        subprocess.run([mvc, "-C", store, *argv], env=env, check=True, capture_output=True)
    step("commit", "commit", model, "-m", "v1")
    subprocess.run(
        [mvc, "-C", store, "tag", "model", "v1.0.0"], env=env, check=True, capture_output=True
    )
    changed = int(in_child(f"print(fine_tune({os.path.join(model, 'model.safetensors')!r}))"))
    step("commit, fine-tune", "commit", model, "-m", "v2")
    subprocess.run(
        [mvc, "-C", store, "tag", "model", "v2.0.0"], env=env, check=True, capture_output=True
    )
    step("diff", "diff", "model@v1.0.0", "model@v2.0.0", "--json")
    step("repack", "repack")
    step("checkout", "checkout", "model@main", "--to", out)
    shutil.rmtree(out)
    subprocess.run(
        [mvc, "-C", store, "remote", "add", "origin", f"file://{remote}"],
        env=env,
        check=True,
        capture_output=True,
    )
    failures: list[str] = []
    for _attempt in range(3):
        # A push into a fresh remote sometimes fails verifying a delta whose base has not
        # arrived yet (a race in the parallel copy, reported); each attempt starts afresh.
        shutil.rmtree(remote, ignore_errors=True)
        os.makedirs(remote)
        subprocess.run([mvc, "init", remote], env=env, check=True, capture_output=True)
        try:
            step("push", "push", "origin", "model")
            break
        except Failed as exc:
            failures.append(str(exc).splitlines()[-2])
            log(f"    failed: {failures[-1]}")
    if failures:
        lines.setdefault("push", {})["failed_attempts"] = failures
    shutil.rmtree(remote)
    lines['python -c "import mvc.cli.main"'] = run(
        [sys.executable, "-c", "import mvc.cli.main"], base, env
    )
    return {
        "size_mib": size_mib,
        "file_bytes": file_bytes,
        "tensors_changed": changed,
        "lines": lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/mvc-bench-rss")
    parser.add_argument("--sizes", default="1024,4096", help="model sizes in MiB")
    parser.add_argument("--mvc", default=shutil.which("mvc"))
    parser.add_argument("--keep", action="store_true", help="keep the data of each size")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-q", action="store_true", help="no progress on stderr")
    args = parser.parse_args()
    if not args.mvc:
        sys.exit("mvc is not on PATH (pass --mvc)")
    env = {**os.environ, "NO_COLOR": "1", "MVC_NO_PROGRESS": "1"}

    def log(text: str) -> None:
        if not args.q:
            print(text, file=sys.stderr, flush=True)

    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        base = os.path.join(args.dir, str(size))
        try:
            results.append(measure_size(base, size, args.mvc, env, log))
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    report = {"sizes": results, "unit": "MiB"}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    names = list(results[0]["lines"])
    head = " ".join(f"{r['size_mib']:>6} MiB model (rss/anon/file)" for r in results)
    print(f"{'peak memory, MiB':34} {head}")
    for name in names:
        cells = []
        for r in results:
            line = r["lines"][name]
            if "max_rss_mib" not in line:
                cells.append(f"{'failed':>27}" + " " * 6)
                continue
            cells.append(
                f"{line['max_rss_mib']:>11.0f} /{line['rss_anon_mib']:>6.0f} /{line['rss_file_mib']:>6.0f}"
                + " " * 6
            )
        print(f"{name:34} " + " ".join(cells))


if __name__ == "__main__":
    main()
