"""The archive and retention sections of mvc.yaml and their pure rules (mvc.policy.archive)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mvc.errors import PolicyError
from mvc.ids import ObjectId
from mvc.policy.archive import (
    ARCHIVE,
    RETENTION,
    ArchiveFacts,
    ArchivePolicy,
    collectable,
    plan_archive,
)
from mvc.policy.file import parse_policy

NOW = datetime(2026, 6, 1, tzinfo=UTC).timestamp()


def oid(n: int) -> ObjectId:
    return ObjectId(f"{n:064x}")


def facts(n: int, created: str, **kw: object) -> ArchiveFacts:
    return ArchiveFacts(kw.pop("model", "bert"), oid(n), created, **kw)  # type: ignore[arg-type]


def policy(text: str) -> ArchivePolicy:
    found = parse_policy(text).get(ARCHIVE)
    assert found is not None
    return found


def test_parse_the_documented_example() -> None:
    parsed = parse_policy(
        "archive:\n  remote: cold\n  rules:\n    - unused_for: 90d\n"
        "    - keep_last_minors: 3\n      older_than: 30d\n"
        "  models:\n    bert:\n      rules: [{unused_for: 30d}]\n"
        "retention:\n  rules: [{unused_for: 2w}]\n"
    )
    archive = parsed.get(ARCHIVE)
    assert archive is not None and archive.remote == "cold"
    assert [r.unused_for for r in archive.rules] == [90 * 86400, None]
    assert archive.rules[1].keep_last_minors == 3 and archive.rules[1].older_than == 30 * 86400
    assert archive.for_model("bert").rules[0].unused_for == 30 * 86400
    assert archive.for_model("bert").remote == "cold"
    assert archive.for_model("gpt").rules == archive.rules
    retention = parsed.get(RETENTION)
    assert retention is not None and retention.rules[0].unused_for == 14 * 86400


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "archive:\n  remote: cold\n  rules:\n    - unused: 90d\n",
            "mvc.yaml:4: archive.rules[0].unused",
        ),
        ("archive:\n  remote: cold\n  rules:\n    - unused_for: soon\n", "is not a duration"),
        ("archive:\n  rules: [{unused_for: 90d}]\n", "name the cold remote"),
        ("archive:\n  remote: cold\n  rules:\n    - keep_last_minors: 0\n", "at least 1"),
        ("archive:\n  remote: cold\n  rules:\n    - {}\n", "needs at least one"),
        ("retention:\n  keep: 3\n", "unknown key 'keep'"),
    ],
)
def test_mistakes_name_the_line(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert message in caught.value.message


def test_unused_for_counts_from_the_last_use_or_the_commit() -> None:
    rules = policy("archive:\n  remote: cold\n  rules: [{unused_for: 90d}]\n")
    old = facts(1, "2026-01-01T00:00:00Z")
    used = facts(2, "2026-01-01T00:00:00Z", last_used="2026-05-01T00:00:00Z")
    young = facts(3, "2026-05-20T00:00:00Z")
    decisions = plan_archive(rules, [old, used, young], NOW)
    assert [(d.version, d.action) for d in decisions] == [(oid(1), "archive")]
    assert decisions[0].rule == "archive.rules[0] (unused_for: 90d)"
    assert "never used" in decisions[0].why and "idle 151d" in decisions[0].why


def test_protected_versions_are_kept_and_say_why() -> None:
    rules = policy("archive:\n  remote: cold\n  rules: [{older_than: 1d}]\n")
    old = "2026-01-01T00:00:00Z"
    cases = [
        facts(1, old, channels=("prod",)),
        facts(2, old, tags=("v1.0.0",), release=True),
        facts(3, old, heads=("main",)),
        facts(4, old, checked_out=True),
        facts(5, old, tags=("v1.1.0-rc.1",)),  # a pre-release protects nothing
        facts(6, old, archived=True),  # already archived: nothing to do
    ]
    decisions = {d.version: d for d in plan_archive(rules, cases, NOW)}
    assert decisions[oid(1)].action == "keep" and "served by channel prod" in decisions[oid(1)].why
    assert "release tag v1.0.0" in decisions[oid(2)].why
    assert "head of branch main" in decisions[oid(3)].why
    assert "working folder" in decisions[oid(4)].why
    assert decisions[oid(5)].action == "archive"
    assert oid(6) not in decisions


def test_keep_last_minors_archives_older_minors_of_each_major() -> None:
    rules = policy("archive:\n  remote: cold\n  rules: [{keep_last_minors: 2}]\n")
    t = "2026-01-01T00:00:00Z"
    versions = [
        facts(1, t, minor=(1, 0)),
        facts(2, t, minor=(1, 1)),
        facts(3, t, minor=(1, 2)),
        facts(4, t, minor=(1, 3)),
        facts(5, t, minor=(2, 0)),
        facts(6, t),  # no semver tag before it: the rule cannot place it
        facts(7, t, minor=(1, 0), model="gpt"),  # other models count their own minors
    ]
    decisions = plan_archive(rules, versions, NOW)
    assert sorted(d.version for d in decisions) == [oid(1), oid(2)]
    assert "older than the 2 newest of major 1 (1.2, 1.3)" in decisions[0].why


def test_keys_of_one_rule_must_all_hold_and_models_have_their_own_rules() -> None:
    rules = policy(
        "archive:\n  remote: cold\n  rules:\n    - {older_than: 100d, unused_for: 10d}\n"
        "  models:\n    gpt:\n      remote: colder\n      rules: [{older_than: 1d}]\n"
    )
    t = "2026-01-01T00:00:00Z"
    versions = [
        facts(1, t, last_used="2026-05-30T00:00:00Z"),  # old but used 2 days ago
        facts(2, t, last_used="2026-05-01T00:00:00Z"),
        facts(3, "2026-05-01T00:00:00Z", model="gpt"),
    ]
    assert [d.version for d in plan_archive(rules, versions, NOW)] == [oid(2), oid(3)]
    assert rules.for_model("gpt").remote == "colder"


def test_retention_says_which_unreachable_versions_gc_may_collect() -> None:
    retention = parse_policy("retention:\n  rules: [{unused_for: 30d}]\n").get(RETENTION)
    assert retention is not None
    assert collectable(retention, facts(1, "2026-01-01T00:00:00Z"), NOW) is not None
    recent = facts(1, "2026-01-01T00:00:00Z", last_used="2026-05-25T00:00:00Z")
    assert collectable(retention, recent, NOW) is None


def test_times_without_a_zone_are_utc_as_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules read times with the one instant parser (mvc.instants): no zone means UTC,
    whatever the machine's zone (a second parser read such a time as local time)."""
    import time

    rules = policy("archive:\n  remote: cold\n  rules: [{unused_for: 90d}]\n")
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        zoned = plan_archive(rules, [facts(1, "2026-01-01T00:00:00Z")], NOW)
        bare = plan_archive(rules, [facts(1, "2026-01-01T00:00:00")], NOW)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert len(bare) == len(zoned) == 1
    assert "idle 151d" in zoned[0].why and "idle 151d" in bare[0].why
