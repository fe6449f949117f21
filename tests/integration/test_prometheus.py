"""Prometheus: the exposition side (labels from route decisions) and the query side (a real
Prometheus from Debian's packages scraping an exporter this test runs, on loopback).

Without Prometheus installed, the server tests skip with the reason, except under CI=true
(.ci/run installs it), where a missing or failing Prometheus fails them.
"""

from __future__ import annotations

import http.server
import pathlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from promserver import PrometheusServer, free_port, start_or_skip

from mvc.deployment.records import Arm
from mvc.errors import PolicyError, RemoteError, UsageError
from mvc.ids import ObjectId
from mvc.metrics.exposition import PrometheusRecorder
from mvc.metrics.model import Query, Summary
from mvc.metrics.prometheus import PrometheusSource, escape_label, render, selector
from mvc.policy.file import parse_policy
from mvc.policy.sources import SOURCES, PrometheusSpec
from mvc.router import RouteDecision, Router

STABLE = ObjectId("a" * 64)
ODD = ObjectId("c" * 64)
HOSTILE_ARM = 'a"b\\c\nd'  # quotes, a backslash and a newline: escaped or the query breaks


def decision(arm: Arm, model: str = "bert", shadows: tuple[Arm, ...] = ()) -> RouteDecision:
    return RouteDecision(model, "prod", ObjectId("d" * 64), "user-1", 1.0, arm, shadows)


ODD_ARM = Arm("ab", ODD, 0, name=HOSTILE_ARM)
# Deterministic traffic: latencies in ms and which requests failed.
TRAFFIC = {
    "stable": ([10.0 + (i % 7) for i in range(100)], {3, 50}),
    "canary": ([30.0 + (i % 5) for i in range(40)], {1, 2, 3, 4}),
}

CUMULATIVE = {  # the exporter starts at zero, so totals are the exact counts
    "latency_ms": {
        "mean": "sum(mvc_latency_ms_sum{{selector}}) / sum(mvc_latency_ms_count{{selector}})",
        "p99": "histogram_quantile(0.99, sum by (le) (mvc_latency_ms_bucket{{selector}}))",
        "max": "sum(max_over_time(mvc_latency_ms_count{{selector}}[{window}]))",
        "count": "sum(mvc_latency_ms_count{{selector}})",
    },
    "error": {
        "mean": "sum(mvc_request_errors_total{{selector}}) / sum(mvc_requests_total{{selector}})",
        "count": "sum(mvc_requests_total{{selector}})",
    },
    "escaped": {"count": 'sum(mvc_requests_total{model="{model}",arm="{arm}"})'},
    "many": {"count": "mvc_requests_total{{selector}}"},
    "broken": {"count": "sum(mvc_requests_total{{selector}}"},
    "nan": {"mean": "sum(mvc_requests_total{{selector}}) * 0 / 0"},
}


def spec(url: str, timeout: float = 10.0, **queries: dict[str, str]) -> PrometheusSpec:
    return PrometheusSpec(
        "fleet",
        url,
        queries or CUMULATIVE,
        count_query="sum(mvc_requests_total{{selector}})",
        timeout=timeout,
    )


@dataclass
class Fleet:
    server: PrometheusServer
    source: PrometheusSource
    stable: ObjectId  # v1.4.0 and v1.5.0 of the deployment tests' store (deploy_template)
    canary: ObjectId


@pytest.fixture(scope="module")
def fleet(deploy_template) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    """An exporter serving what a PrometheusRecorder recorded, scraped every second by a real
    Prometheus on 127.0.0.1; yields once Prometheus holds every series. The versions are those
    of the deployment tests' store, so a copy of it (``st``) can compare through the server."""
    from prometheus_client import CollectorRegistry, start_http_server

    stable = ObjectId(deploy_template.ids["bert@v1.4.0"])
    canary = ObjectId(deploy_template.ids["bert@v1.5.0"])
    registry = CollectorRegistry()
    recorder = PrometheusRecorder(registry)
    for arm in (Arm("stable", stable, 90), Arm("canary", canary, 10)):
        latencies, errors = TRAFFIC[arm.role]
        for i, latency in enumerate(latencies):
            recorder.observe(decision(arm), latency_ms=latency, error=i in errors)
    recorder.observe(decision(ODD_ARM), latency_ms=1.0, error=False)
    port = free_port()
    exporter, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        server = start_or_skip([f"127.0.0.1:{port}"])
        try:
            server.wait_for("sum(mvc_requests_total)", 141)
            yield Fleet(server, PrometheusSource(spec(server.url)), stable, canary)
        finally:
            server.stop()
    finally:
        exporter.shutdown()
        exporter.server_close()
        thread.join(5)


