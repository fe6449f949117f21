"""Deployment commands: channel (set/show/list/history), deploy, promote, switch, rollback,
route and export. Every move prints the new record's id on stdout and a summary on stderr."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mvc.cli.common import (
    AllowDeprecatedOption,
    ChannelArg,
    JsonOption,
    ModelArg,
    Wanted,
    every_command,
    handles_errors,
    open_repo,
)
from mvc.cli.output import Output, human_size
from mvc.errors import UsageError

if TYPE_CHECKING:
    from mvc.ops.deploy import Move, Namer, Record

MessageOption = typer.Option(
    "", "-m", "--message", help="Why (kept in the record and the ref log)."
)
ForceOption = typer.Option(
    False,
    "--force",
    "-f",
    help="Move even though a promotion gate refuses it (needs -m WHY; recorded in the record).",
)
ExpectOption = typer.Option(
    None,
    "--expect",
    help="Move only if the channel is still at this record (id prefix; 'none': must not exist).",
    metavar="RECORD",
)


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    commands: list[Callable[..., None]] = [deploy, promote, switch, rollback, route, export]
    for command in commands:
        if wanted(command.__name__):
            app.command(name=command.__name__)(handles_errors(command))
    if not wanted("channel"):
        return
    channel_app = typer.Typer(
        help="Deployment channels: which version(s) serve, and their history.", no_args_is_help=True
    )
    channel_commands: list[Callable[..., None]] = [
        channel_set,
        channel_show,
        channel_list,
        channel_history,
    ]
    for command in channel_commands:
        channel_app.command(name=command.__name__.split("_", 1)[1])(handles_errors(command))
    app.add_typer(channel_app, name="channel")


# --- rendering ------------------------------------------------------------------------------------


def _expected(value: str | None) -> Any:
    from mvc.ops.deploy import _UNSET

    if value is None:
        return _UNSET
    return None if value.lower() == "none" else value


def _run_move(ctx: typer.Context, as_json: bool, action: Callable[[Any], Move]) -> None:
    from mvc.ops.deploy import Namer

    repo = open_repo(ctx)
    move = action(repo)
    out = Output(as_json=as_json)
    if as_json:
        out.json(move.to_json())
        return
    record = move.record
    assert record.id is not None
    out.line(record.id)
    before = f"{move.old.state} -> " if move.old else "new channel -> "
    out.info(
        f"{before}{record.state}: "
        f"{Namer(repo).arms(record)} (record {record.id[:12]}, entry {move.entry.seq}"
        + (f", restores record {record.restores[:12]})" if record.restores else ")"),
        lead=f"{move.model} {move.channel}:",
    )
    for note in move.notes:
        out.info(f"note: {note}")


def _record_lines(record: Record, namer: Namer) -> list[str]:
    lines = [
        f"channel  {record.model} {record.channel}",
        f"record   {record.id}",
        f"state    {record.state}",
        f"action   {record.action}"
        + (f" (restores {record.restores[:12]})" if record.restores else ""),
        f"when     {record.when}",
        f"who      {record.who}",
        f"why      {record.why}",
    ]
    if record.override:
        lines.append(f"override {record.override['who']}: {record.override['why']}")
        lines += [f"  broke  {rule}" for rule in record.override["broken"]]
    lines += [
        "arms",
    ]
    for arm in record.arms:
        target = namer.target(record.model, arm)
        adapter = f" + {arm.adapter.version[:12]}" if arm.adapter else ""
        lines.append(f"  {arm.label:8} {arm.weight:>3}%  {target:24} {arm.version[:12]}{adapter}")
    return lines


# --- channel group --------------------------------------------------------------------------------


def channel_set(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    target: Annotated[
        str,
        typer.Argument(
            help="REV of the model (v1.4.0, main, an id), or 'REV + ADAPTER@REV'.",
            show_default=False,
        ),
    ],
    message: str = MessageOption,
    expect: str | None = ExpectOption,
    force: bool = ForceOption,
    as_json: bool = JsonOption,
) -> None:
    """Point a channel at one version, 100% of traffic (creates the channel).

    Examples:
      mvc channel set bert prod v1.4.0 -m "first release"
      mvc channel set bert prod "v2.0.0 + sql-lora@v1.3.0"
    """
    from mvc.ops import deploy as ops

    _run_move(
        ctx,
        as_json,
        lambda repo: ops.set_channel(
            repo, model, channel, target, message=message, expected=_expected(expect), force=force
        ),
    )


def channel_show(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    as_json: bool = JsonOption,
    format: Annotated[
        str | None,
        typer.Option(
            "--format", help="yaml: the state as a channels: section of mvc.yaml (mvc apply)."
        ),
    ] = None,
) -> None:
    """Show a channel's current deployment record: arms, weights, who, when, why."""
    from mvc.ops import deploy as ops

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    if format is not None:
        from mvc.errors import UsageError
        from mvc.ops.apply import render_state

        if format != "yaml":
            raise UsageError(f"unknown --format {format!r}", hint="--format yaml")
        out.write_bytes(render_state(repo, model, channel).encode())
        return
    record = ops.require_current(repo, model, channel)
    if as_json:
        out.json(record.to_json())
        return
    for line in _record_lines(record, ops.Namer(repo)):
        out.line(line)


