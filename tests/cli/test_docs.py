"""docs/cli.md is generated from the real command definitions and must stay current."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
REGENERATE = [sys.executable, "-m", "mvc.cli.docs"]


def test_command_reference_is_current(tmp_path: pathlib.Path) -> None:
    """Regenerate with ``python -m mvc.cli.docs docs/cli.md`` (mvc/cli/docs.py)."""
    fresh = tmp_path / "cli.md"
    subprocess.run([*REGENERATE, str(fresh)], check=True, capture_output=True, cwd=ROOT)
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert fresh.read_text(encoding="utf-8") == committed, (
        "docs/cli.md is out of date; regenerate it with:\n  "
        + "python "
        + " ".join(REGENERATE[1:])
        + " docs/cli.md"
    )


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to missing {target}"


def test_command_reference_is_plain_markdown() -> None:
    """No HTML entities; usage lines and every example in fenced console blocks."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert not re.search(r"&(#\d+|#x[0-9a-fA-F]+|[a-z]+);", text)
    fenced = re.findall(r"```console\n(.*?)```", text, re.DOTALL)
    commands = [line for block in fenced for line in block.splitlines()]
    assert "$ mvc tag bert --bump auto --explain" in commands
    assert "$ mvc tag [OPTIONS] MODEL [NAME] [REV]" in commands
    outside = re.sub(r"```console\n.*?```", "", text, flags=re.DOTALL)
    assert "mvc tag bert --bump auto --explain" not in outside
    assert "<bool>" not in text and "list[str]" not in text
