"""The policy file's shared parts: the condition grammar and file:line errors."""

from __future__ import annotations

import pytest

from mvc.errors import PolicyError
from mvc.policy.conditions import ConditionSyntax, higher_is_better, parse_condition, parse_rule
from mvc.policy.file import parse_policy, read_policy
from mvc.policy.text import PolicyText, parse_duration


@pytest.mark.parametrize(
    ("text", "value", "stable", "ok", "bound"),
    [
        (">= 0.90", 0.91, None, True, 0.90),
        (">= 0.90", 0.41, None, False, 0.90),
        ("<= 250", 250, None, True, 250),
        ("< 250", 250, None, False, 250),
        ("<= stable + 10%", 274, 250, True, 275),
        ("<= stable + 10%", 276, 250, False, 275),
        (">= stable - 0.02", 0.80, 0.83, False, 0.81),
        ("<= stable", 10, 10, True, 10),
    ],
)
def test_conditions_compare_value_with_their_bound(text, value, stable, ok, bound):
    verdict = parse_condition(text).check(value, stable)
    assert verdict.ok is ok
    assert verdict.bound == pytest.approx(bound)


def test_no_worse_than_stable_takes_its_direction_from_the_metric():
    metric, latency = parse_rule("latency_p99_ms: no worse than stable + 10%".replace(":", ""))
    assert metric == "latency_p99_ms"
    assert latency.check(274, 250).ok and not latency.check(276, 250).ok
    _, accuracy = parse_rule("accuracy no worse than stable + 2%")
    assert accuracy.check(0.82, 0.83).ok and not accuracy.check(0.81, 0.83).ok
    assert higher_is_better("accuracy") and not higher_is_better("error_rate")


def test_a_refusal_prints_the_numbers():
    verdict = parse_condition("<= stable + 10%").check(312, 250)
    assert verdict.text == "312 > 275 (stable 250 + 10%)"


@pytest.mark.parametrize("text", ["", "about 3", ">= x", "=> 3", "no better than stable", "<= 1 2"])
def test_malformed_conditions_say_what_the_grammar_accepts(text):
    with pytest.raises(ConditionSyntax, match="'>= 0.90'"):
        parse_condition(text)


def test_nan_never_passes():
    assert not parse_condition("<= 1").check(float("nan")).ok


def test_unknown_top_level_key_names_file_and_line():
    with pytest.raises(PolicyError, match=r"^mvc.yaml:2: slos: unknown key 'slos'"):
        parse_policy("# policy\nslos: {}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1\n", r"^mvc.yaml:\d+: not valid YAML"),
        ("a: &x 1\nb: *x\n", "aliases"),
        ("- 1\n", r"^mvc.yaml: expected a mapping"),
    ],
)
def test_broken_yaml_is_a_policy_error(text, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(text)


def test_no_file_or_empty_file_is_the_empty_policy(tmp_path):
    assert read_policy(str(tmp_path)).sections == {}
    (tmp_path / "mvc.yaml").write_text("# nothing yet\n")
    assert read_policy(str(tmp_path)).sections == {}


def test_durations():
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1.5h") == 5400
    assert parse_duration("7d") == 7 * 86400
    with pytest.raises(PolicyError, match="not a duration"):
        parse_duration("ten minutes")


def test_where_falls_back_to_the_nearest_parent_line():
    ctx = PolicyText("mvc.yaml", {"slo": 3, "slo.bert": 4})
    assert ctx.where("slo.bert.window") == "mvc.yaml:4"
    assert ctx.where("gates") == "mvc.yaml"
