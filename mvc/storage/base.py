"""The storage interface every backend implements, and key validation.

Keys are relative '/'-separated paths. Every key that reaches a backend passes
``validate_key``, so nothing read from a remote or typed by a user can escape the store's root.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol, runtime_checkable

from mvc.errors import InvalidInput

Buffer = bytes | bytearray | memoryview
_SEGMENT = re.compile(r"^[A-Za-z0-9._%+@=-]+$")


def validate_key(key: str) -> str:
    """A safe relative key: no empty, '.', '..' or odd segments, no absolute paths."""
    if not key or len(key) > 1024 or key.startswith("/"):
        raise InvalidInput(f"unsafe storage key {key[:100]!r}")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT.match(segment):
            raise InvalidInput(f"unsafe storage key {key[:100]!r}")
    return key


@runtime_checkable
class Storage(Protocol):
    """A byte store. Implementations: LocalStorage, FsspecStorage (remotes)."""

    #: A human-readable location, for messages (never contains credentials).
    url: str
    #: Whether ``create_exclusive`` is a real create-if-absent on this backend.
    atomic_create: bool

    def read(self, key: str) -> bytes:
        """The whole value; NotFound if absent."""
        ...

    def open_read(self, key: str) -> BinaryIO:
        """A stream over the value; NotFound if absent."""
        ...

    def write(self, key: str, parts: Iterable[Buffer]) -> None:
        """Store the value atomically: readers see the old value, nothing, or all of the new one."""
        ...

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create the key with ``data`` only if absent; False if it already existed."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def list(self, prefix: str) -> builtins.list[str]:
        """Names directly below the folder ``prefix`` ('' for the root); [] if none."""
        ...

    def walk(self, prefix: str) -> Iterator[str]:
        """Every key below ``prefix``, recursively."""
        ...

    def delete(self, key: str) -> None: ...

    def age_seconds(self, key: str) -> float:
        """Seconds since the key was last written (for gc's grace period)."""
        ...

    def local_path(self, key: str) -> str | None:
        """A filesystem path for the key, when the backend is a local folder (fast paths)."""
        ...

    # Capabilities: each answers the storage itself (typed as what it can do) or None. See
    # ``StorageBase``, whose answers are all None.

    def local_root(self) -> str | None:
        """The folder, when this storage is a folder on this machine; else None."""
        ...

    def batching(self) -> BatchingStorage | None: ...

    def kernel_copy(self) -> KernelCopyStorage | None: ...

    def bounded_reads(self) -> BoundedReadStorage | None: ...

    def capped_reads(self) -> CappedReadStorage | None: ...


class StorageBase:
    """What every storage class inherits: the capability queries (``local_path`` among them:
    a file to read an object from directly), each answering None.

    A storage that has a capability overrides its query to return itself. Callers ask
    ``storage.batching()`` (and so on) and use what it returns; they never probe attributes
    by name nor test a storage's class. A wrapper around another storage (a decorator, a
    fault-injecting test storage) inherits these None answers instead of forwarding them:
    a forwarded capability would hand callers the wrapped storage and bypass the wrapper's
    own ``read`` and ``write``. A wrapper that keeps a capability says so by overriding it.
    """

    def local_path(self, key: str) -> str | None:
        validate_key(key)
        return None

    def local_root(self) -> str | None:
        return None

    def batching(self) -> BatchingStorage | None:
        return None

    def kernel_copy(self) -> KernelCopyStorage | None:
        return None

    def bounded_reads(self) -> BoundedReadStorage | None:
        return None

    def capped_reads(self) -> CappedReadStorage | None:
        return self.bounded_reads()  # a read refused at no cost is capped too


# --- capabilities some storages have --------------------------------------------------------------
# A storage returns itself from the matching query in ``StorageBase``; the Protocols state the
# methods the capability brings, so mypy checks the signatures.


@runtime_checkable
class BatchingStorage(Protocol):
    """Many writes made durable together: one round of fsyncs instead of one per value.

    Implementations: LocalStorage. No value written inside ``batch`` is visible before it is
    durable; a block that raises leaves none of its values behind.
    """

    def batch(self) -> AbstractContextManager[None]:
        """Writes inside become durable and visible together when the block ends."""
        ...

    def flush_pending(self) -> None:
        """Inside ``batch``: make the writes so far durable and visible, keeping the batch open."""
        ...


@runtime_checkable
class KernelCopyStorage(Protocol):
    """A value filled from a file descriptor without passing through Python (a local fast path).

    Implementations: LocalStorage (``copy_file_range``, a reflink where the file system shares
    blocks; or, with ``through``, read and written in small slices that a hasher sees).
    """

    def write_from(
        self,
        key: str,
        head: Buffer,
        fd: int,
        offset: int,
        length: int,
        *,
        check: Callable[[int], None] | None = None,
        through: Callable[[memoryview], object] | None = None,
    ) -> None:
        """``write(key, [head, <length bytes of fd at offset>])``, atomically like ``write``;
        with ``through``, the bytes pass through a small buffer that ``through`` sees, slice by
        slice, before each slice is written (a hasher: it hashes exactly what was written).
        ``check(fd)`` runs on the written bytes (an fd open for reading) before they get their
        name, and a check that raises leaves nothing behind."""
        ...


class BoundedReadStorage(Protocol):
    """A read that refuses a too-long value at no cost (a stat of the open file), so callers
    read objects and ref-log entries in one step without fear of a huge planted file.

    Implementations: LocalStorage. (``FsspecStorage.read_at_most`` is bounded too but
    downloads up to the limit first, so the object store asks a remote for the size instead.)
    """

    def read_at_most(self, key: str, limit: int) -> bytes | None:
        """The value, or None (nothing read) when it is longer than ``limit`` bytes."""
        ...


class CappedReadStorage(Protocol):
    """A read that fetches at most ``limit`` + 1 bytes of a value, so a value that must be small
    (a remote's ref-log entry) costs no more than that when it is not.

    Implementations: every storage with ``bounded_reads``; ``FsspecStorage`` (one ranged
    request).
    """

    def read_at_most(self, key: str, limit: int) -> bytes | None:
        """The value, or None when it is longer than ``limit`` bytes."""
        ...
