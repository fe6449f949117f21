#!/usr/bin/env python3
"""Remote benchmarks of the real ``mvc`` CLI: push and pull against a file:// remote and a moto S3
server, as ratios against baselines measured in the same run.

Usage:
    python benchmarks/bench_remotes.py [--dir /tmp/mvc-bench] [--work /tmp/mvc-bench-remotes]
                                       [--reps 3] [--jobs N] [--json]
                                       [--skip s3 clone finetune pull20]

What it measures (issue 4, "Performance"); every timed step is a subprocess of ``mvc``:

    push      `mvc push` of the ~1 GiB model (one version) to a new file:// remote vs `cp -r` of
              the store's objects folder (target <= 1.5x), in --reps interleaved rounds (cp,
              push, push with core.fsync=false, cp -r + sync): medians, and each round's ratio
              (median and range). cp -r does not fsync; the `cp -r + sync` line compares with
              the same durability.
    noop      a second push with nothing new (target <= 1 s).
    clone     `mvc clone` of that remote into a new store (no checkout) vs `cp -r` of the
              remote's objects folder, interleaved (target <= 1.5x).
    finetune  push of a fine-tuned version (the LM head and the last two layers changed in their
              low bits) whose base is on the remote: bytes sent vs the file's size and the time,
              with push.repack=false (the chunks as committed) and with the default (deltas
              made before sending).
    pull20    a ~128 MiB model with 20 versions (each changes a quarter of its tensors) on the
              remote; `mvc pull` of one tagged version into a new store: objects and bytes sent
              vs that version's own objects, and vs everything on the remote.
    s3        the same four against a moto S3 server (a subprocess on loopback); the push
              baseline is a boto3 upload of the objects folder with the same parallelism.

The page cache cannot be dropped in a container, so every measurement is warm (inputs are read
before timing; `sync` runs untimed before each step). Data lives under --work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from corpus import DEFAULT_DIR, WEIGHTS, BigSpec, ensure_corpus, write_big  # noqa: E402

MIB = 2**20


@dataclass
class Result:
    name: str
    value: float
    unit: str  # "s", "MiB" or "objects"
    baseline_name: str | None = None
    baseline: float | None = None
    limit: float | None = None  # target: ratio (or value, without a baseline) at most this
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    @property
    def ok(self) -> bool | None:
        if self.limit is None:
            return None
        measured = self.ratio if self.baseline is not None else self.value
        return measured is not None and measured <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "ok": self.ok}


def render(results: Sequence[Result]) -> str:
    rows = [("step", "value", "baseline", "ratio", "target", "note")]
    for r in results:
        value = f"{r.value:.3f} {r.unit}" if r.unit == "s" else f"{r.value:,.1f} {r.unit}"
        base = (
            f"{r.baseline_name}: {r.baseline:.3f}" + (" s" if r.unit == "s" else "")
            if r.baseline is not None
            else ""
        )
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        target = "" if r.limit is None else ("ok" if r.ok else "MISSED") + f" (<= {r.limit:g})"
        rows.append((r.name, value, base, ratio, target, r.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


# --- running things -------------------------------------------------------------------------------


def user_env() -> dict[str, str]:
    """A user's environment: no MVC_DIR, and Python caches bytecode (some sandboxes set
    PYTHONDONTWRITEBYTECODE, which would recompile mvc's modules on every start)."""
    return {k: v for k, v in os.environ.items() if k not in ("MVC_DIR", "PYTHONDONTWRITEBYTECODE")}


