"""A storage in a local folder: the one place that writes a store's files.

Every write is temp-file-beside-target, fsync, rename (then fsync of the folder), so a crash
leaves the old value or the new one, never a torn file. ``create_exclusive`` links a complete
temp file into place, which fails if the name exists: create-if-absent with full content.

``batch()`` keeps that guarantee for many writes at a fraction of the flushes: inside it, writes
land as temp files without fsync; on leaving it every temp file is fsync'd (concurrently, so the
file system can merge the flushes), then renamed, then each folder fsync'd once. A name never
appears before its content is durable; if the block fails, the temp files go away.
"""

from __future__ import annotations

import builtins
import errno
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, TypeVar

from mvc.errors import InvalidInput, MvcError, NotFound
from mvc.faults import crashpoint
from mvc.storage.base import Buffer, StorageBase, validate_key

TMP_PREFIX = ".tmp-"
# Concurrent fsyncs at the end of a batch: the file system merges them into few journal commits.
_FSYNC_WORKERS = 16
# A batch of at least this many files is made durable by one syncfs (see ``_flush``), while at
# most this many bytes of the whole system wait to be written (syncfs waits for them too).
_SYNCFS_MIN_FILES = 64
_SYNCFS_MAX_WAITING = 256 << 20
_SYNC_FILE_RANGE_WRITE = 2
# Below this, a batched write asks for no early writeback: the call costs more than it saves
# (measured: ~0.1 ms each, a quarter of a small object's write), and the batch's fsyncs write
# small files in one go anyway.
_WRITEBACK_MIN = 1 << 20
# copy_file_range cannot serve these file pairs (other file systems, old kernels): copy by hand.
_NO_COPY_RANGE = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}
_T = TypeVar("_T")
#: What sees each slice of a copy on its way (``copy_through``): a hasher's ``update``.
Through = Callable[[memoryview], object]


class _TempNames:
    """Names for temp files: 8 hex digits drawn at random once per process, then a counter
    (16 hex digits in all, the shape gc and exports recognise). One ``getrandom`` per process
    instead of one per object (a commit of 2,000 small files writes 4,000). The random part is
    drawn again in a forked child; two processes that drew the same one collide only on a name
    that ``O_EXCL`` refuses, and that write takes a fully random name instead. (``os.urandom``,
    what ``secrets`` draws from: importing ``secrets`` loads OpenSSL, 4 ms of start-up.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._tag = ""
        self._count = 0

    def next(self) -> str:
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._tag, self._count = os.getpid(), os.urandom(4).hex(), 0
            self._count = (self._count + 1) & 0xFFFFFFFF
            return f"{TMP_PREFIX}{self._tag}{self._count:08x}"


_TEMP_NAMES = _TempNames()


def fsync_folder(path: str) -> None:
    """Make a folder's entries (names made, renamed or removed in it) durable; a folder that
    cannot be opened or flushed (gone, or a file system without directory fsync) is skipped."""
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


#: The most bytes one ``write`` call hands the kernel. Measured here (ext4 in a VM, 1 GiB from
#: memory into the page cache): 256 KiB calls took 0.20-0.26 s, 1 MiB calls 0.8-2.4 s and 16 MiB
#: calls 0.8-2.7 s; ``cp`` took 0.25 s. Small calls keep the copy in the CPU's caches.
WRITE_SLICE = 256 << 10


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Ask the kernel to start writing a file's dirty pages now (Linux ``sync_file_range``),
    so a later fsync finds them written: the disk works while we hash. Only a hint: no
    durability is claimed from it, and it does nothing where the call does not exist."""
    call = _sync_file_range()
    if call is not None:
        call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def preallocate(fd: int, size: int) -> None:
    """Give an open, empty file ``size`` bytes of disk at once (Linux ``fallocate``): the file
    system then maps its blocks in one go instead of page by page as they are written (a
    1 GiB copy into the file costs ~15% less CPU), and a full disk fails here, before anything
    is copied. The file reads as zeros until written. Does nothing where the call or the file
    system does not support it."""
    call = _fallocate()
    if call is not None and size > 0:
        call(fd, size)


