"""Channels: every transition of the rollout state machine, every refused one, rollback,
history at past instants, concurrent deployers, and the commands' exit codes and output."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable

import pytest
from deployfix import ENV, TABLE, Store

from mvc.deployment.records import AdapterRef, decode_record
from mvc.errors import (
    CorruptObject,
    InvalidInput,
    NotFound,
    NothingToDo,
    RefConflict,
    UsageError,
)
from mvc.ops import deploy as ops
from mvc.refnames import channel
from mvc.repo import Repo
from mvc.specs import resolve


def v(st: Store, spec: str) -> str:
    return st.ids[spec if "@" in spec else f"bert@{spec}"]


# --- each transition kind, through the command line (the full table is tests/unit/test_deployment.py) ---

M, C = "bert", "prod"
SETUPS: dict[str, list[Callable[[Repo], object]]] = {
    "none": [],
    "stable": [lambda r: ops.set_channel(r, M, C, "v1.4.0")],
    "canary": [
        lambda r: ops.set_channel(r, M, C, "v1.4.0"),
        lambda r: ops.deploy_canary(r, M, C, "v1.5.0", 10),
    ],
    "staged": [
        lambda r: ops.set_channel(r, M, C, "v1.4.0"),
        lambda r: ops.deploy_blue_green(r, M, C, "v1.6.0"),
    ],
    "switched": [
        lambda r: ops.set_channel(r, M, C, "v1.4.0"),
        lambda r: ops.deploy_blue_green(r, M, C, "v1.6.0"),
        lambda r: ops.switch(r, M, C),
    ],
    "shadow": [
        lambda r: ops.set_channel(r, M, C, "v1.4.0"),
        lambda r: ops.deploy_shadow(r, M, C, "v1.6.0"),
    ],
    "ab": [
        lambda r: ops.set_channel(r, M, C, "v1.4.0"),
        lambda r: ops.deploy_ab(r, M, C, [("v1.5.0", 50), ("v1.6.0", 50)]),
    ],
}
# kind -> (a state it moves from, the command, the state it leads to)
CLI_MOVES: dict[str, tuple[str, list[str], str]] = {
    "set": ("none", ["channel", "set", M, C, "v1.6.0"], "stable"),
    "canary": ("switched", ["deploy", M, C, "v1.5.0", "--canary", "20"], "canary"),
    "step": ("canary", ["deploy", M, C, "--step", "30"], "canary"),
    "blue-green": ("shadow", ["deploy", M, C, "v1.5.0", "--blue-green"], "staged"),
    "shadow": ("stable", ["deploy", M, C, "v1.5.0", "--shadow"], "shadow"),
    "ab": ("ab", ["deploy", M, C, "--ab", "v1.5.0=30,v1.6.0=70"], "ab"),
    "promote": ("canary", ["promote", M, C], "stable"),
    "promote-arm": ("ab", ["promote", M, C, "--arm", "b"], "stable"),
    "switch": ("staged", ["switch", M, C], "switched"),
    "rollback": ("canary", ["rollback", M, C], "stable"),
}
# kind -> a command of that kind refused in the same state, and its exit code
CLI_REFUSALS: dict[str, tuple[list[str], int]] = {
    "set": (["channel", "set", M, C, "v9.9.9"], 1),
    "canary": (["deploy", M, C, "v1.6.0", "--canary", "5"], 2),  # v1.6.0 is the stable
    "step": (["deploy", M, C, "--step", "10"], 2),  # it already is 10%
    "blue-green": (["deploy", M, C, "v1.4.0", "--blue-green"], 2),
    "shadow": (["deploy", M, C, "v1.4.0", "--shadow"], 2),
    "ab": (["deploy", M, C, "--ab", "v1.5.0=50,v1.6.0=50"], 2),  # the same arms again
    "promote": (["promote", M, C, "--arm", "b"], 2),
    "promote-arm": (["promote", M, C], 2),  # an A/B test needs --arm
    "switch": (["switch", M, C, "--expect", "0000"], 11),  # planned on another record
    "rollback": (["rollback", M, C, "--to", "v9.0.0"], 1),
}


def _in_state(st: Store, state: str) -> None:
    for step in SETUPS[state]:
        step(st.repo)
        st.clock.tick()


def test_every_transition_kind_has_a_cli_test() -> None:
    assert set(CLI_MOVES) == set(CLI_REFUSALS) == set(TABLE["stable"])
    for kind, (state, _argv, outcome) in CLI_MOVES.items():
        assert TABLE[state][kind] == outcome  # the same move the pure table plans


@pytest.mark.parametrize("kind", list(CLI_MOVES))
def test_cli_transition(cli_store: Store, cli, kind: str) -> None:
    """One refused and one made move of each kind, through the command line and the store."""
    st = cli_store
    state, argv, outcome = CLI_MOVES[kind]
    _in_state(st, state)
    ref = channel(M, C)
    before = st.repo.refs.entries(ref)
    refused_argv, code = CLI_REFUSALS[kind]
    refused = cli(*refused_argv, expect=code)
    assert refused.stdout == "" and refused.stderr.startswith("error: ")
    assert st.repo.refs.entries(ref) == before  # a refused move changes nothing
    out = cli(*argv, "--json").json()
    record = out["record"]
    assert record["state"] == outcome
    assert st.repo.refs.get(ref) == record["id"]
    assert record["previous"] == (before[-1].new if before else None)
    stored = ops.load_record(st.repo, record["id"])
    assert stored.to_json() == record
    assert sum(a.weight for a in stored.arms) == 100
    assert len(st.repo.refs.entries(ref)) == len(before) + 1


# --- what each move records -----------------------------------------------------------------------


def test_canary_step_promote_records(st: Store) -> None:
    first = ops.set_channel(st.repo, M, C, "v1.4.0", message="first release")
    assert first.old is None and first.record.why == "first release"
    canary = ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    arms = {a.role: (a.version, a.weight) for a in canary.record.arms}
    assert arms == {"stable": (v(st, "v1.4.0"), 90), "canary": (v(st, "v1.5.0"), 10)}
    step = ops.step_canary(st.repo, M, C, 50)
    assert {a.role: a.weight for a in step.record.arms} == {"stable": 50, "canary": 50}
    done = ops.promote(st.repo, M, C, message="metrics flat")
    assert [(a.role, a.version, a.weight) for a in done.record.arms] == [
        ("stable", v(st, "v1.5.0"), 100)
    ]
    value = st.repo.objects.get_meta(done.record.id or "")
    assert value["type"] == "deployment" and value["format"] == 1
    assert value["refs"] == [v(st, "v1.5.0")]
    assert value["previous"] == step.record.id
    assert value["who"] == "Ada <ada@example.com>" and value["why"] == "metrics flat"
    assert value["action"] == "promote"
    log = st.repo.refs.entries(channel(M, C))
    assert [e.new for e in log] == [
        first.record.id,
        canary.record.id,
        step.record.id,
        done.record.id,
    ]
    assert log[-1].why == "promote: metrics flat"


def test_specs_resolve_channel_arms(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    assert resolve(st.repo, "bert@prod").version == v(st, "v1.4.0")
    assert resolve(st.repo, "bert@prod:canary").version == v(st, "v1.5.0")
    ops.promote(st.repo, M, C)
    ops.deploy_ab(st.repo, M, C, [("v1.6.0", 40), ("v1.5.0", 60)])
    assert resolve(st.repo, "bert@prod").version == v(st, "v1.6.0")  # the first A/B arm
    assert resolve(st.repo, "bert@prod:b").version == v(st, "v1.5.0")
    with pytest.raises(NotFound, match="no 'canary' arm"):
        resolve(st.repo, "bert@prod:canary")


def test_blue_green_switch_back_and_forth(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    staged = ops.deploy_blue_green(st.repo, M, C, "v1.6.0")
    assert [(a.role, a.weight) for a in staged.record.arms] == [("stable", 100), ("green", 0)]
    switched = ops.switch(st.repo, M, C)
    roles = {a.role: a.version for a in switched.record.arms}
    assert roles == {"stable": v(st, "v1.6.0"), "blue": v(st, "v1.4.0")}
    back = ops.switch(st.repo, M, C)
    assert {a.role: a.version for a in back.record.arms} == {
        "stable": v(st, "v1.4.0"),
        "blue": v(st, "v1.6.0"),
    }
    released = ops.promote(st.repo, M, C)
    assert [a.role for a in released.record.arms] == ["stable"]


def test_a_new_rollout_releases_shadow_and_blue_with_a_note(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_shadow(st.repo, M, C, "v1.6.0")
    move = ops.deploy_canary(st.repo, M, C, "v1.6.0", 5)
    assert [a.role for a in move.record.arms] == ["stable", "canary"]
    assert "shadow" in move.notes[0]


@pytest.mark.parametrize("weight", [0, 100, 101, -5])
def test_canary_share_must_be_1_to_99(st: Store, weight: int) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    with pytest.raises(UsageError, match="1 to 99"):
        ops.deploy_canary(st.repo, M, C, "v1.5.0", weight)


@pytest.mark.parametrize(
    ("arms", "match"),
    [
        ([("v1.5.0", 50), ("v1.6.0", 40)], "sum to 100"),
        ([("v1.5.0", 100), ("v1.6.0", 0)], "at least 1"),
        ([("v1.5.0", 100)], "between 2 and 26"),
        ([("v1.5.0", 50), ("1.5.0", 50)], "two A/B arms"),
    ],
)
def test_ab_arms_are_validated(st: Store, arms: list[tuple[str, int]], match: str) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    with pytest.raises(UsageError, match=match):
        ops.deploy_ab(st.repo, M, C, arms)


def test_parse_ab_takes_the_weight_after_the_last_equals() -> None:
    assert ops.parse_ab("v1.5.0=50, tag=v1.6.0=50") == [("v1.5.0", 50), ("tag=v1.6.0", 50)]
    with pytest.raises(UsageError):
        ops.parse_ab("v1.5.0:50")


def test_refusals_name_the_problem(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    with pytest.raises(UsageError, match="already serves as the stable"):
        ops.deploy_canary(st.repo, M, C, "1.4.0", 10)
    with pytest.raises(NothingToDo):
        ops.set_channel(st.repo, M, C, "v1.4.0")
    with pytest.raises(NotFound, match="no branch, tag"):
        ops.deploy_canary(st.repo, M, C, "v9.9.9", 10)
    with pytest.raises(UsageError, match="versions of 'bert'"):
        ops.deploy_canary(st.repo, M, C, "sql-lora@v1.3.0", 10)
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    with pytest.raises(UsageError, match="already receives 10%"):
        ops.step_canary(st.repo, M, C, 10)
    with pytest.raises(UsageError, match="in state 'canary'.*canary v1.5.0 10%") as caught:
        ops.deploy_blue_green(st.repo, M, C, "v1.6.0")
    assert caught.value.hint and "canary is in progress" in caught.value.hint
    assert "mvc promote bert prod" in caught.value.hint


def test_deprecated_versions_are_refused(st: Store) -> None:
    from mvc.ops.names import create_tag

    ops.set_channel(st.repo, M, C, "v1.4.0")
    create_tag(st.repo, M, "deprecated/v1.5.0", "v1.5.0", "leaks PII")
    assert ops.deprecation(st.repo, M, v(st, "v1.5.0")) == "tag deprecated/v1.5.0: leaks PII"
    assert ops.deprecation(st.repo, M, v(st, "v1.6.0")) is None
    with pytest.raises(UsageError, match="deprecated.*leaks PII"):
        ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    with pytest.raises(UsageError, match="deprecated"):
        ops.set_channel(st.repo, M, C, "v1.5.0")
    ops.deploy_canary(st.repo, M, C, "v1.6.0", 10)  # other versions still deploy


# --- PEFT targets ---------------------------------------------------------------------------------


def test_base_plus_adapter_target(st: Store) -> None:
    move = ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
    arm = move.record.arms[0]
    assert arm.version == v(st, "v1.4.0")
    assert arm.adapter == AdapterRef("sql-lora", v(st, "sql-lora@v1.3.0"))
    value = st.repo.objects.get_meta(move.record.id or "")
    assert sorted(value["refs"]) == sorted([v(st, "v1.4.0"), v(st, "sql-lora@v1.3.0")])
    canary = ops.deploy_canary(st.repo, M, C, "bert@v1.4.0+sql-lora@v1.4.0", 10)
    assert canary.record.arms[1].adapter == AdapterRef("sql-lora", v(st, "sql-lora@v1.4.0"))


def test_incompatible_adapter_is_refused_before_the_move(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    before = st.repo.refs.entries(channel(M, C))
    with pytest.raises(InvalidInput, match="does not fit") as caught:
        ops.deploy_canary(st.repo, M, C, "v1.5.0 + bad-lora@v1.0.0", 10)
    assert "encoder.layer.0.attention.query" in caught.value.message
    with pytest.raises(InvalidInput, match="not a PEFT adapter"):
        ops.deploy_canary(st.repo, M, C, "v1.5.0 + bert@v1.6.0", 10)
    assert st.repo.refs.entries(channel(M, C)) == before


def test_deploy_checks_adapters_with_the_one_peft_check(st: Store) -> None:
    """Deployments run mvc.peft's check (the one check-compat, merge-adapter and load run)."""
    from mvc.ops.adapters import check_versions

    base = v(st, "v1.5.0")

    def problems(adapter: str) -> list[str]:
        return check_versions(st.repo, base, v(st, adapter), "bert", adapter).all_problems()

    assert problems("sql-lora@v1.4.0") == []
    found = problems("bad-lora@v1.0.0")
    assert len(found) == 4 and "encoder.layer.0.attention.query.weight is [8, 8]" in found[0]
    with pytest.raises(InvalidInput, match="not a PEFT adapter"):
        problems("v1.6.0")


