"""Everyday commands: init, commit, status, log, show, ls, cat, checkout, branch, tag, models,
rm, unbind."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from mvc.cli.common import (
    AllowDeprecatedOption,
    ForceOption,
    JsonOption,
    ModelArg,
    SpecArg,
    Wanted,
    every_command,
    handles_errors,
    open_repo,
    parse_pairs,
    read_metrics_file,
)
from mvc.cli.output import Output, human_size
from mvc.errors import MvcError, PartialFailure, UsageError


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    everyday = (init, commit, status, log, show, ls, cat, checkout, branch, tag, models, rm, unbind)
    for command in everyday:
        name = command.__name__.rstrip("_")
        if wanted(name):
            app.command(name=name)(handles_errors(command))


def init(
    path: Annotated[str, typer.Argument(help="Folder to create the store in.")] = ".",
    as_json: bool = JsonOption,
) -> None:
    """Create a store (.mvc/) here or in PATH.

    Inside a git work tree, .mvc/ is added to the .gitignore at the top of that tree, and so is
    each working folder a commit binds later (mvc versions its files, as `dvc add` does).
    Inside another store's folder it says so: commands run below it then use the new store.

    Example: mvc init
    """
    from mvc.ops.setup import init_store

    result = init_store(path)
    out = Output(as_json=as_json)
    if as_json:
        out.json(result.to_json())
        return
    out.info(f"Initialised an empty mvc store in {result.store_dir}")
    if result.inside:
        out.warn(
            f"it is inside the store at {result.inside}: commands run below "
            f"{os.path.dirname(result.store_dir)} now use the new store"
        )
    if result.gitignore:
        out.info(f"Added .mvc/ to {result.gitignore}")


def commit(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Folder or file to commit.")] = ".",
    message: Annotated[
        str | None,
        typer.Option(
            "-m", "--message", help="What changed and why (asked for on a terminal when left out)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Model name (default: the bound model, else the folder name)."
        ),
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option("--branch", "-b", help="Commit onto this branch (needed on a detached HEAD)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Hyper-parameter KEY=VALUE (repeatable)."),
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Metric KEY=NUMBER (repeatable).")
    ] = None,
    metrics_file: Annotated[
        str | None, typer.Option("--metrics", help="JSON file of metric: number.")
    ] = None,
    bind: Annotated[
        bool, typer.Option("--bind", help="Make PATH the model's working folder.")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Store malformed safetensors files as opaque bytes.")
    ] = False,
    follow_symlinks: Annotated[
        bool,
        typer.Option("--follow-symlinks", help="Store what symlinks outside the folder point to."),
    ] = False,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Record a version even if nothing changed.")
    ] = False,
    allow_empty_message: Annotated[
        bool,
        typer.Option("--allow-empty-message", help="Record the version without a message."),
    ] = False,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            help="Training data NAME=URI\\[@HASH] (repeatable); a local path is hashed with blake3.",
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base", help="Base model of an adapter (version spec); a LoRA is checked against it."
        ),
    ] = None,
    derived_from: Annotated[
        list[str] | None,
        typer.Option(
            "--from", help="Version this was derived from (distilled, quantised…; repeatable)."
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Record PATH as the next version of a model and print its id.

    A PEFT adapter folder (adapter_config.json + adapter_model.safetensors) is recognised: its type, rank, alpha and target modules are recorded, and with --base a LoRA must fit the base.

    Without -m, a terminal is asked for the message; a script (stdin not a terminal) is refused (exit 2), as an empty message is, unless --allow-empty-message.

    Examples:
      mvc commit models/bert -m "baseline"
      mvc commit models/bert -m "retrained" --param lr=2e-5 --metric accuracy=0.913
      mvc commit out/run-17 --model bert -m "nightly"     # CI: next version on bert's branch
      mvc commit out/lora --model sql-lora --base llama@v3.0.0 --dataset spider=data/spider -m "sql"
    """
    from mvc.ops.commit import commit as do_commit
    from mvc.ops.lineage import build_lineage

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    message = commit_message(message, path, allow_empty=allow_empty_message)
    metrics = parse_pairs(metric, "metric", numeric=True)
    if metrics_file:
        metrics = {**read_metrics_file(metrics_file), **metrics}
    lineage = build_lineage(repo, datasets=dataset, base=base, derived_from=derived_from)
    result = do_commit(
        repo,
        path,
        message=message,
        model=model,
        branch=branch,
        params=parse_pairs(param, "param"),
        metrics=metrics,
        bind=bind,
        raw=raw,
        follow_symlinks=follow_symlinks,
        allow_empty=allow_empty,
        progress=out.progress(),
        lineage=lineage,
    )
    adapter = result.version.lineage.get("adapter") if result.version else None
    if adapter and result.version and not result.version.lineage.get("base"):
        out.warn(
            f"{path} is a {adapter.get('type')} adapter committed without --base: "
            "its fit to a base model was not checked (`mvc check-compat BASE ADAPTER`)"
        )
    if result.created and repo.identity_guessed():
        out.info(
            f"recorded as author: {repo.identity()} (the operating system's user name); say who "
            "you are with `mvc config set --global user.name NAME` and `user.email EMAIL`"
        )
    if as_json:
        out.json(result.to_json())
        if result.created and result.version_id:
            _repack_in_background(repo, out, result.version_id, result.new_bytes)
        return
    if not result.created:
        out.info(f"nothing changed in {path} since {result.model}@{result.branch}; no new version")
        return
    assert result.version_id
    out.line(result.version_id)
    changes = (
        f"{len(result.added)} added, {len(result.modified)} modified, {len(result.removed)} removed"
    )
    out.info(
        f"{result.version_id[:12]}: {changes}; "
        f"{result.new_chunks} new chunks ({human_size(result.new_bytes)})",
        lead=f"{result.model}@{result.branch}",
    )
    _repack_in_background(repo, out, result.version_id, result.new_bytes)