@functools.cache
def _fallocate() -> Callable[[int, int], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        # fallocate64 takes 64-bit offsets everywhere; plain fallocate's are off_t, 32 bits
        # on 32-bit glibc (where the declaration below would pass the wrong arguments).
        raw = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError):
        return None
    raw.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    raw.restype = ctypes.c_int

    def call(fd: int, size: int) -> None:
        if raw(fd, 0, 0, size) != 0:
            code = ctypes.get_errno()
            if code not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EINTR):
                raise OSError(code, os.strerror(code))

    return call


def copy_range(src: int, dst: int, src_offset: int, dst_offset: int, length: int) -> None:
    """Copy ``length`` bytes between open files at the given offsets, in the kernel where it can
    (``copy_file_range``), else through a buffer. Raises if the source ends early."""
    done = 0
    if hasattr(os, "copy_file_range"):
        try:
            while done < length:
                count = os.copy_file_range(
                    src, dst, length - done, src_offset + done, dst_offset + done
                )
                if count == 0:
                    break
                done += count
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE or done:
                raise
    while done < length:
        data = os.pread(src, min(length - done, 8 << 20), src_offset + done)
        if not data:
            raise MvcError("a file shrank while it was being copied", hint="run the command again")
        view = memoryview(data)
        while view:
            written = os.pwrite(dst, view, dst_offset + done)
            view = view[written:]
            done += written


def copy_through(
    src: int, dst: int, src_offset: int, dst_offset: int, length: int, through: Through
) -> None:
    """Copy ``length`` bytes between open files through one small buffer: each slice is read,
    handed to ``through`` (a hasher's ``update``), then written from that same buffer, so what
    ``through`` saw is exactly what was written. Raises if the source ends early.

    Measured against ``copy_file_range`` followed by hashing the landed copy mapped (1 GiB of
    16 MiB objects, one thread): 0.40-0.43 s of CPU instead of 0.51 s. The slice is hashed
    while it is in the CPU's cache; the mapped copy was hashed from memory, with a page fault
    per 16 pages and an unmap per object."""
    buffer = bytearray(min(WRITE_SLICE, max(length, 1)))
    view = memoryview(buffer)
    done = 0
    while done < length:
        count = os.preadv(src, [view[: min(len(buffer), length - done)]], src_offset + done)
        if count == 0:
            raise MvcError("a file shrank while it was being copied", hint="run the command again")
        through(view[:count])
        written = 0
        while written < count:
            written += os.pwrite(dst, view[written:count], dst_offset + done + written)
        done += count


def _write_all(fd: int, parts: Iterable[Buffer]) -> int:
    """Write every part to ``fd`` at its position, in one ``writev`` where the kernel takes it
    all (a small object: header and data in one call); returns the bytes written."""
    views = [memoryview(part).cast("B") for part in parts]
    total = sum(len(view) for view in views)
    done = os.writev(fd, views) if views and total <= WRITE_SLICE else 0
    if done < total:  # a partial write (a large object): write on from where it stopped
        for view in views:
            if done >= len(view):
                done -= len(view)
                continue
            rest = view[done:]
            while rest:
                rest = rest[os.write(fd, rest[:WRITE_SLICE]) :]
            done = 0
    return total


def _each(call: Callable[[str], None], paths: list[str]) -> None:
    """``call`` on every path, on up to ``_FSYNC_WORKERS`` threads (each a slice of the list:
    one task per thread, not one per path), so the file system can merge their flushes."""
    workers = min(_FSYNC_WORKERS, len(paths))
    if workers <= 1:
        for path in paths:
            call(path)
        return
    from concurrent.futures import ThreadPoolExecutor

    def run(part: list[str]) -> None:
        for path in part:
            call(path)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, [paths[start::workers] for start in range(workers)]))


@functools.cache
def _syncfs_call() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int
    return call


def _syncfs_affordable() -> bool:
    """Whether one ``syncfs`` is the cheap way to make a batch durable: the call exists (Linux)
    and the system's dirty and in-flight pages, which it would wait for too, are few."""
    if _syncfs_call() is None:
        return False
    try:
        with open("/proc/meminfo", "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    waiting = sum(
        int(line.split()[1]) * 1024 for line in lines if line.startswith((b"Dirty:", b"Writeback:"))
    )
    return waiting <= _SYNCFS_MAX_WAITING


