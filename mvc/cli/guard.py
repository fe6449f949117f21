"""SLO commands: guard (hold a rollout to mvc.yaml's SLOs, roll back, advance) and explain
(what differs between a channel's stable and candidate arms)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mvc.cli.common import (
    ChannelArg,
    JsonOption,
    ModelArg,
    Wanted,
    every_command,
    handles_errors,
    open_repo,
)
from mvc.cli.output import Output

if TYPE_CHECKING:
    from mvc.ops.explain import Explanation
    from mvc.ops.guard import GuardResult

ArmOption = typer.Option(
    None, "--arm", help="The candidate arm of an A/B test (needed with three or more arms)."
)


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    for command in (guard, explain):
        if wanted(command.__name__):
            app.command(name=command.__name__)(handles_errors(command))


def guard(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    advance: Annotated[
        bool,
        typer.Option("--advance", help="When healthy, take the next canary step (or promote)."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the decision; change nothing.")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Keep evaluating every --interval until the channel has no candidate."
        ),
    ] = False,
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval",
            help="With --watch: time between evaluations (default: the SLO's interval).",
            metavar="DURATION",
        ),
    ] = None,
    arm: str | None = ArmOption,
    as_json: bool = JsonOption,
) -> None:
    """Hold a channel's candidate arm (canary, green, shadow or an A/B arm) to the model's SLOs in mvc.yaml.

    Broken: rolls the channel back (the record's reason names each broken rule's metric, value, threshold, window and sample count) and exits 20. Too little data: changes nothing and exits 21. Healthy: exits 0; with --advance it first takes the next step of the SLO's `steps` (10 -> 25 -> 50 -> promote). A channel with no candidate exits 0 (nothing to guard), so cron can run it every few minutes. --watch runs until the channel has no candidate (with --json: one line per evaluation); Ctrl-C exits 130.

    Examples:
      mvc guard bert prod --dry-run
      mvc guard bert prod --advance              # from cron or a CI schedule
      mvc guard bert prod --watch --interval 60s --advance
    """
    from mvc.errors import UsageError
    from mvc.ops.guard import guard as run_guard
    from mvc.policy.text import parse_duration

    if interval is not None and not watch:
        raise UsageError("--interval is for --watch", hint="add --watch, or drop --interval")
    seconds = parse_duration(interval) if interval is not None else None
    if seconds is not None and seconds <= 0:
        raise UsageError("--interval must be longer than 0s")
    out = Output(as_json=as_json)
    if not watch:
        repo = open_repo(ctx)
        result = run_guard(repo, model, channel, arm=arm, advance=advance, dry_run=dry_run)
        _show(out, result)
        _exit_for(result)
        return
    _watch(ctx, out, model, channel, seconds, arm, advance, dry_run)


def _watch(
    ctx: typer.Context,
    out: Output,
    model: str,
    channel: str,
    seconds: float | None,
    arm: str | None,
    advance: bool,
    dry_run: bool,
) -> None:
    from mvc.ops.guard import watch as run_watch

    last = None
    rolled_back = False
    for result in run_watch(
        lambda: open_repo(ctx),
        model,
        channel,
        interval=seconds,
        arm=arm,
        advance=advance,
        dry_run=dry_run,
    ):
        _show(out, result, json_lines=True)
        sys_flush()
        last = result
        rolled_back = rolled_back or (result.action == "rollback" and result.move is not None)
    if last is not None:
        out.info(f"stopped watching: {last.why}" if last.status == "idle" else "stopped watching")
    if rolled_back:
        _exit_for(last)


def sys_flush() -> None:
    import sys

    sys.stdout.flush()
    sys.stderr.flush()


def _exit_for(result: GuardResult | None) -> None:
    from mvc.errors import Inconclusive, SloBroken

    if result is None:
        return
    where = f"{result.model} {result.channel}"
    if result.status == "broken":
        if result.move is not None:
            raise SloBroken(
                f"SLO broken: rolled {where} back (record {result.move.record.id or ''})",
                hint=f"see `mvc channel history {where}` and `mvc explain {where}`",
            )
        if result.conflict:
            raise SloBroken(f"SLO broken: {result.conflict}")
        raise SloBroken(
            f"SLO broken: {where} would be rolled back (dry run: nothing changed)",
            hint=f"`mvc explain {where}` shows what differs",
        )
    if result.status == "inconclusive":
        raise Inconclusive(
            f"inconclusive: {result.why}; nothing changed", hint="run again when more traffic came"
        )


# --- rendering ------------------------------------------------------------------------------------


def _show(out: Output, result: GuardResult, *, json_lines: bool = False) -> None:
    if out.as_json:
        if json_lines:  # --watch: one compact document per evaluation (JSON lines)
            import json

            from mvc.cli.output import encode_json

            out.line(json.dumps(json.loads(encode_json(result.to_json())), sort_keys=True))
        else:
            out.json(result.to_json())
        return
    for line in render_guard(result):
        out.line(line)
    if result.dry_run and result.action:
        out.info(f"dry run: would {result.action}; nothing changed")
    if result.conflict:
        out.warn(result.conflict)
    for note in result.move.notes if result.move else []:
        out.info(note)
    for note in result.notes:
        out.warn(note)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def render_guard(result: GuardResult) -> list[str]:
    lines = [f"{result.status}: {result.model} {result.channel} ({result.state}) at {result.at}"]
    if result.candidate is not None and result.baseline is not None:
        cand, base = result.candidate, result.baseline
        lines.append(
            f"  candidate {cand.label} {cand.version[:12]} ({cand.weight}%) against "
            f"{base.label} {base.version[:12]} ({base.weight}%), since {result.since}"
        )
    lines.append(f"  {result.why}")
    for m in result.assessment.measurements if result.assessment else ():
        lines.append(f"  measurement {m.window.describe()}: {m.phase}")
        for r in m.results:
            samples = f"{r.samples} samples" + (
                f", stable {r.stable_samples}" if r.stable_samples is not None else ""
            )
            lines.append(f"    {r.phase:<12} {r.rule}: {r.text} ({samples})")
    if result.move is not None:
        record = result.move.record
        lines.append(f"{result.action}: record {record.id} ({record.state}): {record.why}")
    elif result.action and not result.dry_run and result.conflict is None:
        lines.append(f"{result.action}: not done")
    if result.explanation is not None:
        lines.append("what differs:")
        lines.extend("  " + line for line in render_findings(result.explanation))
    return lines


def render_findings(explanation: Explanation) -> list[str]:
    if not explanation.findings:
        return ["nothing: both arms serve the same model, data and environment"]
    return [f"{f.kind:<12} {f.detail}" for f in explanation.findings]


# --- explain --------------------------------------------------------------------------------------


def explain(
    ctx: typer.Context,
    model: ModelArg,
    channel: ChannelArg,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Metrics of the last DURATION (default: since the rollout step began).",
            metavar="DURATION",
        ),
    ] = None,
    no_stats: Annotated[
        bool, typer.Option("--no-stats", help="Name changed tensors without their statistics.")
    ] = False,
    arm: str | None = ArmOption,
    as_json: bool = JsonOption,
) -> None:
    """Explain what differs between a channel's stable and candidate arms: the model, its data, or the serving environment.

    Shows the diff of the two versions (weights per tensor, config, tokenizer, datasets, code commit, params, base model and adapter), each metric's summary per arm, and the hosts and serving environments (Python, package versions, hardware) each arm's metrics came from. After a rollback, explains the record that was rolled back.

    Examples:
      mvc explain bert prod
      mvc explain bert prod --since 1h --json
    """
    from mvc.ops.explain import explain as run_explain
    from mvc.policy.text import parse_duration

    repo = open_repo(ctx)
    start = None
    if since is not None:
        start = repo.clock().timestamp() - parse_duration(since)
    result = run_explain(repo, model, channel, arm=arm, since=start, stats=not no_stats)
    out = Output(as_json=as_json)
    if as_json:
        out.json(result.to_json())
        return
    for line in render_explanation(result):
        out.line(line)


def render_explanation(result: Explanation) -> list[str]:
    from mvc.cli.versions import render_diff

    a, b = result.baseline, result.candidate
    lines = [
        f"{result.model} {result.channel}: {b.label} {b.name} ({b.weight}%) against "
        f"{a.label} {a.name} ({a.weight}%), record {result.record[:12]}"
        + (f", rolled back by {result.rolled_back_by[:12]}" if result.rolled_back_by else ""),
        f"metrics from {result.since} to {result.until}",
        "",
        "what differs:",
    ]
    lines.extend("  " + line for line in render_findings(result))
    if result.metrics:
        lines += ["", f"metrics ({a.label} -> {b.label}):"]
        for m in result.metrics:
            change = f" ({m.mean_change:+.1%})" if m.mean_change is not None else ""
            lines.append(
                f"  {m.name}: mean {_num(m.baseline.mean)} -> {_num(m.candidate.mean)}{change}, "
                f"p99 {_num(m.baseline.p99)} -> {_num(m.candidate.p99)}, "
                f"n {m.baseline.count} -> {m.candidate.count}"
            )
    for label, sources in result.environments.items():
        lines += ["", f"serving environment of {label}:"]
        if not sources:
            lines.append("  (no points with a source)")
        for source in sources:
            env = ", ".join(f"{k}={v}" for k, v in sorted(source.environment.items()))
            lines.append(f"  {source.host} pid {source.process} ({source.points} points): {env}")
    for title, diff in (("model", result.diff), ("adapter", result.adapter_diff)):
        if diff is not None:
            lines += ["", f"{title} diff:"]
            lines.extend("  " + line for line in render_diff(diff))
    return lines
