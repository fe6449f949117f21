"""``mvc apply``: make the channels what mvc.yaml's ``channels:`` section declares (GitOps)."""

from __future__ import annotations

from typing import Annotated

import typer

from mvc.cli.common import JsonOption, Wanted, every_command, handles_errors, open_repo
from mvc.cli.output import Output


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    if wanted("apply"):
        app.command(name="apply")(handles_errors(apply))


def apply(
    ctx: typer.Context,
    plan: Annotated[
        bool, typer.Option("--plan", help="Show the moves that would be made; make none.")
    ] = False,
    message: Annotated[
        str, typer.Option("-m", "--message", help="Why, recorded in each deployment record.")
    ] = "",
    as_json: bool = JsonOption,
) -> None:
    """Move each channel to what the channels: section of mvc.yaml declares.

    Each move is a normal deployment record (the same gates and compare-and-swap as
    `mvc channel set` and `mvc deploy`); a channel already as declared is left alone, so apply
    is idempotent and safe to run in CI on every merge.

    Example: mvc apply --plan
    Example: mvc apply -m "release 1.5 canary"
    """
    from mvc.ops.apply import apply as do_apply

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_apply(repo, plan_only=plan, message=message)
    if as_json:
        out.json(result.to_json())
        return
    for step in result.steps:
        what = step.target if step.target is not None else f"{step.weight}%"
        weight = f" at {step.weight}%" if step.action == "canary" else ""
        done = f" -> record {step.record[:12]}" if step.record else ""
        out.line(f"{step.model}/{step.channel}: {step.action} {what}{weight} ({step.reason}){done}")
    for name in result.unchanged:
        out.info(f"{name}: as declared", lead="ok")
    if plan and result.steps:
        out.info(f"{len(result.steps)} move(s) planned; run `mvc apply` to make them")
