"""``mvc guard`` reading a real Prometheus (Debian's package, on loopback): the SLO's ``source:``
names a server under ``sources:``, serving code exports through ``PrometheusRecorder`` from the
Router's decisions, and a canary that errs is rolled back.

Without Prometheus installed this skips with the reason, except under CI=true (.ci/run
installs it), where a missing or failing Prometheus fails it.
"""

from __future__ import annotations

import pytest
from deployfix import Store
from promserver import free_port, start_or_skip

from mvc.deployment.analysis import BROKEN
from mvc.errors import PolicyError
from mvc.metrics.exposition import PrometheusRecorder
from mvc.ops import deploy as ops
from mvc.ops.guard import guard
from mvc.repo import Repo
from mvc.router import Router

M, C = "bert", "prod"
POLICY = """\
sources:
  fleet:
    type: prometheus
    url: {url}
    queries:
      error:
        mean: 'sum(mvc_request_errors_total{{{{selector}}}}) / sum(mvc_requests_total{{{{selector}}}})'
        count: 'sum(mvc_requests_total{{{{selector}}}})'
slo:
  bert:
    source: fleet
    window: 1h
    min_samples: 20
    rules:
      - error_rate <= 0.01
"""


@pytest.mark.prometheus
def test_a_canary_erring_in_prometheus_is_rolled_back(st: Store) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    real = Repo(st.root, env=st.repo.env)  # Prometheus answers for now: the real clock
    ops.set_channel(real, M, C, "v1.4.0")
    ops.deploy_canary(real, M, C, "v1.5.0", 30)
    registry = CollectorRegistry()
    recorder = PrometheusRecorder(registry)
    router = Router(real, M, C)
    served = {"stable": 0, "canary": 0}
    failed = 0
    for i in range(400):
        decision = router.route(f"user-{i}")
        served[decision.label] += 1
        error = decision.label == "canary" and i % 5 == 0
        failed += error
        recorder.observe(decision, latency_ms=20.0, error=error)
    port = free_port()
    exporter, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        server = start_or_skip([f"127.0.0.1:{port}"])
        try:
            server.wait_for("sum(mvc_requests_total)", 400)
            with open(f"{st.root}/mvc.yaml", "w", encoding="utf-8") as handle:
                handle.write(POLICY.format(url=server.url))
            result = guard(Repo(st.root, env=st.repo.env), M, C)
        finally:
            server.stop()
    finally:
        exporter.shutdown()
        exporter.server_close()
        thread.join(5)
    assert result.status == BROKEN, result.why
    assert result.move is not None
    (failure,) = result.assessment.measurements[-1].failures()  # type: ignore[union-attr]
    assert failure.samples == served["canary"]
    assert failure.value == pytest.approx(failed / served["canary"])
    assert f"({served['canary']} samples)" in result.move.record.why
    assert ops.require_current(real, M, C).action == "rollback"


def test_an_unknown_source_names_its_line(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    with open(f"{st.root}/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write("slo:\n  bert:\n    rules: [error_rate <= 0.01]\n    source: fleet\n")
    with pytest.raises(
        PolicyError, match=r"^mvc.yaml:4: slo.bert.source: no metric source 'fleet'"
    ):
        guard(st.repo, M, C)
    with open(f"{st.root}/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write("slo:\n  bert:\n    rules: [error_rate <= 0.01]\n    source: commit\n")
    with pytest.raises(PolicyError, match=r"^mvc.yaml:4: slo.bert.source: 'commit' metrics"):
        guard(st.repo, M, C)
