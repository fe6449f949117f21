"""Remotes: other stores reached through fsspec URLs; push, fetch, pull and clone.

A remote has a local store's layout (``format``, ``objects/``, ``refs/``), so it is an
``ObjectStore`` and a ``RefStore`` over a remote storage, and push and pull are one
``mvc.transfer.transfer`` with the stores swapped. A local path that holds a store (``DIR/.mvc``)
is used as that store.

Configuration (read, and remotes opened, by :mod:`mvc.remotes`) lives in the store's config,
never credentials (the backend's usual sources supply them):

    remote.<name>.url              a folder, file:// or any fsspec URL (no password, no query)
    remote.<name>.options.<key>    non-secret fsspec options (endpoint_url, profile, ...)
    remote.<name>.atomic_create    "true"/"false": the backend's create-if-absent, probed

Invariants:

- **Objects first, then refs.** A push copies every object before it moves a remote ref; remote
  refs then move one by one (tags, branches, channels), each by compare-and-swap: creating the
  next entry of the ref's log with create-if-absent. A writer that loses gets "remote ref
  moved; pull and retry" (exit 11); nothing is overwritten. Without ``--force`` a branch or
  channel moves only forward (the remote value is in the history of the pushed one); tags never
  move, on either side.
- **Only backends that honour create-if-absent take concurrent pushes.** ``remote add`` probes it;
  pushing to a backend without it needs ``--single-writer``, which the ref log records.
- **Remote-tracking refs** live in the local store under ``remotes/<name>/refs/...`` in the refs'
  log layout, names validated like local refs. Every value they ever held marks objects the
  remote *promises*: their metadata is local after a fetch, their chunk data may not be. fsck
  reports such missing chunks as expected from that remote, and ``ensure_present`` fetches them
  when a version is checked out.
- **Everything read from a remote is validated** before use: ref names (``RefName``), log
  entries (object ids), objects (hashed against their ids; metadata decoded as its type).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, ClassVar
from urllib.parse import urlsplit

from mvc.deployment.records import decode_record
from mvc.errors import (
    AmbiguousSpec,
    CorruptObject,
    DirtyWorkingFolder,
    ImmutableRef,
    InvalidName,
    MvcError,
    NotFound,
    PartialFailure,
    RefConflict,
    RemoteError,
    UnknownFormat,
    UsageError,
)
from mvc.faults import crashpoint
from mvc.graph import is_ancestor
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.lastuse import note_use
from mvc.ops.channels import load_record
from mvc.ops.lifecycle import deprecation_of
from mvc.ops.push_repack import pack_for_push
from mvc.ops.setup import init_store
from mvc.ops.signing import require_signed
from mvc.ops.status import folder_state
from mvc.ops.worktrees import checkout
from mvc.progress import Progress
from mvc.refnames import (
    CHANNELS,
    HEADS,
    KIND_WORD,
    NOTES,
    TAGS,
    RefName,
    branch,
    channel,
    notes,
    tag,
    validate_remote,
)
from mvc.refs import SEQ_DIGITS, RefEntry, RefStore, RefUpdate, decode_entry
from mvc.remotes import (
    TRACKING,
    Remote,
    RemoteConfig,
    _is_working_store,
    _jobs,
    _receive,
    open_remote,
    open_remote_storage,
    remote_config,
    remote_names,
    tracked_values,
    tracking_refs,
    validate_option,
    with_archived_data,
)
from mvc.repo import FORMAT_LINE, STORE_DIR, Binding, Repo
from mvc.specs import by_id, parse_spec, resolve_branch, tag_candidates
from mvc.storage import lock
from mvc.storage.base import Storage
from mvc.storage.local import LocalStorage
from mvc.storage.remote import open_storage, probe_atomic_create
from mvc.storage.small import read_small
from mvc.store import FORMAT_FILE, NEWEST_FORMAT, ObjectStore, format_of_line
from mvc.transfer import FETCH, PULL, PUSH, TransferResult, Want, transfer

#: Names a folder or bucket prefix may hold before it is first pushed to.
_LAYOUT = {FORMAT_FILE, "objects", "refs", "probe", "config.yaml"}
#: Remote refs move in this order: names first, deployments last.
_ORDER = {TAGS: 0, HEADS: 1, NOTES: 2, CHANNELS: 3}

#: How many of a remote ref's newest log entries fetch and pull check for a broken chain.
CHAIN_CHECK = 16


# --- configuration --------------------------------------------------------------------------------


def _normalise_url(url: str) -> str:
    """An absolute folder path, or the URL itself; refuses URLs that carry secrets."""
    if not url:
        raise UsageError("empty remote URL")
    if "://" not in url:
        return os.path.abspath(url)
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    if parts.password is not None or parts.query or parts.fragment:
        raise UsageError(
            f"refusing remote URL {shown}: it carries a password, a query or a fragment, "
            "where credentials and signatures live",
            hint="give the plain URL; credentials come from the backend's usual sources",
        )
    return url


@dataclass
class AddResult(JsonShaped):
    remote: RemoteConfig
    warnings: list[str] = field(default_factory=list)

    json_shape: ClassVar[Shape] = Shape(flatten=("remote",))


def remote_place(storage: Storage, label: str) -> str:
    """What is at a remote's URL, read without writing: ``"store"`` (an mvc store with refs),
    ``"empty store"`` (a store with no refs yet, or an empty folder or prefix, which the first
    push makes a store), or ``"absent"`` (a local folder that does not exist). A place that
    holds anything else is refused: mvc writes nothing into a folder that is not its own."""
    if storage.exists(FORMAT_FILE):
        return "store" if storage.list("refs") else "empty store"
    foreign = [n for n in storage.list("") if n not in _LAYOUT]
    if foreign:
        raise UsageError(
            f"{label} is neither an mvc store nor empty (it holds {', '.join(foreign[:3])})",
            hint="check the path; a remote is an mvc store, or an empty folder or bucket prefix",
        )
    root = storage.local_root()
    if root is not None and not os.path.isdir(root):
        return "absent"
    return "empty store"


def add_remote(repo: Repo, name: str, url: str, options: dict[str, str] | None = None) -> AddResult:
    """Record a remote and probe whether its backend honours create-if-absent.

    A URL that holds something other than an mvc store is refused before anything is written
    there (an empty or absent folder is probed, as the first push would create it)."""
    validate_remote(name)
    if name in remote_names(repo):
        raise UsageError(
            f"remote {name!r} already exists",
            hint=f"remove it first (`mvc remote remove {name}`) or change an option "
            f"(`mvc remote set-option {name} KEY VALUE`)",
        )
    options = {validate_option(k, str(v)): str(v) for k, v in (options or {}).items()}
    url = _normalise_url(url)
    storage = open_remote_storage(repo, url, options)
    warnings = []
    atomic: bool | None
    try:
        remote_place(storage, storage.url)  # refuses a place holding something else
        atomic = _probe(storage)
    except RemoteError as exc:
        atomic = None
        warnings.append(
            f"could not probe {storage.url} for create-if-absent ({exc.message}); "
            "it is probed again before the first push"
        )
    if atomic is False:
        warnings.append(
            f"{storage.url} does not honour create-if-absent: concurrent pushes could lose "
            "updates, so pushes need --single-writer"
        )
    with repo.editing_config() as values:
        values[f"remote.{name}.url"] = url
        for key, value in options.items():
            values[f"remote.{name}.options.{key}"] = value
        if atomic is not None:
            values[f"remote.{name}.atomic_create"] = "true" if atomic else "false"
    return AddResult(remote_config(repo, name), warnings)


def _probe(storage: Storage) -> bool:
    return probe_atomic_create(storage)


def remove_remote(repo: Repo, name: str) -> RemoteConfig:
    """Forget a remote: its configuration and its remote-tracking refs."""
    config = remote_config(repo, name)
    with repo.editing_config() as values:
        for key in [k for k in values if k.startswith(f"remote.{name}.")]:
            del values[key]
    for key in list(repo.storage.walk(f"{TRACKING}/{name}")):
        repo.storage.delete(key)
    return config


def set_remote_option(repo: Repo, name: str, key: str, value: str | None) -> RemoteConfig:
    """Set (or with ``value=None`` remove) a storage option; the backend is probed again later."""
    remote_config(repo, name)
    validate_option(key, value)
    with repo.editing_config() as values:
        full = f"remote.{name}.options.{key}"
        if value is None:
            if full not in values:
                raise NotFound(f"remote {name!r} has no option {key!r}")
            del values[full]
        else:
            values[full] = value
        values.pop(f"remote.{name}.atomic_create", None)  # another endpoint may differ
    return remote_config(repo, name)


# --- opening a remote -----------------------------------------------------------------------------


def _remote_has_store(remote: Remote) -> bool:
    try:
        line = read_small(remote.storage, FORMAT_FILE, 200)
    except NotFound:
        return False
    if format_of_line(line) is None:
        raise UnknownFormat(
            f"{remote.label} holds a store of format {line[:60]!r}; this mvc reads "
            f"store formats 1 to {NEWEST_FORMAT} and will not touch it",
            hint="upgrade mvc",
        )
    return True


def _prepare_for_push(remote: Remote) -> None:
    """Make sure the remote is a store of our format, creating one in an empty place."""
    if _remote_has_store(remote):
        return
    foreign = [n for n in remote.storage.list("") if n not in _LAYOUT]
    if foreign:
        raise UsageError(
            f"{remote.label} is neither an mvc store nor empty (it holds {', '.join(foreign[:3])})",
            hint="push to an empty folder or bucket prefix, or to an existing mvc store",
        )
    if not remote.storage.create_exclusive(FORMAT_FILE, FORMAT_LINE.encode()):
        _remote_has_store(remote)  # another pusher created it first: check it is ours


def _writers_checked(repo: Repo, remote: Remote, single_writer: bool) -> bool:
    """Whether the remote honours create-if-absent (probing once); refuses if not, unless
    ``single_writer``. Returns True when the push relies on ``--single-writer``."""
    atomic = remote.config.atomic_create
    if atomic is None:
        atomic = _probe(remote.storage)
        with repo.editing_config() as values:
            values[f"remote.{remote.name}.atomic_create"] = "true" if atomic else "false"
    atomic = atomic and remote.storage.atomic_create
    if atomic:
        return False
    if not single_writer:
        raise UsageError(
            f"{remote.label} does not honour create-if-absent, so two pushes at once could "
            "overwrite each other's ref updates",
            hint="if only one writer ever pushes there, run again with --single-writer "
            "(the remote's ref log records it)",
        )
    return True


# --- remote-tracking refs -------------------------------------------------------------------------


def _track(repo: Repo, name: str, ref: RefName, new: ObjectId | None, why: str) -> str | None:
    """Move a tracking ref; a warning if it cannot (a remote tag that moved)."""
    refs = tracking_refs(repo, name)
    current = refs.get(ref)
    if current == new:
        return None
    try:
        refs.set_if_equals(ref, current, new, why)
    except ImmutableRef:
        return (
            f"remote {name}'s tag {ref.name!r} of {ref.model!r} now names {short(new or '')}, "
            f"but it named {short(current or '')} before; tags never move, so it was not followed"
        )
    except RefConflict:
        return None  # another command updated it meanwhile; the next fetch settles it
    return None


# --- rewritten remote histories ------------------------------------------------------------------


def _log_tail(remote: Remote, ref: RefName, stop_at: ObjectId | None) -> list[RefEntry]:
    """The newest entries of a remote ref's log, oldest first: back to the entry that set
    ``stop_at`` (the value we saw last), at most ``CHAIN_CHECK`` of them."""
    seqs = sorted(
        int(n) for n in remote.storage.list(ref.folder) if n.isdigit() and len(n) == SEQ_DIGITS
    )
    tail: list[RefEntry] = []
    for seq in reversed(seqs[-CHAIN_CHECK:]):
        try:
            data = read_small(remote.storage, f"{ref.folder}/{seq:0{SEQ_DIGITS}d}")
            tail.insert(0, decode_entry(data, ref, seq))
        except CorruptObject:
            if not tail:
                raise  # the newest entry: the ref itself is unreadable
            break  # an older entry is damaged: check what is readable (fsck names the rest)
        if stop_at is not None and tail[0].new == stop_at:
            break
    return tail


def _broken_link(tail: list[RefEntry]) -> str | None:
    for before, after in zip(tail, tail[1:], strict=False):
        if after.old != before.new:
            return (
                f"its log is broken: entry {after.seq} starts from "
                f"{short(after.old) if after.old else 'nothing'}, but entry {before.seq} "
                f"ended at {short(before.new) if before.new else 'nothing'}"
            )
    return None


def _moved_tag(ref: RefName, tail: list[RefEntry]) -> str | None:
    values = {e.new for e in tail if e.new is not None}
    if ref.kind == TAGS and len(values) > 1:
        return f"its log shows it naming {', '.join(sorted(short(v) for v in values))}"
    return None


def _rewrite(repo: Repo, remote: Remote, ref: RefName, new: ObjectId) -> str | None:
    """Why the remote's ``new`` value of ``ref`` is not a plain step forward from what this
    store saw there (None when it is): the remote's log chain is broken, or the value
    does not descend from the one the tracking ref held before its latest change.

    Runs before or after the tracking ref follows ``new`` (fetch, then pull, see the same).
    The caller has the remote's metadata for ``new`` (fetch or pull brought it)."""
    refs = tracking_refs(repo, remote.name)
    latest = refs.latest(ref)
    seen = latest.old if latest is not None and latest.new == new else refs.get(ref)
    with _reading(remote):
        tail = _log_tail(remote, ref, seen)
    reason = _moved_tag(ref, tail) or _broken_link(tail)
    if reason is None and seen is not None and seen != new and ref.kind != TAGS:
        if is_ancestor(repo.objects, new, seen):
            reason = f"it moved backwards from {short(seen)} to {short(new)}"
        elif not is_ancestor(repo.objects, seen, new):
            reason = (
                f"it moved from {short(seen)} to {short(new)}, which does not descend from "
                f"{short(seen)}"
            )
    return reason


