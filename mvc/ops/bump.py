"""``mvc tag MODEL --bump``: which tag to create next, and the evidence for the level.

The version arithmetic is :mod:`mvc.versioning`; the evidence comes from :mod:`mvc.ops.diff`, graded by
:mod:`mvc.bump_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from mvc.bump_rules import Evidence
from mvc.errors import UsageError
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.ops.diff import diff_versions
from mvc.refnames import tag
from mvc.repo import Repo
from mvc.specs import resolve_model_rev, semver_tags
from mvc.versioning import BUMPS, next_version, normalize_tag


@dataclass
class BumpPlan(JsonShaped):
    model: str
    target: ObjectId  # the version to tag
    bump: str  # what was asked: major/minor/patch/auto
    level: str  # what is applied: major/minor/patch
    previous: str | None  # the highest release tag, if any
    previous_version: ObjectId | None
    name: str  # the new tag name
    evidence: list[Evidence] = field(default_factory=list)

    json_shape: ClassVar[Shape] = Shape(rename={"target": "version", "name": "tag"})


def plan_bump(
    repo: Repo, model: str, rev: str | None, bump: str, pre: str | None = None
) -> BumpPlan:
    """Which tag ``mvc tag MODEL --bump BUMP [--pre LABEL] [REV]`` would create, and why."""
    if bump not in BUMPS:
        raise UsageError(f"unknown bump {bump!r}", hint="use major, minor, patch or auto")
    target = resolve_model_rev(repo, model, rev).version
    every = semver_tags(repo, model, live=False)
    live = semver_tags(repo, model)
    releases = sorted(((v, n) for n, v in live if not v.prerelease), reverse=True)
    previous = releases[0][1] if releases else None
    previous_version = repo.refs.get(tag(model, previous)) if previous else None
    level = bump
    evidence: list[Evidence] = []
    if bump == "auto":
        if previous is None or previous_version is None:
            raise UsageError(
                f"{model} has no release tag to compare with, so --bump auto cannot decide",
                hint=f"name the first release: `mvc tag {model} v1.0.0` (or --bump major/minor/patch)",
            )
        result = diff_versions(repo, previous_version, target, stats=False)
        level, evidence = result.bump, result.evidence
        if level == "none":
            raise UsageError(
                f"{short(target)} does not differ from {previous} ({short(previous_version)}); no bump implied",
                hint=f"`mvc diff {model}@{previous} {model}@{short(target)}` shows the comparison",
            )
    new = next_version((v for _, v in every), level, pre)
    name = normalize_tag(str(new))
    return BumpPlan(model, target, bump, level, previous, previous_version, name, evidence)
