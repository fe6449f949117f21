"""The ``slo:`` section of the policy file: per model, the rules a candidate arm must keep.

::

    slo:
      bert:
        window: 10m          # each measurement summarises this much time
        interval: 5m         # measurements end this far apart (default: the window)
        count: 3             # measurements needed before the candidate is healthy (default 1)
        failure_limit: 0     # failed measurements tolerated (more: broken, rolled back)
        inconclusive_limit: 0  # measurements with too few samples tolerated (more: inconclusive)
        min_samples: 100     # points an arm needs in a window for a measurement to count
        steps: [10, 25, 50]  # `mvc guard --advance`: the canary's next share, then promote
        source: store        # where points are read: the store's SQLite metric database
                             # (default), or a Prometheus server named under `sources:`
        rules:
          - error_rate <= 0.01
          - latency_p99_ms <= 250
          - latency_p99_ms: no worse than stable + 10%
          - {metric: latency_ms, statistic: p95, condition: "<= 200"}

``window``, ``interval``, ``count``, ``failure_limit`` and ``inconclusive_limit`` mean what they
mean in an Argo Rollouts AnalysisTemplate; how measurements are assessed is
``mvc.deployment.analysis``.

A rule's name says which stored metric and which statistic it reads (``metric_of``): a
statistic word in the name (``p50``, ``p90``, ``p95``, ``p99``, ``mean``, ``min``, ``max``,
``stdev``, ``count``, ``per_second``) is the statistic and the rest is the metric
(``latency_p99_ms`` -> ``latency_ms`` p99, ``latency_ms_p95`` -> ``latency_ms`` p95); a name
ending in ``_rate`` is the mean of the metric before it (``error_rate`` -> mean of ``error``:
the share of points with ``error=1``); any other name is the mean of the metric of that name.
The explicit form (``metric:``, ``statistic:``, ``condition:``) says it outright. Pure: parsing
only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mvc.errors import InvalidInput, InvalidName
from mvc.metrics.model import STATISTICS
from mvc.policy.conditions import (
    Condition,
    ConditionSyntax,
    higher_is_better,
    parse_condition,
    parse_rule,
)
from mvc.policy.text import PolicyText, Section
from mvc.refnames import validate_model

STORE = "store"  # the store's own metric database; any other name is one of `sources:`
_NOT_SOURCES = ("commit",)  # commit-time metrics have no channel or arm to guard
_KEYS = (
    "rules",
    "window",
    "interval",
    "count",
    "failure_limit",
    "inconclusive_limit",
    "min_samples",
    "steps",
    "source",
)
_RULE_KEYS = ("metric", "statistic", "condition", "name", "higher_is_better")
DEFAULT_WINDOW = 300.0
DEFAULT_MIN_SAMPLES = 30


@dataclass(frozen=True)
class SloRule:
    """One rule: ``name`` as written, the stored ``metric`` and ``statistic`` it reads."""

    name: str
    metric: str
    statistic: str
    condition: Condition

    @property
    def relative(self) -> bool:
        return self.condition.relative

    def __str__(self) -> str:
        return f"{self.name} {self.condition.source}"


@dataclass(frozen=True)
class SloSpec:
    """The SLOs of one model (``window`` and ``interval`` in seconds)."""

    model: str
    rules: tuple[SloRule, ...]
    window: float = DEFAULT_WINDOW
    interval: float = DEFAULT_WINDOW
    count: int = 1
    failure_limit: int = 0
    inconclusive_limit: int = 0
    min_samples: int = DEFAULT_MIN_SAMPLES
    steps: tuple[int, ...] = ()
    source: str = STORE
    source_where: str = ""  # "mvc.yaml:9": where `source` was written, for a later refusal

    @property
    def metrics(self) -> tuple[str, ...]:
        """The stored metrics the rules read, each once."""
        return tuple(dict.fromkeys(rule.metric for rule in self.rules))

    def next_step(self, weight: int) -> int | None:
        """The canary's next share after ``weight``; None: promote."""
        return next((step for step in self.steps if step > weight), None)


@dataclass(frozen=True)
class SloPolicy:
    """The ``slo:`` section: each model's spec."""

    models: Mapping[str, SloSpec]

    def get(self, model: str) -> SloSpec | None:
        return self.models.get(model)


def metric_of(name: str) -> tuple[str, str]:
    """A rule name -> (stored metric, statistic), by the naming convention above."""
    if name.endswith("_per_second") and len(name) > len("_per_second"):
        return name[: -len("_per_second")], "per_second"
    words = name.split("_")
    for index in range(len(words) - 1, -1, -1):
        if words[index] in STATISTICS and len(words) > 1:
            rest = words[:index] + words[index + 1 :]
            return "_".join(rest), words[index]
    if name.endswith("_rate") and len(name) > len("_rate"):
        return name[: -len("_rate")], "mean"
    return name, "mean"


def parse_slo(value: object, ctx: PolicyText) -> SloPolicy:
    models: dict[str, SloSpec] = {}
    for model, body in ctx.mapping("slo", value).items():
        path = f"slo.{model}"
        try:
            validate_model(str(model))
        except (InvalidName, InvalidInput) as exc:
            ctx.fail(path, f"{model!r} is not a model name ({exc.message})")
        models[str(model)] = _parse_model(str(model), ctx.mapping(path, body), path, ctx)
    return SloPolicy(models)


