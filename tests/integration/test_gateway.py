"""mvc serve: the gateway on uvicorn (loopback) in front of real HTTP upstreams, one per version,
speaking Triton's and OpenAI's documented request shapes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from deployfix import Store
from gatewayfix import OpenAI, Plain, Server, Triton, upstreams

from mvc.errors import PolicyError
from mvc.gateway.app import Gateway, open_gateway
from mvc.gateway.config import parse_config
from mvc.metrics.model import Query
from mvc.metrics.sqlite import MetricsDB
from mvc.ops import deploy as ops
from mvc.router import Router

M, C = "bert", "prod"
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]  # see gatewayfix.Server


def gateway_for(st: Store, text: str, **kw: Any) -> Gateway:
    return open_gateway(st.repo, parse_config(text, "serve.yaml"), **kw)


class Running:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.stopped = False
        self.server = Server(gateway.app())
        self.url = self.server.url
        self.client = httpx.Client(
            base_url=self.url, timeout=30, transport=httpx.HTTPTransport(socket_options=NODELAY)
        )

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.client.close()
            self.server.stop()

    def many(self, requests: list[dict[str, Any]], concurrency: int = 32) -> list[httpx.Response]:
        """Send requests concurrently (method, url, headers, json) and return the responses."""

        async def run() -> list[httpx.Response]:
            limit = asyncio.Semaphore(concurrency)
            transport = httpx.AsyncHTTPTransport(socket_options=NODELAY)
            async with httpx.AsyncClient(
                base_url=self.url, timeout=30, transport=transport
            ) as client:

                async def one(spec: dict[str, Any]) -> httpx.Response:
                    async with limit:
                        return await client.request(spec.pop("method", "POST"), **spec)

                return await asyncio.gather(*(one(dict(r)) for r in requests))

        return asyncio.run(run())

    def wait_shadows(self, expected: float, sample: Any, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (sample() or 0) < expected and time.monotonic() < deadline:
            time.sleep(0.05)


def wait_for_record(client: httpx.Client, record: str | None, timeout: float = 20) -> float:
    """Seconds until /healthz shows ``record`` for route bert (the gateway's poller saw it)."""
    started = time.monotonic()
    while client.get("/healthz").json()["bert"]["record"] != record:
        assert time.monotonic() - started < timeout, "the gateway never saw the move"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def running() -> Iterator[Any]:
    started: list[Running] = []

    def start(gateway: Gateway) -> Running:
        started.append(Running(gateway))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def triton_request(key: str, **headers: str) -> dict[str, Any]:
    return {
        "url": "/v2/models/bert/versions/1/infer",
        "headers": {"X-User": key, **headers},
        "json": {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]},
    }


def triton_config(ups: tuple[Any, ...], extra: str = "") -> str:
    # Each version on its own Triton server; the numbers are the export's (first appearance in
    # the channel's history) unless given here.
    v14, v15, v16 = ups
    return f"""
poll_interval: 0.1s
{extra}
routes:
  bert:
    channel: prod
    protocol: triton
    key: header X-User
    versions:
      v1.4.0: {{url: {v14.url}, number: 4}}
      v1.5.0: {{url: {v15.url}, number: 5}}
      v1.6.0: {{url: {v16.url}, number: 6}}
"""


@pytest.fixture
def tritons() -> Iterator[tuple[Any, ...]]:
    with upstreams(
        Triton("v1.4.0", "bert", (4,)),
        Triton("v1.5.0", "bert", (5,)),
        Triton("v1.6.0", "bert", (6,)),
    ) as ups:
        yield ups


