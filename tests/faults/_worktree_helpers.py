"""Helpers for the hostile-path, resource and export/checkout-safety fault tests.

Plain functions (no fixtures), so each test file states its own setup.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

from mvc.canonical import encode_canonical
from mvc.ids import hash_bytes
from mvc.objects import ChunkRef, FileManifest, Version
from mvc.refnames import branch
from mvc.storage import LocalStorage
from mvc.store import ObjectStore


def deploy(
    cli: Any, make_model: Any, seed: int = 1, *, size: int = 0, mlflow: bool = False
) -> None:
    """bert v1.0.0 committed from models/bert and set as channel prod (one arm, 'stable');
    ``mlflow``: the folder is an MLflow model (it has an ``MLmodel``), as the mlflow export needs."""
    extra: dict[str, Any] = {"big.bin": os.urandom(size)} if size else {}
    if mlflow:
        extra["MLmodel"] = "flavors:\n  python_function: {loader_module: mlflow.pyfunc.model}\n"
    make_model("models/bert", seed=seed, extra=extra)
    cli("commit", "models/bert", "-m", f"seed {seed}")
    cli("tag", "bert", "v1.0.0")
    cli("channel", "set", "bert", "prod", "v1.0.0", "-m", "first")


def files_under(folder: Any) -> dict[str, bytes]:
    out = {}
    for base, _dirs, names in os.walk(folder):
        for name in names:
            full = os.path.join(base, name)
            with open(full, "rb") as handle:
                out[os.path.relpath(full, folder)] = handle.read()
    return out


def plant_version(objects: ObjectStore, paths: list[str], model: str = "evil") -> str:
    """A version (in ``objects``) whose tree names ``paths`` verbatim; honest ids, hostile paths."""
    chunk = objects.put_bytes(b"payload")
    b3 = hash_bytes(b"payload")
    manifest = objects.put_meta(FileManifest(7, b3, "blob", (ChunkRef(chunk, 7),)))
    entry = {"m": manifest, "size": 7, "b3": b3, "kind": "blob", "x": False}
    tree_id = objects.put_meta({"type": "tree", "format": 1, "files": dict.fromkeys(paths, entry)})
    version = Version(model, tree_id, (), "mallory", "2026-01-01T00:00:00Z", "evil")
    return objects.put_meta(version)


def plant_remote_branch(root: Any, paths: list[str], model: str = "evil") -> str:
    """A remote store folder at ``root`` whose ``MODEL@main`` names a tree with ``paths``."""
    version = plant_version(ObjectStore(LocalStorage(str(root))), paths, model)
    entry = {
        "seq": 1,
        "old": None,
        "new": version,
        "who": "mallory",
        "when": "2026-01-01T00:00:00Z",
        "why": "",
    }
    key = f"refs/heads/{model}/main/0000000001"
    path = os.path.join(str(root), *key.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(encode_canonical(entry))
    return version


def plant_local_branch(repo: Any, paths: list[str], model: str = "evil") -> str:
    version = plant_version(repo.objects, paths, model)
    repo.refs.set_if_equals(branch(model, "main"), None, version, "planted")
    return version


def run_killed(
    args: list[str], *, kill_in: str, cwd: Any, dest: Any = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``mvc ARGS`` in a subprocess that SIGKILLs itself part-way through a file write.

    ``kill_in`` is ``"export"`` (writing into ``dest``: after the first chunk of its second model
    file is in a temp file) or ``"checkout"`` (a checkout's staged temp file, after its
    first chunk). Deterministic: the kill happens at that point, not after a sleep.
    """
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        kill_in = {kill_in!r}
        dest = {os.path.abspath(str(dest)) if dest else ""!r}
        if kill_in == "export":
            import mvc.storage.local as local
            original = local.LocalStorage._write_temp
            seen = []

            def write_temp(self, target, parts, **kw):
                if self.root == dest and not target.endswith(".json"):
                    seen.append(target)
                if len(seen) >= 2:
                    def parts_then_kill():
                        for part in parts:
                            yield part
                            break
                        sys.stdout.flush()
                        os.kill(os.getpid(), signal.SIGKILL)
                    return original(self, target, parts_then_kill(), **kw)
                return original(self, target, parts, **kw)

            local.LocalStorage._write_temp = write_temp
        else:
            import mvc.worktree.materialise as materialise
            original = materialise.Staging.stage_with

            def stage_with(self, rel, write, executable):
                def write_then_kill(fd):
                    os.write(fd, b"partial")
                    os.fsync(fd)
                    os.kill(os.getpid(), signal.SIGKILL)
                return original(self, rel, write_then_kill, executable)

            materialise.Staging.stage_with = stage_with
        from mvc.cli.main import run
        sys.argv = ["mvc", *sys.argv[1:]]
        run()
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
