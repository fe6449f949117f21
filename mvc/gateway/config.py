"""The gateway's configuration file (``serve.yaml``): routes, upstreams, keys, bounds.

Parsed once, up front, with ``yamltext.load_yaml`` (no tags, no aliases, no duplicate keys),
so every refusal reads ``serve.yaml:12: routes.bert.protocol: ...``. Pure: version texts stay
text here; the gateway resolves them against the store (``resolve_targets``).

Shape (docs/serving.md has the full reference)::

    poll_interval: 1s            # how often channels are re-read: the bound on seeing a move
    timeout: 30s                 # per upstream request
    decision_log: decisions.jsonl
    metric_store: true           # outcomes into the store's metric database (buffered)
    shadow: {concurrency: 16, timeout: 10s}
    routes:
      bert:                      # the name clients use: Triton model name, OpenAI model, /bert/…
        channel: prod
        protocol: triton         # triton | openai | http
        key: header X-User-Id    # or: cookie uid
        upstream: http://127.0.0.1:8000
        versions: {v1.4.0: 1, v1.5.0: 2}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NoReturn
from urllib.parse import urlsplit

from mvc.errors import PolicyError, UsageError
from mvc.policy.text import PolicyText
from mvc.refnames import validate_channel, validate_model
from mvc.yamltext import YamlProblem, load_yaml

TRITON, OPENAI, HTTP = "triton", "openai", "http"
PROTOCOLS = (TRITON, OPENAI, HTTP)
HEADER, COOKIE = "header", "cookie"
NO_KEY_STABLE, NO_KEY_RANDOM = "stable", "random"
PIN_HEADER = "X-Model-Version"

_TOP = ("poll_interval", "timeout", "decision_log", "metric_store", "shadow", "routes")
_ROUTE = (
    "model",
    "channel",
    "protocol",
    "key",
    "no_key",
    "upstream",
    "triton_model",
    "versions",
)
_TARGET = ("url", "number", "model")


class _Text(PolicyText):
    def fail(self, path: str, message: str, *, hint: str | None = None) -> NoReturn:
        raise PolicyError(
            f"{self.where(path)}: {path + ': ' if path else ''}{message}",
            hint=hint or f"fix {self.source}; docs/serving.md describes the gateway's file",
        )


@dataclass(frozen=True)
class KeySource:
    """Where a request's routing key comes from: a header or a cookie."""

    kind: str  # header | cookie
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class TargetPlace:
    """Where one version (or version + adapter) is served, as written in the file.

    ``url`` None means the route's ``upstream``; ``number`` is a Triton version number;
    ``model`` the name an OpenAI-style server knows it by (vLLM's LoRA name).
    """

    text: str  # the target as written: v1.4.0, bert@v1.4.0, v1 + sql-lora@v1.3.0
    url: str | None = None
    number: int | None = None
    model: str | None = None
    where: str = ""  # serve.yaml:LINE, for errors found when it is resolved


@dataclass(frozen=True)
class RouteConfig:
    name: str
    model: str
    channel: str
    protocol: str
    key: KeySource
    no_key: str
    upstream: str | None
    triton_model: str
    versions: tuple[TargetPlace, ...]


@dataclass(frozen=True)
class GatewayConfig:
    source: str
    routes: tuple[RouteConfig, ...]
    poll_interval: float = 1.0
    timeout: float = 30.0
    decision_log: str | None = None
    metric_store: bool = True  # record every outcome in the store's metric database
    shadow_concurrency: int = 16
    shadow_timeout: float = 10.0

    def route(self, name: str) -> RouteConfig | None:
        return next((r for r in self.routes if r.name == name), None)