def arm_query(name: str, arm: str | None = "canary", **kw: object) -> Query:
    return Query("bert", name, channel="prod", arm=arm, **kw)  # type: ignore[arg-type]


# --- the real server ------------------------------------------------------------------------


@pytest.mark.prometheus
def test_summary_of_each_arm_from_the_scraped_exporter(fleet: Fleet) -> None:
    for arm, (latencies, errors) in TRAFFIC.items():
        latency = fleet.source.summary(arm_query("latency_ms", arm, since=time.time() - 600))
        assert latency.count == len(latencies)
        assert latency.mean == pytest.approx(sum(latencies) / len(latencies))
        assert latency.max == len(latencies)  # the {window} template: max_over_time of the count
        assert latency.p99 is not None and 10 <= latency.p99 <= 50  # inside the top bucket
        assert latency.per_second == pytest.approx(len(latencies) / 600, rel=1e-3)
        error = fleet.source.summary(arm_query("error", arm))
        assert (error.count, error.mean) == (
            len(latencies),
            pytest.approx(len(errors) / len(latencies)),
        )


@pytest.mark.prometheus
def test_version_selects_the_same_series_as_the_arm(fleet: Fleet) -> None:
    by_version = fleet.source.summary(Query("bert", "error", version=fleet.canary))
    assert by_version == fleet.source.summary(arm_query("error"))
    assert fleet.source.summary(Query("bert", "error", version=fleet.stable)).count == 100
    assert fleet.source.summary(Query("bert", "error")).count == 141  # every arm


@pytest.mark.prometheus
def test_label_values_are_escaped(fleet: Fleet) -> None:
    assert fleet.source.summary(arm_query("escaped", HOSTILE_ARM)).count == 1
    assert fleet.source.summary(arm_query("error", HOSTILE_ARM)).count == 1
    assert escape_label(HOSTILE_ARM) == 'a\\"b\\\\c\\nd'


@pytest.mark.prometheus
def test_a_series_nobody_recorded_is_an_empty_summary(fleet: Fleet) -> None:
    assert fleet.source.summary(Query("gpt", "latency_ms")) == Summary(0)
    assert fleet.source.summary(arm_query("latency_ms", "green")) == Summary(0)


@pytest.mark.prometheus
def test_many_series_an_error_status_and_nan_are_clear_errors(fleet: Fleet) -> None:
    url = fleet.server.url
    with pytest.raises(RemoteError, match=rf"Prometheus at {url} answered 3 series") as many:
        fleet.source.summary(Query("bert", "many"))
    assert "sum(" in (many.value.hint or "")
    with pytest.raises(RemoteError, match=rf"Prometheus at {url} refused .*bad_data"):
        fleet.source.summary(arm_query("broken"))
    with pytest.raises(RemoteError, match=rf"Prometheus at {url} answered NaN"):
        fleet.source.summary(arm_query("nan"))


@pytest.mark.prometheus
def test_compare_reads_rates_from_prometheus_as_from_raw_values(fleet: Fleet) -> None:
    """The two-proportion test from Prometheus's counters equals the test on the requests."""
    from mvc.metrics.compare import compare_summaries, compare_values

    got = compare_summaries(
        "error",
        ("canary", fleet.source.summary(arm_query("error", "canary"))),
        ("stable", fleet.source.summary(arm_query("error", "stable"))),
        kind="rate",
    )
    raw = {
        arm: [float(i in errors) for i in range(len(latencies))]
        for arm, (latencies, errors) in TRAFFIC.items()
    }
    expected = compare_values("error", ("canary", raw["canary"]), ("stable", raw["stable"]))
    assert got.decided and got.test == expected.test
    assert (got.p_value, got.ci_low, got.ci_high) == (
        pytest.approx(expected.p_value),
        pytest.approx(expected.ci_low),
        pytest.approx(expected.ci_high),
    )