def test_use_cases_pass_resolved_targets_not_spec_text(st: Store) -> None:
    """``mvc apply`` (and any use case) hands the moves the ``Target`` it resolved: ids, never
    an id formatted back into spec text; its adapter is still checked to fit."""
    from mvc.deployment.records import Target

    lora = AdapterRef("sql-lora", v(st, "sql-lora@v1.3.0"))
    move = ops.set_channel(st.repo, M, C, Target(v(st, "v1.4.0"), lora))
    assert move.record.arms[0].target == Target(v(st, "v1.4.0"), lora)
    shadow = ops.deploy_shadow(st.repo, M, C, Target(v(st, "v1.5.0")))
    assert shadow.record.by_role("shadow").version == v(st, "v1.5.0")
    bad = Target(v(st, "v1.5.0"), AdapterRef("bad-lora", v(st, "bad-lora@v1.0.0")))
    with pytest.raises(InvalidInput, match="does not fit"):
        ops.deploy_canary(st.repo, M, C, bad, 10)


# --- rollback -------------------------------------------------------------------------------------


def test_rollback_during_a_canary_restores_the_stable_alone(st: Store) -> None:
    first = ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    step = ops.step_canary(st.repo, M, C, 50)
    back = ops.rollback(st.repo, M, C, message="p99 doubled")
    assert back.record.arms == first.record.arms
    assert back.record.restores == first.record.id
    assert back.record.previous == step.record.id  # appended, never rewritten
    assert back.record.why == "p99 doubled" and back.record.action == "rollback"
    assert len(st.repo.refs.entries(channel(M, C))) == 4
    with pytest.raises(NotFound, match="no earlier state"):
        ops.rollback(st.repo, M, C)


