"""A storage in a local folder: the one place that writes a store's files.

Every write is temp-file-beside-target, fsync, rename (then fsync of the folder), so a crash
leaves the old value or the new one, never a torn file. ``create_exclusive`` links a complete
temp file into place, which fails if the name exists: create-if-absent with full content.
"""

from __future__ import annotations

import builtins
import errno
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from mvc.errors import InvalidInput, MvcError, NotFound
from mvc.storage.base import Buffer, validate_key

TMP_PREFIX = ".tmp-"


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_error(exc: OSError, what: str) -> MvcError:
    if exc.errno == errno.ENOSPC:
        return MvcError(
            f"disk full while writing {what}", hint="free space, then run the command again"
        )
    return MvcError(f"cannot write {what}: {exc.strerror or exc}")


class LocalStorage:
    """Storage rooted at a local folder."""

    atomic_create = True

    def __init__(self, root: str, *, fsync: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.url = self.root
        self.fsync = fsync

    def path(self, key: str) -> str:
        return os.path.join(self.root, *validate_key(key).split("/"))

    def read(self, key: str) -> bytes:
        try:
            with open(self.path(key), "rb") as handle:
                return handle.read()
        except FileNotFoundError as exc:
            raise NotFound(f"{key} not found in {self.url}") from exc

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"{key} not found in {self.url}") from exc

    def _write_temp(self, target: str, parts: Iterable[Buffer]) -> str:
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        temp = os.path.join(folder, f"{TMP_PREFIX}{secrets.token_hex(8)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as handle:
                for part in parts:
                    handle.write(part)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
        except BaseException:
            _unlink_quietly(temp)
            raise
        return temp

    def write(self, key: str, parts: Iterable[Buffer]) -> None:
        target = self.path(key)
        try:
            temp = self._write_temp(target, parts)
            try:
                os.replace(temp, target)
            except BaseException:
                _unlink_quietly(temp)
                raise
        except OSError as exc:
            raise _disk_error(exc, key) from exc
        if self.fsync:
            _fsync_dir(os.path.dirname(target))

    def create_exclusive(self, key: str, data: bytes) -> bool:
        target = self.path(key)
        try:
            temp = self._write_temp(target, [data])
        except OSError as exc:
            raise _disk_error(exc, key) from exc
        try:
            os.link(temp, target)
        except FileExistsError:
            return False
        except OSError as exc:
            raise _disk_error(exc, key) from exc
        finally:
            _unlink_quietly(temp)
        if self.fsync:
            _fsync_dir(os.path.dirname(target))
        return True

    def exists(self, key: str) -> bool:
        return os.path.exists(self.path(key))

    def size(self, key: str) -> int:
        try:
            return os.stat(self.path(key)).st_size
        except FileNotFoundError as exc:
            raise NotFound(f"{key} not found in {self.url}") from exc

    def list(self, prefix: str) -> builtins.list[str]:
        folder = self.path(prefix) if prefix else self.root
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(name for name in names if _listable(name))

    def walk(self, prefix: str) -> Iterator[str]:
        base = self.path(prefix) if prefix else self.root
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            rel = os.path.relpath(folder, self.root).replace(os.sep, "/")
            dirs[:] = [d for d in dirs if _listable(d)]
            for name in sorted(files):
                if _listable(name):
                    yield name if rel == "." else f"{rel}/{name}"

    def delete(self, key: str) -> None:
        _unlink_quietly(self.path(key))

    def age_seconds(self, key: str) -> float:
        try:
            return time.time() - os.stat(self.path(key)).st_mtime
        except FileNotFoundError as exc:
            raise NotFound(f"{key} not found in {self.url}") from exc

    def local_path(self, key: str) -> str | None:
        return self.path(key)

    def stale_temp_files(self, older_than: float) -> builtins.list[str]:
        """Temp files left by killed writers, for gc to remove."""
        found = []
        now = time.time()
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TMP_PREFIX):
                    full = os.path.join(folder, name)
                    try:
                        if now - os.stat(full).st_mtime > older_than:
                            found.append(full)
                    except FileNotFoundError:
                        continue
        return found


def _listable(name: str) -> bool:
    """Temp files and names no key could have are never listed (nor ever followed)."""
    if name.startswith(TMP_PREFIX):
        return False
    try:
        validate_key(name)
    except InvalidInput:
        return False
    return True


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