@pytest.mark.slow
def test_canary_shares_within_a_point_of_the_weights_over_many_keys(st, tritons, running) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    gw = running(gateway_for(st, triton_config(tritons)))
    keys = [f"user-{i}" for i in range(2000)]
    answers = gw.many([triton_request(k) for k in keys])
    assert {r.status_code for r in answers} == {200}
    arms = Counter(r.headers["X-Model-Arm"] for r in answers)
    assert arms["canary"] / len(keys) == pytest.approx(0.10, abs=0.01)
    assert arms["stable"] / len(keys) == pytest.approx(0.90, abs=0.01)
    # the body came from the server of the version the headers name, at its number
    for response in answers:
        body = response.json()
        version = response.headers["X-Model-Version"]
        assert version in ("v1.4.0", "v1.5.0")
        assert body["model_version"] == {"v1.4.0": "4", "v1.5.0": "5"}[version]
        assert body["outputs"][0]["data"] == [int(body["model_version"]) * x for x in (1.0, 2.0)]
    # sticky: the same key, the same arm; and the Router agrees with the gateway
    router = Router(st.repo, M, C)
    for key, response in zip(keys[:300], answers[:300], strict=True):
        assert router.route(key).label == response.headers["X-Model-Arm"]
    assert tritons[0].hits["4"] + tritons[1].hits["5"] == len(keys)


def test_pins_are_honoured(st, tritons, running) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 50)
    gw = running(gateway_for(st, triton_config(tritons)))
    for pin, version, arm in [
        ("v1.5.0", "v1.5.0", "canary"),
        ("^1.4", "v1.6.0", "pinned"),  # the highest 1.x: not in the channel, but configured
        ("~1.4", "v1.4.0", "stable"),
        ("1.4.0", "v1.4.0", "stable"),
        ("bert@v1.5.0", "v1.5.0", "canary"),
        # a short id made only of digits reads as a version range too: id= says which
        ("id=" + st.ids["bert@v1.6.0"][:12], "v1.6.0", "pinned"),
        (st.ids["bert@v1.6.0"], "v1.6.0", "pinned"),
    ]:
        for key in ("user-1", "user-2", "user-3", "user-4"):
            response = gw.client.post(**triton_request(key, **{"X-Model-Version": pin}))
            assert response.status_code == 200, response.text
            assert response.headers["X-Model-Version"] == version, pin
            assert response.headers["X-Model-Arm"] == arm, pin
            assert response.json()["model_version"] == version[-3]  # v1.5.0 -> number 5
    unknown = gw.client.post(**triton_request("u", **{"X-Model-Version": "v9.9.9"}))
    assert unknown.status_code == 400 and "v9.9.9" in unknown.json()["error"]
    # without a pin, and without a key: the stable arm
    bare = gw.client.post("/v2/models/bert/infer", json=triton_request("x")["json"])
    assert bare.status_code == 200 and bare.headers["X-Model-Arm"] == "stable"


def test_a_pin_to_a_version_without_an_upstream_is_refused(st, running) -> None:
    with upstreams(Plain("v1.4.0")) as (v14,):
        ops.set_channel(st.repo, M, C, "v1.4.0")
        config = f"routes:\n  bert:\n    channel: prod\n    versions:\n      v1.4.0: {v14.url}\n"
        gw = running(gateway_for(st, config))
        response = gw.client.get("/bert/predict", headers={"X-Model-Version": "v1.5.0"})
        assert response.status_code == 404
        assert "no upstream of route 'bert' serves it" in response.json()["error"]
        ok = gw.client.get("/bert/predict?q=1", headers={"X-Model-Version": "v1.4.0"})
        assert ok.json() == {"answer": "v1.4.0", "path": "/predict", "body": ""}