def _repack_in_background(repo: Any, out: Output, version: str, new_bytes: int) -> None:
    """``repack.auto``: queue the version; start a detached repack when enough is queued."""
    from mvc.ids import ObjectId
    from mvc.ops.autorepack import after_commit

    try:
        started = after_commit(repo, ObjectId(version), new_bytes)
    except MvcError as exc:  # the version is recorded; only its repack waits for later
        out.warn(f"the background repack was not started: {exc}")
        return
    if started is not None and started.started:
        out.info(f"repacking in the background (repack.auto; log: {started.log})")


def commit_message(given: str | None, path: str, *, allow_empty: bool) -> str:
    """The message to record: -m's, else one asked for on a terminal. Never an empty one unless
    allowed (git's --allow-empty-message). A script (stdin or stderr not a terminal) is never
    asked but refused, so no prompt blocks it."""
    import shlex
    import sys

    if given is not None and (given.strip() or allow_empty):
        return given
    if given is None and allow_empty:
        return ""
    fix = f'mvc commit {shlex.quote(path)} -m "what changed and why"'
    if given is not None:
        raise UsageError(
            "the commit message is empty; nothing committed",
            hint=f"{fix} (or --allow-empty-message to record none)",
        )
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(
            "no commit message: give one with -m MESSAGE; nothing committed",
            hint=f"{fix} (mvc asks only on a terminal; --allow-empty-message records none)",
        )
    while True:
        sys.stderr.write("Commit message (what changed and why): ")
        sys.stderr.flush()
        answer = sys.stdin.readline()
        if not answer:  # end of input (Ctrl-D)
            sys.stderr.write("\n")
            raise UsageError("no commit message given; nothing committed", hint=fix)
        if answer.strip():
            return answer.strip()


def status(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code", help="Exit 1 when a folder is modified, missing or behind its branch."
        ),
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """Show which working folders differ from their HEAD (unchanged files are not re-read).

    Exit code 0 either way, unless --exit-code: then 1 when any folder is modified, missing,
    or behind its branch (for scripts and hooks, like `git diff --exit-code`).

    Examples:
      mvc status
      mvc status bert --exit-code || echo "bert has uncommitted changes"
    """
    from mvc.ops.status import status as do_status

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    results = do_status(repo, model, progress=out.progress())
    dirty = any(not r.exists or not r.clean or r.behind for r in results)
    if as_json:
        out.json([r.to_json() for r in results])
        if exit_code and dirty:
            raise typer.Exit(1)
        return
    if not results:
        out.info("no working folders yet; `mvc commit FOLDER -m MESSAGE` makes one")
    for item in results:
        head = f"on {item.branch}" if item.branch else f"detached at {(item.version or '')[:12]}"
        if item.behind:
            head += f", behind: {item.branch} moved to {(item.tip or '')[:12]}"
            out.info(
                f"{item.model}: branch {item.branch} moved since {item.path} was synced; "
                f"`mvc checkout {item.model}@{item.branch}` brings the folder up to date"
            )
        if not item.exists:
            out.line(f"{item.model} ({item.path}, {head}): folder is missing")
            continue
        if item.clean:
            out.line(f"{item.model} ({item.path}, {head}): clean")
            continue
        out.line(f"{item.model} ({item.path}, {head}):")
        for label, paths in (
            ("modified", item.modified),
            ("added", item.added),
            ("removed", item.removed),
        ):
            for p in paths:
                out.line(f"  {label:9} {p}", {"added": "green", "removed": "red"}.get(label, "red"))
    if exit_code and dirty:
        raise typer.Exit(1)


