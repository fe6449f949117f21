"""Paths inside a version: relative, '/'-separated, and unable to escape any folder.

A version path has no empty, '.' or '..' segments, no backslashes, drive letters, NUL or control
characters, and never lies inside ``.mvc/``. Trees from any source are checked with this.
"""

from __future__ import annotations

import re

from mvc.errors import InvalidInput

MAX_PATH = 4096
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Never model content (scans always leave them out), so a tree naming them is hostile.
RESERVED_TOP = (".mvc", ".git")


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
        problem = f"is inside {path.split('/')[0]}/"
    if problem:
        raise InvalidInput(
            f"unsafe path in version: {path[:100]!r} {problem}",
            hint="rename the file, or leave it out with a .mvcignore pattern",
        )
    return path
