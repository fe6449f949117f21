"""What every command shares: the error edge, opening the store, and option parsing."""

from __future__ import annotations

import copy
import functools
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer
import typer.core

from mvc.canonical import parse_scalar
from mvc.cli.output import Output
from mvc.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    MvcError,
    NotFound,
    UsageError,
    environment_error,
    is_environment_error,
)

F = TypeVar("F", bound=Callable[..., Any])

Wanted = Callable[[str], bool]
"""Which top-level commands a ``register(app, wanted)`` adds, by name (see cli/main.py)."""


def every_command(name: str) -> bool:
    return True


# --- one spelling per option, one meaning per short option -----------------------------------
#
# Short options mean the same in every command (tests/cli/test_cli_conventions.py walks the app):
# -m --message, -f --force, -n --limit, -b --branch, -d --delete, -p --param, -o --option,
# -j --jobs, -v --verbose, -l --long, -k --key, -C (global) DIR. A new command that takes one of
# these long options gives it that short form (or none), and never gives the short form another
# meaning. The helpers below spell the common ones once.


def ForceOption(help: str) -> Any:  # noqa: N802 - reads like the typer.Option it returns
    """``--force`` / ``-f``, with what forcing means in this command."""
    return typer.Option("--force", "-f", help=help)


def LimitOption(help: str = "Show at most N.") -> Any:  # noqa: N802
    """``--limit`` / ``-n``."""
    return typer.Option("-n", "--limit", help=help, metavar="N")


def MessageOption(help: str = "What changed and why.") -> Any:  # noqa: N802
    """``--message`` / ``-m``."""
    return typer.Option("-m", "--message", help=help, metavar="TEXT")


HELP_NAMES = ["-h", "--help"]
"""The help options of every command (the app's ``context_settings``)."""


# The arguments most commands take, one definition each (help shows MODEL, SPEC, CHANNEL).
SpecArg = Annotated[
    str,
    typer.Argument(
        help="Version spec: MODEL\\[@REV]\\[~N] (see docs/versioning.md).", show_default=False
    ),
]
ModelArg = Annotated[str, typer.Argument(help="Model name.", show_default=False)]
ChannelArg = Annotated[
    str, typer.Argument(help="Channel name (prod, staging, eu-west…).", show_default=False)
]


def settle_metavars(command: Any) -> None:
    """Give every option and argument under a click command (the group ``typer.main.get_command``
    makes) a metavar, so help shows ``MODEL``, ``SPEC``, ``KEY=VALUE`` or nothing (a flag),
    never a Python type such as ``<bool>`` or ``list[str]``. An explicit ``metavar=`` wins;
    otherwise a flag gets none and anything else its parameter's name in capitals
    (``--branch`` -> BRANCH, argument ``model`` -> MODEL)."""
    params = list(getattr(command, "params", ()))
    context = typer.Context(command, help_option_names=HELP_NAMES)
    help_option = command.get_help_option(context)
    for param in [*params, *([help_option] if help_option else [])]:
        if getattr(param, "param_type_name", "") == "argument":
            _hide_type_name(param, context)
        if getattr(param, "metavar", None) is not None:
            continue
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif param.name:
            param.metavar = param.name.strip("_").upper().replace("_", "-")
    for sub in getattr(command, "commands", {}).values():
        settle_metavars(sub)


def _hide_type_name(argument: Any, context: Any) -> None:
    """Typer prints an argument's type in a column of its own: the type's metavar, or where it
    has none its Python name (``<str>``). The name column (``SPEC``, ``[FILES]...``) says it
    already, so such an argument gets a copy of its type whose metavar is empty (a choice
    keeps its ``[a|b]``)."""
    if argument.type.get_metavar(param=argument, ctx=context) is not None:
        return
    untyped = copy.copy(argument.type)
    untyped.get_metavar = lambda param, ctx: ""
    argument.type = untyped