def test_rollback_after_a_finished_rollout_and_twice_in_a_row(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.set_channel(st.repo, M, C, "v1.5.0")
    ops.deploy_canary(st.repo, M, C, "v1.6.0", 10)
    ops.promote(st.repo, M, C)
    once = ops.rollback(st.repo, M, C)
    assert once.record.arms[0].version == v(st, "v1.5.0")
    twice = ops.rollback(st.repo, M, C)  # the undone rollout is skipped, never redone
    assert twice.record.arms[0].version == v(st, "v1.4.0")
    with pytest.raises(NotFound, match="restores record"):
        ops.rollback(st.repo, M, C)


def test_rollback_to_a_chosen_record_or_version(st: Store) -> None:
    first = ops.set_channel(st.repo, M, C, "v1.4.0")
    canary = ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    ops.promote(st.repo, M, C)
    ops.set_channel(st.repo, M, C, "v1.6.0")
    to_record = ops.rollback(st.repo, M, C, to=(canary.record.id or "")[:10])
    assert to_record.record.state == "canary" and to_record.record.restores == canary.record.id
    to_version = ops.rollback(st.repo, M, C, to="v1.4.0")
    assert to_version.record.restores == first.record.id
    with pytest.raises(UsageError, match="current record"):
        ops.rollback(st.repo, M, C, to=(to_version.record.id or "")[:12])
    with pytest.raises(NotFound, match="neither an earlier record"):
        ops.rollback(st.repo, M, C, to="v9.0.0")


def test_expected_record_guards_the_move(st: Store) -> None:
    first = ops.set_channel(st.repo, M, C, "v1.4.0", expected=None)
    with pytest.raises(RefConflict):
        ops.set_channel(st.repo, M, C, "v1.5.0", expected=None)
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10, expected=(first.record.id or "")[:8])
    with pytest.raises(RefConflict, match="is at record"):
        ops.step_canary(st.repo, M, C, 20, expected=first.record.id)


