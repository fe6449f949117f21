"""serve: the version-aware HTTP gateway (the optional extra ``serve``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from mvc.cli.common import Wanted, every_command, handles_errors, open_repo
from mvc.cli.output import Output
from mvc.errors import UsageError


def register(app: typer.Typer, wanted: Wanted = every_command) -> None:
    commands: list[Callable[..., None]] = [serve]
    for command in commands:
        if wanted(command.__name__):
            app.command(name=command.__name__)(handles_errors(command))


def serve(
    ctx: typer.Context,
    config: Annotated[
        str, typer.Argument(help="The gateway's file (serve.yaml).", show_default=False)
    ],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
) -> None:
    """Run an HTTP gateway that routes each request to a version by its channel.

    Requests are split by the channel's sticky weights (key from a header or cookie), pinned by
    `X-Model-Version: v1.2.0` (or any REV, e.g. ^1.2), mirrored to shadows, and recorded
    (`/metrics`, the decision log). Channel moves are picked up within `poll_interval`, with no
    restart. docs/serving.md describes the file.

    Example: mvc serve serve.yaml --port 8080
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise UsageError(
            "mvc serve needs uvicorn, starlette, httpx and prometheus_client",
            hint="pip install 'mvc[serve]'",
        ) from exc
    from mvc.gateway.app import open_gateway
    from mvc.gateway.config import read_config

    repo = open_repo(ctx)
    gateway = open_gateway(repo, read_config(config))
    routes = ", ".join(
        f"{r.name} ({r.model} {r.channel}, {r.protocol})" for r in gateway.config.routes
    )
    Output().info(
        f"serving {routes} on http://{host}:{port} (channels re-read every "
        f"{gateway.config.poll_interval:g}s)"
    )
    uvicorn.run(gateway.app(), host=host, port=port, log_level="warning")