def _rewrite_warning(remote: Remote, ref: RefName, reason: str) -> str:
    if ref.kind == TAGS:
        return (
            f"remote {remote.name}'s tag {ref.name!r} of {ref.model!r} moved ({reason}); tags "
            "never move, so it was not followed"
        )
    return (
        f"remote {remote.name} rewrote the history of {ref}: {reason}; a local branch is not "
        f"moved onto it without --force"
    )


# --- results --------------------------------------------------------------------------------------


@dataclass
class RefChange(JsonShaped):
    ref: RefName
    old: ObjectId | None
    new: ObjectId | None
    status: str  # created, fast-forward, forced, up-to-date, ahead, deleted

    json_shape: ClassVar[Shape] = Shape(
        convert={
            "ref": lambda ref: {"model": ref.model, "kind": KIND_WORD[ref.kind], "name": ref.name}
        },
        flatten=("ref",),
    )


@dataclass
class PushResult(JsonShaped):
    remote: str
    url: str
    refs: list[RefChange] = field(default_factory=list)
    transfer: TransferResult = field(default_factory=TransferResult)
    single_writer: bool = False


@dataclass
class FetchResult(JsonShaped):
    remote: str
    url: str
    refs: list[RefChange] = field(default_factory=list)
    transfer: TransferResult = field(default_factory=TransferResult)
    warnings: list[str] = field(default_factory=list)
    # Models left out because the remote's ref log or data for them is damaged: why.
    damaged: dict[str, str] = field(default_factory=dict)


