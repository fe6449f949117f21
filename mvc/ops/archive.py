"""Archiving to cold storage, restoring, and the lifecycle plan: ``mvc archive``, ``mvc restore``,
``mvc policy plan|apply|log``.

Archiving a version moves the chunks only it needs (none a live version or a live chunk's delta
base needs) to a named cold remote, in an order that keeps every version readable at every
instant (``mvc.archives``):

1. copy each chunk to the cold remote (self-contained: a delta is re-encoded whole) and read it
   back there, verified against its id;
2. write the archive record (the version, the remote, the chunks, the rule);
3. holding the objects lock exclusively (no writer can be reusing a chunk meanwhile), recompute
   what live versions need and delete the local copies of the rest;
4. append the audit-log entry.

An interruption after 2 leaves a record and some local copies: the version counts as archived
(``mvc restore`` brings back what is missing) and ``mvc policy apply`` finishes the deletions
and logs the action, once: an action is logged under a key (version and record time) that a
re-run recognises. Restoring fetches each missing chunk from the cold remote, verifies it
(blake3 against its id), writes it, then logs and drops the record.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import quote

from mvc import audit, codec, graph
from mvc.archives import (
    ArchiveRecord,
    drop_archive,
    list_archives,
    read_archive,
    write_archive,
)
from mvc.deployment.records import decode_record
from mvc.errors import CorruptObject, MvcError, NotFound, PartialFailure, UsageError
from mvc.faults import crashpoint
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.lastuse import read_last_use
from mvc.objects import KIND_SAFETENSORS
from mvc.ops.catalog import load_catalog
from mvc.ops.remotes import _prepare_for_push
from mvc.policy.archive import (
    ARCHIVE,
    RETENTION,
    ArchiveFacts,
    ArchivePolicy,
    Decision,
    collectable,
    plan_archive,
    protection,
)
from mvc.policy.file import read_policy
from mvc.refnames import CHANNELS, HEADS, TAGS
from mvc.remotes import Remote, open_remote, tracking_roots
from mvc.repo import Repo
from mvc.specs import Resolved, SpecLike, resolve
from mvc.storage import lock
from mvc.store import object_key
from mvc.versioning import parse_semver

MANUAL = "manual"


def _holding_policy(repo: Repo) -> AbstractContextManager[None]:
    """One archiving process at a time (two applies from cron would both write a record for
    the same version, and log it twice): ``.mvc/locks/policy``, waited for like every lock."""
    return lock.hold(os.path.join(repo.store_dir, "locks", "policy"), timeout=repo.lock_timeout)


# --- facts --------------------------------------------------------------------------------------


def version_facts(repo: Repo) -> list[ArchiveFacts]:
    """What the rules see of every version a ref reaches (branches, tags, channels, history)."""
    catalog = load_catalog(repo)
    used = read_last_use(repo.store_dir)
    archived = {r.version for r in list_archives(repo.storage)}
    tags: dict[ObjectId, list[str]] = {}
    heads: dict[ObjectId, list[str]] = {}
    for kind, into in ((TAGS, tags), (HEADS, heads)):
        for ref in repo.refs.list_refs(kind):
            value = repo.refs.get(ref)
            if value is not None:
                into.setdefault(value, []).append(ref.name)
    served = _served(repo)
    bound = {b.version for b in repo.bindings() if b.version is not None}
    own_minor: dict[ObjectId, tuple[int, int]] = {}
    for oid, names in tags.items():
        parsed = [v for v in (parse_semver(n) for n in names) if v is not None]
        if parsed:
            top = max(parsed)
            own_minor[oid] = (top.major, top.minor)
    memo: dict[ObjectId, tuple[int, int] | None] = {}

    def minor_of(oid: ObjectId) -> tuple[int, int] | None:
        """Its own semver tag's minor, else its nearest first-parent ancestor's."""
        trail = []
        found: tuple[int, int] | None = None
        current: ObjectId | None = oid
        while current is not None and current in catalog.records:
            if current in memo:
                found = memo[current]
                break
            trail.append(current)
            if current in own_minor:
                found = own_minor[current]
                break
            parents = catalog.records[current]["parents"]
            current = ObjectId(parents[0]) if parents else None
        for step in trail:
            memo[step] = found
        return found

    facts = []
    for oid in sorted(catalog.reachable):
        record = catalog.records[oid]
        names = sorted(tags.get(oid, []))
        release = any((v := parse_semver(n)) is not None and not v.prerelease for n in names)
        last = used.get(oid)
        facts.append(
            ArchiveFacts(
                model=str(record["model"]),
                version=oid,
                created=str(record["time"]),
                last_used=last.at if last else None,
                tags=tuple(names),
                release=release,
                minor=minor_of(oid),
                channels=tuple(sorted(served.get(oid, []))),
                heads=tuple(sorted(heads.get(oid, []))),
                checked_out=oid in bound,
                archived=oid in archived,
            )
        )
    return facts


def _served(repo: Repo) -> dict[ObjectId, list[str]]:
    """Versions each channel serves now, or served in the record a rollback would restore."""
    served: dict[ObjectId, list[str]] = {}
    for ref in repo.refs.list_refs(CHANNELS):
        value = repo.refs.get(ref)
        for depth in range(2):
            if value is None:
                break
            try:
                record = decode_record(repo.objects.get_meta(value), value)
            except (NotFound, CorruptObject):
                break
            label = ref.name if depth == 0 else f"{ref.name} (rollback target)"
            for oid in record.refs():
                served.setdefault(oid, []).append(label)
            value = record.previous
    return served


# --- what live versions need --------------------------------------------------------------------


def _all_roots(repo: Repo) -> list[ObjectId]:
    """Every value any ref (or remote-tracking ref) ever held, and every checked-out version:
    a chunk one of them needs is never archived."""
    roots: list[ObjectId] = []
    for refs in [repo.refs, *tracking_roots(repo)]:
        for ref in refs.list_refs(live=False):
            roots += [e.new for e in refs.entries(ref) if e.new is not None]
    roots += [b.version for b in repo.bindings() if b.version is not None]
    return roots


def _live_versions(repo: Repo, cold: set[ObjectId]) -> set[ObjectId]:
    """Versions (and deployment records) reachable from any root, history included, except
    ``cold`` ones (archived, or being archived). The walk (``graph.LIVE``) reads versions and
    records only, never a tree or what it names."""
    reached = graph.walk(graph.StoreReader(repo.objects), _all_roots(repo), graph.LIVE).reached
    return reached - cold


def _delta_base(repo: Repo, oid: ObjectId) -> ObjectId | None:
    """The base a stored chunk is a delta against, read from its envelope's header only."""
    path = repo.storage.local_path(object_key(oid))
    try:
        if path is not None:
            with open(path, "rb") as handle:
                head = handle.read(64 * 1024)
        else:
            head = repo.objects.read_stored(oid)
        base = codec.delta_base(head)
    except (OSError, MvcError):
        return None
    return ObjectId(base[0]) if base else None


