"""SLOs as pure values: the ``slo:`` section of mvc.yaml and the analysis core (no store, no I/O).

The assessment follows Argo Rollouts' ``assessMetricStatus``: failed measurements beyond
``failure_limit`` break, inconclusive ones beyond ``inconclusive_limit`` are inconclusive,
``count`` measurements make healthy, fewer mean still measuring.
"""

from __future__ import annotations

import pathlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from mvc.deployment.analysis import (
    BROKEN,
    FAILED,
    HEALTHY,
    INCONCLUSIVE,
    SUCCESSFUL,
    Measurement,
    Window,
    assess,
    guarded_arms,
    measure,
    next_move,
    windows,
)
from mvc.deployment.records import AB, CANARY, GREEN, SHADOW, STABLE, Arm, Record
from mvc.errors import PolicyError, UsageError
from mvc.metrics.model import Summary
from mvc.policy.file import parse_policy
from mvc.policy.slo import SLO, SloSpec, metric_of

POLICY = """\
# the example of docs/policy.md
slo:
  bert:
    window: 10m
    interval: 5m
    count: 3
    failure_limit: 1
    min_samples: 50
    steps: [10, 25, 50]
    rules:
      - error_rate <= 0.01
      - latency_p99_ms <= 250
      - latency_p99_ms: no worse than stable + 10%
      - {metric: accuracy, statistic: mean, condition: "no worse than stable + 2%"}
"""


def spec_of(text: str = POLICY, model: str = "bert") -> SloSpec:
    section = parse_policy(text).get(SLO)
    assert section is not None
    found = section.get(model)
    assert found is not None
    return found


# --- the policy section ---------------------------------------------------------------------------


def test_the_slo_section_reads_every_key():
    spec = spec_of()
    assert (spec.window, spec.interval, spec.count) == (600, 300, 3)
    assert (spec.failure_limit, spec.inconclusive_limit, spec.min_samples) == (1, 0, 50)
    assert spec.steps == (10, 25, 50) and spec.source == "store"
    rules = [(r.name, r.metric, r.statistic, r.relative) for r in spec.rules]
    assert rules == [
        ("error_rate", "error", "mean", False),
        ("latency_p99_ms", "latency_ms", "p99", False),
        ("latency_p99_ms", "latency_ms", "p99", True),
        ("accuracy_mean", "accuracy", "mean", True),
    ]
    assert spec.metrics == ("error", "latency_ms", "accuracy")
    # accuracy is better higher: "no worse" is a lower bound there
    assert spec.rules[3].condition.check(0.82, 0.83).ok
    assert not spec.rules[3].condition.check(0.80, 0.83).ok


def test_defaults_are_argos():
    spec = spec_of("slo:\n  bert:\n    rules: [error_rate <= 0.01]\n")
    assert (spec.count, spec.failure_limit, spec.inconclusive_limit) == (1, 0, 0)
    assert spec.interval == spec.window == 300
    assert spec.steps == ()


