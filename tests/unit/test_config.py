"""Config files written by hand: YAML booleans in open sections, durations, and layering."""

from __future__ import annotations

from mvc.config import parse_config_text


def test_yaml_booleans_in_remote_options_are_read_as_text() -> None:
    text = "remote:\n  origin:\n    url: s3://bucket/registry\n    options:\n      anon: false\n"
    values = parse_config_text(text, "config.yaml")
    assert values["remote.origin.options.anon"] == "false"
    assert values["remote.origin.url"] == "s3://bucket/registry"


def test_durations_and_booleans_are_validated() -> None:
    values = parse_config_text("gc:\n  grace: 30m\ncore:\n  fsync: no\n", "config.yaml")
    assert values == {"gc.grace": 1800.0, "core.fsync": False}
