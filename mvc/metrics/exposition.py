"""Prometheus exposition for serving code: metrics labelled with the version that served.

``PrometheusRecorder().observe(decision, latency_ms=212, error=False)`` counts the request and
its error, and observes its latency, under the labels ``model``, ``version`` (the full version
id), ``channel`` and ``arm`` (the arm's label: stable, canary, green, shadow or an A/B name),
all taken from the router's ``RouteDecision``, so serving code never spells an id. Any other
named value (``observe(decision, tokens=118)``) goes to a histogram of its own; ``set(decision,
name, value)`` sets a gauge. A shadow's outcome is recorded with ``arm="shadow"`` (or the
shadow's label): the version is then the shadow arm's.

Names keep mvc's units (``mvc_latency_ms`` is in milliseconds, as ``latency_ms`` is in the
metric store), so one set of PromQL templates in ``mvc.yaml`` reads what this module exports:

    mvc_requests_total{model,version,channel,arm}          counter, one per observe()
    mvc_request_errors_total{...}                          counter, the observe()s with error
    mvc_latency_ms_bucket/_sum/_count{...}                 histogram of latency_ms
    mvc_<name>_bucket/_sum/_count{...}                     histogram of any other value
    mvc_<name>{...}                                        gauge, from set()

``prometheus_client`` is an optional extra (``pip install 'mvc[prometheus]'``), imported when a
recorder is made. The recorder is safe to share between threads (prometheus_client's metrics
are).
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING

from mvc.errors import MvcError, UsageError
from mvc.router import RouteDecision

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LABELS = ("model", "version", "channel", "arm")
#: Latency buckets in milliseconds: 1 ms to 10 s, about three per decade.
LATENCY_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _client() -> object:
    try:
        import prometheus_client
    except ImportError as exc:
        raise MvcError(
            "Prometheus exposition needs prometheus_client, which is not installed",
            hint="pip install 'mvc[prometheus]'  (or: pip install prometheus_client)",
        ) from exc
    return prometheus_client


class PrometheusRecorder:
    """Counters, a latency histogram and named histograms/gauges on a prometheus_client
    registry (the default registry when ``registry`` is None), labelled from route decisions."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "mvc",
        latency_buckets: tuple[float, ...] = LATENCY_BUCKETS_MS,
    ) -> None:
        _client()
        from prometheus_client import REGISTRY, Counter, Histogram

        if not _NAME.match(namespace):
            raise UsageError(f"bad Prometheus namespace {namespace!r}: letters, digits and _ only")
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        self._lock = threading.Lock()
        self.requests: Counter = Counter(
            f"{namespace}_requests",
            "Requests served, by model, version, channel and arm.",
            LABELS,
            registry=self.registry,
        )
        self.errors: Counter = Counter(
            f"{namespace}_request_errors",
            "Requests that failed, by model, version, channel and arm.",
            LABELS,
            registry=self.registry,
        )
        self.latency: Histogram = Histogram(
            f"{namespace}_latency_ms",
            "Request latency in milliseconds, by model, version, channel and arm.",
            LABELS,
            buckets=latency_buckets,
            registry=self.registry,
        )
        self._histograms: dict[str, Histogram] = {"latency_ms": self.latency}
        self._gauges: dict[str, Gauge] = {}

    def labels(self, decision: RouteDecision, arm: str | None = None) -> dict[str, str]:
        """The label values for ``decision``'s arm, or for another arm of the same record
        (``arm="shadow"``: the shadow it mirrored the request to)."""
        chosen = decision.arm
        if arm is not None and arm != decision.label:
            found = [a for a in decision.shadows if a.label == arm or a.role == arm]
            if not found:
                raise UsageError(
                    f"arm {arm!r} is neither the arm that served ({decision.label}) nor a shadow "
                    f"of {decision.model}@{decision.channel}",
                    hint="shadows of this decision: "
                    + (", ".join(a.label for a in decision.shadows) or "none"),
                )
            chosen = found[0]
        return {
            "model": decision.model,
            "version": chosen.version,
            "channel": decision.channel,
            "arm": chosen.label,
        }

    def observe(
        self,
        decision: RouteDecision,
        *,
        latency_ms: float | None = None,
        error: bool | float | None = None,
        arm: str | None = None,
        **values: float,
    ) -> None:
        """One request's outcome: counted, its error counted, each value observed."""
        labels = self.labels(decision, arm)
        self.requests.labels(**labels).inc()
        if error:
            self.errors.labels(**labels).inc()
        if latency_ms is not None:
            self.latency.labels(**labels).observe(float(latency_ms))
        for name, value in values.items():
            self.histogram(name).labels(**labels).observe(float(value))

    def set(
        self, decision: RouteDecision, name: str, value: float, *, arm: str | None = None
    ) -> None:
        """Set the gauge ``<namespace>_<name>`` for the decision's arm."""
        self.gauge(name).labels(**self.labels(decision, arm)).set(float(value))

    def histogram(self, name: str, buckets: tuple[float, ...] | None = None) -> Histogram:
        """The histogram of a named value, made on first use (default buckets of
        prometheus_client unless ``buckets`` is given the first time)."""
        from prometheus_client import Histogram

        with self._lock:
            found = self._histograms.get(name)
            if found is None:
                self._check_name(name)
                found = Histogram(
                    f"{self.namespace}_{name}",
                    f"{name}, by model, version, channel and arm.",
                    LABELS,
                    buckets=Histogram.DEFAULT_BUCKETS if buckets is None else buckets,
                    registry=self.registry,
                )
                self._histograms[name] = found
            return found

    def gauge(self, name: str) -> Gauge:
        from prometheus_client import Gauge

        with self._lock:
            found = self._gauges.get(name)
            if found is None:
                self._check_name(name)
                found = Gauge(
                    f"{self.namespace}_{name}",
                    f"{name}, by model, version, channel and arm.",
                    LABELS,
                    registry=self.registry,
                )
                self._gauges[name] = found
            return found

    def _check_name(self, name: str) -> None:
        if not _NAME.match(name) or name in self._gauges or name in self._histograms:
            raise UsageError(
                f"bad or already used Prometheus metric name {name!r}",
                hint="letters, digits and _; one name is either a histogram or a gauge",
            )