def _live_data(repo: Repo, cold: set[ObjectId]) -> set[ObjectId]:
    """Every object a live version needs: trees, manifests, chunks and their delta bases."""
    names = graph.Rule(graph.Edges.CLOSURE, graph.Missing.REPORT, graph.Unreadable.SKIP, False)
    versions = _live_versions(repo, cold)
    live = graph.walk(graph.StoreReader(repo.objects), versions, names).reached
    todo = [oid for oid in live if repo.objects.has(oid)]
    while todo:  # delta bases, and theirs, from the envelopes' headers
        found = [b for b in (_delta_base(repo, oid) for oid in todo) if b and b not in live]
        live.update(found)
        todo = found
    return live


def version_chunks(repo: Repo, version: ObjectId) -> tuple[dict[ObjectId, int], set[ObjectId]]:
    """Each chunk a version's files name, with its size; and the headers of its safetensors
    files (their first chunk: tensor names, shapes and dtypes), which count as metadata and
    stay local, so `show` and `diff` still describe an archived version's tensors."""
    tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
    chunks: dict[ObjectId, int] = {}
    headers: set[ObjectId] = set()
    for entry in tree.files.values():
        manifest = repo.objects.manifest_of(entry)
        for chunk in manifest.chunks:
            chunks[ObjectId(chunk.id)] = chunk.size
        if entry.kind == KIND_SAFETENSORS and manifest.chunks:
            headers.add(ObjectId(manifest.chunks[0].id))
    return chunks, headers


# --- archive and restore ------------------------------------------------------------------------


@dataclass
class ArchiveResult(JsonShaped):
    model: str
    version: ObjectId
    remote: str
    rule: str
    chunks_moved: int = 0
    bytes_moved: int = 0
    chunks_kept: int = 0  # shared with a live version: they stay here
    deleted: int = 0
    resumed: bool = False  # an interrupted archive finished
    logged: int | None = None  # the audit-log entry


def _cold(repo: Repo, name: str) -> Remote:
    remote = open_remote(repo, name)
    _prepare_for_push(remote)
    return remote


