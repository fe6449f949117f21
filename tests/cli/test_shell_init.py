"""``eval "$(mvc shell-init SHELL)"`` in the real bash, zsh and fish, with ``mv`` already aliased.

Dotfiles often say ``alias mv='mv -i'``. The init script must survive it (bash and zsh
alias-expand ``mv() {``), forward mvc's subcommands to the real ``mvc`` subprocess, and keep the
alias's ``-i`` for every other ``mv``. .ci/run installs zsh and fish; under CI=true a missing
shell fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _shell(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{name} is not installed (.ci/run installs it)", pytrace=False)
    pytest.skip(f"{name} is not installed (CI installs it; see .ci/run)")


# Each script: alias mv with -i, evaluate the init script twice (a re-sourced rc file), then
#   mv status          -> mvc status (no file called "status" here)
#   echo n | mv a b    -> the coreutils mv, still -i: answers "no", b keeps its content
#   mv c d             -> a plain move (d does not exist, -i does not ask)
SCRIPTS = {
    "bash": """
        shopt -s expand_aliases
        alias mv='mv -i'
        eval "$(mvc shell-init bash)"
        eval "$(mvc shell-init bash)"
        mv status > status.out
        echo n | mv a b
        mv c d
        """,
    "zsh": """
        alias mv='nocorrect mv -i'
        eval "$(mvc shell-init zsh)"
        eval "$(mvc shell-init zsh)"
        mv status > status.out
        echo n | mv a b
        mv c d
        """,
    "fish": """
        alias mv='mv -i'
        mvc shell-init fish | source
        mvc shell-init fish | source
        mv status > status.out
        echo n | mv a b
        mv c d
        """,
}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_init_survives_an_mv_alias_and_keeps_its_flags(
    store, cli, make_model, shell: str
) -> None:
    binary = _shell(shell)
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "v1")
    root = Path(store.root)
    for name, text in (("a", "A\n"), ("b", "B\n"), ("c", "C\n")):
        (root / name).write_text(text)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "XDG_DATA_HOME": str(root.parent / "xdg-data"),  # fish keeps its history there
    }
    done = subprocess.run(
        [binary, "-c", textwrap.dedent(SCRIPTS[shell])],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "syntax error" not in done.stderr and "defining function" not in done.stderr
    assert (root / "status.out").read_text() == "bert (models/bert, on main): clean\n"
    assert "overwrite" in done.stderr  # the alias's -i asked ...
    assert (root / "b").read_text() == "B\n" and (root / "a").exists()  # ... and "n" kept b
    assert (root / "d").read_text() == "C\n" and not (root / "c").exists()


def test_shell_init_forwards_every_command_of_the_app(cli) -> None:
    """The function's list is the app's own: a command added to mvc is forwarded too."""
    from typer.main import get_command

    from mvc.cli.main import app

    group = get_command(app)
    names = set(group.list_commands(None)) - {"shell-init"}  # type: ignore[attr-defined]
    text = cli("shell-init", "bash").stdout
    words = next(line for line in text.splitlines() if "|commit|" in line).strip().rstrip(")")
    assert set(words.split("|")) == names