def _one_file_system(root: str, items: list[tuple[str, str]]) -> bool:
    """Whether every target and temp file of a batch lives on the root's file system, so one
    ``syncfs`` of the root makes them all durable (``objects/`` may be a symlink or a mount)."""
    try:
        device = os.stat(root).st_dev
        folders = {os.path.dirname(p) for pair in items for p in pair}
        return all(os.stat(folder).st_dev == device for folder in folders)
    except OSError:
        return False


def _syncfs(path: str) -> None:
    """Every dirty page and inode of the file system holding ``path``, written and flushed to
    the device (Linux ``syncfs``; it waits for completion and reports write-back errors)."""
    call = _syncfs_call()
    if call is None:
        raise OSError(errno.ENOSYS, "syncfs is not available")
    fd = os.open(path, os.O_RDONLY)
    try:
        if call(fd) != 0:
            import ctypes

            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_error(exc: OSError, what: str, root: str = "") -> MvcError:
    where = f" in {root}" if root else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return MvcError(
            f"disk full while writing {what}{where}",
            hint="free space, then run the command again",
        )
    if exc.errno == errno.EROFS:
        return MvcError(
            f"cannot write {what}{where}: the file system is read-only",
            hint="read commands (log, show, cat, fsck) still work; write commands need a "
            "writable store",
        )
    return MvcError(f"cannot write {what}{where}: {exc.strerror or exc}")


