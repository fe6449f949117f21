"""``.mvcignore``: which files of a folder a version leaves out (gitignore syntax).

``.mvc/`` and ``.git/`` are always left out, at any depth (a model folder may hold a clone).
The ignore file itself is versioned, like git's.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mvc.errors import InvalidInput

IGNORE_FILE = ".mvcignore"
ALWAYS_IGNORED = (".mvc", ".git")

Matcher = Callable[[str], bool]


def load_ignore(folder: str) -> Matcher:
    """A predicate over '/'-separated relative paths (folders end with '/')."""
    path = os.path.join(folder, IGNORE_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        lines = []
    except (UnicodeDecodeError, OSError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", hint="fix the file or remove it") from exc

    def always(rel: str) -> bool:
        return any(part in ALWAYS_IGNORED for part in rel.split("/"))

    if not any(line.strip() and not line.lstrip().startswith("#") for line in lines):
        return always
    import pathspec

    try:
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
    except Exception as exc:  # pathspec raises several types for bad patterns
        raise InvalidInput(f"{path} has a bad pattern: {exc}", hint="fix the pattern") from exc
    return lambda rel: always(rel) or spec.match_file(rel)
