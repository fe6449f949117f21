"""The gateway: an ASGI application (starlette) that routes each request to a version.

For each request: find its route (the Triton model name in the path, the OpenAI body's
``model``, or the first path segment), then the arm that serves it —

- a pin (``X-Model-Version: v1.2.0``, ``^1.2``, any REV or target text) names a version: the
  channel's arm that serves it if there is one, else the configured upstream of that version;
- otherwise the routing key (a header or a cookie, per route) goes through the channel's
  ``Router``: sticky weights, shadows apart; a request without a key goes to the stable arm (or
  a random key's arm: ``no_key: random``).

The decision is taken once, when the request arrives: a request in flight finishes on the arm
it started on whatever the channel does meanwhile. Channels are re-read in a background task
every ``poll_interval`` seconds, off the request path, so a move (deploy, promote, rollback, a
guard's automatic rollback) is served at most ``poll_interval`` (plus one store read) after it
is made, with no restart.

Shadows get a copy of the request, sent concurrently, bounded (``shadow.concurrency`` copies in
flight; beyond that a copy is dropped and counted) and cut at ``shadow.timeout``; their answer
never reaches the client, and is compared with the one that did (``protocols.agree``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mvc.decisions import DecisionLog
from mvc.deployment.records import SHADOW, Arm, Record, Target
from mvc.errors import MvcError, NotFound
from mvc.exports.context import served_name
from mvc.exports.triton import version_numbers
from mvc.gateway.config import (
    COOKIE,
    HTTP,
    NO_KEY_RANDOM,
    OPENAI,
    PIN_HEADER,
    TRITON,
    GatewayConfig,
    RouteConfig,
    TargetPlace,
)
from mvc.gateway.protocols import (
    OPENAI_PATHS,
    BadRequest,
    agree,
    json_object,
    triton_path,
    with_model,
)
from mvc.gateway.telemetry import Outcome, Sink, Telemetry
from mvc.metrics.recorder import Recorder
from mvc.ops.channels import channel_ref, load_names
from mvc.ops.deploy import resolve_target, split_target
from mvc.repo import Repo
from mvc.router import RouteDecision, Router, bucket_of, pick
from mvc.specs import parse_spec, resolve

if TYPE_CHECKING:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

ARM_HEADER = "X-Model-Arm"
VERSION_ID_HEADER = "X-Model-Version-Id"
RECORD_HEADER = "X-Model-Record"
PINNED_ARM = "pinned"
# Hop-by-hop headers (RFC 9110 7.6.1) and those the HTTP client recomputes.
_DROP = {
    "date",  # uvicorn writes its own date and server
    "server",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


class GatewayError(Exception):
    """A request answered by the gateway itself, with this status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Place:
    """Where one target is served: the URL, and the Triton number or OpenAI served name."""

    url: str
    number: int | None = None
    served: str | None = None


@dataclass(frozen=True)
class View:
    """One route's channel as of its last read: the record, where each target is served, and
    each target's name for the ``X-Model-Version`` header. Replaced whole on every move."""

    record: Record
    places: dict[Target, Place]
    names: dict[Target, str]


@dataclass
class Answer:
    """An upstream's answer: status (0: none), headers, the body read, or the open stream."""

    status: int
    data: bytes
    headers: list[tuple[str, str]]
    started: float
    timed_out: bool = False
    stream: httpx.Response | None = None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


@dataclass
class Chosen:
    decision: RouteDecision
    place: Place
    name: str
    pin: str | None
    shadows: list[tuple[RouteDecision, Place]] = field(default_factory=list)


