"""The object store: content-addressed, write-once, verified objects on a storage.

Objects live at ``objects/<2 hex>/<62 hex>`` as envelopes (see ``codec``). Every read is
hashed and compared with the id (or, for a file written out whole by ``write_file``, with the
blake3 of the file that its verified manifest records, so each byte is hashed once); a
mismatch is ``CorruptObject``, never wrong bytes. Writing an
object that already exists is a no-op, which makes interrupted work safe to run again.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from mvc import codec
from mvc.errors import CorruptObject, NotFound, UnknownFormat, cannot_map
from mvc.ids import ObjectId, hash_bytes, is_object_id, new_hasher, single_thread_hasher
from mvc.objects import (
    FileManifest,
    Tree,
    TreeEntry,
    Version,
    decode_file_manifest,
    decode_meta,
    decode_tree,
    decode_version,
    encode_object,
)
from mvc.storage.base import Buffer, Storage
from mvc.storage.local import WRITE_SLICE, copy_range, preallocate, start_writeback
from mvc.storage.small import read_small

OBJECTS = "objects"
#: A store's format file, at its root (a local ``.mvc/`` or a remote's prefix), names the oldest
#: mvc able to read it. Format 2 adds tree entries that name a one-chunk file's chunk instead of
#: a manifest (``TreeEntry.one_chunk``). A store stays format 1 until it is about to hold such a
#: tree; ``ObjectStore.require_format`` upgrades it then, so an older mvc refuses it by name
#: rather than calling a tree it cannot read corrupt.
FORMAT_FILE = "format"
FORMAT_LINES = {1: "mvc store format 1\n", 2: "mvc store format 2\n"}
NEWEST_FORMAT = max(FORMAT_LINES)


def format_of_line(line: bytes | str) -> int | None:
    """The store format a format file's content names, or None if this mvc does not know it."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    for number, known in FORMAT_LINES.items():
        if text == known:
            return number
    return None


_META_CACHE = 4096
#: Files smaller than this are written out by ``write_file`` on the calling thread.
_PARALLEL_MIN = 8 << 20
#: A raw envelope's header, page padding (codec.PAGE) included, fits in this many bytes.
_RAW_HEAD = 8192
#: Decoded delta bases kept in memory per store: two of the largest chunks (16 MiB), whatever
#: the size of the model, so memory stays bounded while chains that share a base decode it once.
BASE_CACHE = 32 << 20
#: Files ``write_file`` writes from this size up get their disk space at once (``preallocate``).
PREALLOCATE = 1 << 20


def object_key(oid: str) -> str:
    return f"{OBJECTS}/{oid[:2]}/{oid[2:]}"


