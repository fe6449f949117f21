"""``mvc metrics log`` and ``mvc metrics show`` through the real entry point."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from deployfix import ENV

from mvc.metrics.model import Query
from mvc.metrics.sqlite import MetricsDB, database_path
from mvc.ops import deploy as ops
from mvc.repo import Repo

NOW = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)


@pytest.fixture
def prod(st, monkeypatch):
    """The deployment store with prod at v1.4.0 and a 20% canary of v1.5.0; the current folder
    is its root and the command line's clock stands at NOW."""
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(st.root)
    monkeypatch.setitem(Repo.__init__.__kwdefaults__, "clock", lambda: NOW)
    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    ops.deploy_canary(st.repo, "bert", "prod", "v1.5.0", 20)
    return st


def points(st, **narrow) -> list[float]:
    return list(
        MetricsDB.open(st.repo).values(Query("bert", narrow.pop("name", "latency_ms"), **narrow))
    )


def test_log_pairs_for_a_channel_arm_resolves_the_arms_version(prod, cli) -> None:
    done = cli(
        "metrics", "log", "bert@prod", "--arm", "canary", "latency_ms=190", "error=0", "--json"
    )
    shown = done.json()
    assert shown["version"] == prod.ids["bert@v1.5.0"]
    assert (shown["channel"], shown["arm"], shown["points"]) == ("prod", "canary", 2)
    assert shown["metrics"] == ["error", "latency_ms"]
    assert shown["first_at"] == "2026-03-03T15:00:00Z"
    cli("metrics", "log", "bert@prod", "latency_ms=100", "--at", "2026-03-03T14:59:30+00:00")
    assert points(prod, arm="canary", version=prod.ids["bert@v1.5.0"]) == [190.0]
    assert points(prod, arm="stable", version=prod.ids["bert@v1.4.0"], channel="prod") == [100.0]


def test_log_a_version_spec_with_channel_and_arm(prod, cli) -> None:
    done = cli("metrics", "log", "bert@v1.6.0", "accuracy=0.93")
    assert "logged 1 point (accuracy) of bert@" in done.stderr and done.stdout == ""
    cli("metrics", "log", "bert@v1.5.0", "latency_ms=7", "--channel", "prod", "--arm", "canary")
    assert points(prod, name="accuracy", version=prod.ids["bert@v1.6.0"]) == [0.93]
    assert points(prod, channel="prod", arm="canary") == [7.0]


def test_log_a_jsonl_file_and_csv_from_stdin(prod, cli, tmp_path) -> None:
    lines = tmp_path / "points.jsonl"
    lines.write_text(
        '{"at": "2026-03-03T14:00:00Z", "latency_ms": 120, "error": 0}\n'
        "\n"
        '{"at": 1772546460, "latency_ms": 180, "arm": "canary", "host": "web-9"}\n'
    )
    shown = cli("metrics", "log", "bert@prod", "--file", str(lines), "--json").json()
    assert (shown["rows"], shown["points"]) == (2, 3)
    assert shown["versions"] == sorted([prod.ids["bert@v1.4.0"], prod.ids["bert@v1.5.0"]])
    assert points(prod, arm="canary") == [180.0]
    [use] = [u for u in MetricsDB.open(prod.repo).sources(Query("bert", "", arm="canary"))]
    assert use.source.host == "web-9"
    csv_text = "at,arm,latency_ms,error\n2026-03-03T14:10:00Z,stable,130,\n2026-03-03T14:11:00Z,canary,170,1\n"
    cli("metrics", "log", "bert@prod", "-", input=csv_text)
    assert points(prod, arm="stable") == [120.0, 130.0]
    assert points(prod, name="error", arm="canary") == [1.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"latency_ms": 1}\n{"latency_ms": "fast"}\n',
            "points.jsonl:2: metric latency_ms must be a number",
        ),
        ('{"latency_ms": 1}\n[1, 2]\n', "points.jsonl:2: not a JSON object"),
        (
            '{"latency_ms": 1}\n{"at": "noon", "x": 1}\n',
            "points.jsonl:2: 'noon' is not an ISO-8601 instant",
        ),
        ('{"latency_ms": 1}\n\n{"arm": "canary"}\n', "points.jsonl:3: no metric values"),
        (
            '{"latency_ms": 1, "arm": "blue"}\n',
            "points.jsonl:1: channel 'prod' of 'bert' has no 'blue' arm",
        ),
        ("latency_ms,arm\n1,stable\n2\n", "points.jsonl:3: 1 cells, the header has 2"),
    ],
)
def test_a_bad_line_names_file_and_line_and_writes_nothing(
    prod, cli, tmp_path, text, message
) -> None:
    bad = tmp_path / "points.jsonl"
    bad.write_text(text)
    done = cli("metrics", "log", "bert@prod", "--file", str(bad), expect=None)
    assert done.exit_code in (1, 2)
    assert message in done.stderr and "Traceback" not in done.stderr
    assert points(prod) == []


