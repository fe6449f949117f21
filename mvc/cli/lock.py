"""``mvc lock`` and ``mvc install``: pin what a project serves in mvc.lock, then materialise it."""

from __future__ import annotations

from typing import Annotated

import typer

from mvc.cli.common import JsonOption, Wanted, every_command, handles_errors, open_repo
from mvc.cli.output import Output


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    for name, command in (("lock", lock), ("install", install)):
        if wanted(name):
            app.command(name=name)(handles_errors(command))


def lock(
    ctx: typer.Context,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Change nothing; exit 25 if mvc.lock does not match mvc.yaml or the store.",
        ),
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """Resolve the requires: of mvc.yaml to exact version ids in mvc.lock.

    Each entry (bert: ^2.1, sql-lora: prod) becomes a version id and its content hash; the lock
    is small text to commit and review. An unchanged lock is not rewritten.

    Example: mvc lock && git add mvc.lock
    Example: mvc lock --check   (in CI or a pre-commit hook)
    """
    from mvc.errors import StaleLock
    from mvc.ops.lock import check_lock
    from mvc.ops.lock import lock as do_lock

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    if check:
        result = check_lock(repo)
        if as_json:
            out.json(result.to_json())
        for problem in result.problems:
            out.info(f"{problem.name}: {problem.problem}", lead="stale")
        if not result.ok:
            raise StaleLock(
                f"mvc.lock does not match ({len(result.problems)} problem(s))",
                hint="run `mvc lock` and commit mvc.lock",
            )
        if not as_json:
            out.info("mvc.lock is current")
        return
    locked = do_lock(repo)
    if as_json:
        out.json(locked.to_json())
        return
    for entry in locked.entries:
        mark = "*" if entry.changed else " "
        named = f" ({entry.resolved})" if entry.resolved else ""
        out.line(f"{mark} {entry.name:<20} {entry.spec:<28} {entry.version[:12]}{named}")
    out.info("wrote mvc.lock" if locked.written else "mvc.lock is already current")


def install(
    ctx: typer.Context,
    locked: Annotated[
        bool,
        typer.Option("--locked", help="Install exactly mvc.lock; exit 25 if it is stale (CI)."),
    ] = False,
    remote: Annotated[
        str | None,
        typer.Option("--remote", help="Fetch missing versions from this remote (default: any)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite changed files in the install folders.")
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """Materialise every version of mvc.lock into its folder, verified.

    Without --locked a missing or stale lock is written first (like `npm install`); with it the
    lock must match mvc.yaml (like `npm ci`). Versions the store lacks come from a remote.

    Example: mvc install --locked --remote origin
    """
    from mvc.ops.lock import install as do_install

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_install(repo, locked=locked, remote=remote, force=force, progress=out.progress())
    if as_json:
        out.json(result.to_json())
        return
    if result.locked_written:
        out.info("wrote mvc.lock")
    for item in result.installed:
        fetched = f", fetched from {item.fetched_from}" if item.fetched_from else ""
        out.line(
            f"{item.name:<20} {item.version[:12]} -> {item.path} "
            f"({item.written} written, {item.removed} removed, {item.unchanged} unchanged{fetched})"
        )
