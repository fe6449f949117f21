"""``mvc guard`` and ``mvc explain`` through the real entry point: exit codes 0/20/21, the report
on stdout and the alert on stderr, ``--watch`` as a long-lived process (it stops by itself once
the channel has no candidate; Ctrl-C exits 130), and two guard processes racing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from deployfix import Clock, Store

from mvc.metrics.model import Point, Source
from mvc.metrics.sqlite import MetricsDB
from mvc.ops import deploy as ops
from mvc.repo import Repo

M, C = "bert", "prod"
WEB = Source("web-1", "7", (("python", "3.12.1"), ("torch", "2.13.0")))
POLICY = """\
slo:
  bert:
    window: 1h
    min_samples: 5
    steps: [50]
    rules:
      - error_rate <= 0.01
      - latency_p99_ms: no worse than stable + 10%
"""


def log_points(root: str, error: float, at: float, n: int = 20, latency: float = 100.0) -> None:
    """n points for each arm of the channel's current record, at ``at`` and just before it."""
    repo = Repo(root)
    record = ops.require_current(repo, M, C)
    points = []
    for arm in record.arms:
        bad = arm.role != "stable"
        for i in range(n):
            when = at - i * 0.01
            points.append(
                Point(M, arm.version, "error", error if bad else 0.0, when, C, arm.label, WEB)
            )
            points.append(
                Point(
                    M, arm.version, "latency_ms", latency if bad else 100.0, when, C, arm.label, WEB
                )
            )
    with MetricsDB.open(repo) as db:
        db.append(points)


