"""``mvc lock`` and ``mvc install``: the versions a project serves, pinned and materialised.

``lock`` resolves each ``requires:`` entry of mvc.yaml to a version id (and its tree, the
content hash) and writes ``mvc.lock`` atomically. ``check_lock`` compares the lock with mvc.yaml
and the store. ``install`` materialises every locked version into its path, fetching from a
remote what the store lacks and verifying every byte on the way (checkout reads through the
verified store); with ``locked`` a lock that no longer matches mvc.yaml fails (exit 25) instead
of being rewritten, as ``npm ci`` does.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import ClassVar

from mvc.errors import NotFound, StaleLock
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.lockfile import LOCK_FILE, Locked, parse_lock, render_lock
from mvc.objects import Tree
from mvc.ops.remotes import fetch
from mvc.ops.signing import require_signed
from mvc.ops.snapshot import same_files, snapshot, stat_cache_for
from mvc.ops.worktrees import checkout
from mvc.policy.file import policy_path, read_policy
from mvc.policy.requires import REQUIRES, Requirement
from mvc.progress import Progress
from mvc.remotes import missing_in_closure, remote_names
from mvc.repo import Repo
from mvc.specs import by_id, resolve
from mvc.worktree.materialise import remove_file


@dataclass
class LockEntry(JsonShaped):
    name: str
    spec: str
    path: str
    version: ObjectId
    tree: ObjectId
    resolved: str | None
    changed: bool = False  # differs from the lock that was there before

    @classmethod
    def of(cls, entry: Locked, changed: bool = False) -> LockEntry:
        return cls(
            entry.name, entry.spec, entry.path, entry.version, entry.tree, entry.resolved, changed
        )


@dataclass
class LockResult(JsonShaped):
    path: str
    entries: list[LockEntry] = field(default_factory=list)
    written: bool = False  # False: the lock was already exactly this


@dataclass
class LockProblem(JsonShaped):
    name: str
    problem: str


@dataclass
class LockCheck(JsonShaped):
    path: str
    problems: list[LockProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    json_shape: ClassVar[Shape] = Shape(computed={"ok": "ok"})


@dataclass
class Installed(JsonShaped):
    name: str
    version: ObjectId
    path: str
    written: int
    removed: int
    unchanged: int
    fetched_from: str | None = None


@dataclass
class InstallResult(JsonShaped):
    lock: str
    locked_written: bool
    installed: list[Installed] = field(default_factory=list)


def _requirements(repo: Repo) -> tuple[Requirement, ...]:
    found = read_policy(repo.root).get(REQUIRES)
    if found is None:
        there = os.path.exists(policy_path(repo.root))
        raise NotFound(
            "mvc.yaml has no requires: section" if there else f"no mvc.yaml in {repo.root}",
            hint="list what this project serves, e.g. requires: {bert: ^2.1}; see docs/integrations.md",
        )
    return found


def _lock_path(repo: Repo) -> str:
    return os.path.join(repo.root, LOCK_FILE)


def read_lock(repo: Repo) -> list[Locked] | None:
    try:
        with open(_lock_path(repo), encoding="utf-8") as handle:
            return parse_lock(handle.read())
    except FileNotFoundError:
        return None


def _resolve(repo: Repo, requirement: Requirement) -> Locked:
    resolved = resolve(repo, requirement.spec)
    tree = repo.objects.get_version(resolved.version).tree
    named = resolved.name if resolved.kind in ("tag", "channel", "range") else None
    return Locked(
        requirement.name, requirement.spec, requirement.path, resolved.version, tree, named
    )


def lock(repo: Repo) -> LockResult:
    """Resolve mvc.yaml's requires: and write mvc.lock (atomically; unchanged if identical)."""
    requirements = _requirements(repo)
    before = {e.name: e for e in read_lock_quietly(repo)}
    entries = [_resolve(repo, r) for r in requirements]
    text = render_lock(entries)
    path = _lock_path(repo)
    result = LockResult(
        path,
        [LockEntry.of(e, before.get(e.name) != e) for e in sorted(entries, key=lambda e: e.name)],
    )
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return result
    except FileNotFoundError:
        pass
    _write_atomic(path, text)
    result.written = True
    return result


def read_lock_quietly(repo: Repo) -> list[Locked]:
    try:
        return read_lock(repo) or []
    except StaleLock:
        return []  # a broken lock is rewritten by `lock`


