"""Turning a folder (or one file) into a tree of manifests and chunks.

The stat cache answers for unchanged files; everything else is read once through mmap, split
by the chunk planner, hashed, and (when storing) written chunk by chunk in parallel. Chunks are
written before their manifest, manifests before the tree: closure before reference.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from mvc.chunking import plan_file
from mvc.errors import InvalidInput, MvcError, cannot_map, unmappable
from mvc.faults import crashpoint
from mvc.formats.safetensors import looks_like_safetensors
from mvc.ids import ObjectId, hash_bytes, new_hasher
from mvc.objects import KIND_SAFETENSORS, ChunkRef, FileManifest, Tree, TreeEntry, encode_object
from mvc.progress import NullProgress, Progress
from mvc.repo import Repo
from mvc.worktree.scan import FileStat, ScannedFile, scan
from mvc.worktree.statcache import StatCache

if TYPE_CHECKING:
    from mvc.chunking import ChunkSpan, FilePlan

INDEX = "index"
# Files up to this size are read whole and done one after another on the calling thread: for
# them the per-file costs (open, stat, the object files' creation), not bytes, are the work,
# and handing each to a pool worker cost more than it saved (2,002 files: 0.52 s and 0.46 s of
# CPU in order, 0.88 s and 0.97 s of CPU 64 at a time on the pool, 0.61 s on two workers with
# half each; git add + commit 0.41 s). Larger ones are mapped, split, and their chunks hashed
# and copied in the kernel in parallel.
SMALL_READ = 64 << 10


@dataclass
class Snapshot:
    tree: Tree
    tree_id: ObjectId
    files: dict[str, ScannedFile]
    hashed: list[str] = field(default_factory=list)  # files that had to be read
    hashed_bytes: int = 0
    new_chunks: int = 0
    new_bytes: int = 0


def stat_cache_for(repo: Repo, target: str) -> StatCache:
    name = quote(repo.relpath(target), safe="") or "root"
    # Version 2 caches live in their own folder: an mvc that knows only version 1 would
    # rewrite one in its old place as version 1, dropping its marks of unflushed files.
    index = os.path.join(repo.store_dir, INDEX)
    return StatCache.load(
        os.path.join(index, "v2", f"{name}.json"), older=os.path.join(index, f"{name}.json")
    )


class _FileHasher:
    """Hashes (and optionally stores) one file's chunks; counts what it wrote."""

    def __init__(
        self, repo: Repo, *, store: bool, raw: bool, pool: ThreadPoolExecutor, progress: Progress
    ) -> None:
        self.repo = repo
        self.store = store
        self.raw = raw
        self.pool = pool
        self.progress = progress
        self.compress = bool(repo.config.get("core.compress"))
        self.new_chunks = 0
        self.new_bytes = 0
        self._count_lock = threading.Lock()

    def _chunk(
        self, view: memoryview, elem_width: int | None, source: tuple[int, int] | None = None
    ) -> ObjectId:
        oid = _pool_hash(view)
        # add_bytes rewrites a damaged copy and skips one written earlier in this batch.
        if self.store and self.repo.objects.add_bytes(
            view, oid, elem_width=elem_width, compress=self.compress, source=source
        ):
            with self._count_lock:  # called from worker threads
                self.new_chunks += 1
                self.new_bytes += len(view)
        self.progress.advance(len(view))
        return oid

    def _span_chunk(self, view: memoryview, span: ChunkSpan, source_fd: int) -> ObjectId:
        piece = view[span.offset : span.offset + span.length]
        try:
            return self._chunk(piece, span.elem_width, (source_fd, span.offset))
        finally:
            with suppress(BufferError):  # released here, a traceback keeps no hold on the file
                piece.release()

    def _plan(self, scanned: ScannedFile, view: memoryview) -> FilePlan:
        try:
            return plan_file(scanned.path, view, scanned.rel, raw=self.raw)
        except InvalidInput:
            if self.store:
                raise
            # status and checkout only compare content: a malformed safetensors file
            # (committed with --raw, or not yet committed) is hashed as plain bytes.
            return plan_file(scanned.path, view, scanned.rel, raw=True)

    def small_entry(self, scanned: ScannedFile) -> TreeEntry:
        """A small file, start to end on the calling thread (small files go one after another,
        not chunk by chunk on the pool): read whole, hashed, stored."""
        fd = os.open(scanned.path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            data = _read_whole(fd, size)
        finally:
            os.close(fd)
        view = memoryview(data)
        plan = self._plan(scanned, view)
        ids = [
            self._chunk(view[span.offset : span.offset + span.length], span.elem_width)
            for span in plan.spans
        ]
        # One chunk that is the whole file: its id is the file's blake3 already.
        whole = len(ids) == 1 and plan.spans[0].length == len(data)
        b3 = ids[0] if whole else _pool_hash(view)
        return self._finish(scanned, len(data), plan, ids, b3)

    def entry(self, scanned: ScannedFile) -> TreeEntry:
        with open(scanned.path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                data: mmap.mmap | bytes = b""
            else:
                try:
                    data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                except OSError as exc:
                    if not cannot_map(exc):
                        raise
                    raise unmappable(scanned.rel, exc) from exc
            # The same open file, for the store to copy chunks from in the kernel
            # (copy_file_range: steadier and cheaper than write() from the mapping).
            source_fd = os.dup(handle.fileno())
        try:
            view = memoryview(data)
            try:
                plan = self._plan(scanned, view)
                whole = self.pool.submit(_whole_hash, view)
                pieces = [
                    self.pool.submit(self._span_chunk, view, span, source_fd) for span in plan.spans
                ]
                try:
                    ids = [future.result() for future in pieces]
                    b3 = whole.result()
                except BaseException:
                    # Stop the queued pieces and wait for the running ones (Ctrl-C, disk full):
                    # none may still read the mapping or write into the store after this.
                    for future in pieces:
                        future.cancel()
                    wait([whole])
                    wait(pieces)
                    raise
            finally:
                # An interrupted chunker or a failed piece's traceback may still hold the
                # mapping: then it closes once that is gone. Never let this hide the error.
                with suppress(BufferError):
                    view.release()
        finally:
            os.close(source_fd)
            if isinstance(data, mmap.mmap):
                with suppress(BufferError):
                    data.close()
        return self._finish(scanned, size, plan, ids, b3)

    def _finish(
        self, scanned: ScannedFile, size: int, plan: FilePlan, ids: list[ObjectId], b3: str
    ) -> TreeEntry:
        # The chunks were hashed from a mapping (or a read) and copied from the file: both are
        # only the same bytes if nobody wrote the file meanwhile. Any write changes its mtime
        # or ctime; raising here (inside the commit's batch) discards every object written.
        try:
            after = FileStat.of(os.stat(scanned.path))
        except FileNotFoundError:
            after = None
        if size != scanned.stat.size or after != scanned.stat:
            raise MvcError(
                f"{scanned.rel} changed while it was being read; nothing was stored for it",
                hint="run the command again once the file is no longer being written",
            )
        manifest = FileManifest(
            size=size,
            b3=b3,
            kind=plan.kind,
            chunks=tuple(
                ChunkRef(oid, span.length) for oid, span in zip(ids, plan.spans, strict=True)
            ),
        )
        if self.store:
            crashpoint("commit.chunks")
        if manifest.one_chunk:  # its entry names the chunk: no manifest object (format 2)
            return TreeEntry(ObjectId(b3), size, b3, plan.kind, scanned.stat.executable)
        if self.store:
            manifest_id = self.repo.objects.put_meta(manifest)
        else:
            manifest_id = hash_bytes(encode_object(manifest))
        return TreeEntry(manifest_id, size, b3, plan.kind, scanned.stat.executable)


def _read_whole(fd: int, size: int) -> bytes:
    """A small file's bytes; one byte more than ``size`` is asked for, so a file that grew
    since its stat is read to its new length (and then refused as changed)."""
    data = os.read(fd, size + 1)
    if len(data) <= size:
        while True:  # a short read (rare for regular files): read on to the end
            more = os.read(fd, size + 1 - len(data))
            if not more:
                break
            data += more
    return data


def _whole_hash(view: memoryview) -> str:
    # The one serial piece of work: blake3's own threads help it only where cores are spare.
    if (os.cpu_count() or 1) > 2:
        hasher = new_hasher()
        hasher.update(view)
        return str(hasher.hexdigest())
    return str(_pool_hash(view))


def _pool_hash(view: memoryview) -> ObjectId:
    """blake3 on the calling thread only (same digest as ``hash_bytes``): the pool already keeps
    the cores busy, and blake3's own threads would only contend with it (measured on 2 cores:
    commit of 1 GiB 0.7-0.8 s instead of 0.8-1.3 s, hashing thread-time halved)."""
    import blake3

    return ObjectId(blake3.blake3(view).hexdigest())


def snapshot(
    repo: Repo,
    target: str,
    *,
    store: bool,
    raw: bool = False,
    follow_symlinks: bool = False,
    cache: StatCache | None = None,
    progress: Progress | None = None,
    stored_tree: ObjectId | None = None,
    like: Tree | None = None,
) -> Snapshot:
    """The tree of ``target`` as it is now; with ``store``, every object it needs is in the store.

    ``stored_tree``: a tree the store holds whole (the parent version's: closure before
    reference). When the stat cache answers for every file and they make exactly that tree,
    nothing needs checking or storing, and the cached entries are not looked up in the store
    one by one (a no-op commit of 2,000 files: 6,000 object files opened, 2,000 decoded).

    ``like``: a tree (the parent version's, or the one a folder was checked out at) whose entry
    stands for a file with the same content, kind and mode, re-hashed or cached. The same bytes
    can have two entries (a one-chunk file's manifest from a format-1 store, a shard chunked by
    an older mvc); keeping the one there keeps an unchanged folder's tree id, so a touched file
    makes no new version."""
    progress = progress or NullProgress()
    files = scan(target, follow_symlinks=follow_symlinks)
    cached: dict[str, TreeEntry] = {}
    for rel, scanned in files.items():
        known = cache.lookup(rel, scanned.stat) if cache else None
        if known is not None and store and not raw and _stored_raw(rel, known):
            known = None  # a malformed safetensors file is refused on every commit without --raw
        if known is not None:
            cached[rel] = _as_in(like, rel, known)
    if store and stored_tree is not None and cache is not None and len(cached) == len(files):
        tree = Tree(cached)
        tree_id = hash_bytes(encode_object(tree))
        if tree_id == stored_tree:
            cache.forget_missing(set(files))
            return Snapshot(tree, tree_id, files)
    entries: dict[str, TreeEntry] = {}
    todo: list[ScannedFile] = []
    for rel, scanned in files.items():
        known = cached.get(rel)
        # A cached manifest is reused only if it is really in the store (status may have
        # recorded it without writing it).
        if known is not None and (not store or repo.objects.has_file(known)):
            entries[rel] = known
        else:
            todo.append(scanned)
    present = repo.objects.has_file if store else None
    result_hashed: list[str] = []
    hashed_bytes = 0
    jobs = int(repo.config.get("core.jobs"))
    # One batch for the whole closure: its objects become durable together (one round of
    # fsyncs, not one per chunk) before this returns, so before any version can name them.
    with (
        repo.objects.batch() if store else nullcontext(),
        ThreadPoolExecutor(max_workers=max(2, jobs)) as pool,
    ):
        hasher = _FileHasher(repo, store=store, raw=raw, pool=pool, progress=progress)
        if todo:
            progress.start("hashing" if not store else "storing", sum(f.stat.size for f in todo))
        try:
            small = [f for f in todo if f.stat.size <= SMALL_READ]
            done = _small_entries(hasher, small)
            for scanned in todo:
                if scanned.rel not in done:
                    done[scanned.rel] = _described(hasher.entry, scanned)
            for scanned in todo:  # in the folder's order, whichever finished first
                entry = _as_in(like, scanned.rel, done[scanned.rel], stored=present)
                if entry is done[scanned.rel] and cache is not None:
                    # Not the like tree's: the entry the cache last recorded for these bytes
                    # (a racy or touched file that checkout wrote from a format-1 tree).
                    entry = _same_file(cache.recorded(scanned.rel), entry, present)
                entries[scanned.rel] = entry
                result_hashed.append(scanned.rel)
                hashed_bytes += scanned.stat.size
                if cache is not None:
                    cache.record(scanned.rel, scanned.stat, entry)
        finally:
            if todo:
                progress.finish()
        crashpoint("commit.manifests")
        tree = Tree(entries)
        if store:
            repo.objects.require_format(tree.store_format)  # before the tree that needs it
        tree_id = repo.objects.put_meta(tree) if store else hash_bytes(encode_object(tree))
        crashpoint("commit.tree")
    if cache is not None:
        cache.forget_missing(set(files))
    return Snapshot(
        tree, tree_id, files, result_hashed, hashed_bytes, hasher.new_chunks, hasher.new_bytes
    )


def _as_in(
    like: Tree | None,
    rel: str,
    entry: TreeEntry,
    *,
    stored: Callable[[TreeEntry], bool] | None = None,
) -> TreeEntry:
    """``like``'s entry for ``rel`` where it is the same file as ``entry``, else ``entry``.
    ``stored``: when committing, the store must hold that entry's objects (an archived or
    quarantined parent may not), or the new tree would name what is not there."""
    return _same_file(like.files.get(rel) if like is not None else None, entry, stored)


def _same_file(
    known: TreeEntry | None, entry: TreeEntry, stored: Callable[[TreeEntry], bool] | None
) -> TreeEntry:
    """``known`` where it describes the same file as ``entry`` (content, kind and mode) and,
    with ``stored``, the store holds its objects; else ``entry``."""
    if known is None or known == entry:
        return entry
    same = (known.b3, known.size, known.kind, known.executable) == (
        entry.b3,
        entry.size,
        entry.kind,
        entry.executable,
    )
    if not same or (stored is not None and not stored(known)):
        return entry
    return known


def _small_entries(hasher: _FileHasher, files: list[ScannedFile]) -> dict[str, TreeEntry]:
    """Entries of small files, each read, hashed and stored in the folder's order; the first
    that fails stops the rest (and the caller's batch discards what was written)."""
    return {scanned.rel: _described(hasher.small_entry, scanned) for scanned in files}


def _described(make: Callable[[ScannedFile], TreeEntry], scanned: ScannedFile) -> TreeEntry:
    """``make(scanned)``, its errors naming the file."""
    try:
        return make(scanned)
    except FileNotFoundError as exc:
        raise MvcError(
            f"{scanned.rel} vanished while it was being read", hint="run the command again"
        ) from exc
    except InvalidInput as exc:
        raise InvalidInput(
            f"{scanned.rel}: {exc.message}" if scanned.rel not in exc.message else exc.message,
            hint=exc.hint,
        ) from exc


def _stored_raw(rel: str, entry: TreeEntry) -> bool:
    return entry.kind != KIND_SAFETENSORS and looks_like_safetensors(rel)


def same_files(a: Tree, b: Tree) -> bool:
    """Whether two trees hold the same files by content and mode. Their ids can differ: the
    same bytes have a manifest in a format-1 tree and none in format 2."""
    return changed_paths(a, b) == ([], [], [])


def changed_paths(old: Tree | None, new: Tree) -> tuple[list[str], list[str], list[str]]:
    """(added, modified, removed) between two trees."""
    before = old.files if old else {}
    added = [p for p in new.files if p not in before]
    removed = [p for p in before if p not in new.files]
    modified = [
        p
        for p, e in new.files.items()
        if p in before and (before[p].b3 != e.b3 or before[p].executable != e.executable)
    ]
    return added, modified, removed
