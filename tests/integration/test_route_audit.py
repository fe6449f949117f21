"""Audit: which version served a key at an instant, from the channel's history — and the answer
agrees with what the gateway logged when it served the key."""

from __future__ import annotations

import json

import httpx
from gatewayfix import Server, Triton, upstreams

from mvc.decisions import route_at
from mvc.gateway.app import open_gateway
from mvc.gateway.config import parse_config
from mvc.ops import deploy as ops
from mvc.router import Router

M, C = "bert", "prod"
KEYS = [f"user-{i}" for i in range(300)]


def test_route_at_replays_the_router_of_each_moment(st) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    first = st.clock.tick(10)
    st.clock.tick(10)
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 40)
    during = {k: Router(st.repo, M, C).route(k).version for k in KEYS}
    middle = st.clock.tick(10)
    st.clock.tick(10)
    ops.rollback(st.repo, M, C)
    last = st.clock.tick(10)
    assert {route_at(st.repo, M, C, k, first).decision.label for k in KEYS} == {"stable"}
    assert {k: route_at(st.repo, M, C, k, middle).decision.version for k in KEYS} == during
    assert len({v for v in during.values()}) == 2
    assert {route_at(st.repo, M, C, k, last).decision.version for k in KEYS} == {
        st.ids["bert@v1.4.0"]
    }


def test_the_decision_log_and_route_at_agree(st, tmp_path) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    st.clock.tick(5)
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 50)
    log = tmp_path / "decisions.jsonl"
    with upstreams(Triton("a", "bert", (1,)), Triton("b", "bert", (2,))) as (a, b):
        config = parse_config(
            f"decision_log: {log}\npoll_interval: 0.05s\nroutes:\n  bert:\n    channel: prod\n"
            f"    protocol: triton\n    key: header X-User\n    versions:\n"
            f"      v1.4.0: {{url: {a.url}, number: 1}}\n      v1.5.0: {{url: {b.url}, number: 2}}\n",
            "serve.yaml",
        )
        gateway = open_gateway(st.repo, config, clock=st.clock)
        server = Server(gateway.app())
        body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}
        try:
            with httpx.Client(base_url=server.url) as client:
                for key in KEYS[:100]:
                    client.post("/v2/models/bert/infer", json=body, headers={"X-User": key})
                st.clock.tick(5)
                ops.rollback(st.repo, M, C)
                gateway.refresh()  # what the poller does every poll_interval
                for key in KEYS[:100]:
                    client.post("/v2/models/bert/infer", json=body, headers={"X-User": key})
        finally:
            server.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 200
    assert {line["arm"] for line in lines[:100]} == {"stable", "canary"}
    assert {line["arm"] for line in lines[100:]} == {"stable"}
    for line in lines:
        audit = route_at(st.repo, M, C, line["key"], line["time"])
        assert (audit.decision.version, audit.decision.label) == (line["version"], line["arm"])
        assert audit.decision.record == line["record"]


def test_mvc_route_at_on_the_command_line(st, cli) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    st.clock.tick(5)
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 50)
    canary_key = next(k for k in KEYS if Router(st.repo, M, C).route(k).label == "canary")
    before = st.clock.tick(2).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )  # after the canary, before the rollback
    st.clock.tick(3)
    ops.rollback(st.repo, M, C)
    result = cli("-C", st.root, "route", M, C, "-k", canary_key, "--at", before)
    assert result.stdout.split() == [canary_key, "canary", st.ids["bert@v1.5.0"]]
    assert "deploy -> canary, made 2026-03-03T12:12:00Z" in result.stderr
    now = cli("-C", st.root, "route", M, C, "-k", canary_key, "--json").json()
    assert now["arm"]["label"] == "stable"
    doc = cli("-C", st.root, "route", M, C, "-k", canary_key, "--at", before, "--json").json()
    assert doc["at"] == before and doc["arm"]["label"] == "canary" and doc["state"] == "canary"
    early = cli("-C", st.root, "route", M, C, "-k", "x", "--at", "2020-01-01", expect=1)
    assert "did not exist yet" in early.stderr
