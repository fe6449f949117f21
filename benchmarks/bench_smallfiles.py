#!/usr/bin/env python3
"""Many small files: commit and status of a 2,002-file model folder against `cp -r` and git.

Usage:
    python benchmarks/bench_smallfiles.py [--dir /tmp/mvc-bench] [--reps 5] [--json] [-q]

The folder (``DIR/smallfiles/model``, ~13 MB, deterministic: the same bytes on every run) looks
like a many-shard, tokenizer-heavy model folder: ``config.json``, a shard index, 400 small
safetensors shards (fp32 tensors, 8-24 KiB each) and, for 400 languages, a tokenizer's
``vocab.txt``, ``merges.txt``, ``tokenizer_config.json`` and ``special_tokens_map.json``.

Each round, interleaved so a busy spell of the machine hits every side alike:

    cp -r     `cp -r` of the folder
    git       `git init && git add -A && git commit` of the folder (a separate --git-dir, so the
              folder stays as it is); git's default durability (core.fsync: nothing is fsync'd)
    git+fsync the same with `core.fsync=added,reference` and `core.fsyncMethod=batch`:
              git with durability like mvc's (information)
    mvc       `mvc commit FOLDER` into a fresh store (its `mvc init` untimed): every object
              fsync'd before the branch names it

then, once per round on the committed folder: `mvc status` (the first after the commit may
re-hash entries too fresh to trust; later ones are the no-op) against `git status`, and a no-op
`mvc commit`. Targets: commit no slower than git (<= 1x); no-op status well under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import struct
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_core import (  # noqa: E402
    Result,
    Runner,
    environment,
    print_report,
    remove,
    settle,
)
from corpus import DEFAULT_DIR  # noqa: E402

FOLDER_FORMAT = 1
LANGUAGES = 400
SHARDS = 400
SEED = 20261201
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _safetensors(rng: random.Random, shard: int) -> bytes:
    """One small shard: two fp32 tensors of a layer, values as random bits (incompressible)."""
    rows = rng.randrange(28, 84)
    shapes = {f"model.layers.{shard}.mlp.weight": (rows, 64), f"model.layers.{shard}.bias": (64,)}
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 4 * (shape[0] * (shape[1] if len(shape) > 1 else 1))
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + rng.randbytes(offset)


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_LETTERS) for _ in range(rng.randrange(2, 9)))


def folder_files() -> dict[str, bytes]:
    """Every file of the folder, by path: 2,002 of them, ~13 MB."""
    rng = random.Random(SEED)
    files: dict[str, bytes] = {}
    weight_map = {}
    for shard in range(SHARDS):
        name = f"model-{shard + 1:05d}-of-{SHARDS:05d}.safetensors"
        files[f"shards/{name}"] = _safetensors(rng, shard)
        weight_map[f"model.layers.{shard}.mlp.weight"] = name
        weight_map[f"model.layers.{shard}.bias"] = name
    for lang in range(LANGUAGES):
        folder = f"tokenizers/lang-{lang:03d}"
        vocab = [_word(rng) for _ in range(rng.randrange(900, 1700))]
        files[f"{folder}/vocab.txt"] = "\n".join(["[PAD]", "[UNK]", *vocab, ""]).encode()
        merges = [f"{_word(rng)} {_word(rng)}" for _ in range(rng.randrange(600, 1100))]
        files[f"{folder}/merges.txt"] = "\n".join(["#version: 0.2", *merges, ""]).encode()
        files[f"{folder}/tokenizer_config.json"] = json.dumps(
            {"do_lower_case": bool(lang % 2), "model_max_length": 512, "language": f"l{lang}"},
            indent=2,
        ).encode()
        files[f"{folder}/special_tokens_map.json"] = json.dumps(
            {"pad_token": "[PAD]", "unk_token": "[UNK]"}, indent=2
        ).encode()
    files["config.json"] = json.dumps(
        {"architectures": ["ManyShardModel"], "num_hidden_layers": SHARDS, "hidden_size": 64},
        indent=2,
    ).encode()
    files["model.safetensors.index.json"] = json.dumps(
        {"metadata": {"total_size": 0}, "weight_map": weight_map}, indent=2
    ).encode()
    return files


def ensure_folder(base: str) -> tuple[str, int, int]:
    """The folder under ``base`` (made once, reused while its stamp matches): path, files, bytes."""
    root = os.path.join(base, "smallfiles")
    folder = os.path.join(root, "model")
    stamp = os.path.join(root, "folder.json")
    try:
        with open(stamp, encoding="utf-8") as handle:
            known = json.load(handle)
        if known.get("format") == FOLDER_FORMAT and os.path.isdir(folder):
            return folder, int(known["files"]), int(known["bytes"])
    except (OSError, ValueError, KeyError):
        pass
    remove(folder)
    files = folder_files()
    for rel, data in files.items():
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    total = sum(len(d) for d in files.values())
    with open(stamp, "w", encoding="utf-8") as handle:
        json.dump({"format": FOLDER_FORMAT, "files": len(files), "bytes": total}, handle)
    return folder, len(files), total


class SmallFiles:
    def __init__(self, runner: Runner, base: str, reps: int) -> None:
        self.r = runner
        self.reps = reps
        self.folder, self.count, self.bytes = ensure_folder(base)
        self.runs = os.path.join(base, "smallfiles", "runs")
        remove(self.runs)
        os.makedirs(self.runs)
        self.results: list[Result] = []

    def cpu(self, samples: list[float], step: Any, *args: Any) -> Any:
        """Run ``step(*args)``; append the CPU seconds (user + system) its processes used."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        value = step(*args)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return value

    def git(self, git_dir: str, *args: str) -> list[str]:
        return ["git", f"--git-dir={git_dir}", f"--work-tree={self.folder}", *args]

    def time_git(self, git_dir: str, *config: str) -> float:
        settle(self.folder)
        ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.com", *config]
        script = " && ".join(
            [
                'git init -q --bare "$1"',
                f'git {" ".join(ident)} --git-dir="$1" --work-tree="$2" add -A',
                f'git {" ".join(ident)} --git-dir="$1" --work-tree="$2" commit -q -m bench',
            ]
        )
        return self.r.timed(["sh", "-c", script, "sh", git_dir, self.folder])

    def run(self) -> None:
        cp, git, git_sync, commit, mvc_status, git_status, first_status, noop = (
            [] for _ in range(8)
        )
        hashed_first: list[int] = []
        git_cpu: list[float] = []
        commit_cpu: list[float] = []
        sync_config = ("-c", "core.fsync=added,reference", "-c", "core.fsyncMethod=batch")
        # Nothing is deleted until the end: on ext4 without a journal (this machine), making an
        # inode scans past the ones deleted in the last minutes, so a round right after removing
        # the last one's 4,000 files would time that, for whichever side came next.
        for index in range(self.reps):
            out = os.path.join(self.runs, f"cp-{index}")
            git_dir = os.path.join(self.runs, f"git-{index}")
            store = os.path.join(self.runs, f"store-{index}")
            settle(self.folder)
            cp.append(self.r.timed(["cp", "-r", self.folder, out]))
            git_sync.append(self.time_git(git_dir + "-fsync", *sync_config))
            git.append(self.cpu(git_cpu, self.time_git, git_dir))
            os.makedirs(store)
            self.r.run([self.r.mvc, "init", store])
            settle(self.folder)
            commit.append(
                self.cpu(
                    commit_cpu,
                    self.r.timed,
                    [
                        self.r.mvc,
                        "-C",
                        store,
                        "commit",
                        self.folder,
                        "--model",
                        "many",
                        "-m",
                        "bench",
                    ],
                )
            )
            settle(self.folder)
            seconds, shown = self.r.mvc_run(store, "status", "--json")
            first_status.append(seconds)
            hashed_first.append(sum(m.get("hashed_files", 0) for m in json.loads(shown)))
            time.sleep(2.1)  # past the stat cache's racy margin: the next status is the no-op
            self.r.mvc_run(store, "status")  # re-verifies what was still racy, once
            mvc_status.append(self.r.mvc_run(store, "status")[0])
            git_status.append(self.r.timed(self.git(git_dir, "status", "--porcelain")))
            seconds, shown = self.r.mvc_run(store, "commit", self.folder, "-m", "noop", "--json")
            if json.loads(shown).get("created"):
                raise SystemExit("a no-op commit created a version: the benchmark is invalid")
            noop.append(seconds)
        size = f"{self.count} files, {self.bytes / 1e6:.1f} MB"
        med = statistics.median
        self.results += [
            Result(f"small files: commit ({size})", med(commit), "s", "cp -r", med(cp),
                   target="(info)", samples=commit, note=f"cp -r samples {_rounded(cp)}"),
            Result("small files: commit vs git", med(commit), "s", "git", med(git), 1.0,
                   "<= 1x git", commit,
                   f"git init+add+commit samples {_rounded(git)} (git fsyncs nothing by default)"),
            Result("small files: commit CPU (user+sys) vs git's", med(commit_cpu), "s", "git",
                   med(git_cpu), target="(info: what a loaded machine shares out)",
                   samples=commit_cpu, note=f"git CPU samples {_rounded(git_cpu)}"),
            Result("small files: commit vs git+fsync", med(commit), "s", "git+fsync",
                   med(git_sync), target="(info: same durability)", samples=git_sync,
                   note="git -c core.fsync=added,reference -c core.fsyncMethod=batch"),
            Result("small files: status, first after commit", med(first_status), "s",
                   target="(info)", samples=first_status,
                   note=f"re-hashed {_rounded(hashed_first)} racy file(s)"),
            Result("small files: status, no-op", med(mvc_status), "s", "git status",
                   med(git_status), target="(info)", samples=mvc_status,
                   note=f"git status samples {_rounded(git_status)}"),
            Result("small files: commit, no-op", med(noop), "s", limit=1.0,
                   target="< 1 s", samples=noop),
        ]  # fmt: skip
        remove(self.runs)


def _rounded(values: list[float] | list[int]) -> str:
    return "[" + ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values) + "]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=DEFAULT_DIR, help=f"data and scratch ({DEFAULT_DIR})")
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    parser.add_argument("--mvc", default=None, help="the mvc executable (default: on PATH)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args()
    import shutil

    runner = Runner(args.mvc or shutil.which("mvc") or "mvc", verbose=not args.quiet)
    base = os.path.abspath(args.dir)
    os.makedirs(base, exist_ok=True)
    bench = SmallFiles(runner, base, args.reps)
    env = environment(runner, base)
    # Warm up: Python's bytecode cache, as for an installed package.
    warm_store = os.path.join(bench.runs, "warm")
    os.makedirs(warm_store)
    runner.run([runner.mvc, "init", warm_store])
    runner.mvc_run(warm_store, "commit", bench.folder, "--model", "warm", "-m", "warm")
    runner.mvc_run(warm_store, "status")
    started = time.time()
    bench.run()
    print_report(env, started, bench.results, as_json=args.json)


if __name__ == "__main__":
    main()