# --- history --------------------------------------------------------------------------------------


def test_history_answers_which_version_served_at_an_instant(st: Store) -> None:
    from datetime import UTC, datetime

    st.clock.now = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    first = ops.set_channel(st.repo, M, C, "v1.4.0", message="first release")
    st.clock.now = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)
    canary = ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    st.clock.now = datetime(2026, 3, 3, 14, 30, tzinfo=UTC)
    ops.promote(st.repo, M, C)
    assert ops.at(st.repo, M, C, "2026-03-03T14:00").record == canary.record
    assert ops.at(st.repo, M, C, "2026-03-03T13:00:00Z").record == canary.record  # inclusive
    assert ops.at(st.repo, M, C, "2026-03-03T12:59:59").record == first.record
    assert ops.at(st.repo, M, C, "2026-03-03T15:00+01:00").record == canary.record  # 14:00Z
    assert ops.at(st.repo, M, C, "2026-03-04").record.action == "promote"
    with pytest.raises(NotFound, match="did not exist yet"):
        ops.at(st.repo, M, C, "2026-03-03T08:00")
    with pytest.raises(UsageError):
        ops.at(st.repo, M, C, "yesterday")
    items = ops.history(st.repo, M, C)
    assert [i.record.when for i in items] == [
        "2026-03-03T09:00:00Z",
        "2026-03-03T13:00:00Z",
        "2026-03-03T14:30:00Z",
    ]
    assert items[0].record.who == "Ada <ada@example.com>"
    assert items[0].record.why == "first release"
    assert [i.entry.seq for i in items if i.entry] == [1, 2, 3]
    assert [i.entry.when for i in items if i.entry] == [i.record.when for i in items]


