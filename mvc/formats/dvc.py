"""DVC's own files, read without DVC and without trusting them.

A ``.dvc`` file (``dvc add``) and a ``dvc.lock`` (``dvc repro``) name outputs by md5::

    outs:
    - md5: bbad1df7b9f3f3a457d5c1977a5bb464.dir   # a folder: its listing is a cache object
      size: 5008
      nfiles: 2
      hash: md5                                   # DVC 3; absent in DVC 2 files (md5 of
      path: bert                                  # text files was taken after CRLF -> LF)

A folder's listing (the ``.dir`` object) is JSON: ``[{"md5": ..., "relpath": ...}, ...]``.
The cache keeps each object at ``files/md5/<2>/<30>`` (DVC 3) or ``<2>/<30>`` (DVC 2).
Everything here is pure: parsing text, naming cache paths, checking digests.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

from mvc.errors import InvalidInput
from mvc.yamltext import YamlProblem, load_yaml

_MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


@dataclass(frozen=True)
class Out:
    """One output of a .dvc file or a dvc.lock stage."""

    path: str  # relative to the file that names it (a .dvc file) or to the repo (dvc.lock)
    md5: str  # 32 hex digits, plus ".dir" for a folder
    size: int | None
    nfiles: int | None
    legacy: bool  # a DVC 2 entry (no ``hash: md5``): text files were hashed with CRLF -> LF

    @property
    def is_dir(self) -> bool:
        return self.md5.endswith(".dir")


@dataclass(frozen=True)
class Entry:
    """One file of a folder output."""

    relpath: str
    md5: str


def parse_outs(text: str, source: str, *, stage: str | None = None) -> list[Out]:
    """The outputs of a ``.dvc`` file, or of one stage of a ``dvc.lock`` (``stage``)."""
    try:
        loaded = load_yaml(text, aliases=False)
    except YamlProblem as exc:
        raise InvalidInput(f"{_where(source, exc.line)}: {exc.message}") from exc
    doc = loaded.value
    if not isinstance(doc, dict):
        raise InvalidInput(f"{source}: not a DVC file (expected a mapping with 'outs')")
    if stage is not None:
        stages = doc.get("stages")
        if not isinstance(stages, dict) or stage not in stages:
            known = ", ".join(sorted(stages)) if isinstance(stages, dict) else "none"
            raise InvalidInput(f"{source}: no stage {stage!r} (stages: {known})")
        doc = stages[stage]
        prefix = f"stages.{stage}.outs"
    else:
        prefix = "outs"
    outs = doc.get("outs") if isinstance(doc, dict) else None
    if not isinstance(outs, list) or not outs:
        raise InvalidInput(f"{_where(source, loaded.line_of(prefix))}: no 'outs' list")
    return [_out(item, f"{prefix}[{i}]", source, loaded.line_of) for i, item in enumerate(outs)]


def stage_outs(text: str, source: str) -> dict[str, list[Out]]:
    """Every stage of a ``dvc.lock`` and its outputs (stages without outputs left out)."""
    try:
        doc = load_yaml(text, aliases=False).value
    except YamlProblem as exc:
        raise InvalidInput(f"{_where(source, exc.line)}: {exc.message}") from exc
    stages = doc.get("stages") if isinstance(doc, dict) else None
    if not isinstance(stages, dict):
        raise InvalidInput(f"{source}: not a dvc.lock (expected 'stages')")
    found: dict[str, list[Out]] = {}
    for name, body in stages.items():
        if isinstance(body, dict) and body.get("outs"):
            found[str(name)] = parse_outs(text, source, stage=str(name))
    return found


def _out(item: object, path: str, source: str, line_of: Callable[[str], int | None]) -> Out:
    if not isinstance(item, dict):
        raise InvalidInput(f"{_where(source, line_of(path))}: an output must be a mapping")
    md5 = item.get("md5")
    rel = item.get("path")
    if not isinstance(md5, str) or not _MD5.match(md5):
        where = _where(source, line_of(f"{path}.md5"))
        raise InvalidInput(f"{where}: output md5 {md5!r} is not an md5 digest")
    if not isinstance(rel, str) or not rel or not safe_relpath(rel):
        where = _where(source, line_of(f"{path}.path"))
        raise InvalidInput(f"{where}: output path {rel!r} is not a relative path inside the repo")
    size, nfiles = item.get("size"), item.get("nfiles")
    return Out(
        path=rel,
        md5=md5,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        nfiles=nfiles if isinstance(nfiles, int) and not isinstance(nfiles, bool) else None,
        legacy=item.get("hash") != "md5",
    )


def parse_listing(data: bytes, source: str) -> list[Entry]:
    """A folder output's ``.dir`` object: every file with its md5, paths checked."""
    import json

    try:
        items = json.loads(data)
    except ValueError as exc:
        raise InvalidInput(f"{source}: folder listing is not JSON ({exc})") from exc
    if not isinstance(items, list):
        raise InvalidInput(f"{source}: folder listing is not a list")
    entries: list[Entry] = []
    seen: set[str] = set()
    for item in items:
        md5 = item.get("md5") if isinstance(item, dict) else None
        rel = item.get("relpath") if isinstance(item, dict) else None
        if not isinstance(md5, str) or not _MD5.match(md5) or md5.endswith(".dir"):
            raise InvalidInput(f"{source}: listing entry {item!r} has no file md5")
        if not isinstance(rel, str) or not safe_relpath(rel) or rel in seen:
            raise InvalidInput(f"{source}: listing entry path {rel!r} is unsafe or repeated")
        seen.add(rel)
        entries.append(Entry(rel, md5))
    return entries


