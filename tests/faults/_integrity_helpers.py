"""Helpers for the corruption and concurrency fault tests: stores with a remote, and ways to
reach the object files and ref-log entries a test damages."""

from __future__ import annotations

import pathlib
from typing import Any

from mvc.repo import Repo
from mvc.store import object_key


def commit(cli: Any, make_model: Any, seed: int, folder: str = "models/bert") -> str:
    make_model(folder, seed=seed)
    return str(cli("commit", folder, "-m", f"seed {seed}").stdout.strip())


def object_path(store_dir: pathlib.Path | str, oid: str) -> pathlib.Path:
    """The file of object ``oid`` in the store whose ``.mvc`` (or bare store) is ``store_dir``."""
    return pathlib.Path(store_dir) / object_key(oid)


def data_chunks(repo: Repo, version: str) -> list[str]:
    """The tensor-data chunks of a version (safetensors pieces after the header), sorted."""
    objects = repo.objects
    found: set[str] = set()
    for entry in objects.get_tree(objects.get_version(version).tree).files.values():
        manifest = objects.manifest_of(entry)
        if manifest.kind == "safetensors":
            found.update(c.id for c in manifest.chunks[1:])
    return sorted(found)


def pushed_clone(cli: Any, make_model: Any, tmp_path: pathlib.Path) -> tuple[str, pathlib.Path]:
    """A version committed here and pushed to the folder remote ``tmp_path/remote``, and a
    clone of it (every object pulled) at ``tmp_path/clone``. Returns (version, clone path)."""
    version = commit(cli, make_model, 1)
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "bert")
    clone = tmp_path / "clone"
    cli("clone", f"file://{tmp_path / 'remote'}", clone)
    return version, clone


def fsck_json(cli: Any, store: Any, *args: str, expect: int | None = None) -> dict[str, Any]:
    result = cli("-C", store, "fsck", "--json", *args, expect=expect)
    return dict(result.json())
