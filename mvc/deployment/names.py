"""What the tags of a model say about its versions: a name for people, and deprecation.

A version is named by its highest semver tag (else its alphabetically first tag, else its short
id). A version is deprecated while a tag ``deprecated/…`` of its model names it
(``mvc tag bert deprecated/v1.3.0 v1.3.0 -m "leaks PII"``); the tag's message is the reason, and
deprecated tags never name a version. ``Names`` reads these facts from a mapping
model -> ``ModelTags``, so the planners work on a snapshot and tests pass a plain dict. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mvc.deployment.records import Arm, Record, Target
from mvc.ids import ObjectId, short
from mvc.versioning import parse_semver

DEPRECATED_TAG_PREFIX = "deprecated/"


@dataclass(frozen=True)
class ModelTags:
    """One model's tags: version -> the (non-deprecated) tag names, and version -> why it is
    deprecated."""

    names: Mapping[ObjectId, tuple[str, ...]] = field(default_factory=dict)
    deprecated: Mapping[ObjectId, str] = field(default_factory=dict)

    @classmethod
    def from_tags(cls, tags: Iterable[tuple[str, ObjectId, str]]) -> ModelTags:
        """From (tag name, version, the tag's message) in listing order."""
        names: dict[ObjectId, list[str]] = {}
        deprecated: dict[ObjectId, str] = {}
        for name, version, why in tags:
            if name.startswith(DEPRECATED_TAG_PREFIX):
                deprecated.setdefault(version, f"tag {name}" + (f": {why}" if why else ""))
            else:
                names.setdefault(version, []).append(name)
        return cls({v: tuple(n) for v, n in names.items()}, deprecated)


NO_TAGS = ModelTags()


class Names:
    """Short human names for versions, and their deprecations, from a model -> tags mapping."""

    def __init__(self, tags: Mapping[str, ModelTags] | None = None) -> None:
        self.tags: Mapping[str, ModelTags] = tags if tags is not None else {}

    def _of(self, model: str) -> ModelTags:
        return self.tags.get(model) or NO_TAGS

    def version(self, model: str, version: str) -> str:
        names = self._of(model).names.get(ObjectId(version))
        return best_tag(names) if names else short(version)

    def target(self, model: str, arm: Arm | Target) -> str:
        text = self.version(model, arm.version)
        if arm.adapter:
            text += f" + {arm.adapter.model}@{self.version(arm.adapter.model, arm.adapter.version)}"
        return text

    def arms(self, record: Record) -> str:
        return ", ".join(
            f"{a.label} {self.target(record.model, a)} {a.weight}%" for a in record.arms
        )

    def deprecation(self, model: str, version: ObjectId) -> str | None:
        """Why a version is deprecated, or None."""
        return self._of(model).deprecated.get(version)


def best_tag(names: Iterable[str]) -> str:
    names = list(names)
    semvers = [(parse_semver(n), n) for n in names]
    ranked = sorted((v, n) for v, n in semvers if v is not None)
    return ranked[-1][1] if ranked else sorted(names)[0]