@pytest.fixture
def frozen(st: Store, mvc_env, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The deploy store as the command line's current folder, its default clock frozen."""
    monkeypatch.chdir(st.root)
    monkeypatch.setitem(Repo.__init__.__kwdefaults__, "clock", st.clock)
    with open(f"{st.root}/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write(POLICY)
    ops.set_channel(st.repo, M, C, "v1.4.0")
    st.clock.tick(10)
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    return st


def _canary_started(st: Store) -> float:
    return st.clock.now.timestamp()


def test_exit_codes_say_healthy_broken_or_inconclusive(frozen: Store, cli) -> None:
    st = frozen
    start = _canary_started(st)
    st.clock.tick(5)
    out = cli("guard", M, C, expect=21)
    assert out.stdout.startswith("inconclusive: bert prod (canary)")
    assert "error: inconclusive: too little data" in out.stderr and "nothing changed" in out.stderr
    log_points(st.root, 0.0, start + 60)
    out = cli("guard", M, C, "--advance")
    assert out.stdout.startswith("healthy: bert prod (canary)")
    assert "step: record" in out.stdout
    assert ops.require_current(st.repo, M, C).by_role("canary").weight == 50  # type: ignore[union-attr]
    st.clock.tick(5)
    log_points(st.root, 1.0, st.clock.now.timestamp() - 60)
    out = cli("guard", M, C, "--dry-run", expect=20)
    assert "would be rolled back (dry run: nothing changed)" in out.stderr
    assert "dry run: would rollback; nothing changed" in out.stderr
    assert ops.require_current(st.repo, M, C).state == "canary"
    out = cli("guard", M, C, expect=20)
    assert out.stdout.startswith("broken: bert prod (canary)")
    assert "rollback: record " in out.stdout and "what differs:" in out.stdout
    assert "error: SLO broken: rolled bert prod back (record " in out.stderr
    history = cli("channel", "history", M, C, "--json").json()
    assert [item["record"]["action"] for item in history] == ["rollback", "step", "deploy", "set"]
    assert "error_rate 1 > 0.01 over the 5m window ending" in history[0]["why"]
    assert "(20 samples" in history[0]["why"]
    out = cli("guard", M, C)  # settled: nothing to guard, and cron stays quiet
    assert out.stdout.startswith("idle: ") and "nothing to guard" in out.stdout


def test_explain_shows_what_differs(frozen: Store, cli) -> None:
    st = frozen
    log_points(st.root, 0.5, _canary_started(st) + 30, latency=150)
    st.clock.tick(5)
    out = cli("explain", M, C)
    assert out.stdout.startswith("bert prod: canary ")
    assert "what differs:" in out.stdout and "weights" in out.stdout
    assert "config.json: seed: 1 -> 2" in out.stdout
    assert "latency_ms: mean 100 -> 150 (+50.0%)" in out.stdout
    assert "serving environment of canary:" in out.stdout and "torch=2.13.0" in out.stdout
    doc = cli("explain", M, C, "--json").json()
    assert doc["candidate"]["label"] == "canary" and "weights" in doc["kinds"]


def test_usage_errors(frozen: Store, cli) -> None:
    out = cli("guard", M, C, "--interval", "5s", expect=2)
    assert "--interval is for --watch" in out.stderr
    out = cli("guard", M, C, "--watch", "--interval", "soon", expect=2)
    assert "not a duration" in out.stderr
    with open(f"{frozen.root}/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write("slo:\n  bert:\n    rulez: []\n")
    out = cli("guard", M, C, expect=2)
    assert "mvc.yaml:3: slo.bert.rulez: unknown key 'rulez'" in out.stderr


# --- real processes -------------------------------------------------------------------------------


@pytest.fixture
def live(st: Store, mvc_env) -> Store:
    """The deploy store on the real clock, a canary started just now."""
    real = Repo(st.root, env=st.repo.env)
    with open(f"{st.root}/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write(POLICY)
    ops.set_channel(real, M, C, "v1.4.0")
    ops.deploy_canary(real, M, C, "v1.5.0", 10)
    time.sleep(1.05)  # the record's time has whole seconds: points come after it
    st.clock = Clock()  # unused: the processes below run on the real clock
    return st


def _start(st: Store, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mvc", "guard", M, C, *args],
        cwd=st.root,
        env={**os.environ, "MVC_DIR": st.root},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never came; saw {seen!r}")


def test_watch_rolls_back_by_itself_and_exits_20(live: Store) -> None:
    proc = _start(live, "--watch", "--interval", "0.2s")
    try:
        _wait_for(proc, "inconclusive:")  # no traffic yet: it keeps watching
        log_points(live.root, 1.0, time.time() - 0.1)
        _wait_for(proc, "rollback: record ")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 20, err
    assert "stopped watching" in err and "SLO broken: rolled bert prod back" in err
    assert ops.require_current(Repo(live.root), M, C).action == "rollback"


def test_watch_stops_when_someone_else_settles_the_channel(live: Store) -> None:
    proc = _start(live, "--watch", "--interval", "0.2s")
    try:
        _wait_for(proc, "inconclusive:")
        ops.promote(Repo(live.root, env=live.repo.env), M, C)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "idle: " in out and "stopped watching: channel 'prod' serves one version" in err


def test_ctrl_c_stops_a_watch_cleanly_with_130(live: Store) -> None:
    proc = _start(live, "--watch", "--interval", "0.2s")
    try:
        _wait_for(proc, "inconclusive:")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert ops.require_current(Repo(live.root), M, C).state == "canary"


def test_two_guard_processes_roll_back_once(live: Store) -> None:
    log_points(live.root, 1.0, time.time() - 0.1)
    procs = [_start(live) for _ in range(2)]
    results = [proc.communicate(timeout=120) for proc in procs]
    codes = sorted(proc.returncode for proc in procs)
    # both decided before either moved (exit 20, one of them "did not move it again"), or the
    # second came after the rollback and found nothing to guard (exit 0)
    assert codes in ([20, 20], [0, 20]), results
    history = ops.history(Repo(live.root), M, C)
    assert [item.record.action for item in history] == ["set", "deploy", "rollback"]


def test_watch_json_prints_one_document_per_line(live: Store) -> None:
    import json

    proc = _start(live, "--watch", "--interval", "0.2s", "--json")
    try:
        first = _wait_for(proc, '"status": "inconclusive"')
        log_points(live.root, 1.0, time.time() - 0.1)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 20, err
    docs = [json.loads(line) for line in (first + out).splitlines()]
    assert docs[0]["status"] == "inconclusive" and docs[-1]["status"] == "broken"
    assert docs[-1]["move"]["record"]["action"] == "rollback"
