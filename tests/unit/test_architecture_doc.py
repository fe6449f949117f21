"""docs/architecture.md's "What lives where" table is true for the tree: every module it names
exists, and every module of ``mvc/`` has a row (a new module: one line there, one in PLACES)."""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def modules() -> set[str]:
    """Every module file, relative to ``mvc/``; a package's ``__init__.py`` only when it defines
    something (a docstring and re-exports say nothing its modules' rows do not)."""
    found = set()
    for path in (ROOT / "mvc").rglob("*.py"):
        if path.name == "__init__.py" and all(
            isinstance(node, ast.Expr | ast.Import | ast.ImportFrom | ast.Assign)
            for node in ast.parse(path.read_text(encoding="utf-8")).body
        ):
            continue
        found.add(path.relative_to(ROOT / "mvc").as_posix())
    return found


def named_in_the_table(known: set[str]) -> set[str]:
    """The modules the first column names: ``ops/commit.py``; ``exports/triton.py``,
    ``kserve.py`` (the folder carries over within a row); ``worktree/`` (every module in it)."""
    table = DOC.read_text(encoding="utf-8").split("## What lives where", 1)[1]
    table = table.split("\n## ", 1)[0]
    named: set[str] = set()
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        folder = ""
        for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if token.endswith("/"):
                named |= {m for m in known if m.startswith(token)}
                named.add(token)
                continue
            if "/" in token:
                folder = token.rsplit("/", 1)[0] + "/"
            elif folder and not (ROOT / "mvc" / token).exists():
                token = folder + token
            named.add(token)
    return named


def test_every_module_has_a_row_in_architecture_md() -> None:
    known = modules()
    assert sorted(known - named_in_the_table(known)) == [], (
        "add a row to the 'What lives where' table of docs/architecture.md"
    )


def test_every_module_architecture_md_names_exists() -> None:
    known = modules()
    missing = [
        name for name in sorted(named_in_the_table(known)) if not (ROOT / "mvc" / name).exists()
    ]
    assert missing == [], "docs/architecture.md names modules that are not in mvc/"
