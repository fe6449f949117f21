"""What git says about the folder a model was committed from (commit and dirtiness)."""

from __future__ import annotations

import subprocess
from typing import Any


def _git(args: list[str], cwd: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_work_tree(cwd: str) -> str | None:
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    return top.strip() if top else None


def git_state(cwd: str) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` when ``cwd`` is inside a git work tree with commits."""
    head = _git(["rev-parse", "HEAD"], cwd)
    if not head:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"commit": head.strip(), "dirty": bool(status and status.strip())}
