"""Remotes on the command line: ``remote`` (add, list, remove, set-option, show), ``push``,
``fetch``, ``pull`` and ``clone``. Each command calls one op and renders its result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from mvc.cli.common import JsonOption, Wanted, every_command, handles_errors, open_repo
from mvc.cli.output import Output, RichProgress, human_size, safe_text
from mvc.errors import PartialFailure, UsageError
from mvc.progress import Progress

RemoteArg = Annotated[str, typer.Argument(help="Remote name (e.g. origin).", show_default=False)]
JobsOption = Annotated[
    int | None,
    typer.Option(
        "--jobs", "-j", min=1, help="Parallel transfers (default: config core.jobs if set, else 8)."
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every ref of every model.")]
ForceOption = Annotated[
    bool,
    typer.Option("--force", "-f", help="Move refs that are not ancestors (recorded in the log)."),
]


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    if wanted("remote"):
        remote_app = typer.Typer(
            help="Manage remotes: other stores reached through a folder path or an fsspec URL.",
            invoke_without_command=True,
        )
        group: list[Callable[..., None]] = [
            remote_add,
            remote_list,
            remote_remove,
            remote_set_option,
            remote_show,
        ]
        for command in group:
            name = command.__name__.split("_", 1)[1].replace("_", "-")
            remote_app.command(name=name)(handles_errors(command))
        remote_app.callback()(handles_errors(remote_main))
        app.add_typer(remote_app, name="remote")
    commands: list[Callable[..., None]] = [push, fetch, pull, clone]
    for command in commands:
        if wanted(command.__name__):
            app.command(name=command.__name__)(handles_errors(command))


# --- progress and summaries -----------------------------------------------------------------------


class TransferBar(RichProgress):
    """The rich bar in bytes, with the object count in its description."""

    def __init__(self) -> None:
        super().__init__()
        self._description = ""

    def start(self, description: str, total: int | None) -> None:
        self._description = safe_text(description)
        super().start(description, total)

    def objects(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"{self._description} {done}/{total} objects")


def _progress(out: Output) -> Progress:
    bar = out.progress()
    return TransferBar() if isinstance(bar, RichProgress) else bar


def _transfer_line(verb: str, where: str, transfer: Any) -> str:
    return (
        f"{verb} {transfer.objects_sent} objects ({human_size(transfer.bytes_sent)}) {where} "
        f"in {transfer.duration:.1f}s; {transfer.objects_skipped} already there"
    )


def _ref_lines(out: Output, changes: list[Any]) -> None:
    for change in changes:
        old = change.old[:12] if change.old else "-"
        new = change.new[:12] if change.new else "-"
        out.info(f"  {change.ref}: {old} -> {new} ({change.status})")


def _parse_options(items: list[str] | None) -> dict[str, str]:
    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"option {item!r} is not KEY=VALUE", hint="e.g. --option endpoint_url=http://…"
            )
        options[key.strip()] = value
    return options


# --- mvc remote -----------------------------------------------------------------------------------


def remote_main(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Show URLs and options.")
    ] = False,
) -> None:
    """Manage remotes. Without a subcommand, list them (-v: with URLs).

    Examples:
      mvc remote add origin s3://ml-models/registry
      mvc remote -v
    """
    if ctx.invoked_subcommand is None:
        _list(ctx, verbose=verbose, as_json=False)


def remote_add(
    ctx: typer.Context,
    name: RemoteArg,
    url: Annotated[str, typer.Argument(help="A folder, file://, s3://, gs://, az://, memory://…")],
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option", "-o", help="Non-secret storage option KEY=VALUE (e.g. endpoint_url)."
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Add a remote and probe whether its backend honours create-if-absent.

    Credentials are never stored: they come from the backend's usual sources
    (AWS profile or environment, GCS application credentials).

    Examples:
      mvc remote add origin s3://ml-models/registry
      mvc remote add minio s3://models/reg -o endpoint_url=http://minio:9000
      mvc remote add shared /mnt/team/models
    """
    from mvc.ops.remotes import add_remote

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = add_remote(repo, name, url, _parse_options(option))
    if as_json:
        out.json(result.to_json())
        return
    for warning in result.warnings:
        out.warn(warning)
    atomic = result.remote.atomic_create
    safe = "unknown" if atomic is None else "yes" if atomic else "no"
    out.info(f"added remote {name} -> {result.remote.url} (safe for concurrent pushes: {safe})")


