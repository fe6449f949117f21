"""Bad config and YAML: hostile or mistaken files give a clean error, quickly, and run nothing.

Config files (store and user) are read with ``mvc.yamltext.load_yaml``: no tags, no aliases, no
duplicate keys, with ``file:line`` in every message. Not-YAML-we-accept is exit 1; unknown keys
and bad values are usage errors, exit 2. YAML inside a model (shown by ``diff``) may use aliases,
but its expanded size is bounded.
"""

from __future__ import annotations

import os
import pathlib
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvc.config import parse_config_text, render_config
from mvc.errors import InvalidInput, UsageError
from mvc.yamltext import YamlProblem, load_yaml

# ~400 bytes that expand to 9^9 (387 million) strings: "billion laughs". The anchors sit inside a
# known key's value, so every reader of that value (even an error message quoting it) expands it.
ALIAS_BOMB = "\n".join(
    [
        "user:",
        "  name:",
        '    - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"    - &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)),
        "",
    ]
)


def _store_config(versions) -> pathlib.Path:
    return pathlib.Path(versions.repo.config_path)


def _write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- alias bombs ----------------------------------------------------------------------------------


def test_the_alias_bomb_is_small() -> None:
    assert len(ALIAS_BOMB) < 400


@pytest.mark.parametrize("which", ["store", "user"])
def test_an_alias_bomb_in_config_is_refused_at_once(which, versions, mvc_proc, mvc_env) -> None:
    path = (
        _store_config(versions)
        if which == "store"
        else pathlib.Path(mvc_env["XDG_CONFIG_HOME"], "mvc", "config.yaml")
    )
    _write(path, ALIAS_BOMB)
    started = time.monotonic()
    error = mvc_proc.fails("models", code=1, cwd=versions.root, timeout=30)
    assert time.monotonic() - started < 10
    assert f"{path}:4:" in error and "aliases" in error  # the first alias


def test_config_refuses_every_alias_even_a_small_one() -> None:
    with pytest.raises(InvalidInput, match=r"config.yaml:3: YAML aliases \(\*n\)"):
        parse_config_text("user:\n  name: &n Ada\n  email: *n\n", "config.yaml")


def test_yaml_in_a_model_may_use_aliases_but_is_bounded() -> None:
    ok = load_yaml("base: &b {lr: 1}\nrun: *b\n")
    assert ok.value == {"base": {"lr": 1}, "run": {"lr": 1}}
    started = time.monotonic()
    with pytest.raises(YamlProblem, match="too large once its aliases are expanded"):
        load_yaml(ALIAS_BOMB)
    assert time.monotonic() - started < 2
    with pytest.raises(YamlProblem, match="refers to itself"):
        load_yaml("a: &a [1, *a]\n")


def test_diff_of_a_model_yaml_bomb_finishes(versions, cli, mvc_proc) -> None:
    folder = pathlib.Path(versions.root, "models/bert")
    (folder / "hparams.yaml").write_text(ALIAS_BOMB)
    cli("commit", "models/bert", "-m", "bomb")
    (folder / "hparams.yaml").write_text(ALIAS_BOMB.replace('"lol"', '"lul"', 1))
    cli("commit", "models/bert", "-m", "bomb 2")
    started = time.monotonic()
    done = mvc_proc("diff", "bert@main~1", "bert@main", cwd=versions.root, timeout=30)
    assert time.monotonic() - started < 10
    assert "hparams.yaml" in done.stdout + done.stderr


# --- code in YAML is never run --------------------------------------------------------------------

PAYLOADS = [
    "user:\n  name: !!python/object/apply:os.system ['touch {marker}']\n",
    "user: !!python/object/apply:subprocess.check_call [[touch, '{marker}']]\n",
    "user:\n  name: !!python/object/new:os.system ['touch {marker}']\n",
    "core: !!python/name:os.system\n",
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=["apply", "apply-seq", "new", "name"])
def test_python_tags_in_config_never_run(payload, versions, mvc_proc, tmp_path) -> None:
    marker = tmp_path / "PWNED"
    _write(_store_config(versions), payload.format(marker=marker))
    error = mvc_proc.fails("models", code=1, cwd=versions.root)
    assert "config.yaml:" in error and "tag" in error
    assert not marker.exists()


def test_python_tags_in_a_model_yaml_never_run(versions, cli, mvc_proc, tmp_path) -> None:
    marker = tmp_path / "PWNED"
    folder = pathlib.Path(versions.root, "models/bert")
    (folder / "config.yaml").write_text("a: 1\n")
    cli("commit", "models/bert", "-m", "plain")
    (folder / "config.yaml").write_text(PAYLOADS[0].format(marker=marker))
    cli("commit", "models/bert", "-m", "payload")
    for args in (("diff", "bert@main~1", "bert@main"), ("show", "bert"), ("diff", "bert")):
        mvc_proc(*args, cwd=versions.root)
    assert not marker.exists()


def test_other_tags_are_refused_too() -> None:
    with pytest.raises(YamlProblem, match="unsupported YAML tag tag:yaml.org,2002:set"):
        load_yaml("!!set {a, b}\n")
    with pytest.raises(YamlProblem, match="merge keys"):
        load_yaml("base: &b {x: 1}\nrun:\n  <<: *b\n")


