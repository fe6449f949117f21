"""What the gateway records about each request: latency and status against model, version,
channel and arm, for the arm that answered and for every shadow that got a copy (arm=shadow,
the shadow's version).

- Prometheus, in the gateway's own registry, served at ``/metrics`` (text format): the series
  ``mvc.metrics.exposition.PrometheusRecorder`` defines for all serving code
  (``mvc_requests_total``, ``mvc_request_errors_total``, ``mvc_latency_ms`` labelled
  ``model, version, channel, arm``), so the PromQL templates of ``mvc.yaml`` read the gateway
  as they read any replica; and the gateway's own ``mvc_gateway_responses_total{...,status}``,
  ``mvc_gateway_shadow_agreement_total{...,agree}`` and ``mvc_gateway_shadow_dropped_total``;
- the store's metric database, through the buffered ``mvc.metrics.recorder.Recorder`` (a
  request appends to a list; a background thread writes batches): ``latency_ms``, ``error``
  (0/1), ``status`` and, for shadows, ``agree`` (0/1), so ``mvc metrics show/compare`` and
  ``mvc guard`` read the gateway's traffic;
- the decision log (``mvc.decisions.DecisionLog``), one JSON line per decision;
- any further sinks (callables given each ``Outcome``).

Recording never raises into a request: a sink that fails is counted in
``mvc_gateway_sink_errors_total`` and the request goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from mvc.decisions import DecisionLog, decision_line
from mvc.metrics.exposition import PrometheusRecorder
from mvc.router import RouteDecision

if TYPE_CHECKING:
    from mvc.metrics.recorder import Recorder

SHADOW_ARM = "shadow"


@dataclass(frozen=True)
class Outcome:
    """One upstream call: the decision it served (for a shadow: the shadow's arm), its status
    (0: no answer: refused, timed out), latency, and for a shadow whether it agreed."""

    decision: RouteDecision
    status: int
    latency_ms: float
    when: datetime
    pin: str | None = None
    shadow: bool = False
    agree: bool | None = None

    @property
    def arm(self) -> str:
        return SHADOW_ARM if self.shadow else self.decision.label

    @property
    def error(self) -> bool:
        return self.status == 0 or self.status >= 500


Sink = Callable[[Outcome], None]


class Telemetry:
    def __init__(
        self,
        *,
        decision_log: DecisionLog | None = None,
        store: Recorder | None = None,
        sinks: Sequence[Sink] = (),
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter

        self.registry = CollectorRegistry(auto_describe=True)
        self.prometheus = PrometheusRecorder(self.registry)
        labels = ("model", "version", "channel", "arm")
        self._responses = Counter(
            "mvc_gateway_responses",
            "Upstream answers by status (0: none), shadows included (arm=shadow).",
            (*labels, "status"),
            registry=self.registry,
        )
        self._agreement = Counter(
            "mvc_gateway_shadow_agreement",
            "Shadow answers compared with the arm that answered the client.",
            (*labels, "agree"),
            registry=self.registry,
        )
        self._dropped = Counter(
            "mvc_gateway_shadow_dropped",
            "Shadow copies not sent because the concurrency bound was full.",
            ("model", "channel"),
            registry=self.registry,
        )
        self._refresh_errors = Counter(
            "mvc_gateway_refresh_errors",
            "Channel re-reads that failed (the routes keep their last view; retried next tick).",
            registry=self.registry,
        )
        self._sink_errors = Counter(
            "mvc_gateway_sink_errors", "Outcomes a sink failed to take.", registry=self.registry
        )
        self.decision_log = decision_log
        self.store = store
        self.sinks = list(sinks)
        self._lock = threading.Lock()

    def record(self, outcome: Outcome) -> None:
        decision = outcome.decision  # a shadow's: its arm is the shadow arm
        labels = (decision.model, decision.version, decision.channel, outcome.arm)
        self.prometheus.observe(decision, latency_ms=outcome.latency_ms, error=outcome.error)
        self._responses.labels(*labels, str(outcome.status)).inc()
        agree: float | None = None
        if outcome.shadow:
            said = "unknown" if outcome.agree is None else str(outcome.agree).lower()
            self._agreement.labels(*labels, said).inc()
            agree = None if outcome.agree is None else float(outcome.agree)
        elif self.decision_log is not None:
            line = decision_line(
                decision,
                when=outcome.when,
                pin=outcome.pin,
                status=outcome.status,
                latency_ms=outcome.latency_ms,
            )
            self._safely(self.decision_log.write, line)
        if self.store is not None:
            self._safely(self._to_store, self.store, outcome, agree)
        for sink in self.sinks:
            self._safely(sink, outcome)

    @staticmethod
    def _to_store(store: Recorder, outcome: Outcome, agree: float | None) -> None:
        at = outcome.when.timestamp()
        error = 1.0 if outcome.error else 0.0
        status = float(outcome.status)
        if agree is None:
            store.record(
                outcome.decision, at=at, latency_ms=outcome.latency_ms, error=error, status=status
            )
        else:
            store.record(
                outcome.decision,
                at=at,
                latency_ms=outcome.latency_ms,
                error=error,
                status=status,
                agree=agree,
            )

    def _safely(self, action: Callable[..., object], *args: object) -> None:
        try:
            action(*args)
        except Exception:  # a failing sink must not fail the request it records
            self._sink_errors.inc()

    def refresh_failed(self) -> None:
        self._refresh_errors.inc()

    def dropped(self, model: str, channel: str) -> None:
        self._dropped.labels(model, channel).inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Flush the metric store's pending points and close the decision log."""
        if self.store is not None:
            self._safely(self.store.close)
        if self.decision_log is not None:
            self.decision_log.close()
