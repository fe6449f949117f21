"""Copying objects between two object stores: the one transfer behind push, pull, fetch and clone.

``transfer(source, dest, roots, want)`` copies what ``dest`` lacks of what ``roots`` need, in
parallel, and returns a ``TransferResult``. Push and pull are the same call with the stores
swapped; what differs is the ``Want``:

- ``PUSH``: every root's closure and whole history, with data.
- ``PULL``: every root's closure with data; its history as metadata only.
- ``FETCH``: metadata only (versions, trees, file manifests, deployment records), plus the
  chunks that describe files without being their bulk: the header chunk of every safetensors
  file (tensor names, shapes, dtypes) and the content of small files (configs). No tensor data.
- ``CLOSURE``: one version's closure with data, no history (checkout of a fetched version).

Invariants:

- **Children before parents.** An object is written only after every object it needs that this
  transfer copies is written: chunks, then file manifests, then trees, then versions; delta bases
  before deltas; with history, parents before children. On a destination that only transfers
  write to (a remote), an object's presence therefore means everything it needs is present, so
  the walk stops there (``trust_destination``) and an interrupted transfer, run again, copies only
  what is still missing. A local store may hold metadata without chunk data (fetched versions),
  so there the walk still looks below present metadata for missing chunks.
- **Verified before written.** Every object is verified before it enters the destination: a
  raw chunk is hashed against its id; a compressed one is decoded and hashed against its id,
  except from this machine's own store (``trust_source_checksums``: push), where its
  stored-bytes checksum ``sb3`` is checked instead and its header must agree with its length
  and its manifest's size. Metadata is always decoded as its type, so a tree with an unsafe
  path or a malformed id never gets in. Between two local folders a chunk is copied through a
  small buffer, each slice hashed and then written from it, and the digest of what was written
  is checked before the copy gets its name. A mismatch is ``CorruptObject`` naming the
  source and the object.
- **Nothing partial is visible.** Storages write atomically; at most ``jobs`` objects are held in
  memory at once (objects are at most a chunk, 16 MiB, big).
- **Only verified ids are followed.** Ids come from validated refs or verified metadata.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mvc import codec
from mvc.errors import CorruptObject, MvcError, NotFound, UnknownFormat
from mvc.faults import crashpoint
from mvc.ids import ObjectId, hash_bytes, is_object_id, short, single_thread_hasher
from mvc.jsonshape import JsonShaped, Shape
from mvc.objects import (
    KIND_SAFETENSORS,
    FileManifest,
    child_ids,
    decode_file_manifest,
    decode_meta,
    decode_tree,
    decode_version,
    history_ids,
)
from mvc.progress import NullProgress, Progress
from mvc.storage.base import Buffer
from mvc.store import ObjectStore, object_key, read_envelope_head

#: Walk modes: metadata only, or metadata and data.
META = 1
DATA = 2
#: Files up to this size come with their data even when only metadata is wanted (configs).
SMALL_FILE = 64 * 1024
#: How much of a remote object is read to check its length against its envelope header.
_HEAD_PROBE = 64 * 1024


@dataclass(frozen=True)
class Want:
    """What a transfer copies of each root: its closure (``META`` or ``DATA``) and its history
    (earlier versions and records: ``None`` for none, else ``META`` or ``DATA``)."""

    closure: int
    history: int | None


#: How much a transfer writes between rounds of fsyncs on a local destination (the default of
#: the `transfer.flush_bytes` setting).
FLUSH_BYTES = 256 << 20

PUSH = Want(DATA, DATA)
PULL = Want(DATA, META)
FETCH = Want(META, META)
CLOSURE = Want(DATA, None)


@dataclass
class TransferResult(JsonShaped):
    """What one transfer did. "sent" means copied from the source to the destination."""

    objects_sent: int = 0
    bytes_sent: int = 0
    chunks_sent: int = 0
    objects_skipped: int = 0  # looked at and already at the destination
    duration: float = 0.0

    json_shape: ClassVar[Shape] = Shape(
        rename={"duration": "duration_seconds"},
        convert={"duration": lambda seconds: round(seconds, 3)},
    )

    def add(self, other: TransferResult) -> None:
        self.objects_sent += other.objects_sent
        self.bytes_sent += other.bytes_sent
        self.chunks_sent += other.chunks_sent
        self.objects_skipped += other.objects_skipped
        self.duration += other.duration


@dataclass(frozen=True)
class _Item:
    """One object to look at during planning."""

    oid: ObjectId
    mode: int
    chunk: bool  # known to be a chunk (named by a file manifest): never parsed
    size: int  # expected size for progress (chunks: from the manifest)
    needed_by: str


@dataclass
class _Node:
    """One object to copy. Metadata is held from planning; chunks are read when copied."""

    oid: ObjectId
    stored: bytes | None
    size: int
    deps: set[ObjectId] = field(default_factory=set)
    expected: int | None = None  # a chunk's decoded size, from the manifest naming it
    kind: str | None = None  # a metadata object's type


@dataclass(frozen=True)
class Sending:
    """What a transfer is about to copy, handed to ``before_copy`` between planning and
    copying. Chunks are read from the source only when they are copied, so the source may still
    re-encode them (same ids) in between: what it stores then is what is sent."""

    chunks: frozenset[ObjectId]
    versions: tuple[ObjectId, ...]  # the versions sent, parents before children
    at_destination: Callable[[ObjectId], bool]  # whether the destination holds an object


def transfer(
    source: ObjectStore,
    dest: ObjectStore,
    roots: Iterable[ObjectId],
    want: Want,
    *,
    jobs: int = 4,
    progress: Progress | None = None,
    source_label: str = "the source",
    missing_hint: str | None = None,
    trust_destination: bool = False,
    trust_source_checksums: bool = False,
    description: str = "transferring",
    flush_bytes: int = FLUSH_BYTES,
    before_copy: Callable[[Sending], object] | None = None,
) -> TransferResult:
    """Copy to ``dest`` what ``roots`` need under ``want`` and ``dest`` lacks.

    ``before_copy`` is called once, when there is something to copy, with what will be sent
    (push re-encodes those chunks as deltas there: ``ops.push_repack``).

    ``flush_bytes``: on a local destination, writes are made durable and visible in rounds of
    about this many bytes (one round of fsyncs each): the granularity an interrupted transfer
    resumes from.

    ``trust_destination``: an object present at ``dest`` has everything it needs there too (true
    of remotes, which only transfers write), so the walk stops at it.

    ``trust_source_checksums``: the source is this machine's own store, whose objects entered
    it verified, so a compressed envelope from it is verified by its stored-bytes checksum
    (``sb3``: every payload byte hashed, nothing decoded, no delta base read) instead of being
    decoded and hashed against its id. Never for a remote, which could pair any payload with a
    matching checksum.

    ``source_label`` names the source in errors ("remote origin (s3://…)"); ``missing_hint`` is the hint when the
    source lacks an object.
    """
    run = _Transfer(
        source,
        dest,
        want,
        jobs=max(1, jobs),
        progress=progress or NullProgress(),
        source_label=source_label,
        missing_hint=missing_hint,
        trust_destination=trust_destination,
        trust_source_checksums=trust_source_checksums,
        flush_bytes=flush_bytes,
    )
    return run.run([ObjectId(r) for r in roots], description, before_copy)


class _Transfer:
    def __init__(
        self,
        source: ObjectStore,
        dest: ObjectStore,
        want: Want,
        *,
        jobs: int,
        progress: Progress,
        source_label: str,
        missing_hint: str | None,
        trust_destination: bool,
        trust_source_checksums: bool,
        flush_bytes: int,
    ) -> None:
        self.source = source
        self.dest = dest
        self.want = want
        self.jobs = jobs
        self.progress = progress
        self.source_label = source_label
        self.missing_hint = missing_hint
        self.trust_destination = trust_destination
        self.trust_source_checksums = trust_source_checksums
        # Deltas are verified with bases from the local side: a pull checks against the bases
        # it already received; a push reads bases from its own disk instead of the network.
        self.verifier = dest if dest.storage.local_root() is not None else source
        self.result = TransferResult()
        self.plan: dict[ObjectId, _Node] = {}
        self.done: set[ObjectId] = set()
        self.lock = threading.Lock()
        self.flush_bytes = flush_bytes
        self.unflushed = 0  # bytes written since the destination's batch was last flushed
        self.objects_total = 0
        self.objects_done = 0
        self.store_format = 1  # what the trees it meets need of the destination's format

    # --- the whole run ------------------------------------------------------------------------

    def run(
        self,
        roots: list[ObjectId],
        description: str,
        before_copy: Callable[[Sending], object] | None = None,
    ) -> TransferResult:
        started = time.monotonic()
        for root in roots:
            if not is_object_id(root):
                raise CorruptObject(f"{self.source_label} names {root[:80]!r}, not an object id")
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="mvc-transfer") as pool:
            self._walk(pool, roots)
            if self.plan and before_copy is not None:
                before_copy(self._sending())
            if self.plan:
                self.objects_total = len(self.plan)
                self.progress.start(description, sum(n.size for n in self.plan.values()))
                self._report_objects()
                if self.store_format > 1:  # before any object that needs it arrives
                    self.dest.require_format(self.store_format)
                try:
                    # One round of fsyncs every FLUSH_BYTES instead of one per object: an
                    # interrupted transfer keeps what was flushed and resumes from there.
                    with self.dest.batch():
                        self._copy_all(pool)
                finally:
                    self.progress.finish()
        self.result.duration = time.monotonic() - started
        return self.result

    def _sending(self) -> Sending:
        nodes = list(self.plan.values())
        # The walk meets children before parents: reversed, parents come first.
        versions = tuple(n.oid for n in reversed(nodes) if n.kind == "version")
        chunks = frozenset(n.oid for n in nodes if n.stored is None)
        return Sending(chunks, versions, self._present)

    # --- planning: what is missing, and what each missing object needs first ------------------

    def _walk(self, pool: ThreadPoolExecutor, roots: list[ObjectId]) -> None:
        seen: dict[ObjectId, int] = {}
        frontier = [_Item(r, self.want.closure, False, 0, "a ref") for r in roots]
        while frontier:
            todo = []
            for item in frontier:
                if seen.get(item.oid, 0) >= item.mode:
                    continue
                seen[item.oid] = item.mode
                todo.append(item)
            frontier = [child for children in pool.map(self._visit, todo) for child in children]

    def _visit(self, item: _Item) -> list[_Item]:
        oid = item.oid
        if item.chunk:
            if oid in self.plan or self._present(oid):
                if oid not in self.plan:
                    self._skipped()
                return []
            self._add(_Node(oid, None, item.size, expected=item.size))
            return []
        known = self.plan.get(oid)
        if known is not None and known.stored is not None:
            # Seen before in metadata mode and already planned: look deeper, copy it once.
            value = self._decode_source(oid, known.stored)
            edges = self._edges(oid, value, item.mode)
            with self.lock:
                known.deps.update(e.oid for e in edges)
            return edges
        if self._present(oid):
            if self.trust_destination or item.mode == META:
                self._skipped()
                return []
            # A local store may hold metadata whose data never arrived: look below it.
            stored = self.dest.read_stored(oid)
            self._skipped()
            if not codec.is_meta(stored):
                return []
            return self._edges(oid, self.dest.get_meta(oid), item.mode)
        stored = self._read_source(oid, item.needed_by)
        if not codec.is_meta(stored):
            # A chunk reached without a manifest (a record naming raw bytes): copy it like one.
            self._add(_Node(oid, None, len(stored)))
            return []
        value = self._decode_source(oid, stored)
        edges = self._edges(oid, value, item.mode)
        base = self._delta_base(oid, stored)
        if base is not None:
            edges.append(_Item(base, DATA, False, 0, f"delta {short(oid)}"))
        self._add(_Node(oid, stored, len(stored), {e.oid for e in edges}, kind=value["type"]))
        return edges

    def _edges(self, oid: ObjectId, value: dict[str, Any], mode: int) -> list[_Item]:
        """What a verified metadata object needs: closure in ``mode``, history as wanted."""
        kind = value["type"]
        who = f"{kind} {short(oid)}"
        if kind == "file":
            return self._file_edges(decode_file_manifest(value, oid), mode, who)
        if kind == "tree":
            tree = decode_tree(value, oid, portable=True)
            if tree.store_format > self.store_format:
                with self.lock:
                    self.store_format = max(self.store_format, tree.store_format)
            edges = []
            for entry in tree.files.values():
                if entry.one_chunk:  # no manifest: the chunk, as the manifest would name it
                    edges += self._file_edges(entry.implied_manifest(), mode, who)
                else:
                    edges.append(_Item(entry.manifest, mode, False, 0, who))
            return edges
        history = min(mode, self.want.history) if self.want.history else None
        if kind == "version":
            version = decode_version(value, oid)
            edges = [_Item(version.tree, mode, False, 0, who)]
            if history:
                edges += [_Item(p, history, False, 0, who) for p in version.parents]
            return edges
        edges = [_Item(c, mode, False, 0, who) for c in child_ids(value)]
        if history:
            edges += [_Item(p, history, False, 0, who) for p in history_ids(value)]
        return edges

    @staticmethod
    def _file_edges(manifest: FileManifest, mode: int, who: str) -> list[_Item]:
        """The chunks of a file to copy in ``mode``: all of them with data; as metadata, a
        safetensors file's header (its first chunk: tensor names, shapes and dtypes) and
        a small file's content (a config)."""
        chunks = list(manifest.chunks)
        if mode == META:
            if manifest.kind == KIND_SAFETENSORS:
                chunks = chunks[:1]
            elif manifest.size > SMALL_FILE:
                chunks = []
        return [_Item(c.id, DATA, True, c.size, who) for c in chunks]

    def _present(self, oid: ObjectId) -> bool:
        """Whether ``dest`` holds a usable copy: present and the right size. Locally that is
        checked on the file (``has_intact``); on a remote, its size must equal the stored size
        of the source's copy (a stat here, one size request there). A copy that fails is sent
        again, replacing it: same id, so the same content, written atomically."""
        if self.dest.storage.local_root() is not None:
            return self.dest.has_intact(oid)
        key = object_key(oid)
        try:
            size = self.dest.storage.size(key)
        except NotFound:
            return False
        if self.source.storage.local_root() is None:  # a size request there costs a round trip
            return size > 0
        try:
            if size == self.source.storage.size(key):
                return True
        except NotFound:
            return size > 0  # the source lacks it: the walk reports that where it needs it
        # Encoded otherwise there (say, pushed before this store repacked): its own header
        # must account for its length.
        return self._remote_copy_fits(key, size)

    def _remote_copy_fits(self, key: str, size: int) -> bool:
        """Whether a remote object's length is what its envelope header says (one small
        read). A zstd envelope, whose length the header does not give, counts as not fitting:
        it is sent again, which is always safe."""
        try:
            with self.dest.storage.open_read(key) as handle:
                head = handle.read(min(size, _HEAD_PROBE))
            header, start = codec.read_header(head)
            codec.check_size(header)
            expected = codec.payload_length(header)
        except (CorruptObject, NotFound):
            return False
        return expected is not None and size == start + expected

    def _add(self, node: _Node) -> None:
        with self.lock:
            known = self.plan.get(node.oid)
            if known is None:
                self.plan[node.oid] = node
            else:
                known.deps.update(node.deps)

    def _skipped(self) -> None:
        with self.lock:
            self.result.objects_skipped += 1

    # --- reading and checking what the source serves ------------------------------------------

    def _read_source(self, oid: ObjectId, needed_by: str, size: int | None = None) -> bytes:
        """The stored bytes of ``oid`` at the source, read no further than an object of
        ``size`` (a chunk's, from its manifest) can take."""
        try:
            return self.source.read_stored(oid, size=size)
        except CorruptObject as exc:
            raise self._damaged(oid, exc) from exc
        except NotFound as exc:
            raise NotFound(
                f"object {short(oid)} (needed by {needed_by}) is missing from {self.source_label}",
                hint=self.missing_hint or "run `mvc fsck` there",
            ) from exc

    def _damaged(self, oid: ObjectId, exc: MvcError) -> CorruptObject:
        return CorruptObject(
            f"{self.source_label} serves a damaged object {short(oid)} ({oid}): {exc.message}",
            object_id=oid,
            hint="nothing was changed here and no ref moved; repair the source "
            "(`mvc fsck` there) and run the command again",
        )

    def _decode_source(self, oid: ObjectId, stored: bytes) -> dict[str, Any]:
        """A metadata object's value, verified against its id and decoded as its type."""
        try:
            value = decode_meta(self.source.decode_stored(oid, stored), oid)
            kind = value["type"]
            if kind == "file":
                decode_file_manifest(value, oid)
            elif kind == "tree":
                decode_tree(value, oid, portable=True)  # nothing unportable enters a store
            elif kind == "version":
                decode_version(value, oid)
            return value
        except (CorruptObject, UnknownFormat) as exc:
            raise self._damaged(oid, exc) from exc

    def _delta_base(self, oid: ObjectId, stored: bytes) -> ObjectId | None:
        try:
            base = codec.delta_base(stored)
        except CorruptObject as exc:
            raise self._damaged(oid, exc) from exc
        if base is None:
            return None
        if not is_object_id(base[0]) or base[0] == oid:
            raise self._damaged(oid, CorruptObject("its delta base is not another object's id"))
        return ObjectId(base[0])

    # --- copying, children first ---------------------------------------------------------------

    def _copy_all(self, pool: ThreadPoolExecutor) -> None:
        pending: dict[ObjectId, int] = {}
        dependents: dict[ObjectId, list[ObjectId]] = {}
        for oid, node in self.plan.items():
            deps = {d for d in node.deps if d in self.plan and d != oid}
            pending[oid] = len(deps)
            for dep in deps:
                dependents.setdefault(dep, []).append(oid)
        # Chunks first (they need nothing), then metadata as what it needs lands.
        ready = deque(
            sorted(
                (oid for oid, count in pending.items() if count == 0),
                key=lambda o: self.plan[o].stored is not None,
            )
        )
        in_flight: dict[Future[None], ObjectId] = {}
        try:
            while ready or in_flight:
                while ready and len(in_flight) < 2 * self.jobs:
                    oid = ready.popleft()
                    in_flight[pool.submit(self._copy, self.plan[oid])] = oid
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    oid = in_flight.pop(future)
                    future.result()
                    for waiting in dependents.get(oid, ()):
                        pending[waiting] -= 1
                        if pending[waiting] == 0:
                            ready.append(waiting)
        except BaseException:
            for future in in_flight:
                future.cancel()
            wait(in_flight)
            raise
        stuck = [oid for oid, count in pending.items() if count > 0]
        if stuck:  # impossible with content addressing, unless the source is hostile
            raise CorruptObject(
                f"{self.source_label} serves objects that need each other in a cycle "
                f"(e.g. {short(stuck[0])})",
                object_id=stuck[0],
            )

    def _copy(self, node: _Node) -> None:
        if node.stored is not None:
            self._write(node.oid, node.stored, chunk=False)
        elif node.oid not in self.done:
            self._send_chunk(node.oid, node.expected, (), "a file")
        self.progress.advance(node.size)
        with self.lock:
            self.objects_done += 1
        self._report_objects()

    def _send_chunk(
        self, oid: ObjectId, size: int | None, chain: tuple[ObjectId, ...], needed_by: str
    ) -> None:
        """Verify and write one chunk, in the kernel where both sides are local folders."""
        if not self._copy_in_kernel(oid, size):
            self._receive(oid, self._read_source(oid, needed_by, size), chain, size)

    def _receive(
        self, oid: ObjectId, stored: bytes, chain: tuple[ObjectId, ...], size: int | None = None
    ) -> None:
        """Verify and write a chunk; a delta's base goes first (read from the source if needed)."""
        self._base_first(oid, self._delta_base(oid, stored), chain)
        self._verify(oid, stored, size)
        self._write(oid, stored, chunk=True)

    def _base_first(
        self, oid: ObjectId, base: ObjectId | None, chain: tuple[ObjectId, ...]
    ) -> None:
        """Children before parents: a delta's base is at the destination before the delta."""
        if base is None or base in self.done or self._present(base):
            return
        if base in chain or len(chain) >= codec.MAX_DELTA_DEPTH:
            raise self._damaged(oid, CorruptObject("its delta chain loops or is too long"))
        self._send_chunk(base, None, (*chain, oid), f"delta {short(oid)}")

    def _verify(self, oid: ObjectId, stored: bytes, size: int | None) -> None:
        try:
            header, start = codec.read_header(stored)
            codec.check_size(header, size)
            payload = memoryview(stored)[start:]
            if header["c"] == "raw":  # the common case: hash the payload in place, no copy
                if header.get("n") != len(payload) or hash_bytes(payload) != oid:
                    raise CorruptObject("its content does not hash to its id")
                return
            checksum = self._checksum_to_trust(oid, header, len(payload))
            if checksum is not None:
                if blake3_of(payload) != checksum:
                    raise CorruptObject("its stored bytes do not match their checksum (sb3)")
                return
            self.verifier.decode_stored(oid, stored, size=size)
        except CorruptObject as exc:
            raise self._damaged(oid, exc) from exc

    def _checksum_to_trust(self, oid: ObjectId, header: dict[str, Any], payload: int) -> str | None:
        """The stored-bytes checksum (``sb3``) that verifies a compressed envelope from this
        store without decoding it; None where the envelope must be decoded instead.

        Only a plain zstd frame qualifies: its header holds nothing but the decoded size (which
        the caller checks against the manifest) and sb3 covers every byte that decodes. A
        grouped envelope's stream table and a delta's base and transform live in the header,
        which sb3 does not cover: damage there would decode to other bytes behind a good
        checksum. A source that is not this machine's own store is always decoded (a remote
        could pair any payload with its checksum)."""
        checksum = header.get("sb3")
        if not self.trust_source_checksums or not isinstance(checksum, str):
            return None
        if header["c"] != "zstd" or set(header) - {"c", "n", "sb3"}:
            return None
        return checksum

    def _copy_in_kernel(self, oid: ObjectId, size: int | None) -> bool:
        """Copy a chunk from a source folder into a destination folder without holding it in
        Python: read in small slices, each hashed and then written from the same buffer
        (``copy_through``), so the digest checked before the copy gets its name is the digest
        of the bytes written: a raw chunk against its id, a plain zstd one from this store
        against its stored-bytes checksum. Neither has a delta base. False (nothing done)
        where this does not apply: the general path reads, verifies and reports."""
        copier = self.dest.storage.kernel_copy()
        key = object_key(oid)
        path = self.source.storage.local_path(key)
        if copier is None or path is None:
            return False
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False  # absent (or archived elsewhere): the general path finds or reports it
        try:
            total = os.fstat(fd).st_size
            head = read_envelope_head(fd, total)
            try:
                header, start = codec.read_header(head)
                codec.check_size(header, size)
                if header["c"] == "raw":
                    if header.get("n") != total - start:
                        return False
                    expected: str = oid
                else:
                    found = self._checksum_to_trust(oid, header, total - start)
                    if found is None:
                        return False
                    expected = found
            except CorruptObject:
                return False  # the general path reads it and says what is wrong
            hasher = single_thread_hasher()

            def check(_written: int) -> None:
                if hasher.hexdigest() != expected:
                    raise self._damaged(
                        oid,
                        CorruptObject(
                            "its content does not hash to its id"
                            if expected == oid
                            else "its stored bytes do not match their checksum (sb3)"
                        ),
                    )

            copier.write_from(
                key, head[:start], fd, start, total - start, check=check, through=hasher.update
            )
        finally:
            os.close(fd)
        self._written(oid, total, chunk=True)
        return True

    def _write(self, oid: ObjectId, stored: bytes, *, chunk: bool) -> None:
        self.dest.write_stored(oid, stored, verify=False)  # verified above
        self._written(oid, len(stored), chunk=chunk)

    def _written(self, oid: ObjectId, size: int, *, chunk: bool) -> None:
        crashpoint("transfer.object")
        with self.lock:
            self.done.add(oid)
            self.result.objects_sent += 1
            self.result.bytes_sent += size
            self.result.chunks_sent += int(chunk)
            self.unflushed += size
            flush = self.unflushed >= self.flush_bytes
            if flush:
                self.unflushed = 0
        if flush:
            self.dest.flush()

    def _report_objects(self) -> None:
        report: Callable[[int, int], None] | None = getattr(self.progress, "objects", None)
        if report is not None:
            report(self.objects_done, self.objects_total)


def blake3_of(data: Buffer) -> str:
    """blake3 on the calling thread: transfers already spread work over their workers."""
    return str(single_thread_hasher().update(data).hexdigest())
