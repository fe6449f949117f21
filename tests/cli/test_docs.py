"""docs/cli.md is generated from the real command definitions and must stay current."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
REGENERATE = [
    sys.executable,
    "-m",
    "typer",
    "mvc.cli.main",
    "utils",
    "docs",
    "--name",
    "mvc",
    "--title",
    "mvc command reference",
    "--output",
]


def test_command_reference_is_current(tmp_path: pathlib.Path) -> None:
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