def run(argv: Sequence[str], *, cwd: str | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        list(argv), cwd=cwd, env={**user_env(), **(env or {})}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def spread(values: Sequence[float], baselines: Sequence[float]) -> str:
    """The ratio of each round (value / that round's baseline): median and range."""
    ratios = sorted(v / b for v, b in zip(values, baselines, strict=True) if b)
    if not ratios:
        return ""
    return (
        f"per-round ratio median {statistics.median(ratios):.2f}x, "
        f"range {ratios[0]:.2f}-{ratios[-1]:.2f}x over {len(ratios)} rounds"
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def mvc_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "mvc", *args]


def mvc(store: str, *args: str, env: dict[str, str] | None = None) -> str:
    return run(mvc_argv("-C", store, *args), env=env)


def mvc_json(store: str, *args: str, env: dict[str, str] | None = None) -> tuple[float, Any]:
    seconds, out = timed(lambda: mvc(store, *args, "--json", env=env))
    return seconds, json.loads(out)


def warm(path: str) -> None:
    for root, _dirs, files in os.walk(path) if os.path.isdir(path) else [("", [], [path])]:
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                while handle.read(16 * MIB):
                    pass


def settle(*paths: str) -> None:
    subprocess.run(["sync"], check=True)
    for path in paths:
        warm(path)


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.unlink(path)


def tree_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _dirs, files in os.walk(path)
        for name in files
    )


def new_store(path: str) -> str:
    remove(path)
    os.makedirs(path)
    mvc(path, "init")
    mvc(path, "config", "set", "user.name", "bench")
    return path


# --- model edits ----------------------------------------------------------------------------------


def patch_tensors(
    path: str, names: Callable[[str], bool], salt: int, *, noise: bool = False
) -> int:
    """Flip low-order bits of the chosen tensors in place (a fine-tune's small changes): the
    lowest mantissa byte of every element XOR'd with ``salt``, or with ``noise`` replaced by
    random bits (a delta then keeps a random stream per element, as a real fine-tune's does;
    a constant XOR would make the delta almost nothing)."""
    import numpy as np

    from mvc.formats.safetensors import read_header

    header = read_header(path)
    changed = 0
    rng = np.random.default_rng(salt)
    with open(path, "r+b") as handle:
        for tensor in header.tensors:
            if not names(tensor.name):
                continue
            handle.seek(tensor.start)
            data = np.frombuffer(handle.read(tensor.nbytes), dtype=np.uint8).copy()
            width = 2 if tensor.dtype in ("BF16", "F16") else 4
            if noise:
                low = data[::width]
                data[::width] = rng.integers(0, 256, low.size, dtype=np.uint8)
            else:
                data[::width] ^= np.uint8(1 + salt % 255)  # the lowest mantissa byte
            handle.seek(tensor.start)
            handle.write(data.tobytes())
            changed += tensor.nbytes
    return changed


def layer_count(path: str) -> int:
    from mvc.formats.safetensors import read_header

    return sum(1 for t in read_header(path).tensors if t.name.endswith("input_layernorm.weight"))


def closure_ids(store: str, spec: str) -> tuple[set[str], int]:
    """Every object one version needs (metadata and chunks), and their stored bytes."""
    from mvc.repo import Repo
    from mvc.specs import resolve
    from mvc.store import object_key

    repo = Repo(store)
    version_id = resolve(repo, spec).version
    version = repo.objects.get_version(version_id)
    ids = {version_id, version.tree}
    for entry in repo.objects.get_tree(version.tree).files.values():
        ids.add(entry.manifest)
        ids.update(c.id for c in repo.objects.manifest_of(entry).chunks)
    return ids, sum(repo.storage.size(object_key(oid)) for oid in ids)


def _is_meta(store: str, oid: str) -> bool:
    from mvc import codec
    from mvc.repo import Repo

    return codec.is_meta(Repo(store).objects.read_stored(oid))


# --- moto ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[dict[str, str]]:
    port = free_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        os.environ.update(env)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)


def s3_client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])