@pytest.mark.prometheus
def test_metrics_compare_through_a_prometheus_source_of_the_policy_file(
    fleet, st, cli, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """mvc.yaml names the server; `metrics compare --source fleet` reads both arms from it."""
    from deployfix import ENV

    from mvc.ops import deploy as ops

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(st.root)
    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    ops.deploy_canary(st.repo, "bert", "prod", "v1.5.0", 10)
    (pathlib.Path(st.root) / "mvc.yaml").write_text(
        "sources:\n"
        "  fleet:\n"
        "    type: prometheus\n"
        f"    url: {fleet.server.url}\n"
        "    queries:\n"
        f"      error: '{CUMULATIVE['error']['mean']}'\n"
        "      latency_ms:\n"
        f"        mean: '{CUMULATIVE['latency_ms']['mean']}'\n"
        f"        count: '{CUMULATIVE['latency_ms']['count']}'\n"
        "        stdev: 'vector(1.5)'\n"
        "    count_query: 'sum(mvc_requests_total{{selector}})'\n",
        encoding="utf-8",
    )
    done = cli("metrics", "compare", "bert@prod:canary", "bert@prod", "--source", "fleet", "--json")
    report = done.json()
    by = {m["metric"]: m for m in report["metrics"]}
    assert sorted(by) == ["error", "latency_ms"] and report["source"] == "fleet"
    error = by["error"]
    assert (error["a"]["n"], error["b"]["n"]) == (40, 100)
    assert (error["a"]["mean"], error["b"]["mean"]) == (pytest.approx(0.1), pytest.approx(0.02))
    assert error["kind"] == "rate" and error["test"] in ("two-proportion", "fisher-exact")
    latency = by["latency_ms"]
    canary_mean = sum(TRAFFIC["canary"][0]) / 40
    stable_mean = sum(TRAFFIC["stable"][0]) / 100
    assert latency["test"] == "welch" and latency["a"]["stdev"] == 1.5
    assert latency["difference"] == pytest.approx(canary_mean - stable_mean)


@pytest.mark.prometheus
def test_values_are_not_kept_by_prometheus(fleet: Fleet) -> None:
    with pytest.raises(NotImplementedError, match="aggregates"):
        fleet.source.values(arm_query("latency_ms"))


# --- hostile servers (not Prometheus: whatever answers at the configured URL) ---------------


class _Hostile(http.server.BaseHTTPRequestHandler):
    replies: dict[str, tuple[int, bytes, float]] = {
        "/garbage/api/v1/query": (200, b"<html>not json</html>", 0),
        "/envelope/api/v1/query": (200, b'{"hello": "world"}', 0),
        "/matrix/api/v1/query": (
            200,
            b'{"status":"success","data":{"resultType":"matrix","result":[]}}',
            0,
        ),
        "/word/api/v1/query": (
            200,
            b'{"status":"success","data":{"resultType":"scalar","result":[1,"many"]}}',
            0,
        ),
        "/teapot/api/v1/query": (418, b"I am a teapot", 0),
        "/slow/api/v1/query": (200, b"{}", 2.0),
    }

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        status, body, delay = self.replies.get(self.path.split("?")[0], (404, b"", 0))
        time.sleep(delay)
        try:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (the timeout case)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("garbage", "answered 200 with something that is not JSON"),
        ("envelope", "answered JSON that is not a Prometheus API answer"),
        ("matrix", "answered a matrix .* a template must give one number"),
        ("word", "a sample that is not a number: 'many'"),
        ("teapot", "answered 418 with something that is not JSON"),
        ("slow", "did not answer within 0.5s"),
    ],
)
def test_hostile_answers_are_errors_naming_the_url(hostile: str, path: str, message: str) -> None:
    source = PrometheusSource(spec(f"{hostile}/{path}", timeout=0.5))
    with pytest.raises(RemoteError, match=rf"Prometheus at {hostile}/{path}\b.*{message}"):
        source.summary(arm_query("error"))


def test_an_unreachable_server_names_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RemoteError, match=rf"cannot reach Prometheus at {url}") as caught:
        PrometheusSource(spec(url)).summary(arm_query("error"))
    assert "sources.fleet.url" in (caught.value.hint or "")


# --- templates and the policy section -----------------------------------------------------------


def test_render_fills_placeholders_and_leaves_promql_braces() -> None:
    query = Query("team/sql-lora", "latency_ms", channel="prod", arm='x"y')
    text = 'rate(m{{selector}}[{window}]) + n{job="j",arm="{arm}",model="{model}"} # {metric}'
    assert render(text, query, 299.6) == (
        'rate(m{model="team/sql-lora",channel="prod",arm="x\\"y"}[300s])'
        ' + n{job="j",arm="x\\"y",model="team/sql-lora"} # latency_ms'
    )
    assert selector(Query("bert", "e", version=STABLE)) == f'model="bert",version="{STABLE}"'
    with pytest.raises(UsageError, match=r"uses \{channel\}, but the query names no channel"):
        render('m{channel="{channel}"}', Query("bert", "e"), 60)


def test_a_metric_without_promql_says_where_to_add_it() -> None:
    source = PrometheusSource(PrometheusSpec("fleet", "http://127.0.0.1:1", {}))
    with pytest.raises(UsageError, match="no PromQL for metric 'accuracy'") as caught:
        source.summary(Query("bert", "accuracy"))
    assert caught.value.hint == "add sources.fleet.queries.accuracy to mvc.yaml"