class RouteState:
    """One route: its Router, its resolved upstreams, and the pins it has resolved."""

    def __init__(self, repo: Repo, config: RouteConfig) -> None:
        self.repo = repo
        self.config = config
        self.router = Router(repo, config.model, config.channel)
        self._lock = threading.Lock()
        self._listed: dict[Target, TargetPlace] = {}
        self._pins: dict[str, Target] = {}
        self.view = self._build(self.router.record)

    def _resolve_listed(self) -> dict[Target, TargetPlace]:
        listed: dict[Target, TargetPlace] = {}
        for place in self.config.versions:
            try:
                target = resolve_target(self.repo, self.config.model, place.text, check=False)
            except MvcError as exc:
                raise MvcError(
                    f"{place.where}: routes.{self.config.name}.versions: {place.text!r}: "
                    f"{exc.message}",
                    hint=exc.hint,
                ) from exc
            listed[target] = place
        return listed

    def _build(self, record: Record) -> View:
        cfg = self.config
        self._listed = self._resolve_listed()
        numbers = version_numbers(self.repo, record) if cfg.protocol == TRITON else {}
        targets = [a.target for a in record.arms] + list(self._listed)
        names = load_names(self.repo, [cfg.model] + [t.adapter.model for t in targets if t.adapter])
        places: dict[Target, Place] = {}
        labels: dict[Target, str] = {}
        for target in dict.fromkeys(targets):
            labels[target] = names.target(cfg.model, target)
            given = self._listed.get(target)
            url = (given.url if given else None) or cfg.upstream
            if url is None:
                continue  # an arm nobody said where to send: answered 503 when routed to
            if cfg.protocol == TRITON:
                number = (given.number if given else None) or numbers.get(target)
                if number is None:
                    continue
                places[target] = Place(url, number=number)
            elif cfg.protocol == OPENAI:
                served = given.model if given else None
                places[target] = Place(url, served=served or self._served(record, target))
            else:
                places[target] = Place(url)
        return View(record, places, labels)

    def _served(self, record: Record, target: Target) -> str:
        """The served model name the vLLM export gives a target: the base's served name, or
        the LoRA module ``{channel}-{arm}`` of the arm that carries the adapter."""
        if target.adapter is None:
            return served_name(self.config.model)
        arm = next((a for a in record.arms if a.target == target), None)
        label = arm.label if arm else target.adapter.version[:12]
        return served_name(f"{record.channel}-{label}")

    def refresh(self) -> bool:
        """Re-read the channel; True if it moved. A move rebuilds the view (the file's version
        texts resolved again, Triton numbers and served names recomputed); pins are resolved
        again after every look, so a new tag that a range now matches is seen."""
        moved = self.router.refresh()
        view = self._build(self.router.record) if moved else self.view
        with self._lock:
            self.view = view
            self._pins.clear()
        return moved

    # --- choosing -----------------------------------------------------------------------------

    def pin_known(self, text: str) -> bool:
        """Whether ``text`` is resolved already (choosing with it reads nothing)."""
        with self._lock:
            return text in self._pins

    def resolve_pin(self, text: str) -> Target:
        """The target a pin names (this is ``Router.route(key, version=...)``'s job once the
        Router has it; resolved against the store, cached until the next refresh)."""
        with self._lock:
            cached = self._pins.get(text)
        if cached is not None:
            return cached
        target = self._resolve_pin(text)
        with self._lock:
            self._pins[text] = target
        return target

    def _resolve_pin(self, text: str) -> Target:
        view, model = self.view, self.config.model
        known = list(dict.fromkeys([a.target for a in view.record.arms] + list(view.places)))
        try:
            base_text, adapter_text = split_target(text)
            if adapter_text is not None:
                wanted = resolve_target(self.repo, model, text, check=False)
                matches = [t for t in known if t == wanted]
            elif "@" in base_text and parse_spec(base_text).model != model:
                adapter = resolve(self.repo, base_text)  # an adapter's version: any base
                matches = [t for t in known if t.adapter and t.adapter.version == adapter.version]
            else:
                spec = base_text if "@" in base_text else f"{model}@{base_text}"
                version = resolve(self.repo, spec).version
                matches = [t for t in known if t.version == version]
        except MvcError as exc:
            raise GatewayError(400, f"{PIN_HEADER}: {text!r}: {exc.message}") from exc
        serving = [a.target for a in view.record.arms]
        in_channel = [t for t in matches if t in serving]
        if len(in_channel) == 1 or (in_channel and len(set(in_channel)) == 1):
            return in_channel[0]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise GatewayError(
                404,
                f"{PIN_HEADER}: {text!r}: no upstream of route {self.config.name!r} serves it "
                f"(add it under routes.{self.config.name}.versions)",
            )
        raise GatewayError(
            400,
            f"{PIN_HEADER}: {text!r} matches {len(matches)} targets of route "
            f"{self.config.name!r}: name the adapter too (REV + ADAPTER@REV)",
        )

    def key_of(self, request: Request) -> str | None:
        source = self.config.key
        if source.kind == COOKIE:
            return request.cookies.get(source.name)
        return request.headers.get(source.name)

    def choose(self, key: str | None, pin: str | None) -> Chosen:
        """The arm that serves this request, decided once from one view of the channel."""
        view = self.view
        record = view.record
        assert record.id is not None
        cfg = self.config
        if pin is not None:
            target = self.resolve_pin(pin)
            arm = next((a for a in record.arms if a.target == target), None)
            if arm is None:
                arm = Arm(PINNED_ARM, target.version, 0, None, target.adapter)
            bucket = bucket_of(cfg.model, cfg.channel, key) if key is not None else -1.0
            decision = RouteDecision(cfg.model, cfg.channel, record.id, key or "", bucket, arm, ())
        elif key is None and cfg.no_key != NO_KEY_RANDOM:
            stable = record.stable
            assert stable is not None
            decision = RouteDecision(
                cfg.model, cfg.channel, record.id, "", -1.0, stable, _shadows(record)
            )
        else:
            # The Router's sticky weights (mvc.router.bucket_of and pick), on this view's record.
            key = key if key is not None else secrets.token_hex(8)
            bucket = bucket_of(cfg.model, cfg.channel, key)
            decision = RouteDecision(
                cfg.model, cfg.channel, record.id, key, bucket, pick(record.arms, bucket),
                _shadows(record),
            )  # fmt: skip
        place = view.places.get(decision.arm.target)
        if place is None:
            raise GatewayError(
                503,
                f"arm {decision.label} of {cfg.model} {cfg.channel} "
                f"({view.names.get(decision.arm.target, decision.version[:12])}) has no upstream "
                f"in route {cfg.name!r}: add it under routes.{cfg.name}.versions",
            )
        chosen = Chosen(decision, place, view.names.get(decision.arm.target, ""), pin)
        for shadow in decision.shadows:
            shadow_place = view.places.get(shadow.target)
            if shadow_place is not None:
                chosen.shadows.append((replace(decision, arm=shadow, shadows=()), shadow_place))
        return chosen


