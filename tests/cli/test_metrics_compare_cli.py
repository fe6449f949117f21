"""``mvc metrics compare`` through the real entry point, its numbers checked against scipy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import scipy.stats
from deployfix import ENV

from mvc.metrics.model import Point
from mvc.metrics.sqlite import MetricsDB
from mvc.ops import deploy as ops
from mvc.repo import Repo

NOW = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
T = NOW.timestamp()


@pytest.fixture
def prod(st, monkeypatch):
    """prod at v1.4.0 with a 20% canary of v1.5.0 (moved at 14:00); the command line's clock
    stands at NOW (15:00) and the current folder is the store's root."""
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(st.root)
    monkeypatch.setitem(Repo.__init__.__kwdefaults__, "clock", lambda: NOW)
    st.clock.now = NOW - timedelta(hours=2)
    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    st.clock.now = NOW - timedelta(hours=1)
    ops.deploy_canary(st.repo, "bert", "prod", "v1.5.0", 20)
    return st


def log(st, arm: str, tag: str, name: str, values, start: float, step: float = 1.0) -> None:
    with MetricsDB.open(st.repo) as db:
        db.append(
            Point("bert", st.ids[f"bert@{tag}"], name, float(v), start + i * step, "prod", arm)
            for i, v in enumerate(values)
        )


def test_canary_vs_stable_numbers_equal_scipy(prod, cli) -> None:
    rng = np.random.default_rng(3)
    canary_latency = rng.normal(230, 40, 300)
    stable_latency = rng.normal(210, 35, 1200)
    canary_errors = (rng.random(300) < 0.05).astype(float)
    stable_errors = (rng.random(1200) < 0.02).astype(float)
    start = T - 3000
    log(prod, "canary", "v1.5.0", "latency_ms", canary_latency, start, 2)
    log(prod, "stable", "v1.4.0", "latency_ms", stable_latency, start, 2)
    log(prod, "canary", "v1.5.0", "error", canary_errors, start, 2)
    log(prod, "stable", "v1.4.0", "error", stable_errors, start, 2)
    log(prod, "stable", "v1.4.0", "latency_ms", [9999.0] * 10, T - 7200)  # outside the window

    done = cli(
        "metrics", "compare", "bert@prod:canary", "bert@prod:stable", "--since", "1h", "--json"
    )
    report = done.json()
    assert report["decided"] is True and report["source"] == "production"
    assert report["a"]["version"] == prod.ids["bert@v1.5.0"] and report["b"]["arm"] == "stable"
    by = {m["metric"]: m for m in report["metrics"]}
    assert sorted(by) == ["error", "latency_ms"]

    latency = by["latency_ms"]
    welch = scipy.stats.ttest_ind(canary_latency, stable_latency, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert latency["test"] == "welch" and (latency["a"]["n"], latency["b"]["n"]) == (300, 1200)
    assert latency["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert (latency["ci_low"], latency["ci_high"]) == (
        pytest.approx(ci.low),
        pytest.approx(ci.high),
    )
    assert latency["difference"] == pytest.approx(canary_latency.mean() - stable_latency.mean())

    error = by["error"]
    xa, xb = int(canary_errors.sum()), int(stable_errors.sum())
    chi2 = scipy.stats.chi2_contingency([[xa, 300 - xa], [xb, 1200 - xb]], correction=False)
    assert error["test"] == "two-proportion" and error["kind"] == "rate"
    assert error["a"]["mean"] == pytest.approx(xa / 300)
    assert error["p_value"] == pytest.approx(chi2.pvalue, rel=1e-9)

    text = cli(
        "metrics", "compare", "bert@prod:canary", "bert@prod:stable", "--metric", "latency_ms"
    )
    assert "latency_ms (mean)" in text.stdout and "(welch)" in text.stdout
    assert "bert@prod:canary vs bert@prod:stable (baseline)" in text.stderr
    assert "error" not in text.stdout


def test_two_versions_across_channels(prod, cli) -> None:
    log(prod, "canary", "v1.5.0", "latency_ms", [100.0 + i % 3 for i in range(30)], T - 600)
    log(prod, "stable", "v1.4.0", "latency_ms", [100.0 + i % 3 for i in range(30)], T - 600)
    report = cli("metrics", "compare", "bert@v1.5.0", "bert@v1.4.0", "--json").json()
    (latency,) = report["metrics"]
    assert latency["difference"] == 0 and latency["p_value"] == pytest.approx(1.0)
    assert latency["significant"] is False and report["a"]["channel"] is None


def test_too_few_samples_exits_inconclusive_and_says_so(prod, cli) -> None:
    log(prod, "canary", "v1.5.0", "latency_ms", [200.0, 210.0, 190.0], T - 600)
    log(prod, "stable", "v1.4.0", "latency_ms", list(range(100)), T - 600)
    done = cli("metrics", "compare", "bert@prod:canary", "bert@prod:stable", expect=21)
    assert (
        "too few samples to decide: bert@prod:canary has 3; at least 20 on each side are needed"
        in done.stdout
    )
    assert "inconclusive: no metric has enough samples" in done.stderr
    low = cli(
        "metrics", "compare", "bert@prod:canary", "bert@prod:stable", "--min-samples", "3", "--json"
    )
    assert low.json()["metrics"][0]["test"] == "welch"
    nothing = cli("metrics", "compare", "bert@v1.6.0", "bert@v1.4.0", expect=21)
    assert "inconclusive: no metric points of both bert@v1.6.0 and bert@v1.4.0" in nothing.stderr


def test_around_a_channel_move(prod, cli) -> None:
    """The stable arm before and after the canary started at 14:00 (the move's record)."""
    before = [50.0 + (i % 4) for i in range(40)]
    after = [60.0 + (i % 4) for i in range(40)]
    log(prod, "stable", "v1.4.0", "latency_ms", before, T - 3600 - 1800, 30)
    log(prod, "stable", "v1.4.0", "latency_ms", after, T - 3600, 30)
    history = cli("channel", "history", "bert", "prod", "--json").json()
    record = history[0]["new"]  # newest first
    report = cli(
        "metrics", "compare", "bert@prod", "--around", record[:10], "--since", "30m", "--json"
    ).json()
    assert report["around"] == record
    assert (report["a"]["label"], report["b"]["label"]) == ("after", "before")
    assert (report["a"]["since"], report["b"]["until"]) == ("2026-03-03T14:00:00Z",) * 2
    (latency,) = report["metrics"]
    expected = scipy.stats.ttest_ind(after, before, equal_var=False)
    assert latency["difference"] == pytest.approx(10.0)
    assert latency["p_value"] == pytest.approx(expected.pvalue)
    assert (
        cli(
            "metrics", "compare", "bert@prod", "--around", "last", "--since", "30m", "--json"
        ).json()
        == report
    )
    bad = cli("metrics", "compare", "bert@v1.4.0", "--around", "last", expect=2)
    assert "--around needs a channel spec" in bad.stderr


def test_usage_errors(prod, cli) -> None:
    one = cli("metrics", "compare", "bert@prod:canary", expect=2)
    assert "compare needs two specs, or one channel spec and --around" in one.stderr
    source = cli(
        "metrics", "compare", "bert@prod:canary", "bert@prod", "--source", "fleet", expect=2
    )
    assert "no metric source 'fleet'" in source.stderr and "production, commit" in source.stderr
    bare = cli("metrics", "compare", "bert", "bert@prod", expect=2)
    assert "'bert' names no version or arm" in bare.stderr
