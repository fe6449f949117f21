"""Interrupted transfers: lost answers, dropped connections, 5xx and 403 from a remote.

What mvc guarantees: a create whose answer was lost is recognised as ours (no false "another
writer got there first", no duplicate entry); connection failures, connect timeouts and 5xx are
retried a bounded number of times (``RetryPolicy.tries``); a 403 fails at once with a clear
message; and when a push fails, no remote ref has moved.

S3 runs against moto on loopback; faults are injected either at the fsspec layer (a wrapped
filesystem) or by ``FaultProxy``, a loopback HTTP proxy between mvc and moto.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from _remote_helpers import FaultProxy, Rule, no_sleep

from mvc.refnames import branch
from mvc.remotes import open_remote
from mvc.repo import Repo
from mvc.storage.remote import RetryPolicy

pytestmark = pytest.mark.s3

MAIN = branch("bert", "main")
#: The PUT that creates a ref-log entry (create-if-absent).
ENTRY_PUT = r"/refs/heads/bert/main/\d{10}$"


def _commit(cli: Any, make_model: Any, seed: int) -> str:
    make_model("models/bert", seed=seed)
    return cli("commit", "models/bert", "-m", f"seed {seed}").stdout.strip()


def _remote_log(store: Repo) -> list[tuple[str | None, str | None]]:
    refs = open_remote(Repo(store.root), "origin").refs
    return [(e.old, e.new) for e in refs.entries(MAIN)]


@pytest.fixture
def proxy(s3_endpoint: str) -> Any:
    with FaultProxy(s3_endpoint) as running:
        yield running


@pytest.fixture
def via_proxy(store: Repo, cli: Any, s3_url: Any, proxy: FaultProxy, monkeypatch) -> FaultProxy:
    """Remote ``origin`` is the test bucket reached through the proxy; retries do not sleep."""
    no_sleep(monkeypatch)
    cli("remote", "add", "origin", s3_url.url, "-o", f"endpoint_url={proxy.url}")
    return proxy


# --- a lost answer to the conditional create ------------------------------------------------------


def test_lost_answer_at_the_fsspec_layer_is_recognised_as_our_own_entry(
    store, cli, make_model, s3_url, monkeypatch
) -> None:
    """The create lands, then the answer is lost (a read timeout): the retry meets 412 and must
    read the entry back and find our own bytes, not report another writer."""
    import botocore.exceptions

    import mvc.remotes as remote_module  # where remotes are opened

    no_sleep(monkeypatch)
    real_open = remote_module.open_storage
    lost: list[str] = []

    def open_with_lossy_creates(url: str, options: Any = None) -> Any:
        storage = real_open(url, options)
        original = storage.fs.pipe_file

        def pipe_file(path: str, data: Any, mode: str = "overwrite", **kw: Any) -> Any:
            out = original(path, data, mode=mode, **kw)
            if mode == "create" and "/refs/" in path and not lost:
                lost.append(path)
                raise botocore.exceptions.ReadTimeoutError(endpoint_url=path)
            return out

        storage.fs.pipe_file = pipe_file
        return storage

    monkeypatch.setattr(remote_module, "open_storage", open_with_lossy_creates)
    version = _commit(cli, make_model, 0)
    cli("remote", "add", "origin", s3_url.url, *_opts(s3_url))
    pushed = cli("push", "origin", "bert@main", "--json").json()
    assert lost, "the fault never fired"
    assert pushed["refs"][0]["status"] == "created"
    assert _remote_log(store) == [(None, version)]  # one entry: no duplicate


def test_lost_answer_on_the_wire_is_recognised_as_our_own_entry(
    store, cli, make_model, via_proxy
) -> None:
    """The same over HTTP: moto stores the entry, the proxy drops the connection before the
    answer, and mvc's retry gets 412 PreconditionFailed."""
    first = _commit(cli, make_model, 0)
    cli("push", "origin", "bert@main")
    second = _commit(cli, make_model, 1)
    rule = via_proxy.add(Rule("PUT", ENTRY_PUT, "lose_answer", headers={"If-None-Match": "*"}))
    pushed = cli("push", "origin", "bert@main", "--json").json()
    assert rule.hits == 1
    assert via_proxy.requests("PUT", ENTRY_PUT) == 3  # entry 1, entry 2, entry 2 again
    assert pushed["refs"][0]["status"] == "fast-forward"
    assert _remote_log(store) == [(None, first), (first, second)]