POLICY = """\
sources:
  fleet:
    type: prometheus
    url: http://prometheus.internal:9090/
    timeout: 5s
    window: 10m
    count_query: 'sum(increase(mvc_requests_total{{selector}}[{window}]))'
    queries:
      error: 'sum(increase(mvc_request_errors_total{{selector}}[{window}]))'
      latency_ms:
        p99: 'histogram_quantile(0.99, sum by (le) (rate(mvc_latency_ms_bucket{{selector}}[{window}])))'
"""


def test_policy_section_reads_sources() -> None:
    sources = parse_policy(POLICY).get(SOURCES)
    assert sources is not None
    fleet = sources.by_name["fleet"]
    assert (fleet.url, fleet.timeout, fleet.window) == ("http://prometheus.internal:9090", 5, 600)
    assert (
        fleet.template(
            "error",
            "mean",
        )
        is not None
    )
    assert fleet.template("latency_ms", "mean") is None
    assert fleet.template("latency_ms", "count") == fleet.count_query
    assert fleet.template(
        "latency_ms",
        "p99",
    ).startswith("histogram_quantile")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "type: prometheus",
            "type: graphite",
            r"mvc.yaml:3: sources.fleet.type: unknown source type 'graphite'",
        ),
        (
            "url: http://prometheus.internal:9090/",
            "url: prometheus:9090",
            r"mvc.yaml:4: .*not an http\(s\) URL",
        ),
        (
            "      latency_ms:\n        p99",
            "      latency_ms:\n        p98",
            r"mvc.yaml:11: sources.fleet.queries.latency_ms.p98: unknown key 'p98'",
        ),
        (
            "[{window}]))'\n      latency",
            "[{windw}]))'\n      latency",
            r"mvc.yaml:9: sources.fleet.queries.error: unknown placeholder \{windw\}",
        ),
        (
            "timeout: 5s",
            "timeout: soon",
            r"mvc.yaml:5: sources.fleet.timeout: 'soon' is not a duration",
        ),
        (
            "    window: 10m\n",
            "    window: 10m\n    step: 1\n",
            r"mvc.yaml:7: sources.fleet.step: unknown key 'step'",
        ),
    ],
)
def test_policy_section_refuses_with_file_and_line(old: str, new: str, message: str) -> None:
    assert old in POLICY
    with pytest.raises(PolicyError, match=message):
        parse_policy(POLICY.replace(old, new, 1))


# --- exposition ---------------------------------------------------------------------------------


def test_recorder_labels_come_from_the_router(st) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client import CollectorRegistry

    from mvc.ops import deploy as ops

    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    ops.deploy_canary(st.repo, "bert", "prod", "v1.5.0", 30)
    ops.set_channel(st.repo, "bert", "mirror", "v1.4.0")
    ops.deploy_shadow(st.repo, "bert", "mirror", "v1.6.0")
    registry = CollectorRegistry()
    recorder = PrometheusRecorder(registry)
    router, mirror = Router(st.repo, "bert", "prod"), Router(st.repo, "bert", "mirror")
    chosen = [router.route(f"user-{i}") for i in range(200)]
    assert {c.label for c in chosen} == {"stable", "canary"}
    for i, one in enumerate(chosen):
        recorder.observe(one, latency_ms=20, error=i % 10 == 0, tokens=3)
        recorder.set(one, "queue_depth", 4)
        recorder.observe(mirror.route(f"user-{i}"), latency_ms=25, arm="shadow")
    canary = {"model": "bert", "version": st.ids["bert@v1.5.0"], "channel": "prod", "arm": "canary"}
    shadow = {**canary, "channel": "mirror", "version": st.ids["bert@v1.6.0"], "arm": "shadow"}
    get = registry.get_sample_value
    n_canary = sum(c.label == "canary" for c in chosen)
    errors = sum(c.label == "canary" for i, c in enumerate(chosen) if i % 10 == 0)
    assert 30 < n_canary < 90 and errors > 0
    assert get("mvc_requests_total", canary) == n_canary
    assert get("mvc_request_errors_total", canary) == errors
    assert get("mvc_latency_ms_count", canary) == n_canary
    assert get("mvc_latency_ms_sum", canary) == 20 * n_canary
    assert get("mvc_latency_ms_bucket", {**canary, "le": "25.0"}) == n_canary
    assert get("mvc_latency_ms_bucket", {**canary, "le": "10.0"}) == 0
    assert get("mvc_tokens_sum", canary) == 3 * n_canary
    assert get("mvc_queue_depth", canary) == 4
    assert get("mvc_requests_total", shadow) == 200
    assert get("mvc_latency_ms_sum", shadow) == 25 * 200
    with pytest.raises(UsageError, match="arm 'green' is neither the arm that served"):
        recorder.observe(chosen[0], latency_ms=1, arm="green")
    with pytest.raises(UsageError, match="bad or already used Prometheus metric name"):
        recorder.set(chosen[0], "tokens", 1)  # a histogram already
