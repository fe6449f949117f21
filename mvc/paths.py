"""Paths inside a version: relative, '/'-separated, and safe to create on every file system.

A version made on Linux is checked out on macOS and Windows too, so a path is refused on every
platform if it is dangerous on any, as git does since CVE-2014-9390 (its ``verify_path``,
``is_ntfs_dotgit``, ``is_hfs_dotgit``). ``path_problem`` is the one pure rule; it is applied
where paths enter a store or leave mvc: the commit scan, every tree a transfer receives (pull,
fetch, clone, push) and the export sink. Trees already in the local store are read with the
rule's local part only (``portable=False``: nothing that escapes or names ``.mvc``/``.git`` at
the top), as git checks on receive rather than on every read, so a version an older mvc
stored stays readable and is never taken for corruption. A version path has:

- no empty, '.' or '..' part, and is not absolute (no leading '/', drive letter or UNC name);
- no ``.git`` or ``.mvc`` part in any case or NTFS spelling (``.Git``, ``.git.``, ``git~1``,
  ``.git::$INDEX_ALLOCATION``): on a case-insensitive disk those *are* a repository's folder;
- no Windows device name as a part's stem (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM1``-``9``,
  ``LPT1``-``9``, also ``aux.txt``), and no part ending in a dot or a space (Windows drops them);
- no NUL, control, invisible (zero-width, BOM) or bidi characters: HFS+ ignores some of them in
  names, and all of them make a path read as something it is not;
- no backslash and none of ``<>:"|?*`` (Windows separators, NTFS streams, wildcards);
- no part longer than 255 bytes of UTF-8, no path longer than 4096.

``validate_tree_paths`` adds what only a whole tree can show: two paths that differ only in
case or Unicode normalisation, which are one file on macOS and Windows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from mvc.errors import InvalidInput

MAX_PATH = 4096
MAX_PART_BYTES = 255
_DRIVE = re.compile(r"^[A-Za-z]:")
# Windows file names may not hold these; ':' also opens an NTFS stream (".git::$INDEX_ALLOCATION").
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
# Unicode categories never allowed: control, format (zero-width, BOM, bidi), line and paragraph
# separators, and lone surrogates.
_BANNED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Never model content (scans always leave them out), so a tree naming them is hostile. Compared
# case-folded, after NTFS drops trailing dots and spaces; "~1" are their 8.3 short names.
RESERVED_TOP = (".mvc", ".git")
_REPOSITORY_NAMES = frozenset({".git", ".mvc", "git~1", "mvc~1"})
_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{kind}{n}" for kind in ("com", "lpt") for n in (*"123456789", "¹", "²", "³")}
)
_HINT = "rename the file, or leave it out with a .mvcignore pattern"


def path_problem(path: object, *, portable: bool = True) -> str | None:
    """Why ``path`` may not be a path inside a version, or None if it may.

    ``portable=False`` keeps only the rules that make a path unsafe on *this* machine (it
    escapes the folder, or names the store or git's folder at the top): a tree already in
    the local store is read with those, so a version an older mvc stored with ``aux.json`` or
    ``README.md`` beside ``Readme.md`` stays readable instead of looking corrupt. Everything that
    enters a store (the commit scan, a transfer) is held to the full, portable rule."""
    if not isinstance(path, str) or not path:
        return "is empty or not text"
    if len(path) > MAX_PATH:
        return f"is longer than {MAX_PATH} characters"
    if path.startswith("/") or _DRIVE.match(path):
        return "is absolute"
    if "\\" in path:
        return "contains a backslash"
    if not portable:
        return _local_problem(path)
    for char in path:
        if unicodedata.category(char) in _BANNED_CATEGORIES:
            return f"contains the invisible or control character U+{ord(char):04X}"
        if char in _WINDOWS_FORBIDDEN:
            return f"contains {char!r}, which Windows does not allow in names"
    for part in path.split("/"):
        problem = _part_problem(part)
        if problem:
            return problem
    return None


def _part_problem(part: str) -> str | None:
    if part in ("", ".", ".."):
        return "has an empty, '.' or '..' part"
    if len(part.encode("utf-8")) > MAX_PART_BYTES:
        return f"has a part longer than {MAX_PART_BYTES} bytes"
    if part.rstrip(". ").casefold() in _REPOSITORY_NAMES:
        return f"is inside {part}/ (a repository folder on some file systems)"
    if part.endswith((".", " ")):
        return "has a part ending in a dot or a space (Windows drops them)"
    if part.split(".", 1)[0].rstrip(" ").casefold() in _DEVICES:
        return f"has the Windows device name {part!r}"
    return None


def _local_problem(path: str) -> str | None:
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        return "contains a control character"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' part"
    if parts[0] in RESERVED_TOP:
        return f"is inside {parts[0]}/"
    return None


def validate_version_path(path: str, *, portable: bool = True) -> str:
    problem = path_problem(path, portable=portable)
    if problem:
        shown = path[:100] if isinstance(path, str) else str(path)[:100]
        raise InvalidInput(f"unsafe path in version: {shown!r} {problem}", hint=_HINT)
    return path


def twin_key(path: str) -> str:
    """What a case-insensitive, normalising file system (macOS, Windows) sees of ``path``."""
    return unicodedata.normalize("NFC", path).casefold()


def validate_tree_paths(paths: Iterable[str]) -> None:
    """Every path safe, and no two (or two of their folders) one name on another system."""
    paths = list(paths)
    for path in paths:
        validate_version_path(path)
    check_twins(paths)


def check_twins(paths: Iterable[str]) -> None:
    """Refuse two paths (or folders) that differ only in case or Unicode normalisation."""
    seen: dict[str, str] = {}
    for path in paths:
        parts = path.split("/")
        for end in range(1, len(parts) + 1):
            prefix = "/".join(parts[:end])
            other = seen.setdefault(twin_key(prefix), prefix)
            if other != prefix:
                raise InvalidInput(
                    f"unsafe paths in version: {other[:100]!r} and {prefix[:100]!r} differ only "
                    "in case or Unicode form (one name on macOS and Windows)",
                    hint=_HINT,
                )
