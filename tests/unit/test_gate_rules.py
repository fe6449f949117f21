"""Promotion gates, version facts and deprecations as pure rules: no store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mvc.annotations import Annotation, DeprecationNote, deprecation_of, merged_metrics
from mvc.errors import PolicyError
from mvc.ids import ObjectId
from mvc.metrics.model import Summary
from mvc.policy.deprecations import Deprecation
from mvc.policy.facts import VersionFacts
from mvc.policy.file import parse_policy
from mvc.policy.gates import GATES, evaluate, evaluate_production

V = ObjectId("1" * 64)
POLICY = """
gates:
  prod:
    requires: {accuracy: ">= 0.90", latency_p99_ms: "<= 200"}
    from: staging
    no_prerelease: true
    production:
      latency_ms: {p99: "<= 250", mean: "no worse than stable + 10%"}
    window: 2h
    min_samples: 50
"""


def _gate():
    gates = parse_policy(POLICY).get(GATES)
    assert gates is not None
    gate = gates.for_channel("bert", "prod")
    assert gate is not None
    return gate


def _facts(**kw) -> VersionFacts:
    base = {"model": "bert", "version": V, "committed": "2026-03-03T12:00:00Z", "age_seconds": 1}
    return VersionFacts(**{**base, **kw})


def test_every_broken_rule_is_reported_with_its_numbers() -> None:
    gate = _gate()
    assert gate.window == 7200 and gate.min_samples == 50 and gate.where == "mvc.yaml:3"
    facts = _facts(commit_metrics={"accuracy": 0.41}, tags=("v1.4.0-beta.1",))
    broken = evaluate(gate, facts, full_stable=True)
    assert [(b.rule, b.detail) for b in broken] == [
        ("accuracy >= 0.90", "accuracy 0.41 < 0.9"),
        ("latency_p99_ms <= 200", "bert@v1.4.0-beta.1 has no 'latency_p99_ms' metric"),
        ("from: staging", "bert@v1.4.0-beta.1 has never been on channel 'staging'"),
        (
            "no_prerelease",
            "bert@v1.4.0-beta.1 is a pre-release (v1.4.0-beta.1); it may be a canary or "
            "shadow, not the 100% stable arm",
        ),
    ]
    assert "mvc annotate bert@v1.4.0-beta.1 --metric latency_p99_ms=VALUE" in (broken[1].hint or "")
    assert len(evaluate(gate, facts, full_stable=False)) == 3  # a pre-release may canary


def test_annotations_win_over_commit_metrics_and_production_over_both() -> None:
    facts = _facts(
        commit_metrics={"accuracy": 0.41, "latency_p99_ms": 900},
        annotation_metrics={"accuracy": 0.93},
        production={"latency_p99_ms": 120},
        served_on=("staging",),
        tags=("v1.4.0", "v1.5.0-rc.1"),
    )
    assert not facts.prerelease and facts.name == "bert@v1.5.0-rc.1"
    assert facts.metric("accuracy") == 0.93 and facts.metric("latency_p99_ms") == 120
    assert evaluate(_gate(), facts, full_stable=True) == []


def test_production_rules_need_enough_points_and_compare_with_stable() -> None:
    gate = _gate()
    facts = _facts()
    few = evaluate_production(gate, facts, {"latency_ms": Summary(10, mean=5, p99=9)})
    assert "has 10 'latency_ms' point(s) in the last 2h, fewer than the 50" in few[0].detail
    measured = {"latency_ms": Summary(80, mean=120, p99=300)}
    stable = {"latency_ms": Summary(500, mean=100, p99=200)}
    broken = evaluate_production(gate, facts, measured, stable=stable)
    assert [b.detail for b in broken] == [
        "latency_ms p99 300 > 250 (n=80)",
        "latency_ms mean 120 > 110 (stable 100 + 10%) (n=80)",
    ]
    assert evaluate_production(gate, facts, {"latency_ms": Summary(80, mean=105, p99=200)},
                               stable=stable) == []  # fmt: skip


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("gates:\n  prod:\n    production: {latency_ms: {p42: '<= 1'}}\n", "unknown statistic"),
        ("gates:\n  'bert@@prod': {}\n", "is not CHANNEL or MODEL@CHANNEL"),
        ("gates:\n  prod: {from: 'no such'}\n", "invalid channel name"),
        ("gates:\n  prod: {no_prerelease: 'yes'}\n", "expected true or false"),
        ("gates:\n  prod: {min_samples: 0}\n", "must be at least 1"),
        ("deprecations:\n  versions:\n    - {spec: 'bert@^^1', reason: x}\n", "bad semver"),
        ("deprecations:\n  versions:\n    - {spec: bert, reason: x}\n", "names no versions"),
        ("deprecations:\n  webhook: ftp://x\n", "is not an http"),
        (
            "deprecations:\n  versions:\n    - {spec: bert@v1, cutoff: soon, reason: x}\n",
            "is not a date",
        ),
    ],
)
def test_bad_gates_say_where(text: str, error: str) -> None:
    with pytest.raises(PolicyError, match=error) as raised:
        parse_policy(text)
    assert raised.value.message.startswith("mvc.yaml:")


def test_annotation_chains_merge_newest_first() -> None:
    old = Annotation("bert", V, "a", "t1", {"accuracy": 0.8, "f1": 0.7})
    new = Annotation("bert", V, "b", "t2", {"accuracy": 0.9})
    assert merged_metrics([new, old]) == {"accuracy": 0.9, "f1": 0.7}
    dep = DeprecationNote("2027-01-31", "old")
    assert deprecation_of([new, Annotation("bert", V, "c", "t0", deprecation=dep)]) == dep
    lifted = Annotation("bert", V, "d", "t3", deprecation=DeprecationNote(None, "", lifted=True))
    assert deprecation_of([lifted, Annotation("bert", V, "c", "t0", deprecation=dep)]) is None


def test_a_cutoff_passes_at_the_start_of_its_day_utc() -> None:
    item = Deprecation("bert", V, "bert@v1", "2027-01-31", "old")
    assert not item.passed(datetime(2027, 1, 30, 23, 59, 59, tzinfo=UTC))
    assert item.passed(datetime(2027, 1, 31, tzinfo=UTC))
    assert not Deprecation("bert", V, "bert@v1", None, "tag").passed(datetime.now(UTC))
