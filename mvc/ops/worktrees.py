"""``checkout``: a version into a model's working folder (``ops.status`` compares them).

Checkout stages every file it writes
and renames them into place at the end, refuses to overwrite uncommitted changes unless forced,
and never removes a file the version does not track.

Like git's, it does not fsync the files it writes (``checkout.fsync``): the store is what must
survive a power cut, the folder is a copy of it. The stat cache records them as written
unflushed in this boot, so after a restart they are re-hashed once, not trusted by their stat
(a file never flushed may then hold zeros under the size and mtime it was given). Where the
system has no boot id, or for a folder nothing re-checks (``durable``), they are fsynced.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from mvc.errors import DirtyWorkingFolder, UsageError, environment_error
from mvc.faults import crashpoint
from mvc.ids import ObjectId
from mvc.jsonshape import JsonShaped, Shape
from mvc.lastuse import note_use
from mvc.objects import Tree
from mvc.ops.deprecation import check_use
from mvc.ops.setup import ignore_folder_in_git
from mvc.ops.snapshot import snapshot, stat_cache_for
from mvc.ops.status import folder_state, head_version, tree_of
from mvc.policy.deprecations import Deprecation
from mvc.progress import NullProgress, Progress
from mvc.remotes import ensure_present
from mvc.repo import Binding, Repo
from mvc.specs import Resolved, SpecLike, resolve
from mvc.worktree.materialise import Staging, remove_file
from mvc.worktree.scan import FileStat


@dataclass
class CheckoutResult(JsonShaped):
    model: str
    version: ObjectId
    path: str
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    bytes_written: int = 0
    head: str | None = None  # the branch now checked out, None if detached
    bound: bool = False
    deprecation: Deprecation | None = None  # the version is deprecated: tell the user

    json_shape: ClassVar[Shape] = Shape(rename={"head": "branch"}, optional=("deprecation",))


def checkout(
    repo: Repo,
    spec: SpecLike,
    *,
    to: str | None = None,
    force: bool = False,
    bind: bool = False,
    progress: Progress | None = None,
    allow_deprecated: bool = False,
    durable: bool = False,
) -> CheckoutResult:
    """Write a version into a folder. A version past its deprecation cutoff is refused
    (``Deprecated``) unless ``allow_deprecated``; before it, the result names the deprecation.
    ``durable``: the caller trusts the folder later without its stat cache (the serving
    cache), so its files are fsynced whenever the store's objects are (``core.fsync``)."""
    progress = progress or NullProgress()
    resolved: Resolved = resolve(repo, spec)
    model = resolved.model
    deprecation = check_use(repo, model, resolved.version, allow_deprecated=allow_deprecated)

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
    new_tree = tree_of(repo, resolved.version)
    assert new_tree is not None

    current: dict[str, Any] = {}
    old_tree: Tree | None = None
    cache = stat_cache_for(repo, folder)
    if into_bound and binding is not None:
        state, snap = folder_state(repo, binding)
        old_tree = tree_of(repo, head_version(repo, binding))
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
        deprecation=deprecation,
    )
    if (into_bound or bind) and not os.access(repo.store_dir, os.W_OK):
        # The binding is written after the folder changes: refuse while nothing has changed.
        raise environment_error(OSError(errno.EROFS, "read-only"), f"the store {repo.store_dir}")
    flush = bool(repo.config.get("checkout.fsync")) or (
        bool(repo.config.get("core.fsync")) and (durable or cache.boot is None)
    )
    staging = Staging(folder, fsync=flush, removing=frozenset(result.removed))
    progress.start("checking out", sum(new_tree.files[p].size for p in to_write))
    try:
        for rel in result.written:
            entry = new_tree.files[rel]
            manifest = repo.objects.manifest_of(entry)
            write = partial(
                repo.objects.write_file,
                manifest,
                name=rel,
                jobs=int(repo.config.get("core.jobs")),
                on_chunk=progress.advance,
                writeback=flush,
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
        cache.record(rel, FileStat.of(info), new_tree.files[rel], unflushed=not flush)
    cache.forget_missing(set(new_tree.files) | (set(current) - set(result.removed)))
    cache.save(force=True)
    if into_bound or bind:
        on_branch = resolved.branch if resolved.kind == "branch" else None
        repo.set_binding(Binding(model, repo.relpath(folder), on_branch, resolved.version))
        result.head = on_branch
        result.bound = True
        if bind:
            ignore_folder_in_git(repo, folder)
    note_use(repo, model, resolved.version)
    return result


def unbind(repo: Repo, model: str) -> Binding:
    """Forget ``model``'s working folder; its files and the model's versions stay. The next
    commit of the folder binds it again; a commit elsewhere may bind another folder."""
    binding = repo.binding(model)
    if binding is None:
        raise UsageError(
            f"model {model!r} has no working folder here", hint="see `mvc status` for bound folders"
        )
    repo.remove_binding(model)
    return binding
