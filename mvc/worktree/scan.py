"""Scanning a model folder (or a single file): which files, and their stat facts.

Only regular files are versioned. A symlink is followed only when it stays inside the folder
(or when the caller asks to follow every link); one that points outside is refused, so a
version never captures files it was not given.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from mvc.errors import InvalidInput, NotFound
from mvc.paths import check_twins
from mvc.worktree.ignore import Matcher, load_ignore
from mvc.worktree.materialise import TEMP_PREFIX, remove_if_stale_temp
from mvc.worktree.paths import validate_version_path


@dataclass(frozen=True)
class FileStat:
    """What the stat cache keys on: more than size and mtime, so a copy never looks unchanged."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int
    executable: bool

    @classmethod
    def of(cls, info: os.stat_result) -> FileStat:
        return cls(
            info.st_size,
            info.st_mtime_ns,
            info.st_ctime_ns,
            info.st_ino,
            info.st_dev,
            bool(info.st_mode & stat.S_IXUSR),
        )


@dataclass(frozen=True)
class ScannedFile:
    rel: str  # path inside the version
    path: str  # where to read it
    stat: FileStat


def scan(target: str, *, follow_symlinks: bool = False) -> dict[str, ScannedFile]:
    """Files of a folder (or the one file) keyed by their path inside the version."""
    target = os.path.abspath(target)
    try:
        info = os.stat(target)
    except FileNotFoundError as exc:
        raise NotFound(f"{target} does not exist") from exc
    if stat.S_ISREG(info.st_mode):
        rel = os.path.basename(target)
        return {rel: ScannedFile(validate_version_path(rel), target, FileStat.of(info))}
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidInput(f"{target} is neither a file nor a folder")
    return _scan_folder(target, load_ignore(target), follow_symlinks)


def _scan_folder(root: str, ignored: Matcher, follow_symlinks: bool) -> dict[str, ScannedFile]:
    found: dict[str, ScannedFile] = {}
    real_root = os.path.realpath(root)
    stack = [""]
    while stack:
        prefix = stack.pop()
        folder = os.path.join(root, prefix) if prefix else root
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = f"{prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    if not ignored(rel + "/"):
                        stack.append(rel + "/")
                    continue
                if entry.name.startswith(TEMP_PREFIX):
                    remove_if_stale_temp(entry.path)  # left by a killed checkout
                    continue  # a checkout's temp file is never model content
                if ignored(rel):
                    continue
                found_file = _file_entry(root, real_root, rel, entry, follow_symlinks)
                if found_file:
                    found[found_file.rel] = found_file
    check_twins(found)  # one file on macOS and Windows
    return dict(sorted(found.items()))


def _file_entry(
    root: str, real_root: str, rel: str, entry: os.DirEntry[str], follow: bool
) -> ScannedFile | None:
    validate_version_path(rel)
    if entry.is_symlink():
        resolved = os.path.realpath(entry.path)
        inside = resolved == real_root or resolved.startswith(real_root + os.sep)
        if not (inside or follow):
            raise InvalidInput(
                f"{rel} is a symlink to {resolved}, outside {root}",
                hint="pass --follow-symlinks to store what it points to, or add it to .mvcignore",
            )
        try:
            info = os.stat(entry.path)
        except FileNotFoundError as exc:
            raise InvalidInput(
                f"{rel} is a dangling symlink", hint="remove it or add it to .mvcignore"
            ) from exc
        if stat.S_ISDIR(info.st_mode):
            raise InvalidInput(f"{rel} is a symlink to a folder", hint="add it to .mvcignore")
        return ScannedFile(rel, entry.path, FileStat.of(info))
    info = entry.stat(follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode):
        return None  # sockets, fifos, devices: never model content
    return ScannedFile(rel, entry.path, FileStat.of(info))
