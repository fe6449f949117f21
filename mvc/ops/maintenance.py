"""fsck, gc and repack: verifying, collecting and compacting the store.

gc holds the objects lock exclusively (every object writer holds it shared) and the refs lock,
so it never deletes while another process writes. It keeps everything reachable from every ref's
current value and their whole histories (parents, deployment records), from ref-log entries
younger than the grace period, and every object younger than the grace period.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mvc import codec, graph
from mvc.archives import list_archives
from mvc.errors import CorruptObject, MvcError, NotFound, UnknownFormat, UsageError
from mvc.faults import crashpoint
from mvc.ids import ObjectId, is_object_id
from mvc.instants import parse_instant
from mvc.jsonshape import JsonShaped, Shape
from mvc.objects import (
    decode_file_manifest,
    decode_meta,
    decode_tree,
    decode_version,
)
from mvc.ops import deltas as planner
from mvc.ops.archive import retained_versions
from mvc.ops.remotes import _remote_has_store as remote_has_store
from mvc.progress import NullProgress, Progress
from mvc.refnames import RefName
from mvc.refs import RefStore
from mvc.remotes import open_remote, promised_objects, tracking_roots
from mvc.repo import Repo
from mvc.storage import lock
from mvc.storage.local import LocalStorage
from mvc.store import ObjectStore, object_key


@dataclass
class Problem(JsonShaped):
    kind: str  # corrupt, missing, ref, delta (its base is damaged or missing), version
    object: str | None
    detail: str


@dataclass
class FsckReport(JsonShaped):
    objects_checked: int = 0
    refs_checked: int = 0
    reachable: int = 0
    dangling: int = 0
    problems: list[Problem] = field(default_factory=list)
    # Missing objects a remote promises (fetched, not pulled) and was checked to have:
    # expected, not damage.
    promised: list[Problem] = field(default_factory=list)
    # Missing objects a remote promises but that could not be checked there (the remote was
    # unreachable, or ``offline``): neither damage nor known to be safe.
    unverified: list[Problem] = field(default_factory=list)
    offline: bool = False
    quarantined: list[str] = field(default_factory=list)  # corrupt objects moved aside
    # Live versions that cannot be read whole because of the problems (a corrupt delta base
    # takes down every version whose chunks are stored against it).
    broken_versions: list[Problem] = field(default_factory=list)
    repaired_refs: list[str] = field(default_factory=list)  # log entries set aside

    @property
    def ok(self) -> bool:
        return not self.problems

    json_shape: ClassVar[Shape] = Shape(computed={"ok": "ok"})


def _ref_roots(
    refs: RefStore, grace_seconds: float | None, now: float
) -> tuple[list[ObjectId], list[Problem]]:
    roots: list[ObjectId] = []
    problems: list[Problem] = []
    for ref in refs.list_refs(live=False):
        try:
            log = refs.entries(ref)
        except CorruptObject as exc:
            problems.append(Problem("ref", None, f"{ref}: {exc.message}"))
            continue
        previous = None
        for index, entry in enumerate(log):
            if entry.seq != index + 1 or entry.old != previous:
                problems.append(
                    Problem(
                        "ref", None, f"{ref}: log entry {entry.seq} does not follow entry {index}"
                    )
                )
            previous = entry.new
            if entry.new is None:
                continue
            if index == len(log) - 1:
                roots.append(entry.new)
            elif grace_seconds is not None:
                try:
                    when = parse_instant(entry.when).timestamp()
                except UsageError:
                    when = now
                if now - when < grace_seconds:
                    roots.append(entry.new)
    return roots, problems


QUARANTINE = "quarantine"


def fsck(
    repo: Repo,
    *,
    quarantine: bool = False,
    offline: bool = False,
    repair_refs: bool = False,
    progress: Progress | None = None,
) -> FsckReport:
    """Verify every object and ref. With ``quarantine``, corrupt objects are moved aside to
    ``.mvc/quarantine/`` so they count as missing: a pull then fetches good copies (an object
    that is present is never fetched again).

    A missing object that a remote's tracking refs promise is checked on that remote: there,
    it is ``promised`` (not damage); not there, it is a ``missing`` problem; the remote
    unreachable (or ``offline``: not asked), it is ``unverified``.

    With ``repair_refs``, torn ref-log entries, and entries that do not follow the one before,
    are first set aside to ``.mvc/quarantine/refs/`` and replaced by a note
    (``RefStore.repair_torn``, ``RefStore.repair_chain``)."""
    import time

    progress = progress or NullProgress()
    report = FsckReport(offline=offline)
    if repair_refs:
        report.repaired_refs = _repair_refs(repo)
    roots, report.problems = _ref_roots(repo.refs, None, time.time())
    local_roots = set(roots)  # a local ref's own target is never merely "expected" from a remote
    roots += _tracking_roots(repo, None, time.time())
    report.refs_checked = len(repo.refs.list_refs(live=False))
    ids = list(repo.objects.iter_ids())
    progress.start("verifying objects", len(ids))

    def check(oid: ObjectId) -> Problem | None:
        try:
            stored = repo.objects.read_stored(oid)
        except NotFound as exc:
            progress.advance(1)
            return Problem("missing", oid, exc.message)
        except CorruptObject as exc:
            progress.advance(1)
            return Problem("corrupt", oid, exc.message)
        try:
            data = repo.objects.decode_stored(oid, stored)  # a delta: its whole chain, hashed
            if codec.is_meta(stored):
                _check_structure(data, oid)
        except (CorruptObject, UnknownFormat) as exc:
            below = exc.object_id if isinstance(exc, CorruptObject) else None
            if below is not None and below != oid:  # the object is fine; a base below is not
                return Problem("delta", oid, f"its delta base cannot be read: {exc.message}")
            return Problem("corrupt", oid, exc.message)
        except NotFound as exc:  # present itself: what is missing is a delta base
            return Problem("delta", oid, f"its delta base is missing: {exc.message}")
        finally:
            progress.advance(1)
        return None

    with ThreadPoolExecutor(max_workers=int(repo.config.get("core.jobs"))) as pool:
        for problem in pool.map(check, ids):
            if problem:
                report.problems.append(problem)
    progress.finish()
    report.objects_checked = len(ids)
    corrupt = {p.object for p in report.problems if p.kind == "corrupt"}
    walked = graph.reachable(_SkippingStore(repo.objects, corrupt), roots, graph.FSCK)
    missing = [(m.object, m.needed_by) for m in walked.missing]
    promised = _promised(repo) if missing else {}
    wanted = [o for o, _ in missing if o not in corrupt and o in promised and o not in local_roots]
    on_remote = {} if offline else _check_on_remotes(repo, {o: promised[o] for o in wanted})
    for oid, needed_by in missing:
        if oid in corrupt:
            continue
        if oid in promised and oid not in local_roots:
            name = promised[oid]
            found = on_remote.get(oid)
            what = f"object {oid[:12]} needed by {needed_by}"
            if found is True:
                report.promised.append(
                    Problem("promised", oid, f"{what} is expected from remote {name}")
                )
            elif found is None or isinstance(found, str):
                why = found or "not checked (--offline)"
                report.unverified.append(
                    Problem("unverified", oid, f"{what} is missing here; remote {name}: {why}")
                )
            else:
                report.problems.append(
                    Problem("missing", oid, f"{what} is missing here and from remote {name} too")
                )
        else:
            report.problems.append(
                Problem("missing", oid, f"object {oid[:12]} needed by {needed_by} is missing")
            )
    report.reachable = len(walked.reached)
    report.dangling = len(set(ids) - walked.reached - corrupt)
    if corrupt or walked.missing:
        report.broken_versions = _broken_versions(repo, corrupt, set(promised))
    if quarantine:
        report.quarantined = [_quarantine(repo, oid) for oid in sorted(o for o in corrupt if o)]
    return report


class _CachedReader:
    """A graph reader that reads each object once across many walks."""

    def __init__(self, objects: ObjectStore) -> None:
        self.inner = graph.StoreReader(objects)
        self.nodes: dict[ObjectId, graph.Node | MvcError] = {}

    def read_node(self, oid: ObjectId) -> graph.Node:
        found = self.nodes.get(oid)
        if found is None:
            try:
                found = self.inner.read_node(oid)
            except MvcError as exc:
                found = exc
            self.nodes[oid] = found
        if isinstance(found, MvcError):
            raise found
        return found


def _broken_versions(
    repo: Repo, corrupt: set[str | None], promised: set[ObjectId]
) -> list[Problem]:
    """Every live version that cannot be read whole: its data (delta bases included) needs an
    object that is corrupt or missing here (and not merely expected from a remote)."""
    reader = _CachedReader(_SkippingStore(repo.objects, corrupt))
    broken: list[Problem] = []
    for version in live_versions(repo):
        walked = graph.walk(reader, [version], graph.FSCK_DATA)
        lost = [m for m in walked.missing if m.object not in promised]
        if not lost:
            continue
        try:
            model = repo.objects.get_version(version).model
        except MvcError:
            model = "?"
        first = lost[0]
        what = "corrupt" if first.object in corrupt else "missing"
        broken.append(
            Problem(
                "version",
                version,
                f"{model} version {version[:12]} cannot be read: it needs {len(lost)} "
                f"object(s) that are corrupt or missing, e.g. {what} {first.object[:12]} "
                f"({first.trail})",
            )
        )
    return broken


def _repair_refs(repo: Repo) -> list[str]:
    """Set torn and unchained ref-log entries aside (their bytes kept under
    ``.mvc/quarantine/refs/``) and leave notes in their place."""
    import os

    repaired = []
    keeper = LocalStorage(os.path.join(repo.store_dir, QUARANTINE))
    with repo.refs._lock():  # type: ignore[misc]
        repo.refs.recover()
        for ref in repo.refs.list_refs(live=False):

            def keep(seq: int, data: bytes, ref: RefName = ref) -> str:
                key = f"refs/{ref.folder.removeprefix('refs/')}/{seq:010d}"
                keeper.write(key, [data])
                return f".mvc/{QUARANTINE}/{key}"

            for note in repo.refs.repair_torn(ref, keep) + repo.refs.repair_chain(ref, keep):
                repaired.append(f"{ref}: entry {note.seq}")
    return repaired


def _quarantine(repo: Repo, oid: str) -> str:
    import os

    source = repo.storage.local_path(object_key(oid))
    target = os.path.join(repo.store_dir, QUARANTINE, oid)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if source is not None:
        os.replace(source, target)
    return oid


def _check_on_remotes(repo: Repo, wanted: dict[ObjectId, str]) -> dict[ObjectId, bool | str]:
    """For each object, whether the remote that promises it has it (True/False), or why that
    could not be checked (a message). One size request per object, ``core.jobs`` at once."""
    by_remote: dict[str, list[ObjectId]] = {}
    for oid, name in wanted.items():
        by_remote.setdefault(name, []).append(oid)
    found: dict[ObjectId, bool | str] = {}
    for name, oids in sorted(by_remote.items()):
        try:
            remote = open_remote(repo, name)
            if not remote_has_store(remote):
                found.update((oid, False) for oid in oids)  # the store there is gone
                continue

            def there(oid: ObjectId, remote: Any = remote) -> bool:
                try:
                    return bool(remote.storage.size(object_key(oid)) > 0)
                except NotFound:
                    return False

            with ThreadPoolExecutor(max_workers=int(repo.config.get("core.jobs"))) as pool:
                found.update(zip(oids, pool.map(there, oids), strict=True))
        except MvcError as exc:
            reason = f"could not be checked: {exc.message}"
            found.update((oid, reason) for oid in oids if oid not in found)
    return found


def _promised(repo: Repo) -> dict[ObjectId, str]:
    return promised_objects(repo)


def _tracking_roots(repo: Repo, grace: float | None, now: float) -> list[ObjectId]:
    """What remote-tracking refs reach stays, like what refs reach (fetched metadata)."""
    roots: list[ObjectId] = []
    for refs in tracking_roots(repo):
        roots += _ref_roots(refs, grace, now)[0]
    return roots


_DECODERS: dict[str, Callable[[dict[str, Any], str], object]] = {
    "file": decode_file_manifest,
    "tree": decode_tree,
    "version": decode_version,
}


def _check_structure(data: bytes, oid: ObjectId) -> None:
    """A metadata object must also decode as its type (a tree's paths are safe, ids well formed)."""
    value = decode_meta(data, oid)
    decoder = _DECODERS.get(value["type"])
    if decoder is not None:
        decoder(value, oid)


class _SkippingStore(ObjectStore):
    """An object store view that treats known-corrupt objects as absent (already reported)."""

    def __init__(self, inner: ObjectStore, skip: set[str | None]) -> None:
        super().__init__(inner.storage)
        self._skip = skip

    def read_stored(self, oid: str, *, size: int | None = None) -> bytes:
        if oid in self._skip:
            raise NotFound(f"object {oid[:12]} is corrupt")
        return super().read_stored(oid, size=size)


@dataclass
class GcResult(JsonShaped):
    dry_run: bool
    reachable: int = 0
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    kept_young: int = 0
    kept_by_retention: int = 0  # unreachable versions the retention rules keep (and their data)
    kept_by_log: int = 0  # unreachable from the refs, reached by a ref-log entry within grace
    temp_files_removed: int = 0
    repack: RepackResult | None = None

    json_shape: ClassVar[Shape] = Shape(convert={"deleted": len})  # a count: the ids can be many


def _refuse_if_refs_lost_data(repo: Repo, roots: list[ObjectId]) -> None:
    """gc cannot tell what a ref reaches through an object that is gone (quarantined, lost):
    it would collect good data below it."""
    import os

    lost = [oid for oid in roots if not repo.objects.has(oid)]
    quarantine = os.path.join(repo.store_dir, QUARANTINE)
    # Only object files count: refs/ holds ref-log entries `fsck --repair-refs` set aside.
    found = os.listdir(quarantine) if os.path.isdir(quarantine) else []
    set_aside = [name for name in found if is_object_id(name)]
    unrepaired = [name for name in set_aside if not repo.objects.has(name)]
    if lost or unrepaired:
        what = (
            f"a ref names missing object {lost[0][:12]}"
            if lost
            else f"{len(unrepaired)} quarantined object(s) have no good copy yet"
        )
        raise CorruptObject(
            f"gc stops: {what}, so it cannot tell which objects are still needed",
            hint="`mvc pull REMOTE MODEL` fetches good copies (or delete .mvc/quarantine/ to "
            "accept the loss), then run gc again",
        )


def _mark(repo: Repo, roots: Iterable[ObjectId], known: set[ObjectId]) -> set[ObjectId]:
    """What gc keeps: everything ``roots`` reach, delta bases included, beyond ``known``
    (reached before, with everything below it). An object that cannot be read stops gc: what
    it names would otherwise look unreachable and be deleted."""
    try:
        return graph.reachable(repo.objects, roots, graph.GC, known=known).reached
    except CorruptObject as exc:
        raise CorruptObject(
            f"{exc.message}; gc stops rather than delete what it names",
            object_id=exc.object_id,
            hint="run `mvc fsck`, restore the object (e.g. `mvc pull` from a remote), "
            "then run gc again",
        ) from exc


def _delta_bases(repo: Repo, reached: set[ObjectId]) -> set[ObjectId]:
    """The delta bases of ``reached`` objects (and theirs) that it lacks, read from headers
    under the exclusive lock: a repack between gc's first mark and the lock may have made a
    chunk marked then (whole, at the time) a delta against a chunk nothing else keeps."""
    found: set[ObjectId] = set()
    todo = list(reached)
    while todo:
        new: list[ObjectId] = []
        for oid in todo:
            try:
                base = codec.header_delta_base(repo.objects.read_header(oid))
            except (NotFound, CorruptObject):
                continue
            if base is not None and base[0] not in reached and base[0] not in found:
                found.add(ObjectId(base[0]))
                new.append(ObjectId(base[0]))
        todo = new
    return found


def gc(
    repo: Repo,
    *,
    dry_run: bool = False,
    grace: float | None = None,
    repack_objects: bool | None = None,
    progress: Progress | None = None,
) -> GcResult:
    import os

    grace = float(repo.config.get("gc.grace")) if grace is None else grace
    result = GcResult(dry_run)
    # Mark without the objects lock, so writers go on meanwhile; then, holding it exclusively
    # (no writer mid-way), read the refs again and mark what they reach that is new: only
    # objects unreachable from the refs as they are *then* are deleted.
    reachable = _mark(repo, _gc_roots(repo, grace), set())
    with repo.collecting_garbage():
        roots = [r for r in _gc_roots(repo, grace) if r not in reachable]
        reachable = _mark(repo, roots, reachable)
        # Counted as fsck counts: reachable from the refs' current values; what only a recent
        # ref-log entry (within the grace period) still reaches is kept, and counted apart.
        live = len(_mark(repo, _gc_roots(repo, 0.0), set())) if grace > 0 else len(reachable)
        by_refs = len(reachable)
        retained = retained_versions(repo, reachable)  # retention: not collectable yet
        result.kept_by_retention = len(retained)
        reachable = _mark(repo, retained, reachable)
        # A repack between the mark above and now may have made a kept chunk a delta of one the
        # mark did not reach: keep every base of what is kept.
        reachable |= _delta_bases(repo, reachable)
        result.reachable = min(live, by_refs)
        result.kept_by_log = by_refs - result.reachable
        crashpoint("gc.marked")
        for oid in repo.objects.iter_ids():
            if oid in reachable:
                continue
            key = object_key(oid)
            try:
                if repo.storage.age_seconds(key) < grace:
                    result.kept_young += 1
                    continue
                size = repo.storage.size(key)
            except NotFound:
                continue
            result.deleted.append(oid)
            result.deleted_bytes += size
            if not dry_run:
                repo.objects.delete(oid)
                crashpoint("gc.delete")
        if not dry_run:
            for path in repo.storage.stale_temp_files(max(grace, 3600.0)):
                try:
                    os.unlink(path)
                    result.temp_files_removed += 1
                except FileNotFoundError:
                    pass
    if not dry_run:
        do_repack = bool(repo.config.get("gc.repack")) if repack_objects is None else repack_objects
        if do_repack:  # re-encodes in place under the shared lock, beside other writers
            result.repack = repack(repo, reachable, progress=progress)
    return result


def _gc_roots(repo: Repo, grace: float) -> list[ObjectId]:
    """What gc keeps: what refs (and, within ``grace``, their recent values) and remote-tracking
    refs reach. Refuses when a ref log cannot be read or a ref names lost data."""
    import time

    with repo.refs._lock():  # type: ignore[misc]
        repo.refs.recover()
    roots, problems = _ref_roots(repo.refs, grace, time.time())
    if problems:  # a log it cannot read would make everything it names look unreachable
        raise CorruptObject(
            f"gc stops: {problems[0].detail}"
            + (f" (and {len(problems) - 1} more ref problems)" if len(problems) > 1 else ""),
            hint="run `mvc fsck` and repair the refs before gc",
        )
    _refuse_if_refs_lost_data(repo, roots)
    archived = [r.version for r in list_archives(repo.storage)]  # their metadata stays
    return roots + _tracking_roots(repo, grace, time.time()) + archived


@dataclass
class RepackResult(JsonShaped):
    examined: int = 0
    compressed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    deltas: int = 0  # chunks now stored as a delta against their parent's chunk


def live_versions(repo: Repo) -> list[ObjectId]:
    """Every version the refs (and remote-tracking refs) reach, history included, oldest
    first where history says so (a parent before its children)."""
    import time

    roots = _ref_roots(repo.refs, None, time.time())[0] + _tracking_roots(repo, None, time.time())
    history = graph.Rule(graph.Edges.HISTORY, graph.Missing.REPORT, graph.Unreadable.SKIP)
    order: list[ObjectId] = []
    for oid in graph.Walk(graph.StoreReader(repo.objects), history).run(roots):
        try:
            if repo.objects.get_meta(oid).get("type") == "version":
                order.append(oid)
        except MvcError:
            continue
    order.reverse()  # the walk meets children before parents
    return order


def repack(
    repo: Repo,
    ids: Iterable[ObjectId] | None = None,
    *,
    progress: Progress | None = None,
    locked: bool = False,
    deltas: bool = True,
    versions: list[ObjectId] | None = None,
) -> RepackResult:
    """Compress loose (raw) objects where it pays and, with ``deltas``, store each chunk of a
    fine-tuned tensor as a delta against its parent's chunk where that is smaller (see
    ``ops.deltas``). Ids never change; only envelopes do, each replaced atomically, so a repack
    killed at any point leaves every object readable. One repack that makes deltas runs at a
    time per store (two could otherwise make two chunks deltas of each other). ``versions``
    (parents before children): the versions whose chunks may become deltas against their
    parents' (default every live version; the background repack passes the ones it queued)."""
    import os
    from contextlib import nullcontext

    progress = progress or NullProgress()
    result = RepackResult()
    one_at_a_time = os.path.join(repo.store_dir, "locks", "repack")
    with (
        lock.hold(one_at_a_time, timeout=repo.lock_timeout) if deltas else nullcontext(),
        nullcontext() if locked else repo.writing_objects(),
    ):
        levels: list[list[planner.Pair]] = []
        if deltas:
            wanted = set(ids) if ids is not None else None
            history = versions if versions is not None else live_versions(repo)
            pairs = planner.candidate_pairs(repo.objects, history)
            if wanted is not None:
                pairs = [p for p in pairs if p.chunk in wanted]
            levels = planner.plan_levels(repo.objects, pairs)
        as_delta = {pair.chunk for level in levels for pair in level}
        todo = [
            o for o in (ids if ids is not None else repo.objects.iter_ids()) if o not in as_delta
        ]
        progress.start("compressing", len(todo) + len(as_delta))
        _compress(repo, todo, result, progress)
        for level in levels:
            _encode_deltas(repo, level, result, progress)
        progress.finish()
    return result


def _compress(repo: Repo, todo: list[ObjectId], result: RepackResult, progress: Progress) -> None:
    def one(oid: ObjectId) -> tuple[int, int]:
        try:
            stored = repo.objects.read_stored(oid)
            header, _ = codec.read_header(stored)
            if header["c"] != "raw" or header["n"] < 4096:
                return len(stored), len(stored)
            data = repo.objects.decode_stored(oid, stored)
            parts = codec.encode(data, elem_width=codec.element_width(stored), compress=True)
            size = sum(len(p) for p in parts)
            # Still raw: nothing compressed, and the envelope (with any page padding) stays.
            if size < len(stored) and not codec.is_raw(parts[0]):
                repo.objects.replace_encoding(oid, parts)
                crashpoint("repack.replace")
                return len(stored), size
            return len(stored), len(stored)
        except NotFound:
            return 0, 0
        finally:
            progress.advance(1)

    with ThreadPoolExecutor(max_workers=int(repo.config.get("core.jobs"))) as pool:
        for before, after in pool.map(one, todo):
            result.examined += 1
            result.bytes_before += before
            result.bytes_after += after
            if after < before:
                result.compressed += 1


def _encode_deltas(
    repo: Repo, level: list[planner.Pair], result: RepackResult, progress: Progress
) -> None:
    """One level of delta pairs (their bases have their final encodings already)."""

    def one(pair: planner.Pair) -> tuple[int, int, bool]:
        try:
            found = planner.encode_against(repo.objects, pair)
            if found is None:
                return 0, 0, False
            parts, before, after = found
            if after < before:
                repo.objects.replace_encoding(pair.chunk, parts)
                crashpoint("repack.delta")
            return before, after, codec.is_delta(parts[0]) if after < before else False
        finally:
            progress.advance(1)

    with ThreadPoolExecutor(max_workers=int(repo.config.get("core.jobs"))) as pool:
        for before, after, delta in pool.map(one, level):
            result.examined += 1
            result.bytes_before += before
            result.bytes_after += after
            if after < before:
                result.compressed += 1
            result.deltas += int(delta)
