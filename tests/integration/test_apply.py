"""``mvc apply``: the channels: section of mvc.yaml as desired state, applied idempotently."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvc.errors import EXIT_ERROR, EXIT_USAGE
from mvc.policy.file import parse_policy


@pytest.fixture
def releases(store, cli, make_model) -> dict[str, str]:
    ids = {}
    for seed, tag in enumerate(("v1.4.0", "v1.5.0", "v1.6.0")):
        make_model("models/bert", seed=seed)
        ids[tag] = cli("commit", "models/bert", "-m", tag).stdout.strip()
        cli("tag", "bert", tag)
    return ids


def declare(store, text: str) -> None:
    Path(store.root, "mvc.yaml").write_text(text)


def history(cli, channel: str) -> list[dict]:
    return cli("channel", "history", "bert", channel, "--json").json()


def test_apply_creates_then_changes_nothing(store, cli, releases):
    declare(store, "channels:\n  bert:\n    prod: v1.4.0\n")
    plan = cli("apply", "--plan", "--json").json()
    assert [(s["action"], s["version"]) for s in plan["steps"]] == [("set", releases["v1.4.0"])]
    assert cli("channel", "list", "bert", "--json").json() == []  # --plan moved nothing
    applied = cli("apply", "--json").json()
    assert applied["applied"] and applied["steps"][0]["record"]
    assert (
        cli("channel", "show", "bert", "prod", "--json").json()["arms"][0]["version"]
        == releases["v1.4.0"]
    )
    again = cli("apply", "--json").json()
    assert again["steps"] == [] and again["unchanged"] == ["bert/prod"]
    assert len(history(cli, "prod")) == 1


def test_a_declared_canary_is_started_then_only_reweighted(store, cli, releases):
    declare(store, "channels:\n  bert:\n    prod: v1.4.0\n")
    cli("apply")
    declare(
        store,
        "channels:\n  bert:\n    prod:\n      version: v1.4.0\n      canary: {version: v1.5.0, weight: 10}\n",
    )
    steps = cli("apply", "--json").json()["steps"]
    assert [(s["action"], s["weight"]) for s in steps] == [("canary", 10)]
    record = cli("channel", "show", "bert", "prod", "--json").json()
    assert {(a["role"], a["weight"]) for a in record["arms"]} == {("stable", 90), ("canary", 10)}
    declare(
        store,
        "channels:\n  bert:\n    prod:\n      version: v1.4.0\n      canary: {version: v1.5.0, weight: 25}\n",
    )
    steps = cli("apply", "--json").json()["steps"]
    assert [(s["action"], s["weight"]) for s in steps] == [("weight", 25)]
    assert cli("apply", "--json").json()["steps"] == []
    assert "mvc apply" in history(cli, "prod")[0]["why"]


def test_a_range_resolves_when_planning_and_the_move_names_the_id(store, cli, releases):
    declare(
        store,
        "channels:\n  bert:\n    staging: ^1.4\n    mirror:\n      version: v1.4.0\n      shadow: ^1.5\n",
    )
    cli("apply")
    assert (
        cli("channel", "show", "bert", "staging", "--json").json()["arms"][0]["version"]
        == releases["v1.6.0"]
    )
    mirror = cli("channel", "show", "bert", "mirror", "--json").json()
    assert {(a["role"], a["version"]) for a in mirror["arms"]} == {
        ("stable", releases["v1.4.0"]),
        ("shadow", releases["v1.6.0"]),
    }


def test_channel_show_yaml_is_the_declared_form(store, cli, releases):
    declare(
        store,
        "channels:\n  bert:\n    prod:\n      version: v1.4.0\n      canary: {version: v1.5.0, weight: 10}\n    dev: v1.6.0\n",
    )
    cli("apply")
    text = cli("channel", "show", "bert", "prod", "--format", "yaml").stdout
    assert 'version: "v1.4.0"' in text and 'canary: {version: "v1.5.0", weight: 10}' in text
    parse_policy(text)  # valid as a channels: section
    declare(store, text)
    assert cli("apply", "--plan", "--json").json()["steps"] == []


def test_a_bad_declaration_moves_no_channel(store, cli, releases):
    declare(store, "channels:\n  bert:\n    prod: v1.4.0\n    dev: v9.9.9\n")
    refused = cli("apply", expect=EXIT_ERROR)
    assert "v9.9.9" in refused.stderr
    assert cli("channel", "list", "bert", "--json").json() == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "channels:\n  bert:\n    prod:\n      canary: {version: v1, weight: 10}\n",
            "mvc.yaml:3: channels.bert.prod: needs version",
        ),
        (
            "channels:\n  bert:\n    prod:\n      version: v1\n      canary: {version: v2, weight: 100}\n",
            "must be 1-99",
        ),
        (
            "channels:\n  bert:\n    prod:\n      version: v1\n      canry: v2\n",
            "unknown key 'canry'",
        ),
    ],
)
def test_malformed_channels_sections_name_their_line(store, cli, releases, text, message):
    declare(store, text)
    assert message in cli("apply", expect=EXIT_USAGE).stderr
