"""The ``mvc`` entry point: the Typer app, global options, and command registration.

Only Typer's public API is used: each run builds a fresh app holding just the command it
invokes (``build_app(wanted)``), and reads the global options back from the click command
``typer.main.get_command`` makes.

Command modules import nothing heavy at top level, so ``mvc --help`` and ``mvc --version``
start fast (no numpy, fsspec or safetensors).
"""

from __future__ import annotations

import os
from typing import Annotated, NoReturn

import typer

from mvc import __version__
from mvc.cli import (
    admin,
    apply,
    archiving,
    checks,
    core,
    deploy,
    guard,
    imports,
    lifecycle,
    lock,
    metrics,
    remotes,
    serve,
    signing,
    versions,
)
from mvc.cli.common import HELP_NAMES, UsageErrorsAsOneLine, Wanted, every_command, state


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mvc {__version__}")
        raise typer.Exit()


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


def build_app(wanted: Wanted = every_command) -> typer.Typer:
    """A fresh app with the global options and the top-level commands and groups ``wanted`` names."""
    app = typer.Typer(
        name="mvc",
        help="mvc — model version control: version, tag, ship and roll back ML models.",
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": HELP_NAMES},
        pretty_exceptions_enable=False,
        cls=UsageErrorsAsOneLine,
    )
    app.callback()(main)
    core.register(app, wanted)
    admin.register(app, wanted)
    versions.register(app, wanted)
    remotes.register(app, wanted)
    deploy.register(app, wanted)
    imports.register(app, wanted)
    lock.register(app, wanted)
    checks.register(app, wanted)
    apply.register(app, wanted)
    signing.register(app, wanted)
    lifecycle.register(app, wanted)
    guard.register(app, wanted)
    metrics.register(app, wanted)
    archiving.register(app, wanted)
    serve.register(app, wanted)
    return app


app = build_app()


def _invoked(argv: list[str]) -> tuple[str | None, bool]:
    """(the subcommand named on the command line, whether a bare ``--version`` asks for none).

    Global options are read from the click parameters of the callback alone, so an option
    added there is understood here. Anything unclear (help, ``--``, an unknown option) gives
    (None, False): the caller then keeps every command.
    """
    flags: set[str] = set()
    valued: set[str] = set()
    for param in typer.main.get_command(build_app(lambda name: False)).params:
        names = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
        is_flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
        (flags if is_flag else valued).update(names)
    version = False
    index = 0
    while index < len(argv):
        token = argv[index]
        name = token.split("=", 1)[0]
        if not token.startswith("-") or token == "-":
            return token, False
        if token == "--" or name in ("-h", "--help"):
            return None, False
        if name in valued:
            index += 1 if "=" in token else 2
            continue
        if not token.startswith("--") and token[:2] in valued:
            index += 1  # a short option with its value attached: -CDIR
            continue
        if name not in flags:
            return None, False
        version = version or name == "--version"
        index += 1
    return None, version


WHOLE_APP = frozenset({"shell-init"})
"""Commands that read the app's own command list (the ``mv`` function forwards every one)."""


def _narrowed(argv: list[str]) -> typer.Typer:
    """The app with only the command this run invokes.

    Typer converts every registered command into a click command (signatures, annotations)
    on each run; with dozens of commands that was most of mvc's start-up time. A run that names
    a command needs only that one, and ``mvc --version`` needs none. Help, a bare ``mvc`` and
    anything not recognised keep every command, so listings and "no such command" hints stay.
    """
    command, version_only = _invoked(argv)
    if (command is None and not version_only) or command in WHOLE_APP:
        return app
    found: list[str] = []

    def wanted(name: str) -> bool:
        if name == command:
            found.append(name)
        return name == command

    narrowed = build_app(wanted)
    if command is not None and not found:
        return app
    return narrowed


def run() -> None:
    """The ``mvc`` program: ``dispatch``, then the end of the process (``exit_now``)."""
    import sys

    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            # Started with that descriptor closed (>&-): what would go there goes nowhere, as
            # into a closed pipe, and the descriptor is not left for a data file to take.
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - open for the process
    try:
        dispatch()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)


def dispatch() -> None:
    """Run the command ``sys.argv`` names; ends with ``SystemExit``, as a click app does."""
    import sys

    if sys.argv[1:2] == ["__complete"]:  # shell completion (cli/shell.py): fast, never fails
        from mvc.cli.shell import complete

        print("\n".join(complete(sys.argv[2:], build_app)))
        return
    _narrowed(sys.argv[1:])(prog_name="mvc")


def exit_now(code: object) -> NoReturn:
    """End the process with ``SystemExit(code)``'s status, without the interpreter's teardown.

    Tearing down clears every module and frees every object one by one: about 20 ms of each
    command on the CI machine (``mvc status`` 0.10 s -> 0.085 s), for nothing. What the
    teardown does that matters is done first: threading's exit hooks (thread pools stop, other
    threads are joined), the ``atexit`` handlers (``lastuse``, the metrics recorder), and both
    standard streams flushed. Where any of that is unavailable, a flush fails (a closed pipe) or
    a profiler or tracer is running, the interpreter exits as usual.
    """
    import atexit
    import sys
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    profiled = sys.getprofile() is not None or sys.gettrace() is not None
    if shutdown is None or run_exit_functions is None or profiled:
        raise SystemExit(code)  # a profiler (python -m cProfile -m mvc) reports as it unwinds
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)  # what the interpreter does with SystemExit("text")
        status = 1
    try:
        shutdown()
    except KeyboardInterrupt:
        pass  # the command is done: a Ctrl-C while leftover threads are joined changes nothing
    run_exit_functions()
    try:  # run() has given both streams a file, if the process started without one
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        raise SystemExit(status) from None
    os._exit(status)
