"""What mvc prints and stores about remotes is safe: no credentials, no terminal escapes, valid JSON.

- Storage options: a mapping-typed option given as text is a usage error (exit 2) naming the
  option and the type it needs; credentials in option URLs are refused before anything is
  stored, and redacted in everything displayed.
- Untrusted text from a remote (author, message, params) cannot drive the terminal: control
  characters are shown escaped in human output; ``--json`` stays exact, valid JSON.
- Non-finite numbers never reach ``--json``: metadata decoding refuses NaN and infinities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mvc.repo import Repo

SECRET = "s3cr3t"


# --- storage options ------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["client_kwargs", "config_kwargs", "s3_additional_kwargs"])
def test_a_mapping_option_given_as_text_is_a_usage_error(store, cli, option) -> None:
    refused = cli("remote", "add", "origin", "s3://bucket/store", "-o", f"{option}=x", expect=2)
    assert option in refused.stderr and "mapping" in refused.stderr
    assert "internal error" not in refused.stderr
    assert "origin" not in json.dumps(store.store_config())


def test_set_option_checks_mapping_options_too(store, cli, tmp_path) -> None:
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    refused = cli("remote", "set-option", "origin", "client_kwargs", "x", expect=2)
    assert "client_kwargs" in refused.stderr


@pytest.mark.parametrize("number", ["connect_timeout", "read_timeout"])
def test_timeouts_must_be_positive_numbers(store, cli, number) -> None:
    refused = cli("remote", "add", "o", "s3://bucket/store", "-o", f"{number}=soon", expect=2)
    assert number in refused.stderr and "seconds" in refused.stderr


@pytest.mark.parametrize(
    "value",
    [
        f"http://AKIAEXAMPLE:{SECRET}@127.0.0.1:9000",
        f"https://user:{SECRET}@minio.internal",
    ],
)
def test_credentials_inside_an_option_url_are_refused(store, cli, value) -> None:
    refused = cli(
        "remote", "add", "origin", "s3://bucket/store", "-o", f"endpoint_url={value}", expect=2
    )
    assert SECRET not in refused.stderr + refused.stdout
    assert "endpoint_url" in refused.stderr and "AWS_" in refused.stderr  # how to pass them
    assert SECRET not in Path(store.config_path).read_text()


def test_credentials_already_in_a_config_are_redacted_everywhere(store, cli) -> None:
    """A hand-edited config that holds a password in an option URL never shows it."""
    with store.editing_config() as values:
        values["remote.origin.url"] = "s3://bucket/store"
        values["remote.origin.options.endpoint_url"] = f"http://AKIA:{SECRET}@127.0.0.1:1"
    for args in (
        ("remote", "-v"),
        ("remote", "list", "--json"),
        ("config", "list"),
        ("config", "list", "--json"),
        ("config", "get", "remote.origin.options.endpoint_url"),
    ):
        shown = cli(*args)
        assert SECRET not in shown.stdout + shown.stderr, args
        assert "127.0.0.1" in shown.stdout, args


# --- terminal escapes and non-finite numbers from a remote ----------------------------------------

ESC = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"  # retitle the terminal, clear it, turn red
BIDI = "\u202etxt.exe"  # right-to-left override: shows as exe.txt
C1 = "\x9b6n"  # an 8-bit CSI: asks the terminal to answer on stdin
UNSAFE = ("\x1b", "\x07", "\u202e", "\x9b")


def _hostile_remote(store: Repo, cli: Any, make_model: Any, tmp_path: Any) -> tuple[str, str]:
    """A folder remote whose branch ``bert@evil`` is a version with hostile text in author,
    message and params (built by mvc's own commit: the text is valid, just dangerous)."""
    make_model("models/bert", seed=0)
    with store.editing_config() as values:
        values["user.name"] = f"Mallory {ESC}"
    version = cli(
        "commit",
        "models/bert",
        "-m",
        f"fix {ESC}{BIDI}{C1}\nsecond line {ESC}",
        "--param",
        f"lr{ESC}=1{BIDI}",
        "--metric",
        "accuracy=0.9",
    ).stdout.strip()
    root = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{root}")
    cli("push", "origin", "bert")
    return str(root), version


def _clone(cli: Any, root: str, tmp_path: Any) -> Any:
    target = tmp_path / "clone"
    cli("clone", f"file://{root}", target)
    return target


def test_terminal_escapes_from_a_remote_are_shown_escaped(store, cli, make_model, tmp_path) -> None:
    root, version = _hostile_remote(store, cli, make_model, tmp_path)
    clone = _clone(cli, root, tmp_path)
    for args in (
        ("log", "bert"),
        ("log", "bert", "--graph"),
        ("show", "bert"),
        ("lineage", "bert"),
        ("lineage", "bert", "--format", "dot"),
        ("find", "--model", "bert"),
        ("find", "--model", "bert", "--param", f"lr{ESC}=1{BIDI}"),
    ):
        shown = cli("-C", clone, *args)
        text = shown.stdout + shown.stderr
        for char in UNSAFE:
            assert char not in text, (args, char)
        assert "\\x1b" in text or "\\u202e" in text or args[0] == "lineage", args
    shown = cli("-C", clone, "show", "bert")
    assert "Mallory \\x1b]0;pwned\\x07" in shown.stdout
    assert "\\u202etxt.exe" in shown.stdout


def test_json_keeps_hostile_text_exact_and_valid(store, cli, make_model, tmp_path) -> None:
    root, version = _hostile_remote(store, cli, make_model, tmp_path)
    clone = _clone(cli, root, tmp_path)
    for args in (("log", "bert"), ("show", "bert"), ("find", "--model", "bert")):
        shown = cli("-C", clone, *args, "--json")
        for char in UNSAFE:
            assert char not in shown.stdout, (args, char)  # escaped as \\uXXXX in the JSON text
        value = "".join(_strings(shown.json()))
        assert ESC in value and BIDI in value, args  # and exactly the remote's text once parsed


def test_nan_in_remote_metadata_never_reaches_json(store, cli, make_model, tmp_path) -> None:
    """A remote version whose metrics hold NaN and Infinity (honestly hashed): refused as damage
    when it is received, so no command can print it as (invalid) JSON."""
    from _remote_helpers import put_meta, raw_entry, raw_put, ref_key

    from mvc.refnames import branch

    root, version = _hostile_remote(store, cli, make_model, tmp_path)
    value = {
        **store.objects.get_meta(version),
        "metrics": {"acc": float("nan"), "loss": float("inf")},
    }
    evil = put_meta(root, value, allow_nan=True)
    raw_put(root, ref_key(branch("bert", "nan"), 1), raw_entry(evil))
    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{root}")
    failed = cli("-C", fresh, "pull", "origin", "bert@nan", "--json", expect=12)
    assert evil[:12] in failed.stderr and "NaN" in failed.stderr
    assert not Repo(str(fresh)).objects.has(evil)


def test_json_output_is_always_valid_json(capsys) -> None:
    """The output layer's safety net: a non-finite number mvc computed itself prints as null,
    C1 and bidi characters as escapes, and a password in a URL as ***."""
    from mvc.cli.output import Output

    Output(as_json=True).json(
        {
            "max_diff": float("nan"),
            "ratio": [float("inf")],
            "name": f"a{BIDI}{C1}",
            "url": f"http://AKIA:{SECRET}@host:9000/x",
        }
    )
    text = capsys.readouterr().out
    value = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in --json"))
    assert value == {
        "max_diff": None,
        "ratio": [None],
        "name": f"a{BIDI}{C1}",
        "url": "http://AKIA:***@host:9000/x",
    }
    assert not any(char in text for char in UNSAFE)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_messages_for_people_are_shown_not_interpreted(capsys) -> None:
    """Warnings, errors and info lines carry remote text too (ref names, reasons): control
    characters are shown escaped and rich markup is printed as it is."""
    from mvc.cli.output import Output

    out = Output()
    out.info(f"info {ESC}[link=http://evil]x[/link]")
    out.warn(f"warn {BIDI}[bold]b[/bold]")
    out.error(f"error {C1}", hint=f"hint {ESC}")
    err = capsys.readouterr().err
    assert not any(char in err for char in UNSAFE)
    assert "\\x1b]0;pwned\\x07" in err and "\\u202etxt.exe" in err and "\\x9b6n" in err
    assert "[link=http://evil]x[/link]" in err and "[bold]b[/bold]" in err


def test_an_option_password_from_the_users_own_config_is_used_not_refused(mvc_env) -> None:
    """Only the store's config must never hold credentials; the user's may (its owner's
    choice). Such an option opens the remote, and is still never shown."""
    from mvc.storage.remote import open_storage

    storage = open_storage("s3://bucket/store", {"endpoint_url": f"http://u:{SECRET}@127.0.0.1:1"})
    assert SECRET not in storage.url and SECRET not in repr(storage)


def test_summary_lines_keep_their_bold_lead_and_escape_the_rest(store, cli, make_model) -> None:
    """mvc's own emphasis is markup; the names and messages inside stay literal text."""
    make_model("models/bert")
    committed = cli("commit", "models/bert", "-m", "v1")
    assert "[bold]" not in committed.stderr and "bert@main" in committed.stderr
    moved = cli("channel", "set", "bert", "prod", "main", "-m", "ship [red]it[/red]")
    assert "[bold]" not in moved.stderr and "bert prod:" in moved.stderr


def test_the_lead_is_made_safe_too(capsys) -> None:
    from mvc.cli.output import Output

    Output().info("rest [dim]x[/dim]", lead=f"lead {ESC}[b]")
    err = capsys.readouterr().err
    assert not any(char in err for char in UNSAFE)
    assert err.startswith("lead \\x1b]0;pwned") and err.endswith("[b] rest [dim]x[/dim]\n")


PEOPLE_LINES = [
    "plain words",
    f"a\ttab, {ESC} and {BIDI}rtl, {C1}",
    "[bold]markup[/bold] \\[escaped] and a trailing space ",
    "two\nlines\twith tabs",
    "unicode: ümlaut 模型 🚀",
]


@pytest.mark.parametrize("text", PEOPLE_LINES)
def test_lines_for_people_into_a_file_are_what_rich_writes_there(capsys, monkeypatch, text) -> None:
    """Into a pipe or a file, info, warnings and errors are written without rich (importing it
    is a tenth of a no-op commit's start-up): the same characters rich writes there."""
    from mvc.cli import output

    def each_kind() -> str:
        out = output.Output()
        out.info(text)
        out.info(text, lead=f"lead {text}")
        out.warn(text)
        out.error(text, hint=text)
        out.error(text)
        return str(capsys.readouterr().err)

    plain = each_kind()
    monkeypatch.setattr(output, "_plain_stderr", lambda: False)
    assert plain == each_kind()


def test_a_line_for_people_into_a_pipe_does_not_import_rich() -> None:
    import subprocess
    import sys

    code = "import sys; from mvc.cli.output import Output; Output().info('x'); print('rich' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (shown.stdout, shown.stderr) == ("False\n", "x\n")
