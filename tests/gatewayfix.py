"""Real HTTP on loopback for the gateway tests and benchmark: uvicorn servers in threads, and
small upstreams speaking the documented request shapes.

- ``Triton``: KServe v2 / Triton HTTP inference, ``POST /v2/models/{name}/versions/{n}/infer``
  with ``{"inputs": [{"name", "shape", "datatype", "data"}]}``; answers ``outputs`` computed from
  the version number (so a test can tell which version answered), 404 for a model or version it
  does not serve — as Triton does.
- ``OpenAI``: ``POST /v1/completions`` and ``/v1/chat/completions`` as vLLM serves them, one
  process serving a base and LoRA modules by name: an unknown ``model`` is a 404.
- ``Plain``: any path, answers which version it is.

Every upstream counts the requests it got (``hits``) and can be slowed per request
(``?delay=SECONDS`` or the ``X-Delay`` header) for in-flight tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


class Server:
    """A uvicorn server on 127.0.0.1 (a free port), run in a thread; ``stop()`` ends it."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by accepted connections: uvicorn does not set it on sockets it is handed,
        # and Nagle plus delayed ACKs would add ~40 ms to every keep-alive request.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="error", lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.daemon = True
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


@contextlib.contextmanager
def serving(app: Any) -> Iterator[Server]:
    server = Server(app)
    try:
        yield server
    finally:
        server.stop()


async def _delay(request: Request, upstream: Upstream | None = None) -> None:
    if upstream is not None:
        upstream.received += 1
    seconds = float(request.query_params.get("delay") or request.headers.get("x-delay") or 0)
    if seconds:
        await asyncio.sleep(seconds)


class Upstream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.hits: Counter[str] = Counter()
        self.received = 0  # requests that arrived (counted before any delay)
        self.bodies: list[Any] = []
        self.server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def app(self) -> Starlette:
        raise NotImplementedError


class Triton(Upstream):
    """One Triton server holding model ``model`` at the version numbers ``numbers``."""

    def __init__(self, name: str, model: str, numbers: tuple[int, ...]) -> None:
        super().__init__(name)
        self.model = model
        self.numbers = numbers

    def app(self) -> Starlette:
        async def infer(request: Request) -> JSONResponse:
            await _delay(request, self)
            name, number = request.path_params["name"], int(request.path_params["n"])
            if name != self.model or number not in self.numbers:
                return JSONResponse(
                    {"error": f"Request for unknown model: '{name}' version {number} is not found"},
                    status_code=404,
                )
            body = await request.json()
            self.hits[str(number)] += 1
            self.bodies.append(body)
            data = body["inputs"][0]["data"]
            return JSONResponse(
                {
                    "model_name": name,
                    "model_version": str(number),
                    "id": body.get("id", ""),
                    "outputs": [
                        {
                            "name": "score",
                            "datatype": "FP32",
                            "shape": [len(data)],
                            "data": [float(x) * number for x in data],
                        }
                    ],
                }
            )

        return Starlette(
            routes=[Route("/v2/models/{name}/versions/{n}/infer", infer, methods=["POST"])]
        )


class OpenAI(Upstream):
    """One vLLM-like server: a base model and LoRA modules, each a served model name."""

    def __init__(self, name: str, models: tuple[str, ...]) -> None:
        super().__init__(name)
        self.models = models

    def app(self) -> Starlette:
        async def complete(request: Request) -> JSONResponse:
            await _delay(request, self)
            body = await request.json()
            model = body.get("model")
            if model not in self.models:
                return JSONResponse(
                    {
                        "object": "error",
                        "message": f"The model `{model}` does not exist.",
                        "type": "NotFoundError",
                        "code": 404,
                    },
                    status_code=404,
                )
            self.hits[model] += 1
            self.bodies.append(body)
            created = time.time_ns()  # differs per call, as real servers' ids and times do
            chat = request.url.path.endswith("/chat/completions")
            if body.get("stream"):
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                return StreamingResponse(
                    _stream(model, f"{model}: {prompt}", created, chat),
                    media_type="text/event-stream",
                )
            if chat:
                prompt = body["messages"][-1]["content"]
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"{model}: {prompt}"},
                    "finish_reason": "stop",
                }
                kind = "chat.completion"
            else:
                choice = {"index": 0, "text": f"{model}: {body['prompt']}", "finish_reason": "stop"}
                kind = "text_completion"
            return JSONResponse(
                {
                    "id": f"cmpl-{created}",
                    "object": kind,
                    "created": created,
                    "model": model,
                    "choices": [choice],
                }
            )

        return Starlette(
            routes=[
                Route("/v1/completions", complete, methods=["POST"]),
                Route("/v1/chat/completions", complete, methods=["POST"]),
            ]
        )


async def _stream(model: str, text: str, created: int, chat: bool) -> Any:
    """vLLM's server-sent events: one chunk per word, then ``data: [DONE]``."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    for n, word in enumerate(text.split(" ")):
        piece = word if n == 0 else " " + word
        choice: dict[str, Any] = {"index": 0, "finish_reason": None}
        choice.update({"delta": {"content": piece}} if chat else {"text": piece})
        chunk = {"id": f"cmpl-{created}", "object": kind, "created": created, "model": model,
                 "choices": [choice]}  # fmt: skip
        yield f"data: {json.dumps(chunk)}\n\n".encode()
        await asyncio.sleep(0.01)
    yield b"data: [DONE]\n\n"


class Plain(Upstream):
    """A plain HTTP server for one version: answers its name and the path it was asked."""

    def __init__(self, name: str, answer: str | None = None) -> None:
        super().__init__(name)
        self.answer = answer if answer is not None else name

    def app(self) -> Starlette:
        async def any_path(request: Request) -> JSONResponse:
            await _delay(request, self)
            self.hits[request.url.path] += 1
            body = await request.body()
            return JSONResponse(
                {"answer": self.answer, "path": request.url.path, "body": body.decode()}
            )

        methods = ["GET", "POST"]
        return Starlette(
            routes=[
                Route("/{rest:path}", any_path, methods=methods),
            ]
        )


@contextlib.contextmanager
def upstreams(*ups: Upstream) -> Iterator[tuple[Upstream, ...]]:
    with contextlib.ExitStack() as stack:
        for up in ups:
            up.server = stack.enter_context(serving(up.app()))
        yield ups