def _copy_verified(repo: Repo, cold: Remote, oid: ObjectId, size: int) -> None:
    """Write a chunk to the cold remote, self-contained, and check the copy there hashes to
    its id (an existing copy is checked too)."""
    key = object_key(oid)
    if cold.storage.exists(key):
        try:
            cold.objects.decode_stored(oid, cold.objects.read_stored(oid, size=size), size=size)
            return
        except CorruptObject:
            pass  # a damaged copy there: write it again
    stored = repo.objects.read_stored(oid, size=size)
    if codec.delta_base(stored) is not None:  # the cold store has no base to apply it to
        data = repo.objects.decode_stored(oid, stored, size=size)
        stored = b"".join(bytes(p) for p in codec.encode(data, compress=True))
    else:
        repo.objects.decode_stored(oid, stored, size=size)  # never copy damage away
    cold.storage.write(key, [stored])
    cold.objects.decode_stored(oid, cold.objects.read_stored(oid, size=size), size=size)


def archive_version(
    repo: Repo,
    spec: SpecLike,
    remote: str,
    *,
    rule: str = MANUAL,
    why: str = "archived by hand",
    jobs: int | None = None,
    locked: bool = False,
) -> ArchiveResult:
    """Move a version's own chunks to cold remote ``remote`` (see the module's docstring).
    ``locked``: the caller holds the policy lock (``apply``)."""
    with nullcontext() if locked else _holding_policy(repo):
        return _archive(repo, spec, remote, rule, why, jobs)


def _archive(
    repo: Repo, spec: SpecLike, remote: str, rule: str, why: str, jobs: int | None
) -> ArchiveResult:
    resolved: Resolved = resolve(repo, spec)
    version = resolved.version
    record = read_archive(repo.storage, version)
    workers = jobs or int(repo.config.get("core.jobs"))
    if record is None:
        facts = next((f for f in version_facts(repo) if f.version == version), None)
        guard = protection(facts) if facts else None
        if guard is not None and (facts and (facts.channels or facts.release)):
            raise UsageError(
                f"{resolved} is never archived: {guard}",
                hint="a version a channel serves or a release tag names stays local",
            )
        chunks, headers = version_chunks(repo, version)
        cold_set = {r.version for r in list_archives(repo.storage)} | {version}
        live = _live_data(repo, cold_set) | headers
        moving = {oid: size for oid, size in chunks.items() if oid not in live}
        missing = [oid for oid in moving if not repo.objects.has(oid)]
        if missing:
            raise NotFound(
                f"{resolved} cannot be archived: {len(missing)} of its chunks are not here "
                f"(e.g. {short(missing[0])})",
                hint="pull it first (`mvc pull REMOTE MODEL@REV`) or run `mvc fsck`",
            )
        cold = _cold(repo, remote)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda item: _copy_verified(repo, cold, *item), moving.items()))
        crashpoint("archive.copied")
        record = ArchiveRecord(
            resolved.model,
            version,
            remote,
            cold.storage.url,
            repo.now(),
            repo.identity(),
            rule,
            tuple(sorted(moving)),
            sum(moving.values()),
        )
        write_archive(repo.storage, record)
        crashpoint("archive.recorded")
        result = ArchiveResult(resolved.model, version, remote, rule)
        result.chunks_moved, result.bytes_moved = len(moving), record.bytes
        result.chunks_kept = len(chunks) - len(moving)
    else:
        result = ArchiveResult(record.model, version, record.remote, record.rule, resumed=True)
        result.chunks_moved, result.bytes_moved = len(record.chunks), record.bytes
    with repo.collecting_garbage():  # no writer mid-way: a chunk deleted now is reused by none
        needed = _needed_now(repo, version)
        if needed is not None:  # a channel or release tag took it meanwhile: keep it here
            drop_archive(repo.storage, version)
            raise UsageError(
                f"{record.model}@{short(version)} was not archived: {needed} since the "
                "archive began; its chunks stay here",
                hint="nothing to undo; the copies on the cold remote are harmless",
            )
        cold_set = {r.version for r in list_archives(repo.storage)}
        live = _live_data(repo, cold_set)
        for oid in record.chunks:
            if oid in live or not repo.objects.has(oid):
                continue
            repo.objects.delete(oid)
            result.deleted += 1
            crashpoint("archive.delete")
        # the Router's and load()'s default cache folder holds a copy of its files (router.py)
        shutil.rmtree(
            os.path.join(repo.store_dir, "cache", "serve", quote(record.model, safe=""), version),
            ignore_errors=True,
        )
    key = _action_key("archive", record)
    if key not in audit.logged_keys(repo.storage):
        entry = audit.append(
            repo.storage,
            when=repo.now(),
            who=repo.identity(),
            action="archive",
            model=record.model,
            version=version,
            rule=record.rule,
            why=why,
            key=key,
            detail={"remote": record.remote, "chunks": len(record.chunks), "bytes": record.bytes},
        )
        result.logged = entry.seq
    return result


