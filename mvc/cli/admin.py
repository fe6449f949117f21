"""Store care and setup: fsck, gc, repack, config, shell-init."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated

import typer

from mvc.cli.common import JsonOption, Wanted, every_command, handles_errors, open_repo
from mvc.cli.output import Output, human_size
from mvc.errors import CorruptObject, PartialFailure, UsageError


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    commands: list[Callable[..., None]] = [fsck, gc, repack, shell_init, completion]
    for command in commands:
        name = command.__name__.replace("_", "-")
        if wanted(name):
            app.command(name=name)(handles_errors(command))
    if not wanted("config"):
        return
    config_app = typer.Typer(
        help="Read and change configuration (.mvc/config.yaml).", no_args_is_help=True
    )
    config_commands: list[Callable[..., None]] = [config_get, config_set, config_unset, config_list]
    for command in config_commands:
        config_app.command(name=command.__name__.split("_", 1)[1])(handles_errors(command))
    app.add_typer(config_app, name="config")


def fsck(
    ctx: typer.Context,
    quarantine: Annotated[
        bool,
        typer.Option(
            "--quarantine",
            help="Move corrupt objects aside (.mvc/quarantine/) so a pull can fetch good copies.",
        ),
    ] = False,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Do not ask remotes whether they still hold objects missing here (listed as "
            "unverified).",
        ),
    ] = False,
    repair_refs: Annotated[
        bool,
        typer.Option(
            "--repair-refs",
            help="Set torn ref-log entries, and entries that do not follow the one before, aside "
            "(.mvc/quarantine/refs/): a note takes their place, the ref reads its last good "
            "value and its log is one chain again.",
        ),
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """Verify every object (hash) and every ref (log and closure). Exit 12 on damage.

    An object missing here that a remote promises is looked up on that remote: missing there
    too is damage (exit 12); a remote that cannot be reached leaves it unverified (exit 3).
    To repair: mvc fsck --quarantine, then mvc pull REMOTE MODEL (or --all).
    """
    from mvc.ops.maintenance import fsck as do_fsck

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    report = do_fsck(
        repo,
        quarantine=quarantine,
        offline=offline,
        repair_refs=repair_refs,
        progress=out.progress(),
    )
    if report.repaired_refs and not as_json:
        for repaired in report.repaired_refs:
            out.info(f"repaired {repaired}: the entry was set aside to .mvc/quarantine/refs/")
    if as_json:
        out.json(report.to_json())
    else:
        for problem in report.problems + report.broken_versions:
            out.line(f"{problem.kind:8} {problem.object or '-'}  {problem.detail}")
        if report.promised:
            out.info(
                f"{len(report.promised)} objects not here are expected from a remote "
                "(not damage: data not pulled yet, which `mvc pull` or `mvc checkout` fetches, "
                "or archived chunks, which `mvc restore` brings back)"
            )
        for problem in report.unverified:
            out.info(f"unverified {problem.object}  {problem.detail}")
        out.info(
            f"checked {report.objects_checked} objects and {report.refs_checked} refs: "
            f"{report.reachable} reachable, {report.dangling} unreachable (dangling), "
            f"{len(report.problems)} problems"
        )
    if report.quarantined and not as_json:
        out.info(
            f"moved {len(report.quarantined)} corrupt object(s) to .mvc/quarantine/; "
            f"{len(report.broken_versions)} version(s) cannot be read until "
            "`mvc pull REMOTE MODEL` fetches good copies"
        )
    if not report.ok:
        hint = (
            "now `mvc pull REMOTE MODEL` fetches good copies of what was set aside"
            if report.quarantined
            else "`mvc fsck --quarantine` sets corrupt objects aside; then `mvc pull` from a "
            "remote that has them fetches good copies"
        )
        if any(p.kind == "ref" for p in report.problems) and not report.repaired_refs:
            hint += "; `mvc fsck --repair-refs` sets damaged ref-log entries aside"
        raise CorruptObject(f"the store has {len(report.problems)} problem(s)", hint=hint)
    if report.unverified and not report.offline:
        raise PartialFailure(
            f"{len(report.unverified)} object(s) missing here could not be checked on the "
            "remote that should have them, so fsck cannot say they are safe",
            hint="run `mvc fsck` again when the remote is reachable, or `mvc pull REMOTE "
            "MODEL` now to fetch them",
        )


def gc(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be deleted.")
    ] = False,
    grace: Annotated[
        str | None,
        typer.Option("--grace", help="Keep unreachable objects younger than this (e.g. 2h, 0s)."),
    ] = None,
    no_repack: Annotated[
        bool, typer.Option("--no-repack", help="Do not compress loose objects.")
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """Delete objects no branch, tag, channel or recent ref-log entry reaches, then repack.

    Example: mvc gc --dry-run
    """
    from mvc.config import validate
    from mvc.ops.maintenance import gc as do_gc

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_gc(
        repo,
        dry_run=dry_run,
        grace=validate("gc.grace", grace) if grace else None,
        repack_objects=False if no_repack else None,
        progress=out.progress(),
    )
    if as_json:
        out.json(result.to_json())
        return
    verb = "would delete" if dry_run else "deleted"
    out.info(
        f"{verb} {len(result.deleted)} unreachable objects ({human_size(result.deleted_bytes)}); "
        f"kept {result.reachable} reachable, {result.kept_by_log} reached only by recent "
        f"ref-log entries and {result.kept_young} recent ones"
    )
    if result.repack and result.repack.compressed:
        r = result.repack
        out.info(
            f"compressed {r.compressed} objects ({r.deltas} as deltas): "
            f"{human_size(r.bytes_before)} -> {human_size(r.bytes_after)}"
        )


def repack(
    ctx: typer.Context,
    no_deltas: Annotated[
        bool,
        typer.Option(
            "--no-deltas", help="Only compress; store no chunk as a delta against its parent's."
        ),
    ] = False,
    auto: Annotated[
        bool,
        typer.Option(
            "--auto",
            help="Only what commits queued for repack.auto (what the background repack after "
            "`mvc commit` runs); nothing if another such run is under way.",
        ),
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """Compress loose objects where it pays (byte-grouped floats, zstd), and store each chunk
    of a fine-tuned tensor as a delta against its parent version's chunk where that is
    smaller. Ids never change.

    Examples:
      mvc repack
      mvc config set repack.auto true     # repack in the background after commits
    """
    from mvc.ops.maintenance import repack as do_repack

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    if auto:
        if no_deltas:
            raise UsageError("--auto makes deltas where they pay; it takes no --no-deltas")
        from mvc.ops.queued_repack import run_pending

        run = run_pending(repo, progress=out.progress())
        if not run.ran:
            out.info("another background repack is running; nothing done")
        result = run.repacked
    else:
        result = do_repack(repo, progress=out.progress(), deltas=not no_deltas)
    if as_json:
        out.json(result.to_json())
        return
    out.info(
        f"examined {result.examined} objects, compressed {result.compressed} "
        f"({result.deltas} as deltas): "
        f"{human_size(result.bytes_before)} -> {human_size(result.bytes_after)}"
    )


def config_get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="e.g. user.name")],
    as_json: bool = JsonOption,
) -> None:
    """Print one configuration value (merged: user < store < environment)."""
    from mvc.config import KEYS

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    if key not in KEYS and not key.startswith("remote."):
        raise UsageError(
            f"unknown config key {key!r}", hint="known keys: " + ", ".join(sorted(KEYS))
        )
    value = repo.config.get(key)
    if as_json:
        out.json({"key": key, "value": value, "source": repo.config.source(key)})
    elif value is not None:
        out.line(str(value).lower() if isinstance(value, bool) else str(value))


GlobalOption = Annotated[
    bool,
    typer.Option("--global", help="The user config (~/.config/mvc/config.yaml), not the store's."),
]


def config_set(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="e.g. user.name")],
    value: Annotated[str, typer.Argument(help="The new value.")],
    user: GlobalOption = False,
) -> None:
    """Set a value in the store's config, or with --global in your user config (validated).

    The user config is the lowest layer: a store's config, MVC_* variables and flags override it.

    Examples:
      mvc config set user.name "Ada Lovelace"
      mvc config set --global user.email ada@example.com
    """
    from mvc.config import validate

    parsed = validate(key, value)
    if user:
        from mvc.repo import editing_user_config

        with editing_user_config() as values:
            values[key] = parsed
        return
    repo = open_repo(ctx)
    with repo.editing_config() as values:
        values[key] = parsed


def config_unset(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="e.g. user.name")],
    user: GlobalOption = False,
) -> None:
    """Remove a value from the store's config (or, with --global, from your user config)."""
    if user:
        from mvc.config import user_config_path
        from mvc.repo import editing_user_config

        with editing_user_config() as values:
            if key not in values:
                raise UsageError(f"{key} is not set in {user_config_path(os.environ)}")
            del values[key]
        return
    repo = open_repo(ctx)
    with repo.editing_config() as values:
        if key not in values:
            raise UsageError(f"{key} is not set in {repo.config_path}")
        del values[key]


