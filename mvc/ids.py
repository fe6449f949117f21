"""Object ids: blake3 of uncompressed canonical bytes, as 64 lowercase hex digits."""

from __future__ import annotations

import re
from typing import NewType

import blake3

from mvc.errors import InvalidInput, UsageError

ObjectId = NewType("ObjectId", str)

ID_HEX_LEN = 64
SHORT_LEN = 12
_FULL_ID = re.compile(r"^[0-9a-f]{64}$")
_PREFIX = re.compile(r"^[0-9a-f]{4,64}$")

# blake3 is faster than the disk; multi-threading helps only on big buffers.
_THREADED_ABOVE = 8 << 20


def hash_bytes(data: bytes | bytearray | memoryview) -> ObjectId:
    """The id of a chunk or canonical object: blake3 of exactly these bytes."""
    threads = blake3.blake3.AUTO if len(data) >= _THREADED_ABOVE else 1
    return ObjectId(blake3.blake3(data, max_threads=threads).hexdigest())


def new_hasher() -> blake3.blake3:
    """An incremental blake3 hasher (for whole-file digests built while streaming)."""
    return blake3.blake3(max_threads=blake3.blake3.AUTO)


def single_thread_hasher() -> blake3.blake3:
    """An incremental blake3 hasher on the calling thread only: where the caller's own threads
    already keep the cores busy, a fork-join hash would wait for a preempted helper."""
    return blake3.blake3(max_threads=1)


def is_object_id(text: str) -> bool:
    return bool(_FULL_ID.match(text))


def parse_object_id(text: str) -> ObjectId:
    """Validate a full object id read from disk, a remote or the user."""
    if not _FULL_ID.match(text):
        raise InvalidInput(f"not a valid object id: {text[:80]!r}")
    return ObjectId(text)


def parse_id_prefix(text: str) -> str:
    """Validate a user-given id prefix (at least 4 hex digits)."""
    lowered = text.lower()
    if not _PREFIX.match(lowered):
        raise UsageError(
            f"not a version id prefix: {text!r}", hint="give at least 4 hex digits of the id"
        )
    return lowered


def short(object_id: str) -> str:
    return object_id[:SHORT_LEN]
