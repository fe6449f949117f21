"""``status``: a model's working folder against its HEAD.

Status reads only what the stat cache cannot vouch for, and never the network: it imports no
remote or spec-resolution code, so ``mvc status`` starts fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

from mvc.errors import NotFound
from mvc.ids import ObjectId
from mvc.jsonshape import JsonShaped, Shape
from mvc.objects import Tree
from mvc.ops.snapshot import Snapshot, changed_paths, same_files, snapshot, stat_cache_for
from mvc.progress import Progress
from mvc.refnames import branch as branch_ref
from mvc.repo import Binding, Repo


@dataclass
class ModelStatus(JsonShaped):
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

    json_shape: ClassVar[Shape] = Shape(
        rename={"tip": "branch_tip"}, computed={"clean": "clean", "behind": "behind"}
    )


def head_version(repo: Repo, binding: Binding) -> ObjectId | None:
    """The version the working folder was last checked out or committed at."""
    if binding.version is not None or binding.branch is None:
        return binding.version
    return repo.refs.get(branch_ref(binding.model, binding.branch))


def branch_tip(repo: Repo, binding: Binding) -> ObjectId | None:
    return repo.refs.get(branch_ref(binding.model, binding.branch)) if binding.branch else None


def tree_of(repo: Repo, version: ObjectId | None) -> Tree | None:
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
    # Like commit, with the checked-out version's entries: they are what the stat cache
    # records for commit to reuse.
    head = tree_of(repo, version)
    snap = snapshot(repo, folder, store=False, cache=cache, progress=progress, like=head)
    cache.save()
    tip = tree_of(repo, result.tip) if result.behind and result.tip else None
    if tip is not None and same_files(tip, snap.tree):
        result.version = version = result.tip  # the folder already holds what the branch names
        head = tip
    result.added, result.modified, result.removed = changed_paths(head, snap.tree)
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