class BaseCache:
    """Verified bytes of delta bases, least recently used dropped first, at most ``limit``
    bytes in all (an object larger than that is not kept). Shared by the threads of a
    checkout. Objects never change, so an entry is never stale."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = BASE_CACHE if limit is None else limit
        self.size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, oid: str) -> bytes | None:
        with self._lock:
            data = self._items.get(oid)
            if data is not None:
                self._items.move_to_end(oid)
            return data

    def put(self, oid: str, data: bytes) -> None:
        if len(data) > self.limit:
            return
        with self._lock:
            if oid in self._items:
                return
            self._items[oid] = data
            self.size += len(data)
            while self.size > self.limit:
                _old, dropped = self._items.popitem(last=False)
                self.size -= len(dropped)


class ObjectStore:
    # Ids written inside the open batch (set by ``batch``): a second writer of the same bytes
    # (two files with equal content) skips them without a look at a file not under its name yet.
    _batch_written: set[str] | None = None

    def __init__(self, storage: Storage, *, store_format: int | None = None) -> None:
        self.storage = storage
        self._meta_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.bases = BaseCache()
        self._format = store_format  # as read when the store was opened; None: read on demand

    # --- the store's format -------------------------------------------------------------------

    def require_format(self, needed: int) -> None:
        """Upgrade the store's format file to ``needed`` if it names an older format; called
        before an object that needs it (a tree with one-chunk entries) is written. Idempotent:
        concurrent upgraders write the same bytes (atomically)."""
        if self._format is None:
            try:
                line = read_small(self.storage, FORMAT_FILE, 200)
            except NotFound:
                return  # a bare object folder (tests, tools): no store that a reader opens
            self._format = format_of_line(line)
            if self._format is None:
                raise UnknownFormat(
                    f"the store holds format {line[:60]!r}; this mvc will not write to it",
                    hint="upgrade mvc",
                )
        if self._format >= needed:
            return
        self.storage.write(FORMAT_FILE, [FORMAT_LINES[needed].encode()])
        self._format = needed

    # --- presence -----------------------------------------------------------------------------

    def has(self, oid: str) -> bool:
        return self.storage.exists(object_key(oid))

    def has_intact(self, oid: str) -> bool:
        """Whether an object is present *and the right size*: its envelope header parses and
        the file is as long as the header says (a zstd frame, whose length the header does not
        give, is as long as its block headers say). Cheap: a stat and a few small reads; no
        decoding, no hashing (an unchanged file's commit must not re-read the store). Where the storage is not a local folder, presence only.

        A truncated or empty object file counts as absent, so a writer that has the bytes
        writes the object again (atomically replacing the damaged copy)."""
        path = self.storage.local_path(object_key(oid))
        if path is None:
            return self.has(oid)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(fd).st_size
            head = read_envelope_head(fd, size)
            try:
                header, start = codec.read_header(head)
                codec.check_size(header)
                expected = codec.payload_length(header)
                if expected is not None:
                    return size == start + expected
                if size > codec.stored_size_limit(codec.MAX_OBJECT):
                    return False
                frame = codec.zstd_frame_length(lambda at, n: os.pread(fd, n, at), start, size)
                return frame is not None and start + frame == size
            except CorruptObject:
                return False
        finally:
            os.close(fd)

    def has_file(self, entry: TreeEntry) -> bool:
        """Whether a file's manifest (if it has one) and every chunk are present and the
        right size, or written in the open batch (durable with it, before any ref)."""
        if not self._present(entry.manifest):
            return False
        if entry.one_chunk:  # that was the chunk
            return True
        try:
            manifest = self.get_manifest(entry.manifest)
        except (NotFound, CorruptObject):
            return False
        return all(self._present(ref.id) for ref in manifest.chunks)

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

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many writes made durable together when the block ends, where the storage can batch
        (``LocalStorage.batch``: one round of fsyncs instead of one per object); elsewhere each
        write is durable on its own. Either way no object is visible before it is durable."""
        batching = self.storage.batching()
        if self._batch_written is not None:  # nested: joins the open batch
            yield
            return
        self._batch_written = set()
        known_format = self._format
        try:
            with batching.batch() if batching is not None else nullcontext():
                yield
        except BaseException:
            # A failed batch discards what it staged, a format file written by
            # require_format included: forget that upgrade, so a retry writes it again.
            self._format = known_format
            raise
        finally:
            self._batch_written = None  # a failed batch's objects are gone: forget them too

    def flush(self) -> None:
        """Inside ``batch``: make what was written so far durable and visible."""
        batching = self.storage.batching()
        if batching is not None:
            batching.flush_pending()

    def put_bytes(
        self,
        data: Buffer,
        *,
        oid: ObjectId | None = None,
        elem_width: int | None = None,
        compress: bool = False,
        source: tuple[int, int] | None = None,
    ) -> ObjectId:
        """Store a chunk (or any bytes); returns its id. Skips the write if already present.

        ``source`` is (open file descriptor, offset) where ``data`` also lies in a file: a raw
        envelope is then filled by the storage copying from there (``write_from``), in the
        kernel, when the storage can.
        """
        oid = oid or hash_bytes(data)
        self.add_bytes(data, oid, elem_width=elem_width, compress=compress, source=source)
        return oid

    def add_bytes(
        self,
        data: Buffer,
        oid: ObjectId,
        *,
        elem_width: int | None = None,
        compress: bool = False,
        source: tuple[int, int] | None = None,
    ) -> bool:
        """``put_bytes`` for a caller that has hashed ``data`` to ``oid``: True when it was
        written, False when it was present already (intact, or written in this batch)."""
        if self._present(oid):
            return False
        offset = source[1] if source is not None else None
        parts = codec.encode(data, elem_width=elem_width, compress=compress, offset=offset)
        # A raw envelope is [header, data]: the storage can copy data's bytes from source.
        raw = len(parts) == 2 and parts[1] is data
        copier = self.storage.kernel_copy() if source is not None and raw else None
        if copier is not None and source is not None:
            copier.write_from(object_key(oid), parts[0], source[0], source[1], len(data))
        else:
            self.storage.write(object_key(oid), parts)
        self._written(oid)
        return True

    def put_meta(self, obj: FileManifest | Tree | Version | dict[str, Any]) -> ObjectId:
        data = encode_object(obj)
        oid = hash_bytes(data)
        if not self._present(oid):
            self.storage.write(object_key(oid), codec.encode(data, compress=True, meta=True))
            self._written(oid)
        return oid

    def _present(self, oid: str) -> bool:
        written = self._batch_written
        return (written is not None and oid in written) or self.has_intact(oid)

    def _written(self, oid: str) -> None:
        written = self._batch_written
        if written is not None:
            written.add(oid)  # a set's add is atomic: writers on several threads share it

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

    def read_stored(self, oid: str, *, size: int | None = None) -> bytes:
        """An object's stored bytes, read no further than an object of ``size`` decoded bytes
        (default: the largest object there is) can take: a huge file where an object should be
        is refused, not read whole."""
        limit = codec.stored_size_limit(codec.MAX_OBJECT if size is None else size)
        key = object_key(oid)
        try:
            bounded = self.storage.bounded_reads()
            if bounded is not None:
                stored: bytes | None = bounded.read_at_most(key, limit)
            else:  # one size request first: a remote's value is never fetched whole unbounded
                stored = self.storage.read(key) if self.storage.size(key) <= limit else None
        except NotFound as exc:
            raise NotFound(
                f"object {oid[:12]} is missing from {self.storage.url}",
                hint="run `mvc fsck`; `mvc pull` can fetch it from a remote that has it",
            ) from exc
        if stored is None:
            raise CorruptObject(
                f"object {oid[:12]} in {self.storage.url} is larger than any envelope of "
                f"{'its expected size' if size is not None else 'an object'} can be "
                f"({limit} bytes); it was not read further",
                object_id=oid,
            )
        return stored

    def map_stored(self, oid: str, *, size: int | None = None) -> Buffer:
        """``read_stored``, as a read-only mapping of the object's file where it is local: no
        copy into new memory (the page cache's pages are read in place), unmapped when the
        last view of it goes. Elsewhere new ``bytes``."""
        fd = self._open_local(oid)
        if fd is not None:
            try:
                length = os.fstat(fd).st_size
                limit = codec.stored_size_limit(codec.MAX_OBJECT if size is None else size)
                if 0 < length <= limit:
                    return _mapped(fd, length)
            except OSError as exc:
                if not cannot_map(exc):
                    raise
            finally:
                os.close(fd)
        # Not local, not mappable, or oversized (read_stored refuses it).
        return self.read_stored(oid, size=size)

    def read_header(self, oid: str) -> dict[str, Any]:
        """An object's envelope header, reading no more of it than the header (locally: a
        small ``pread``; elsewhere the stored bytes). ``NotFound`` when absent."""
        path = self.storage.local_path(object_key(oid))
        if path is None:
            return codec.read_header(self.read_stored(oid))[0]
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise NotFound(f"object {oid[:12]} is missing from {self.storage.url}") from exc
        try:
            return codec.read_header(read_envelope_head(fd, os.fstat(fd).st_size))[0]
        finally:
            os.close(fd)

    def decode_stored(
        self, oid: str, stored: bytes, *, size: int | None = None, _depth: int = 0
    ) -> bytes:
        """An object's bytes from its envelope, hashed and compared with ``oid``. Delta bases
        are verified too, and kept in a small cache (``BASE_CACHE``) so a chain shared by
        several chunks is decoded once."""
        view = self._decode(oid, stored, size, _depth)
        if hash_bytes(view) != oid:
            raise CorruptObject(
                f"object {oid[:12]} is corrupt: its content does not hash to its id", object_id=oid
            )
        return view if isinstance(view, bytes) else view.tobytes()

    def _decode(self, oid: str, stored: bytes, size: int | None, depth: int) -> bytes | memoryview:
        """``codec.decode_view`` of an object's envelope, its errors naming the object (or the
        damaged base); not hashed against ``oid`` (the caller does that, or checks otherwise)."""
        if depth > codec.MAX_DELTA_DEPTH:
            # Hostile or damaged envelopes could chain deltas in a cycle: never recurse unbounded.
            raise CorruptObject(
                f"object {oid[:12]} is corrupt: its delta chain is longer than "
                f"{codec.MAX_DELTA_DEPTH}",
                object_id=oid,
            )
        with _naming(oid):
            return codec.decode_view(  # no sb3 pass: the id check verifies every byte
                stored,
                lambda base: self._delta_base(base, depth + 1),
                expected_size=size,
                check_stored=False,
            )

    def _delta_base(self, base: str, depth: int) -> bytes:
        if not is_object_id(base):
            raise CorruptObject(f"delta base {base[:80]!r} is not an object id")
        cached = self.bases.get(base)
        if cached is not None:
            return cached
        data = self.decode_stored(base, self.read_stored(base), _depth=depth)
        self.bases.put(base, data)  # verified above: the cache holds nothing else
        return data

    def get_bytes(self, oid: str, size: int | None = None) -> bytes:
        """The verified bytes of an object; ``size``, when known (a chunk's, from its file
        manifest), bounds what is read and decoded."""
        data = self._read_raw_local(oid, size)
        if data is None:
            return self.decode_stored(oid, self.read_stored(oid, size=size), size=size)
        if hash_bytes(data) != oid:
            raise CorruptObject(
                f"object {oid[:12]} is corrupt: its content does not hash to its id", object_id=oid
            )
        return data

    def _open_local(self, oid: str) -> int | None:
        """The object's file in a local store, open for reading; None where the store is not
        local or the file is absent (the general read path then raises NotFound with its hint)."""
        path = self.storage.local_path(object_key(oid))
        if path is None:
            return None
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None

    def _read_raw_local(self, oid: str, expected: int | None = None) -> bytes | None:
        """A raw object's payload read straight from its local file: one copy where reading the
        envelope and slicing it made two. None for anything else (the general path decodes)."""
        fd = self._open_local(oid)
        if fd is None:
            return None
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, min(size, _RAW_HEAD), 0)
            try:
                header, start = codec.read_header(head)
            except CorruptObject:
                return None
            if header["c"] != "raw" or header.get("n") != size - start:
                return None
            if size - start > (codec.MAX_OBJECT if expected is None else expected):
                return None  # the general path refuses it without reading it whole
            if size <= len(head):
                return head[start:]
            data = os.pread(fd, size - start, start)
            return data if len(data) == size - start else None
        finally:
            os.close(fd)

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

    def manifest_of(self, entry: TreeEntry) -> FileManifest:
        """A tree entry's file manifest: read from the store, or the one a one-chunk entry
        stands for."""
        return entry.implied_manifest() if entry.one_chunk else self.get_manifest(entry.manifest)

    def iter_file(self, manifest: FileManifest, name: str = "file") -> Iterator[bytes]:
        """A file's bytes chunk by chunk, each verified, and the whole checked at the end."""
        hasher = new_hasher()
        for ref in manifest.chunks:
            data = self.get_bytes(ref.id, ref.size)
            if len(data) != ref.size:
                raise CorruptObject(
                    f"chunk {ref.id[:12]} of {name} has the wrong size", object_id=ref.id
                )
            hasher.update(data)
            yield data
        if hasher.hexdigest() != manifest.b3:
            raise CorruptObject(f"{name} does not reassemble to its recorded blake3")

    def write_file(
        self,
        manifest: FileManifest,
        fd: int,
        name: str = "file",
        *,
        jobs: int = 2,
        on_chunk: Callable[[int], None] | None = None,
        writeback: bool = True,
    ) -> None:
        """Write a file's bytes into the open file ``fd``, each chunk at its offset
        (``writeback``: the caller fsyncs ``fd`` after, so the disk starts on each chunk now).

        Every byte is hashed once. ``jobs`` threads read (or decode) chunks and write them at
        their offsets (a raw chunk of a local store is copied in the kernel), and the whole
        file's blake3 is computed from the same bytes, in file order, as chunks complete. The
        manifest is a verified object that records that blake3, so this one check vouches for
        every chunk (a delta's bases are verified on their own when decoded). When it fails,
        each chunk is verified on its own to name the damaged one; either way this raises
        ``CorruptObject`` and the caller discards ``fd``'s file (a staged temp file), so wrong
        bytes never reach their final name.
        """
        offsets = [0]
        for ref in manifest.chunks:
            offsets.append(offsets[-1] + ref.size)
        if offsets[-1] >= PREALLOCATE:
            preallocate(fd, offsets[-1])  # a full disk fails here; a wrong size fails the hash

        decoder = _ChunkDecoder(self, manifest)

        def one(index: int) -> memoryview:
            ref = manifest.chunks[index]
            view, source = self._chunk_view(ref.id, ref.size, decoder)
            try:
                if len(view) != ref.size:
                    raise CorruptObject(
                        f"chunk {ref.id[:12]} of {name} has the wrong size", object_id=ref.id
                    )
                if source is not None:  # the object file itself: copy in the kernel
                    copy_range(source[0], fd, source[1], offsets[index], ref.size)
                else:
                    _pwrite_all(fd, view, offsets[index])
            except BaseException:
                view.release()
                raise
            finally:
                if source is not None:
                    os.close(source[0])
            if writeback:
                start_writeback(fd, offsets[index], len(view))  # the disk works while we hash
            return view

        # blake3's own threads only where cores are spare: on a busy or small machine a
        # fork-join hash waits for a preempted helper thread.
        hasher = new_hasher() if (os.cpu_count() or 1) > max(2, jobs) else single_thread_hasher()
        count = len(manifest.chunks)

        def take(index: int, view: memoryview) -> None:
            hasher.update(view)
            decoder.done(view)
            if on_chunk is not None:
                on_chunk(manifest.chunks[index].size)

        if count <= 1 or jobs <= 1 or offsets[-1] < _PARALLEL_MIN:
            # A small file: a pool of its own costs more than the file (threads started and
            # joined per file, their handoffs), so it is written on this thread.
            for index in range(count):
                take(index, one(index))
        else:
            self._write_chunks_in_parallel(count, jobs, one, take)
        if hasher.hexdigest() != manifest.b3:
            self._verify_chunks(manifest, name)  # raises for the first damaged chunk
            raise CorruptObject(f"{name} does not reassemble to its recorded blake3")

    @staticmethod
    def _write_chunks_in_parallel(
        count: int,
        jobs: int,
        one: Callable[[int], memoryview],
        take: Callable[[int, memoryview], None],
    ) -> None:
        """``one(index)`` for every chunk on ``jobs`` threads, ``take`` of each in file order."""
        from concurrent.futures import Future, ThreadPoolExecutor

        ahead = max(1, jobs) * 2  # bounds the memory held by decoded chunks not yet hashed
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            pending: dict[int, Future[memoryview]] = {}
            try:
                for index in range(count):
                    for later in range(index, min(count, index + ahead)):
                        if later not in pending:
                            pending[later] = pool.submit(one, later)
                    take(index, pending.pop(index).result())
            finally:
                for future in pending.values():
                    future.cancel()

    def _verify_chunks(self, manifest: FileManifest, name: str) -> None:
        """Check each chunk of a file against its own id, one at a time: after the whole file's
        hash failed, this names the damaged object (or finds none: the manifest lies)."""
        for ref in manifest.chunks:
            if len(self.get_bytes(ref.id, ref.size)) != ref.size:
                raise CorruptObject(
                    f"chunk {ref.id[:12]} of {name} has the wrong size", object_id=ref.id
                )

    def _chunk_view(
        self, oid: str, size: int, decoder: _ChunkDecoder | None = None
    ) -> tuple[memoryview, tuple[int, int] | None]:
        """A chunk's bytes, *not* hashed against ``oid`` (the caller checks them otherwise; a
        delta's bases are verified when decoded), and for a raw object of a local store, its
        open file and payload offset (for the caller to close). Such an object is mapped, not
        copied (the mapping closes when the view is released); anything else is decoded, with
        ``decoder`` into one of its reused buffers (given back with ``decoder.done``)."""
        fd = self._open_local(oid)
        if fd is not None:
            try:
                mapped = _mapped_raw_payload(fd)
            except BaseException:
                os.close(fd)
                raise
            if mapped is None:
                os.close(fd)
            else:
                view, start = mapped
                if len(view) != size:
                    held = len(view)
                    view.release()
                    os.close(fd)
                    raise CorruptObject(
                        f"object {oid[:12]} is corrupt: it holds {held} bytes where "
                        f"{size} are expected",
                        object_id=oid,
                    )
                return view, (fd, start)
        if decoder is not None:
            return decoder.decode(oid, size), None
        decoded = self._decode(oid, self.read_stored(oid, size=size), size, 0)
        return memoryview(decoded), None

    def _decode_into(
        self,
        oid: str,
        stored: Buffer,
        out: Any,
        scratch: codec.DecodeScratch,
        load_base: codec.BaseInto | None,
        size: int | None,
    ) -> None:
        """``codec.decode_into``, its errors naming the object (or the damaged base); not
        hashed against ``oid``."""
        with _naming(oid):
            codec.decode_into(stored, out, load_base, scratch, expected_size=size)

    def _shared_bases(self, manifest: FileManifest) -> dict[str, threading.Lock]:
        """The delta bases that two or more of a file's chunks name (from their envelope
        headers, a small read each), each with a lock: such a base is decoded once, by one
        thread, and kept in ``bases`` for the others. Only for a local store's files of
        several chunks (elsewhere a header is the whole object's read)."""
        if len(manifest.chunks) < 2 or self.storage.local_path(OBJECTS) is None:
            return {}
        seen: set[str] = set()
        shared: dict[str, threading.Lock] = {}
        for ref in manifest.chunks:
            try:
                named = codec.header_delta_base(self.read_header(ref.id))
            except (NotFound, CorruptObject):
                continue  # reading the chunk itself reports it
            if named is not None:
                if named[0] in seen:
                    shared.setdefault(named[0], threading.Lock())
                seen.add(named[0])
        return shared