def empty_bucket(client: Any, bucket: str) -> None:
    """Delete every key (moto keeps objects in memory: gigabytes add up)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def upload_folder(client: Any, folder: str, bucket: str, prefix: str, jobs: int) -> None:
    files = [os.path.join(r, n) for r, _d, ns in os.walk(folder) for n in ns]

    def put(path: str) -> None:
        key = f"{prefix}/{os.path.relpath(path, folder)}"
        client.upload_file(path, bucket, key)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(put, files))


# --- the benchmark --------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = os.path.abspath(args.work)
        self.reps = args.reps
        self.jobs = args.jobs
        self.results: list[Result] = []

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def add(self, result: Result) -> None:
        self.results.append(result)
        self.log(render([result]).splitlines()[1])

    def jobs_args(self) -> list[str]:
        return ["--jobs", str(self.jobs)] if self.jobs else []

    # the 1 GiB model: one version, then a fine-tune on top

    def prepare_big(self, corpus: dict[str, Any]) -> str:
        src = new_store(os.path.join(self.work, "src"))
        folder = os.path.join(src, "big")
        shutil.copytree(corpus["big"], folder)
        mvc(src, "commit", "big", "-m", "base")
        mvc(src, "tag", "big", "v1.0.0")
        return src

    def push_file(self, src: str, *, clone: bool = True) -> None:
        objects = os.path.join(src, ".mvc", "objects")
        size = tree_bytes(objects) / MIB
        remote = os.path.join(self.work, "remote-file")

        def fresh_remote() -> None:
            remove(remote)
            if "file" in mvc(src, "remote").split():
                mvc(src, "remote", "remove", "file")
            mvc(src, "remote", "add", "file", f"file://{remote}")

        def push(env: dict[str, str] | None = None) -> float:
            fresh_remote()
            settle(objects)
            seconds, _ = timed(
                lambda: mvc(src, "push", "file", "big@v1.0.0", *self.jobs_args(), env=env)
            )
            return seconds

        def cp(sync: bool) -> float:
            target = os.path.join(self.work, "cp-objects")
            remove(target)
            settle(objects)
            argv = ["sh", "-c", f"cp -r {objects} {target}" + (" && sync" if sync else "")]
            seconds, _ = timed(lambda: run(argv))
            remove(target)
            return seconds

        # Interleaved rounds: a busy spell of the shared machine hits the baseline and mvc
        # alike, and each round's ratio is reported (median and range).
        cps, pushes, no_fsync, cp_syncs = [], [], [], []
        for _ in range(self.reps):
            cps.append(cp(False))
            pushes.append(push())
            no_fsync.append(push({"MVC_CORE_FSYNC": "false"}))
            cp_syncs.append(cp(True))
        base = statistics.median(cps)
        note = f"{size:.0f} MiB of objects; {spread(pushes, cps)}"
        self.add(
            Result(
                "push file:// 1 GiB",
                statistics.median(pushes),
                "s",
                "cp -r",
                base,
                1.5,
                pushes,
                note,
            )
        )
        self.add(
            Result(
                "push file:// (core.fsync=false)",
                statistics.median(no_fsync),
                "s",
                "cp -r",
                base,
                None,
                no_fsync,
                spread(no_fsync, cps),
            )
        )
        self.add(
            Result(
                "push file:// vs cp -r + sync",
                statistics.median(pushes),
                "s",
                "cp -r + sync",
                statistics.median(cp_syncs),
                None,
                cp_syncs,
                f"durability on both sides; {spread(pushes, cp_syncs)}",
            )
        )
        # The remote holds the model now (the last push): a second push has nothing to send.
        noops = []
        for _ in range(self.reps):
            seconds, out = mvc_json(src, "push", "file", "big@v1.0.0")
            assert out["transfer"]["objects_sent"] == 0
            noops.append(seconds)
        self.add(
            Result(
                "push file:// nothing new", statistics.median(noops), "s", None, None, 1.0, noops
            )
        )
        if clone:
            self.clone_file(remote)

    def clone_file(self, remote: str) -> None:
        """`mvc clone` of the folder remote the push made (every object pulled, no checkout)
        vs `cp -r` of that remote's objects folder."""
        objects = os.path.join(remote, "objects")
        target = os.path.join(self.work, "clone")
        copy = os.path.join(self.work, "cp-remote-objects")
        cps, clones = [], []
        for _ in range(self.reps):
            remove(copy)
            settle(objects)
            cps.append(timed(lambda: run(["cp", "-r", objects, copy]))[0])
            remove(copy)
            remove(target)
            settle(objects)
            clones.append(timed(lambda: run(mvc_argv("clone", f"file://{remote}", target)))[0])
        remove(target)
        self.add(
            Result(
                "clone file:// 1 GiB",
                statistics.median(clones),
                "s",
                "cp -r",
                statistics.median(cps),
                1.5,
                clones,
                f"no checkout; {spread(clones, cps)}",
            )
        )

    def push_s3(self, src: str, env: dict[str, str]) -> None:
        client = s3_client(env)
        objects = os.path.join(src, ".mvc", "objects")
        jobs = self.jobs or 8  # mvc's transfer default when core.jobs is not set
        uploads, pushes = [], []
        for rep in range(self.reps):
            bucket = f"bench-upload-{rep}-{os.getpid()}"
            client.create_bucket(Bucket=bucket)
            settle(objects)
            uploads.append(timed(lambda b=bucket: upload_folder(client, objects, b, "x", jobs))[0])
            empty_bucket(client, bucket)
        bucket = ""
        for rep in range(self.reps):
            if bucket:
                empty_bucket(client, bucket)  # keep only the last push's copy
            bucket = f"bench-push-{rep}-{os.getpid()}"
            client.create_bucket(Bucket=bucket)
            if "s3" in mvc(src, "remote").split():
                mvc(src, "remote", "remove", "s3")
            mvc(src, "remote", "add", "s3", f"s3://{bucket}/store")
            settle(objects)
            pushes.append(timed(lambda: mvc(src, "push", "s3", "big@v1.0.0", *self.jobs_args()))[0])
        self.add(
            Result(
                "push s3 (moto) 1 GiB",
                statistics.median(pushes),
                "s",
                "boto3 upload",
                statistics.median(uploads),
                None,
                pushes,
                f"--jobs {jobs}; baseline uploads the objects folder with {jobs} threads",
            )
        )
        noops = [mvc_json(src, "push", "s3", "big@v1.0.0")[0] for _ in range(self.reps)]
        self.add(
            Result("push s3 nothing new", statistics.median(noops), "s", None, None, 1.0, noops)
        )

    def finetune(self, src: str, remotes: list[str]) -> None:
        path = os.path.join(src, "big", WEIGHTS)
        last = layer_count(path) - 1
        chosen = ("lm_head.", f"model.layers.{last}.", f"model.layers.{last - 1}.")
        changed = patch_tensors(path, lambda name: name.startswith(chosen), salt=7, noise=True)
        mvc(src, "commit", "big", "-m", "fine-tune: head and last two layers")
        mvc(src, "tag", "big", "v1.1.0")
        size = os.path.getsize(path)
        # push.repack=false first (it leaves this store as committed), into a copy of the
        # remote as it was; then the default, which makes deltas here and sends them.
        plain = os.path.join(self.work, "remote-file-plain")
        remove(plain)
        shutil.copytree(os.path.join(self.work, "remote-file"), plain)
        mvc(src, "remote", "add", "plain", f"file://{plain}")
        for remote in ["plain", *remotes]:
            settle(os.path.join(src, ".mvc", "objects"))
            env = {"MVC_PUSH_REPACK": "false"} if remote == "plain" else None
            seconds, out = mvc_json(src, "push", remote, "big@v1.1.0", *self.jobs_args(), env=env)
            sent = out["transfer"]["bytes_sent"]
            label = "file, push.repack=false" if remote == "plain" else remote
            self.add(
                Result(
                    f"push fine-tune to {label}: bytes sent",
                    sent / MIB,
                    "MiB",
                    "file size",
                    size / MIB,
                    None,
                    note=f"{sent / size:.1%} of the file; changed tensors "
                    f"{changed / MIB:.0f} MiB; {seconds:.2f} s",
                )
            )
        remove(plain)

    # 20 versions of a smaller model, one pulled

    def prepare_twenty(self) -> str:
        src = new_store(os.path.join(self.work, "m20"))
        folder = os.path.join(src, "m20")
        write_big(folder, BigSpec(size_mib=128, seed=2024))
        path = os.path.join(folder, WEIGHTS)
        from mvc.formats.safetensors import read_header

        names = [t.name for t in read_header(path).tensors]
        for i in range(20):
            if i:
                chosen = set(names[i % 4 :: 4])  # a quarter of the tensors, a different quarter
                patch_tensors(path, lambda n, c=chosen: n in c, salt=i)
            mvc(src, "commit", "m20", "-m", f"step {i}")
            mvc(src, "tag", "m20", f"v1.0.{i}")
        return src

    def pull_one(self, src: str, remote: str, url: str) -> None:
        mvc(src, "push", remote, "m20", *self.jobs_args())
        ids, closure_bytes = closure_ids(src, "m20@v1.0.9")
        store = new_store(os.path.join(self.work, f"pull-{remote}"))
        mvc(store, "remote", "add", "origin", url)
        seconds, out = mvc_json(store, "pull", "origin", "m20@v1.0.9", *self.jobs_args())
        sent = out["transfer"]
        chunks = len(ids) - len({i for i in ids if _is_meta(src, i)})
        remote_bytes = tree_bytes(os.path.join(src, ".mvc", "objects"))
        self.add(
            Result(
                f"pull 1 of 20 versions from {remote}: objects",
                sent["objects_sent"],
                "objects",
                "version's objects",
                len(ids),
                None,
                note=f"{sent['chunks_sent']} chunks sent, the version has {chunks}; "
                f"{sent['bytes_sent'] / MIB:.1f} MiB sent; the version's own objects "
                f"{closure_bytes / MIB:.1f} MiB; all 20 versions {remote_bytes / MIB:.0f} MiB; "
                f"{seconds:.2f} s (history comes as metadata)",
            )
        )

    def main(self) -> None:
        os.makedirs(self.work, exist_ok=True)
        corpus = ensure_corpus(self.args.dir, BigSpec())
        skip = set(self.args.skip or [])
        run(mvc_argv("--version"))  # untimed: Python's bytecode cache is warm, as when installed
        self.log("preparing the 1 GiB store…")
        src = self.prepare_big(corpus)
        self.push_file(src, clone="clone" not in skip)
        remotes = ["file"]
        server: Any = moto_server() if "s3" not in skip else _nothing()
        with server as env:
            if env is not None:
                self.push_s3(src, env)
                remotes.append("s3")
            if "finetune" not in skip:
                self.finetune(src, remotes)
            if "pull20" in skip:
                return
            self.log("preparing 20 versions…")
            twenty = self.prepare_twenty()
            remove(os.path.join(self.work, "remote20"))
            mvc(twenty, "remote", "add", "file", f"file://{self.work}/remote20")
            self.pull_one(twenty, "file", f"file://{self.work}/remote20")
            if env is not None:
                s3_client(env).create_bucket(Bucket="bench-twenty")
                mvc(twenty, "remote", "add", "s3", "s3://bench-twenty/store")
                self.pull_one(twenty, "s3", "s3://bench-twenty/store")


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=DEFAULT_DIR, help="corpus folder (benchmarks/corpus.py)")
    parser.add_argument("--work", default="/tmp/mvc-bench-remotes", help="stores and remotes")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=None, help="--jobs for mvc (default: config)")
    parser.add_argument("--skip", nargs="*", choices=["s3", "clone", "finetune", "pull20"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bench = Bench(args)
    bench.main()
    if args.json:
        print(json.dumps([r.to_json() for r in bench.results], indent=2))
    else:
        print(render(bench.results))


if __name__ == "__main__":
    main()