def _shadows(record: Record) -> tuple[Arm, ...]:
    return tuple(a for a in record.arms if a.role == SHADOW)


class Gateway:
    """The routes of one gateway file over one store, their telemetry, and the ASGI app."""

    def __init__(
        self,
        repo: Repo,
        config: GatewayConfig,
        *,
        sinks: Sequence[Sink] = (),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.repo = repo
        self.config = config
        self.routes = {r.name: RouteState(repo, r) for r in config.routes}
        log = DecisionLog(config.decision_log) if config.decision_log else None
        store = Recorder(repo) if config.metric_store else None
        self.telemetry = Telemetry(decision_log=log, store=store, sinks=sinks)
        self._now = clock or (lambda: datetime.now(UTC))
        self._client: httpx.AsyncClient | None = None
        self._shadow_pending = 0  # copies in flight (touched on the event loop only)
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._openai = [r for r in config.routes if r.protocol == OPENAI]

    # --- channel moves ----------------------------------------------------------------------

    def refresh(self) -> list[str]:
        """Re-read every route's channel; the names of those that moved."""
        return [name for name, state in self.routes.items() if state.refresh()]

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # a failed read must not stop the polling: try again next tick
                self.telemetry.refresh_failed()

    # --- the application ----------------------------------------------------------------------

    def app(self) -> Starlette:
        from starlette.applications import Starlette
        from starlette.routing import Route

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            import httpx

            limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
            # No Nagle: httpx writes headers and body apart, and a delayed ACK would hold the
            # body back ~40 ms on every request.
            nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=nodelay)
            self._client = httpx.AsyncClient(timeout=self.config.timeout, transport=transport)
            poller = asyncio.create_task(self._poll())
            try:
                yield
            finally:
                poller.cancel()
                for task in list(self._shadow_tasks):
                    task.cancel()
                await self._client.aclose()
                self.telemetry.close()

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(
            routes=[
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/healthz", self._health, methods=["GET"]),
                Route("/v2/models/{name}/versions/{n}/infer", self._triton, methods=["POST"]),
                Route("/v2/models/{name}/infer", self._triton, methods=["POST"]),
                Route("/v1/completions", self._openai_call, methods=["POST"]),
                Route("/v1/chat/completions", self._openai_call, methods=["POST"]),
                Route("/{name}/{rest:path}", self._http, methods=methods),
                Route("/{name}", self._http, methods=methods),
            ],
            lifespan=lifespan,
        )

    async def _metrics(self, request: Request) -> Response:
        from starlette.responses import Response

        body, content_type = self.telemetry.exposition()
        return Response(body, headers={"Content-Type": content_type})

    async def _health(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse(
            {
                name: {"record": state.view.record.id, "state": state.view.record.state}
                for name, state in self.routes.items()
            }
        )

    def _route(self, name: str, protocol: str) -> RouteState:
        state = self.routes.get(name)
        if state is None or state.config.protocol != protocol:
            raise GatewayError(404, f"no {protocol} route named {name!r} in {self.config.source}")
        return state

    async def _triton(self, request: Request) -> Response:
        async def handle() -> Response:
            state = self._route(request.path_params["name"], TRITON)
            body = await request.body()
            return await self._forward(
                request,
                state,
                body,
                lambda place: triton_path(state.config.triton_model, place.number or 1),
                lambda place, raw: raw,
            )

        return await self._answer(handle)

    async def _openai_call(self, request: Request) -> Response:
        async def handle() -> Response:
            body = await request.body()
            document = json_object(body)
            name = document.get("model")
            if isinstance(name, str) and name in self.routes:
                state = self._route(name, OPENAI)
            elif len(self._openai) == 1:
                state = self.routes[self._openai[0].name]
            else:
                raise GatewayError(404, f"no openai route named {name!r} in {self.config.source}")
            path = request.url.path
            assert path in OPENAI_PATHS
            return await self._forward(
                request,
                state,
                body,
                lambda place: path,
                lambda place, raw: with_model(document, place.served or state.config.model),
            )

        return await self._answer(handle)

    async def _http(self, request: Request) -> Response:
        async def handle() -> Response:
            state = self._route(request.path_params["name"], HTTP)
            rest = request.path_params.get("rest", "")
            query = request.url.query
            body = await request.body()
            return await self._forward(
                request,
                state,
                body,
                lambda place: "/" + rest + (f"?{query}" if query else ""),
                lambda place, raw: raw,
            )

        return await self._answer(handle)

    async def _answer(self, handle: Callable[[], Any]) -> Response:
        from starlette.responses import JSONResponse

        try:
            response: Response = await handle()
            return response
        except GatewayError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    # --- forwarding ---------------------------------------------------------------------------

    async def _forward(
        self,
        request: Request,
        state: RouteState,
        body: bytes,
        path_of: Callable[[Place], str],
        body_for: Callable[[Place, bytes], bytes],
    ) -> Response:
        from starlette.responses import Response

        pin = request.headers.get(PIN_HEADER)
        key = state.key_of(request)
        if pin is not None and pin.strip() == "":
            pin = None
        if pin is not None and not state.pin_known(pin.strip()):
            # a pin not resolved since the last look at the channel: the store is read, off
            # the event loop
            chosen = await asyncio.to_thread(state.choose, key, pin.strip())
        elif pin is not None:
            chosen = state.choose(key, pin.strip())
        else:
            chosen = state.choose(key, None)
        headers = [
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in _DROP and k.lower() != PIN_HEADER.lower()
        ]
        if not any(k.lower() == "accept-encoding" for k, _ in headers):
            headers.append(("accept-encoding", "identity"))  # pass bytes through as they come
        method = request.method
        primary: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        for shadow, place in chosen.shadows:
            self._mirror(state, shadow, place, method, path_of, body_for, body, headers, primary)
        answer = await self._call(
            chosen.decision, chosen.place, method, path_of, body_for, body, headers, chosen.pin
        )
        served = self._served_headers(chosen)
        if answer.status == 0:  # no answer: the gateway says why (504 timed out, 502 otherwise)
            if not primary.done():
                primary.set_result((0, answer.data))
            return Response(
                answer.data,
                status_code=504 if answer.timed_out else 502,
                media_type="application/json",
                headers=served,
            )
        passed = {k: v for k, v in answer.headers if k.lower() not in _DROP}
        if answer.stream is not None:
            return self._streamed(chosen, answer, primary, {**passed, **served})
        if not primary.done():
            primary.set_result((answer.status, answer.data))
        response = Response(answer.data, status_code=answer.status)
        for k, v in answer.headers:
            if k.lower() not in _DROP:
                response.headers.append(k, v)
        for k, v in served.items():
            response.headers[k] = v
        return response

    def _served_headers(self, chosen: Chosen) -> dict[str, str]:
        decision = chosen.decision
        return {
            "X-Model-Version": chosen.name or decision.version[:12],
            VERSION_ID_HEADER: decision.version,
            ARM_HEADER: decision.label,
            RECORD_HEADER: decision.record,
        }

    async def _call(
        self,
        decision: RouteDecision,
        place: Place,
        method: str,
        path_of: Callable[[Place], str],
        body_for: Callable[[Place, bytes], bytes],
        body: bytes,
        headers: list[tuple[str, str]],
        pin: str | None,
        *,
        shadow: bool = False,
        timeout: float | None = None,
    ) -> Answer:
        """One upstream call; status 0 (and an error body) when there is no answer. A primary
        call is recorded here unless its answer streams (``text/event-stream``: recorded when
        the stream ends); a shadow's by its caller."""
        import httpx

        assert self._client is not None
        url = place.url + path_of(place)
        started = time.perf_counter()
        answer = Answer(0, b"", [], started)
        try:
            request = self._client.build_request(
                method,
                url,
                content=body_for(place, body) if body else None,
                headers=headers,
                timeout=timeout if timeout is not None else self.config.timeout,
            )
            try:
                upstream = await self._client.send(request, stream=True)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                # A kept-alive connection the upstream closed as we reused it (servers drop
                # idle ones after a few seconds): nothing was answered; once more, afresh.
                upstream = await self._client.send(request, stream=True)
            answer.status = upstream.status_code
            answer.headers = list(upstream.headers.multi_items())
            streams = upstream.headers.get("content-type", "").startswith("text/event-stream")
            if streams and not shadow:
                answer.stream = upstream
                return answer
            try:
                answer.data = await upstream.aread()
            finally:
                await upstream.aclose()
        except httpx.TimeoutException:
            answer.data = b'{"error":"the upstream did not answer in time"}'
            answer.status, answer.timed_out = 0, True
        except httpx.HTTPError as exc:
            answer.data = json.dumps(
                {"error": f"the upstream did not answer: {type(exc).__name__}"}
            ).encode()
            answer.status = 0
        if not shadow:
            self.telemetry.record(
                Outcome(decision, answer.status, answer.elapsed_ms(), self._now(), pin)
            )
        return answer

    def _streamed(
        self,
        chosen: Chosen,
        answer: Answer,
        primary: asyncio.Future[tuple[int, bytes]],
        headers: dict[str, str],
    ) -> Response:
        """Pass an event stream (``stream: true`` completions) through as it comes; record it,
        and give shadows its bytes, when it ends."""
        import httpx
        from starlette.responses import StreamingResponse

        upstream = answer.stream
        assert upstream is not None
        seen: list[bytes] = []

        async def relay() -> AsyncIterator[bytes]:
            status = answer.status
            try:
                async for chunk in upstream.aiter_raw():
                    seen.append(chunk)
                    yield chunk
            except httpx.HTTPError:
                status = 0  # cut off mid-stream: recorded as no answer
            finally:
                await upstream.aclose()
                if not primary.done():
                    primary.set_result((status, b"".join(seen)))
                self.telemetry.record(
                    Outcome(chosen.decision, status, answer.elapsed_ms(), self._now(), chosen.pin)
                )

        return StreamingResponse(relay(), status_code=answer.status, headers=headers)

    def _mirror(
        self,
        state: RouteState,
        decision: RouteDecision,
        place: Place,
        method: str,
        path_of: Callable[[Place], str],
        body_for: Callable[[Place, bytes], bytes],
        body: bytes,
        headers: list[tuple[str, str]],
        primary: asyncio.Future[tuple[int, bytes]],
    ) -> None:
        if self._shadow_pending >= self.config.shadow_concurrency:
            self.telemetry.dropped(decision.model, decision.channel)
            return
        self._shadow_pending += 1
        protocol = state.config.protocol
        timeout = self.config.shadow_timeout

        async def run() -> None:
            try:
                answer = await self._call(
                    decision, place, method, path_of, body_for, body, headers, None,
                    shadow=True, timeout=timeout,
                )  # fmt: skip
                latency = answer.elapsed_ms()
                agreed: bool | None = None  # unknown: the answering arm had no answer in time
                try:
                    their_status, their_data = await asyncio.wait_for(
                        asyncio.shield(primary), timeout
                    )
                    if their_status != 0:
                        agreed = answer.status != 0 and agree(
                            protocol, answer.status, answer.data, their_status, their_data
                        )
                except TimeoutError:
                    pass
                self.telemetry.record(
                    Outcome(
                        decision, answer.status, latency, self._now(), shadow=True, agree=agreed
                    )
                )
            finally:
                self._shadow_pending -= 1

        task = asyncio.get_running_loop().create_task(run())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def drain_shadows(self) -> None:
        """Wait for the shadow copies in flight (tests, and a clean shutdown)."""
        while self._shadow_tasks:
            await asyncio.gather(*list(self._shadow_tasks), return_exceptions=True)


def open_gateway(
    repo: Repo,
    config: GatewayConfig,
    *,
    sinks: Sequence[Sink] = (),
    clock: Callable[[], datetime] | None = None,
) -> Gateway:
    """A gateway over ``repo``; every route's channel must exist."""
    for route in config.routes:
        if repo.refs.get(channel_ref(route.model, route.channel)) is None:
            raise NotFound(
                f"{config.source}: route {route.name!r}: channel {route.channel!r} of "
                f"{route.model!r} does not exist",
                hint=f"deploy it first: `mvc channel set {route.model} {route.channel} REV`",
            )
    return Gateway(repo, config, sinks=sinks, clock=clock)
