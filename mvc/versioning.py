"""Semantic versions for tags: normalising names and resolving ranges."""

from __future__ import annotations

from typing import Any

from mvc.errors import UsageError
from mvc.ids import ObjectId
from mvc.refnames import validate_tag
from mvc.repo import Repo


def parse_semver(name: str) -> Any:
    """The semver.Version a tag name spells (``v1.2.0`` or ``1.2.0``), or None."""
    import semver

    text = name[1:] if name.startswith("v") else name
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        return None


def normalize_tag(name: str) -> str:
    """Semantic versions are stored as ``v`` + the canonical SemVer string; other names as given."""
    version = parse_semver(name)
    if version is not None:
        return validate_tag("v" + str(version))
    return validate_tag(name)


def resolve_range(repo: Repo, model: str, text: str) -> tuple[str, ObjectId]:
    raise UsageError(f"semver range {text!r} is not supported yet")
