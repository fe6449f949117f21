"""The ``sources:`` section of the policy file: named metric sources besides the store's own.

::

    sources:
      fleet:
        type: prometheus
        url: http://prometheus.internal:9090
        timeout: 10s          # per HTTP request (default 10s)
        window: 1h            # the window when a reader gives none (default 1h)
        count_query: 'sum(increase(mvc_requests_total{{selector}}[{window}]))'
        queries:
          latency_ms:         # a statistic -> a PromQL template
            mean: 'sum(rate(mvc_latency_ms_sum{{selector}}[{window}])) / sum(rate(mvc_latency_ms_count{{selector}}[{window}]))'
            p99: 'histogram_quantile(0.99, sum by (le) (rate(mvc_latency_ms_bucket{{selector}}[{window}])))'
            count: 'sum(increase(mvc_latency_ms_count{{selector}}[{window}]))'
          error: 'sum(increase(mvc_request_errors_total{{selector}}[{window}])) / sum(increase(mvc_requests_total{{selector}}[{window}]))'

A metric's template is one PromQL expression, or a mapping from statistics (``mean``,
``stdev``, ``p99`` … and ``count``; see ``mvc.metrics.model.STATISTICS``) to expressions; a bare
expression is the ``mean``. The sample count comes from the metric's ``count`` template, else
from ``count_query``. Placeholders: ``{model}``, ``{version}``, ``{channel}``, ``{arm}`` (the
label values, escaped for a PromQL string: write them inside quotes, ``arm="{arm}"``),
``{selector}`` (the matchers for the labels a reader names, ``model="bert",arm="canary"``,
written inside braces), ``{window}`` (the window, e.g. ``3600s``) and ``{metric}`` (the metric
name). Any other ``{word}`` is refused here, so a typo never reaches the server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mvc.metrics.model import STATISTICS
from mvc.policy.text import PolicyText, Section

PLACEHOLDERS = ("model", "version", "channel", "arm", "selector", "window", "metric")
#: A placeholder as templates write it; PromQL's own braces (``{arm="x"}``) never match.
PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
KINDS = ("prometheus",)
DEFAULT_TIMEOUT = 10.0
DEFAULT_WINDOW = 3600.0


@dataclass(frozen=True)
class PrometheusSpec:
    """A Prometheus server and the PromQL that gives each metric's statistics."""

    name: str
    url: str
    queries: Mapping[str, Mapping[str, str]]  # metric -> statistic (or "count") -> template
    count_query: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    window: float = DEFAULT_WINDOW

    def template(self, metric: str, statistic: str) -> str | None:
        found = self.queries.get(metric, {}).get(statistic)
        if found is None and statistic == "count":
            return self.count_query
        return found


@dataclass(frozen=True)
class Sources:
    by_name: Mapping[str, PrometheusSpec] = field(default_factory=dict)


def placeholders(template: str) -> list[str]:
    return PLACEHOLDER.findall(template)


def _template(path: str, value: object, ctx: PolicyText) -> str:
    text = ctx.string(path, value)
    for word in placeholders(text):
        if word not in PLACEHOLDERS:
            ctx.fail(
                path,
                f"unknown placeholder {{{word}}}",
                hint="placeholders: " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS),
            )
    return text


def _queries(path: str, value: object, ctx: PolicyText) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for metric, item in ctx.mapping(path, value).items():
        where = f"{path}.{metric}"
        if isinstance(item, str):
            found[str(metric)] = {"mean": _template(where, item, ctx)}
            continue
        stats = ctx.mapping(where, item)
        ctx.only_keys(where, stats, STATISTICS)
        if not stats:
            ctx.fail(where, "no statistic: give at least one template (mean: '...')")
        found[str(metric)] = {str(k): _template(f"{where}.{k}", v, ctx) for k, v in stats.items()}
    return found


def _source(name: str, value: object, ctx: PolicyText) -> PrometheusSpec:
    path = f"sources.{name}"
    item = ctx.mapping(path, value)
    ctx.only_keys(path, item, ("type", "url", "queries", "count_query", "timeout", "window"))
    kind = ctx.string(f"{path}.type", item.get("type"))
    if kind not in KINDS:
        ctx.fail(f"{path}.type", f"unknown source type {kind!r}", hint="types: " + ", ".join(KINDS))
    url = ctx.string(f"{path}.url", item.get("url")).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        ctx.fail(f"{path}.url", f"{url!r} is not an http(s) URL (e.g. http://prometheus:9090)")
    if "queries" not in item:
        ctx.fail(path, "no queries: map each metric to its PromQL template")
    count = item.get("count_query")
    timeout = ctx.duration(f"{path}.timeout", item.get("timeout", DEFAULT_TIMEOUT))
    window = ctx.duration(f"{path}.window", item.get("window", DEFAULT_WINDOW))
    if timeout <= 0 or window <= 0:
        ctx.fail(path, "timeout and window must be longer than zero")
    return PrometheusSpec(
        name,
        url,
        _queries(f"{path}.queries", item["queries"], ctx),
        None if count is None else _template(f"{path}.count_query", count, ctx),
        timeout,
        window,
    )


def parse_sources(value: object, ctx: PolicyText) -> Sources:
    root = ctx.mapping("sources", value)
    return Sources({str(name): _source(str(name), item, ctx) for name, item in root.items()})


SOURCES = Section("sources", parse_sources, "named metric sources (Prometheus servers and PromQL)")