# --- records from elsewhere are checked -----------------------------------------------------------


def test_malformed_records_are_refused(st: Store) -> None:
    good = ops.set_channel(st.repo, M, C, "v1.4.0").record.value()
    bad = [
        {**good, "arms": [{**good["arms"][0], "weight": 90}]},
        {**good, "arms": [{**good["arms"][0], "role": "boss"}]},
        {**good, "arms": [{**good["arms"][0], "weight": True}]},
        {**good, "refs": []},
        {**good, "previous": "nope"},
        {**good, "arms": []},
    ]
    for value in bad:
        with pytest.raises(CorruptObject):
            decode_record(value, "ab" * 32)


def test_gc_keeps_every_version_a_channel_history_names(st: Store) -> None:
    from mvc.graph import reachable

    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    ops.promote(st.repo, M, C)
    root = st.repo.refs.get(channel(M, C))
    assert root
    reached = reachable(st.repo.objects, [root]).reached
    for spec in ("bert@v1.4.0", "sql-lora@v1.3.0", "bert@v1.5.0"):
        assert st.ids[spec] in reached


# --- concurrent deployers -------------------------------------------------------------------------


def _racer(root: str, weight: int, expected: str | None, barrier: object, out: object) -> None:
    repo = Repo(root, env=ENV)
    barrier.wait()  # type: ignore[attr-defined]
    try:
        kwargs = {} if expected is None else {"expected": expected}
        ops.step_canary(repo, M, C, weight, **kwargs)
        out.put(("ok", weight))  # type: ignore[attr-defined]
    except RefConflict:
        out.put(("conflict", weight))  # type: ignore[attr-defined]


