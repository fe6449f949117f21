"""A metric source that is a Prometheus server, read through its HTTP API.

``PrometheusSource(spec).summary(query)`` fills a ``Summary`` from instant queries
(``GET /api/v1/query``): each statistic the source's templates give for the metric (see
``mvc/policy/sources.py``), evaluated at the end of the query's window, with the window's
length as ``{window}``, and the sample count from the metric's ``count`` template (or the
source's ``count_query``). No count template: the count is unknown, which readers treat as
too few samples. A count of zero is ``Summary(0)``: the other templates are not asked (their
0/0 would be NaN). ``values`` raises ``NotImplementedError``: Prometheus keeps aggregates, not
requests, so tests that need raw values fall back to the summary.

Label values are escaped for PromQL string literals. Every answer is distrusted: a timeout,
an error status, a body that is not JSON or not Prometheus's envelope, a vector with more than
one series, NaN or infinity where samples exist each raise ``RemoteError`` naming the URL and
the query.
"""

from __future__ import annotations

import json
import math
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mvc.errors import RemoteError, UsageError
from mvc.metrics.model import STATISTICS, Query, Summary
from mvc.policy.sources import PLACEHOLDER, PrometheusSpec

#: Bytes of an answer read at most (a vector of one series is a few hundred bytes).
MAX_ANSWER = 4 << 20


def escape_label(value: str) -> str:
    """``value`` as the inside of a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def selector(query: Query) -> str:
    """The label matchers for what ``query`` names: ``model="bert",channel="prod",arm="canary"``."""
    pairs = [
        ("model", query.model),
        ("version", query.version),
        ("channel", query.channel),
        ("arm", query.arm),
    ]
    return ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs if v is not None)


def window_seconds(query: Query, now: float, default: float) -> tuple[float, float]:
    """(evaluation time, window length in seconds) for ``query``'s window."""
    end = query.until if query.until is not None else now
    length = end - query.since if query.since is not None else default
    if length <= 0:
        raise UsageError(f"empty window for {query.name}: since must be before until")
    return end, length


def render(template: str, query: Query, window: float) -> str:
    """The PromQL for ``query``: each placeholder replaced, label values escaped."""

    def value(match: re.Match[str]) -> str:
        word = match.group(1)
        if word == "selector":
            return selector(query)
        if word == "window":
            return f"{max(1, round(window))}s"
        if word == "metric":
            return query.name
        label = {"model": query.model, "version": query.version}.get(word)
        if word in ("channel", "arm"):
            label = getattr(query, word)
        if label is None:
            raise UsageError(
                f"the PromQL for {query.name} uses {{{word}}}, but the query names no {word}",
                hint=f"name the {word}, or write {{selector}} to match only the labels given",
            )
        return escape_label(label)

    return PLACEHOLDER.sub(value, template)


@dataclass(frozen=True)
class Sample:
    value: float
    series: int  # how many series the answer had (0: empty, no data)


