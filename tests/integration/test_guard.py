"""``guard`` and ``explain`` through a real store: SLOs from mvc.yaml, points in the store's
SQLite metric database, channel moves through the deploy use cases.

A healthy canary advances step by step; one breaking an absolute SLO, or worse than stable by
the relative rule, is rolled back exactly once with its reason in the channel's history; too
little data changes nothing; two guards racing on the same record roll back once.
"""

from __future__ import annotations

import os
import random
import re
import threading
from dataclasses import dataclass

import pytest
from deployfix import Store

from mvc.deployment.analysis import BROKEN, HEALTHY, INCONCLUSIVE, windows
from mvc.errors import PolicyError, UsageError
from mvc.instants import parse_instant
from mvc.metrics.model import Point, Query, Source, Summary
from mvc.metrics.sqlite import MetricsDB
from mvc.ops import deploy as ops
from mvc.ops.explain import explain
from mvc.ops.guard import IDLE, guard, slo_spec, watch
from mvc.repo import Repo

M, C = "bert", "prod"
POLICY = """\
slo:
  bert:
    window: 10m
    interval: 5m
    count: 2
    min_samples: 50
    steps: [10, 25, 50]
    rules:
      - error_rate <= 0.01
      - latency_p99_ms <= 250
      - latency_p99_ms: no worse than stable + 10%
"""
WEB_A = Source("web-a", "101", (("python", "3.12.1"), ("torch", "2.12.0")))
WEB_B = Source("web-b", "202", (("python", "3.12.1"), ("torch", "2.13.0")))