def _needed_now(repo: Repo, version: ObjectId) -> str | None:
    """Whether a channel serves ``version`` or a release tag names it, as the refs are now."""
    served = _served(repo).get(version)
    if served:
        return f"served by channel {', '.join(served)}"
    for ref in repo.refs.list_refs(TAGS):
        parsed = parse_semver(ref.name)
        if parsed is not None and not parsed.prerelease and repo.refs.get(ref) == version:
            return f"release tag {ref.name}"
    return None


def _action_key(action: str, record: ArchiveRecord) -> str:
    return f"{action} {record.version} {record.when}"


@dataclass
class RestoreResult(JsonShaped):
    model: str
    version: ObjectId
    remote: str | None
    was_archived: bool
    chunks_restored: int = 0
    bytes_restored: int = 0
    logged: int | None = None


def _readable_here(repo: Repo, oid: ObjectId, size: int) -> bool:
    try:
        repo.objects.get_bytes(oid, size)
    except MvcError:
        return False
    return True


def restore_version(repo: Repo, spec: SpecLike, *, jobs: int | None = None) -> RestoreResult:
    """Bring an archived version's chunks back from its cold remote, verified, and drop the
    record. A version that is not archived is left as it is (``was_archived`` False)."""
    with _holding_policy(repo):
        return _restore(repo, spec, jobs)


def _restore(repo: Repo, spec: SpecLike, jobs: int | None) -> RestoreResult:
    resolved = resolve(repo, spec)
    record = read_archive(repo.storage, resolved.version)
    if record is None:
        return RestoreResult(resolved.model, resolved.version, None, False)
    result = RestoreResult(record.model, record.version, record.remote, True)
    sizes, _ = version_chunks(repo, record.version)
    cold = open_remote(repo, record.remote)

    def bring(oid: ObjectId) -> int:
        size = sizes.get(oid)
        if _readable_here(repo, oid, size or codec.MAX_OBJECT):
            return -1
        try:
            stored = cold.objects.read_stored(oid, size=size)
        except NotFound as exc:
            raise NotFound(
                f"chunk {short(oid)} of {record.model}@{short(record.version)} is not on cold "
                f"remote {record.remote} ({cold.storage.url})",
                hint="check the remote's URL (`mvc remote -v`); `mvc fsck` lists what is lost",
            ) from exc
        data = cold.objects.decode_stored(oid, stored, size=size)  # blake3 against its id
        repo.objects.write_stored(oid, stored, verify=False)
        return len(data)

    with (
        repo.writing_objects(),
        ThreadPoolExecutor(max_workers=jobs or int(repo.config.get("core.jobs"))) as pool,
    ):
        for size in pool.map(bring, record.chunks):
            if size >= 0:
                result.chunks_restored += 1
                result.bytes_restored += size
    crashpoint("restore.copied")
    key = _action_key("restore", record)
    if key not in audit.logged_keys(repo.storage):
        result.logged = audit.append(
            repo.storage,
            when=repo.now(),
            who=repo.identity(),
            action="restore",
            model=record.model,
            version=record.version,
            rule=None,
            why=f"restored from {record.remote}",
            key=key,
            detail={"chunks": result.chunks_restored, "bytes": result.bytes_restored},
        ).seq
    drop_archive(repo.storage, record.version)
    return result


# --- plan, apply, log ---------------------------------------------------------------------------


@dataclass
class PlannedAction(JsonShaped):
    action: str  # archive, resume, keep
    model: str
    version: ObjectId
    rule: str | None
    why: str
    remote: str | None
    facts: ArchiveFacts | None = None

    json_shape: ClassVar[Shape] = Shape(
        convert={"facts": lambda f: None if f is None else f.to_json()}
    )


@dataclass
class PolicyPlan(JsonShaped):
    source: str | None  # the policy file; None: there is none
    now: str
    actions: list[PlannedAction] = field(default_factory=list)  # what apply would do
    kept: list[PlannedAction] = field(default_factory=list)  # a rule matched; a protection won


def _interrupted(repo: Repo) -> list[ArchiveRecord]:
    done = audit.logged_keys(repo.storage)
    return [r for r in list_archives(repo.storage) if _action_key("archive", r) not in done]