@dataclass
class PullResult(FetchResult):
    updated_folders: list[str] = field(default_factory=list)


@dataclass
class CloneResult(JsonShaped):
    path: str
    remote: RemoteConfig
    fetch: FetchResult
    pull: PullResult | None
    checked_out: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- choosing refs --------------------------------------------------------------------------------


def _live_refs(refs: RefStore, model: str | None) -> list[tuple[RefName, ObjectId]]:
    found = []
    for ref in refs.list_refs(model=model, live=False):
        value = refs.get(ref)
        if value is not None:
            found.append((ref, value))
    return found


def _named_refs(
    refs: RefStore, objects: ObjectStore, spec_text: str, where: str
) -> list[tuple[RefName, ObjectId]]:
    """The refs a push/pull spec names: ``MODEL`` (all its refs) or ``MODEL@BRANCH|TAG|CHANNEL``,
    with the annotations of the versions they name (``objects`` holds those refs' records)."""
    spec = parse_spec(spec_text)
    if spec.back:
        raise UsageError(
            f"{spec_text}: push and pull name refs, not versions",
            hint="write MODEL or MODEL@BRANCH, MODEL@TAG, MODEL@CHANNEL",
        )
    model = spec.model
    if spec.rev is None:
        found = _live_refs(refs, model)
        if not found:
            raise NotFound(f"{where} has no model named {model!r}")
        return found
    qualifier, eq, rest = spec.rev.partition("=")
    only = qualifier if eq and qualifier in ("branch", "tag", "channel") else None
    name = rest if only else spec.rev
    candidates: list[list[RefName]] = []
    for kind, make, names in (
        ("branch", branch, [name]),
        ("tag", tag, tag_candidates(name)),
        ("channel", channel, [name]),
    ):
        if only in (None, kind):
            group = []
            for candidate in names:
                try:
                    group.append(make(model, candidate))
                except InvalidName:
                    continue
            candidates.append(group)
    hits = []
    for group in candidates:
        for ref in group:
            value = refs.get(ref)
            if value is not None:
                hits.append((ref, value))
                break  # v1.0.0 and 1.0.0 are one tag
    if len(hits) > 1:
        listing = ", ".join(f"{KIND_WORD[r.kind]} {r.name}" for r, _ in hits)
        raise AmbiguousSpec(
            f"{spec_text} names more than one ref in {where}: {listing}",
            hint=f"say which: {model}@branch={name}, {model}@tag={name} or {model}@channel={name}",
        )
    if not hits:
        raise NotFound(f"{where} has no branch, tag or channel {name!r} of model {model!r}")
    return hits + _notes_of(refs, objects, hits)


