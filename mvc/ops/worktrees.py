"""``status`` and ``checkout``: a model's working folder against its HEAD.

Status reads only what the stat cache cannot vouch for. Checkout stages every file it writes
and renames them into place at the end, refuses to overwrite uncommitted changes unless forced,
and never removes a file the version does not track.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mvc.errors import DirtyWorkingFolder, NotFound, UsageError, environment_error
from mvc.faults import crashpoint
from mvc.ids import ObjectId
from mvc.objects import Tree
from mvc.ops.snapshot import Snapshot, changed_paths, snapshot, stat_cache_for
from mvc.progress import NullProgress, Progress
from mvc.refnames import branch as branch_ref
from mvc.remotes import ensure_present
from mvc.repo import Binding, Repo
from mvc.specs import Resolved, resolve
from mvc.worktree.materialise import Staging, remove_file
from mvc.worktree.scan import FileStat


@dataclass
class ModelStatus:
    model: str
    path: str
    branch: str | None
    version: ObjectId | None
    exists: bool = True
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    hashed_files: int = 0
    tip: ObjectId | None = None  # where the branch is now: ahead of ``version`` if it moved

    @property
    def clean(self) -> bool:
        return self.exists and not (self.added or self.modified or self.removed)

    @property
    def behind(self) -> bool:
        """The branch moved on (a commit from another folder, a pull) since the folder synced."""
        return self.branch is not None and self.tip != self.version

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "path": self.path,
            "branch": self.branch,
            "version": self.version,
            "exists": self.exists,
            "clean": self.clean,
            "added": self.added,
            "modified": self.modified,
            "removed": self.removed,
            "hashed_files": self.hashed_files,
            "branch_tip": self.tip,
            "behind": self.behind,
        }


def head_version(repo: Repo, binding: Binding) -> ObjectId | None:
    """The version the working folder was last checked out or committed at."""
    if binding.version is not None or binding.branch is None:
        return binding.version
    return repo.refs.get(branch_ref(binding.model, binding.branch))


def branch_tip(repo: Repo, binding: Binding) -> ObjectId | None:
    return repo.refs.get(branch_ref(binding.model, binding.branch)) if binding.branch else None


def _tree_of(repo: Repo, version: ObjectId | None) -> Tree | None:
    return repo.objects.get_tree(repo.objects.get_version(version).tree) if version else None


def folder_state(
    repo: Repo, binding: Binding, progress: Progress | None = None
) -> tuple[ModelStatus, Snapshot | None]:
    version = head_version(repo, binding)
    folder = repo.abspath(binding.path)
    result = ModelStatus(binding.model, binding.path, binding.branch, version)
    result.tip = branch_tip(repo, binding) if binding.branch else version
    if not os.path.isdir(folder):
        result.exists = False
        return result, None
    cache = stat_cache_for(repo, folder)
    snap = snapshot(repo, folder, store=False, cache=cache, progress=progress)
    cache.save()
    if result.behind and result.tip and repo.objects.get_version(result.tip).tree == snap.tree_id:
        result.version = version = result.tip  # the folder already holds what the branch names
    result.added, result.modified, result.removed = changed_paths(
        _tree_of(repo, version), snap.tree
    )
    result.hashed_files = len(snap.hashed)
    return result, snap


def status(
    repo: Repo, model: str | None = None, progress: Progress | None = None
) -> list[ModelStatus]:
    bindings = repo.bindings()
    if model is not None:
        bindings = [b for b in bindings if b.model == model]
        if not bindings:
            raise NotFound(
                f"model {model!r} has no working folder in this store",
                hint=f"bind one with `mvc checkout {model} --to DIR --bind`",
            )
    return [folder_state(repo, b, progress)[0] for b in bindings]


@dataclass
class CheckoutResult:
    model: str
    version: ObjectId
    path: str
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    bytes_written: int = 0
    head: str | None = None  # the branch now checked out, None if detached
    bound: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "path": self.path,
            "written": self.written,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "bytes_written": self.bytes_written,
            "branch": self.head,
            "bound": self.bound,
        }


def checkout(
    repo: Repo,
    spec: str,
    *,
    to: str | None = None,
    force: bool = False,
    bind: bool = False,
    progress: Progress | None = None,
) -> CheckoutResult:
    progress = progress or NullProgress()
    resolved: Resolved = resolve(repo, spec)
    model = resolved.model

    ensure_present(repo, resolved.version, progress=progress)  # data of a fetched version
    binding = repo.binding(model)
    if to is None and binding is None:
        raise UsageError(
            f"model {model!r} has no working folder in this store",
            hint=f"mvc checkout {spec} --to DIR (add --bind to make it the working folder)",
        )
    folder = os.path.abspath(to) if to is not None else repo.abspath(binding.path)  # type: ignore[union-attr]
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise UsageError(
            f"{folder} exists and is not a folder", hint="check out into a folder (--to DIR)"
        )
    into_bound = binding is not None and repo.relpath(folder) == binding.path
    new_tree = _tree_of(repo, resolved.version)
    assert new_tree is not None

    current: dict[str, Any] = {}
    old_tree: Tree | None = None
    cache = stat_cache_for(repo, folder)
    if into_bound and binding is not None:
        state, snap = folder_state(repo, binding)
        old_tree = _tree_of(repo, head_version(repo, binding))
        current = dict(snap.tree.files) if snap else {}
        dirty = (
            state.modified
            + state.removed
            + [
                p
                for p in state.added
                if p in new_tree.files and current[p].b3 != new_tree.files[p].b3
            ]
        )
        if dirty and not force:
            raise DirtyWorkingFolder(
                f"{binding.path} has uncommitted changes that checkout would overwrite: "
                + ", ".join(sorted(dirty)[:10])
                + (" …" if len(dirty) > 10 else ""),
                hint=f"commit them (`mvc commit {binding.path}`) or pass --force to discard them",
            )
        cache = stat_cache_for(repo, folder)
    elif os.path.isdir(folder) and os.listdir(folder):
        if not force:
            raise DirtyWorkingFolder(
                f"{folder} is not empty",
                hint="check out into a new folder, or pass --force to overwrite",
            )
        snap = snapshot(repo, folder, store=False, cache=cache)
        current = dict(snap.tree.files)

    to_write = [
        p
        for p, e in new_tree.files.items()
        if p not in current or current[p].b3 != e.b3 or current[p].executable != e.executable
    ]
    to_remove = [p for p in (old_tree.files if old_tree else {}) if p not in new_tree.files]
    result = CheckoutResult(
        model,
        resolved.version,
        folder,
        sorted(to_write),
        sorted(to_remove),
        len(new_tree.files) - len(to_write),
    )
    if (into_bound or bind) and not os.access(repo.store_dir, os.W_OK):
        # The binding is written after the folder changes: refuse while nothing has changed.
        raise environment_error(OSError(errno.EROFS, "read-only"), f"the store {repo.store_dir}")
    staging = Staging(
        folder, fsync=bool(repo.config.get("core.fsync")), removing=frozenset(result.removed)
    )
    progress.start("checking out", sum(new_tree.files[p].size for p in to_write))
    try:
        for rel in result.written:
            entry = new_tree.files[rel]
            manifest = repo.objects.get_manifest(entry.manifest)
            write = partial(
                repo.objects.write_file,
                manifest,
                name=rel,
                jobs=int(repo.config.get("core.jobs")),
                on_chunk=progress.advance,
            )
            staging.stage_with(rel, write, entry.executable)
            result.bytes_written += entry.size
        # Every new file is staged and verified; only now does the folder change. Removals go
        # first: a removed file or folder may stand where a new one goes.
        crashpoint("checkout.staged")
        for rel in result.removed:
            remove_file(folder, rel)
        staging.commit()
        crashpoint("checkout.renamed")
    except BaseException:
        staging.abort()
        raise
    finally:
        progress.finish()
    for rel in result.written:
        info = os.stat(os.path.join(folder, *rel.split("/")))
        cache.record(rel, FileStat.of(info), new_tree.files[rel])
    cache.forget_missing(set(new_tree.files) | (set(current) - set(result.removed)))
    cache.save(force=True)
    if into_bound or bind:
        on_branch = resolved.branch if resolved.kind == "branch" else None
        repo.set_binding(Binding(model, repo.relpath(folder), on_branch, resolved.version))
        result.head = on_branch
        result.bound = True
    return result