def test_a_shadow_never_answers_and_both_outcomes_are_recorded(
    st, tritons, running, tmp_path
) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_shadow(st.repo, M, C, "v1.6.0")
    log = tmp_path / "decisions.jsonl"
    gw = running(
        gateway_for(
            st, triton_config(tritons, f"decision_log: {log}\nshadow: {{concurrency: 256}}")
        )
    )
    answers = gw.many([triton_request(f"k{i}") for i in range(200)])
    assert {r.headers["X-Model-Arm"] for r in answers} == {"stable"}
    assert {r.status_code for r in answers} == {200}, [
        r.text for r in answers if r.status_code != 200
    ][:3]
    assert {r.json()["model_version"] for r in answers} == {"4"}  # never the shadow's answer
    registry = gw.gateway.telemetry.registry
    shadow_labels = {"model": M, "channel": C, "version": st.ids["bert@v1.6.0"], "arm": "shadow"}

    def shadows_seen() -> float | None:
        return registry.get_sample_value(
            "mvc_gateway_shadow_agreement_total", {**shadow_labels, "agree": "false"}
        )

    gw.wait_shadows(200, shadows_seen)
    assert tritons[2].hits["6"] == 200  # every request mirrored
    assert shadows_seen() == 200  # v1.6.0 answers x*6, stable x*4: they disagree
    assert registry.get_sample_value("mvc_latency_ms_count", shadow_labels) == 200
    stable_labels = {**shadow_labels, "version": st.ids["bert@v1.4.0"], "arm": "stable"}
    assert (
        registry.get_sample_value("mvc_gateway_responses_total", {**stable_labels, "status": "200"})
        == 200
    )
    text = gw.client.get("/metrics").text
    assert 'mvc_requests_total{arm="stable",channel="prod"' in text
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 200 and {line["arm"] for line in lines} == {"stable"}
    gw.stop()  # the lifespan's end flushes the metric store's buffered points
    with MetricsDB.open(st.repo) as db:
        stable = db.summary(Query(M, "latency_ms", channel=C, arm="stable"))
        shadow_agree = db.summary(Query(M, "agree", channel=C, arm="shadow"))
        status = db.summary(Query(M, "status", channel=C, arm="stable"))
        errors = db.summary(
            Query(M, "error", channel=C, arm="shadow", version=st.ids["bert@v1.6.0"])
        )
    assert stable.count == 200 and stable.min is not None and stable.min > 0
    assert (shadow_agree.count, shadow_agree.mean) == (200, 0.0)
    assert (status.min, status.max) == (200.0, 200.0)
    assert (errors.count, errors.mean) == (200, 0.0)
    assert set(lines[0]) == {
        "time", "model", "channel", "key", "record", "arm", "version", "adapter", "pin",
        "status", "latency_ms",
    }  # fmt: skip


def test_a_shadow_that_answers_the_same_agrees(st, running) -> None:
    with upstreams(Plain("a", answer="same"), Plain("b", answer="same")) as (a, b):
        ops.set_channel(st.repo, M, C, "v1.4.0")
        ops.deploy_shadow(st.repo, M, C, "v1.5.0")
        config = (
            f"routes:\n  bert:\n    channel: prod\n    versions:\n"
            f"      v1.4.0: {a.url}\n      v1.5.0: {b.url}\n"
        )
        gw = running(gateway_for(st, config))
        for i in range(20):
            assert gw.client.post("/bert/x", content=f"{i}").json()["answer"] == "same"
        registry = gw.gateway.telemetry.registry
        labels = {"model": M, "channel": C, "version": st.ids["bert@v1.5.0"], "arm": "shadow"}
        sample = lambda: registry.get_sample_value(  # noqa: E731
            "mvc_gateway_shadow_agreement_total", {**labels, "agree": "true"}
        )
        gw.wait_shadows(20, sample)
        assert sample() == 20 and sum(b.hits.values()) == 20


def test_a_rollback_is_seen_live_and_in_flight_requests_finish_on_their_arm(
    st, tritons, running
) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 50)
    gw = running(gateway_for(st, triton_config(tritons)))
    keys = [f"user-{i}" for i in range(200)]
    before = Counter(r.headers["X-Model-Arm"] for r in gw.many([triton_request(k) for k in keys]))
    assert before["canary"] > 50
    canary_key = next(
        k for k in keys if gw.client.post(**triton_request(k)).headers["X-Model-Arm"] == "canary"
    )
    # a slow request on the canary is in flight when the channel rolls back
    slow: dict[str, httpx.Response] = {}
    thread = threading.Thread(
        target=lambda: slow.update(
            r=gw.client.post(**triton_request(canary_key, **{"X-Delay": "1.0"}))
        )
    )
    received = tritons[1].received
    thread.start()
    deadline = time.monotonic() + 20
    while tritons[1].received == received:  # the canary's server has it: it is in flight
        assert time.monotonic() < deadline
        time.sleep(0.01)
    moved = ops.rollback(st.repo, M, C).record.id
    waited = wait_for_record(gw.client, moved)
    assert waited < 5  # poll_interval is 0.1 s; the rest is this busy machine
    after = Counter(r.headers["X-Model-Arm"] for r in gw.many([triton_request(k) for k in keys]))
    assert after == {"stable": len(keys)}
    thread.join()
    assert slow["r"].headers["X-Model-Arm"] == "canary"
    assert slow["r"].json()["model_version"] == "5"


