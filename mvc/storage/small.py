"""Values that must be small (a remote's ref-log entries, its format line), read without
fetching more than a limit: a huge value planted where one should be is refused, never read
whole. ``SmallReads`` is the decorator a remote's ``RefStore`` reads through."""

from __future__ import annotations

from collections.abc import Iterator

from mvc.errors import CorruptObject
from mvc.storage.base import Storage
from mvc.storage.prefixed import PrefixedStorage

#: A remote's ref-log entries (and its format line) are read up to this size: a real entry is
#: a few hundred bytes, so a bigger value is damage, refused without reading it whole.
MAX_LOG_ENTRY = 64 * 1024


def read_small(storage: Storage, key: str, limit: int = MAX_LOG_ENTRY) -> bytes:
    """A value that must be small, read without fetching more than ``limit`` + 1 bytes;
    CorruptObject if it is bigger."""
    capped = storage.capped_reads()  # local and fsspec storages have it; a wrapper does not
    if capped is not None:
        data: bytes | None = capped.read_at_most(key, limit)
    else:
        data = storage.read(key) if storage.size(key) <= limit else None
    if data is None:
        raise CorruptObject(
            f"{key} on {storage.url} is larger than {limit} bytes: not a ref-log entry",
            hint="the remote's ref log is damaged or hostile; repair it there before syncing",
        )
    return data


class SmallReads(PrefixedStorage):
    """A remote's storage for its ref logs: whole-value reads are bounded by ``read_small``."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.prefix = ""
        self.url = inner.url
        self.atomic_create = inner.atomic_create

    def _key(self, key: str) -> str:
        return key

    def _folder(self, prefix: str) -> str:
        return prefix

    def walk(self, prefix: str) -> Iterator[str]:
        return self.inner.walk(prefix)

    def read(self, key: str) -> bytes:
        return read_small(self.inner, key)