class _ChunkDecoder:
    """The decoded chunks of one ``write_file``: each decoded into a reused buffer.

    Every thread has its own ``DecodeScratch`` (stored bytes, zstd streams, a delta's base);
    results go into output buffers of the file's largest chunk size, lent until the whole-file
    hasher has taken them (``done``) and then lent again, so at most as many exist as chunks
    are in flight. A base that several chunks share is decoded once (``_shared_bases``), the
    others wait for it; any other base is decoded into the thread's scratch and not kept.
    Bases are verified against their ids either way; a chain's deeper bases go through
    ``ObjectStore._delta_base`` (verified and cached there)."""

    def __init__(self, store: ObjectStore, manifest: FileManifest) -> None:
        self.store = store
        self.capacity = max((ref.size for ref in manifest.chunks), default=0)
        self.shared = store._shared_bases(manifest)
        self._local = threading.local()
        self._free: list[Any] = []
        self._lent: dict[int, Any] = {}
        self._lock = threading.Lock()

    def scratch(self) -> codec.DecodeScratch:
        scratch: codec.DecodeScratch | None = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = codec.DecodeScratch()
        return scratch

    def decode(self, oid: str, size: int) -> memoryview:
        """Chunk ``oid``'s bytes (``size`` of them) in a lent buffer, not hashed against its id
        (the whole file's check covers them); its bases verified."""
        import numpy as np

        scratch = self.scratch()
        stored = self.store.map_stored(oid, size=size)
        with self._lock:
            held = self._free.pop() if self._free else None
        if held is None or len(held) < size:
            held = np.empty(max(size, self.capacity), dtype=np.uint8)
        out: Any = held[:size]
        self.store._decode_into(oid, stored, out, scratch, self.base, size)
        view = memoryview(out)
        with self._lock:
            self._lent[id(view)] = held
        return view

    def done(self, view: memoryview) -> None:
        """The caller is finished with ``view``: release it, and its buffer is lent again."""
        with self._lock:
            held = self._lent.pop(id(view), None)
            view.release()
            if held is not None:
                self._free.append(held)

    def base(self, base: str, out: Any) -> Buffer | None:
        """The verified bytes of delta base ``base`` from the store's cache, or None once they
        are decoded (and verified) into ``out``, the delta's own output buffer."""
        if not is_object_id(base):
            raise CorruptObject(f"delta base {base[:80]!r} is not an object id")
        cached = self.store.bases.get(base)
        if cached is not None:
            return cached
        lock = self.shared.get(base)
        with lock if lock is not None else nullcontext():
            cached = self.store.bases.get(base)  # decoded by another thread meanwhile
            if cached is not None:
                return cached
            try:
                header = self.store.read_header(base)
                chained = codec.header_delta_base(header) is not None
            except (NotFound, CorruptObject):
                header, chained = {}, True  # not a local file, or damaged: the general path says
            claimed = header.get("n")
            if isinstance(claimed, int) and claimed != len(out):  # the delta names a wrong base
                raise CorruptObject("delta and its base differ in size")
            if chained:  # a chain, or read through ``read_stored``: decoded, verified, cached
                return self.store._delta_base(base, 1)
            stored = self.store.map_stored(base, size=len(out))
            self.store._decode_into(base, stored, out, self.scratch(), None, len(out))
            del stored  # unmapped once the decode's views are gone
            if hash_bytes(out) != base:
                raise CorruptObject(
                    f"object {base[:12]} is corrupt: its content does not hash to its id",
                    object_id=base,
                )
            if lock is not None:
                self.store.bases.put(base, out.tobytes())  # verified: others will need it
            return None