@pytest.fixture
def canary(st: Store) -> Store:
    """prod: v1.4.0 stable, then a canary of v1.5.0 at 10%, with the policy above."""
    with open(f"{st.root}/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write(POLICY)
    ops.set_channel(st.repo, M, C, "v1.4.0")
    st.clock.tick(60)
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    return st


@dataclass
class Traffic:
    latency: float = 100.0  # each point's latency is this, +- 10%
    errors: float = 0.0  # the share of points with error=1
    per_minute: int = 30


def serve(st: Store, minutes: float, stable: Traffic, candidate: Traffic, *, seed: int = 0) -> None:
    """Points for both arms of the channel's current record, spread over the next ``minutes``;
    the clock ends after the last point."""
    rng = random.Random(seed)
    record = ops.require_current(st.repo, M, C)
    arms = [(record.stable, stable, WEB_A), (record.by_role("canary"), candidate, WEB_B)]
    start = st.clock.now.timestamp()
    points = []
    for arm, traffic, source in arms:
        assert arm is not None
        n = int(minutes * traffic.per_minute)
        for i in range(n):
            at = start + (i + 0.5) * minutes * 60 / n
            latency = traffic.latency * rng.uniform(0.9, 1.1)
            error = 1.0 if rng.random() < traffic.errors else 0.0
            points.append(Point(M, arm.version, "latency_ms", latency, at, C, arm.label, source))
            points.append(Point(M, arm.version, "error", error, at, C, arm.label, source))
    with MetricsDB.open(st.repo) as db:
        db.append(points)
    st.clock.tick(minutes)


def history_actions(st: Store) -> list[str]:
    return [item.record.action for item in ops.history(st.repo, M, C)]


def test_a_healthy_canary_advances_step_by_step_then_promotes(canary: Store) -> None:
    st = canary
    for weight, to in [(10, 25), (25, 50), (50, None)]:
        serve(st, 11, Traffic(100), Traffic(102), seed=weight)
        result = guard(st.repo, M, C, advance=True)
        assert result.status == HEALTHY, result.why
        assert result.why == "2 of 2 measurements successful"
        assert result.move is not None
        if to is None:
            assert result.action == "promote"
            assert result.move.record.state == "stable"
        else:
            assert result.action == "step"
            assert result.move.record.by_role("canary").weight == to  # type: ignore[union-attr]
        assert "healthy (2 of 2 measurements successful)" in result.move.record.why
        st.clock.tick(1)
    assert history_actions(st) == ["set", "deploy", "step", "step", "promote"]
    assert guard(st.repo, M, C).status == IDLE


def test_healthy_without_advance_changes_nothing(canary: Store) -> None:
    serve(canary, 11, Traffic(100), Traffic(100))
    before = ops.require_current(canary.repo, M, C).id
    result = guard(canary.repo, M, C)
    assert result.status == HEALTHY and result.move is None and result.action is None
    assert ops.require_current(canary.repo, M, C).id == before


def test_an_absolute_slo_broken_rolls_back_once_with_its_reason(canary: Store) -> None:
    st = canary
    serve(st, 11, Traffic(100), Traffic(100, errors=0.2))
    result = guard(st.repo, M, C)
    assert result.status == BROKEN and result.action == "rollback"
    assert result.move is not None and result.move.record.state == "stable"
    assert result.move.record.stable.version == st.ids["bert@v1.4.0"]  # type: ignore[union-attr]
    why = result.move.record.why
    # metric, value, threshold, window and sample count
    assert why.startswith("mvc guard: SLO broken by canary ")
    # the first window (6 minutes since the canary began, 30 points a minute) decides
    assert re.search(
        r": error_rate 0\.\d+ > 0\.01 over the 6m window ending \d{4}-\d\d-\d\dT\d\d:\d\d:00Z "
        r"\(180 samples\)",
        why,
    ), why
    assert "[1 of 1 measurements failed, failure_limit 0]" in why
    # the history has it, exactly once; the next guard finds nothing to guard
    assert history_actions(st) == ["set", "deploy", "rollback"]
    assert ops.history(st.repo, M, C)[-1].record.why == why
    again = guard(st.repo, M, C)
    assert again.status == IDLE and again.move is None
    assert history_actions(st) == ["set", "deploy", "rollback"]
    # the report explains it
    assert result.explanation is not None
    assert "weights" in result.explanation.kinds()


def test_worse_than_stable_by_the_relative_rule_rolls_back(canary: Store) -> None:
    # 200 ms p99 of ~ 220 passes the absolute 250 but not stable (~110 p99) + 10%
    serve(canary, 11, Traffic(100), Traffic(200))
    result = guard(canary.repo, M, C)
    assert result.status == BROKEN
    failed = [r for m in result.assessment.measurements for r in m.failures()]  # type: ignore[union-attr]
    assert {r.rule for r in failed} == {"latency_p99_ms no worse than stable + 10%"}
    assert all(r.stable is not None and r.bound == pytest.approx(r.stable * 1.1) for r in failed)
    assert result.move is not None
    assert "latency_p99_ms" in result.move.record.why and "(stable " in result.move.record.why
    assert history_actions(canary) == ["set", "deploy", "rollback"]


def test_too_little_data_changes_nothing(canary: Store) -> None:
    st = canary
    before = ops.require_current(st.repo, M, C).id
    serve(st, 11, Traffic(100), Traffic(100, per_minute=2))  # ~22 canary points < min_samples
    result = guard(st.repo, M, C, advance=True)
    assert result.status == INCONCLUSIVE and result.move is None
    assert "too little data" in result.why and "fewer than min_samples 50" in result.why
    assert ops.require_current(st.repo, M, C).id == before


def test_too_early_is_still_measuring(canary: Store) -> None:
    serve(canary, 3, Traffic(100, per_minute=60), Traffic(100, per_minute=60))
    result = guard(canary.repo, M, C, advance=True)
    assert result.status == INCONCLUSIVE and result.move is None
    assert result.why.startswith("too little data yet: 1 of 2 measurements")


def test_dry_run_decides_and_changes_nothing(canary: Store) -> None:
    serve(canary, 11, Traffic(100), Traffic(100, errors=0.5))
    before = ops.require_current(canary.repo, M, C).id
    result = guard(canary.repo, M, C, dry_run=True)
    assert result.status == BROKEN and result.action == "rollback" and result.move is None
    assert ops.require_current(canary.repo, M, C).id == before


def test_a_step_restarts_the_measurements(canary: Store) -> None:
    serve(canary, 11, Traffic(100), Traffic(100))
    assert guard(canary.repo, M, C, advance=True).action == "step"
    # nothing logged since the step: the old step's points are not judged again
    canary.clock.tick(1)
    result = guard(canary.repo, M, C, advance=True)
    assert result.status == INCONCLUSIVE and result.move is None


class Gate:
    """A metric source that holds every caller at a barrier after its last summary, so two
    guards have both decided before either moves the channel."""

    def __init__(self, db: MetricsDB, barrier: threading.Barrier, calls: int) -> None:
        self.db, self.barrier, self.calls = db, barrier, calls
        self.waited = False

    def summary(self, query: Query) -> Summary:
        found = self.db.summary(query)
        self.calls -= 1
        if self.calls == 0:
            self.barrier.wait(timeout=30)
            self.waited = True
        return found

    def values(self, query: Query, limit: int | None = None) -> list[float]:
        return list(self.db.values(query, limit))


def test_two_guards_racing_roll_back_once(canary: Store) -> None:
    st = canary
    serve(st, 11, Traffic(100), Traffic(100, errors=0.3))
    barrier = threading.Barrier(2)
    results = []
    gates: list[Gate] = []
    errors: list[BaseException] = []
    # the summaries one evaluation reads: every window, each metric of the candidate, and the
    # metrics of relative rules of the stable arm
    spec = slo_spec(st.repo, M)
    since = parse_instant(ops.require_current(st.repo, M, C).when).timestamp()
    relative = {rule.metric for rule in spec.rules if rule.relative}
    calls = len(windows(spec, since, st.clock.now.timestamp())) * (
        len(spec.metrics) + len(relative)
    )

    def run() -> None:
        repo = Repo(st.root, env=st.repo.env, clock=st.clock)
        try:
            with MetricsDB.open(repo) as db:
                gate = Gate(db, barrier, calls)
                gates.append(gate)
                results.append(guard(repo, M, C, source=gate))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert [g.waited for g in gates] == [True, True]  # both had decided before either moved
    assert sorted(r.status for r in results) == [BROKEN, BROKEN]
    moved = [r for r in results if r.move is not None]
    lost = [r for r in results if r.conflict is not None]
    assert len(moved) == 1 and len(lost) == 1
    assert "did not move it again" in (lost[0].conflict or "")
    assert history_actions(st) == ["set", "deploy", "rollback"]


def test_watch_stops_once_the_channel_has_no_candidate(canary: Store) -> None:
    st = canary
    serve(st, 11, Traffic(100), Traffic(100))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # time passes, traffic comes
        sleeps.append(seconds)
        serve(st, 11, Traffic(100), Traffic(100))

    seen = list(watch(st.reopen, M, C, advance=True, sleep=sleep))
    assert [r.action for r in seen] == ["step", "step", "promote"]
    assert sleeps == [300.0, 300.0]  # the SLO's interval
    assert history_actions(st)[-1] == "promote"


def test_guard_needs_slos_and_a_valid_policy(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    with pytest.raises(UsageError, match="mvc.yaml declares no SLOs for model 'bert'"):
        guard(st.repo, M, C)
    with open(f"{st.root}/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write("slo:\n  bert:\n    rules: [error_rate <= lots]\n")
    with pytest.raises(PolicyError, match=r"^mvc.yaml:3: slo.bert.rules\[0\]"):
        guard(st.repo, M, C)


# --- explain --------------------------------------------------------------------------------------


def test_explain_shows_model_metrics_and_environment(canary: Store) -> None:
    st = canary
    serve(st, 11, Traffic(100), Traffic(180))
    result = explain(st.repo, M, C)
    assert (result.baseline.label, result.candidate.label) == ("stable", "canary")
    assert result.baseline.name.endswith("v1.4.0") and result.candidate.name.endswith("v1.5.0")
    kinds = result.kinds()
    assert {"weights", "config", "metrics", "environment"} <= set(kinds)
    details = [f.detail for f in result.findings]
    assert any(d.startswith("config.json: seed: 1 -> 2") for d in details)
    assert any("tensors in .:" in d and "changed" in d for d in details)
    assert "torch 2.12.0 -> 2.13.0" in details and "hosts web-a -> web-b" in details
    latency = next(m for m in result.metrics if m.name == "latency_ms")
    assert latency.mean_change == pytest.approx(0.8, abs=0.05)
    assert latency.baseline.count > 0 and latency.candidate.count > 0
    assert [e.host for e in result.environments["canary"]] == ["web-b"]
    assert result.environments["stable"][0].environment["torch"] == "2.12.0"
    assert result.diff is not None and result.diff.tensors
    doc = result.to_json()
    assert doc["kinds"] == kinds and doc["candidate"]["label"] == "canary"


def test_explain_after_a_rollback_explains_what_was_rolled_back(canary: Store) -> None:
    st = canary
    serve(st, 11, Traffic(100), Traffic(100, errors=0.5))
    rolled = guard(st.repo, M, C)
    assert rolled.move is not None
    result = explain(st.repo, M, C)
    assert result.rolled_back_by == rolled.move.record.id
    assert result.record == rolled.record
    error = next(m for m in result.metrics if m.name == "error")
    assert error.candidate.mean == pytest.approx(0.5, abs=0.15)


def test_explain_a_settled_channel_says_there_is_no_candidate(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    with pytest.raises(UsageError, match="there is no candidate to explain"):
        explain(st.repo, M, C)


def test_serving_code_records_the_guard_rolls_back_the_router_follows(canary: Store) -> None:
    """The whole loop: a Router routes requests, serving code records each request's outcome
    from its RouteDecision, the guard rolls the canary back, the Router picks that up."""
    from mvc.metrics.recorder import Recorder
    from mvc.router import Router

    st = canary
    router = Router(st.repo, M, C, poll_interval=0)
    start = st.clock.now.timestamp()
    with Recorder(st.repo, max_delay=0, source=WEB_A) as recorder:
        for i in range(6000):
            decision = router.route(f"user-{i}")
            canary_arm = decision.label == "canary"
            recorder.record(
                decision,
                at=start + i * 0.11,  # 11 minutes of traffic
                latency_ms=100.0 + (i % 7),
                error=float(canary_arm and i % 4 == 0),  # the canary fails a quarter
            )
    st.clock.tick(11)
    assert {router.route(f"user-{i}").label for i in range(200)} == {"stable", "canary"}
    result = guard(st.repo, M, C)
    assert result.status == BROKEN and result.move is not None
    assert {router.route(f"user-{i}").label for i in range(200)} == {"stable"}
    assert router.record.id == result.move.record.id


def test_explain_names_tokenizer_datasets_code_params_and_adapter(st: Store) -> None:
    """Two versions with the same weights but another tokenizer, dataset, code commit and
    learning rate, each served with another adapter: explain names each, and no weights."""
    import json
    import subprocess

    from deployfix import write_model

    from mvc.ops.commit import commit
    from mvc.ops.lineage import dataset_entry
    from mvc.ops.names import create_tag

    folder = f"{st.root}/work/tok"
    write_model(folder, seed=1)
    git = {"GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@x", "GIT_COMMITTER_NAME": "A",
           "GIT_COMMITTER_EMAIL": "a@x", "GIT_CONFIG_NOSYSTEM": "1", "HOME": st.root,
           "PATH": os.environ["PATH"]}  # fmt: skip
    subprocess.run(["git", "init", "-q", folder], check=True, env=git)
    commits = {}
    for tag, vocab, lr, data in (("v3.0.0", 100, 1e-5, "aaaa"), ("v3.1.0", 120, 2e-5, "bbbb")):
        with open(f"{folder}/tokenizer.json", "w", encoding="utf-8") as handle:
            json.dump({"model": {"type": "WordPiece", "vocab_size": vocab}}, handle)
        subprocess.run(["git", "-C", folder, "add", "-A"], check=True, env=git)
        subprocess.run(["git", "-C", folder, "commit", "-qm", tag], check=True, env=git)
        commits[tag] = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"], check=True, env=git, capture_output=True,
            text=True,
        ).stdout.strip()  # fmt: skip
        lineage = {"datasets": [dataset_entry(f"squad=hf://datasets/squad@{data}")]}
        made = commit(st.repo, folder, message=tag, model=M, params={"lr": lr}, lineage=lineage)
        create_tag(st.repo, M, tag, f"id={made.version_id}")
        st.clock.tick()
    ops.set_channel(st.repo, M, "tok", "v3.0.0 + sql-lora@v1.3.0")
    ops.deploy_canary(st.repo, M, "tok", "v3.1.0 + sql-lora@v1.4.0", 10)
    result = explain(st.repo, M, "tok")
    kinds = result.kinds()
    assert {"tokenizer", "datasets", "code", "params", "adapter"} <= set(kinds)
    assert not any(f.kind == "weights" and "adapter" not in f.detail for f in result.findings)
    details = {f.kind: [] for f in result.findings}
    for f in result.findings:
        details[f.kind].append(f.detail)
    assert any(
        "tokenizer.json" in d and "vocab_size: 100 -> 120" in d for d in details["tokenizer"]
    )
    assert details["code"] == [f"code commit {commits['v3.0.0'][:12]} -> {commits['v3.1.0'][:12]}"]
    assert details["params"] == ["param lr: 1e-05 -> 2e-05"]
    assert details["datasets"] == [
        "dataset squad: hf://datasets/squad@aaaa -> hf://datasets/squad@bbbb"
    ]
    assert any(d.startswith("adapter sql-lora@") for d in details["adapter"])
    assert result.adapter_diff is not None  # the adapters' own diff: rank 2 -> 4
    assert any("adapter adapter_config.json:" in d and "r: 2 -> 4" in d for d in details["config"])
    assert "adapter lineage adapter: alpha 4.0 -> 8.0, rank 2 -> 4" in details["adapter"]