# --- duplicate keys, non-finite numbers -----------------------------------------------------------


@pytest.mark.parametrize(
    "text, line",
    [
        ("core:\n  jobs: 2\n  jobs: 3\n", 3),
        ("core:\n  jobs: 2\ngc:\n  grace: 1h\ncore:\n  fsync: false\n", 5),
    ],
    ids=["key", "section"],
)
def test_duplicate_keys_are_refused(text, line, versions, mvc_proc) -> None:
    _write(_store_config(versions), text)
    error = mvc_proc.fails("models", code=1, cwd=versions.root)
    assert f"config.yaml:{line}: duplicate key" in error


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN", "1.0e+999"])
@pytest.mark.parametrize("key", ["gc.grace", "core.lock_timeout", "user.name", "core.jobs"])
def test_non_finite_numbers_are_refused(key, value) -> None:
    section, name = key.split(".")
    text = f"{section}:\n  {name}: {value}\n"
    with pytest.raises(UsageError, match=rf"^config.yaml:2: bad value .* for {key}") as caught:
        parse_config_text(text, "config.yaml")
    assert caught.value.exit_code == 2


def test_an_enormous_duration_written_as_text_is_refused(versions, cli) -> None:
    refused = cli("config", "set", "gc.grace", "9" * 400 + "s", expect=2)
    assert "finite" in refused.stderr


# --- schema errors: file:line, exit 2 -------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line, match",
    [
        ("user:\n  name: Ada\ncore:\n  colour: blue\n", 4, "unknown config key 'core.colour'"),
        ("core:\n  jobs: lots\n", 2, "bad value 'lots' for core.jobs"),
        ("core:\n  fsync: [1, 2]\n", 2, "bad value .* for core.fsync"),
        ("gc:\n  grace: soon\n", 2, "bad value 'soon' for gc.grace"),
        ("colour: blue\n", 1, "unknown config key 'colour'"),
    ],
    ids=["unknown", "int", "bool", "duration", "top-level"],
)
def test_schema_errors_name_file_and_line_and_exit_2(text, line, match, versions, mvc_proc) -> None:
    _write(_store_config(versions), text)
    error = mvc_proc.fails("models", code=2, cwd=versions.root)
    assert f"{versions.repo.config_path}:{line}: " in error
    assert re.search(match, error), error


def test_syntax_errors_name_the_line(versions, mvc_proc) -> None:
    _write(_store_config(versions), "user:\n  name: Ada\ncore: [unclosed\n")
    error = mvc_proc.fails("models", code=1, cwd=versions.root)
    assert "config.yaml:" in error and "not valid YAML" in error


def test_what_mvc_writes_it_reads_back() -> None:
    flat = {
        "user.name": "Ada: the *first* & only",
        "user.email": "a@example.com",
        "gc.grace": 3600.0,
        "core.jobs": 4,
        "core.fsync": False,
        "remote.origin.url": "s3://bucket/x",
        "remote.origin.options.anon": "true",
    }
    assert parse_config_text(render_config(flat), "config.yaml") == flat


def test_config_set_still_works_after_a_fix(versions, cli) -> None:
    path = _store_config(versions)
    good = path.read_text()
    _write(path, ALIAS_BOMB)
    cli("models", expect=1)
    _write(path, good)
    cli("config", "set", "gc.grace", "1h")
    assert cli("config", "get", "gc.grace").stdout.strip() == "3600.0"
    assert os.path.exists(path)


# --- any text in, only our own errors out ---------------------------------------------------------

_YAML_BITS = st.sampled_from(
    [
        "a",
        ":",
        " ",
        "\n",
        "  ",
        "- ",
        "&x ",
        "*x",
        "!!python/name:os.system",
        "!!set",
        "[",
        "]",
        "{",
        "}",
        ",",
        "'",
        '"',
        "<<",
        "? ",
        ".nan",
        "1e9",
        "#",
        "|",
        ">",
        "\t",
        "%YAML 1.1",
        "2001-13-45",
        "0x",
        "0b2",
        "1_0",
        "---",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_YAML_BITS | st.text(max_size=3), max_size=30).map("".join))
def test_any_text_gives_a_value_or_our_own_error(text) -> None:
    try:
        load_yaml(text)
    except YamlProblem:
        pass
    try:
        parse_config_text(text, "config.yaml")
    except (InvalidInput, UsageError) as exc:
        assert exc.message.startswith("config.yaml")


@pytest.mark.parametrize(
    "text",
    ["user:\n  name: !!timestamp x\n", "user: " + "[" * 5000 + "\n", "- " * 3000 + "x\n"],
    ids=["malformed-timestamp", "deep-flow", "deep-block"],
)
def test_malformed_or_deep_yaml_is_our_own_error(text, versions, mvc_proc) -> None:
    """PyYAML raises AttributeError or RecursionError on these: mvc names the file instead."""
    with pytest.raises(YamlProblem):
        load_yaml(text)
    _store_config(versions).write_text(text, encoding="utf-8")
    failed = mvc_proc.fails("log", "bert", cwd=versions.root, code=1)
    assert "config.yaml" in failed and "internal error" not in failed