def log(
    ctx: typer.Context,
    spec: SpecArg,
    limit: Annotated[
        int | None, typer.Option("-n", "--limit", help="Show at most N versions.")
    ] = None,
    graph: Annotated[
        bool,
        typer.Option("--graph", help="Draw every branch of the model, with merges and names."),
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """List versions newest first, following first parents (--graph: all branches, drawn).

    Examples:
      mvc log bert -n 5
      mvc log bert --graph
    """
    from mvc.ops.inspect import log as do_log

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    if graph:
        _log_graph(repo, out, spec, limit, as_json)
        return
    entries = do_log(repo, spec, limit=limit)  # read as printed: `mvc log | head` stops early
    if as_json:
        out.json([e.to_json() for e in entries])
        return
    for entry in entries:
        v = entry.version
        first = v.message.splitlines()[0] if v.message else ""
        extras = " ".join(f"{k}={val}" for k, val in sorted(v.metrics.items()))
        # The author's name only: e-mails made every line wrap (`mvc show` and --json have it).
        author = v.author.split(" <", 1)[0] if v.author.endswith(">") else v.author
        out.parts(
            (entry.id[:12], "yellow"),
            (f"  {v.time}  ", None),
            (author, "cyan"),
            (f"  {first}" + (f"  [{extras}]" if extras else ""), None),
        )


def _log_graph(repo: Any, out: Output, spec: str, limit: int | None, as_json: bool) -> None:
    from mvc.ops.lineage import graph_log

    drawn = graph_log(repo, spec, limit=limit)
    if as_json:
        items = []
        for row in drawn.rows:
            if row.version is None:
                continue
            record = {
                k: v for k, v in drawn.records[row.version].items() if k not in ("type", "format")
            }
            refs = [n.to_json() for n in drawn.names.get(row.version, [])]
            items.append({"id": row.version, "graph": row.graph, "names": refs, **record})
        out.json(items)
        return
    width = max((len(r.graph) for r in drawn.rows), default=0)
    for row in drawn.rows:
        if row.version is None:
            out.line(row.graph)
            continue
        record = drawn.records[row.version]
        names = ", ".join(
            n.name for n in drawn.names.get(row.version, []) if n.model == record.get("model")
        )
        message = str(record.get("message") or "")
        first = message.splitlines()[0] if message else ""
        out.line(
            f"{row.graph:<{width}}  {row.version[:12]}"
            + (f" ({names})" if names else "")
            + f"  {record.get('time')}  {first}"
        )


def show(
    ctx: typer.Context,
    spec: SpecArg,
    as_json: bool = JsonOption,
) -> None:
    """Show a version: metadata, files with size and blake3, and a tensor summary.

    Example: mvc show bert@main~1
    """
    from mvc.ops.inspect import show as do_show

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    details = do_show(repo, spec)
    if as_json:
        out.json(details.to_json())
        return
    v = details.version
    out.line(f"version  {details.resolved.version}")
    out.line(f"model    {v.model}")
    names = "; ".join(f"{kind}: {', '.join(n)}" for kind, n in details.names.items() if n)
    if names:
        out.line(f"names    {names}")
    for parent in v.parents:
        out.line(f"parent   {parent}")
    out.line(f"author   {v.author}")
    out.line(f"time     {v.time}")
    if v.git:
        out.line(
            f"git      {v.git.get('commit', '')[:12]}{' (dirty)' if v.git.get('dirty') else ''}"
        )
    for label, mapping in (("params", v.params), ("metrics", v.metrics)):
        if mapping:
            out.line(f"{label:8} " + ", ".join(f"{k}={val}" for k, val in sorted(mapping.items())))
    for key, value in sorted(v.lineage.items()):
        out.line(f"{key:8} {_fact(value)}")
    for item in reversed(details.annotations):  # oldest first, like a log read downwards
        shown = ", ".join(f"{k}={val}" for k, val in sorted(item.metrics.items()))
        text = "; ".join(x for x in (shown, item.note) if x)
        if item.deprecation:
            text += f"{'; ' if text else ''}deprecation: {item.deprecation.reason}"
        out.line(f"note     {item.when} {item.who}: {text}")
    if details.archived is not None:
        record = details.archived
        out.line(
            f"archived on cold remote {record.remote} since {record.when} ({record.rule}); "
            f"bring it back with `mvc restore {v.model}@{details.resolved.version[:12]}`"
        )
    out.line("")
    for line in (v.message or "").splitlines():
        out.line(f"    {line}")
    out.line("")
    for info in details.files:
        note = f"  ({info.note})" if info.note else ""
        out.line(f"{info.entry.b3}  {human_size(info.entry.size):>10}  {info.path}{note}")
        if info.tensors:
            dtypes = ", ".join(f"{d}: {n:,}" for d, n in sorted(info.tensors.dtypes.items()))
            out.line(
                f"{'':64}  {'':>10}    {info.tensors.count} tensors, {info.tensors.parameters:,} parameters ({dtypes})"
            )
    for shard in details.shards or []:
        state = "ok" if not shard.problems else f"{len(shard.problems)} problem(s)"
        out.line(
            f"shards   {shard.index}: {len(shard.shards)} shards, {shard.tensors} tensors"
            + (f", {human_size(shard.total_size)}" if shard.total_size is not None else "")
            + f" ({state})"
        )
        for problem in shard.problems:
            out.line(f"         {problem}")


def ls(
    ctx: typer.Context,
    spec: SpecArg,
    long: Annotated[bool, typer.Option("-l", "--long", help="Show size and blake3.")] = False,
    as_json: bool = JsonOption,
) -> None:
    """List the files of a version.

    Example: mvc ls bert@v1.0.0 -l
    """
    from mvc.ops.inspect import tree_of

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    _resolved, tree = tree_of(repo, spec)
    if as_json:
        out.json(
            [
                {
                    "path": p,
                    "size": e.size,
                    "blake3": e.b3,
                    "kind": e.kind,
                    "executable": e.executable,
                }
                for p, e in sorted(tree.files.items())
            ]
        )
        return
    for path, entry in sorted(tree.files.items()):
        out.line(f"{entry.b3[:12]}  {entry.size:>14}  {path}" if long else path)


def cat(
    ctx: typer.Context,
    spec: SpecArg,
    path: Annotated[str, typer.Argument(help="Path of the file inside the version.")],
) -> None:
    """Write one file of a version to stdout, verified as it streams.

    Example: mvc cat bert@v1.0.0 config.json | jq .
    """
    from mvc.ops.inspect import cat as do_cat

    repo = open_repo(ctx)
    out = Output()
    for chunk in do_cat(repo, spec, path):
        out.write_bytes(chunk)


def checkout(
    ctx: typer.Context,
    spec: SpecArg,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Materialise into this folder instead of the working folder."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite uncommitted changes.")
    ] = False,
    bind: Annotated[
        bool, typer.Option("--bind", help="Make --to the model's working folder.")
    ] = False,
    allow_deprecated: bool = AllowDeprecatedOption,
    as_json: bool = JsonOption,
) -> None:
    """Restore a version into the model's working folder (or --to DIR).

    A branch name checks out that branch; any other spec detaches HEAD.

    Examples:
      mvc checkout bert@main~1
      mvc checkout bert@v1.0.0 --to ../bert-v1
    """
    from mvc.ops.worktrees import checkout as do_checkout

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_checkout(
        repo,
        spec,
        to=to,
        force=force,
        bind=bind,
        progress=out.progress(),
        allow_deprecated=allow_deprecated,
    )
    if result.deprecation is not None:
        out.warn(result.deprecation.message)
    if as_json:
        out.json(result.to_json())
        return
    where = os.path.relpath(result.path)
    head = f"on branch {result.head}" if result.head else f"detached at {result.version[:12]}"
    out.info(
        f"{result.model} {result.version[:12]} in {where}: {len(result.written)} written "
        f"({human_size(result.bytes_written)}), {len(result.removed)} removed, {result.unchanged} unchanged"
        + (f"; {head}" if result.bound else "")
    )


