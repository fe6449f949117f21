"""Dependencies point one way (docs/architecture.md): from pure code to the command line.

The import graph is computed statically over every module of ``mvc/``, counting module-level
imports, imports inside functions, ``if TYPE_CHECKING:`` imports, relative imports and
``importlib.import_module("mvc....")`` calls. On it:

- there is no import cycle (no strongly connected component bigger than one module);
- every module has a place in ``PLACES`` and imports only its own layer or layers below it;
- no module imports an mvc module inside a function (that is how cycles hid), except the
  package's lazy re-export of ``mvc.api``; heavy third-party modules stay lazy instead, and
  ``mvc --help`` and ``mvc status`` load none of them;
- only the command line imports typer, rich or click.

A new module needs one line in ``PLACES``.
"""

from __future__ import annotations

import ast
import functools
import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "mvc"

# Top to bottom: each layer imports only itself and the layers after it.
LAYERS = (
    "cli",  # Typer: parse, call one use case, render
    "package",  # ``import mvc``: the version and the lazy re-export of mvc.api
    "api",  # the Python facade
    "serving",  # router, exports
    "ops",  # use cases
    "resolution",  # version specs, remotes and fetched-on-demand data
    "graph",  # walks over the object graph: reachability, ancestry, first parents
    "infrastructure",  # repo, store, refs, config, transfer, storage/, worktree/
    "domain",  # pure transformations and rules: no store, no I/O of their own
    "base",  # errors, ids, ref names
)
# Module -> layer. ``pkg.*`` places a package and every module below it; an exact name wins.
PLACES = {
    "mvc.__main__": "cli",
    "mvc.cli.*": "cli",
    "mvc": "package",
    "mvc.api": "api",
    "mvc.router": "serving",
    "mvc.metrics.exposition": "serving",  # prometheus_client metrics labelled from RouteDecisions
    "mvc.exports.*": "serving",
    "mvc.gateway.*": "serving",  # mvc serve: the HTTP gateway in front of inference servers
    "mvc.decisions": "serving",  # the decision log; routing replayed at an instant
    "mvc.serving": "serving",  # several versions, and adapters, loaded at once in-process
    "mvc.ops.*": "ops",
    "mvc.specs": "resolution",
    "mvc.remotes": "resolution",
    "mvc.graph": "graph",
    "mvc.repo": "infrastructure",
    "mvc.store": "infrastructure",
    "mvc.refs": "infrastructure",
    "mvc.config": "infrastructure",
    "mvc.transfer": "infrastructure",
    "mvc.lastuse": "infrastructure",  # when each version was last used: batched, in SQLite
    "mvc.archives": "infrastructure",  # archive records: which versions' chunks are cold
    "mvc.audit": "infrastructure",  # the append-only policy audit log
    "mvc.tensors": "infrastructure",  # tensors read from files and from the store
    "mvc.storage.*": "infrastructure",
    "mvc.worktree.*": "infrastructure",
    "mvc.metrics.prometheus": "infrastructure",  # a Prometheus server as a metric source (HTTP)
    "mvc.versioning": "domain",
    "mvc.bump_rules": "domain",  # diff evidence -> major/minor/patch
    "mvc.peft": "domain",  # PEFT rules and the block-wise merge, on arrays it is given
    "mvc.deployment.*": "domain",  # deployment records, names and the pure transition planners
    "mvc.annotations": "domain",  # facts attached to versions after commit: metrics, deprecations
    "mvc.instants": "domain",
    "mvc.jsonshape": "domain",  # a result value's --json document: its fields, or its Shape
    "mvc.canonical": "domain",
    "mvc.codec": "domain",
    "mvc.chunking": "domain",
    "mvc.objects": "domain",
    "mvc.formats.*": "domain",
    "mvc.paths": "domain",
    "mvc.progress": "domain",
    "mvc.yamltext": "domain",  # the one bounded YAML loader
    "mvc.lockfile": "domain",  # mvc.lock: the text format of pinned versions
    "mvc.metrics.series": "domain",  # a metric bucketed over time, read through MetricSource
    "mvc.metrics.compare": "domain",  # Welch's t-test and the two-proportion test, via scipy
    "mvc.policy": "domain",  # the policy file, mvc.yaml: sections, conditions
    "mvc.policy.*": "domain",
    "mvc.metrics": "package",  # version-tagged metrics; lazy re-export of record/Recorder
    "mvc.metrics.model": "domain",  # the vocabulary and the source protocol
    "mvc.metrics.stats": "domain",  # exact and mergeable summary statistics
    "mvc.metrics.sqlite": "infrastructure",  # the store's metric database
    "mvc.metrics.recorder": "infrastructure",  # buffered recording from serving code
    "mvc.errors": "base",
    "mvc.faults": "base",  # the crash hook every write point calls
    "mvc.ids": "base",
    "mvc.refnames": "base",
    "mvc._api_names": "base",
}
# Function-level imports of mvc modules that are allowed, and why.
LAZY_ALLOWED = {
    ("mvc", "mvc.api"): "PEP 562 re-export: `import mvc` must not load every use case",
    ("mvc.metrics", "mvc.metrics.recorder"): "PEP 562 re-export: `import mvc.metrics.model` "
    "must not load the store",
    ("mvc.policy.file", "mvc.policy.sections"): "the section parsers load when a policy file "
    "is parsed: every checkout reads deprecations, mostly with no mvc.yaml (12 ms)",
}
# A command's body may import the use cases it calls: the command line is the top layer, so
# such an import can never close a cycle (the SCC test counts it anyway), and it keeps
# `mvc --help` and `mvc status` from loading every use case (half of their start-up time).
LAZY_LAYERS = ("mvc.cli",)
# Only the command line may print through these.
CLI_ONLY = ("typer", "rich", "click")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    lazy: bool  # inside a function

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line}{', in a function' if self.lazy else ''})"


