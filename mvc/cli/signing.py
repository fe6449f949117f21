"""``mvc sign`` and ``mvc verify``: OpenSSF model-signing signatures over a version's files."""

from __future__ import annotations

from typing import Annotated

import typer

from mvc.cli.common import JsonOption, SpecArg, Wanted, every_command, handles_errors, open_repo
from mvc.cli.output import Output


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    for name, command in (("sign", sign), ("verify", verify)):
        if wanted(name):
            app.command(name=name)(handles_errors(command))


def sign(
    ctx: typer.Context,
    spec: SpecArg,
    key: Annotated[
        str, typer.Option("--key", help="PEM elliptic-curve private key.", metavar="FILE")
    ],
    output: Annotated[
        str | None,
        typer.Option("--output", help="Also write the signature to FILE.", metavar="FILE"),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Sign a version's files with your key (OpenSSF model-signing format).

    The signature is stored with the version (it travels with push and pull); the predicate
    also names the version id, its tree and its lineage. It verifies with `mvc verify` and,
    written out with --output, with `model_signing verify key` on a checked-out folder.

    Example: mvc sign bert@v1.2.0 --key signing-key.pem
    Example: mvc sign bert@v1.2.0 --key signing-key.pem --output bert-1.2.0.sig
    """
    from mvc.ops.signing import sign as do_sign

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_sign(repo, spec, private_key=key, output=output)
    if as_json:
        out.json(result.to_json())
        return
    out.line(result.annotation or "")
    where = f", written to {result.signature}" if result.signature else ""
    out.info(
        f"signed {result.model}@{result.version[:12]} ({result.files} files) with {result.key[:19]}"
        f"{where}"
    )


def verify(
    ctx: typer.Context,
    spec: SpecArg,
    key: Annotated[
        str, typer.Option("--key", help="PEM public key of the signer.", metavar="FILE")
    ],
    signature: Annotated[
        str | None,
        typer.Option(
            "--signature",
            "-s",
            help="A signature file (default: those stored with the version).",
            metavar="FILE",
        ),
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Verify a version against a model-signing signature and the signer's public key.

    Exit 12 when no signature verifies: the files differ from what was signed, the key is not
    the signer's, or the signature names another version.

    Example: mvc verify bert@v1.2.0 --key release.pub
    Example: mvc verify bert@v1.2.0 --key release.pub --signature bert-1.2.0.sig
    """
    from mvc.ops.signing import verify as do_verify

    repo = open_repo(ctx)
    out = Output(as_json=as_json)
    result = do_verify(repo, spec, public_key=key, signature=signature)
    if as_json:
        out.json(result.to_json())
        return
    out.info(
        f"{result.model}@{result.version[:12]}: signature verified ({result.files} files, "
        f"{result.signature}, key {result.key[:19]})",
        lead="ok",
    )
