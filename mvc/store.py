"""The object store: content-addressed, write-once, verified objects on a storage.

Objects live at ``objects/<2 hex>/<62 hex>`` as envelopes (see ``codec``). Every read is
hashed and compared with the id; a mismatch is ``CorruptObject``, never wrong bytes. Writing an
object that already exists is a no-op, which makes interrupted work safe to run again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from mvc import codec
from mvc.errors import CorruptObject, NotFound
from mvc.ids import ObjectId, hash_bytes, is_object_id
from mvc.objects import (
    FileManifest,
    Tree,
    Version,
    decode_file_manifest,
    decode_meta,
    decode_tree,
    decode_version,
    encode_object,
)
from mvc.storage.base import Buffer, Storage

OBJECTS = "objects"
_META_CACHE = 4096


def object_key(oid: str) -> str:
    return f"{OBJECTS}/{oid[:2]}/{oid[2:]}"


class ObjectStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._meta_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()

    # --- presence -----------------------------------------------------------------------------

    def has(self, oid: str) -> bool:
        return self.storage.exists(object_key(oid))

    def has_file(self, manifest_id: str) -> bool:
        """Whether a file manifest and every chunk it names are present."""
        if not self.has(manifest_id):
            return False
        try:
            manifest = self.get_manifest(manifest_id)
        except (NotFound, CorruptObject):
            return False
        return all(self.has(ref.id) for ref in manifest.chunks)

    def iter_ids(self) -> Iterator[ObjectId]:
        for fan in self.storage.list(OBJECTS):
            if len(fan) != 2:
                continue
            for rest in self.storage.list(f"{OBJECTS}/{fan}"):
                if is_object_id(fan + rest):
                    yield ObjectId(fan + rest)

    def ids_with_prefix(self, prefix: str) -> list[ObjectId]:
        if len(prefix) < 2:
            return [oid for oid in self.iter_ids() if oid.startswith(prefix)]
        return [
            ObjectId(prefix[:2] + rest)
            for rest in self.storage.list(f"{OBJECTS}/{prefix[:2]}")
            if (prefix[:2] + rest).startswith(prefix) and is_object_id(prefix[:2] + rest)
        ]

    # --- writing ------------------------------------------------------------------------------

    def put_bytes(
        self,
        data: Buffer,
        *,
        oid: ObjectId | None = None,
        elem_width: int | None = None,
        compress: bool = False,
    ) -> ObjectId:
        """Store a chunk (or any bytes); returns its id. Skips the write if already present."""
        oid = oid or hash_bytes(data)
        if not self.has(oid):
            self.storage.write(
                object_key(oid), codec.encode(data, elem_width=elem_width, compress=compress)
            )
        return oid

    def put_meta(self, obj: FileManifest | Tree | Version | dict[str, Any]) -> ObjectId:
        data = encode_object(obj)
        oid = hash_bytes(data)
        if not self.has(oid):
            self.storage.write(object_key(oid), codec.encode(data, compress=True, meta=True))
        return oid

    def write_stored(self, oid: ObjectId, stored: bytes, *, verify: bool = True) -> None:
        """Store an envelope received from elsewhere, after checking it decodes to ``oid``."""
        if verify:
            self.decode_stored(oid, stored)
        self.storage.write(object_key(oid), [stored])

    def replace_encoding(self, oid: ObjectId, stored: list[Buffer]) -> None:
        """Re-encode an existing object (repack). The caller has checked the bytes decode to oid."""
        self.storage.write(object_key(oid), stored)

    def delete(self, oid: ObjectId) -> None:
        self.storage.delete(object_key(oid))
        self._meta_cache.pop(oid, None)

    # --- reading ------------------------------------------------------------------------------

    def read_stored(self, oid: str) -> bytes:
        try:
            return self.storage.read(object_key(oid))
        except NotFound as exc:
            raise NotFound(
                f"object {oid[:12]} is missing from {self.storage.url}",
                hint="run `mvc fsck`; `mvc pull` can fetch it from a remote that has it",
            ) from exc

    def decode_stored(self, oid: str, stored: bytes) -> bytes:
        try:
            data = codec.decode(stored, self.get_bytes)
        except CorruptObject as exc:
            raise CorruptObject(
                f"object {oid[:12]} is corrupt: {exc.message}", object_id=oid
            ) from exc
        if hash_bytes(data) != oid:
            raise CorruptObject(
                f"object {oid[:12]} is corrupt: its content does not hash to its id", object_id=oid
            )
        return data

    def get_bytes(self, oid: str) -> bytes:
        """The verified bytes of an object."""
        return self.decode_stored(oid, self.read_stored(oid))

    def get_meta(self, oid: str) -> dict[str, Any]:
        cached = self._meta_cache.get(oid)
        if cached is not None:
            self._meta_cache.move_to_end(oid)
            return cached
        value = decode_meta(self.get_bytes(oid), oid)
        self._meta_cache[oid] = value
        if len(self._meta_cache) > _META_CACHE:
            self._meta_cache.popitem(last=False)
        return value

    def _typed(self, oid: str, expected: str) -> dict[str, Any]:
        value = self.get_meta(oid)
        if value["type"] != expected:
            raise NotFound(f"object {oid[:12]} is a {value['type']}, not a {expected}")
        return value

    def get_version(self, oid: str) -> Version:
        return decode_version(self._typed(oid, "version"), oid)

    def get_tree(self, oid: str) -> Tree:
        return decode_tree(self._typed(oid, "tree"), oid)

    def get_manifest(self, oid: str) -> FileManifest:
        return decode_file_manifest(self._typed(oid, "file"), oid)

    def iter_file(self, manifest: FileManifest, name: str = "file") -> Iterator[bytes]:
        """A file's bytes chunk by chunk, each verified, and the whole checked at the end."""
        from mvc.ids import new_hasher

        hasher = new_hasher()
        for ref in manifest.chunks:
            data = self.get_bytes(ref.id)
            if len(data) != ref.size:
                raise CorruptObject(
                    f"chunk {ref.id[:12]} of {name} has the wrong size", object_id=ref.id
                )
            hasher.update(data)
            yield data
        if hasher.hexdigest() != manifest.b3:
            raise CorruptObject(f"{name} does not reassemble to its recorded blake3")