def _notes_of(
    refs: RefStore, objects: ObjectStore, hits: list[tuple[RefName, ObjectId]]
) -> list[tuple[RefName, ObjectId]]:
    """The annotations of the versions named refs point at travel with them: a branch's or
    tag's version, and every version (base and adapter) a channel's arms serve, so that a
    pull of ``bert@prod`` alone brings the signatures and deprecations of what prod serves."""
    versions: list[tuple[str, ObjectId]] = []
    for ref, value in hits:
        if ref.kind != CHANNELS:
            versions.append((ref.model, value))
            continue
        record = decode_record(objects.get_meta(value), value)
        for arm in record.arms:
            versions.append((ref.model, arm.version))
            if arm.adapter is not None:
                versions.append((arm.adapter.model, arm.adapter.version))
    found = []
    for model, version in dict.fromkeys(versions):
        note_ref = notes(model, version)
        head = refs.get(note_ref)
        if head is not None:
            found.append((note_ref, head))
    return found


@contextmanager
def _reading(remote: Remote) -> Iterator[None]:
    """Damage in a remote's ref logs is reported as the remote's."""
    try:
        yield
    except CorruptObject as exc:
        raise CorruptObject(
            f"{remote.label}: {exc.message}",
            hint="the remote's ref log is damaged; repair it there before syncing",
        ) from exc


def _remote_get(remote: Remote, ref: RefName) -> ObjectId | None:
    with _reading(remote):
        return remote.refs.get(ref)


def _remote_refs(remote: Remote, model: str | None) -> dict[RefName, ObjectId]:
    with _reading(remote):
        return dict(_live_refs(remote.refs, model))


# --- push -----------------------------------------------------------------------------------------


