"""Registry commands: diff, lineage, find, check-compat, merge-adapter.

Nothing heavy is imported at module level (numpy, safetensors): ``mvc --help`` stays fast.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mvc.cli.common import JsonOption, Wanted, every_command, handles_errors, open_repo, parse_pairs
from mvc.cli.output import Output, human_size

if TYPE_CHECKING:
    from mvc.ops.diff import DiffResult
    from mvc.ops.lineage import LineageGraph


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    for command in (diff, lineage, find, check_compat, merge_adapter):
        name = command.__name__.replace("_", "-")
        if wanted(name):
            app.command(name=name)(handles_errors(command))


# --- diff ---------------------------------------------------------------------------------------


def diff(
    ctx: typer.Context,
    a: Annotated[
        str, typer.Argument(help="Version spec: MODEL\\[@REV]\\[~N].", show_default=False)
    ],
    b: Annotated[
        str | None,
        typer.Argument(help="Version spec to compare with (default: A's working folder)."),
    ] = None,
    no_stats: Annotated[
        bool,
        typer.Option(
            "--no-stats", help="Only say which tensors changed; do not compute their statistics."
        ),
    ] = False,
    stat: Annotated[
        bool, typer.Option("--stat", help="Only the summary: counts of what changed, the verdict.")
    ] = False,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when A and B differ (for scripts).")
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """Show what changed from A to B: files, tensors, config, metadata, and the bump it implies.

    Changed tensors get the fraction of elements changed, max |difference|, relative L2 change and cosine similarity, computed chunk by chunk; unchanged tensors are skipped unread.

    The verdict comes first (and last); a section with many items lists the first 40 (--json has all).

    Examples:
      mvc diff bert@v1.0.0 bert@v1.1.0
      mvc diff bert@v1.0.0 bert@v1.1.0 --stat
      mvc diff bert --exit-code || echo "bert's folder has changes"
      mvc diff bert                     # HEAD against the working folder
      mvc diff bert@main~1 bert --json
    """
    from mvc.ops.diff import diff as do_diff

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_diff(repo, a, b, stats=not (no_stats or stat), progress=out.progress())
    if as_json:
        out.json(result.to_json())
    else:
        for line in summary_first(render_diff(result), stat=stat):
            out.line(line, _DIFF_COLOURS.get(line.lstrip()[:1]) if line[:2] == "  " else None)
    if exit_code and _differs(result):
        raise typer.Exit(1)


_DIFF_COLOURS = {"+": "green", "A": "green", "-": "red", "D": "red", "~": "yellow", "M": "yellow"}
#: Items listed per section before "… N more": a model with thousands of tensors stays readable.
LISTED = 40


def _differs(result: DiffResult) -> bool:
    return bool(
        result.files
        or result.configs
        or any(g.changes or g.metadata for g in result.tensors)
        or {k for k in result.metadata if k != "time"}
    )


def summary_first(lines: list[str], *, stat: bool = False) -> list[str]:
    """The verdict right after the header (and again at the end), then each section's summary
    line with at most ``LISTED`` of its items (``stat``: none); ``--json`` has every item."""
    verdict = [line for line in lines if line.startswith("verdict:")]
    head, body = lines[:2], [line for line in lines[2:] if not line.startswith("verdict:")]
    out = head + verdict
    run = 0
    for line in body:
        if not line.startswith("  "):
            if run > LISTED and not stat:
                out.append(f"  … {run - LISTED} more (mvc diff --json lists every one)")
            run = 0
            out.append(line)
            continue
        run += 1
        if not stat and run <= LISTED:
            out.append(line)
    if run > LISTED and not stat:
        out.append(f"  … {run - LISTED} more (mvc diff --json lists every one)")
    return out + verdict  # and last again, where the eye lands after a long listing


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _shape(dtype: str | None, shape: list[int] | tuple[int, ...] | None) -> str:
    return f"{dtype} {list(shape) if shape is not None else '?'}"


def render_diff(result: DiffResult) -> list[str]:
    lines = [f"--- {result.a.label}", f"+++ {result.b.label}"]
    counts: dict[str, int] = {"changed": 0, "added": 0, "removed": 0}
    for change in result.files:
        counts[change.status] += 1
    lines.append(
        f"files: {counts['changed']} changed, {counts['added']} added, "
        f"{counts['removed']} removed, {result.unchanged_files} unchanged"
    )
    marks = {"changed": "M", "added": "A", "removed": "D"}
    for change in result.files:
        old = human_size(change.old.size) if change.old else ""
        new = human_size(change.new.size) if change.new else ""
        sizes = f"{old} -> {new}" if old and new else old or new
        mode = (
            " (mode)"
            if change.old and change.new and change.old.executable != change.new.executable
            else ""
        )
        lines.append(f"  {marks[change.status]} {change.path}  {sizes}{mode}")
    for group in result.tensors:
        where = group.folder or "."
        kinds: dict[str, int] = {}
        for t in group.changes:
            kinds[t.status] = kinds.get(t.status, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        lines.append(
            f"tensors in {where}{' (adapter)' if group.adapter else ''}: "
            + (summary + ", " if summary else "")
            + f"{group.unchanged} unchanged ({group.skipped_identical} skipped without decoding)"
        )
        for t in group.changes:
            if t.status == "changed":
                s = t.stats
                detail = (
                    f"changed {s['changed_fraction']:.2%}  max|d| {_number(s['max_abs_diff'])}  "
                    f"rel-L2 {_number(s['relative_l2'])}  cos {_number(s['cosine'])}"
                    + (f"  non-finite {s['nonfinite']}" if s["nonfinite"] else "")
                    if s
                    else "changed"
                )
                lines.append(f"  ~ {t.name}  {_shape(t.new_dtype, t.new_shape)}  {detail}")
            elif t.status == "added":
                lines.append(f"  + {t.name}  {_shape(t.new_dtype, t.new_shape)}")
            elif t.status == "removed":
                lines.append(f"  - {t.name}  {_shape(t.old_dtype, t.old_shape)}")
            elif t.status == "renamed":
                lines.append(
                    f"  > {t.renamed_from} -> {t.name}  {_shape(t.new_dtype, t.new_shape)}"
                )
            else:
                lines.append(
                    f"  ! {t.name}  {_shape(t.old_dtype, t.old_shape)} -> "
                    f"{_shape(t.new_dtype, t.new_shape)} ({t.status})"
                )
        for path, keys in group.metadata.items():
            for key, value in keys["changed"].items():
                lines.append(f"  metadata {path}: {key}: {value['old']!r} -> {value['new']!r}")
            for key, value in keys["added"].items():
                lines.append(f"  metadata {path}: + {key}: {value!r}")
            for key in keys["removed"]:
                lines.append(f"  metadata {path}: - {key}")
    for config in result.configs:
        lines.append(f"{config.path}:" + ("" if config.parsed else " (changed; not parsed)"))
        for key, (old, new) in config.changed.items():
            lines.append(f"  ~ {key}: {json.dumps(old)} -> {json.dumps(new)}")
        for key, value in config.added.items():
            lines.append(f"  + {key}: {json.dumps(value)}")
        for key, value in config.removed.items():
            lines.append(f"  - {key}: {json.dumps(value)}")
    meta = {k: v for k, v in result.metadata.items() if k != "time"}
    if meta:
        lines.append("metadata:")
    for key in ("params", "datasets"):
        if key in meta:
            part = meta[key]
            for name, value in part["changed"].items():
                lines.append(f"  {key} {name}: {value['old']} -> {value['new']}")
            for name, value in part["added"].items():
                lines.append(f"  {key} + {name}: {value if key == 'params' else value.get('uri')}")
            for name in part["removed"]:
                lines.append(f"  {key} - {name}")
    for name, value in meta.get("metrics", {}).items():
        delta = value["delta"]
        lines.append(
            f"  metrics {name}: {_number(value['old'])} -> {_number(value['new'])}"
            + (f" ({delta:+.6g})" if delta is not None else "")
        )
    if "git" in meta:
        old = (meta["git"]["old"] or {}).get("commit", "-")
        new = (meta["git"]["new"] or {}).get("commit", "-")
        lines.append(f"  git {str(old)[:12]} -> {str(new)[:12]}")
    for key in ("author", "model"):
        if key in meta:
            lines.append(f"  {key} {meta[key]['old']} -> {meta[key]['new']}")
    if "message" in meta:
        lines.append("  message changed")
    for key in meta.get("lineage", {}):
        lines.append(f"  lineage {key} changed")
    lines.append(f"verdict: {result.verdict}")
    return lines


# --- lineage ------------------------------------------------------------------------------------


def lineage(
    ctx: typer.Context,
    spec: Annotated[
        str, typer.Argument(help="Version spec: MODEL\\[@REV]\\[~N].", show_default=False)
    ],
    depth: Annotated[
        int, typer.Option("--depth", help="How many steps up and down to follow (0: no limit).")
    ] = 10,
    fmt: Annotated[
        str, typer.Option("--format", help="tree (default), json or dot (Graphviz).")
    ] = "tree",
    as_json: bool = JsonOption,
) -> None:
    """Show where a version came from (parents, base, sources, datasets) and what was made from it.

    As a tree (default), JSON, or Graphviz dot.

    Examples:
      mvc lineage sql-lora@v1.0.0
      mvc lineage bert --format dot | dot -Tsvg > bert.svg
    """
    from mvc.errors import UsageError
    from mvc.ops.lineage import lineage as do_lineage

    if fmt not in ("tree", "json", "dot"):
        raise UsageError(f"unknown --format {fmt!r}", hint="use tree, json or dot")
    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    graph = do_lineage(repo, spec, depth=depth)
    if as_json or fmt == "json":
        out.json(graph.to_json())
    elif fmt == "dot":
        out.line(graph.to_dot().rstrip("\n"))  # titles come from remotes: made safe to print
    else:
        out.rich(render_lineage(graph), wide=True)
        if graph.truncated:
            out.info(f"(stopped at depth {depth}; --depth 0 shows everything)")


def render_lineage(graph: LineageGraph) -> Any:
    from rich.markup import escape
    from rich.tree import Tree

    root = Tree(f"[bold]{escape(graph.nodes[graph.root].title)}[/bold]")
    shown: set[str] = {graph.root}
    below = {
        "parent": "child",
        "base": "built on it",
        "derived_from": "derived from it",
        "merged_adapter": "merged into",
    }

    def add(branch: Any, relation: str, node_id: str) -> Any:
        node = graph.nodes.get(node_id)
        text = f"[dim]{relation}[/dim] {escape(node.title if node else node_id)}"
        if node_id in shown:
            branch.add(text + " [dim](shown above)[/dim]")
            return None
        shown.add(node_id)
        return branch.add(text)

    def up(level: Any, node_id: str, holder: Any) -> None:
        # A first-parent chain stays on one level; a node's other sources nest under it.
        current = node_id
        while True:
            edges = graph.up(current)
            first = next((e for e in edges if e.relation == "parent"), None)
            for edge in edges:
                if edge is not first:
                    sub = add(holder, edge.relation, edge.parent)
                    if sub is not None:
                        up(sub, edge.parent, sub)
            if first is None:
                return
            sub = add(level, "parent", first.parent)
            if sub is None:
                return
            current, holder = first.parent, sub

    def down(branch: Any, node_id: str) -> None:
        for edge in graph.down(node_id):
            sub = add(branch, below.get(edge.relation, edge.relation), edge.child)
            if sub is not None:
                down(sub, edge.child)

    if graph.ancestry:
        section = root.add("[bold]came from[/bold]")
        up(section, graph.root, section)
    if graph.descendants:
        shown.clear()
        shown.add(graph.root)
        down(root.add("[bold]made from it[/bold]"), graph.root)
    return root


# --- find ---------------------------------------------------------------------------------------


def find(
    ctx: typer.Context,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Model name or glob (repeatable).")
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", help="A tag name, or a semver range such as '^1.2'.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Param KEY=VALUE (repeatable).")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="Metric (annotations, then commit metrics, then params) condition, "
            "e.g. 'accuracy>=0.9'.",
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", help="Trained on this dataset (name, URI or hash prefix)."),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base", help="Built on this base: a model name, or MODEL@REV for one version."
        ),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="At or after this instant.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="At or before this instant.")] = None,
    limit: Annotated[int | None, typer.Option("-n", "--limit", help="At most N results.")] = None,
    as_json: bool = JsonOption,
) -> None:
    """Find versions across models: by model, tag range, params, metrics, dataset, base, date.

    Every condition must hold; newest first.

    Examples:
      mvc find --where 'accuracy>=0.9' --dataset squad
      mvc find --model 'team/*' --tag '^2' --since 2026-01-01
      mvc find --base llama@v3.0.0 --json
    """
    from mvc.ops.find import Query, parse_where
    from mvc.ops.find import find as do_find

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    query = Query(
        models=list(model or []),
        tag=tag,
        params=parse_pairs(param, "param"),
        where=[parse_where(w) for w in where or []],
        datasets=list(dataset or []),
        base=base,
        since=since,
        until=until,
        limit=limit,
    )
    results = do_find(repo, query)
    if as_json:
        out.json([r.to_json() for r in results])
        return
    if not results:
        out.info("no version matches")
    for item in results:
        r = item.record
        names = ", ".join(n.name for n in item.names if n.model == r.get("model"))
        first = (r.get("message") or "").splitlines()[0] if r.get("message") else ""
        merged = {**(r.get("metrics") or {}), **item.annotated}
        metrics = " ".join(f"{k}={v}" for k, v in sorted(merged.items()))
        out.line(
            f"{r.get('model')}@{item.id[:12]}  {r.get('time')}"
            + (f"  ({names})" if names else "")
            + (f"  {first}" if first else "")
            + (f"  [{metrics}]" if metrics else "")
        )


# --- adapters -----------------------------------------------------------------------------------


def check_compat(
    ctx: typer.Context,
    base: Annotated[str, typer.Argument(help="Base model version spec.", show_default=False)],
    adapter: Annotated[
        str,
        typer.Argument(help="Adapter version spec, or a PEFT adapter folder.", show_default=False),
    ],
    as_json: bool = JsonOption,
) -> None:
    """Check that a LoRA adapter fits a base model; exit 1 (and say where) when it does not.

    Every target module must exist in the base with matching lora_A/lora_B shapes; DoRA and other methods mvc cannot merge are refused.

    Examples:
      mvc check-compat llama@v3.0.0 sql-lora@v1.2.0
      mvc check-compat llama@v3.0.0 ./out/adapter
    """
    from mvc.ops.adapters import check_compat as do_check
    from mvc.peft import require_compatible

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    report = do_check(repo, base, adapter)
    if as_json:
        out.json(report.to_json())
    else:
        for module in report.modules:
            mark = "ok " if module.problem is None else "BAD"
            target = module.base_tensor or "?"
            out.line(
                f"{mark} {module.module} -> {target}"
                + (f": {module.problem}" if module.problem else "")
            )
        for problem in report.problems:
            out.line(f"BAD {problem}")
    require_compatible(report)
    if not as_json:
        facts = report.config.facts()
        out.info(
            f"compatible: {len(report.modules)} modules of {adapter} fit {base} "
            f"({facts['type']}, r={facts['rank']}, alpha={facts['alpha']:g})"
        )


def merge_adapter(
    ctx: typer.Context,
    base: Annotated[str, typer.Argument(help="Base model version spec.", show_default=False)],
    adapter: Annotated[str, typer.Argument(help="LoRA adapter version spec.", show_default=False)],
    model: Annotated[str, typer.Option("--model", help="Model to commit the merged weights to.")],
    message: Annotated[str, typer.Option("-m", "--message", help="Commit message.")] = "",
    branch: Annotated[
        str | None, typer.Option("--branch", "-b", help="Branch to commit onto (default main).")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Merge a LoRA adapter into its base and commit the result as a new version.

    W + B·A·scale for every LoRA module, as peft's merge_and_unload computes it (rank_pattern, alpha_pattern, use_rslora, fan_in_fan_out), accumulated in float32 and written in the base's dtype; the new version's lineage names both the base and the adapter. DoRA and other methods mvc cannot merge are refused.

    Example: mvc merge-adapter llama@v3.0.0 sql-lora@v1.2.0 --model llama-sql -m "merged"
    """
    from mvc.ops.merge import merge_adapter as do_merge

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_merge(
        repo, base, adapter, model=model, message=message, branch=branch, progress=out.progress()
    )
    if as_json:
        out.json(result.to_json())
        return
    commit = result.commit
    out.line(commit.version_id or "")
    out.info(
        f"merged {len(result.merged_tensors)} tensors"
        + (f" (+{len(result.replaced_tensors)} replaced)" if result.replaced_tensors else "")
        + f" into {commit.model}@{commit.branch} {(commit.version_id or '')[:12]}"
    )