def branch(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    name: Annotated[str | None, typer.Argument(help="Branch to create (omit to list).")] = None,
    rev: Annotated[str | None, typer.Argument(help="Where it starts (default: HEAD).")] = None,
    delete: Annotated[
        str | None,
        typer.Option(
            "-d", "--delete", help="Delete this branch (refused if it holds unmerged versions)."
        ),
    ] = None,
    force_delete: Annotated[
        str | None,
        typer.Option("-D", help="Delete this branch even if its versions become unreachable."),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """List, create or delete branches of a model.

    Examples:
      mvc branch bert                   # list
      mvc branch bert experiment        # create at HEAD
      mvc branch bert -d experiment     # delete (refused if no other ref reaches its versions)
      mvc branch bert -D experiment     # delete anyway
    """
    from mvc.ops import names

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    if delete and force_delete:
        raise UsageError("give -d or -D, not both")
    if delete or force_delete:
        delete = delete or force_delete
        assert delete is not None
        entry = names.delete_branch(repo, model, delete, force=bool(force_delete))
        out.json(entry.to_json()) if as_json else out.info(
            f"deleted branch {delete} (was {(entry.old or '')[:12]})"
        )
        return
    if name:
        entry = names.create_branch(repo, model, name, rev)
        out.json(entry.to_json()) if as_json else out.info(
            f"created branch {name} at {(entry.new or '')[:12]}"
        )
        return
    refs = names.list_refs(repo, model, "heads")
    if as_json:
        out.json([r.to_json() for r in refs])
        return
    for ref in refs:
        out.line(f"{'*' if ref.current else ' '} {ref.name:30} {(ref.target or '')[:12]}")


def tag(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    name: Annotated[
        str | None, typer.Argument(help="Tag to create, e.g. v1.0.0 (omit to list).")
    ] = None,
    rev: Annotated[str | None, typer.Argument(help="Version to tag (default: HEAD).")] = None,
    message: Annotated[str, typer.Option("-m", "--message", help="Why this tag.")] = "",
    delete: Annotated[
        str | None,
        typer.Option(
            "-d", "--delete", help="Delete this tag (needs --force; the name stays reserved)."
        ),
    ] = None,
    force: Annotated[bool, ForceOption("Confirm a deletion.")] = False,
    bump: Annotated[
        str | None,
        typer.Option(
            "--bump",
            help="Tag the next semantic version: major, minor, patch, or auto (decided from the change).",
        ),
    ] = None,
    pre: Annotated[
        str | None,
        typer.Option(
            "--pre", help="With --bump: a pre-release LABEL.N (e.g. --pre rc: -rc.1, -rc.2…)."
        ),
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="With --bump: print the evidence for the bump.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --bump: say which tag, but do not create it.")
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """List, create or delete immutable tags. A tag name never points at another version.

    A name that looks like a version must be SemVer 2.0 (1.4.0 and v1.4.0 are the same tag).

    --bump computes the next version from the highest release; with auto, a change of interface (tensors, input/output config, tokenizer) is major, changed weights minor, anything else patch (docs/versioning.md).

    Examples:
      mvc tag bert v1.0.0
      mvc tag bert v1.1.0 main~2
      mvc tag bert --bump auto --explain
      mvc tag bert --bump minor --pre rc
      mvc tag bert
    """
    from mvc.ops import names

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    if bump is not None:
        if delete or rev is not None:
            from mvc.errors import UsageError

            raise UsageError("--bump takes at most one REV: mvc tag MODEL --bump LEVEL [REV]")
        _bump(repo, out, model, name, bump, pre, message, explain, dry_run, as_json)
        return
    if pre or explain or dry_run:
        from mvc.errors import UsageError

        raise UsageError("--pre, --explain and --dry-run go with --bump")
    if delete:
        entry = names.delete_tag(repo, model, delete, force=force)
        out.json(entry.to_json()) if as_json else out.info(
            f"deleted tag {delete}; the name stays reserved"
        )
        return
    if name:
        entry = names.create_tag(repo, model, name, rev, message)
        if as_json:
            out.json(entry.to_json())
        else:
            out.line(f"{model}@{name} {entry.new}")
        return
    refs = names.list_refs(repo, model, "tags")
    if as_json:
        out.json([r.to_json() for r in refs])
        return
    for ref in refs:
        out.line(f"{ref.name:30} {(ref.target or '')[:12]}")


def _bump(
    repo: Any,
    out: Output,
    model: str,
    rev: str | None,
    bump: str,
    pre: str | None,
    message: str,
    explain: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    from mvc.ops import names
    from mvc.ops.bump import plan_bump
    from mvc.specs import by_id

    plan = plan_bump(repo, model, rev, bump, pre)
    if not dry_run:
        why = message or f"tag: --bump {bump}" + (f" ({plan.level})" if bump == "auto" else "")
        names.create_tag(repo, model, plan.name, by_id(model, plan.target), why)
    if as_json:
        out.json({**plan.to_json(), "created": not dry_run})
        return
    out.line(f"{model}@{plan.name} {plan.target}")
    since = f" since {plan.previous}" if plan.previous else ""
    if explain:
        out.line(
            f"{plan.level}{since} ({'decided from the change' if bump == 'auto' else 'asked for'})"
        )
        shown = plan.evidence[:50]
        for item in shown:
            out.line(
                f"  {item.level:5}  {item.reason}: {item.detail}"
                if item.detail
                else f"  {item.level:5}  {item.reason}"
            )
        if len(plan.evidence) > len(shown):
            out.line(
                f"  … {len(plan.evidence) - len(shown)} more (mvc diff {model}@{plan.previous} {model}@{plan.target[:12]})"
            )
    if dry_run:
        out.info(f"dry run: {plan.name} was not created")


def models(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """List every model in the store: latest version, branches, tags, channels."""
    from mvc.ops.inspect import models as do_models

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    found = do_models(repo)
    damaged = [m for m in found if m.damaged]
    if as_json:
        out.json([m.to_json() for m in found])
    elif not found:
        out.info("no models yet; `mvc commit FOLDER -m MESSAGE` records the first version")
    for m in [] if as_json else [m for m in found if not m.damaged]:
        extras = []
        if m.tags:
            extras.append("tags: " + ", ".join(m.tags[-5:]))
        if m.channels:
            extras.append("channels: " + ", ".join(m.channels))
        out.line(
            f"{m.model:24} {(m.latest or '')[:12]}  {m.latest_time or ''}  branches: "
            + ", ".join(m.branches)
            + ("  " + "  ".join(extras) if extras else "")
        )
    for m in damaged:
        out.info(f"{m.model}: cannot be read: {m.damaged}")
    if damaged:
        raise PartialFailure(
            f"{len(damaged)} model(s) have a damaged ref log: "
            + ", ".join(m.model for m in damaged),
            hint="the other models are listed; `mvc fsck --repair-refs` sets torn entries aside",
        )


def rm(
    ctx: typer.Context,
    model: ModelArg,
    force: Annotated[
        bool, ForceOption("Also delete its tags and channels (tag names stay reserved).")
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """Remove a model: delete its branches and forget its working folder.

    A model with tags or channels is refused unless --force: releases and deployments may
    need it. The folder's files stay; versions stay in the store until `mvc gc`.

    Examples:
      mvc rm scratch
      mvc rm old-bert --force
    """
    from mvc.ops.names import remove_model

    result = remove_model(open_repo(ctx), model, force=force)
    out = Output(as_json=as_json)
    if as_json:
        out.json(result.to_json())
        return
    names = [f"branch {n}" for n in result.branches] + [f"tag {n}" for n in result.tags]
    names += [f"channel {n}" for n in result.channels]
    out.info(f"removed model {model}: " + (", ".join(names) or "no refs"))
    if result.unbound:
        out.info(f"{result.unbound} is no longer its working folder (its files are untouched)")


def unbind(ctx: typer.Context, model: ModelArg, as_json: bool = JsonOption) -> None:
    """Forget a model's working folder; its files and versions stay.

    Use it to undo a binding made by mistake (a commit of the wrong folder). The next
    `mvc commit FOLDER --model MODEL` or `mvc checkout MODEL --to FOLDER --bind` binds again.

    Example: mvc unbind bert
    """
    from mvc.ops.worktrees import unbind as do_unbind

    binding = do_unbind(open_repo(ctx), model)
    out = Output(as_json=as_json)
    if as_json:
        out.json(binding.to_json())
        return
    out.info(f"{binding.path} is no longer the working folder of {model} (its files are untouched)")


def _fact(value: Any) -> str:
    """A lineage fact for people: ``type=LORA rank=8 alpha=16.0 target_modules=q_proj,v_proj``,
    a list one item per ``;``, never a Python repr (--json has the exact value)."""
    if isinstance(value, dict):
        if "spec" in value or "version" in value:  # a base or source version
            spec = value.get("spec") or f"{value.get('model')}@{str(value.get('version'))[:12]}"
            return f"{spec} ({str(value.get('version'))[:12]})" if value.get("spec") else spec
        return "  ".join(f"{k}={_fact(v)}" for k, v in value.items() if v not in (None, "", []))
    if isinstance(value, list):
        return (", " if all(not isinstance(v, dict) for v in value) else "; ").join(
            _fact(v) for v in value
        )
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