def _race(st: Store, expected: str | None, workers: int = 4) -> list[tuple[str, int]]:
    context = multiprocessing.get_context("spawn")  # no fork: other tests run threads
    barrier = context.Barrier(workers)
    out = context.Queue()
    procs = [
        context.Process(target=_racer, args=(st.root, 20 + i, expected, barrier, out))
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return results


@pytest.mark.slow
def test_concurrent_deployers_planned_on_one_record_exactly_one_wins(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    planned_on = ops.deploy_canary(st.repo, M, C, "v1.5.0", 10).record.id
    results = _race(st, planned_on)
    winners = [w for status, w in results if status == "ok"]
    assert len(winners) == 1
    current = ops.require_current(st.repo, M, C)
    assert current.by_role("canary").weight == winners[0]  # type: ignore[union-attr]
    assert current.previous == planned_on


@pytest.mark.slow
def test_concurrent_deployers_never_lose_an_update(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    results = _race(st, None)
    wins = [w for status, w in results if status == "ok"]
    log = st.repo.refs.entries(channel(M, C))
    assert len(log) == 2 + len(wins)
    for earlier, later in zip(log, log[1:], strict=False):
        assert later.old == earlier.new  # every move was planned on the record it replaced
        assert later.new and ops.load_record(st.repo, later.new).previous == earlier.new


# --- the command line -----------------------------------------------------------------------------


@pytest.fixture
def cli_store(st: Store, cli, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.chdir(st.root)
    return st


def test_cli_walkthrough(cli_store: Store, cli) -> None:
    st = cli_store
    out = cli("channel", "set", "bert", "prod", "v1.4.0", "-m", "first release")
    first = out.stdout.strip()
    assert len(first) == 64 and "new channel -> stable" in out.stderr
    out = cli("deploy", "bert", "prod", "v1.5.0", "--canary", "10")
    assert "stable v1.4.0 90%, canary v1.5.0 10%" in out.stderr
    shown = cli("channel", "show", "bert", "prod", "--json").json()
    assert shown["state"] == "canary"
    assert [(a["label"], a["weight"]) for a in shown["arms"]] == [("stable", 90), ("canary", 10)]
    cli("deploy", "bert", "prod", "--step", "50")
    cli("promote", "bert", "prod", "-m", "good")
    back = cli("rollback", "bert", "prod", "-m", "p99 doubled", "--json").json()
    assert back["record"]["arms"][0]["version"] == v(st, "v1.4.0")
    assert back["record"]["why"] == "p99 doubled"
    history = cli("channel", "history", "bert", "prod", "--json").json()
    assert [h["record"]["action"] for h in history] == [
        "rollback",
        "promote",
        "step",
        "deploy",
        "set",
    ]
    text = cli("channel", "history", "bert", "prod").stdout
    assert "rollback" in text and "p99 doubled" in text
    listing = cli("channel", "list", "--json").json()
    assert [(c["model"], c["channel"]) for c in listing] == [("bert", "prod")]


def test_cli_history_at_an_instant(cli_store: Store, cli) -> None:
    st = cli_store
    ops.set_channel(st.repo, M, C, "v1.4.0")
    st.clock.tick(60)
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    when = ops.history(st.repo, M, C)[0].record.when
    out = cli("channel", "history", "bert", "prod", "--at", when, "--json").json()
    assert out["record"]["state"] == "stable" and out["seq"] == 1
    text = cli("channel", "history", "bert", "prod", "--at", when).stdout
    assert "state    stable" in text
    missing = cli("channel", "history", "bert", "prod", "--at", "2000-01-01", expect=1)
    assert "did not exist yet" in missing.stderr and not missing.stdout


def test_cli_exit_codes(cli_store: Store, cli) -> None:
    cli("channel", "set", "bert", "prod", "v1.4.0")
    refused = cli("deploy", "bert", "prod", "--step", "20", expect=2)
    assert "has no canary" in refused.stderr and "hint:" in refused.stderr
    assert refused.stdout == ""
    assert "exactly one of" in cli("deploy", "bert", "prod", "v1.5.0", expect=2).stderr
    cli("deploy", "bert", "prod", "--step", "20", "--canary", "5", expect=2)
    cli("deploy", "bert", "prod", "--canary", "5", expect=2)  # no REV
    cli("promote", "bert", "staging", expect=1)
    stale = cli("deploy", "bert", "prod", "v1.5.0", "--canary", "5", "--expect", "0000", expect=11)
    assert "is at record" in stale.stderr
    same = cli("channel", "set", "bert", "prod", "v1.4.0", expect=0)
    assert "nothing changed" in same.stderr and same.stdout == ""
    cli("rollback", "bert", "prod", expect=1)
    out = cli("deploy", "bert", "prod", "--ab", "v1.5.0=50,v1.6.0=50", "--json").json()
    assert [a["label"] for a in out["record"]["arms"]] == ["a", "b"]
    assert json.loads(cli("channel", "show", "bert", "prod", "--json").stdout)["state"] == "ab"


# --- channels travel with remotes -----------------------------------------------------------------


def test_a_channel_and_its_history_push_and_clone(st: Store, tmp_path, mvc_env) -> None:
    remotes = pytest.importorskip("mvc.ops.remotes")
    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0", message="first")
    st.clock.tick()
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    remotes.add_remote(st.repo, "origin", str(tmp_path / "remote"))
    remotes.push(st.repo, "origin", "sql-lora")  # the adapter's model first: closure
    remotes.push(st.repo, "origin", M)
    remotes.clone(str(tmp_path / "remote"), str(tmp_path / "clone"))
    clone = Repo(str(tmp_path / "clone"), env=ENV)
    ours, theirs = ops.history(st.repo, M, C), ops.history(clone, M, C)
    strip = [{**i.to_json(), "seq": None} for i in ours]
    assert [{**i.to_json(), "seq": None} for i in theirs] == strip  # the records carry it all
    assert theirs[0].record.who == "Ada <ada@example.com>" and theirs[0].record.why == "first"
    assert theirs[0].record.arms[0].adapter
    assert ops.at(clone, M, C, theirs[0].record.when).record == theirs[0].record
    assert resolve(clone, "bert@prod:canary").version == v(st, "v1.5.0")