@contextmanager
def _naming(oid: str) -> Iterator[None]:
    """Decoding errors re-raised naming ``oid``, or the damaged delta base and what it takes
    down."""
    try:
        yield
    except CorruptObject as exc:
        if exc.object_id is not None and exc.object_id != oid:  # a delta base's damage
            raise CorruptObject(
                f"object {oid[:12]} is stored as a delta on a damaged base: {exc.message}",
                object_id=exc.object_id,
                hint=exc.hint,
            ) from exc
        raise CorruptObject(f"object {oid[:12]} is corrupt: {exc.message}", object_id=oid) from exc


def read_envelope_head(fd: int, size: int) -> bytes:
    """The first bytes of the object file ``fd`` (``size`` bytes long): enough for its envelope
    header, in one small read, or a second one for a header longer than ``_RAW_HEAD``."""
    head = os.pread(fd, min(size, _RAW_HEAD), 0)
    if len(head) >= 8:
        length = 8 + int.from_bytes(head[4:8], "little")
        if len(head) < length <= min(size, 8 + codec.MAX_HEADER):
            head = os.pread(fd, length, 0)
    return head


def _mapped_raw_payload(fd: int) -> tuple[memoryview, int] | None:
    """A read-only mapping of a raw envelope's payload and its offset; None for any other."""
    import mmap

    size = os.fstat(fd).st_size
    head = os.pread(fd, min(size, _RAW_HEAD), 0)
    try:
        header, start = codec.read_header(head)
    except CorruptObject:
        return None  # a long header, or damage: the general path decodes (and reports) it
    if header["c"] != "raw" or header.get("n") != size - start or size == start:
        return None
    try:
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        if not cannot_map(exc):
            raise
        return None  # a file system that cannot map files: the general path reads the object
    # Slicing a view of a view keeps the mapping alive until the slice is released.
    return memoryview(mapped)[start:], start


def _mapped(fd: int, length: int) -> memoryview:
    """A read-only view of the first ``length`` bytes of an open file, its pages mapped up
    front (one call, not a fault per page). The mapping outlives ``fd`` and goes with its
    last view; a file that shrinks under it reads as damage (SIGBUS is not risked: object
    files are written once and renamed into place, never truncated)."""
    import mmap

    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return memoryview(mmap.mmap(fd, length, flags=flags, prot=mmap.PROT_READ))


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done : done + WRITE_SLICE], offset + done)
