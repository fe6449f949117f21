"""What the gateway records about each request: latency and status against model, version,
channel and arm, for the arm that answered and for every shadow that got a copy.

Three places, each optional except the first:

- Prometheus metrics in the gateway's own registry, served at ``/metrics`` (text format):
  ``mvc_gateway_requests_total{model,version,channel,arm,status}``,
  ``mvc_gateway_request_seconds{model,version,channel,arm}`` (a histogram),
  ``mvc_gateway_shadow_agreement_total{model,version,channel,arm,agree}`` and
  ``mvc_gateway_shadow_dropped_total{model,channel}`` (copies not sent: the bound was full);
- sinks: callables given each ``Outcome`` (the metric store's buffered recorder is one);
- the decision log (``mvc.audit.DecisionLog``), one JSON line per decision.

Recording never raises into a request: a sink that fails is counted in
``mvc_gateway_sink_errors_total`` and the request goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mvc.audit import DecisionLog, decision_line
from mvc.router import RouteDecision

SHADOW_ARM = "shadow"
# Latency buckets (seconds): from a fast local model to a slow generation.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
    def __init__(self, *, decision_log: DecisionLog | None = None, sinks: Sequence[Sink] = ()):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("model", "version", "channel", "arm")
        self._requests = Counter(
            "mvc_gateway_requests",
            "Requests answered through the gateway (shadows included, arm=shadow).",
            (*labels, "status"),
            registry=self.registry,
        )
        self._seconds = Histogram(
            "mvc_gateway_request_seconds",
            "Upstream latency as the gateway saw it.",
            labels,
            buckets=BUCKETS,
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
        self._sink_errors = Counter(
            "mvc_gateway_sink_errors", "Outcomes a sink failed to take.", registry=self.registry
        )
        self.decision_log = decision_log
        self.sinks = list(sinks)
        self._lock = threading.Lock()

    def record(self, outcome: Outcome) -> None:
        decision = outcome.decision
        labels = (decision.model, decision.version, decision.channel, outcome.arm)
        self._requests.labels(*labels, str(outcome.status)).inc()
        self._seconds.labels(*labels).observe(outcome.latency_ms / 1000.0)
        if outcome.shadow:
            agree = "unknown" if outcome.agree is None else str(outcome.agree).lower()
            self._agreement.labels(*labels, agree).inc()
        elif self.decision_log is not None:
            self.decision_log.write(
                decision_line(
                    decision,
                    when=outcome.when,
                    pin=outcome.pin,
                    status=outcome.status,
                    latency_ms=outcome.latency_ms,
                )
            )
        for sink in self.sinks:
            try:
                sink(outcome)
            except Exception:  # a failing sink must not fail the request it records
                self._sink_errors.inc()

    def dropped(self, model: str, channel: str) -> None:
        self._dropped.labels(model, channel).inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        if self.decision_log is not None:
            self.decision_log.close()


def sample(registry: Any, name: str, labels: dict[str, str]) -> float | None:
    """One sample's value from a registry (for tests and the benchmark)."""
    value = registry.get_sample_value(name, labels)
    return None if value is None else float(value)