class UsageErrorsAsOneLine(typer.core.TyperGroup):
    """The root group: a usage error (unknown option, missing argument…) is reported like every
    other error, ``error: ...`` and ``hint: ...`` on stderr with exit 2, not in a Rich box."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        settle_metavars(self)
        run = functools.partial(
            super().main, args, prog_name, complete_var, windows_expand_args=windows_expand_args
        )
        if not standalone_mode:
            return run(standalone_mode=False, **extra)
        try:
            code = run(standalone_mode=False, **extra)
        except typer.Abort:
            Output().error("aborted")
            sys.exit(EXIT_ERROR)
        except typer.TyperException as exc:  # typer's click UsageError and the like
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                typer.echo(ctx.get_help())
                sys.exit(exc.exit_code)
            if ctx is not None:
                hint = f"see `{ctx.command_path} --help`"
            else:  # typer raises some (-m with no value) without a context: this run's command
                hint = "see `mvc --help`"
                if len(self.commands) == 1:
                    hint = f"see `mvc {next(iter(self.commands))} --help`"
            Output().error(exc.format_message(), hint)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


JsonOption = typer.Option(
    False, "--json", help="Print a JSON document on stdout (stable shape, see docs/json.md)."
)


AllowDeprecatedOption = typer.Option(
    False,
    "--allow-deprecated",
    help="Use a version even after its deprecation cutoff (otherwise exit 23).",
)


@dataclass
class State:
    lock_timeout: float | None = None


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def open_repo(ctx: typer.Context) -> Any:
    """The store for this command: MVC_DIR if set, else found walking up from here."""
    from mvc.repo import Repo

    overrides: dict[str, Any] = {}
    lock_timeout = state(ctx).lock_timeout
    if lock_timeout is not None:
        overrides["core.lock_timeout"] = lock_timeout
    kwargs: dict[str, Any] = {"overrides": overrides}
    frozen = os.environ.get("MVC_NOW")
    if frozen:  # a fixed "now" for scripts and tests (deprecation cutoffs, ages)
        from mvc.instants import parse_instant

        moment = parse_instant(frozen)
        kwargs["clock"] = lambda: moment
    explicit = os.environ.get("MVC_DIR")
    if explicit:
        return Repo(explicit, **kwargs)
    return Repo.discover(**kwargs)


def handles_errors(func: F) -> F:
    """The one place errors become messages and exit codes (docs/exit-codes.md)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = Output()
        try:
            return func(*args, **kwargs)
        except MvcError as exc:
            if os.environ.get("MVC_DEBUG"):
                traceback.print_exc()
            if exc.exit_code == 0:
                out.info(exc.message)
            else:
                out.error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            out.error("interrupted; refs and your files are as they were before this command")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            # The reader went away (`mvc log | head`): not an error of ours.
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
            except OSError:
                pass
            raise typer.Exit(0) from None
        except typer.Exit:
            raise
        except Exception as exc:  # the CLI's outer edge: anything else is a bug of ours
            if os.environ.get("MVC_DEBUG"):
                traceback.print_exc()
            if isinstance(exc, OSError) and is_environment_error(exc):
                # A full disk or a read-only folder met where no clean error was raised yet.
                clean = environment_error(exc, str(exc.filename or "a file"))
                out.error(clean.message, clean.hint)
                raise typer.Exit(clean.exit_code) from None
            out.error(
                f"internal error: {type(exc).__name__}: {exc}",
                "run again with MVC_DEBUG=1 for a traceback, and report it",
            )
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper  # type: ignore[return-value]


def parse_pairs(items: list[str] | None, what: str, *, numeric: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{what} {item!r} is not KEY=VALUE", hint=f"e.g. --{what} lr=2e-5")
        parsed = parse_scalar(value)
        if numeric and (isinstance(parsed, bool) or not isinstance(parsed, int | float)):
            raise UsageError(f"{what} {key!r} must be a number, got {value!r}")
        out[key] = parsed
    return out


def read_metrics_file(path: str) -> dict[str, Any]:
    import json
    import math

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise NotFound(f"metrics file {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise UsageError(f"metrics file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"metrics file {path} must hold a JSON object of name: number")
    for key, value in data.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise UsageError(f"metrics file {path}: {key!r} is not a finite number")
    return data
