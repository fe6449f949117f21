"""The ``mvc`` entry point: the Typer app, global options, and command registration.

Command modules import nothing heavy at top level, so ``mvc --help`` and ``mvc --version``
start fast (no numpy, fsspec or safetensors).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from mvc import __version__
from mvc.cli import admin, core
from mvc.cli.common import state

app = typer.Typer(
    name="mvc",
    help="mvc — model version control: version, tag, ship and roll back ML models.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mvc {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    directory: Annotated[
        str | None, typer.Option("-C", help="Run as if mvc was started in DIR.", metavar="DIR")
    ] = None,
    lock_timeout: Annotated[
        float | None,
        typer.Option("--lock-timeout", help="Seconds to wait for a store lock (default 60)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """mvc — model version control.

    Versions are content-addressed snapshots of model folders; branches, immutable
    semantic-version tags and deployment channels name them. Exit codes: docs/exit-codes.md.
    """
    if directory:
        try:
            os.chdir(directory)
        except OSError as exc:
            typer.echo(f"error: cannot change to {directory}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
    state(ctx).lock_timeout = lock_timeout


core.register(app)
admin.register(app)


def _optional_commands() -> None:
    """Command groups of later features register themselves if present."""
    import importlib

    for name in ("mvc.cli.versions", "mvc.cli.remotes", "mvc.cli.deploy"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)


_optional_commands()


def run() -> None:
    app()