class PrometheusSource:
    """``MetricSource`` over a Prometheus server's instant-query API."""

    def __init__(self, spec: PrometheusSpec, *, clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self._clock = clock

    @property
    def url(self) -> str:
        return self.spec.url

    def summary(self, query: Query) -> Summary:
        end, window = window_seconds(query, self._clock(), self.spec.window)
        count_template = self.spec.template(query.name, "count")
        templates = {s: self.spec.template(query.name, s) for s in STATISTICS if s != "count"}
        given = {s: t for s, t in templates.items() if t is not None}
        if count_template is None and not given:
            raise UsageError(
                f"source {self.spec.name!r} has no PromQL for metric {query.name!r}",
                hint=f"add sources.{self.spec.name}.queries.{query.name} to mvc.yaml",
            )
        count = 0
        if count_template is not None:
            sampled = self.instant(render(count_template, query, window), end)
            count = 0 if sampled is None else self._count(sampled, count_template)
            if count == 0:
                return Summary(0)
        stats: dict[str, float | None] = {}
        for statistic, template in given.items():
            sampled = self.instant(render(template, query, window), end)
            stats[statistic] = sampled
        if "per_second" not in stats and count_template is not None:
            stats["per_second"] = count / window
        return Summary(count, **stats)  # keys are Summary's fields

    def values(self, query: Query, limit: int | None = None) -> Sequence[float]:
        raise NotImplementedError(
            f"Prometheus source {self.spec.name!r} keeps aggregates, not per-request values"
        )

    def _count(self, value: float, template: str) -> int:
        if value < 0:
            raise RemoteError(
                f"Prometheus at {self.url} gave a negative sample count {value} for {template!r}"
            )
        return round(value)

    def instant(self, promql: str, at: float) -> float | None:
        """The one value of an instant query at ``at`` (None: no series, no data)."""
        params = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
        address = f"{self.url}/api/v1/query?{params}"
        where = f"Prometheus at {self.url}"
        body, status = self._get(address, where, promql)
        try:
            answer = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RemoteError(
                f"{where} answered {status} with something that is not JSON for {promql!r}",
                hint=f"is {self.url} a Prometheus server? its API is at /api/v1/query",
            ) from exc
        if not isinstance(answer, dict) or answer.get("status") not in ("success", "error"):
            raise RemoteError(f"{where} answered JSON that is not a Prometheus API answer")
        if answer["status"] == "error" or status != 200:
            raise RemoteError(
                f"{where} refused {promql!r}: {answer.get('errorType', status)}: "
                f"{answer.get('error', 'no message')}",
                hint=f"fix the template in mvc.yaml (sources: {self.spec.name})",
            )
        return self._one_value(answer.get("data"), where, promql)

    def _get(self, address: str, where: str, promql: str) -> tuple[bytes, int]:
        request = urllib.request.Request(address, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.spec.timeout) as response:
                return response.read(MAX_ANSWER), int(response.status)
        except urllib.error.HTTPError as exc:  # 400/422/503: the body says why
            with exc:
                return exc.read(MAX_ANSWER), int(exc.code)
        except TimeoutError as exc:
            raise RemoteError(
                f"{where} did not answer within {self.spec.timeout:g}s for {promql!r}",
                hint=f"check the server, or raise sources.{self.spec.name}.timeout in mvc.yaml",
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError | socket.timeout):
                raise RemoteError(
                    f"{where} did not answer within {self.spec.timeout:g}s for {promql!r}",
                    hint=f"check the server, or raise sources.{self.spec.name}.timeout",
                ) from exc
            raise RemoteError(
                f"cannot reach {where}: {reason}",
                hint=f"check sources.{self.spec.name}.url in mvc.yaml",
            ) from exc

    def _one_value(self, data: object, where: str, promql: str) -> float | None:
        if not isinstance(data, dict):
            raise RemoteError(f"{where} answered without data for {promql!r}")
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return self._number(result, where, promql)
        if kind != "vector" or not isinstance(result, list):
            raise RemoteError(
                f"{where} answered a {kind} for {promql!r}; a template must give one number",
                hint="an instant vector of one series or a scalar, e.g. sum(rate(...[{window}]))",
            )
        if not result:
            return None
        if len(result) > 1:
            labels = [item.get("metric") for item in result[:3] if isinstance(item, dict)]
            raise RemoteError(
                f"{where} answered {len(result)} series for {promql!r} (e.g. {labels}); "
                "a template must give one number",
                hint="aggregate it (sum(...), histogram_quantile(0.99, sum by (le) (...))) "
                "or narrow it with {selector}",
            )
        item = result[0]
        return self._number(item.get("value") if isinstance(item, dict) else None, where, promql)

    def _number(self, pair: object, where: str, promql: str) -> float:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
            raise RemoteError(f"{where} answered a malformed sample {pair!r} for {promql!r}")
        try:
            value = float(pair[1])
        except ValueError as exc:
            raise RemoteError(
                f"{where} answered a sample that is not a number: {pair[1]!r}"
            ) from exc
        if not math.isfinite(value):
            raise RemoteError(
                f"{where} answered {pair[1]} for {promql!r} although the window has samples",
                hint="a division by zero or a quantile of empty buckets; check the template",
            )
        return value
