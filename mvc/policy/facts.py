"""What a lifecycle rule sees about one version: ``VersionFacts`` (pure: built by a use case).

- ``commit_metrics``: recorded at commit (``mvc commit --metric``);
- ``annotation_metrics``: from its annotations, each metric at its newest value
  (``mvc annotate``, later evaluations win over earlier ones);
- ``metrics``: both, an annotation winning over the commit (it is newer evidence);
- ``production``: metrics measured while serving, per arm, through a ``MetricSource``
  (``mvc.metrics.model``), when the use case was given one;
- ``tags``: its tag names; ``prerelease`` when a semver pre-release tag (``1.4.0-beta.1``)
  names it and no release tag does;
- ``channels``: channels whose current record serves it in some arm; ``served_on``: channels
  whose history (any record, any arm) ever did;
- ``age_seconds``: since it was committed;
- ``deprecation``: the deprecation in force, if any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mvc.ids import ObjectId, short
from mvc.policy.deprecations import Deprecation
from mvc.versioning import parse_semver


@dataclass(frozen=True)
class VersionFacts:
    model: str
    version: ObjectId
    committed: str  # the version's time, ISO-8601 UTC
    age_seconds: float
    commit_metrics: Mapping[str, float] = field(default_factory=dict)
    annotation_metrics: Mapping[str, float] = field(default_factory=dict)
    production: Mapping[str, float] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    served_on: tuple[str, ...] = ()
    deprecation: Deprecation | None = None

    @property
    def metrics(self) -> dict[str, float]:
        return {**self.commit_metrics, **self.annotation_metrics}

    def metric(self, name: str) -> float | None:
        """A metric by name: production first (measured where it serves), then annotations,
        then the commit's."""
        if name in self.production:
            return self.production[name]
        return self.metrics.get(name)

    @property
    def prerelease(self) -> bool:
        parsed = [parse_semver(t) for t in self.tags]
        semvers = [p for p in parsed if p is not None]
        return bool(semvers) and all(p.prerelease for p in semvers)

    @property
    def name(self) -> str:
        """The version as people know it: ``bert@v1.4.0`` (its highest tag) or its short id."""
        ranked = sorted((p, t) for t in self.tags if (p := parse_semver(t)) is not None)
        label = ranked[-1][1] if ranked else (sorted(self.tags)[0] if self.tags else None)
        return f"{self.model}@{label or short(self.version)}"
