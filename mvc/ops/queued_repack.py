"""``mvc repack --auto``: repack what the commits queued for ``repack.auto`` (see
``mvc.ops.autorepack``, which keeps the queue and starts this; kept apart so that a commit does
not load repack's code)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from mvc.errors import MvcError, environment_error
from mvc.ids import ObjectId
from mvc.jsonshape import JsonShaped, Shape
from mvc.ops.autorepack import TAKEN, hold_if_free, take
from mvc.ops.maintenance import RepackResult, repack
from mvc.ops.snapshot import changed_paths
from mvc.progress import Progress
from mvc.repo import Repo


def chunks_brought(repo: Repo, versions: list[ObjectId]) -> list[ObjectId]:
    """The chunks (and manifests) of the files each version added or changed against its first
    parent: what its commit may have written loose."""
    found: dict[ObjectId, None] = {}
    for oid in versions:
        try:
            version = repo.objects.get_version(oid)
            tree = repo.objects.get_tree(version.tree)
            parent = (
                repo.objects.get_tree(repo.objects.get_version(version.parents[0]).tree)
                if version.parents
                else None
            )
        except MvcError:
            continue  # gone (gc'd after a branch was deleted) or damaged: fsck's business
        added, modified, _ = changed_paths(parent, tree)
        for path in added + modified:
            entry = tree.files[path]
            found[ObjectId(entry.manifest)] = None
            try:
                manifest = repo.objects.manifest_of(entry)
            except MvcError:
                continue
            for chunk in manifest.chunks:
                found[ObjectId(chunk.id)] = None
    return list(found)


@dataclass
class AutoRun(JsonShaped):
    """One ``mvc repack --auto``: ``ran`` False when another one held the lock."""

    ran: bool
    versions: int
    repacked: RepackResult

    json_shape: ClassVar[Shape] = Shape()


def run_pending(repo: Repo, *, progress: Progress | None = None) -> AutoRun:
    with hold_if_free(repo) as free:
        if not free:
            return AutoRun(False, 0, RepackResult())
        versions = take(repo)
        result = repack(repo, chunks_brought(repo, versions), versions=versions, progress=progress)
        try:
            os.unlink(os.path.join(repo.store_dir, TAKEN))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise environment_error(
                exc, f"the repack queue {os.path.join(repo.store_dir, TAKEN)}"
            ) from exc
        return AutoRun(True, len(versions), result)