def _list(ctx: typer.Context, *, verbose: bool, as_json: bool) -> None:
    from mvc.remotes import list_remotes

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    remotes = list_remotes(repo)
    if as_json:
        out.json([r.to_json() for r in remotes])
        return
    for remote in remotes:
        if not verbose:
            out.line(remote.name)
            continue
        options = " ".join(f"{k}={v}" for k, v in sorted(remote.options.items()))
        atomic = {None: "unprobed", True: "atomic", False: "single-writer"}[remote.atomic_create]
        out.line("\t".join(x for x in (remote.name, remote.url, atomic, options) if x))


def remote_list(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Show URLs and options.")
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """List remotes (-v: with URL, create-if-absent support and options)."""
    _list(ctx, verbose=verbose, as_json=as_json)


def remote_remove(ctx: typer.Context, name: RemoteArg) -> None:
    """Forget a remote and its remote-tracking refs (nothing on the remote changes)."""
    from mvc.ops.remotes import remove_remote

    repo = open_repo(ctx)
    removed = remove_remote(repo, name)
    Output().info(f"removed remote {removed.name} ({removed.url})")


def remote_set_option(
    ctx: typer.Context,
    name: RemoteArg,
    key: Annotated[str, typer.Argument(help="Option name, e.g. endpoint_url or profile.")],
    value: Annotated[str | None, typer.Argument(help="The value (omit with --unset).")] = None,
    unset: Annotated[bool, typer.Option("--unset", help="Remove the option.")] = False,
) -> None:
    """Set or remove a non-secret storage option of a remote.

    Example: mvc remote set-option origin endpoint_url http://minio:9000
    """
    from mvc.ops.remotes import set_remote_option

    if (value is None) != unset:
        raise UsageError("give a VALUE, or --unset", hint="mvc remote set-option NAME KEY VALUE")
    repo = open_repo(ctx)
    set_remote_option(repo, name, key, None if unset else value)
    Output().info(f"{'removed' if unset else 'set'} option {key} of remote {name}")


def remote_show(ctx: typer.Context, name: RemoteArg, as_json: bool = JsonOption) -> None:
    """List a remote's refs as of the last fetch, pull or push (remote-tracking refs)."""
    from mvc.ops.remotes import remote_refs
    from mvc.remotes import remote_config

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    refs = remote_refs(repo, name)
    if as_json:
        out.json(
            {
                **remote_config(repo, name).to_json(),
                "refs": [{**c.to_json(), "version": c.new} for c in refs],
            }
        )
        return
    for change in refs:
        out.line(f"{change.ref.model}\t{change.to_json()['kind']}\t{change.ref.name}\t{change.new}")


RefSpecArg = Annotated[
    str | None,
    typer.Argument(help="MODEL (all its refs) or MODEL@BRANCH|TAG|CHANNEL.", show_default=False),
]


# --- push, fetch, pull, clone ---------------------------------------------------------------------


def push(
    ctx: typer.Context,
    remote: RemoteArg,
    spec: RefSpecArg = None,
    all_models: AllOption = False,
    force: ForceOption = False,
    single_writer: Annotated[
        bool,
        typer.Option(
            "--single-writer",
            help="Allow a backend without create-if-absent (only one writer ever pushes).",
        ),
    ] = False,
    jobs: JobsOption = None,
    as_json: bool = JsonOption,
) -> None:
    """Send refs and the objects they need to a remote; objects first, then refs.

    A branch or channel moves only forward unless --force; tags never move. A push that
    loses a race fails with "remote ref moved; pull and retry" (exit 11).

    Examples:
      mvc push origin bert
      mvc push origin bert@v1.4.0
      mvc push origin --all --jobs 16
    """
    from mvc.ops.remotes import push as do_push

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_push(
        repo,
        remote,
        spec,
        all_models=all_models,
        force=force,
        single_writer=single_writer,
        jobs=jobs,
        progress=_progress(out),
    )
    if as_json:
        out.json(result.to_json())
        return
    moved = [c for c in result.refs if c.status != "up-to-date"]
    if not moved:
        out.info(f"everything up to date on {remote}")
        return
    out.info(_transfer_line("sent", f"to {remote}", result.transfer))
    _ref_lines(out, moved)


def fetch(
    ctx: typer.Context,
    remote: RemoteArg,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    jobs: JobsOption = None,
    as_json: bool = JsonOption,
) -> None:
    """Update remote-tracking refs and bring version metadata (no tensor data).

    After a fetch, `mvc log` and `mvc show` work on the remote's versions (by id); their data
    arrives with `mvc pull`, or on demand when one is checked out.

    Example: mvc fetch origin
    """
    from mvc.ops.remotes import fetch as do_fetch

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_fetch(repo, remote, model=model, jobs=jobs, progress=_progress(out))
    if as_json:
        out.json(result.to_json())
        return _refuse_partial(result.damaged)
    for warning in result.warnings:
        out.warn(warning)
    out.info(_transfer_line("fetched", f"from {remote}", result.transfer))
    _ref_lines(out, result.refs)
    _refuse_partial(result.damaged)


def _refuse_partial(damaged: dict[str, str]) -> None:
    """Exit 3 naming the models a sync left out because the remote's copy is damaged."""
    if damaged:
        raise PartialFailure(
            f"{len(damaged)} model(s) were left out, the others are done: "
            + "; ".join(f"{model}: {why}" for model, why in sorted(damaged.items())),
            hint="repair the remote (`mvc fsck` there; `--repair-refs` for torn ref logs) "
            "and run the command again for them",
        )


def pull(
    ctx: typer.Context,
    remote: RemoteArg,
    spec: RefSpecArg = None,
    all_models: AllOption = False,
    force: ForceOption = False,
    jobs: JobsOption = None,
    as_json: bool = JsonOption,
) -> None:
    """Bring the objects a remote ref needs, then create or fast-forward the local ref.

    Only that version's data is transferred (its history comes as metadata). A branch moves
    only forward unless --force; tags never move. A clean working folder on a pulled branch
    is updated.

    Examples:
      mvc pull origin bert@prod
      mvc pull origin bert
      mvc pull origin --all
    """
    from mvc.ops.remotes import pull as do_pull

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_pull(
        repo,
        remote,
        spec,
        all_models=all_models,
        force=force,
        jobs=jobs,
        progress=_progress(out),
    )
    if as_json:
        out.json(result.to_json())
        return _refuse_partial(result.damaged)
    for warning in result.warnings:
        out.warn(warning)
    out.info(_transfer_line("received", f"from {remote}", result.transfer))
    _ref_lines(out, [c for c in result.refs if c.status != "up-to-date"])
    for folder in result.updated_folders:
        out.info(f"  updated working folder {folder}")
    _refuse_partial(result.damaged)


def clone(
    url: Annotated[str, typer.Argument(help="The remote: a folder, file://, s3://, gs://…")],
    directory: Annotated[str, typer.Argument(help="New folder for the store.")],
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    checkout: Annotated[
        bool,
        typer.Option("--checkout", help="Check out each model's main branch into DIR/MODEL."),
    ] = False,
    allow_empty: Annotated[
        bool,
        typer.Option("--allow-empty", help="Clone a store that has no models yet."),
    ] = False,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Non-secret storage option KEY=VALUE."),
    ] = None,
    jobs: JobsOption = None,
    as_json: bool = JsonOption,
) -> None:
    """Create a store in DIRECTORY with remote origin, and pull every model (or --model).

    The source must be an mvc store; nothing is written before that is checked. An empty
    store is cloned only with --allow-empty. An interrupted clone keeps the new store; the
    error's hint says how to resume it (and check out, with --checkout).

    Examples:
      mvc clone s3://ml-models/registry ./registry
      mvc clone /mnt/team/models ./models --model bert --checkout
    """
    from mvc.ops.remotes import clone as do_clone

    out = Output(as_json=as_json)
    result = do_clone(
        url,
        directory,
        model=model,
        options=_parse_options(option),
        checkout=checkout,
        allow_empty=allow_empty,
        jobs=jobs,
        progress=_progress(out),
    )
    damaged = {**result.fetch.damaged, **(result.pull.damaged if result.pull else {})}
    if as_json:
        out.json(result.to_json())
        return _refuse_partial(damaged)
    for warning in result.warnings:
        out.warn(warning)
    received = result.fetch.transfer
    if result.pull:
        received.add(result.pull.transfer)
    out.info(f"cloned {result.remote.url} into {result.path}")
    out.info(_transfer_line("received", "", received).replace("  ", " "))
    for folder in result.checked_out:
        out.info(f"  checked out {folder}")
    _refuse_partial(damaged)
