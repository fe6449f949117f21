"""``init``: create a store, and keep it (and the working folders bound later) out of git."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from mvc.jsonshape import JsonShaped, Shape
from mvc.ops.gitinfo import git_work_tree
from mvc.repo import STORE_DIR, Repo, find_store_root


@dataclass
class InitResult(JsonShaped):
    store_dir: str
    gitignore: str | None
    inside: str | None = None  # the root of a store this one is inside (said on stderr)

    json_shape: ClassVar[Shape] = Shape(rename={"store_dir": "store"}, exclude=("inside",))


def init_store(path: str) -> InitResult:
    """A new store in ``path``; ``inside`` names the store whose folder holds it, if any (the
    new store then hides that one from every command run below it)."""
    outer = find_store_root(os.path.dirname(os.path.abspath(path)))
    repo = Repo.init(path)
    top = git_work_tree(repo.root)
    gitignore = _ignore_in_git(top, repo.store_dir, "the mvc model store") if top else None
    return InitResult(repo.store_dir, gitignore, outer)


def ignore_folder_in_git(repo: Repo, folder: str) -> str | None:
    """Keep a bound working folder's files out of git (mvc versions them), as ``dvc add`` does:
    its path goes into the top .gitignore of the git work tree holding it (once). Returns the
    .gitignore written, or None (not in a git work tree, or already ignored)."""
    top = git_work_tree(folder) if os.path.isdir(folder) else None
    if top is None or os.path.realpath(folder) == os.path.realpath(top):
        return None
    return _ignore_in_git(top, folder, f"a working folder of the mvc store at {repo.root}")


def _ignore_in_git(top: str, folder: str, why: str) -> str | None:
    """Add a folder to the work tree's top .gitignore (once)."""
    rel = os.path.relpath(os.path.realpath(folder), os.path.realpath(top)).replace(os.sep, "/")
    if rel.startswith("../"):
        return None
    pattern = f"/{rel}/" if rel != STORE_DIR else f"{STORE_DIR}/"
    path = os.path.join(top, ".gitignore")
    try:
        with open(path, encoding="utf-8") as handle:
            existing = handle.read()
    except FileNotFoundError:
        existing = ""
    if any(
        line.strip() in (pattern, pattern.rstrip("/"), f"/{STORE_DIR}/")
        for line in existing.splitlines()
    ):
        return None
    with open(path, "a", encoding="utf-8") as handle:
        if existing and not existing.endswith("\n"):
            handle.write("\n")
        handle.write(f"# {why}\n{pattern}\n")
    return path
