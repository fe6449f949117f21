"""Every example in docs/ and the README is either run or explicitly marked as not runnable.

The convention (docs/README is the reader's view; this is the checker): the line right before
each fenced block is an HTML comment, invisible when the Markdown renders:

  <!-- example: run STORE -->        the block runs against a store this test builds (STORES)
  <!-- example: not run: REASON -->  a grammar, a signature, an output shape, a cloud URL…

A block without one fails this test, naming its file and line. Runnable blocks:

- ``console``: each ``$ `` line is a shell command (run with bash in the store's root, the
  installed ``mvc`` first on PATH); the lines after it are its output as shown. A command with
  a ``# exit N`` comment must exit N; one whose shown output has an ``error:`` line must fail;
  any other must succeed. Output is not compared (ids and times differ), only exit statuses.
- ``bash``/``sh``: every line that is not blank or a comment is a command that must succeed.
- ``python``: the block runs as a script in the store's root.

The runnable blocks of one file share one store, in order, so a file can tell one session
over several blocks (docs/deployment.md does). docs/cli.md is generated from the commands' help
(tests/cli/test_docs.py); its examples are the help texts', not checked here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"])
GENERATED = {ROOT / "docs" / "cli.md"}
MARKER = re.compile(r"^<!-- example: (run (?P<store>[\w-]+)|not run: (?P<reason>.+?)) -->$")
FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")
RUNNABLE = {"console", "bash", "sh", "python"}


@dataclass(frozen=True)
class Block:
    file: Path
    line: int  # of the opening fence
    lang: str
    text: str
    store: str | None  # None: not run
    reason: str | None

    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def blocks(file: Path) -> list[Block]:
    lines = file.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        marker = MARKER.match(lines[index - 1]) if index else None
        found.append(
            Block(
                file,
                index + 1,
                fence.group("lang"),
                "\n".join(lines[index + 1 : end]),
                marker.group("store") if marker else None,
                marker.group("reason") if marker else None,
            )
        )
        index = end + 1
    return found


ALL = [b for file in DOCS if file not in GENERATED for b in blocks(file)]


def test_every_block_is_marked_run_or_not_run() -> None:
    unmarked = [b.where() for b in ALL if b.store is None and b.reason is None]
    assert unmarked == [], (
        "fenced blocks without '<!-- example: run STORE -->' or "
        f"'<!-- example: not run: REASON -->' on the line before: {unmarked}"
    )
    odd = [b.where() for b in ALL if b.store and b.lang not in RUNNABLE]
    assert odd == [], f"blocks marked run that are not console, bash, sh or python: {odd}"
    unknown = sorted({b.store for b in ALL if b.store and b.store not in STORES})
    assert unknown == [], f"unknown example stores: {unknown} (known: {sorted(STORES)})"


# --- the stores examples run against -------------------------------------------------------------


def _deploy(root: Path, template: Any) -> None:
    """docs/deployment.md's store: bert v1.4.0, v1.5.0, v1.6.0; LoRAs sql-lora and bad-lora."""
    shutil.copytree(template.root, root, symlinks=True)


def _api(root: Path, template: Any) -> None:
    """docs/api.md's: the deployment store, a bert v2.0.0, channel prod, a models/bert folder."""
    from deployfix import ENV, write_model

    from mvc.ops.deploy import set_channel
    from mvc.ops.names import create_tag
    from mvc.repo import Repo

    _deploy(root, template)
    repo = Repo(str(root), env=ENV)
    create_tag(repo, "bert", "v2.0.0", "v1.6.0")
    set_channel(repo, "bert", "prod", "v1.4.0")
    write_model(str(root / "models" / "bert"), seed=7)


def _history(root: Path, template: Any) -> None:
    """docs/versioning.md's: bert with three versions on main and no tags, at models/bert."""
    from deployfix import ENV, write_model

    from mvc.ops.commit import commit
    from mvc.repo import Repo

    repo = Repo.init(str(root), env=ENV)
    for seed in range(3):
        write_model(str(root / "models" / "bert"), seed=seed)
        commit(repo, str(root / "models" / "bert"), message=f"version {seed}")


STORES: dict[str, Callable[[Path, Any], None]] = {
    "deploy": _deploy,
    "api": _api,
    "history": _history,
}


# --- running them --------------------------------------------------------------------------------


_EXIT = re.compile(r"#\s*exit (\d+)")


def _commands(block: Block) -> list[tuple[str, int | None]]:
    """(command, the exit code it must have: 0, N, or None for "any error") for each command."""
    if block.lang == "console":
        found: list[tuple[str, int | None]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                code = _EXIT.search(line)
                found.append((line[2:], int(code.group(1)) if code else 0))
            elif line.startswith("error:") and found and found[-1][1] == 0:
                found[-1] = (found[-1][0], None)
        return found
    return [
        (line, 0)
        for line in block.text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


SESSIONS = sorted({(b.file, b.store) for b in ALL if b.store})


@pytest.mark.slow
@pytest.mark.parametrize(("file", "store"), SESSIONS, ids=[f"{f.name}-{s}" for f, s in SESSIONS])
def test_the_examples_run(file: Path, store: str, deploy_template, mvc_env, tmp_path) -> None:
    from deployfix import ENV

    root = tmp_path / "store"
    STORES[store](root, deploy_template)
    env = {
        **mvc_env,
        **ENV,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "COLUMNS": "120",
    }
    for block in [b for b in ALL if b.file == file and b.store == store]:
        if block.lang == "python":
            done = subprocess.run(
                [sys.executable, "-c", block.text],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"{block.where()}: {done.stderr}"
            continue
        for command, expected in _commands(block):
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            ok = done.returncode != 0 if expected is None else done.returncode == expected
            assert ok, (
                f"{block.where()}: `{command}` exited {done.returncode}, expected "
                f"{'an error' if expected is None else expected}\n{done.stderr}"
            )