def test_another_writers_entry_in_our_slot_is_still_a_conflict(
    store, cli, make_model, s3_url, monkeypatch
) -> None:
    """Reading back compares content: when the slot holds another writer's entry, the push
    is told it lost the race (exit 11) and the other entry stays."""
    import json

    import mvc.remotes as remote_module  # where remotes are opened

    no_sleep(monkeypatch)
    first = _commit(cli, make_model, 0)
    cli("remote", "add", "origin", s3_url.url, *_opts(s3_url))
    cli("push", "origin", "bert@main")
    _commit(cli, make_model, 1)
    real_open = remote_module.open_storage
    raced: list[bytes] = []

    def open_with_a_rival(url: str, options: Any = None) -> Any:
        storage = real_open(url, options)
        original = storage.fs.pipe_file

        def pipe_file(path: str, data: Any, mode: str = "overwrite", **kw: Any) -> Any:
            if mode == "create" and "/refs/" in path and not raced:
                theirs = json.loads(data)
                theirs["who"] = "someone else"
                raced.append(json.dumps(theirs).encode())
                original(path, raced[0], mode="create")  # the rival lands first
            return original(path, data, mode=mode, **kw)

        storage.fs.pipe_file = pipe_file
        return storage

    monkeypatch.setattr(remote_module, "open_storage", open_with_a_rival)
    lost = cli("push", "origin", "bert@main", expect=11)
    assert "another writer got there first" in lost.stderr
    refs = open_remote(Repo(store.root), "origin").refs
    assert [e.who for e in refs.entries(MAIN)][-1] == "someone else"
    assert refs.entries(MAIN)[0].new == first


# --- connection failures, 5xx and 403 -------------------------------------------------------------


def test_dropped_connections_and_503s_are_retried_and_the_push_succeeds(
    store, cli, make_model, via_proxy
) -> None:
    version = _commit(cli, make_model, 0)
    via_proxy.add(Rule("PUT", r"/objects/", "drop", times=2))
    via_proxy.add(Rule("PUT", r"/objects/", "status:503", times=2))
    via_proxy.add(Rule("HEAD", r"/objects/", "status:503", times=1))
    via_proxy.add(Rule("GET", r"list-type=2", "drop", times=1))
    cli("push", "origin", "bert@main")
    assert _remote_log(store) == [(None, version)]


def test_a_remote_that_keeps_failing_stops_after_bounded_tries_and_moves_no_ref(
    store, cli, make_model, via_proxy
) -> None:
    _commit(cli, make_model, 0)
    rule = via_proxy.add(Rule("PUT", r"/objects/", "status:503", times=1000))
    failed = cli("push", "origin", "bert@main", "--jobs", "1", expect=1)
    tries = _per_object(via_proxy, "PUT")
    assert rule.hits and set(tries.values()) == {RetryPolicy.tries}  # bounded, then it stops
    assert "still failing after 5 tries" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert _remote_log(store) == []


def test_access_denied_fails_at_once_with_a_clear_message(
    store, cli, make_model, via_proxy
) -> None:
    _commit(cli, make_model, 0)
    rule = via_proxy.add(Rule("PUT", r"/objects/", "status:403", times=1000))
    failed = cli("push", "origin", "bert@main", "--jobs", "1", expect=1)
    assert rule.hits and set(_per_object(via_proxy, "PUT").values()) == {1}  # never retried
    assert "access denied" in failed.stderr and "credentials" in failed.stderr
    assert _remote_log(store) == []