def openai_config(up: Any) -> str:
    return f"""
poll_interval: 0.1s
routes:
  sql:
    model: bert
    channel: prod
    protocol: openai
    key: cookie session
    upstream: {up.url}
"""


def test_openai_requests_carry_the_arms_lora_name(st, running) -> None:
    # vLLM serves the base and one LoRA module per arm; the export names them {channel}-{arm}
    with upstreams(OpenAI("vllm", ("bert", "prod-stable", "prod-canary"))) as (vllm,):
        ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
        ops.deploy_canary(st.repo, M, C, "v1.4.0 + sql-lora@v1.4.0", 30)
        gw = running(gateway_for(st, openai_config(vllm)))
        requests = []
        for i in range(400):
            cookies = {"Cookie": f"session=s{i}"}
            if i % 2:
                body = {"model": "sql", "prompt": f"p{i}", "max_tokens": 4}
                requests.append({"url": "/v1/completions", "json": body, "headers": cookies})
            else:
                body = {"model": "sql", "messages": [{"role": "user", "content": f"p{i}"}]}
                requests.append({"url": "/v1/chat/completions", "json": body, "headers": cookies})
        answers = gw.many(requests)
        assert {r.status_code for r in answers} == {200}
        for response in answers:
            arm = response.headers["X-Model-Arm"]
            assert response.json()["model"] == f"prod-{arm}"
            assert response.headers["X-Model-Version"] == (
                "v1.4.0 + sql-lora@v1.3.0" if arm == "stable" else "v1.4.0 + sql-lora@v1.4.0"
            )
        share = vllm.hits["prod-canary"] / len(requests)
        assert share == pytest.approx(0.30, abs=0.05)
        assert all(b["max_tokens"] == 4 for b in vllm.bodies if "prompt" in b)  # the rest intact
        pinned = gw.client.post(
            "/v1/completions",
            json={"model": "sql", "prompt": "x"},
            headers={"X-Model-Version": "sql-lora@v1.4.0"},
        )
        assert pinned.json()["model"] == "prod-canary"


def test_an_upstream_that_does_not_answer_is_a_502_and_recorded(st, running) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    config = (
        "routes:\n  bert:\n    channel: prod\n    versions:\n      v1.4.0: http://127.0.0.1:9\n"
    )
    gw = running(gateway_for(st, config))
    response = gw.client.get("/bert/x")
    assert response.status_code == 502 and response.headers["X-Model-Arm"] == "stable"
    labels = {"model": M, "channel": C, "version": st.ids["bert@v1.4.0"], "arm": "stable"}
    registry = gw.gateway.telemetry.registry
    assert registry.get_sample_value("mvc_gateway_responses_total", {**labels, "status": "0"}) == 1
    assert registry.get_sample_value("mvc_request_errors_total", labels) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routes: {}\n", "serve.yaml:1: routes: no routes"),
        ("routes:\n  bert:\n    protocol: grpc\n    channel: prod\n    upstream: http://x\n",
         "serve.yaml:3: routes.bert.protocol: 'grpc' is not one of triton, openai, http"),
        ("routes:\n  bert:\n    channel: prod\n    upstream: ftp://x\n",
         "serve.yaml:4: routes.bert.upstream: 'ftp://x' is not an http(s) URL"),
        ("routes:\n  bert:\n    channel: prod\n    key: body user\n    upstream: http://x\n",
         "serve.yaml:4: routes.bert.key: 'body user' is not a key source"),
        ("routes:\n  bert:\n    channel: prod\n    versions:\n      v1: 3\n",
         "serve.yaml:5: routes.bert.versions.v1: expected a non-empty string"),
        ("poll_interval: soon\nroutes:\n  b:\n    channel: p\n    upstream: http://x\n",
         "serve.yaml:1: poll_interval: 'soon' is not a duration"),
        ("routes:\n  bert:\n    channel: prod\n    upstream: http://x\n    colour: red\n",
         "serve.yaml:5: routes.bert.colour: unknown key 'colour'"),
    ],
)  # fmt: skip
def test_config_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_config(text, "serve.yaml")
    assert caught.value.message.startswith(message), caught.value.message


