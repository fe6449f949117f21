"""Names of models, branches, tags, channels and remotes: validated once, at the edge.

A name is one or more '/'-separated segments of letters, digits, '.', '_' and '-', not starting
with '.' or '-'. Characters that version specs use (``@ ~ ^ : < > = ,`` and space) can never
appear, so ``MODEL@REV`` always parses one way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from mvc.errors import InvalidName

_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_NAME = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")
_SIMPLE = re.compile(rf"^{_SEGMENT}$")
# Tags may also hold '+', for SemVer build metadata (v1.0.0+build.7).
_TAG_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._+-]*"
_TAG = re.compile(rf"^{_TAG_SEGMENT}(/{_TAG_SEGMENT})*$")
MAX_NAME = 200

HEADS = "heads"
TAGS = "tags"
CHANNELS = "channels"
NOTES = "notes"  # a version's annotations: the ref is named by the version's id
REF_KINDS = (HEADS, TAGS, CHANNELS, NOTES)
KIND_WORD = {HEADS: "branch", TAGS: "tag", CHANNELS: "channel", NOTES: "notes"}


def _check(name: str, what: str, pattern: re.Pattern[str]) -> str:
    if (
        not isinstance(name, str)
        or len(name) > MAX_NAME
        or not pattern.match(name)
        or ".." in name
        or name.endswith(".lock")
        or name.endswith(".")
    ):
        raise InvalidName(
            f"invalid {what} name {name!r}",
            hint=f"a {what} name uses letters, digits, '.', '_', '-'"
            + (" and '/' between parts" if pattern is not _SIMPLE else "")
            + (" ('+' too, for build metadata)" if pattern is _TAG else ""),
        )
    return name


def validate_model(name: str) -> str:
    return _check(name, "model", _NAME)


def validate_branch(name: str) -> str:
    return _check(name, "branch", _NAME)


def validate_tag(name: str) -> str:
    return _check(name, "tag", _TAG)


def validate_channel(name: str) -> str:
    return _check(name, "channel", _SIMPLE)


def validate_remote(name: str) -> str:
    return _check(name, "remote", _SIMPLE)


_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")


def validate_notes(name: str) -> str:
    """A notes ref is named by the full id of the version it annotates."""
    if not isinstance(name, str) or not _VERSION_ID.match(name):
        raise InvalidName(f"invalid notes ref name {name!r}", hint="it is a full version id")
    return name


_VALIDATORS = {
    HEADS: validate_branch,
    TAGS: validate_tag,
    CHANNELS: validate_channel,
    NOTES: validate_notes,
}


@dataclass(frozen=True, order=True)
class RefName:
    """A ref of one model: ``bert`` + ``heads`` + ``main``."""

    model: str
    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in REF_KINDS:
            raise InvalidName(f"unknown ref kind {self.kind!r}")
        validate_model(self.model)
        _VALIDATORS[self.kind](self.name)

    @property
    def folder(self) -> str:
        """The storage folder holding this ref's log: one path segment per part, '/' escaped."""
        return f"refs/{self.kind}/{_escape(self.model)}/{_escape(self.name)}"

    def __str__(self) -> str:
        return f"{self.model} {KIND_WORD[self.kind]} {self.name}"


def branch(model: str, name: str) -> RefName:
    return RefName(model, HEADS, name)


def tag(model: str, name: str) -> RefName:
    return RefName(model, TAGS, name)


def channel(model: str, name: str) -> RefName:
    return RefName(model, CHANNELS, name)


def notes(model: str, version: str) -> RefName:
    """The ref holding the annotations of one version (``refs/notes/<model>/<version id>``)."""
    return RefName(model, NOTES, version)


def _escape(name: str) -> str:
    return quote(name, safe="")


def unescape(segment: str) -> str:
    return unquote(segment)