def plan(repo: Repo) -> PolicyPlan:
    """Every action the policy would take now, and why."""
    policy = read_policy(repo.root)
    archive_policy = policy.get(ARCHIVE) or ArchivePolicy()
    now = repo.clock()
    result = PolicyPlan(policy.source, repo.now())
    for record in _interrupted(repo):
        result.actions.append(
            PlannedAction(
                "resume",
                record.model,
                record.version,
                record.rule,
                f"an archive to {record.remote} started {record.when} was interrupted: "
                "finish deleting the local copies",
                record.remote,
            )
        )
    decisions: list[Decision] = []
    if archive_policy.rules or archive_policy.models:
        decisions = plan_archive(archive_policy, version_facts(repo), now.timestamp())
    for d in decisions:
        remote = archive_policy.for_model(d.model).remote
        planned = PlannedAction(d.action, d.model, d.version, d.rule, d.why, remote, d.facts)
        (result.actions if d.action == "archive" else result.kept).append(planned)
    return result


@dataclass
class AppliedAction(JsonShaped):
    action: str
    model: str
    version: ObjectId
    rule: str | None
    status: str  # done, failed
    detail: str
    logged: int | None = None


@dataclass
class ApplyResult(JsonShaped):
    now: str
    actions: list[AppliedAction] = field(default_factory=list)

    @property
    def failed(self) -> list[AppliedAction]:
        return [a for a in self.actions if a.status == "failed"]


def apply(repo: Repo, *, jobs: int | None = None) -> ApplyResult:
    """Do what ``plan`` says, each action recorded in the audit log. Safe to interrupt and to
    run again: an interrupted archive is finished, a finished one is never repeated."""
    with _holding_policy(repo):
        return _apply(repo, jobs)


def _apply(repo: Repo, jobs: int | None) -> ApplyResult:
    planned = plan(repo)  # under the lock: what another apply did meanwhile is seen
    result = ApplyResult(planned.now)
    for action in planned.actions:
        assert action.remote is not None or action.action == "resume"
        try:
            done = archive_version(
                repo,
                Resolved(action.model, action.version, "id"),
                action.remote or "",
                rule=action.rule or MANUAL,
                why=action.why,
                jobs=jobs,
                locked=True,
            )
        except MvcError as exc:
            result.actions.append(
                AppliedAction(
                    action.action, action.model, action.version, action.rule, "failed", exc.message
                )
            )
            continue
        detail = (
            f"{done.chunks_moved} chunk(s), {done.bytes_moved} bytes to {done.remote}; "
            f"{done.chunks_kept} chunk(s) kept here (shared, or safetensors headers)"
        )
        result.actions.append(
            AppliedAction(
                action.action,
                action.model,
                action.version,
                action.rule,
                "done",
                detail,
                done.logged,
            )
        )
    return result


def require_applied(result: ApplyResult) -> None:
    if result.failed:
        first = result.failed[0]
        raise PartialFailure(
            f"{len(result.failed)} of {len(result.actions)} policy action(s) failed; first: "
            f"{first.action} {first.model}@{short(first.version)}: {first.detail}",
            hint="fix the cause and run `mvc policy apply` again: done actions are not repeated",
        )


def policy_log(repo: Repo) -> list[audit.AuditEntry]:
    return audit.read_log(repo.storage)


def archived_versions(repo: Repo) -> list[ArchiveRecord]:
    return list_archives(repo.storage)


# --- retention: what gc may collect -------------------------------------------------------------


def retained_versions(repo: Repo, reachable: set[ObjectId]) -> list[ObjectId]:
    """Versions no ref reaches that the ``retention:`` rules do not let gc collect yet (with
    no ``retention:`` section: none, gc collects as before). Candidates are the versions any
    ref-log entry ever named, and their history."""
    policy = read_policy(repo.root).get(RETENTION)
    if policy is None:
        return []
    used = read_last_use(repo.store_dir)
    now = repo.clock().timestamp()
    history = graph.Rule(graph.Edges.HISTORY, graph.Missing.REPORT, graph.Unreadable.SKIP)
    seen = graph.walk(graph.StoreReader(repo.objects), _all_roots(repo), history).reached
    kept = []
    for oid in sorted(seen - reachable):
        try:
            value = repo.objects.get_meta(oid)
        except MvcError:
            continue
        if value.get("type") != "version":
            continue
        last = used.get(oid)
        facts = ArchiveFacts(
            str(value["model"]), oid, str(value["time"]), last.at if last else None
        )
        if collectable(policy, facts, now) is None:
            kept.append(oid)
    return kept
