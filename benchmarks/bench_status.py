"""How much CPU ``mvc status`` costs on a store with one committed model, against its floor.

    python benchmarks/bench_status.py [--reps 15] [--json]

Every line is the best of REPS runs of a fresh process, in CPU seconds (user + system of the
child, from ``resource.getrusage``), so a busy machine moves it less than wall time:

| line | what runs |
|---|---|
| mvc status | the real ``mvc status`` in a store with one committed model (clean) |
| mvc --version | the entry point with no command converted |
| python -c "import typer" | the floor every Typer CLI pays |
| python -c pass | the interpreter itself |
| git status | git in a work tree with the same files |

and where the import time of ``mvc status`` goes (``python -X importtime``, the biggest
top-level packages, cumulative microseconds). Target: mvc status < 0.2 s CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from typing import Any


def cpu(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def make_store(root: str, mvc: str, env: dict[str, str]) -> None:
    folder = os.path.join(root, "models", "bert")
    os.makedirs(folder)
    with open(os.path.join(folder, "model.safetensors"), "wb") as handle:
        header = b'{"w":{"dtype":"F32","shape":[256,256],"data_offsets":[0,262144]}}'
        handle.write(len(header).to_bytes(8, "little") + header + os.urandom(262144))
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump({"hidden_size": 256}, handle)
    for argv in (
        [mvc, "init"],
        [mvc, "config", "set", "user.name", "Bench"],
        [mvc, "commit", "models/bert", "-m", "v1"],
    ):
        subprocess.run(argv, cwd=root, env=env, check=True, capture_output=True)
    git = shutil.which("git")
    if git:
        subprocess.run([git, "init", "-q"], cwd=root, check=True)
        subprocess.run([git, "add", "models"], cwd=root, check=True)


def import_breakdown(mvc_python: str, root: str, env: dict[str, str]) -> dict[str, int]:
    done = subprocess.run(
        [mvc_python, "-X", "importtime", "-m", "mvc", "status"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    found: dict[str, int] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) <= 3:  # top-level and first-level imports
            found[match.group(3)] = int(match.group(1))
    wanted = ("typer", "pydantic", "mvc.cli.main", "mvc.ops.status", "mvc.repo", "yaml", "rich")
    return {name: found[name] for name in wanted if name in found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    mvc = shutil.which("mvc") or sys.exit("mvc is not on PATH")
    with tempfile.TemporaryDirectory(prefix="mvc-bench-status-") as root:
        # An installed mvc has its .pyc files (a wheel's install compiles them); an editable
        # install under PYTHONDONTWRITEBYTECODE=1 would compile every module on every run
        # (~0.15 s of CPU measured). Cache them outside the source tree instead.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(NO_COLOR="1", MVC_NO_PROGRESS="1")
        env["PYTHONPYCACHEPREFIX"] = os.path.join(root, "pycache")
        make_store(root, mvc, env)
        runs: dict[str, list[str]] = {
            "mvc status": [mvc, "status"],
            "mvc --version": [mvc, "--version"],
            'python -c "import typer"': [sys.executable, "-c", "import typer"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        if shutil.which("git"):
            runs["git status"] = ["git", "status", "--short"]
        for argv in runs.values():
            cpu(argv, root, env)  # warm the page cache and .pyc files
        best = {
            name: min(cpu(argv, root, env) for _ in range(args.reps)) for name, argv in runs.items()
        }
        imports = import_breakdown(sys.executable, root, env)
    report: dict[str, Any] = {
        "cpu_seconds": best,
        "status_over_typer": best["mvc status"] / best['python -c "import typer"'],
        "import_us": imports,
        "target": "mvc status < 0.2 s CPU",
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, seconds in best.items():
        print(f"{name:28} {seconds:6.3f} s CPU")
    print(f"{'mvc status / import typer':28} {report['status_over_typer']:6.2f}x")
    print("import time of `mvc status` (cumulative):")
    for name, micros in imports.items():
        print(f"  {name:26} {micros / 1000:6.1f} ms")


if __name__ == "__main__":
    main()
