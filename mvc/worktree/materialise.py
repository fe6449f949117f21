"""Writing versions into users' folders: whole files or nothing, never outside the target.

Files are staged as temp files beside their targets and renamed into place only once every
file of the checkout is staged, so an interrupted checkout leaves the folder as it was. A
rename replaces a path without following a symlink, and ``safe_target`` refuses symlinked
folders on the way.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from mvc.errors import MvcError
from mvc.worktree.paths import safe_target

TEMP_PREFIX = ".mvc-tmp-"


@dataclass
class Staging:
    """Temp files waiting to be renamed over their targets."""

    root: str
    fsync: bool = True
    staged: list[tuple[str, str]] = field(default_factory=list)  # (temp, final)

    def stage(self, rel: str, chunks: Iterable[bytes | memoryview], executable: bool) -> None:
        final = safe_target(self.root, rel)
        folder = os.path.dirname(final)
        _make_folders(self.root, folder)
        temp = os.path.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(6)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(temp, flags, 0o755 if executable else 0o644)
        self.staged.append((temp, final))
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(temp, 0o755 if executable else 0o644)

    def commit(self) -> None:
        for temp, final in self.staged:
            os.replace(temp, final)
        self.staged = []

    def abort(self) -> None:
        for temp, _final in self.staged:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
        self.staged = []


def _make_folders(root: str, folder: str) -> None:
    rel = os.path.relpath(folder, root)
    if rel == ".":
        os.makedirs(root, exist_ok=True)
        return
    current = root
    os.makedirs(root, exist_ok=True)
    for part in rel.split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise MvcError(f"refusing to write through the symlinked folder {current}")
        if not os.path.isdir(current):
            os.mkdir(current)


def remove_file(root: str, rel: str) -> None:
    """Remove a tracked file (and folders it leaves empty), never following links."""
    path = safe_target(root, rel)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    folder = os.path.dirname(path)
    root = os.path.abspath(root)
    while folder != root and folder.startswith(root + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            break
        folder = os.path.dirname(folder)
