"""Writing versions into users' folders: whole files or nothing, never outside the target.

Files are staged as temp files beside their targets and renamed into place only once every
file of the checkout is staged and verified, so a checkout interrupted (or refused for a corrupt
object) while staging leaves the folder as it was. The final removals and renames are quick but
not atomic as a whole: interrupted there, the folder holds a mix of old and new files, each one
whole, and `mvc status` shows which. A rename replaces a path without following a symlink, and
``safe_target`` refuses symlinked folders on the way.

A temp file is named ``.mvc-tmp-PID-HEX`` after the process writing it. One left by a killed
process is removed by the next scan of its folder (status, commit, checkout); one whose process
still runs is left alone. Scans never version either.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mvc.errors import InvalidInput, MvcError, environment_error, is_environment_error
from mvc.faults import crashpoint
from mvc.storage.local import fsync_folder
from mvc.worktree.paths import safe_target

TEMP_PREFIX = ".mvc-tmp-"
# The names ``Staging`` gives its temp files (older versions wrote no process id).
_TEMP_NAME = re.compile(rf"^{re.escape(TEMP_PREFIX)}(?:(\d+)-)?[0-9a-f]{{12}}$")


def remove_if_stale_temp(path: str) -> bool:
    """Remove ``path`` if it is a checkout's temp file whose process is gone; whether it was."""
    match = _TEMP_NAME.match(os.path.basename(path))
    if not match or (match.group(1) and _running(int(match.group(1)))):
        return False
    try:
        os.unlink(path)
    except OSError:
        return False  # gone already, or a read-only folder: scans skip it all the same
    return True


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's live process (or no valid id at all)
    return True


@dataclass
class Staging:
    """Temp files waiting to be renamed over their targets."""

    root: str
    fsync: bool = True
    # Tracked files the caller removes before ``commit``: they may stand where a staged file
    # goes (a file "tok" that becomes a folder "tok/", or the other way round).
    removing: frozenset[str] = frozenset()
    staged: list[tuple[str, str]] = field(default_factory=list)  # (temp, final)
    created: list[str] = field(default_factory=list)  # folders made for staged files

    def stage(self, rel: str, chunks: Iterable[bytes | memoryview], executable: bool) -> None:
        def write(fd: int) -> None:
            with os.fdopen(fd, "wb", closefd=False) as handle:
                for chunk in chunks:
                    handle.write(chunk)

        self.stage_with(rel, write, executable)

    def stage_with(self, rel: str, write: Callable[[int], None], executable: bool) -> None:
        """Stage a file whose bytes ``write(fd)`` puts into the open temp file, at any offsets
        and from any thread (``ObjectStore.write_file`` writes chunks in parallel)."""
        try:
            final = safe_target(self.root, rel)
            folder = os.path.dirname(final)
        except InvalidInput:
            if not _cleared_by_removals(self.root, rel, self.removing):
                raise
            # Blocked until the removals: stage in the root, make the folders at commit.
            final = os.path.join(os.path.abspath(self.root), *rel.split("/"))
            folder = os.path.abspath(self.root)
        try:
            self.created.extend(_make_folders(self.root, folder))
            temp = os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(temp, flags, 0o755 if executable else 0o644)
            self.staged.append((temp, final))
            try:
                write(fd)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(temp, 0o755 if executable else 0o644)
        except OSError as exc:
            if not is_environment_error(exc):
                raise
            raise environment_error(exc, final) from exc  # the caller's abort removes temps

    def commit(self) -> None:
        touched: set[str] = set()
        for temp, final in self.staged:
            parent = os.path.dirname(final)
            if os.path.islink(parent) or not os.path.isdir(parent):
                self.created.extend(_make_folders(self.root, parent))  # refuses symlinks
            os.replace(temp, final)
            touched.add(parent)
            crashpoint("checkout.rename")
        if self.fsync:  # the files' names too, not only their bytes: every folder that changed
            touched.update(os.path.dirname(folder) for folder in self.created)
            for folder in sorted(touched, key=len, reverse=True):  # deepest first
                fsync_folder(folder)
        self.staged = []
        self.created = []

    def abort(self) -> None:
        """Remove the temp files and the folders made for them: the target is as it was."""
        for temp, _final in self.staged:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
        for folder in reversed(self.created):
            try:
                os.rmdir(folder)
            except OSError:
                pass  # not empty (someone else's files) or already gone: leave it
        self.staged = []
        self.created = []


def _cleared_by_removals(root: str, rel: str, removing: frozenset[str]) -> bool:
    """Whether what stands in the way of ``rel`` is only tracked files that are being removed."""
    parts = rel.split("/")
    current = os.path.abspath(root)
    for index, part in enumerate(parts):
        current = os.path.join(current, part)
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return True
        here = "/".join(parts[: index + 1])
        last = index == len(parts) - 1
        if stat.S_ISLNK(info.st_mode):
            return False
        if stat.S_ISREG(info.st_mode):
            return last or here in removing  # a file where a folder must go
        if stat.S_ISDIR(info.st_mode) and last:  # a folder where the file must go
            for folder, dirs, files in os.walk(current):
                inside = os.path.relpath(folder, root).replace(os.sep, "/")
                if not files and not dirs:
                    return False  # an empty folder would stay in the way
                if any(os.path.islink(os.path.join(folder, d)) for d in dirs):
                    return False
                if any(f"{inside}/{name}" not in removing for name in files):
                    return False
            return True
        if not stat.S_ISDIR(info.st_mode):
            return False
    return True


def _make_folders(root: str, folder: str) -> list[str]:
    """Create ``folder`` (and ``root``) as needed; returns the folders created, outermost first."""
    created: list[str] = []
    missing: list[str] = []
    current = os.path.abspath(root)
    while not os.path.lexists(current):
        missing.append(current)
        current = os.path.dirname(current)
    for path in reversed(missing):
        os.mkdir(path)
        created.append(path)
    rel = os.path.relpath(folder, root)
    if rel == ".":
        return created
    current = root
    for part in rel.split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise MvcError(f"refusing to write through the symlinked folder {current}")
        if not os.path.isdir(current):
            os.mkdir(current)
            created.append(current)
    return created


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