def test_log_usage_errors(prod, cli) -> None:
    assert "is not NAME=VALUE" in cli("metrics", "log", "bert@prod", "fast", expect=2).stderr
    assert "no metric values" in cli("metrics", "log", "bert@prod", expect=2).stderr
    assert "not a metric name here" in cli("metrics", "log", "bert@prod", "arm=x", expect=2).stderr
    assert "finite" in cli("metrics", "log", "bert@prod", "x=nan", expect=2).stderr
    named = cli("metrics", "log", "bert@prod", "x=1", "--channel", "staging", expect=2)
    assert "names channel 'prod', not 'staging'" in named.stderr
    assert "no branch, tag, channel" in cli("metrics", "log", "bert@nope", "x=1", expect=1).stderr
    assert not (database_path(prod.repo) and __import__("os").path.exists(database_path(prod.repo)))


def _seed(cli) -> None:
    lines = []
    for minute in range(120):  # two hours up to NOW, one stable and one canary point a minute
        at = NOW.timestamp() - 7200 + minute * 60
        lines.append(f'{{"at": {at}, "latency_ms": {100 + minute % 10}, "error": 0}}')
        lines.append(
            f'{{"at": {at}, "latency_ms": {200 + minute % 10}, "error": {minute % 2}, "arm": "canary"}}'
        )
    cli("metrics", "log", "bert@prod", "-", input="\n".join(lines) + "\n")


def test_show_per_arm_and_version_in_a_window(prod, cli) -> None:
    _seed(cli)
    shown = cli("metrics", "show", "bert", "prod", "--since", "1h", "--json").json()
    assert (shown["since"], shown["until"]) == ("2026-03-03T14:00:00Z", "2026-03-03T15:00:00Z")
    assert shown["by"] == ["arm", "version"]
    tables = {t["name"]: t for t in shown["metrics"]}
    assert sorted(tables) == ["error", "latency_ms"]
    canary, stable = tables["latency_ms"]["groups"]
    assert (canary["arm"], canary["version"], canary["version_name"]) == (
        "canary",
        prod.ids["bert@v1.5.0"],
        "v1.5.0",
    )
    assert (canary["count"], stable["count"]) == (60, 60)
    assert stable["mean"] == pytest.approx(104.5) and stable["p50"] == pytest.approx(104.5)
    assert stable["per_second"] == pytest.approx(60 / 3600)
    assert tables["error"]["groups"][0]["mean"] == pytest.approx(0.5)  # the canary's error rate
    text = cli("metrics", "show", "bert", "prod", "--since", "1h", "--metric", "latency_ms").stdout
    assert text.splitlines()[0] == "latency_ms"
    assert text.splitlines()[1].split() == [
        "arm",
        "version",
        "count",
        "mean",
        "p50",
        "p95",
        "p99",
        "rate/s",
    ]
    assert text.splitlines()[2].split()[:4] == [
        "canary",
        "v1.5.0",
        f"({prod.ids['bert@v1.5.0'][:8]})",
        "60",
    ]


def test_show_by_arm_of_one_version_and_since_an_instant(prod, cli) -> None:
    _seed(cli)
    by_arm = cli(
        "metrics", "show", "bert", "--by", "arm", "--metric", "latency_ms", "--json"
    ).json()
    assert [(g["arm"], g["version"], g["count"]) for g in by_arm["metrics"][0]["groups"]] == [
        ("canary", None, 120),
        ("stable", None, 120),
    ]
    one = cli("metrics", "show", "bert@v1.5.0", "--since", "2026-03-03T14:30", "--json").json()
    assert one["version"] == prod.ids["bert@v1.5.0"]
    assert [g["count"] for t in one["metrics"] for g in t["groups"]] == [30, 30]


def test_show_with_nothing_recorded_and_bad_flags(prod, cli) -> None:
    empty = cli("metrics", "show", "bert", "prod")
    assert empty.stdout == "" and "no metric points of bert prod" in empty.stderr
    assert cli("metrics", "show", "bert", "prod", "--json").json()["metrics"] == []
    assert not __import__("os").path.exists(database_path(prod.repo))  # reads create nothing
    assert (
        "neither a duration nor an instant"
        in cli("metrics", "show", "bert", "--since", "soon", expect=2).stderr
    )
    assert (
        "group metrics by 'host'" in cli("metrics", "show", "bert", "--by", "host", expect=2).stderr
    )