def test_connection_refused_is_retried_then_named(store, cli, make_model, monkeypatch) -> None:
    """Nothing listens at the endpoint: every try is refused; bounded, then exit 1."""
    import socket

    # Credentials, so the client gets as far as connecting (alone, no moto fixture sets them).
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    pauses = no_sleep(monkeypatch)
    with socket.socket() as sock:  # a port that was free a moment ago, and is closed again
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _commit(cli, make_model, 0)
    cli(
        "remote",
        "add",
        "origin",
        "s3://nowhere/store",
        "-o",
        f"endpoint_url=http://127.0.0.1:{port}",
    )
    failed = cli("push", "origin", "bert@main", expect=1)
    assert len(pauses) >= RetryPolicy.tries - 1  # the connection failures were retried
    assert "still failing after 5 tries" in failed.stderr


def _per_object(proxy: FaultProxy, method: str) -> dict[str, int]:
    """How many times each object key was requested with ``method``."""
    counts: dict[str, int] = {}
    for seen, path in proxy.log:
        if seen == method and "/objects/" in path:
            counts[path] = counts.get(path, 0) + 1
    return counts


def _opts(s3_url: Any) -> list[str]:
    return ["-o", f"endpoint_url={s3_url.options['endpoint_url']}"]


def test_a_server_that_ignores_range_is_named_not_trusted(monkeypatch) -> None:
    """A ranged read answered with the whole value is refused (never wrong bytes)."""
    from fsspec.implementations.memory import MemoryFileSystem

    from mvc.errors import RemoteError
    from mvc.storage.remote import FsspecStorage

    class IgnoresRange(MemoryFileSystem):
        def cat_file(self, path: str, start: Any = None, end: Any = None, **kw: Any) -> Any:
            return super().cat_file(path, **kw)  # the whole value, whatever was asked

    storage = FsspecStorage(IgnoresRange(skip_instance_cache=True), "/ignores-range")
    storage.write("objects/ab/cd", [bytes(range(256)) * 64])
    monkeypatch.setattr("mvc.storage.remote.READ_BUFFER", 1024)  # pieces smaller than the value
    with (
        storage.open_read("objects/ab/cd") as handle,
        pytest.raises(RemoteError, match="ignores ranged reads"),
    ):
        while handle.read(1000):
            pass


def test_a_remote_ref_that_moved_between_attempt_and_resume_is_not_overwritten(
    store, cli, make_model, s3_url, via_proxy, tmp_path
) -> None:
    a = _commit(cli, make_model, 0)
    cli("push", "origin", "bert@main")
    other = tmp_path / "other"
    cli("clone", s3_url.url, other, "--checkout", *_opts(s3_url))  # straight to moto
    b = _commit(cli, make_model, 1)
    cut = via_proxy.add(Rule("PUT", r"/objects/", "status:503", times=10**6))
    cli("push", "origin", "bert@main", expect=1)  # interrupted: some objects, no ref
    assert _remote_log(store) == [(None, a)]
    make_model(f"{other}/bert", seed=2)
    c = cli("-C", other, "commit", "bert", "-m", "meanwhile").stdout.strip()
    cli("-C", other, "push", "origin", "bert@main")
    cut.times = 0  # the network is back
    resumed = cli("push", "origin", "bert@main", expect=11)
    assert "remote ref moved; pull and retry" in resumed.stderr
    assert _remote_log(store) == [(None, a), (a, c)]  # c stays; b never replaced it
    assert b not in {new for _old, new in _remote_log(store)}


def test_botocore_connection_failures_are_transient_but_certificates_are_not() -> None:
    """botocore's ConnectionError family is not the builtin one: named one by one."""
    import botocore.exceptions as b

    from mvc.storage.remote import is_transient

    url = "http://127.0.0.1:1/x"
    assert is_transient(b.EndpointConnectionError(endpoint_url=url))
    assert is_transient(b.ConnectTimeoutError(endpoint_url=url))
    assert is_transient(b.ReadTimeoutError(endpoint_url=url))
    assert is_transient(b.ConnectionClosedError(endpoint_url=url))
    assert is_transient(b.ProxyConnectionError(proxy_url=url, error="refused"))
    assert not is_transient(b.SSLError(endpoint_url=url, error="certificate verify failed"))