def _parse_model(model: str, body: Mapping[str, object], path: str, ctx: PolicyText) -> SloSpec:
    ctx.only_keys(path, body, _KEYS)
    if "rules" not in body:
        ctx.fail(path, "has no rules", hint="add e.g. `rules: [error_rate <= 0.01]`")
    raw_rules = body["rules"]
    if not isinstance(raw_rules, list) or not raw_rules:
        ctx.fail(f"{path}.rules", "expected a non-empty list of rules")
    rules = tuple(_parse_rule(item, f"{path}.rules[{i}]", ctx) for i, item in enumerate(raw_rules))
    window = _positive_duration(body, "window", path, ctx, DEFAULT_WINDOW)
    interval = _positive_duration(body, "interval", path, ctx, window)
    count = _integer(body, "count", path, ctx, 1, minimum=1)
    failure_limit = _integer(body, "failure_limit", path, ctx, 0, minimum=0)
    inconclusive_limit = _integer(body, "inconclusive_limit", path, ctx, 0, minimum=0)
    min_samples = _integer(body, "min_samples", path, ctx, DEFAULT_MIN_SAMPLES, minimum=1)
    steps = _steps(body.get("steps"), f"{path}.steps", ctx) if "steps" in body else ()
    source = ctx.string(f"{path}.source", body.get("source", STORE))
    if source in _NOT_SOURCES:
        ctx.fail(
            f"{path}.source",
            f"{source!r} metrics were typed at commit time: they have no arm to guard",
            hint="use `store` or a source named under `sources:`",
        )
    return SloSpec(
        model,
        rules,
        window,
        interval,
        count,
        failure_limit,
        inconclusive_limit,
        min_samples,
        steps,
        source,
        ctx.where(f"{path}.source"),
    )


def _parse_rule(item: object, path: str, ctx: PolicyText) -> SloRule:
    if isinstance(item, str):
        return _short_rule(item, path, ctx)
    rule = ctx.mapping(path, item)
    if len(rule) == 1 and not set(rule) & set(_RULE_KEYS):
        # `- latency_p99_ms: no worse than stable + 10%` (YAML reads it as a one-key mapping)
        ((name, condition),) = rule.items()
        return _short_rule(f"{name}: {ctx.string(f'{path}.{name}', condition)}", path, ctx)
    ctx.only_keys(path, rule, _RULE_KEYS)
    for key in ("metric", "condition"):
        if key not in rule:
            ctx.fail(path, f"a rule written as a mapping needs {key!r}", hint=_RULE_HINT)
    metric = ctx.string(f"{path}.metric", rule["metric"])
    statistic = ctx.string(f"{path}.statistic", rule.get("statistic", "mean"))
    if statistic not in STATISTICS:
        ctx.fail(f"{path}.statistic", f"unknown statistic {statistic!r}; one of {_STATS}")
    name = ctx.string(f"{path}.name", rule.get("name", f"{metric}_{statistic}"))
    higher = (
        ctx.boolean(f"{path}.higher_is_better", rule["higher_is_better"])
        if "higher_is_better" in rule
        else higher_is_better(metric)
    )
    text = ctx.string(f"{path}.condition", rule["condition"])
    try:
        condition = parse_condition(text, higher_better=higher)
    except ConditionSyntax as exc:
        ctx.fail(f"{path}.condition", str(exc))
    return SloRule(name, metric, statistic, condition)


def _short_rule(text: str, path: str, ctx: PolicyText) -> SloRule:
    try:
        name, _condition = parse_rule(text)
    except ConditionSyntax as exc:
        ctx.fail(path, str(exc), hint=_RULE_HINT)
    metric, statistic = metric_of(name)
    if not metric:
        ctx.fail(path, f"{name!r} names a statistic but no metric", hint=_RULE_HINT)
    rest = " ".join(text.split())[len(name) :].lstrip(" :")
    try:
        condition = parse_condition(rest, higher_better=higher_is_better(metric))
    except ConditionSyntax as exc:
        ctx.fail(path, str(exc), hint=_RULE_HINT)
    return SloRule(name, metric, statistic, condition)


def _positive_duration(
    body: Mapping[str, object], key: str, path: str, ctx: PolicyText, default: float
) -> float:
    if key not in body:
        return default
    seconds = ctx.duration(f"{path}.{key}", body[key])
    if seconds <= 0:
        ctx.fail(f"{path}.{key}", "must be longer than 0s")
    return seconds


def _integer(
    body: Mapping[str, object], key: str, path: str, ctx: PolicyText, default: int, *, minimum: int
) -> int:
    if key not in body:
        return default
    return ctx.integer(f"{path}.{key}", body[key], minimum=minimum)


def _steps(value: object, path: str, ctx: PolicyText) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        ctx.fail(path, "expected a list of canary shares, e.g. [10, 25, 50]")
    steps = tuple(ctx.integer(f"{path}[{i}]", item) for i, item in enumerate(value))
    for i, step in enumerate(steps):
        if not 1 <= step <= 99:
            ctx.fail(f"{path}[{i}]", f"a canary share is 1 to 99 percent, got {step}")
        if i and step <= steps[i - 1]:
            ctx.fail(f"{path}[{i}]", f"steps must grow: {step} follows {steps[i - 1]}")
    return steps


_STATS = ", ".join(STATISTICS)
_RULE_HINT = (
    "write e.g. `error_rate <= 0.01`, `latency_p99_ms: no worse than stable + 10%`, or "
    "`{metric: latency_ms, statistic: p99, condition: '<= 250'}`; docs/policy.md"
)

SLO = Section("slo", parse_slo, "per model: the SLOs `mvc guard` holds a candidate arm to")