def test_mvc_serve_runs_the_gateway_and_sees_a_rollback_without_a_restart(
    st, tritons, tmp_path, mvc_env
) -> None:
    """The real command in its own process: `mvc serve serve.yaml --port P`."""
    import subprocess
    import sys

    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 50)
    config = tmp_path / "serve.yaml"
    config.write_text(triton_config(tritons))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mvc", "-C", st.root, "serve", str(config), "--port", str(port)],
        env={**os.environ, **mvc_env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    "mvc serve did not start"
                )
                time.sleep(0.1)
        keys = [f"user-{i}" for i in range(60)]
        with httpx.Client(base_url=url) as client:
            arms = {client.post(**triton_request(k)).headers["X-Model-Arm"] for k in keys}
            assert arms == {"stable", "canary"}
            moved = ops.rollback(st.repo, M, C).record.id
            assert wait_for_record(client, moved) < 5  # no restart: the poller saw it
            arms = {client.post(**triton_request(k)).headers["X-Model-Arm"] for k in keys}
            assert arms == {"stable"}
            assert "mvc_requests_total" in client.get("/metrics").text
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "serving bert (bert prod, triton)" in err


def test_mvc_serve_refuses_a_bad_file_with_its_line(st, cli, tmp_path) -> None:
    bad = tmp_path / "serve.yaml"
    bad.write_text(
        "routes:\n  bert:\n    channel: prod\n    protocol: grpc\n    upstream: http://x\n"
    )
    result = cli("-C", st.root, "serve", str(bad), expect=2)
    assert "serve.yaml:4: routes.bert.protocol: 'grpc' is not one of" in result.stderr
    missing = tmp_path / "other.yaml"
    missing.write_text("routes:\n  bert:\n    channel: nope\n    upstream: http://127.0.0.1:9\n")
    result = cli("-C", st.root, "serve", str(missing), expect=1)
    assert "channel 'nope' of 'bert' does not exist" in result.stderr


def test_a_streamed_completion_passes_through_as_it_comes_and_its_shadow_is_compared(
    st, running
) -> None:
    with upstreams(OpenAI("stable", ("prod-stable",)), OpenAI("shadow", ("prod-shadow",))) as (
        stable,
        shadow,
    ):
        ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
        ops.deploy_shadow(st.repo, M, C, "v1.4.0 + sql-lora@v1.4.0")
        config = (
            "routes:\n  sql:\n    model: bert\n    channel: prod\n    protocol: openai\n"
            f"    versions:\n      v1.4.0 + sql-lora@v1.3.0: {{url: {stable.url}}}\n"
            f"      v1.4.0 + sql-lora@v1.4.0: {{url: {shadow.url}}}\n"
        )
        gw = running(gateway_for(st, config))
        body = {"model": "sql", "prompt": "one two three four", "stream": True}
        with gw.client.stream("POST", "/v1/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["X-Model-Arm"] == "stable"
            chunks = [c for c in response.iter_raw() if c]
        assert len(chunks) > 1  # not buffered into one piece
        events = [json.loads(line[5:]) for line in b"".join(chunks).splitlines()
                  if line.startswith(b"data: {")]  # fmt: skip
        assert "".join(e["choices"][0]["text"] for e in events) == "prod-stable: one two three four"
        registry = gw.gateway.telemetry.registry
        labels = {"model": M, "channel": C, "version": st.ids["bert@v1.4.0"], "arm": "shadow"}
        sample = lambda: registry.get_sample_value(  # noqa: E731
            "mvc_gateway_shadow_agreement_total", {**labels, "agree": "false"}
        )
        gw.wait_shadows(1, sample)
        assert sample() == 1  # "prod-shadow: …" is not "prod-stable: …"
        stable_labels = {**labels, "arm": "stable"}
        assert registry.get_sample_value("mvc_requests_total", stable_labels) == 1
