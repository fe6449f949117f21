"""The file checks behind mvc's pre-commit hooks (``.pre-commit-hooks.yaml``).

Each takes the files pre-commit passes and returns what it found, one finding per file, each
with the reason and what to do instead; a check with findings makes the hook fail.

- ``pickle``: files whose bytes are a pickle (or numpy object arrays) whatever their name:
  loading them can run code. Safetensors is the format to use.
- ``safetensors``: ``.safetensors`` files whose header mvc's untrusting parser refuses.
- ``weights-in-git``: model weights (by content), and any file over a size limit, about to be
  committed to git itself instead of versioned with mvc.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mvc.errors import MvcError
from mvc.formats.safetensors import read_header
from mvc.formats.weights import HEAD_BYTES, sniff
from mvc.jsonshape import JsonShaped

CHECKS = ("pickle", "safetensors", "weights-in-git")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


@dataclass
class Finding(JsonShaped):
    path: str
    kind: str
    problem: str


@dataclass
class CheckResult(JsonShaped):
    check: str
    checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _head(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(HEAD_BYTES)


def check_files(check: str, paths: list[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> CheckResult:
    if check not in CHECKS:
        raise ValueError(f"unknown check {check!r}")
    result = CheckResult(check)
    for path in paths:
        if not os.path.isfile(path) or os.path.islink(path):
            continue  # deleted in this commit, or a symlink git stores as a link
        result.checked += 1
        finding = _one(check, path, max_bytes)
        if finding is not None:
            result.findings.append(finding)
    return result


def _one(check: str, path: str, max_bytes: int) -> Finding | None:
    try:
        head = _head(path)
    except OSError as exc:
        return Finding(path, "unreadable", f"cannot read: {exc.strerror or exc}")
    sniffed = sniff(head, os.path.basename(path))
    if check == "pickle":
        if sniffed.runs_code:
            return Finding(
                path,
                sniffed.kind,
                "a pickle: loading it can run arbitrary code; save weights as safetensors "
                "(safetensors.torch.save_file / save_pretrained(safe_serialization=True))",
            )
        return None
    if check == "safetensors":
        try:
            read_header(path)
        except MvcError as exc:
            return Finding(path, "safetensors", exc.message)
        return None
    size = os.path.getsize(path)
    if sniffed.weights:
        return Finding(
            path,
            sniffed.kind,
            f"model weights ({sniffed.kind}, {size} bytes) do not belong in git: version the "
            "folder with `mvc commit` and let git ignore it (`mvc init` in a git repo does)",
        )
    if size > max_bytes:
        return Finding(
            path,
            "large",
            f"{size} bytes is over the {max_bytes}-byte limit for git; version it with mvc "
            "(or raise --max-bytes)",
        )
    return None