@pytest.mark.parametrize(
    ("name", "metric", "statistic"),
    [
        ("latency_p99_ms", "latency_ms", "p99"),
        ("latency_ms_p95", "latency_ms", "p95"),
        ("error_rate", "error", "mean"),
        ("accuracy", "accuracy", "mean"),
        ("tokens_per_second", "tokens", "per_second"),
        ("latency_ms_max", "latency_ms", "max"),
        ("queue_depth_mean", "queue_depth", "mean"),
    ],
)
def test_rule_names_map_to_a_stored_metric_and_statistic(name, metric, statistic):
    assert metric_of(name) == (metric, statistic)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("    rules: [error_rate about 3]\n", r"^mvc.yaml:3: slo.bert.rules\[0\]: 'about 3'"),
        (
            "    rules:\n      - error_rate <= 1\n      - x\n",
            r"^mvc.yaml:5: slo.bert.rules\[1\]: 'x' is not a rule",
        ),
        ("    window: soon\n    rules: [e <= 1]\n", r"^mvc.yaml:3: slo.bert.window: 'soon' is not"),
        ("    count: 0\n    rules: [e <= 1]\n", r"^mvc.yaml:3: slo.bert.count: must be at least 1"),
        ("    failure_limit: -1\n    rules: [e <= 1]\n", r"slo.bert.failure_limit: must be at"),
        ("    min_samples: 2.5\n    rules: [e <= 1]\n", r"slo.bert.min_samples: expected a whole"),
        (
            "    steps: [10, 5]\n    rules: [e <= 1]\n",
            r"^mvc.yaml:3: slo.bert.steps\[1\]: steps must",
        ),
        ("    steps: [100]\n    rules: [e <= 1]\n", r"slo.bert.steps\[0\]: a canary share is 1"),
        (
            "    source: commit\n    rules: [e <= 1]\n",
            r"^mvc.yaml:3: slo.bert.source: 'commit' metrics",
        ),
        ("    windw: 5m\n    rules: [e <= 1]\n", r"^mvc.yaml:3: slo.bert.windw: unknown key"),
        ("    window: 5m\n", r"^mvc.yaml:2: slo.bert: has no rules"),
        ("    rules: []\n", r"slo.bert.rules: expected a non-empty list"),
        (
            "    rules:\n      - {metric: latency_ms, statistic: p42, condition: '<= 1'}\n",
            r"^mvc.yaml:4: slo.bert.rules\[0\].statistic: unknown statistic 'p42'",
        ),
        (
            "    rules:\n      - {metric: latency_ms}\n",
            r"^mvc.yaml:4: slo.bert.rules\[0\]: a rule written as a mapping needs 'condition'",
        ),
        (
            "    rules:\n      - latency_p99_ms: about right\n",
            r"^mvc.yaml:4: slo.bert.rules\[0\]: 'about right' is not a condition",
        ),
        ("    window: 0s\n    rules: [e <= 1]\n", r"slo.bert.window: must be longer than 0s"),
    ],
)
def test_malformed_slos_name_file_line_and_key(body, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy("slo:\n  bert:\n" + body)


def test_a_model_name_is_checked():
    with pytest.raises(PolicyError, match=r"^mvc.yaml:2: slo.Bad Name: 'Bad Name' is not a model"):
        parse_policy("slo:\n  Bad Name:\n    rules: [e <= 1]\n")


# --- windows --------------------------------------------------------------------------------------


def test_windows_end_every_interval_and_never_reach_before_the_step():
    spec = spec_of()  # window 10m, interval 5m, count 3
    assert windows(spec, since=0, now=3600) == (
        Window(2400, 3000),
        Window(2700, 3300),
        Window(3000, 3600),
    )
    # 7 minutes into the step: two windows fit, the older clipped at the step's start
    assert windows(spec, since=1000, now=1420) == (Window(1000, 1120), Window(1000, 1420))
    assert windows(spec, since=1000, now=1000) == ()


# --- one measurement ------------------------------------------------------------------------------

W = Window(0, 600)


def summaries(error: float = 0.0, p99: float = 200.0, accuracy: float = 0.9, n: int = 100):
    return {
        "error": Summary(n, mean=error),
        "latency_ms": Summary(n, mean=p99 / 2, p99=p99),
        "accuracy": Summary(n, mean=accuracy),
    }


def test_a_healthy_measurement():
    m = measure(spec_of(), W, summaries(), summaries())
    assert m.phase == SUCCESSFUL and all(r.phase == SUCCESSFUL for r in m.results)


def test_an_absolute_rule_breaks_with_its_numbers():
    m = measure(spec_of(), W, summaries(error=0.05, n=400), summaries())
    assert m.phase == FAILED
    (failure,) = m.failures()
    assert (failure.rule, failure.value, failure.bound, failure.samples) == (
        "error_rate <= 0.01",
        0.05,
        0.01,
        400,
    )
    assert m.describe_failures() == [
        "error_rate 0.05 > 0.01 over the 10m window ending 1970-01-01T00:10:00Z (400 samples)"
    ]


def test_a_relative_rule_compares_with_stable():
    # 240 ms is within the absolute 250 but more than stable's 200 + 10%
    m = measure(spec_of(), W, summaries(p99=240), summaries(p99=200))
    (failure,) = m.failures()
    assert failure.rule == "latency_p99_ms no worse than stable + 10%"
    assert (failure.value, failure.bound, failure.stable) == (240, pytest.approx(220), 200)
    assert failure.text == "240 > 220 (stable 200 + 10%)"
    assert failure.stable_samples == 100


def test_too_few_points_is_inconclusive_and_says_whose():
    m = measure(spec_of(), W, summaries(n=10), summaries(), candidate_label="canary")
    assert m.phase == INCONCLUSIVE
    assert m.results[0].text == "canary has 10 points of error, fewer than min_samples 50"
    m = measure(spec_of(), W, summaries(), summaries(n=3))
    assert m.phase == INCONCLUSIVE
    assert "stable has 3 points of latency_ms" in m.results[2].text
    assert m.results[0].phase == SUCCESSFUL  # absolute rules do not need stable


def test_a_broken_rule_wins_over_an_inconclusive_one():
    cand = summaries(error=0.5)
    cand["accuracy"] = Summary(1, mean=0.9)
    assert measure(spec_of(), W, cand, summaries()).phase == FAILED


def test_a_missing_metric_is_an_empty_series():
    m = measure(spec_of(), W, {}, {})
    assert m.phase == INCONCLUSIVE and m.results[0].samples == 0


# --- the assessment (Argo's rules) ----------------------------------------------------------------


def _m(phase: str, end: float = 600) -> Measurement:
    results = ()
    if phase == FAILED:
        from mvc.deployment.analysis import RuleResult

        results = (
            RuleResult(
                "error_rate <= 0.01",
                "error",
                "mean",
                FAILED,
                0.5,
                0.01,
                None,
                80,
                None,
                "0.5 > 0.01",
            ),
        )
    elif phase == INCONCLUSIVE:
        from mvc.deployment.analysis import RuleResult

        results = (
            RuleResult(
                "error_rate <= 0.01",
                "error",
                "mean",
                INCONCLUSIVE,
                None,
                None,
                None,
                3,
                None,
                "canary has 3 points of error, fewer than min_samples 50",
            ),
        )
    return Measurement(Window(end - 600, end), phase, results)


S, F, U = SUCCESSFUL, FAILED, INCONCLUSIVE


@pytest.mark.parametrize(
    ("phases", "count", "failure_limit", "inconclusive_limit", "status"),
    [
        ([S, S, S], 3, 0, 0, HEALTHY),
        ([S, S], 3, 0, 0, INCONCLUSIVE),  # still measuring
        ([S, F], 3, 0, 0, BROKEN),
        ([S, F, S], 3, 1, 0, HEALTHY),  # failures within the limit do not fail the count
        ([F, F], 3, 1, 0, BROKEN),
        ([U], 3, 0, 0, INCONCLUSIVE),
        ([U, S, S], 3, 0, 1, HEALTHY),
        ([U, F], 3, 0, 0, INCONCLUSIVE),  # the first decision stands, as in Argo
        ([F, U], 3, 0, 0, BROKEN),
        ([S], 1, 0, 0, HEALTHY),
    ],
)
def test_assess_follows_argo(phases, count, failure_limit, inconclusive_limit, status):
    spec = SloSpec(
        "bert",
        spec_of().rules,
        count=count,
        failure_limit=failure_limit,
        inconclusive_limit=inconclusive_limit,
    )
    assert assess(spec, [_m(p, 600 * (i + 1)) for i, p in enumerate(phases)]).status == status


def test_a_broken_assessment_says_metric_value_threshold_window_and_samples():
    spec = SloSpec("bert", spec_of().rules, count=3)
    result = assess(spec, [_m(S, 600), _m(F, 1200)])
    assert result.status == BROKEN and result.failed == 1
    assert result.why == (
        "1 failed measurement, more than failure_limit 0: error_rate 0.5 > 0.01 over the 10m "
        "window ending 1970-01-01T00:20:00Z (80 samples)"
    )
    assert result.decisive == result.measurements[-1]


def test_still_measuring_says_how_far():
    spec = SloSpec("bert", spec_of().rules, count=3, interval=60)
    assert assess(spec, [_m(S)]).why == (
        "too little data yet: 1 of 3 measurements fit since this rollout step began (one every 1m)"
    )


@given(
    hs.lists(hs.sampled_from([S, F, U]), max_size=12),
    hs.integers(1, 6),
    hs.integers(0, 4),
    hs.integers(0, 4),
)
def test_assess_is_argos_fold(phases, count, failure_limit, inconclusive_limit):
    """Against a direct transcription of Argo's rule, applied after each measurement."""
    spec = SloSpec(
        "bert",
        spec_of().rules,
        count=count,
        failure_limit=failure_limit,
        inconclusive_limit=inconclusive_limit,
    )
    expected, failed, inconclusive = INCONCLUSIVE, 0, 0
    for taken, phase in enumerate(phases, start=1):
        failed += phase == F
        inconclusive += phase == U
        if failed > failure_limit:
            expected = BROKEN
            break
        if inconclusive > inconclusive_limit:
            expected = INCONCLUSIVE
            break
        if taken >= count:
            expected = HEALTHY
            break
    result = assess(spec, [_m(p, 600 * (i + 1)) for i, p in enumerate(phases)])
    assert result.status == expected
    # healthy needs `count` measurements; broken needs more failures than the limit
    if result.status == HEALTHY:
        assert len(result.measurements) == count
    if result.status == BROKEN:
        assert result.failed == failure_limit + 1 and result.reasons()
    # a prefix of the measurements never reaches a different decision once one was made
    if result.status != INCONCLUSIVE or len(result.measurements) < len(phases):
        longer = assess(spec, [_m(p, 600 * (i + 1)) for i, p in enumerate(phases + [F, F])])
        assert longer.status == result.status


@given(
    hs.floats(0, 1e6), hs.floats(0, 1e5), hs.integers(1, 8), hs.floats(1, 3600), hs.floats(1, 3600)
)
def test_windows_stay_inside_the_step(since, elapsed, count, window, interval):
    spec = SloSpec("bert", spec_of().rules, window=window, interval=interval, count=count)
    found = windows(spec, since, since + elapsed)
    assert len(found) <= count
    assert all(since <= w.start < w.end <= since + elapsed for w in found)
    assert all(w.seconds <= window + 1e-6 for w in found)
    assert [w.end for w in found] == sorted(w.end for w in found)


# --- arms and the next step -----------------------------------------------------------------------

V1, V2, V3 = "1" * 64, "2" * 64, "3" * 64


def record(*arms: Arm) -> Record:
    return Record("bert", "prod", arms, None, "Ada", "2026-03-03T12:00:00Z", "x", "deploy")


def test_the_candidate_arm_of_each_state():
    canary = record(Arm(STABLE, V1, 90), Arm(CANARY, V2, 10))
    arms = guarded_arms(canary)
    assert arms is not None and (arms.candidate.role, arms.baseline.role) == (CANARY, STABLE)
    green = guarded_arms(record(Arm(STABLE, V1, 100), Arm(GREEN, V2, 0)))
    assert green is not None and green.candidate.role == GREEN
    shadow = guarded_arms(record(Arm(STABLE, V1, 100), Arm(SHADOW, V2, 0)))
    assert shadow is not None and shadow.candidate.role == SHADOW
    assert guarded_arms(record(Arm(STABLE, V1, 100))) is None
    ab = record(Arm(AB, V1, 50, "a"), Arm(AB, V2, 50, "b"))
    pair = guarded_arms(ab)
    assert pair is not None and (pair.candidate.label, pair.baseline.label) == ("b", "a")
    three = record(Arm(AB, V1, 40, "a"), Arm(AB, V2, 30, "b"), Arm(AB, V3, 30, "c"))
    with pytest.raises(UsageError, match="say which arm with --arm"):
        guarded_arms(three)
    chosen = guarded_arms(three, "c")
    assert chosen is not None and chosen.candidate.label == "c"
    with pytest.raises(UsageError, match="'a' is not a candidate arm"):
        guarded_arms(three, "a")
    with pytest.raises(UsageError, match="its candidate arm is 'canary', not 'green'"):
        guarded_arms(canary, "green")


def test_advance_takes_the_next_step_then_promotes():
    spec = spec_of()  # steps 10, 25, 50
    for weight, action, to in [
        (10, "step", 25),
        (25, "step", 50),
        (50, "promote", None),
        (5, "step", 10),
        (30, "step", 50),
    ]:
        rec = record(Arm(STABLE, V1, 100 - weight), Arm(CANARY, V2, weight))
        arms = guarded_arms(rec)
        assert arms is not None
        move = next_move(spec, rec, arms)
        assert (move.action, move.weight) == (action, to)
    rec = record(Arm(STABLE, V1, 100), Arm(GREEN, V2, 0))
    arms = guarded_arms(rec)
    assert arms is not None and next_move(spec, rec, arms).action == "switch"
    rec = record(Arm(AB, V1, 50, "a"), Arm(AB, V2, 50, "b"))
    arms = guarded_arms(rec)
    assert arms is not None and next_move(spec, rec, arms).arm == "b"
    rec = record(Arm(STABLE, V1, 100), Arm(SHADOW, V2, 0))
    arms = guarded_arms(rec)
    assert arms is not None
    with pytest.raises(UsageError, match="a shadow serves no users"):
        next_move(spec, rec, arms)


# --- the published examples parse ----------------------------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_example_policy_and_the_documented_ones_parse():
    spec = spec_of((ROOT / "examples" / "mvc.yaml").read_text(encoding="utf-8"))
    assert spec.steps == (10, 25, 50) and len(spec.rules) == 3
    for doc in ("policy.md", "observability.md"):
        text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
        blocks = re.findall(r"```yaml\n(slo:\n.*?)```", text, re.S)
        assert blocks, doc
        for block in blocks:
            assert spec_of(block).rules


_SCALARS = hs.one_of(
    hs.none(),
    hs.booleans(),
    hs.integers(-5, 500),
    hs.floats(-1e3, 1e3, allow_nan=False),
    hs.sampled_from(
        [
            "10m",
            "5s",
            "error_rate <= 0.01",
            "p99",
            "store",
            "no worse than stable",
            "latency_p99_ms: <= 1",
            "{x}",
            "",
            "rules",
            "fleet",
        ]
    ),
)
_VALUES = hs.recursive(
    _SCALARS,
    lambda inner: (
        hs.lists(inner, max_size=4)
        | hs.dictionaries(
            hs.sampled_from(
                [
                    "rules",
                    "window",
                    "interval",
                    "count",
                    "failure_limit",
                    "steps",
                    "min_samples",
                    "source",
                    "metric",
                    "statistic",
                    "condition",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(_VALUES)
def test_any_slo_section_parses_or_is_a_policy_error(body):
    """Whatever the section holds, the parser answers with a spec or a file:line PolicyError."""
    import json as _json

    text = "slo:\n  bert: " + _json.dumps(body) + "\n"  # JSON is YAML
    try:
        parse_policy(text)
    except PolicyError as exc:
        assert exc.message.startswith("mvc.yaml")


def test_a_rule_may_put_a_colon_after_its_metric():
    from mvc.policy.conditions import parse_rule

    metric, condition = parse_rule("latency_p99_ms: no worse than stable + 10%")
    assert metric == "latency_p99_ms" and condition.relative
    assert condition.check(274, 250).ok and not condition.check(276, 250).ok
    # Prometheus-style names keep their colons
    assert parse_rule("job:latency:p99 <= 1")[0] == "job:latency:p99"
    assert parse_rule("job:latency:p99: <= 1")[0] == "job:latency:p99"
