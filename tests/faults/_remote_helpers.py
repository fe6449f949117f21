"""Helpers for hostile-remote and interrupted-transfer tests.

``FaultProxy`` is a small HTTP proxy on loopback in front of the moto S3 server: it forwards
every request unchanged unless a rule matches, and then fails it the way a network or a
service fails (a lost answer, a dropped connection, a 503 or 403, a stall, an endless listing).
Rules fire a bounded number of times; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: What a rule does to a matching request.
#: - ``lose_answer``: forward it (the server acts on it), then close without answering
#: - ``drop``: close the connection without forwarding (a reset before anything happened)
#: - ``status:NNN``: answer NNN with an S3 error body, without forwarding
#: - ``stall:S``: wait S seconds, then forward (a slow or stalled server)
#: - ``endless_listing``: answer a ListObjectsV2 with a page that is always "truncated"
ACTIONS = ("lose_answer", "drop", "status", "stall", "endless_listing")

_S3_CODES = {403: "AccessDenied", 500: "InternalError", 503: "ServiceUnavailable"}


@dataclass
class Rule:
    method: str
    path: str  # a regular expression searched in the request path (query included)
    action: str
    times: int = 1  # how many matching requests it fails; then it stops matching
    hits: int = 0
    headers: dict[str, str] = field(default_factory=dict)  # required request headers

    def matches(self, method: str, path: str, headers: dict[str, str]) -> bool:
        if self.hits >= self.times or method != self.method or not re.search(self.path, path):
            return False
        return all(headers.get(k.lower()) == v for k, v in self.headers.items())


class FaultProxy:
    """``with FaultProxy(upstream) as proxy: proxy.add(Rule(...)); ... proxy.url``"""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str]] = []  # (method, path) of every request seen
        self.answered: list[tuple[str, str, int]] = []  # (method, path, body bytes) sent back
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def requests(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.log if m == method and re.search(path, p))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take(self, method: str, path: str, headers: dict[str, str]) -> Rule | None:
        with self._lock:
            self.log.append((method, path))
            for rule in self.rules:
                if rule.matches(method, path, headers):
                    rule.hits += 1
                    return rule
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    return self.rfile.read(length)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return b""

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"
                    }
                    headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    return answer.status, answer.getheaders(), answer.read()
                finally:
                    conn.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                    proxy.answered.append((self.command, self.path, len(body)))

            def _cut(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _handle(self) -> None:
                body = self._body()
                headers = {k.lower(): v for k, v in self.headers.items()}
                rule = proxy._take(self.command, self.path, headers)
                action = rule.action if rule else "forward"
                if action == "drop":
                    return self._cut()
                if action.startswith("status:"):
                    status = int(action.split(":")[1])
                    code = _S3_CODES.get(status, "Error")
                    xml = (
                        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                        f"<Message>injected by the test</Message></Error>"
                    ).encode()
                    return self._answer(status, [("Content-Type", "application/xml")], xml)
                if action == "endless_listing":
                    return self._answer(200, [("Content-Type", "application/xml")], _page(rule))
                if action.startswith("stall:"):
                    time.sleep(float(action.split(":")[1]))
                status, out_headers, out_body = self._forward(body)
                if action == "lose_answer":
                    return self._cut()
                return self._answer(status, out_headers, out_body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler


def _page(rule: Rule | None) -> bytes:
    """One page of a listing that claims there is always more (a fresh token every time)."""
    number = rule.hits if rule else 0
    keys = "".join(
        f"<Contents><Key>store/objects/{number:04d}{i:04d}</Key><Size>1</Size></Contents>"
        for i in range(3)
    )
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        "<ListBucketResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'>"
        f"<IsTruncated>true</IsTruncated><KeyCount>3</KeyCount>{keys}"
        f"<NextContinuationToken>token-{number}</NextContinuationToken></ListBucketResult>"
    ).encode()


@contextmanager
def proxied(upstream: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream) as proxy:
        yield proxy


def no_sleep(monkeypatch, recorder: Callable[[float], None] | None = None) -> list[float]:
    """Make RetryPolicy's pauses instant; returns the pauses it asked for."""
    from mvc.storage import remote

    pauses: list[float] = []
    monkeypatch.setattr(remote, "_wait", recorder or pauses.append)
    return pauses


# --- building hostile remote folders ----------------------------------------------------------


def raw_put(root: object, key: str, data: bytes) -> None:
    """Write ``data`` at ``key`` of a folder remote, bypassing mvc (the attacker's pen)."""
    import os

    path = os.path.join(str(root), *key.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def raw_entry(new: str | None, seq: int = 1, old: str | None = None, who: str = "x") -> bytes:
    """A ref-log entry as a remote could hold it."""
    from mvc.canonical import encode_canonical

    return encode_canonical(
        {"seq": seq, "old": old, "new": new, "who": who, "when": "2026-01-01T00:00:00Z", "why": ""}
    )


def put_meta(root: object, value: dict, *, allow_nan: bool = False) -> str:
    """Store a metadata object under its honest id; ``allow_nan`` writes NaN/Infinity literally
    (bytes canonical JSON would never produce, hashed as they are)."""
    import json

    from mvc import codec
    from mvc.ids import hash_bytes
    from mvc.store import object_key

    data = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan
    ).encode()
    oid = hash_bytes(data)
    raw_put(root, object_key(oid), b"".join(codec.encode(data, compress=True, meta=True)))
    return oid


def ref_key(ref: object, seq: int) -> str:
    """The key of entry ``seq`` of ``ref`` (a RefName)."""
    return f"{ref.folder}/{seq:010d}"  # type: ignore[attr-defined]
