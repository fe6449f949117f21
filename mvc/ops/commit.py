"""``commit``: snapshot a folder or file as the next version of a model.

Order of work keeps the store's invariants: objects first (under the shared objects lock so
gc waits), then the branch moves by compare-and-swap, then the working-folder binding. A branch
that moved meanwhile fails the commit with RefConflict: no update is lost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mvc.errors import MvcError, RefConflict, UsageError
from mvc.faults import crashpoint
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.objects import Version
from mvc.ops.adapters import check_folder_against, folder_facts
from mvc.ops.gitinfo import git_state
from mvc.ops.setup import ignore_folder_in_git
from mvc.ops.snapshot import Snapshot, changed_paths, snapshot, stat_cache_for
from mvc.peft import require_compatible
from mvc.progress import Progress
from mvc.refnames import branch as branch_ref
from mvc.refnames import validate_branch, validate_model
from mvc.repo import Binding, Repo


@dataclass
class CommitResult(JsonShaped):
    model: str
    branch: str
    created: bool
    version_id: ObjectId | None
    version: Version | None
    parent: ObjectId | None
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    hashed_files: int = 0
    hashed_bytes: int = 0
    new_chunks: int = 0
    new_bytes: int = 0
    bound: bool = False

    json_shape: ClassVar[Shape] = Shape(rename={"version_id": "version"}, exclude=("version",))


def model_name_for(repo: Repo, target: str) -> str:
    binding = repo.binding_for_path(target) if os.path.isdir(target) else None
    if binding:
        return binding.model
    base = os.path.basename(os.path.abspath(target))
    if os.path.isfile(target):
        base = base.split(".", 1)[0] or base
    try:
        return validate_model(base)
    except MvcError as exc:
        raise UsageError(f"cannot use {base!r} as a model name", hint="pass --model NAME") from exc


def _refuse_inside_another_binding(repo: Repo, model: str, target: str) -> None:
    """A path inside (or equal to) another model's working folder is part of that model: as a
    model of its own, checking one out would show the other as modified."""
    rel = repo.relpath(target)
    for binding in repo.bindings():
        inside = binding.path == "." or rel == binding.path or rel.startswith(binding.path + "/")
        if binding.model == model or not inside or rel.startswith("../"):
            continue
        where = "is" if rel == binding.path else "is inside"
        raise UsageError(
            f"{rel} {where} {binding.path}, the working folder of model {binding.model!r}",
            hint=f"commit the whole folder (`mvc commit {binding.path}`), pass --model "
            f"{binding.model} to make this path a version of {binding.model!r}, or commit a "
            "folder outside it",
        )


def _plan_branch(
    repo: Repo, model: str, target: str, branch: str | None
) -> tuple[str, ObjectId | None, ObjectId | None, Binding | None]:
    """(branch to move, its expected value, parent version, the target's binding if bound)."""
    binding = repo.binding(model)
    is_bound_folder = bool(
        binding and os.path.isdir(target) and binding.path == repo.relpath(target)
    )
    if branch is not None:
        validate_branch(branch)
    if is_bound_folder and binding and binding.branch is None:
        if branch is None:
            raise UsageError(
                f"{binding.path} is at version {short(binding.version or '')} (detached HEAD); "
                "a commit there must start a branch",
                hint=f"mvc commit {binding.path} --branch NAME",
            )
        tip = repo.refs.get(branch_ref(model, branch))
        if tip is not None and tip != binding.version:
            raise RefConflict(
                f"branch {branch!r} of {model!r} exists at {short(tip)}, not at the checked-out "
                f"version {short(binding.version or '')}",
                hint=f"choose a new branch name, or `mvc checkout {model}@{branch}` first",
            )
        return branch, tip, binding.version, binding
    if branch is None:
        branch = binding.branch if binding and binding.branch else "main"
    tip = repo.refs.get(branch_ref(model, branch))
    if is_bound_folder and binding and binding.branch:
        synced = binding.version or repo.refs.get(branch_ref(model, binding.branch))
        if tip is None:
            # A new branch named on a bound folder starts from the version checked out there.
            return branch, None, synced, binding
    return branch, tip, tip, binding if is_bound_folder else None


def _check_not_behind(
    repo: Repo, binding: Binding | None, branch: str, tip: ObjectId | None, folder_tree: ObjectId
) -> None:
    """Refuse to commit a bound folder whose branch moved on since it was synced.

    Committing it would silently undo whatever moved the branch (a CI commit from another
    folder, a pull). A folder that already holds exactly the tip is simply in sync again.
    """
    if binding is None or binding.branch != branch or binding.version in (None, tip):
        return
    if tip is not None and repo.objects.get_version(tip).tree == folder_tree:
        repo.set_binding(Binding(binding.model, binding.path, branch, tip))
        return
    moved = f"moved to {short(tip)}" if tip else "was deleted"
    raise RefConflict(
        f"branch {branch!r} of {binding.model!r} {moved} since {binding.path} was last checked "
        f"out or committed (at {short(binding.version or '')}); committing it now would undo that",
        hint=f"keep this work on a new branch: `mvc commit {binding.path} --branch NAME`; or, "
        f"with no changes to keep, `mvc checkout {binding.model}@{branch}` updates the folder",
    )


def _with_adapter_facts(
    repo: Repo, folder: str, lineage: dict[str, Any], parent: ObjectId | None
) -> dict[str, Any]:
    """A PEFT adapter folder: record its facts, and check a LoRA against its base: ``--base``,
    else the base its previous version was committed against (retraining keeps the base).

    Runs before anything is stored, so an adapter that does not fit its base is never recorded.
    """
    facts = folder_facts(folder)
    if facts is None:
        return lineage
    lineage["adapter"] = facts
    if "base" not in lineage and parent is not None:
        inherited = repo.objects.get_version(parent).lineage.get("base")
        if isinstance(inherited, dict):
            lineage["base"] = inherited
    base = lineage.get("base")
    if facts["type"] == "LORA" and isinstance(base, dict) and base.get("version"):
        label = f"{base.get('spec') or base.get('model')} ({short(base['version'])})"
        report = check_folder_against(repo, folder, base["version"], label)
        if report is not None:
            require_compatible(report)
    return lineage


def commit(
    repo: Repo,
    target: str,
    *,
    message: str,
    model: str | None = None,
    branch: str | None = None,
    params: Mapping[str, object] | None = None,
    metrics: Mapping[str, object] | None = None,
    lineage: Mapping[str, object] | None = None,
    bind: bool = False,
    raw: bool = False,
    follow_symlinks: bool = False,
    allow_empty: bool = False,
    progress: Progress | None = None,
    temporary: bool = False,
) -> CommitResult:
    """``temporary``: ``target`` is a scratch folder (merge-adapter's output) that is never
    bound as a working folder and gets no stat cache."""
    target = os.path.abspath(target)
    model = validate_model(model) if model else model_name_for(repo, target)
    if not temporary:
        _refuse_inside_another_binding(repo, model, target)
    branch_name, expected, parent, bound = _plan_branch(repo, model, target, branch)
    is_folder = os.path.isdir(target)
    if is_folder:
        lineage = _with_adapter_facts(repo, target, dict(lineage or {}), parent)
    cache = stat_cache_for(repo, target) if is_folder and not temporary else None
    with repo.writing_objects():
        parent_version = repo.objects.get_version(parent) if parent else None
        parent_tree = repo.objects.get_tree(parent_version.tree) if parent_version else None
        snap: Snapshot = snapshot(
            repo,
            target,
            store=True,
            raw=raw,
            follow_symlinks=follow_symlinks,
            cache=cache,
            progress=progress,
            # The parent's tree is whole (closure before reference): an unchanged folder
            # needs no object looked up when nothing new will name it.
            stored_tree=parent_version.tree if parent_version and not allow_empty else None,
            like=parent_tree,
        )
        crashpoint("commit.objects")
        if not snap.tree.files and not allow_empty:
            raise MvcError(
                f"{repo.relpath(target)} holds no files: an empty folder is no version",
                hint="put the model's files there first (or pass --allow-empty)",
            )
        _check_not_behind(repo, bound, branch_name, expected, snap.tree_id)
        added, modified, removed = changed_paths(parent_tree, snap.tree)
        result = CommitResult(
            model,
            branch_name,
            False,
            None,
            None,
            parent,
            added,
            modified,
            removed,
            len(snap.hashed),
            snap.hashed_bytes,
            snap.new_chunks,
            snap.new_bytes,
        )
        unchanged = parent_version is not None and parent_version.tree == snap.tree_id
        if unchanged and not allow_empty:
            if cache is not None:
                cache.save()
            if metrics or params:
                raise UsageError(
                    f"nothing changed in {target} since {model}@{branch_name}: metrics and "
                    "params alone make no new version",
                    hint=f"attach them to the version that is there: `mvc annotate "
                    f"{model}@{short(parent or '')} --metric NAME=NUMBER` (or --allow-empty "
                    "for a new version that keeps its params and datasets)",
                )
            return result
        if unchanged and parent_version is not None:
            # An empty commit is the same weights again: what was true of their training
            # (params, datasets, base) stays true unless given anew.
            params = {**parent_version.params, **dict(params or {})}
            lineage = {**parent_version.lineage, **dict(lineage or {})}
        version = Version(
            model=model,
            tree=snap.tree_id,
            parents=(parent,) if parent else (),
            author=repo.identity(),
            time=repo.now(),
            message=message,
            params=dict(params or {}),
            metrics=dict(metrics or {}),
            git=git_state(target if is_folder else os.path.dirname(target)),
            lineage=dict(lineage or {}),
        )
        version_id = repo.objects.put_meta(version)
        crashpoint("commit.version")
        # Still under the objects lock: a gc between writing the objects and moving the ref
        # would see them unreachable (and, with a short grace, delete them).
        try:
            repo.refs.set_if_equals(
                branch_ref(model, branch_name),
                expected,
                version_id,
                f"commit: {message.splitlines()[0] if message else ''}",
            )
        except RefConflict as exc:
            raise RefConflict(
                f"branch {branch_name!r} of {model!r} moved while committing "
                f"(another commit landed first); version {short(version_id)} was stored but not recorded",
                hint=f"look at `mvc log {model}`, then commit again",
            ) from exc
    crashpoint("commit.ref")
    result.created = True
    result.version_id = version_id
    result.version = version
    if is_folder and not temporary and (bound is not None or bind or repo.binding(model) is None):
        repo.set_binding(Binding(model, repo.relpath(target), branch_name, version_id))
        result.bound = True
        ignore_folder_in_git(repo, target)
    if cache is not None:
        cache.save()
    return result