def _url(ctx: PolicyText, path: str, value: object) -> str:
    text = ctx.string(path, value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        ctx.fail(path, f"{text!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
    return text.rstrip("/")


def _key(ctx: PolicyText, path: str, value: object) -> KeySource:
    text = ctx.string(path, value)
    kind, _, name = text.strip().partition(" ")
    if kind not in (HEADER, COOKIE) or not name.strip() or " " in name.strip():
        ctx.fail(path, f"{text!r} is not a key source: write 'header NAME' or 'cookie NAME'")
    return KeySource(kind, name.strip())


def _target(ctx: PolicyText, path: str, text: str, value: object, protocol: str) -> TargetPlace:
    where = ctx.where(path)
    if isinstance(value, Mapping):
        ctx.only_keys(path, value, _TARGET)
        url = _url(ctx, f"{path}.url", value["url"]) if "url" in value else None
        number = (
            ctx.integer(f"{path}.number", value["number"], minimum=1) if "number" in value else None
        )
        model = ctx.string(f"{path}.model", value["model"]) if "model" in value else None
        place = TargetPlace(text, url, number, model, where)
    elif protocol == HTTP:
        place = TargetPlace(text, url=_url(ctx, path, value), where=where)
    elif protocol == TRITON:
        place = TargetPlace(text, number=ctx.integer(path, value, minimum=1), where=where)
    else:
        place = TargetPlace(text, model=ctx.string(path, value), where=where)
    if place.number is not None and protocol != TRITON:
        ctx.fail(f"{path}.number", "a version number is for protocol triton only")
    if place.model is not None and protocol != OPENAI:
        ctx.fail(f"{path}.model", "a served model name is for protocol openai only")
    return place


def _route(ctx: PolicyText, name: str, value: object) -> RouteConfig:
    path = f"routes.{name}"
    raw = ctx.mapping(path, value)
    ctx.only_keys(path, raw, _ROUTE)
    model = ctx.string(f"{path}.model", raw.get("model", name))
    try:
        validate_model(model)
        if "channel" not in raw:
            ctx.fail(path, "no channel: name the channel this route serves (e.g. channel: prod)")
        channel = ctx.string(f"{path}.channel", raw["channel"])
        validate_channel(channel)
    except UsageError as exc:
        ctx.fail(path, exc.message)
    protocol = ctx.string(f"{path}.protocol", raw.get("protocol", HTTP))
    if protocol not in PROTOCOLS:
        ctx.fail(f"{path}.protocol", f"{protocol!r} is not one of {', '.join(PROTOCOLS)}")
    key = _key(ctx, f"{path}.key", raw.get("key", "header X-Request-Key"))
    no_key = ctx.string(f"{path}.no_key", raw.get("no_key", NO_KEY_STABLE))
    if no_key not in (NO_KEY_STABLE, NO_KEY_RANDOM):
        ctx.fail(f"{path}.no_key", f"{no_key!r} is not 'stable' or 'random'")
    upstream = _url(ctx, f"{path}.upstream", raw["upstream"]) if "upstream" in raw else None
    versions_raw = ctx.mapping(f"{path}.versions", raw.get("versions", {}))
    versions = tuple(
        _target(ctx, f"{path}.versions.{text}", str(text), item, protocol)
        for text, item in versions_raw.items()
    )
    for place in versions:
        if place.url is None and upstream is None:
            ctx.fail(
                f"{path}.versions.{place.text}",
                "no URL: give this version a url, or the route an upstream",
            )
    if upstream is None and not versions:
        ctx.fail(path, "no upstream and no versions: say where requests go")
    triton_model = ctx.string(f"{path}.triton_model", raw.get("triton_model", name))
    return RouteConfig(
        str(name), model, channel, protocol, key, no_key, upstream, triton_model, versions
    )


def parse_config(text: str, source: str) -> GatewayConfig:
    """The gateway's file from its text (``source`` names it in errors)."""
    try:
        loaded = load_yaml(text, aliases=False, finite=True)
    except YamlProblem as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        raise PolicyError(f"{where}: {exc.message}", hint="fix the YAML") from exc
    ctx = _Text(source, loaded.lines)
    raw = ctx.mapping("", loaded.value if loaded.value is not None else {})
    ctx.only_keys("", raw, _TOP)
    routes_raw = ctx.mapping("routes", raw.get("routes"))
    if not routes_raw:
        ctx.fail("routes", "no routes: name at least one model and channel to serve")
    routes = tuple(_route(ctx, str(name), value) for name, value in routes_raw.items())
    shadow = ctx.mapping("shadow", raw.get("shadow", {}))
    ctx.only_keys("shadow", shadow, ("concurrency", "timeout"))
    log = raw.get("decision_log")
    return GatewayConfig(
        source=source,
        routes=routes,
        poll_interval=ctx.duration("poll_interval", raw.get("poll_interval", 1.0)),
        timeout=ctx.duration("timeout", raw.get("timeout", 30.0)),
        decision_log=ctx.string("decision_log", log) if log is not None else None,
        metric_store=ctx.boolean("metric_store", raw.get("metric_store", True)),
        shadow_concurrency=ctx.integer(
            "shadow.concurrency", shadow.get("concurrency", 16), minimum=1
        ),
        shadow_timeout=ctx.duration("shadow.timeout", shadow.get("timeout", 10.0)),
    )


def read_config(path: str) -> GatewayConfig:
    """Read and parse the file; a relative ``decision_log`` is relative to the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise UsageError(
            f"cannot read the gateway's file {path}: {exc.strerror or exc}",
            hint="pass the path of a serve.yaml (docs/serving.md shows one)",
        ) from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text") from exc
    config = parse_config(text, os.path.basename(path))
    if config.decision_log and not os.path.isabs(config.decision_log):
        folder = os.path.dirname(os.path.abspath(path))
        config = replace(config, decision_log=os.path.join(folder, config.decision_log))
    return config