def channel_list(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    as_json: bool = JsonOption,
) -> None:
    """List channels with their state and arms."""
    from mvc.ops import deploy as ops

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    found = ops.list_channels(repo, model)
    if as_json:
        out.json([c.to_json() for c in found])
        return
    if not found:
        out.info("no channels yet; `mvc channel set MODEL CHANNEL REV` creates one")
    namer = ops.Namer(repo)
    for item in found:
        out.line(
            f"{item.model:20} {item.channel:12} {item.record.state:9} {namer.arms(item.record)}"
        )


def channel_history(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Show the record serving at this instant (ISO-8601, UTC by default)."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("-n", "--limit", help="Show the newest N moves.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Every move of a channel, newest first: when, who, what, why.

    Examples:
      mvc channel history bert prod
      mvc channel history bert prod --at 2026-03-03T14:00
    """
    from mvc.ops import deploy as ops

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    namer = ops.Namer(repo)
    if at is not None:
        item = ops.at(repo, model, channel, at)
        if as_json:
            out.json({"at": at, **item.to_json()})
            return
        moment = ops.parse_instant(at).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.line(f"at       {moment}" + (f" (entry {item.entry.seq})" if item.entry else ""))
        for line in _record_lines(item.record, namer):
            out.line(line)
        return
    items = list(reversed(ops.history(repo, model, channel)))
    if limit is not None:
        items = items[:limit]
    if as_json:
        out.json([i.to_json() for i in items])
        return
    for item in items:
        record = item.record
        seq = f"#{item.entry.seq:<3}" if item.entry else "    "
        out.line(
            f"{seq} {record.when}  {(record.id or '')[:12]}  {record.action:8} "
            f"{record.state:9} {namer.arms(record)}"
        )
        out.line(f"     {record.who}: {record.why}")


# --- moves ----------------------------------------------------------------------------------------


def deploy(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    target: Annotated[
        str | None,
        typer.Argument(
            help="REV to roll out (or 'REV + ADAPTER@REV'); not with --step or --ab.",
            show_default=False,
        ),
    ] = None,
    canary: Annotated[
        int | None, typer.Option("--canary", help="Start a canary with this % of traffic.")
    ] = None,
    step: Annotated[
        int | None, typer.Option("--step", help="Set the running canary's share to this %.")
    ] = None,
    blue_green: Annotated[
        bool, typer.Option("--blue-green", help="Stage TARGET as green at 0% (then `switch`).")
    ] = False,
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Mirror traffic to TARGET; responses discarded.")
    ] = False,
    ab: Annotated[
        str | None,
        typer.Option(
            "--ab", help="A/B arms REV=WEIGHT,REV=WEIGHT (named a, b, …).", metavar="ARMS"
        ),
    ] = None,
    message: str = MessageOption,
    expect: str | None = ExpectOption,
    force: bool = ForceOption,
    as_json: bool = JsonOption,
) -> None:
    """Roll a version out on a channel: canary, blue-green, shadow or A/B.

    Examples:
      mvc deploy bert prod v1.5.0 --canary 10
      mvc deploy bert prod --step 50
      mvc deploy bert prod v1.6.0 --blue-green
      mvc deploy bert prod v1.6.0 --shadow
      mvc deploy bert prod --ab v1.5.0=50,v1.6.0=50
    """
    from mvc.ops import deploy as ops

    modes = [
        name
        for name, given in (
            ("--canary", canary is not None),
            ("--step", step is not None),
            ("--blue-green", blue_green),
            ("--shadow", shadow),
            ("--ab", ab is not None),
        )
        if given
    ]
    if len(modes) != 1:
        raise UsageError(
            "say how to deploy: exactly one of --canary N, --step N, --blue-green, --shadow, --ab"
            + (f" (got {', '.join(modes)})" if modes else ""),
            hint=f"to send all traffic to one version: `mvc channel set {model} {channel} REV`",
        )
    mode = modes[0]
    takes_target = mode in ("--canary", "--blue-green", "--shadow")
    if takes_target and target is None:
        raise UsageError(
            f"{mode} needs the version to roll out: mvc deploy {model} {channel} REV {mode}"
        )
    if not takes_target and target is not None:
        raise UsageError(f"{mode} takes no REV argument (got {target!r})")
    expected = _expected(expect)

    def action(repo: Any) -> Move:
        kwargs = {"message": message, "expected": expected, "force": force}
        if canary is not None:
            assert target is not None
            return ops.deploy_canary(repo, model, channel, target, canary, **kwargs)
        if step is not None:
            return ops.step_canary(repo, model, channel, step, **kwargs)
        if blue_green:
            assert target is not None
            return ops.deploy_blue_green(repo, model, channel, target, **kwargs)
        if shadow:
            assert target is not None
            return ops.deploy_shadow(repo, model, channel, target, **kwargs)
        assert ab is not None
        return ops.deploy_ab(repo, model, channel, ops.parse_ab(ab), **kwargs)

    _run_move(ctx, as_json, action)


def promote(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    arm: Annotated[
        str | None, typer.Option("--arm", help="A/B test: the arm (a, b, …) that wins.")
    ] = None,
    message: str = MessageOption,
    expect: str | None = ExpectOption,
    force: bool = ForceOption,
    as_json: bool = JsonOption,
) -> None:
    """Finish a rollout: the canary (or an A/B arm) becomes the stable 100%.

    After a blue-green switch, promote releases the warm blue.

    Example: mvc promote bert prod -m "error rate flat for 24h"
    """
    from mvc.ops import deploy as ops

    _run_move(
        ctx,
        as_json,
        lambda repo: ops.promote(
            repo,
            model,
            channel,
            arm=arm,
            message=message,
            expected=_expected(expect),
            force=force,
        ),
    )


def switch(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    message: str = MessageOption,
    expect: str | None = ExpectOption,
    force: bool = ForceOption,
    as_json: bool = JsonOption,
) -> None:
    """Blue-green: send all traffic to the staged green; the old version stays warm as blue.

    Run it again to switch back.

    Example: mvc switch bert prod
    """
    from mvc.ops import deploy as ops

    _run_move(
        ctx,
        as_json,
        lambda repo: ops.switch(
            repo, model, channel, message=message, expected=_expected(expect), force=force
        ),
    )


def rollback(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="An earlier record (id prefix from `channel history`) or a version REV that "
            "served alone.",
            metavar="RECORD|REV",
        ),
    ] = None,
    message: str = MessageOption,
    expect: str | None = ExpectOption,
    as_json: bool = JsonOption,
) -> None:
    """Restore the last state where one stable version served alone, as a new record.

    Without --to: the state before the rollout in progress (or, if none is, before the most
    recent one). History is never rewritten.

    Examples:
      mvc rollback bert prod -m "p99 latency doubled"
      mvc rollback bert prod --to 3f2a9c1d
    """
    from mvc.ops import deploy as ops

    _run_move(
        ctx,
        as_json,
        lambda repo: ops.rollback(
            repo, model, channel, to=to, message=message, expected=_expected(expect)
        ),
    )


# --- serving --------------------------------------------------------------------------------------


def route(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    key: Annotated[
        list[str], typer.Option("--key", "-k", help="Request key (user id…); repeatable.")
    ],
    path: Annotated[
        bool, typer.Option("--path", help="Also materialise and print the local folder.")
    ] = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Where the key was routed at this instant (ISO-8601, UTC unless a zone is "
            "given), from the channel's history.",
            metavar="TIME",
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Print which arm serves each request key (sticky: the same key, the same arm).

    Output per key: KEY LABEL VERSION [ADAPTER-VERSION] [PATH]. With --at, which version
    served the key at that instant (audit): the channel move in force then, and the same
    bucket function as the Router, followed by the record's id and when it was made.

    Example: mvc route bert prod --key user-42 --at 2026-03-03T12:30:00Z
    """
    from mvc.router import Router

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    if at is not None:
        _route_at(repo, out, model, channel, key, at, path)
        return
    router = Router(repo, model, channel)
    decisions = [router.route(k) for k in key]
    if as_json:
        rows = []
        for decision in decisions:
            row = decision.to_json()
            if path:
                row["path"] = router.path(decision)
                row["adapter_path"] = router.adapter_path(decision)
            rows.append(row)
        out.json(rows if len(rows) != 1 else rows[0])
        return
    for decision in decisions:
        parts = [decision.key, decision.label, decision.version]
        if decision.arm.adapter:
            parts.append(decision.arm.adapter.version)
        if path:
            parts.append(router.path(decision))
            adapter_path = router.adapter_path(decision)
            if adapter_path:
                parts.append(adapter_path)
        out.line(" ".join(parts))
    for shadow in router.shadows:
        out.info(f"mirror a copy of each request to shadow {shadow.version[:12]}")


def _route_at(
    repo: Any, out: Output, model: str, channel: str, keys: list[str], at: str, path: bool
) -> None:
    from mvc.decisions import route_at

    if path:
        raise UsageError("--path and --at do not go together: --at answers from the history")
    answers = [route_at(repo, model, channel, k, at) for k in keys]
    if out.as_json:
        rows = [answer.to_json() for answer in answers]
        out.json(rows if len(rows) != 1 else rows[0])
        return
    for answer in answers:
        decision = answer.decision
        parts = [decision.key, decision.label, decision.version]
        if decision.arm.adapter:
            parts.append(decision.arm.adapter.version)
        out.line(" ".join(parts))
    first = answers[0]
    out.info(
        f"at {first.at}: record {first.decision.record[:12]} "
        f"({first.action} -> {first.state}, made {first.since})"
    )


def export(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="triton, kserve, vllm, istio, mlflow or dir.", show_default=False
        ),
    ],
    to: Annotated[
        str,
        typer.Option(
            "--to", help="Folder or fsspec URL (s3://bucket/serving/bert).", show_default=False
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Served model name; istio: the service host (default: from the model)."
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="triton: backend (python, vllm…; default python); kserve: modelFormat "
            "(default huggingface).",
        ),
    ] = None,
    serve_root: Annotated[
        str | None,
        typer.Option(
            "--serve-root",
            help="Where the server sees --to (e.g. pvc://models/bert); default --to itself.",
        ),
    ] = None,
    python_model: Annotated[
        str | None,
        typer.Option("--python-model", help="triton python backend: model.py for each version."),
    ] = None,
    allow_deprecated: bool = AllowDeprecatedOption,
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            help="kserve: a runtime argument for the predictor (repeatable), e.g. --arg=--task=fill_mask.",
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Non-secret storage option KEY=VALUE for --to, as for `remote add` "
            "(e.g. endpoint_url); a remote whose URL holds --to lends its options.",
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Write a channel's model files and server config where an inference server loads them.

    Prints the config files written (relative to --to) on stdout.

    Examples:
      mvc export bert prod --format triton --to ./model_repository --backend vllm
      mvc export bert prod --format kserve --to s3://bucket/serving/bert
      mvc export bert prod --format kserve --to s3://models/bert -o endpoint_url=http://minio:9000
      mvc export bert prod --format kserve --to s3://b/bert --arg=--task=text_classification
      mvc export bert prod --format vllm --to /srv/bert
      mvc export bert prod --format istio --to ./mesh --name bert.ml.svc.cluster.local
      mvc export bert prod --format dir --to /srv/bert-prod
    """
    from mvc.cli.remotes import _parse_options
    from mvc.exports import ExportOptions
    from mvc.exports import export as do_export

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    options = ExportOptions(
        name=name,
        backend=backend,
        serve_root=serve_root,
        python_model=python_model,
        allow_deprecated=allow_deprecated,
        storage_options=_parse_options(option),
        args=list(arg or []),
    )
    result = do_export(repo, model, channel, fmt, to, options)
    if as_json:
        for warning in result.warnings:
            out.warn(warning)
        out.json(result.to_json())
        return
    for key in result.configs:
        out.line(key)
    out.info(
        f"exported {model} {channel} (record {result.record[:12]}) as {fmt} to {to}: "
        f"{len(result.written)} files written ({human_size(result.bytes_written)}), "
        f"{result.skipped} unchanged, {len(result.removed)} removed"
    )
    for warning in result.warnings:
        out.warn(warning)