def module_name(package: pathlib.Path, path: pathlib.Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _function_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(id(child) for child in ast.walk(node) if child is not node)
    return inside


def _imported(module: str, is_package: bool, node: ast.AST) -> Iterator[tuple[str, bool]]:
    """(dotted name, whether it may be a module or an attribute) for each name ``node`` imports."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, False
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")[: None if is_package else -1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            yield f"{source}.{alias.name}", True
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
        in ("import_module", "__import__")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        yield node.args[0].value, False


def import_graph(package: pathlib.Path) -> tuple[dict[str, list[Edge]], dict[str, list[str]]]:
    """Edges between the package's modules, and every name each module imports."""
    paths = {module_name(package, p): p for p in sorted(package.rglob("*.py"))}

    def resolve(name: str, maybe_attribute: bool) -> str | None:
        if name in paths:
            return name
        if maybe_attribute or "." in name:
            parent = name.rpartition(".")[0]
            return resolve(parent, False) if parent else None
        return None

    edges: dict[str, list[Edge]] = {m: [] for m in paths}
    names: dict[str, list[str]] = {m: [] for m in paths}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside = _function_nodes(tree)
        for node in ast.walk(tree):
            for name, maybe_attribute in _imported(module, path.name == "__init__.py", node):
                names[module].append(name)
                target = resolve(name, maybe_attribute)
                if target is not None and target != module:
                    edges[module].append(Edge(module, target, node.lineno, id(node) in inside))
    return edges, names


def components(edges: dict[str, list[Edge]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for edge in edges[v]:
            w = edge.target
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def a_cycle(edges: dict[str, list[Edge]], component: list[str]) -> list[Edge]:
    """One concrete cycle through the component's first module, edge by edge."""
    members = set(component)
    start = component[0]
    paths: dict[str, list[Edge]] = {start: []}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for edge in edges[v]:
            if edge.target == start:
                return paths[v] + [edge]
            if edge.target in members and edge.target not in paths:
                paths[edge.target] = paths[v] + [edge]
                queue.append(edge.target)
    raise AssertionError(f"{component} is not a cycle")


def cycle_problems(edges: dict[str, list[Edge]]) -> list[str]:
    return [
        f"import cycle {{{', '.join(c)}}}: " + "; ".join(str(e) for e in a_cycle(edges, c))
        for c in components(edges)
        if len(c) > 1
    ]


def layer_of(module: str) -> str | None:
    if module in PLACES:
        return PLACES[module]
    parts = module.split(".")
    for cut in range(len(parts), 0, -1):
        layer = PLACES.get(".".join(parts[:cut]) + ".*")
        if layer is not None:
            return layer
    return None


@functools.cache
def _mvc_graph() -> tuple[dict[str, list[Edge]], dict[str, list[str]]]:
    return import_graph(PACKAGE)


# --- the checks on mvc/ ---------------------------------------------------------------------------


def test_no_import_cycles() -> None:
    edges, _ = _mvc_graph()
    assert cycle_problems(edges) == []


def test_every_module_has_a_layer() -> None:
    edges, _ = _mvc_graph()
    unplaced = [m for m in sorted(edges) if layer_of(m) is None]
    assert unplaced == [], "place these modules in PLACES (tests/unit/test_layers.py)"
    assert set(PLACES.values()) <= set(LAYERS)


def test_layers_import_only_downwards() -> None:
    edges, _ = _mvc_graph()
    problems = []
    for module, out in sorted(edges.items()):
        layer = layer_of(module)
        for edge in out:
            target = layer_of(edge.target)
            if layer and target and LAYERS.index(target) < LAYERS.index(layer):
                problems.append(f"{edge}: {layer} must not import {target}")
    assert problems == []


def test_mvc_modules_are_imported_at_module_level() -> None:
    edges, _ = _mvc_graph()
    lazy = [
        str(e)
        for out in edges.values()
        for e in out
        if e.lazy
        and (e.source, e.target) not in LAZY_ALLOWED
        and not e.source.startswith(tuple(f"{layer}." for layer in LAZY_LAYERS))
    ]
    assert lazy == [], "import mvc modules at the top; only heavy third-party imports stay lazy"
    used = {(e.source, e.target) for out in edges.values() for e in out if e.lazy}
    assert set(LAZY_ALLOWED) <= used, "remove entries of LAZY_ALLOWED that no longer apply"


def test_no_imports_the_graph_cannot_see() -> None:
    """``importlib.import_module(name)`` with a computed name would hide an edge."""
    hidden = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
                in ("import_module", "__import__")
                and not (node.args and isinstance(node.args[0], ast.Constant))
            ):
                hidden.append(f"{module_name(PACKAGE, path)} line {node.lineno}")
    assert hidden == []


def test_only_the_cli_imports_typer_and_rich() -> None:
    _, names = _mvc_graph()
    problems = [
        f"{module} imports {name} (only mvc.cli may)"
        for module, imported in sorted(names.items())
        if layer_of(module) != "cli"
        for name in imported
        if name.split(".")[0] in CLI_ONLY
    ]
    assert problems == []


def _heavy_modules_loaded(argv: list[str], cwd: pathlib.Path, env: dict[str, str]) -> list[str]:
    code = (
        "import json, sys\n"
        "from mvc.cli.main import dispatch\n"
        f"sys.argv = ['mvc', *{argv!r}]\n"
        "try:\n    dispatch()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = ('numpy', 'ml_dtypes', 'safetensors', 'fsspec', 'semver', 'sqlite3')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return loaded


def test_help_and_status_load_no_heavy_modules(store, cli, make_model, mvc_env) -> None:
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "one")
    (pathlib.Path(store.root) / "models/bert/notes.md").write_text("changed")
    root = pathlib.Path(store.root)
    assert _heavy_modules_loaded(["--help"], root, mvc_env) == []
    assert _heavy_modules_loaded(["status"], root, mvc_env) == []


# --- the checks check: a small package with the faults they must find ----------------------------


def _package(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    package = tmp_path / "mvc"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_a_cycle_through_a_function_level_relative_import_is_found(tmp_path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from mvc.sub import b\n",
            "sub/__init__.py": "",
            "sub/b.py": "def f():\n    from .. import a\n    return a\n",
            "c.py": "import importlib\nimportlib.import_module('mvc.a')\n",
        },
    )
    edges, _ = import_graph(package)
    [problem] = cycle_problems(edges)
    assert problem.startswith("import cycle {mvc.a, mvc.sub.b}: mvc.a -> mvc.sub.b (line 1)")
    assert "mvc.sub.b -> mvc.a (line 2, in a function)" in problem
    assert [str(e) for e in edges["mvc.c"]] == ["mvc.c -> mvc.a (line 2)"]


def test_the_layer_table_places_packages_and_exact_names() -> None:
    assert layer_of("mvc.cli.anything.new") == "cli"
    assert layer_of("mvc") == "package"
    assert layer_of("mvc.not_placed_yet") is None
