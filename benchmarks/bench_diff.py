#!/usr/bin/env python3
"""``mvc diff`` of two ~1 GiB versions: wall time and peak memory, against baselines.

Usage:
    python benchmarks/bench_diff.py [--dir /tmp/mvc-bench-diff] [--size-mib 1024] [--json]

Data (under --dir, never in the repository): a store with model ``m`` holding two versions of a
~1 GiB safetensors file of 16 tensors (12 F32, 4 BF16). The second is a "fine-tune": half of
the tensors have ~10% of their elements nudged, the other half are byte-identical.

Measured, each in a fresh subprocess whose peak RSS (ru_maxrss of the child) is recorded:

    diff        `mvc diff m~1 m --json`: the streamed tensor statistics
    diff-fast   `mvc diff m~1 m --json --no-stats`: which tensors changed, nothing decoded
    cat         `mvc cat` of both versions' file to /dev/null: reading and verifying every
                byte once (a floor for any diff that looks at every changed byte)
    naive       loading both files whole with numpy (safetensors.numpy.load_file) and computing
                the same statistics tensor by tensor: what a diff without streaming costs

Peak memory is the point: the streamed diff must stay far below the size of either version.
Every measurement is warm (the page cache cannot be dropped in a container).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

TENSORS_F32 = 12
TENSORS_BF16 = 4


def write_model(path: str, size_mib: int, seed: int, changed: set[int] | None = None) -> dict:
    """A safetensors file of 16 equal-sized tensors, written tensor by tensor (bounded memory)."""
    import ml_dtypes

    count = TENSORS_F32 + TENSORS_BF16
    per = size_mib * (1 << 20) // count
    header, offset, specs = {}, 0, []
    for i in range(count):
        dtype, width = ("F32", 4) if i < TENSORS_F32 else ("BF16", 2)
        elements = per // width
        cols = 4096
        shape = [elements // cols, cols]
        nbytes = shape[0] * cols * width
        header[f"layers.{i}.weight"] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + nbytes],
        }
        specs.append((i, dtype, shape))
        offset += nbytes
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(body)) + body)
        for i, dtype, shape in specs:
            rng = np.random.default_rng(1000 + i)  # the same base weights in every version
            values = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            if changed and i in changed:
                nudge = np.random.default_rng(seed * 100 + i)
                mask = nudge.random(shape, dtype=np.float32) < 0.1
                values[mask] += nudge.standard_normal(int(mask.sum()), dtype=np.float32) * 1e-3
            if dtype == "BF16":
                values = values.astype(ml_dtypes.bfloat16)
            handle.write(values.tobytes())
            del values
    return {"tensors": count, "bytes": os.path.getsize(path)}


NAIVE = r"""
import sys, numpy as np, ml_dtypes, json, struct
def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = np.float32 if info["dtype"] == "F32" else ml_dtypes.bfloat16
        s, e = info["data_offsets"]
        out[name] = np.frombuffer(raw, dt, offset=8 + n + s, count=(e - s) // np.dtype(dt).itemsize)
    return raw, out
_, a = load(sys.argv[1])
_, b = load(sys.argv[2])
for name in a:
    x, y = a[name].astype(np.float64), b[name].astype(np.float64)
    d = y - x
    stats = (np.count_nonzero(x != y), np.abs(d).max(), np.linalg.norm(d) / np.linalg.norm(x),
             np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))
"""

MEASURE = r"""
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
elapsed = time.perf_counter() - started
if done.returncode:
    sys.stderr.write(done.stderr.decode())
    sys.exit(done.returncode)
print(elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def measure(cmd: list[str], cwd: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of ``cmd`` run as the only child of a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/mvc-bench-diff")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = os.path.abspath(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    env = {**os.environ, "MVC_NO_PROGRESS": "1", "MVC_USER_NAME": "bench"}
    mvc = [sys.executable, "-m", "mvc"]

    def run(*cmd: str) -> None:
        subprocess.run([*mvc, *cmd], cwd=root, env=env, check=True, capture_output=True)

    run("init")
    started = time.perf_counter()
    facts = write_model(f"{root}/a/model.safetensors", args.size_mib, seed=1)
    write_model(f"{root}/b/model.safetensors", args.size_mib, seed=2, changed=set(range(0, 16, 2)))
    generated = time.perf_counter() - started
    run("commit", "a", "--model", "m", "-m", "base")
    run("commit", "b", "--model", "m", "-m", "fine-tune")
    subprocess.run(["sync"], check=False)

    os.environ.update(env)
    results = {}
    for name, cmd in (
        ("diff", [*mvc, "diff", "m~1", "m", "--json"]),
        ("diff-fast", [*mvc, "diff", "m~1", "m", "--json", "--no-stats"]),
        (
            "cat",
            [
                "sh",
                "-c",
                f"{' '.join(mvc)} cat m~1 model.safetensors >/dev/null && "
                f"{' '.join(mvc)} cat m model.safetensors >/dev/null",
            ],
        ),
        ("naive", [sys.executable, "-c", NAIVE, "a/model.safetensors", "b/model.safetensors"]),
    ):
        seconds, rss = measure(cmd, root)
        results[name] = {"seconds": round(seconds, 2), "peak_rss_mib": round(rss, 1)}
    diff = json.loads(
        subprocess.run(
            [*mvc, "diff", "m~1", "m", "--json"], cwd=root, capture_output=True, check=True
        ).stdout
    )
    group = diff["tensors"][0]
    summary = {
        "version_bytes": facts["bytes"],
        "tensors": facts["tensors"],
        "changed_tensors": len(group["changes"]),
        "skipped_identical": group["skipped_identical"],
        "verdict": diff["verdict"],
        "generate_seconds": round(generated, 1),
        "results": results,
        "ratios": {
            "diff_time_vs_cat": round(results["diff"]["seconds"] / results["cat"]["seconds"], 2),
            "diff_rss_vs_naive": round(
                results["diff"]["peak_rss_mib"] / results["naive"]["peak_rss_mib"], 3
            ),
            "diff_rss_vs_version_size": round(
                results["diff"]["peak_rss_mib"] / (facts["bytes"] / (1 << 20)), 3
            ),
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    size = facts["bytes"] / (1 << 30)
    print(
        f"two versions of {size:.2f} GiB, {facts['tensors']} tensors each; "
        f"{summary['changed_tensors']} changed, {summary['skipped_identical']} skipped unread"
    )
    print(f"{'step':10} {'seconds':>8} {'peak RSS MiB':>13}")
    for name, item in results.items():
        print(f"{name:10} {item['seconds']:8.2f} {item['peak_rss_mib']:13.1f}")
    for key, value in summary["ratios"].items():
        print(f"{key}: {value}")
    print(f"verdict: {diff['verdict']}")


if __name__ == "__main__":
    main()
