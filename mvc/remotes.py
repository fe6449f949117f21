"""Remotes below the use cases: configuration, opening a remote, remote-tracking refs, and the
data a remote promises (the partial-clone layer every use case may call).

Configuration lives in the store's config, never credentials (the backend's usual sources
supply them):

    remote.<name>.url              a folder, file:// or any fsspec URL (no password, no query)
    remote.<name>.options.<key>    non-secret fsspec options (endpoint_url, profile, ...)
    remote.<name>.atomic_create    "true"/"false": the backend's create-if-absent, probed

Remote-tracking refs live in the local store under ``remotes/<name>/refs/...`` in the refs' log
layout. Every value they ever held marks objects the remote *promises*: their metadata is local
after a fetch, their chunk data may not be; ``ensure_present`` fetches that data when a use case
needs it. Push, fetch, pull and clone are use cases in :mod:`mvc.ops.remotes`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mvc.archives import archived_error, list_archives, read_archive
from mvc.errors import (
    NotFound,
    UsageError,
)
from mvc.graph import metadata_reach
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.progress import Progress
from mvc.refnames import (
    RefName,
    validate_remote,
)
from mvc.refs import RefStore, local_ref_lock
from mvc.repo import STORE_DIR, Repo
from mvc.storage.base import Storage
from mvc.storage.local import LocalStorage
from mvc.storage.prefixed import PrefixedStorage
from mvc.storage.remote import check_option, open_storage
from mvc.storage.small import SmallReads
from mvc.store import FORMAT_FILE, ObjectStore
from mvc.transfer import CLOSURE, TransferResult, Want, transfer

#: Local folder of remote-tracking refs: ``remotes/<name>/refs/<kind>/<model>/<name>/<seq>``.
TRACKING = "remotes"
#: Parallel transfers when neither --jobs nor core.jobs says (at most 2 x 16 MiB each in memory).
TRANSFER_JOBS = 8

_OPTION_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_WORDS = ("secret", "password", "passwd", "credential", "token", "private", "connection")
_SECRET_PARTS = {"key", "sas", "sig", "signature", "pwd", "auth"}


@dataclass(frozen=True)
class RemoteConfig(JsonShaped):
    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)
    atomic_create: bool | None = None  # None: not probed yet

    json_shape: ClassVar[Shape] = Shape(
        convert={"options": lambda options: dict(sorted(options.items()))}
    )


def is_secret_option(key: str) -> bool:
    """Whether an option key looks like a credential (key, secret, token, password…)."""
    lowered = key.lower()
    parts = set(re.split(r"[^a-z0-9]+", lowered))
    return any(word in lowered for word in _SECRET_WORDS) or bool(parts & _SECRET_PARTS)


def validate_option(key: str, value: str | None = None) -> str:
    """A storage option name that is safe to store (and its value, when given)."""
    if not _OPTION_KEY.match(key):
        raise UsageError(
            f"invalid remote option name {key!r}", hint="option names are like endpoint_url"
        )
    if is_secret_option(key):
        raise UsageError(
            f"refusing to store remote option {key!r}: it looks like a credential, and "
            "credentials are never written into a store",
            hint="give credentials the way the backend expects them (AWS profile or "
            "environment, GCS application credentials, Azure environment)",
        )
    if value is not None:
        check_option(key, value)
    return key


def _config_items(repo: Repo) -> dict[str, Any]:
    return {k: v for k, v in repo.config.items().items() if k.startswith("remote.")}


def remote_names(repo: Repo) -> list[str]:
    names = set()
    for key in _config_items(repo):
        parts = key.split(".")
        if len(parts) >= 3 and parts[2] == "url":
            names.add(parts[1])
    return sorted(names)


def remote_config(repo: Repo, name: str) -> RemoteConfig:
    validate_remote(name)
    items = _config_items(repo)
    url = items.get(f"remote.{name}.url")
    if not isinstance(url, str):
        known = remote_names(repo)
        raise NotFound(
            f"no remote named {name!r}" + (f" (remotes: {', '.join(known)})" if known else ""),
            hint=f"add it with `mvc remote add {name} URL`",
        )
    prefix = f"remote.{name}.options."
    options = {k[len(prefix) :]: str(v) for k, v in items.items() if k.startswith(prefix)}
    flag = str(items.get(f"remote.{name}.atomic_create", "")).lower()
    atomic = {"true": True, "false": False}.get(flag)
    return RemoteConfig(name, url, options, atomic)


def list_remotes(repo: Repo) -> list[RemoteConfig]:
    return [remote_config(repo, name) for name in remote_names(repo)]


@dataclass
class Remote:
    name: str
    config: RemoteConfig
    storage: Storage
    objects: ObjectStore
    refs: RefStore

    @property
    def label(self) -> str:
        return f"remote {self.name} ({self.storage.url})"


def open_remote_storage(repo: Repo, url: str, options: dict[str, str]) -> Storage:
    storage = open_storage(url, options)
    root = storage.local_root()
    if root is None:
        return storage
    # A folder on this machine: written with this store's fsync setting, and a working store
    # is its .mvc/ folder.
    if storage.exists(f"{STORE_DIR}/{FORMAT_FILE}"):
        root = os.path.join(root, STORE_DIR)
    return LocalStorage(root, fsync=bool(repo.config.get("core.fsync")))


def _is_working_store(storage: Storage) -> bool:
    root = storage.local_root()
    return root is not None and os.path.basename(root) == STORE_DIR


def open_remote(repo: Repo, name: str) -> Remote:
    config = remote_config(repo, name)
    storage = open_remote_storage(repo, config.url, config.options)
    refs = RefStore(SmallReads(storage), who=repo.identity, now=repo.now, lock=None)
    return Remote(name, config, storage, ObjectStore(storage), refs)


def tracking_refs(repo: Repo, name: str) -> RefStore:
    """The remote-tracking refs of remote ``name`` (a RefStore inside the local store)."""
    validate_remote(name)
    return RefStore(
        PrefixedStorage(repo.storage, f"{TRACKING}/{name}"),
        who=repo.identity,
        now=repo.now,
        lock=local_ref_lock(repo.store_dir, repo.lock_timeout),
    )


def tracked_values(repo: Repo, name: str) -> dict[RefName, ObjectId]:
    refs = tracking_refs(repo, name)
    found = {}
    for ref in refs.list_refs(live=False):
        value = refs.get(ref)
        if value is not None:
            found[ref] = value
    return found


def _promised_by(repo: Repo, name: str) -> set[ObjectId]:
    """What remote ``name`` promises: all that any value its tracking refs ever had reaches."""
    refs = tracking_refs(repo, name)
    roots = {
        entry.new
        for ref in refs.list_refs(live=False)
        for entry in refs.entries(ref)
        if entry.new is not None
    }
    return metadata_reach(repo.objects, roots)


def promised_objects(repo: Repo) -> dict[ObjectId, str]:
    """Objects some configured remote promises, and which remote (the first, by name): what
    its tracking refs reach, and the chunks an archive record says are on its cold remote."""
    promised: dict[ObjectId, str] = {}
    for record in list_archives(repo.storage):
        for oid in record.chunks:
            promised.setdefault(oid, record.remote)
    for name in remote_names(repo):
        for oid in _promised_by(repo, name):
            promised.setdefault(oid, name)
    return promised


def tracking_roots(repo: Repo) -> list[RefStore]:
    """Tracking-ref stores of every configured remote (gc keeps what they reach)."""
    return [tracking_refs(repo, name) for name in remote_names(repo)]


def _jobs(repo: Repo, jobs: int | None) -> int:
    """``--jobs``, else config ``core.jobs`` when set, else ``TRANSFER_JOBS``: transfers wait on
    the network and on fsync, not on the CPU, so they gain from more workers than cores."""
    if jobs and jobs > 0:
        return jobs
    if repo.config.source("core.jobs") is not None:
        return int(repo.config.get("core.jobs"))
    return TRANSFER_JOBS


def missing_in_closure(objects: ObjectStore, version: ObjectId) -> list[ObjectId]:
    """Objects a version's files need that are not in ``objects`` (its metadata must be)."""
    tree = objects.get_tree(objects.get_version(version).tree)
    missing: dict[ObjectId, None] = {}
    for entry in tree.files.values():
        if not objects.has(entry.manifest):  # the manifest, or a one-chunk file's chunk
            missing[entry.manifest] = None
            continue
        for chunk in objects.manifest_of(entry).chunks:
            if chunk.id not in missing and not objects.has(chunk.id):
                missing[chunk.id] = None
    return list(missing)


