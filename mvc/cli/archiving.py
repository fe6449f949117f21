"""Archiving: archive, restore, and the lifecycle policy's plan, apply and audit log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from mvc.cli.common import JsonOption, Wanted, every_command, handles_errors, open_repo
from mvc.cli.output import Output, human_size


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    commands: list[Callable[..., None]] = [archive, restore]
    for command in commands:
        if wanted(command.__name__):
            app.command(name=command.__name__)(handles_errors(command))
    if not wanted("policy"):
        return
    policy_app = typer.Typer(
        help="The lifecycle policy of mvc.yaml: what it would do, doing it, what it did.",
        no_args_is_help=True,
    )
    policy_commands: list[Callable[..., None]] = [policy_plan, policy_apply, policy_log]
    for command in policy_commands:
        policy_app.command(name=command.__name__.split("_", 1)[1])(handles_errors(command))
    app.add_typer(policy_app, name="policy")


def _short(oid: str) -> str:
    return oid[:12]


def archive(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="The version, e.g. bert@v1.0.0-rc.1 or bert@3f2a9c.")],
    remote: Annotated[
        str, typer.Option("--remote", "-r", help="The cold remote (`mvc remote add`).")
    ],
    as_json: bool = JsonOption,
) -> None:
    """Move a version's chunks to a cold remote; its metadata stays here (exit 24 on checkout).

    Chunks a live version shares stay here. A version a channel serves or a release tag names
    is refused. Undo with `mvc restore`.

    Example: mvc remote add cold s3://bucket/cold -o storage_class=GLACIER_IR
             mvc archive bert@v1.0.0-rc.1 --remote cold
    """
    from mvc.ops.archive import archive_version

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = archive_version(repo, spec, remote)
    if as_json:
        out.json(result.to_json())
        return
    out.info(
        f"archived {result.model}@{_short(result.version)} to {result.remote}: "
        f"{result.chunks_moved} chunk(s), {human_size(result.bytes_moved)}; "
        f"{result.chunks_kept} chunk(s) stay here (shared, or safetensors headers)"
    )


def restore(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="The archived version, e.g. bert@3f2a9c.")],
    as_json: bool = JsonOption,
) -> None:
    """Bring an archived version's chunks back from its cold remote, each verified (blake3).

    Example: mvc restore bert@v1.0.0-rc.1
    """
    from mvc.ops.archive import restore_version

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = restore_version(repo, spec)
    if as_json:
        out.json(result.to_json())
        return
    label = f"{result.model}@{_short(result.version)}"
    if not result.was_archived:
        out.info(f"{label} is not archived: nothing to restore")
        return
    out.info(
        f"restored {label} from {result.remote}: {result.chunks_restored} chunk(s), "
        f"{human_size(result.bytes_restored)}"
    )


def _action_line(action: Any) -> str:
    target = f" -> {action.remote}" if action.action in ("archive", "resume") else ""
    rule = f" [{action.rule}]" if action.rule else ""
    return f"{action.action} {action.model}@{_short(action.version)}{target}{rule}: {action.why}"


def policy_plan(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Every action mvc.yaml's rules would take now, and why (which rule, which facts).

    Nothing changes; `mvc policy apply` does it. Example: mvc policy plan --json
    """
    from mvc.ops.archive import plan

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = plan(repo)
    if as_json:
        out.json(result.to_json())
        return
    if result.source is None:
        out.info("no mvc.yaml here: no policy, nothing to do")
    for action in result.actions:
        out.line(_action_line(action))
    for action in result.kept:
        out.line(_action_line(action))
    if not result.actions:
        out.info("nothing to do")


def policy_apply(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Do what `mvc policy plan` shows; each action goes in the audit log (`mvc policy log`).

    Safe from cron and to interrupt: a re-run finishes interrupted work and never repeats a
    finished action. Exit 3 if an action failed (the others are done).
    Example: mvc policy apply
    """
    from mvc.ops.archive import apply, require_applied

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = apply(repo)
    if as_json:
        out.json(result.to_json())
    else:
        for action in result.actions:
            out.line(
                f"{action.status}: {action.action} {action.model}@{_short(action.version)}"
                f" [{action.rule}]: {action.detail}"
            )
        if not result.actions:
            out.info("nothing to do")
    require_applied(result)


def policy_log(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """The audit log: every archive and restore, oldest first, with its rule and reason.

    Example: mvc policy log --json
    """
    from mvc.ops.archive import policy_log as read_log

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    entries = read_log(repo)
    if as_json:
        out.json([entry.to_json() for entry in entries])
        return
    for entry in entries:
        rule = f" [{entry.rule}]" if entry.rule else ""
        out.line(
            f"{entry.seq:>4} {entry.when} {entry.action} {entry.model}@{_short(entry.version)}"
            f"{rule} by {entry.who}: {entry.why}"
        )
