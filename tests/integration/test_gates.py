"""Promotion gates: the ``gates:`` section of mvc.yaml checked on every channel move, through
the use cases and the command line; refusals name the rule and the numbers, ``--force -m``
overrides and is recorded; pre-releases never become the 100% stable arm."""

from __future__ import annotations

import json
import textwrap

import pytest
from deployfix import Store

from mvc.deployment.records import decode_record
from mvc.errors import GateRefused, PolicyError, UsageError
from mvc.ops import deploy as ops
from mvc.ops.annotate import annotate
from mvc.ops.names import create_tag
from mvc.refnames import channel

M = "bert"
GATES = """
gates:
  prod:
    requires: {accuracy: ">= 0.90", latency_p99_ms: "<= 200"}
    from: staging
    no_prerelease: true
"""


def _policy(st: Store, text: str = GATES) -> None:
    with open(f"{st.root}/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write(textwrap.dedent(text))


def _metrics(st: Store, tag: str, **values: float) -> None:
    annotate(st.repo, f"{M}@{tag}", metrics=values, note="offline eval")


def test_a_passing_version_moves_and_a_failing_one_is_refused_with_numbers(st: Store) -> None:
    _policy(st)
    _metrics(st, "v1.4.0", accuracy=0.93, latency_p99_ms=43)
    ops.set_channel(st.repo, M, "staging", "v1.4.0")
    ops.set_channel(st.repo, M, "prod", "v1.4.0")  # passes every rule
    _metrics(st, "v1.5.0", accuracy=0.41, latency_p99_ms=900)
    ops.set_channel(st.repo, M, "staging", "v1.5.0")
    before = st.repo.refs.entries(channel(M, "prod"))
    with pytest.raises(GateRefused) as refused:
        ops.set_channel(st.repo, M, "prod", "v1.5.0")
    text = refused.value.message
    assert "gate prod (mvc.yaml:3)" in text
    assert "accuracy >= 0.90: accuracy 0.41 < 0.9" in text
    assert "latency_p99_ms <= 200: latency_p99_ms 900 > 200" in text
    assert refused.value.exit_code == 22
    assert st.repo.refs.entries(channel(M, "prod")) == before  # nothing moved


def test_a_missing_metric_says_how_to_add_it(st: Store) -> None:
    _policy(st)
    ops.set_channel(st.repo, M, "staging", "v1.6.0")
    _metrics(st, "v1.6.0", accuracy=0.95)
    with pytest.raises(GateRefused) as refused:
        ops.set_channel(st.repo, M, "prod", "v1.6.0")
    assert "bert@v1.6.0 has no 'latency_p99_ms' metric" in refused.value.message
    assert "mvc annotate bert@v1.6.0 --metric latency_p99_ms=VALUE" in (refused.value.hint or "")
    _metrics(st, "v1.6.0", latency_p99_ms=120)  # the newest annotation adds it
    assert (
        ops.set_channel(st.repo, M, "prod", "v1.6.0").record.stable.version == st.ids["bert@v1.6.0"]
    )


def test_from_requires_the_version_to_have_been_on_that_channel(st: Store) -> None:
    _policy(st)
    _metrics(st, "v1.5.0", accuracy=0.95, latency_p99_ms=100)
    with pytest.raises(GateRefused, match="has never been on channel 'staging'"):
        ops.set_channel(st.repo, M, "prod", "v1.5.0")
    ops.set_channel(st.repo, M, "staging", "v1.5.0")
    ops.set_channel(st.repo, M, "staging", "v1.4.0")  # has been on staging: enough
    ops.set_channel(st.repo, M, "prod", "v1.5.0")


def test_force_needs_a_reason_and_is_recorded(st: Store) -> None:
    _policy(st)
    with pytest.raises(UsageError, match="only with a reason"):
        ops.set_channel(st.repo, M, "prod", "v1.4.0", force=True)
    move = ops.set_channel(
        st.repo, M, "prod", "v1.4.0", force=True, message="incident 42: roll forward now"
    )
    stored = decode_record(st.repo.objects.get_meta(move.record.id), move.record.id)
    assert stored.override is not None
    assert stored.override["why"] == "incident 42: roll forward now"
    assert stored.override["who"] == "Ada <ada@example.com>"
    assert any(b.startswith("accuracy >= 0.90:") for b in stored.override["broken"])
    assert any(n.startswith("gate overridden (--force)") for n in move.notes)


def test_canaries_gather_evidence_and_promote_is_gated(st: Store) -> None:
    _policy(st, "gates:\n  prod:\n    requires: {accuracy: '>= 0.90'}\n")
    _metrics(st, "v1.4.0", accuracy=0.93)
    ops.set_channel(st.repo, M, "prod", "v1.4.0")
    ops.deploy_canary(st.repo, M, "prod", "v1.5.0", 10)  # a canary is not gated
    with pytest.raises(GateRefused, match="promote|accuracy"):
        ops.promote(st.repo, M, "prod")
    _metrics(st, "v1.5.0", accuracy=0.91)
    assert ops.promote(st.repo, M, "prod").record.state == "stable"
    # The way back is never gated.
    assert ops.rollback(st.repo, M, "prod").record.stable.version == st.ids["bert@v1.4.0"]


def test_relative_thresholds_compare_with_the_stable_arm(st: Store) -> None:
    _policy(st, "gates:\n  prod:\n    requires: {accuracy: 'no worse than stable - 1%'}\n")
    _metrics(st, "v1.4.0", accuracy=0.90)
    ops.set_channel(st.repo, M, "prod", "v1.4.0", force=True, message="first: no stable yet")
    _metrics(st, "v1.5.0", accuracy=0.85)
    with pytest.raises(GateRefused, match=r"accuracy 0.85 < 0.891 \(stable 0.9 - 1%\)"):
        ops.set_channel(st.repo, M, "prod", "v1.5.0")
    _metrics(st, "v1.6.0", accuracy=0.895)
    ops.set_channel(st.repo, M, "prod", "v1.6.0")


def test_a_prerelease_may_canary_but_never_be_the_full_stable(st: Store) -> None:
    _policy(st, "gates:\n  prod:\n    no_prerelease: true\n")
    create_tag(st.repo, M, "v1.7.0-beta.1", "v1.6.0")
    beta = st.ids["bert@v1.6.0"]
    # v1.6.0 is also a release: tag a fresh pre-release-only version.
    st.add(M, "v1.8.0-rc.1", seed=9)
    ops.set_channel(st.repo, M, "prod", "v1.4.0")
    ops.deploy_canary(st.repo, M, "prod", "v1.8.0-rc.1", 10)
    ops.step_canary(st.repo, M, "prod", 50)
    with pytest.raises(GateRefused, match="pre-release"):
        ops.promote(st.repo, M, "prod")
    ops.rollback(st.repo, M, "prod")
    ops.deploy_shadow(st.repo, M, "prod", "v1.8.0-rc.1")
    with pytest.raises(GateRefused, match="no_prerelease"):
        ops.set_channel(st.repo, M, "prod", "v1.8.0-rc.1")
    ops.set_channel(st.repo, M, "prod", "v1.6.0")  # a release tag names it too: not a pre-release
    assert beta  # v1.6.0 carries both v1.6.0 and v1.7.0-beta.1
    ops.set_channel(
        st.repo, M, "prod", "v1.8.0-rc.1", force=True, message="hotfix build, signed off"
    )


def test_a_model_gate_replaces_the_channel_gate(st: Store) -> None:
    _policy(
        st,
        """
        gates:
          prod: {requires: {accuracy: ">= 0.99"}}
          sql-lora@prod: {requires: {}}
          bert@prod: {requires: {accuracy: ">= 0.5"}}
        """,
    )
    _metrics(st, "v1.4.0", accuracy=0.6)
    ops.set_channel(st.repo, M, "prod", "v1.4.0")


def test_bad_gates_are_file_line_errors(st: Store) -> None:
    _policy(st, "gates:\n  prod:\n    requires: {accuracy: 'at least 0.9'}\n")
    with pytest.raises(PolicyError, match=r"mvc.yaml:3: gates.prod.requires.accuracy: "):
        ops.set_channel(st.repo, M, "prod", "v1.4.0")
    _policy(st, "gates:\n  prod:\n    form: staging\n")
    with pytest.raises(PolicyError, match=r"mvc.yaml:3: gates.prod.form: unknown key"):
        ops.set_channel(st.repo, M, "prod", "v1.4.0")


@pytest.fixture
def cli_store(st: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.chdir(st.root)
    return st


def test_cli_refuses_with_exit_22_and_force_is_shown(cli_store: Store, cli) -> None:
    st = cli_store
    _policy(st)
    refused = cli("channel", "set", "bert", "prod", "v1.4.0", expect=22)
    assert refused.stdout == ""
    assert "error: gate prod (mvc.yaml:3) refuses" in refused.stderr
    assert "no 'accuracy' metric" in refused.stderr and "mvc annotate" in refused.stderr
    assert "--force" in cli("channel", "set", "bert", "prod", "v1.4.0", "--force", expect=2).stderr
    moved = cli(
        "channel", "set", "bert", "prod", "v1.4.0", "--force", "-m", "ship it", "--json"
    ).json()
    assert moved["record"]["override"]["why"] == "ship it"
    shown = cli("channel", "show", "bert", "prod").stdout
    assert "\noverride " in shown and ": ship it\n" in shown
    assert "broke  accuracy >= 0.90" in shown
    cli("annotate", "bert@v1.5.0", "--metric", "accuracy=0.5", "--metric", "latency_p99_ms=50")
    cli("channel", "set", "bert", "staging", "v1.5.0")
    refused = cli("deploy", "bert", "prod", "--ab", "v1.4.0=50,v1.5.0=50", expect=22)
    assert "accuracy 0.5 < 0.9" in refused.stderr
    history = cli("channel", "history", "bert", "prod", "--json").json()
    assert history[0]["record"]["override"]["broken"]
    assert json.dumps(history)  # the record's override travels in history too


def test_the_example_policy_is_valid() -> None:
    import pathlib

    from mvc.policy.deprecations import DEPRECATIONS
    from mvc.policy.file import parse_policy
    from mvc.policy.gates import GATES

    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "mvc.yaml"
    policy = parse_policy(path.read_text(encoding="utf-8"))
    gates = policy.get(GATES)
    assert gates is not None and gates.for_channel("bert", "prod").key == "bert@prod"
    assert gates.for_channel("gpt", "prod").key == "prod"
    deprecations = policy.get(DEPRECATIONS)
    assert deprecations is not None and deprecations.rules[0].on == "2027-01-31"


def test_production_rules_read_the_store_metric_database(st: Store) -> None:
    from mvc.ops.metrics import log_metrics

    _policy(
        st,
        """
        gates:
          prod:
            production:
              latency_ms: {p99: "<= 250", mean: "no worse than stable + 10%"}
            window: 1h
            min_samples: 20
        """,
    )
    # A first release has served nowhere: it goes in forced, with its reason recorded.
    ops.set_channel(st.repo, M, "prod", "v1.4.0", force=True, message="first release")
    now = st.clock.now.timestamp()
    for i in range(40):  # the stable, serving
        log_metrics(st.repo, "bert@prod", values={"latency_ms": 100 + i % 5}, at=now - 60 + i)
    ops.deploy_canary(st.repo, M, "prod", "v1.5.0", 10)
    with pytest.raises(GateRefused, match=r"has 0 'latency_ms' point\(s\) in the last 1h"):
        ops.promote(st.repo, M, "prod")
    for i in range(30):  # the canary: slower
        log_metrics(
            st.repo, "bert@prod", arm="canary", values={"latency_ms": 300 + i}, at=now - 30 + i
        )
    with pytest.raises(GateRefused) as refused:
        ops.promote(st.repo, M, "prod")
    assert "latency_ms p99 " in refused.value.message and "> 250 (n=30)" in refused.value.message
    assert "(stable 102 + 10%)" in refused.value.message
    ops.rollback(st.repo, M, "prod")
    ops.deploy_canary(st.repo, M, "prod", "v1.6.0", 10)
    for i in range(30):  # a fast canary passes
        log_metrics(
            st.repo, "bert@prod", arm="canary", values={"latency_ms": 95 + i % 3}, at=now - 30 + i
        )
    assert ops.promote(st.repo, M, "prod").record.stable.version == st.ids["bert@v1.6.0"]
