"""Promotion gates: what a version must show before a channel serves it (pure).

The ``gates:`` section of ``mvc.yaml`` maps a channel (every model) or ``MODEL@CHANNEL`` (one
model; it replaces the channel-wide gate for that model) to its rules::

    gates:
      prod:
        requires: {accuracy: ">= 0.90", latency_p99_ms: "<= 200"}
        from: staging          # the version must be, or have been, on staging
        no_prerelease: true    # a 1.4.0-beta.1 may be a canary or shadow, never the 100% stable
      bert@prod:
        requires: {f1: "no worse than stable"}

Thresholds are the one grammar of ``mvc.policy.conditions``; a relative one (``stable``)
compares with the version the channel's stable arm serves now. ``evaluate`` returns every
broken rule with its numbers (an empty list: the gate passes). A metric the version does not
have is a broken rule that says how to add it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mvc.errors import InvalidName
from mvc.jsonshape import JsonShaped
from mvc.metrics.model import STATISTICS, Summary
from mvc.policy.conditions import Condition, ConditionSyntax, higher_is_better, parse_condition
from mvc.policy.facts import VersionFacts
from mvc.policy.text import PolicyText, Section
from mvc.refnames import validate_channel, validate_model


@dataclass(frozen=True)
class ProductionRule:
    """A statistic of a metric measured while the version served (``latency_ms: {p99: "<= 200"}``)."""

    metric: str
    statistic: str
    condition: Condition

    def __str__(self) -> str:
        return f"{self.metric} {self.statistic} {self.condition} (production)"


@dataclass(frozen=True)
class Gate:
    channel: str
    model: str | None  # None: every model's channel of that name
    requires: tuple[tuple[str, Condition], ...] = ()
    from_channel: str | None = None
    no_prerelease: bool = False
    where: str = ""  # mvc.yaml:LINE
    production: tuple[ProductionRule, ...] = ()
    window: float = 86400.0  # seconds of production points the production rules read
    min_samples: int = 1

    @property
    def key(self) -> str:
        return f"{self.model}@{self.channel}" if self.model else self.channel


@dataclass(frozen=True)
class Broken(JsonShaped):
    """One broken rule: which, what was seen, and how to fix it."""

    rule: str  # "accuracy >= 0.90", "from: staging", "no_prerelease"
    detail: str  # "accuracy 0.41 < 0.9"
    hint: str | None = None


@dataclass(frozen=True)
class Gates:
    gates: Mapping[str, Gate]

    def for_channel(self, model: str, channel: str) -> Gate | None:
        return self.gates.get(f"{model}@{channel}") or self.gates.get(channel)


def parse_gates(value: object, ctx: PolicyText) -> Gates:
    root = ctx.mapping("gates", value)
    out: dict[str, Gate] = {}
    for key, raw in root.items():
        path = f"gates.{key}"
        model, _, name = str(key).rpartition("@")
        try:
            validate_channel(name)
            if model:
                validate_model(model)
        except InvalidName as exc:
            ctx.fail(path, f"{key!r} is not CHANNEL or MODEL@CHANNEL ({exc.message})")
        body = ctx.mapping(path, raw)
        ctx.only_keys(
            path, body, ("requires", "from", "no_prerelease", "production", "window", "min_samples")
        )
        requires = []
        for metric, text in ctx.mapping(f"{path}.requires", body.get("requires", {})).items():
            try:
                condition = parse_condition(
                    ctx.string(f"{path}.requires.{metric}", text),
                    higher_better=higher_is_better(metric),
                )
            except ConditionSyntax as exc:
                ctx.fail(f"{path}.requires.{metric}", str(exc))
            requires.append((str(metric), condition))
        source = None
        if body.get("from") is not None:
            source = ctx.string(f"{path}.from", body["from"])
            try:
                validate_channel(source)
            except InvalidName as exc:
                ctx.fail(f"{path}.from", exc.message)
        no_pre = ctx.boolean(f"{path}.no_prerelease", body.get("no_prerelease", False))
        production = []
        for metric, stats in ctx.mapping(f"{path}.production", body.get("production", {})).items():
            where = f"{path}.production.{metric}"
            for statistic, text in ctx.mapping(where, stats).items():
                if statistic not in STATISTICS:
                    ctx.fail(
                        f"{where}.{statistic}",
                        f"unknown statistic {statistic!r}; one of {', '.join(STATISTICS)}",
                    )
                try:
                    condition = parse_condition(
                        ctx.string(f"{where}.{statistic}", text),
                        higher_better=higher_is_better(metric),
                    )
                except ConditionSyntax as exc:
                    ctx.fail(f"{where}.{statistic}", str(exc))
                production.append(ProductionRule(str(metric), str(statistic), condition))
        window = ctx.duration(f"{path}.window", body.get("window", "1d"))
        samples = ctx.integer(f"{path}.min_samples", body.get("min_samples", 1), minimum=1)
        out[str(key)] = Gate(
            name,
            model or None,
            tuple(requires),
            source,
            no_pre,
            ctx.where(path),
            tuple(production),
            window,
            samples,
        )
    return Gates(out)


GATES: Section[Gates] = Section(
    "gates", parse_gates, "promotion gates: what a version must show before a channel serves it"
)


def evaluate(
    gate: Gate,
    facts: VersionFacts,
    *,
    full_stable: bool,
    stable: VersionFacts | None = None,
) -> list[Broken]:
    """Every rule of ``gate`` that ``facts`` breaks. ``full_stable``: the move makes the
    version the stable arm at 100% (where pre-releases are refused); ``stable``: the facts of
    what the channel's stable arm serves now (for relative thresholds)."""
    broken: list[Broken] = []
    for metric, condition in gate.requires:
        rule = f"{metric} {condition}"
        value = facts.metric(metric)
        if value is None:
            broken.append(
                Broken(
                    rule,
                    f"{facts.name} has no {metric!r} metric",
                    f"record it: `mvc annotate {facts.name} --metric {metric}=VALUE`",
                )
            )
            continue
        base = stable.metric(metric) if stable is not None and condition.relative else None
        if condition.relative and base is None:
            what = stable.name if stable is not None else "the channel's stable arm"
            broken.append(
                Broken(
                    rule,
                    f"{what} has no {metric!r} metric to compare with",
                    f"record it: `mvc annotate {what} --metric {metric}=VALUE`"
                    if stable is not None
                    else "a relative threshold needs a stable version to compare with",
                )
            )
            continue
        verdict = condition.check(value, base)
        if not verdict.ok:
            broken.append(Broken(rule, f"{metric} {verdict.text}"))
    if gate.from_channel and gate.from_channel not in facts.served_on:
        broken.append(
            Broken(
                f"from: {gate.from_channel}",
                f"{facts.name} has never been on channel {gate.from_channel!r}",
                f"deploy it there first: `mvc channel set {facts.model} {gate.from_channel} "
                f"{facts.name.partition('@')[2]}`",
            )
        )
    if gate.no_prerelease and full_stable and facts.prerelease:
        broken.append(
            Broken(
                "no_prerelease",
                f"{facts.name} is a pre-release ({', '.join(facts.tags)}); it may be a canary "
                "or shadow, not the 100% stable arm",
                "tag a release of it (`mvc tag MODEL vX.Y.Z REV`) and deploy that",
            )
        )
    return broken