def _receive(
    repo: Repo,
    remote: Remote,
    roots: Iterable[ObjectId],
    mode: Want,
    verb: str,
    jobs: int | None,
    progress: Progress | None,
) -> TransferResult:
    """Bring objects from a remote into this store. The caller holds the objects lock and moves
    the refs that reach them before releasing it."""
    return transfer(
        remote.objects,
        repo.objects,
        list(roots),
        mode,
        jobs=_jobs(repo, jobs),
        flush_bytes=int(repo.config.get("transfer.flush_bytes")),
        progress=progress,
        source_label=remote.label,
        description=f"{verb} {remote.name}",
    )


def ensure_present(
    repo: Repo, version: ObjectId, *, jobs: int | None = None, progress: Progress | None = None
) -> TransferResult | None:
    """Fetch the data of a fetched-but-not-pulled version from the remote that promises it.

    None when everything is already here (the usual case: a few stat calls). An archived
    version (its chunks in cold storage) is refused with ``Archived``: ``mvc restore`` it.
    """
    record = read_archive(repo.storage, version)
    if record is not None:
        raise archived_error(record)
    missing = missing_in_closure(repo.objects, version)
    if not missing:
        return None
    for name in remote_names(repo):
        if missing[0] not in _promised_by(repo, name):
            continue
        remote = open_remote(repo, name)
        with repo.writing_objects():
            return _receive(repo, remote, [version], CLOSURE, "fetching data from", jobs, progress)
    raise NotFound(
        f"{len(missing)} object(s) version {short(version)} needs are missing "
        f"(e.g. {short(missing[0])}) and no remote promises them",
        hint="run `mvc fsck`; `mvc pull REMOTE MODEL@REV` from a remote that has this version",
    )


class _ArchiveBackedStore(ObjectStore):
    """This store's objects, with the chunks archive records name read from their cold
    remote when they are not here (push sends an archived version's data, never a hole)."""

    def __init__(self, repo: Repo, where: dict[ObjectId, str]) -> None:
        super().__init__(repo.storage)
        self._repo = repo
        self._where = where
        self._cold: dict[str, Remote] = {}
        self._lock = threading.Lock()

    def read_stored(self, oid: str, *, size: int | None = None) -> bytes:
        try:
            return super().read_stored(oid, size=size)
        except NotFound:
            name = self._where.get(ObjectId(oid))
            if name is None:
                raise
        with self._lock:
            cold = self._cold.get(name)
            if cold is None:
                cold = self._cold[name] = open_remote(self._repo, name)
        return cold.objects.read_stored(oid, size=size)


def with_archived_data(repo: Repo) -> ObjectStore:
    """``repo.objects``, reading archived chunks from their cold remotes where they are not
    here; ``repo.objects`` itself when nothing is archived."""
    where = {oid: r.remote for r in list_archives(repo.storage) for oid in r.chunks}
    return _ArchiveBackedStore(repo, where) if where else repo.objects