def push(
    repo: Repo,
    remote_name: str,
    spec: str | None = None,
    *,
    all_models: bool = False,
    force: bool = False,
    single_writer: bool = False,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Send refs and every object they need; objects first, then each ref by compare-and-swap."""
    if (spec is None) == (not all_models):
        raise UsageError(
            "push needs either a spec (MODEL or MODEL@REF) or --all, not both",
            hint=f"mvc push {remote_name} bert, mvc push {remote_name} bert@v1.0.0 or --all",
        )
    remote = open_remote(repo, remote_name)
    relies_on_single_writer = _writers_checked(repo, remote, single_writer)
    local = (
        _live_refs(repo.refs, None)
        if spec is None
        else _named_refs(repo.refs, repo.objects, spec, "this store")
    )
    if not local:
        raise NotFound("this store has no refs to push", hint="commit a version first")
    _prepare_for_push(remote)
    result = PushResult(remote.name, remote.storage.url, single_writer=relies_on_single_writer)
    for ref, new in sorted(local, key=lambda item: (_ORDER[item[0].kind], item[0])):
        result.refs.append(_plan_push(repo, remote, ref, _remote_get(remote, ref), new, force))
    moving = [c for c in result.refs if c.status != "up-to-date"]
    for change in result.refs:  # a push killed after moving a remote ref never tracked it
        if change.status == "up-to-date":
            _track(repo, remote.name, change.ref, change.new, "push")
    if not moving:
        return result
    with _holding_objects(repo, remote):  # gc there waits until the refs moved
        result.transfer = _push_objects(repo, remote, moving, jobs, progress)
        crashpoint("push.objects")
        _move_remote_refs(repo, remote, moving, relies_on_single_writer)
    return result


def _holding_objects(repo: Repo, remote: Remote) -> Any:
    """A working store's objects lock, shared (as its own writers take it), so its gc cannot
    delete what a push found there and counts on; other remotes have no gc to wait for."""
    from contextlib import nullcontext

    if not _is_working_store(remote.storage):
        return nullcontext()
    path = os.path.join(remote.storage.root, "locks", "objects")  # type: ignore[attr-defined]
    return lock.hold(path, shared=True, timeout=repo.lock_timeout)


def _push_objects(
    repo: Repo,
    remote: Remote,
    moving: list[RefChange],
    jobs: int | None,
    progress: Progress | None,
) -> TransferResult:
    return transfer(
        with_archived_data(repo),  # an archived version's chunks come from its cold remote
        remote.objects,
        [c.new for c in moving if c.new],
        PUSH,
        jobs=_jobs(repo, jobs),
        flush_bytes=int(repo.config.get("transfer.flush_bytes")),
        progress=progress,
        source_label=f"this store ({repo.store_dir})",
        missing_hint="this store lacks data the push needs; `mvc fsck` lists what, and "
        "`mvc pull` from a remote that has it fills it in",
        # A bare remote is written only by transfers (children first), so an object there
        # has its closure; a working store may hold fetched metadata without its data.
        trust_destination=not _is_working_store(remote.storage),
        trust_source_checksums=True,  # this store's objects entered it verified
        description=f"pushing to {remote.name}",
        # The remote receives the compact form (ops/push_repack.py).
        before_copy=partial(pack_for_push, repo) if repo.config.get("push.repack") else None,
    )


def _plan_push(
    repo: Repo, remote: Remote, ref: RefName, old: ObjectId | None, new: ObjectId, force: bool
) -> RefChange:
    if old == new:
        return RefChange(ref, old, new, "up-to-date")
    if ref.kind == TAGS and old is not None:
        raise ImmutableRef(
            f"tag {ref.name!r} of {ref.model!r} names {short(old)} on {remote.label} but "
            f"{short(new)} here; tags never move",
            hint="give this version a new tag name (e.g. `mvc tag --bump patch`)",
        )
    if old is None:
        return RefChange(ref, old, new, "created")
    if is_ancestor(repo.objects, old, new):
        return RefChange(ref, old, new, "fast-forward")
    if force:
        return RefChange(ref, old, new, "forced")
    raise RefConflict(
        f"remote ref moved; pull and retry: {ref} on {remote.label} is at {short(old)}, "
        f"which is not in the history of {short(new)}",
        hint=f"`mvc pull {remote.name} {ref.model}@{ref.name}` and push again, or "
        "--force to overwrite it (the remote's ref log records it)",
    )


def _move_remote_refs(
    repo: Repo, remote: Remote, moving: list[RefChange], single_writer: bool
) -> None:
    moved: list[str] = []
    for change in moving:
        why = "push"
        if change.status == "forced":
            why += f" --force (replaced {short(change.old or '')})"
        if single_writer:
            why += " --single-writer"
        try:
            remote.refs.set_if_equals(change.ref, change.old, change.new, why)
        except ImmutableRef:
            raise
        except RefConflict as exc:
            message = (
                f"remote ref moved; pull and retry: {change.ref} on {remote.label} changed "
                "while this push ran (another writer got there first; nothing was overwritten)"
            )
            hint = f"`mvc pull {remote.name} {change.ref.model}@{change.ref.name}` and push again"
            if not moved:
                raise RefConflict(message, hint=hint) from exc
            raise PartialFailure(
                f"{message}; already updated: {', '.join(moved)}", hint=hint
            ) from exc
        moved.append(str(change.ref))
        crashpoint("push.ref")
        _track(repo, remote.name, change.ref, change.new, "push")


# --- fetch and pull -------------------------------------------------------------------------------


def fetch(
    repo: Repo,
    remote_name: str,
    *,
    model: str | None = None,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> FetchResult:
    """Update remote-tracking refs and bring their metadata (no tensor data)."""
    remote = open_remote(repo, remote_name)
    result = FetchResult(remote.name, remote.storage.url)
    found = _readable_refs(remote, model, result.damaged) if _remote_has_store(remote) else {}
    # Refs move while the objects lock is still held, so gc cannot collect (old, already
    # present) objects between the transfer and the refs that make them reachable.
    with repo.writing_objects():
        if found:
            result.transfer = _receive_models(
                repo, remote, found, FETCH, "fetching from", jobs, progress, result.damaged
            )
        tracked = {
            r: v
            for r, v in tracked_values(repo, remote.name).items()
            if r.model not in result.damaged
        }
        for ref in sorted(set(found) | {r for r in tracked if model is None or r.model == model}):
            old, new = tracked.get(ref), found.get(ref)
            if old == new:
                continue
            rewrite = _rewrite(repo, remote, ref, new) if new is not None else None
            if rewrite is not None:
                result.warnings.append(_rewrite_warning(remote, ref, rewrite))
                if ref.kind == TAGS:
                    continue  # tags never move: the tracking ref keeps what it had
            warning = _track(repo, remote.name, ref, new, "fetch")
            if warning:
                result.warnings.append(warning)
                continue
            status = "created" if old is None else "deleted" if new is None else "updated"
            result.refs.append(RefChange(ref, old, new, "rewritten" if rewrite else status))
    return result


def pull(
    repo: Repo,
    remote_name: str,
    spec: str | None = None,
    *,
    all_models: bool = False,
    force: bool = False,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> PullResult:
    """Bring the objects one ref (or all of a model's, or ``all_models``) needs, then move the
    local refs: new ones are created, branches and channels fast-forward, tags never move."""
    if (spec is None) == (not all_models):
        raise UsageError(
            "pull needs either a spec (MODEL or MODEL@REF) or --all, not both",
            hint=f"mvc pull {remote_name} bert@prod, mvc pull {remote_name} bert or --all",
        )
    remote = open_remote(repo, remote_name)
    if not _remote_has_store(remote):
        raise NotFound(
            f"{remote.label} is empty", hint=f"push to it first: mvc push {remote_name} MODEL"
        )
    result = PullResult(remote.name, remote.storage.url)
    if spec is None:
        wanted = _readable_refs(remote, None, result.damaged)
    else:
        with _reading(remote):
            wanted = dict(_named_refs(remote.refs, remote.objects, spec, remote.label))
    if not wanted:
        return result
    # Objects and the refs that reach them under one hold of the objects lock (see fetch).
    with repo.writing_objects():
        result.transfer = _receive_models(
            repo, remote, wanted, PULL, "pulling from", jobs, progress, result.damaged
        )
        crashpoint("pull.objects")
        rewrites: dict[RefName, str] = {}
        for ref, value in list(wanted.items()):
            here = repo.refs.get(ref)  # already there: nothing moves, nothing to warn about
            rewrite = _rewrite(repo, remote, ref, value) if here != value else None
            if rewrite is not None:
                result.warnings.append(_rewrite_warning(remote, ref, rewrite))
                rewrites[ref] = rewrite
                if ref.kind == TAGS:
                    del wanted[ref]  # a tag that moved is neither tracked nor pulled
                    continue
            warning = _track(repo, remote.name, ref, value, "pull")
            if warning:
                result.warnings.append(warning)
                if ref.kind == TAGS:
                    del wanted[ref]
        crashpoint("pull.tracking")
        changes = [
            _plan_pull(repo, remote, ref, new, force, rewrites.get(ref))
            for ref, new in sorted(wanted.items())
        ]
        result.refs = changes
        moving = [c for c in changes if c.status not in ("up-to-date", "ahead")]
        _require_signatures(repo, moving, wanted)
        folders = _clean_bound_folders(repo, moving, force)
        # Clean working folders on a moving branch get the new version first (checkout still
        # knows what they hold), then the refs move, then the folders follow their branch again.
        for binding, change in folders:
            assert change.new is not None  # a pull creates and moves refs, it never deletes
            checkout(repo, by_id(binding.model, change.new), allow_deprecated=True)
        if moving:
            why = f"pull {remote.name}"
            if any(c.status == "forced" for c in moving):
                why += " --force"
            repo.refs.transaction([RefUpdate(c.ref, c.old, c.new) for c in moving], why)
    for binding, change in folders:
        repo.set_binding(replace(binding, version=change.new))
        result.updated_folders.append(binding.path)
    result.warnings += _deprecated(repo, wanted)
    for ref, value in wanted.items():  # last use: the versions pulled (a channel's: its arms)
        for oid in [value] if ref.kind != CHANNELS else load_record(repo, value).refs():
            note_use(repo, ref.model, oid)
    return result


def _require_signatures(
    repo: Repo, moving: list[RefChange], wanted: dict[RefName, ObjectId]
) -> None:
    """With ``signing.require: [pull]`` in mvc.yaml, every version a moving branch, tag or
    channel names must carry a valid signature (read from the annotations being pulled)
    before any local ref moves."""
    for change in moving:
        if change.new is None or change.ref.kind == NOTES:
            continue
        if change.ref.kind == CHANNELS:  # an arm's adapter is a version of its own model
            versions = [
                (model, version)
                for arm in load_record(repo, change.new).arms
                for model, version in [(change.ref.model, arm.version)]
                + ([(arm.adapter.model, arm.adapter.version)] if arm.adapter else [])
            ]
        else:
            versions = [(change.ref.model, change.new)]
        for model, version in dict.fromkeys(versions):
            head = wanted.get(notes(model, version)) or repo.refs.get(notes(model, version))
            require_signed(repo, "pull", model, version, notes_head=head)


def _deprecated(repo: Repo, pulled: dict[RefName, ObjectId]) -> list[str]:
    """Warnings for the deprecated versions pulled branches and tags name (a pull is never
    refused for it: using the version is what the cutoff stops)."""
    told: dict[str, str] = {}
    for ref, value in sorted(pulled.items()):
        if ref.kind not in (HEADS, TAGS) or value in told:
            continue
        found = deprecation_of(repo, ref.model, value)
        if found is not None:
            late = found.passed(repo.clock())
            told[value] = found.message + (
                " (its cutoff has passed: using it needs --allow-deprecated)" if late else ""
            )
    return list(told.values())


def _plan_pull(
    repo: Repo,
    remote: Remote,
    ref: RefName,
    new: ObjectId,
    force: bool,
    rewrite: str | None = None,
) -> RefChange:
    current = repo.refs.get(ref)
    if current == new:
        return RefChange(ref, current, new, "up-to-date")
    if current is None:
        return RefChange(ref, current, new, "created")
    if ref.kind == TAGS:
        raise ImmutableRef(
            f"tag {ref.name!r} of {ref.model!r} names {short(current)} here but {short(new)} "
            f"on {remote.label}; tags never move",
            hint=f"delete the local tag (`mvc tag {ref.model} -d {ref.name} --force`) to take "
            "the remote's, or leave it",
        )
    if is_ancestor(repo.objects, new, current):
        return RefChange(ref, current, current, "ahead")
    if rewrite is not None:
        if force:
            return RefChange(ref, current, new, "forced")
        raise RefConflict(
            f"{ref}: remote {remote.name} rewrote its history ({rewrite}), so it is not "
            f"fast-forwarded from {short(current)}",
            hint=f"look at it first (`mvc log {ref.model}@{remote.name}/{ref.name}`); pull "
            "again with --force to take the remote's",
        )
    if is_ancestor(repo.objects, current, new):
        return RefChange(ref, current, new, "fast-forward")
    if force:
        return RefChange(ref, current, new, "forced")
    raise RefConflict(
        f"{ref} has diverged: here it is at {short(current)}, on {remote.label} at "
        f"{short(new)}, and neither is in the other's history",
        hint="keep yours on a new branch (`mvc branch MODEL NAME`) and pull again with "
        "--force to take the remote's",
    )


def _clean_bound_folders(
    repo: Repo, moving: list[RefChange], force: bool
) -> list[tuple[Binding, RefChange]]:
    """Working folders that follow a branch that moves and are clean; refuses a folder with
    uncommitted changes unless ``force`` (which leaves such a folder as it is)."""
    clean = []
    for change in moving:
        if change.ref.kind != HEADS:
            continue
        binding = repo.binding(change.ref.model)
        if binding is None or binding.branch != change.ref.name:
            continue
        state, _ = folder_state(repo, binding)
        if not state.exists:
            continue
        if not state.clean and not force:
            raise DirtyWorkingFolder(
                f"{binding.path} (working folder of {binding.model}) has uncommitted changes, "
                f"and pulling moves its branch {binding.branch!r}",
                hint=f"commit them first (`mvc commit {binding.path}`), or pull with --force "
                "to move the branch and leave the folder as it is",
            )
        if state.clean:
            clean.append((binding, change))
    return clean


# --- clone ----------------------------------------------------------------------------------------


def clone(
    url: str,
    directory: str,
    *,
    model: str | None = None,
    options: dict[str, str] | None = None,
    checkout: bool = False,
    allow_empty: bool = False,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> CloneResult:
    """A new store in ``directory`` with remote ``origin``: every model's refs (or ``model``'s)
    and the data they need; with ``checkout``, each model's main branch in ``directory/MODEL``.

    The source is checked before anything is written anywhere: it must be an mvc store; an
    empty one (no refs, or an empty folder or prefix) is cloned only with ``allow_empty``."""
    target = os.path.abspath(directory)
    if os.path.isdir(target) and os.listdir(target):
        raise UsageError(f"{target} exists and is not empty", hint="clone into a new folder")
    if "://" not in url:
        url = os.path.abspath(url)
    place = remote_place(_source_storage(url, options), url)
    if place == "absent":
        raise NotFound(f"no mvc store at {url}: the folder does not exist", hint="check the path")
    if place == "empty store" and not allow_empty:
        raise UsageError(
            f"{url} is an empty store: there is nothing to clone",
            hint="clone it anyway with --allow-empty (the first push fills it)",
        )
    init_store(target)
    repo = Repo(target)
    models: list[str] = []
    try:
        added = add_remote(repo, "origin", url, options)
        fetched = fetch(repo, "origin", model=model, jobs=jobs, progress=progress)
        models = sorted({c.ref.model for c in fetched.refs if c.new and c.ref.kind == HEADS})
        result = CloneResult(repo.root, added.remote, fetched, None, warnings=list(added.warnings))
        if not any(c.new for c in fetched.refs):
            if model is not None:
                raise NotFound(f"remote origin ({url}) has no model named {model!r}")
            result.warnings.append("the remote is empty: nothing to pull")
            return result
        result.pull = pull(
            repo, "origin", model, all_models=model is None, jobs=jobs, progress=progress
        )
        if checkout:
            result.checked_out = _checkout_models(repo, result.pull)
        return result
    except MvcError as exc:
        resume = f"the new store in {target} is kept: `mvc -C {target} pull origin --all` resumes"
        if checkout:
            resume += ", then " + (
                ", ".join(f"`mvc -C {target} checkout {m} --to {m} --bind`" for m in models)
                or f"`mvc -C {target} checkout MODEL --to MODEL --bind` for each model"
            )
        exc.hint = f"{exc.hint}; {resume}" if exc.hint else resume
        raise


def _source_storage(url: str, options: dict[str, str] | None) -> Storage:
    """A clone's source, opened to look at it (a working store's root means its .mvc/)."""
    storage = open_storage(url, options or {})
    root = storage.local_root()
    if root is not None and storage.exists(f"{STORE_DIR}/{FORMAT_FILE}"):
        return LocalStorage(os.path.join(root, STORE_DIR), fsync=False)
    return storage


def _checkout_models(repo: Repo, pulled: PullResult) -> list[str]:
    branches: dict[str, list[str]] = {}
    for change in pulled.refs:
        if change.ref.kind == HEADS:
            branches.setdefault(change.ref.model, []).append(change.ref.name)
    folders = []
    for model, names in sorted(branches.items()):
        name = "main" if "main" in names else sorted(names)[0]
        folder = os.path.join(repo.root, *model.split("/"))
        checkout(
            repo, resolve_branch(repo, model, name), to=folder, bind=True, allow_deprecated=True
        )
        folders.append(repo.relpath(folder))
    return folders


def _readable_refs(
    remote: Remote, model: str | None, damaged: dict[str, str]
) -> dict[RefName, ObjectId]:
    """The remote's live refs (of ``model``, or all), model by model: a model whose ref log
    cannot be read is left out and named in ``damaged``, so it never stops the others. When
    nothing could be read, the first damage is raised as it is."""
    found: dict[RefName, ObjectId] = {}
    models = [model] if model is not None else remote.refs.models()
    first: CorruptObject | None = None
    for name in models:
        try:
            found.update(_remote_refs(remote, name))
        except CorruptObject as exc:
            damaged[name] = exc.message
            first = first or exc
    if first is not None and not found:
        raise first
    return found


def _receive_models(
    repo: Repo,
    remote: Remote,
    wanted: dict[RefName, ObjectId],
    mode: Want,
    verb: str,
    jobs: int | None,
    progress: Progress | None,
    damaged: dict[str, str],
) -> TransferResult:
    """``_receive`` model by model when there are several: a model whose data is damaged or
    missing on the remote is dropped from ``wanted`` and named in ``damaged``; the others
    arrive. With one model (or when every model fails) the error is raised as it is."""
    by_model: dict[str, list[ObjectId]] = {}
    for ref, value in wanted.items():
        by_model.setdefault(ref.model, []).append(value)
    if len(by_model) == 1:
        return _receive(repo, remote, wanted.values(), mode, verb, jobs, progress)
    total = TransferResult()
    first: MvcError | None = None
    for name, roots in sorted(by_model.items()):
        try:
            total.add(_receive(repo, remote, roots, mode, verb, jobs, progress))
        except (CorruptObject, NotFound) as exc:
            damaged[name] = exc.message
            first = first or exc
            for ref in [r for r in wanted if r.model == name]:
                del wanted[ref]
    if first is not None and not wanted:
        raise first
    return total


def remote_refs(repo: Repo, name: str) -> list[RefChange]:
    """The remote-tracking refs of a remote, as of the last fetch, pull or push."""
    remote_config(repo, name)
    return [
        RefChange(ref, None, value, "tracked")
        for ref, value in sorted(tracked_values(repo, name).items())
    ]
