"""A storage decorator: the keys of another storage below a fixed prefix.

Remote-tracking refs use it to live inside the local store (``remotes/<name>/...``) with the
same ``RefStore`` code as local refs. Every key still reaches the inner storage, which validates it.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from mvc.storage.base import Buffer, Storage, StorageBase, validate_key


class PrefixedStorage(StorageBase):
    """A view of a storage below a key prefix (remote-tracking refs in the local store). It
    declares no capability: ref logs need none."""

    def __init__(self, inner: Storage, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix
        self.url = f"{inner.url}/{prefix}"
        self.atomic_create = inner.atomic_create

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{validate_key(key)}"

    def _folder(self, prefix: str) -> str:
        return f"{self.prefix}/{prefix}" if prefix else self.prefix

    def read(self, key: str) -> bytes:
        return self.inner.read(self._key(key))

    def open_read(self, key: str) -> BinaryIO:
        return self.inner.open_read(self._key(key))

    def write(self, key: str, parts: Iterable[Buffer]) -> None:
        self.inner.write(self._key(key), parts)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        return self.inner.create_exclusive(self._key(key), data)

    def exists(self, key: str) -> bool:
        return self.inner.exists(self._key(key))

    def size(self, key: str) -> int:
        return self.inner.size(self._key(key))

    def list(self, prefix: str) -> builtins.list[str]:
        return self.inner.list(self._folder(prefix))

    def walk(self, prefix: str) -> Iterator[str]:
        cut = len(self.prefix) + 1
        for key in self.inner.walk(self._folder(prefix)):
            yield key[cut:]

    def delete(self, key: str) -> None:
        self.inner.delete(self._key(key))

    def age_seconds(self, key: str) -> float:
        return self.inner.age_seconds(self._key(key))

    def local_path(self, key: str) -> str | None:
        return self.inner.local_path(self._key(key))
