"""Conventions every command keeps, checked by walking the real Typer app (so a command another
branch adds is checked too): one meaning per short option, ``--force`` is ``-f`` everywhere,
help shows metavars, not Python types; usage errors are one ``error:``/``hint:`` pair."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.main import get_command

from mvc.cli.common import settle_metavars
from mvc.cli.main import app
from mvc.errors import EXIT_USAGE


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


ROOT = get_command(app)
settle_metavars(ROOT)
COMMANDS = list(_commands(ROOT))


def test_each_short_option_has_one_meaning_across_commands() -> None:
    meanings: dict[str, dict[str, list[str]]] = {}
    for path, command in COMMANDS:
        for param in command.params:
            shorts = [o for o in param.opts if not o.startswith("--")]
            longs = [o for o in param.opts if o.startswith("--")] or ["(none)"]
            for short in shorts:
                meanings.setdefault(short, {}).setdefault(longs[0], []).append(
                    " ".join(("mvc", *path))
                )
    clashes = {s: m for s, m in meanings.items() if len(m) > 1}
    assert clashes == {}, f"short options with more than one meaning: {clashes}"


def test_force_is_dash_f_everywhere() -> None:
    without = [
        " ".join(("mvc", *path))
        for path, command in COMMANDS
        for param in command.params
        if "--force" in param.opts and "-f" not in param.opts
    ]
    assert without == []


def test_help_shows_metavars_not_python_types(cli) -> None:
    for path, command in COMMANDS:
        if getattr(command, "hidden", False):
            continue
        text = cli(*path, "--help", env={"COLUMNS": "200"}).stdout
        for python_type in ("<bool>", "list[", "<float>", "<int>", "<str>"):
            assert python_type not in text, f"mvc {' '.join(path)} --help shows {python_type}"
    assert "Usage: mvc show [OPTIONS] {SPEC}" in cli("show", "--help").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("commit", "--bogus"), "error: No such option: --bogus"),
        (("tag",), "error: Missing argument 'MODEL'."),
        (("stauts",), "error: No such command 'stauts'. Did you mean 'status'?"),
        (("log", "-n", "many"), "error: Invalid value for '-n' / '--limit'"),
        (("commit", "models/bert", "-m"), "error: Option '-m' requires an argument."),
    ],
)
def test_usage_errors_are_one_error_and_one_hint_line(run_mvc, args, message) -> None:
    done = run_mvc(*args)
    assert done.returncode == EXIT_USAGE and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(message), done.stderr
    assert lines[1].startswith("hint: see `mvc") and lines[1].endswith(" --help`")
    assert not any(box in done.stderr for box in "╭╮│╰")


def test_the_cli_uses_only_typers_public_api() -> None:
    """Typer is pinned below its next major (pyproject.toml) and used through its public API:
    ``typer.Typer(cls=...)``, ``typer.main.get_command`` and the click objects it returns. Its
    app's bookkeeping (``registered_commands``…) and copies of an app are internals. The one
    copy allowed is of a click argument's type (``common._hide_type_name``: a public click
    object, given a metavar of its own)."""
    import pathlib
    import re

    internals = (
        "registered_commands",
        "registered_groups",
        "registered_callback",
        r"copy\.copy\((?!argument\.type\))",
        r"typer\._",
        r"typer\.models",
        r"typer\.rich_utils",
    )
    cli_dir = pathlib.Path(__file__).resolve().parents[2] / "mvc" / "cli"
    found = [
        f"{path.name}:{number}: {name}"
        for path in sorted(cli_dir.glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for name in internals
        if re.search(name, line)
    ]
    assert found == []
