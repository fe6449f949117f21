"""``mvc metrics plot``: the PNG is written and valid, and what it draws is the bucketed series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from deployfix import ENV

from mvc.metrics.model import Point, Query, Summary
from mvc.metrics.series import bucketed, edges
from mvc.metrics.sqlite import MetricsDB
from mvc.metrics.stats import exact
from mvc.ops import deploy as ops
from mvc.repo import Repo

NOW = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
T = NOW.timestamp()
STEP = 900  # 15 minutes


def latency(arm: str, at: float) -> float:
    minute = (at - (T - 3 * 3600)) / 60
    return (150.0 if arm == "canary" else 100.0) + 20 * np.sin(minute / 9) + (minute % 7)


@pytest.fixture
def prod(st, monkeypatch):
    """prod set to v1.4.0 at 12:00, a 10% canary of v1.5.0 at 13:30, raised to 50% at 14:15;
    a latency point per arm per minute; the command line's clock stands at 15:00."""
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(st.root)
    monkeypatch.setitem(Repo.__init__.__kwdefaults__, "clock", lambda: NOW)
    for at, move in (
        (NOW - timedelta(hours=3), lambda: ops.set_channel(st.repo, "bert", "prod", "v1.4.0")),
        (
            NOW - timedelta(minutes=90),
            lambda: ops.deploy_canary(st.repo, "bert", "prod", "v1.5.0", 10),
        ),
        (NOW - timedelta(minutes=45), lambda: ops.step_canary(st.repo, "bert", "prod", 50)),
    ):
        st.clock.now = at
        move()
    with MetricsDB.open(st.repo) as db:
        db.append(
            Point(
                "bert",
                st.ids["bert@v1.4.0"],
                "latency_ms",
                latency("stable", at),
                at,
                "prod",
                "stable",
            )
            for at in np.arange(T - 3 * 3600, T, 60.0)
        )
        db.append(
            Point(
                "bert",
                st.ids["bert@v1.5.0"],
                "latency_ms",
                latency("canary", at),
                at,
                "prod",
                "canary",
            )
            for at in np.arange(T - 90 * 60, T, 60.0)
        )
    return st


def test_plot_writes_a_png_of_the_bucketed_series_with_the_moves(prod, cli, tmp_path) -> None:
    out = tmp_path / "latency.png"
    done = cli(
        "metrics",
        "plot",
        "bert",
        "prod",
        "--since",
        "3h",
        "--step",
        "15m",
        "--output",
        str(out),
        "--json",
    )
    result = done.json()
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    pixels = matplotlib.image.imread(str(out))
    assert pixels.shape[:2] == (550, 1100) and pixels.std() > 0.01  # not a blank canvas
    assert not list(tmp_path.glob(".latency.png.tmp-*"))

    assert (result["since"], result["until"], result["step_seconds"]) == (
        "2026-03-03T12:00:00Z",
        "2026-03-03T15:00:00Z",
        900.0,
    )
    arms = {a["arm"]: a for a in result["arms"]}
    assert sorted(arms) == ["canary", "stable"]
    assert (arms["stable"]["points"], arms["canary"]["points"]) == (180, 90)
    for arm, first in (("stable", T - 3 * 3600), ("canary", T - 90 * 60)):
        buckets = arms[arm]["buckets"]
        assert len(buckets) == 12
        for k, bucket in enumerate(buckets):
            low = T - 3 * 3600 + k * STEP
            assert (bucket["start"], bucket["end"]) == (low, low + STEP)
            times = [t for t in np.arange(first, T, 60.0) if low <= t < low + STEP]
            expected = np.mean([latency(arm, t) for t in times]) if times else None
            assert bucket["count"] == len(times)
            assert bucket["value"] == (None if expected is None else pytest.approx(expected))
    moves = result["moves"]
    assert [m["at"] for m in moves] == [
        "2026-03-03T12:00:00Z",
        "2026-03-03T13:30:00Z",
        "2026-03-03T14:15:00Z",
    ]
    assert moves[1]["label"] == "deploy: stable v1.4.0 90%, canary v1.5.0 10%"

    text = cli("metrics", "plot", "bert", "prod", "--stat", "p99", "--output", str(out))
    assert f"wrote {out}: latency_ms p99 of stable (180 points), canary (90 points)" in text.stderr
    assert "3 channel moves marked" in text.stderr


def test_plot_refuses_clearly(prod, cli, tmp_path) -> None:
    out = str(tmp_path / "x.png")
    none = cli("metrics", "plot", "bert", "prod", "--metric", "error", "--output", out, expect=2)
    assert "no error points of bert@prod from" in none.stderr
    stat = cli("metrics", "plot", "bert", "prod", "--stat", "count", "--output", out, expect=2)
    assert "cannot plot statistic 'count'" in stat.stderr
    fine = cli(
        "metrics",
        "plot",
        "bert",
        "prod",
        "--step",
        "1s",
        "--since",
        "3h",
        "--output",
        out,
        expect=2,
    )
    assert "too short" in fine.stderr
    missing = cli("metrics", "plot", "bert", "staging", "--output", out, expect=1)
    assert "channel 'staging' of model 'bert' does not exist" in missing.stderr


class _Values:
    """A MetricSource over a list of (time, value): the series function needs nothing more."""

    def __init__(self, points: list[tuple[float, float]]) -> None:
        self.points = points

    def summary(self, query: Query) -> Summary:
        return exact(
            v
            for t, v in self.points
            if query.since <= t < query.until  # type: ignore[operator]
        )

    def values(self, query: Query, limit: int | None = None) -> list[float]:
        raise NotImplementedError


def test_bucketed_series_on_a_hand_made_source() -> None:
    source = _Values([(0, 1.0), (5, 3.0), (10, 10.0), (25, 7.0), (29.9, 9.0)])
    got = bucketed(source, Query("m", "x"), 0, 30, 10, "mean")
    assert [(b.start, b.end, b.count, b.value) for b in got] == [
        (0, 10, 2, 2.0),
        (10, 20, 1, 10.0),
        (20, 30, 2, 8.0),
    ]
    assert [b.value for b in bucketed(source, Query("m", "x"), 0, 30, 10, "max")] == [3, 10, 9]
    assert edges(0, 25, 10) == [(0, 10), (10, 20), (20, 25)]
    with pytest.raises(ValueError, match="too many"):
        edges(0, 10_000, 1)


def test_without_matplotlib_the_error_says_how_to_install_it(
    prod, cli, tmp_path, monkeypatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    done = cli("metrics", "plot", "bert", "prod", "--output", str(tmp_path / "x.png"), expect=1)
    assert "metrics plot needs matplotlib, which is not installed" in done.stderr
    assert "pip install 'mvc[plot]'" in done.stderr