class LocalStorage(StorageBase):
    """Storage rooted at a local folder: every capability of ``StorageBase``."""

    atomic_create = True

    def __init__(self, root: str, *, fsync: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.url = self.root
        self.fsync = fsync
        self._pending: dict[str, str] | None = None  # target -> temp, while a batch is open
        # target -> temp of writes a flush has taken out of the batch but not yet renamed:
        # other threads still read them there (a push verifying a delta whose base is in
        # the round being made durable).
        self._flushing: dict[str, str] = {}
        self._pending_lock = threading.Lock()
        self._folders: set[str] = set()  # folders known to exist (made or seen by this writer)
        self._stages: dict[str, str] = {}  # folder -> where its batched writes' temp files go

    def path(self, key: str) -> str:
        return os.path.join(self.root, *validate_key(key).split("/"))

    def _readable(self, key: str) -> str:
        """Where a key's bytes are now: its file, or a batched write's temp file."""
        target = self.path(key)
        pending = self._pending
        if pending and target in pending:
            return pending[target]
        return self._flushing.get(target, target)

    def _open(self, key: str) -> BinaryIO:
        """The key's bytes, open. A temp file can go between the lookup and the open: renamed
        into place by a flush, or replaced by a second write of the same key (same id, same
        bytes) on another thread; the lookup is then made again."""
        return self._retrying(key, lambda where: open(where, "rb"))

    def _stat(self, key: str) -> os.stat_result:
        return self._retrying(key, os.stat)

    def _retrying(self, key: str, call: Callable[[str], _T]) -> _T:
        target = self.path(key)
        for _attempt in range(8):
            where = self._readable(key)
            try:
                return call(where)
            except FileNotFoundError:
                if where == target:
                    raise
        return call(target)

    def read(self, key: str) -> bytes:
        try:
            with self._open(key) as handle:
                return handle.read()
        except OSError as exc:
            raise self._read_error(key, exc) from exc

    def read_at_most(self, key: str, limit: int) -> bytes | None:
        """The value, or None (nothing read) when it is longer than ``limit`` bytes."""
        try:
            with self._open(key) as handle:
                if os.fstat(handle.fileno()).st_size > limit:
                    return None
                return handle.read()
        except OSError as exc:
            raise self._read_error(key, exc) from exc

    def open_read(self, key: str) -> BinaryIO:
        try:
            return self._open(key)
        except OSError as exc:
            raise self._read_error(key, exc) from exc

    def _read_error(self, key: str, exc: OSError) -> MvcError:
        """Absent (or a file where a folder should be) is NotFound; anything else names the key."""
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            return NotFound(f"{key} not found in {self.url}")
        return MvcError(
            f"cannot read {key} in {self.url}: {exc.strerror or exc}",
            hint="check the permissions and health of that folder",
        )

    def _write_temp(
        self,
        target: str,
        parts: Iterable[Buffer],
        *,
        sync: bool = True,
        copy: tuple[int, int, int] | None = None,
        check: Callable[[int], None] | None = None,
        staged: bool = False,
        through: Through | None = None,
    ) -> str:
        folder = os.path.dirname(target)
        if folder not in self._folders:  # a fan-out folder is made once, not once per object
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        temp_folder = self._stage_folder(folder) if staged else folder
        temp = os.path.join(temp_folder, _TEMP_NAMES.next())
        # Readable too: ``check`` reads back what was written.
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(temp, flags, 0o644)
        except FileNotFoundError:
            self._folders.discard(folder)  # removed behind our back (gc of an empty folder)
            os.makedirs(folder, exist_ok=True)
            fd = os.open(temp, flags, 0o644)
        except FileExistsError:  # another process drew the same random part
            temp = os.path.join(temp_folder, f"{TMP_PREFIX}{os.urandom(8).hex()}")
            fd = os.open(temp, flags, 0o644)
        try:
            try:
                written = _write_all(fd, parts)
                if copy is not None:
                    if through is not None:
                        copy_through(copy[0], fd, copy[1], written, copy[2], through)
                    else:
                        copy_range(copy[0], fd, copy[1], written, copy[2])
                    written += copy[2]
                if check is not None:
                    check(fd)  # before any flush to disk: a refusal costs none
                if self.fsync and sync:
                    os.fsync(fd)
                elif self.fsync and written >= _WRITEBACK_MIN:
                    start_writeback(fd)  # the batch's fsync will find it written
            finally:
                os.close(fd)
        except BaseException:
            _unlink_quietly(temp)
            raise
        return temp

    def _stage_folder(self, folder: str) -> str:
        """Where a batched write's temp file goes: the folder above its target's (for
        ``objects/ab/…``, ``objects/``), never above the root, and only on the same file system.

        One folder for a whole batch's new files, not one per fan-out folder: a file system
        places a new file's inode near its folder's, and the fan-out folders are spread over
        the disk; creating thousands of files in one folder is many times cheaper (measured on
        ext4: 4,000 small files 0.15-0.3 s instead of 3-10 s). The rename into the fan-out
        folder is as atomic as one within it.
        """
        stage = self._stages.get(folder)
        if stage is None:
            stage = os.path.dirname(folder) if folder != self.root else folder
            if os.stat(stage).st_dev != os.stat(folder).st_dev:
                stage = folder  # a fan-out folder on another disk: rename cannot cross
            self._stages[folder] = stage
        return stage

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Writes inside become durable and visible together, when the block ends (see above).

        Meant for one writer's burst of new objects (a commit); reads and ``exists`` see the
        pending writes. A nested ``batch`` joins the open one.
        """
        if self._pending is not None:
            yield
            return
        # Staged even without fsync: a block that fails (a file changed while it was read)
        # must leave no object under its final name.
        self._pending = {}
        try:
            yield
        except BaseException:
            pending, self._pending = self._pending, None
            for temp in pending.values():
                _unlink_quietly(temp)
            raise
        self._flush_taken(keep_open=False)

    def flush_pending(self) -> None:
        """Make the batch's writes so far durable and visible, keeping the batch open.

        Writes enter the batch when they complete, and callers write an object only after what
        it refers to, so what is pending at any moment is closed under reference.
        """
        if self._pending is None:
            return
        self._flush_taken(keep_open=True)

    def _flush_taken(self, *, keep_open: bool) -> None:
        """Take the batch's writes out of it and ``_flush`` them, while other threads still find
        each one (in ``_flushing``, listed before the batch forgets it)."""
        with self._pending_lock:
            assert self._pending is not None
            self._flushing.update(self._pending)
            pending, self._pending = self._pending, ({} if keep_open else None)
        try:
            self._flush(pending)
        finally:
            with self._pending_lock:
                for target, temp in pending.items():
                    if self._flushing.get(target) == temp:
                        del self._flushing[target]

    def _flush(self, pending: dict[str, str]) -> None:
        if not pending:
            return
        # In the order the writes were made: callers write children before parents (chunks,
        # then manifests, then trees), so a crash part-way through the renames never leaves an
        # object visible without what it refers to.
        items = list(pending.items())
        # Many files at once (a folder of small files): one syncfs makes them all durable, where
        # an fsync each costs a device flush each (4,000 small objects: 0.1-0.2 s instead of
        # 0.5-0.8 s, and no CPU). Only while little else waits to be written, since syncfs
        # writes that too.
        whole = (
            self.fsync
            and len(items) >= _SYNCFS_MIN_FILES
            and _syncfs_affordable()
            and _one_file_system(self.root, items)
        )
        try:
            if whole:
                _syncfs(self.root)
            elif self.fsync:
                _each(_fsync_file, [temp for _target, temp in items])
            for done, (target, temp) in enumerate(items):
                try:
                    os.replace(temp, target)
                    crashpoint("storage.batch-rename")
                except BaseException:
                    for _target, left in items[done:]:
                        _unlink_quietly(left)
                    raise
        except OSError as exc:
            for _target, temp in items:
                _unlink_quietly(temp)
            raise _disk_error(exc, f"{len(items)} objects", self.root) from exc
        if whole:  # the new names, and the temp names gone: durable before any ref names them
            try:
                _syncfs(self.root)
            except OSError as exc:
                raise _disk_error(exc, f"{len(items)} objects", self.root) from exc
        elif self.fsync:
            _each(
                fsync_folder,
                sorted(
                    {os.path.dirname(target) for target, _temp in items}
                    | {os.path.dirname(temp) for _target, temp in items}
                ),
            )

    def write(self, key: str, parts: Iterable[Buffer]) -> None:
        self._write(key, parts, None)

    def write_from(
        self,
        key: str,
        head: Buffer,
        fd: int,
        offset: int,
        length: int,
        *,
        check: Callable[[int], None] | None = None,
        through: Through | None = None,
    ) -> None:
        """``write(key, [head, <length bytes of fd at offset>])``, the bytes copied in the kernel
        (``copy_file_range``; a reflink where the file system shares blocks), or with
        ``through``, read in slices that ``through`` sees before each is written
        (``copy_through``: a hasher then hashes exactly the bytes written).

        ``check`` is called with the written temp file (open for reading) before it is made
        durable or given its name; when it raises, the temp file goes away and nothing is
        written: a copy is verified as it landed, whatever happened to its source meanwhile."""
        self._write(key, [head], (fd, offset, length), check, through)

    def _write(
        self,
        key: str,
        parts: Iterable[Buffer],
        copy: tuple[int, int, int] | None,
        check: Callable[[int], None] | None = None,
        through: Through | None = None,
    ) -> None:
        target = self.path(key)
        if self._pending is not None:
            try:
                temp = self._write_temp(
                    target, parts, sync=False, copy=copy, check=check, staged=True, through=through
                )
            except OSError as exc:
                raise _disk_error(exc, key, self.root) from exc
            with self._pending_lock:
                replaced = self._pending.get(target)
                self._pending[target] = temp
            if replaced:
                _unlink_quietly(replaced)
            return
        try:
            temp = self._write_temp(target, parts, copy=copy, check=check, through=through)
            try:
                os.replace(temp, target)
            except BaseException:
                _unlink_quietly(temp)
                raise
        except OSError as exc:
            raise _disk_error(exc, key, self.root) from exc
        if self.fsync:
            fsync_folder(os.path.dirname(target))

    def create_exclusive(self, key: str, data: bytes) -> bool:
        target = self.path(key)
        try:
            temp = self._write_temp(target, [data])
        except OSError as exc:
            raise _disk_error(exc, key, self.root) from exc
        crashpoint("storage.exclusive-temp")
        try:
            os.link(temp, target)
        except FileExistsError:
            return False
        except OSError as exc:
            raise _disk_error(exc, key, self.root) from exc
        finally:
            _unlink_quietly(temp)
        if self.fsync:
            fsync_folder(os.path.dirname(target))
        return True

    def exists(self, key: str) -> bool:
        try:
            self._stat(key)
        except OSError:
            return False
        return True

    def size(self, key: str) -> int:
        try:
            return self._stat(key).st_size
        except OSError as exc:
            raise self._read_error(key, exc) from exc

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

    def local_root(self) -> str:
        return self.root

    def batching(self) -> LocalStorage:
        return self

    def kernel_copy(self) -> LocalStorage:
        return self

    def bounded_reads(self) -> LocalStorage:
        return self

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
