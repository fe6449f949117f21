"""``mvc check``: the file checks mvc's pre-commit hooks run (see .pre-commit-hooks.yaml)."""

from __future__ import annotations

from typing import Annotated

import typer

from mvc.cli.common import JsonOption, Wanted, every_command, handles_errors
from mvc.cli.output import Output

Files = Annotated[
    list[str] | None,
    typer.Argument(help="Files to check (pre-commit passes the staged ones)."),
]


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    if not wanted("check"):
        return
    group = typer.Typer(
        help="Check files before they reach git: pickles, safetensors headers, weights.",
        no_args_is_help=True,
    )
    group.command(name="pickle")(handles_errors(check_pickle))
    group.command(name="safetensors")(handles_errors(check_safetensors))
    group.command(name="weights-in-git")(handles_errors(check_weights_in_git))
    app.add_typer(group, name="check")


def check_pickle(files: Files = None, as_json: bool = JsonOption) -> None:
    """Fail on files whose bytes are a pickle (by content, not name): loading runs code.

    Example: mvc check pickle models/bert/pytorch_model.bin notes.txt
    """
    _run("pickle", files or [], as_json)


def check_safetensors(files: Files = None, as_json: bool = JsonOption) -> None:
    """Fail on .safetensors files whose header is malformed (offsets, dtypes, sizes, JSON).

    Example: mvc check safetensors models/bert/model.safetensors
    """
    _run("safetensors", files or [], as_json)


def check_weights_in_git(
    files: Files = None,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", help="Also refuse any file larger than this.")
    ] = 10 * 1024 * 1024,
    as_json: bool = JsonOption,
) -> None:
    """Fail on model weights (by content) or large files about to be committed to git.

    Example: mvc check weights-in-git $(git diff --cached --name-only)
    """
    _run("weights-in-git", files or [], as_json, max_bytes)


def _run(check: str, files: list[str], as_json: bool, max_bytes: int | None = None) -> None:
    from mvc.ops.checks import DEFAULT_MAX_BYTES, check_files

    out = Output(as_json=as_json)
    result = check_files(check, files, max_bytes=max_bytes or DEFAULT_MAX_BYTES)
    if as_json:
        out.json({**result.to_json(), "ok": result.ok})
    else:
        for finding in result.findings:
            out.line(f"{finding.path}: {finding.problem}")
    if not result.ok:
        raise typer.Exit(1)
