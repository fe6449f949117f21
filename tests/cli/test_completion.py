"""Shell completion (``mvc completion SHELL``) in the real bash, zsh and fish, against a store:
commands, options, model names, branches, tags and channels, fast and without heavy imports."""

from __future__ import annotations

import json
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


@pytest.fixture
def named(st, cli, monkeypatch):
    """The deployment store with a branch exp and a channel prod on bert."""
    from mvc.ops.deploy import set_channel
    from mvc.ops.names import create_branch

    monkeypatch.chdir(st.root)
    create_branch(st.repo, "bert", "exp", "v1.4.0")
    set_channel(st.repo, "bert", "prod", "v1.4.0")
    return st


def _env(root: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "XDG_DATA_HOME": str(Path(root).parent / "xdg-data"),
        "HOME": str(Path(root).parent),
    }


# (command line typed so far, candidates that must be offered, candidates that must not)
CASES = [
    ("mvc sta", {"status"}, {"show"}),
    ("mvc show be", {"bert"}, {"sql-lora"}),
    ("mvc show bert@", {"bert@main", "bert@exp", "bert@v1.4.0", "bert@prod"}, set()),
    ("mvc log bert@v1.", {"bert@v1.4.0", "bert@v1.5.0", "bert@v1.6.0"}, {"bert@main"}),
    ("mvc deploy bert p", {"prod"}, {"main"}),
    ("mvc commit --me", {"--message", "--metric", "--metrics"}, {"--model"}),
    ("mvc branch bert -d ", {"main", "exp"}, {"v1.4.0"}),
    ("mvc channel sh", {"show"}, {"set"}),
]


def _bash(line: str, root: str) -> set[str]:
    script = textwrap.dedent(
        """
        eval "$(mvc completion bash)"
        COMP_LINE="$LINE"; COMP_POINT=${#COMP_LINE}
        read -r -a COMP_WORDS <<< "$COMP_LINE"
        [[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
        # bash splits words at @ (COMP_WORDBREAKS): the word being completed is after it
        cur="${COMP_WORDS[COMP_CWORD]}"; [[ "$cur" == *@* ]] && COMP_WORDS[COMP_CWORD]="${cur##*@}"
        _mvc_complete
        printf '%s\\n' "${COMPREPLY[@]}"
        """
    )
    done = subprocess.run(
        [_shell("bash"), "-c", script],
        cwd=root,
        env={**_env(root), "LINE": line},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    word = line.split(" ")[-1]
    prefix = word[: word.rindex("@") + 1] if "@" in word else ""
    return {prefix + c for c in done.stdout.splitlines() if c}


def _zsh(line: str, root: str) -> set[str]:
    # compadd and compdef are zsh's completion builtins; outside an interactive completion they
    # are stood in for by functions that print what the completion function offers.
    script = textwrap.dedent(
        """
        compdef() { :; }
        compadd() { while [[ "$1" != "--" ]]; do shift; done; shift; print -l -- "$@"; }
        _files() { :; }
        eval "$(mvc completion zsh)"
        words=(${(z)LINE}); [[ "$LINE" == *" " ]] && words+=("")
        CURRENT=${#words}
        _mvc
        """
    )
    done = subprocess.run(
        [_shell("zsh"), "-f", "-c", script],
        cwd=root,
        env={**_env(root), "LINE": line},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return {c for c in done.stdout.splitlines() if c}


def _fish(line: str, root: str) -> set[str]:
    script = 'mvc completion fish | source; complete -C "$LINE"'
    done = subprocess.run(
        [_shell("fish"), "--no-config", "-c", script],
        cwd=root,
        env={**_env(root), "LINE": line},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return {c.split("\t")[0] for c in done.stdout.splitlines() if c}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_in_the_real_shell(named, shell: str) -> None:
    ask = {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell]
    for line, wanted, unwanted in CASES:
        offered = ask(line, named.root)
        assert wanted <= offered, (shell, line, offered)
        assert not (unwanted & offered), (shell, line, offered)


PROBE = """
import json, sys, time
start = time.process_time()
sys.argv = ["mvc", "__complete", "show", "bert@"]
from mvc.cli.main import dispatch
dispatch()
heavy = sorted(m for m in ("numpy", "fsspec", "safetensors", "rich") if m in sys.modules)
print(json.dumps({"cpu": time.process_time() - start, "heavy": heavy}), file=sys.stderr)
"""


def test_completion_is_fast_and_imports_nothing_heavy(named) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=named.root,
        env=_env(named.root),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "bert@prod" in done.stdout.splitlines()
    report = json.loads(done.stderr.splitlines()[-1])
    assert report["heavy"] == []
    assert report["cpu"] < 1.0  # measured ~0.1 s; generous for a loaded CI machine
