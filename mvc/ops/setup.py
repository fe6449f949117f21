"""``init``: create a store, and keep it out of git."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from mvc.jsonshape import JsonShaped, Shape
from mvc.ops.gitinfo import git_work_tree
from mvc.repo import STORE_DIR, Repo


@dataclass
class InitResult(JsonShaped):
    store_dir: str
    gitignore: str | None

    json_shape: ClassVar[Shape] = Shape(rename={"store_dir": "store"})


def init_store(path: str) -> InitResult:
    repo = Repo.init(path)
    top = git_work_tree(repo.root)
    gitignore = _ignore_in_git(top, repo.store_dir) if top else None
    return InitResult(repo.store_dir, gitignore)


def _ignore_in_git(top: str, store_dir: str) -> str | None:
    """Add the store to the work tree's top .gitignore (once)."""
    rel = os.path.relpath(store_dir, top).replace(os.sep, "/")
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
        handle.write(f"# the mvc model store\n{pattern}\n")
    return path
