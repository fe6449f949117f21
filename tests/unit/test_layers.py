"""Dependencies point one way (DESIGN.md §5): from pure code to the command line.

Checked statically from each module's imports, including imports inside functions.
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "mvc"

# layer -> the mvc layers it must never import
FORBIDDEN = {
    "mvc.errors": {"*"},
    "mvc.faults": {"*"},
    "mvc.ids": {"mvc.storage", "mvc.store", "mvc.refs", "mvc.repo", "mvc.ops", "mvc.cli"},
    "mvc.canonical": {"mvc.storage", "mvc.store", "mvc.refs", "mvc.repo", "mvc.ops", "mvc.cli"},
    "mvc.codec": {"mvc.storage", "mvc.store", "mvc.refs", "mvc.repo", "mvc.ops", "mvc.cli"},
    "mvc.objects": {
        "mvc.storage",
        "mvc.store",
        "mvc.refs",
        "mvc.repo",
        "mvc.ops",
        "mvc.cli",
        "mvc.worktree",
    },
    "mvc.paths": {
        "mvc.storage",
        "mvc.store",
        "mvc.refs",
        "mvc.repo",
        "mvc.ops",
        "mvc.cli",
        "mvc.worktree",
    },
    "mvc.chunking": {"mvc.storage", "mvc.store", "mvc.refs", "mvc.repo", "mvc.ops", "mvc.cli"},
    "mvc.formats": {"mvc.storage", "mvc.store", "mvc.refs", "mvc.repo", "mvc.ops", "mvc.cli"},
    # pure PEFT rules: no I/O layer, no store, no use case
    "mvc.peft": {
        "mvc.storage",
        "mvc.store",
        "mvc.refs",
        "mvc.repo",
        "mvc.ops",
        "mvc.cli",
        "mvc.worktree",
        "mvc.tensors",
        "mvc.router",
        "mvc.api",
    },
    "mvc.deployment": {
        "mvc.storage",
        "mvc.store",
        "mvc.refs",
        "mvc.repo",
        "mvc.ops",
        "mvc.cli",
        "mvc.worktree",
        "mvc.exports",
        "mvc.router",
        "mvc.api",
    },
    "mvc.storage": {"mvc.store", "mvc.refs", "mvc.repo", "mvc.ops", "mvc.cli", "mvc.worktree"},
    "mvc.worktree": {"mvc.store", "mvc.refs", "mvc.repo", "mvc.ops", "mvc.cli", "mvc.storage"},
    "mvc.store": {"mvc.repo", "mvc.ops", "mvc.cli"},
    "mvc.refs": {"mvc.repo", "mvc.ops", "mvc.cli"},
    "mvc.repo": {"mvc.ops", "mvc.cli"},
    "mvc.ops": {"mvc.cli"},
}
# Only the command line may print through these.
CLI_ONLY = ("typer", "rich", "click")


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


def test_layers_import_only_downwards() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        imports = _imports(path)
        for layer, banned in FORBIDDEN.items():
            if not _within(module, layer):
                continue
            for name in imports:
                if not name.startswith("mvc"):
                    continue
                imports_anything_else = "*" in banned and not _within(name, layer)
                if imports_anything_else or any(_within(name, b) for b in banned):
                    problems.append(f"{module} imports {name}")
        if not _within(module, "mvc.cli"):
            for name in imports:
                if name.split(".")[0] in CLI_ONLY:
                    problems.append(f"{module} imports {name} (only mvc.cli may)")
    assert problems == []
