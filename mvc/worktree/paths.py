"""Path safety: what a path inside a version may be, and where on disk it may go.

A version path is relative, '/'-separated, with no empty, '.' or '..' segments, no backslashes,
drive letters, NUL or control characters. Materialising never writes outside the target folder
and never through a symlink.
"""

from __future__ import annotations

import os
import re
import stat

from mvc.errors import InvalidInput

MAX_PATH = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
RESERVED_TOP = (".mvc",)


def validate_version_path(path: str) -> str:
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise InvalidInput(f"unsafe path in version: {str(path)[:100]!r}")
    problem = None
    if path.startswith("/") or _DRIVE.match(path):
        problem = "is absolute"
    elif "\\" in path:
        problem = "contains a backslash"
    elif _CONTROL.search(path):
        problem = "contains a control character"
    elif any(seg in ("", ".", "..") for seg in path.split("/")):
        problem = "has an empty, '.' or '..' part"
    elif path.split("/")[0] in RESERVED_TOP:
        problem = "is inside .mvc/"
    if problem:
        raise InvalidInput(f"unsafe path in version: {path[:100]!r} {problem}")
    return path


def safe_target(root: str, rel: str) -> str:
    """The absolute path for ``rel`` under ``root``, refusing any existing symlink on the way.

    Folders between root and the file must be real folders (or absent); the file itself must
    be absent or a regular file. Callers replace files by rename, which never follows a link.
    """
    validate_version_path(rel)
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