def safe_relpath(path: str) -> bool:
    """A relative POSIX path that stays inside its folder (no ``..``, no absolute, no NUL)."""
    if "\0" in path or "\\" in path or path.startswith("/"):
        return False
    normal = posixpath.normpath(path)
    return normal not in (".", "..") and not normal.startswith("../")


def cache_keys(md5: str) -> tuple[str, str]:
    """Where a cache holds an object: DVC 3's ``files/md5/ab/cdef…`` and DVC 2's ``ab/cdef…``."""
    return (f"files/md5/{md5[:2]}/{md5[2:]}", f"{md5[:2]}/{md5[2:]}")


class Md5Check:
    """Feed the bytes of one cache object; ``matches(md5)`` says whether DVC would agree.

    DVC 2 hashed files that look like text after turning CRLF into LF; a legacy entry accepts
    that digest too. "Looks like text" is DVC's own test (``dvc_data.hashfile.istextfile``):
    the first 512 bytes hold no NUL and at most 30% bytes outside printable ASCII and
    ``\n\r\t\f\b``. Only that first block decides; a NUL later does not."""

    def __init__(self, legacy: bool) -> None:
        self._plain = hashlib.md5(usedforsecurity=False)
        self._unix = hashlib.md5(usedforsecurity=False) if legacy else None
        self._head = b""
        self._pending_cr = False

    def update(self, block: bytes) -> None:
        self._plain.update(block)
        if self._unix is None:
            return
        if len(self._head) < _TEXT_BLOCK:
            self._head += block[: _TEXT_BLOCK - len(self._head)]
        if self._pending_cr:
            block = b"\r" + block
        self._pending_cr = block.endswith(b"\r")
        if self._pending_cr:
            block = block[:-1]
        self._unix.update(block.replace(b"\r\n", b"\n"))

    def matches(self, md5: str) -> bool:
        if self._plain.hexdigest() == md5:
            return True
        if self._unix is None or not looks_like_text(self._head):
            return False
        unix = self._unix.copy()
        if self._pending_cr:
            unix.update(b"\r")
        return unix.hexdigest() == md5


_TEXT_BLOCK = 512
_TEXT_BYTES = bytes(range(32, 127)) + b"\n\r\t\f\b"


def looks_like_text(block: bytes) -> bool:
    """DVC 2's text test on a file's first 512 bytes (an empty file is text)."""
    if not block:
        return True
    if b"\0" in block:
        return False
    return len(block.translate(None, _TEXT_BYTES)) / len(block) <= 0.30


def _where(source: str, line: int | None) -> str:
    return f"{source}:{line}" if line else source