def config_list(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """List every configuration value with where it comes from, and the identity in effect.

    Layers, lowest first: user (~/.config/mvc/config.yaml) < store (.mvc/config.yaml) <
    environment (MVC_USER_NAME, MVC_CORE_JOBS…) < flags. The identity versions are recorded
    with is user.name/user.email, else git's, else the operating system's user.
    """
    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    items = repo.config.items()
    if as_json:
        out.json(
            {
                k: {"value": v, "source": repo.config.source(k) or "default"}
                for k, v in sorted(items.items())
            }
        )
        return
    for key, value in sorted(items.items()):
        shown = str(value).lower() if isinstance(value, bool) else value
        out.line(f"{key}={shown}  # {repo.config.source(key) or 'default'}")
    out.info(f"identity (recorded as author): {repo.identity()}  # {repo.identity_source()}")


def shell_init(
    ctx: typer.Context,
    shell: Annotated[str, typer.Argument(help="bash, zsh or fish")] = "bash",
) -> None:
    """Print a shell function `mv` that forwards mvc's subcommands to mvc.

    It forwards only when the first word is an mvc subcommand and no file or folder of that
    name exists here, so `mv models backup/` still moves a folder called `models`.

    Example: eval "$(mvc shell-init bash)"
    """
    from mvc.cli.shell import SUBCOMMANDS, shell_function

    root = ctx.find_root()
    listing = getattr(root.command, "list_commands", None)  # the app's group (main.WHOLE_APP)
    names = [n for n in (listing(root) if listing else []) if n != "shell-init"]
    Output().line(shell_function(shell, names or SUBCOMMANDS))


def completion(shell: Annotated[str, typer.Argument(help="bash, zsh or fish")] = "bash") -> None:
    """Print a shell completion script: commands, options, models, branches, tags, channels.

    Names come from the store of the current folder (or -C DIR), read without loading models.

    Examples:
      eval "$(mvc completion bash)"        # in ~/.bashrc
      eval "$(mvc completion zsh)"         # in ~/.zshrc, after compinit
      mvc completion fish | source         # in ~/.config/fish/config.fish
    """
    from mvc.cli.shell import completion_script

    Output().line(completion_script(shell))