def _write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(prefix=".mvc.lock.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def check_lock(repo: Repo, *, store: bool = True) -> LockCheck:
    """Problems between mvc.yaml, mvc.lock and (``store``) the store; none means current."""
    result = LockCheck(_lock_path(repo))
    requirements = {r.name: r for r in _requirements(repo)}
    entries = read_lock(repo)
    if entries is None:
        result.problems.append(LockProblem("*", f"no {LOCK_FILE}: run `mvc lock`"))
        return result
    locked = {e.name: e for e in entries}
    for name in sorted(set(requirements) | set(locked)):
        want, have = requirements.get(name), locked.get(name)
        if want is None:
            result.problems.append(LockProblem(name, "in mvc.lock but no longer in mvc.yaml"))
        elif have is None:
            result.problems.append(LockProblem(name, f"in mvc.yaml ({want.spec}) but not locked"))
        elif have.spec != want.spec:
            result.problems.append(
                LockProblem(
                    name, f"mvc.yaml asks for {want.spec}, the lock was made for {have.spec}"
                )
            )
        elif have.path != want.path:
            result.problems.append(
                LockProblem(name, f"mvc.yaml installs it to {want.path}, the lock to {have.path}")
            )
        elif store and not repo.objects.has(have.version) and not _on_a_remote(repo):
            result.problems.append(
                LockProblem(name, f"version {short(have.version)} is not in this store")
            )
    return result


def _on_a_remote(repo: Repo) -> bool:
    return bool(remote_names(repo))


def install(
    repo: Repo,
    *,
    locked: bool = False,
    remote: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> InstallResult:
    check = check_lock(repo, store=False)
    written = False
    if not check.ok:
        if locked:
            first = check.problems[0]
            raise StaleLock(
                f"{LOCK_FILE} is stale: {first.name}: {first.problem}"
                + (f" (and {len(check.problems) - 1} more)" if len(check.problems) > 1 else ""),
                hint="run `mvc lock` and commit mvc.lock, or install without --locked",
            )
        written = lock(repo).written
    entries = read_lock(repo) or []
    result = InstallResult(_lock_path(repo), written)
    for entry in entries:
        source = _bring(repo, entry, remote, progress)
        tree = repo.objects.get_version(entry.version).tree
        if tree != entry.tree:
            raise StaleLock(
                f"{entry.name}: version {short(entry.version)} has tree {short(tree)}, "
                f"the lock says {short(entry.tree)} (mvc.lock edited by hand?)",
                hint="run `mvc lock` to write it again",
            )
        require_signed(repo, "install", entry.model, entry.version)
        folder = os.path.join(repo.root, *entry.path.split("/"))
        locked_tree = repo.objects.get_tree(entry.tree)
        held_tree, held = _held_tree(repo, folder)
        if held_tree is not None and same_files(locked_tree, held_tree):
            count = len(locked_tree.files)
            result.installed.append(
                Installed(entry.name, entry.version, entry.path, 0, 0, count, source)
            )
            continue
        # Exactly the files of a stored version (what an earlier install wrote): nothing of
        # the user's is lost by replacing them; its files the new version lacks go.
        replacing = held is not None and repo.objects.has(held)
        gone: list[str] = []
        if replacing and held_tree is not None:
            gone = [p for p in held_tree.files if p not in locked_tree.files]
        for rel in gone:
            remove_file(folder, rel)
        done = checkout(
            repo,
            by_id(entry.model, entry.version),
            to=folder,
            force=force or replacing,
            progress=progress,
        )
        result.installed.append(
            Installed(
                entry.name,
                entry.version,
                entry.path,
                len(done.written),
                len(done.removed) + len(gone),
                done.unchanged,
                source,
            )
        )
    return result


def _held_tree(repo: Repo, folder: str) -> tuple[Tree | None, ObjectId | None]:
    """The tree of what ``folder`` holds, and its id (through the stat cache: the entries
    checkout recorded for the files it wrote, so an earlier install's folder has that
    version's tree id, in whatever store format it was written); (None, None) for an absent
    or empty folder, or a bound working folder (checkout knows it). Whether it already holds
    the locked version is a question of content (``same_files``)."""
    if not os.path.isdir(folder) or not os.listdir(folder) or repo.binding_for_path(folder):
        return None, None
    cache = stat_cache_for(repo, folder)
    snap = snapshot(repo, folder, store=False, cache=cache)
    cache.save()
    return snap.tree, snap.tree_id


def _bring(repo: Repo, entry: Locked, remote: str | None, progress: Progress | None) -> str | None:
    """Make sure the locked version's metadata is here (its data comes on checkout)."""
    if repo.objects.has(entry.version) and not missing_in_closure(repo.objects, entry.version):
        return None
    names = [remote] if remote else remote_names(repo)
    for name in names:
        fetch(repo, name, model=entry.model, progress=progress)
        if repo.objects.has(entry.version):
            return name
    raise StaleLock(
        f"{entry.name}: locked version {short(entry.version)} of {entry.model} is neither in this "
        f"store nor on {'remote ' + remote if remote else 'any remote'}",
        hint="add the remote that has it (mvc remote add), or run `mvc lock` again",
    )