def evaluate_production(
    gate: Gate,
    facts: VersionFacts,
    measured: Mapping[str, Summary],
    *,
    stable: Mapping[str, Summary] | None = None,
) -> list[Broken]:
    """The production rules of ``gate`` that the version's measured series break: ``measured``
    maps a metric name to the summary of the version's points in the gate's window (``stable``:
    the same for the channel's stable version, for relative thresholds). Too few points is a
    broken rule that says so."""
    broken: list[Broken] = []
    for rule in gate.production:
        summary = measured.get(rule.metric) or Summary(0)
        if summary.count < gate.min_samples:
            broken.append(
                Broken(
                    str(rule),
                    f"{facts.name} has {summary.count} {rule.metric!r} point(s) in the last "
                    f"{_duration(gate.window)}, fewer than the {gate.min_samples} the gate needs",
                    f"let it serve as a canary or shadow first (`mvc deploy {facts.model} "
                    f"{gate.channel} REV --canary 10`), recording `mvc metrics log`",
                )
            )
            continue
        value = summary.statistic(rule.statistic)
        base = None
        if rule.condition.relative:
            other = (stable or {}).get(rule.metric)
            base = other.statistic(rule.statistic) if other and other.count else None
            if base is None:
                broken.append(
                    Broken(str(rule), f"the stable arm has no {rule.metric!r} points to compare")
                )
                continue
        if value is None:
            broken.append(Broken(str(rule), f"{rule.metric} has no {rule.statistic}"))
            continue
        verdict = rule.condition.check(value, base)
        if not verdict.ok:
            broken.append(
                Broken(
                    str(rule), f"{rule.metric} {rule.statistic} {verdict.text} (n={summary.count})"
                )
            )
    return broken


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
