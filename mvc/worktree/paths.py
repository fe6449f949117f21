"""Path safety: what a path inside a version may be, and where on disk it may go.

What a version path may be is ``mvc.paths``'s job (re-exported here). Materialising never
writes outside the target folder and never through a symlink.
"""

from __future__ import annotations

import os
import stat

from mvc.errors import InvalidInput
from mvc.paths import validate_version_path

__all__ = ["safe_target", "validate_version_path"]


def safe_target(root: str, rel: str) -> str:
    """The absolute path for ``rel`` under ``root``, refusing any existing symlink on the way.

    Folders between root and the file must be real folders (or absent); the file itself must
    be absent or a regular file. Callers replace files by rename, which never follows a link.
    Only what is unsafe here is refused (the tree came from this store, which let nothing
    unportable in); exports hold their keys to the portable rule themselves.
    """
    validate_version_path(rel, portable=False)
    root = os.path.abspath(root)
    current = root
    parts = rel.split("/")
    for index, part in enumerate(parts):
        current = os.path.join(current, part)
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            break
        if stat.S_ISLNK(info.st_mode):
            raise InvalidInput(
                f"refusing to write {rel!r}: {os.path.relpath(current, root)!r} is a symlink",
                hint="remove the symlink or check out to an empty folder",
            )
        last = index == len(parts) - 1
        if not last and not stat.S_ISDIR(info.st_mode):
            raise InvalidInput(
                f"refusing to write {rel!r}: {os.path.relpath(current, root)!r} is not a folder"
            )
        if last and not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"refusing to write {rel!r}: a non-file is in the way")
    return os.path.join(root, *parts)
