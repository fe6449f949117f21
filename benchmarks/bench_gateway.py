#!/usr/bin/env python3
"""Gateway benchmark: what ``mvc serve`` adds to a request, against calling the upstream directly.

Usage:
    python benchmarks/bench_gateway.py [--dir /tmp/mvc-bench] [--requests 2000]
                                       [--concurrency 32] [--seconds 5] [--json] [-q]

Three processes on loopback, each started here: a Triton-like upstream (uvicorn + starlette,
``POST /v2/models/bert/versions/{n}/infer``, one per version: stable and a 10% canary), the real
``mvc serve`` (a subprocess of the installed CLI, over a store made here), and this process as
the client. Both sides are measured in the same run, interleaved in blocks so a busy machine
moves both together:

    latency     --requests sequential requests on one keep-alive connection (http.client,
                TCP_NODELAY), each with its own routing key: p50 and p99 direct, through the
                gateway, and the difference (what the gateway adds).
    throughput  --concurrency requests in flight for --seconds (asyncio + httpx): requests per
                second direct and through the gateway, and their ratio.

The gateway records every request as it does in production (Prometheus series, the metric
store's buffered recorder), and writes no decision log.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def upstream_main(port: int, number: int) -> None:
    """A Triton-like upstream for one version (run as a subprocess)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def infer(request: Request) -> JSONResponse:
        body = await request.json()
        data = body["inputs"][0]["data"]
        return JSONResponse(
            {
                "model_name": request.path_params["name"],
                "model_version": request.path_params["n"],
                "outputs": [
                    {"name": "y", "datatype": "FP32", "shape": [len(data)],
                     "data": [x * number for x in data]}
                ],
            }
        )  # fmt: skip

    app = Starlette(routes=[Route("/v2/models/{name}/versions/{n}/infer", infer, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a server exited early ({proc.returncode}): {proc.args}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def make_store(root: str) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    from mvc.ops import deploy as ops
    from mvc.ops.commit import commit
    from mvc.ops.names import create_tag
    from mvc.repo import Repo

    env = {"MVC_USER_NAME": "Bench", "MVC_USER_EMAIL": "bench@example.com"}
    repo = Repo.init(root, env=env)
    for seed, tag in enumerate(("v1.0.0", "v1.1.0")):
        folder = os.path.join(root, "work", tag)
        os.makedirs(folder)
        rng = np.random.default_rng(seed)
        save_file({"w": rng.normal(size=(16, 16)).astype(np.float32)},
                  os.path.join(folder, "model.safetensors"))  # fmt: skip
        made = commit(repo, folder, message=tag, model="bert")
        create_tag(repo, "bert", tag, f"id={made.version_id}")
    ops.set_channel(repo, "bert", "prod", "v1.0.0")
    ops.deploy_canary(repo, "bert", "prod", "v1.1.0", 10)


class Sequential:
    """One keep-alive connection, TCP_NODELAY, timing each request."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.conn.connect()
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, path: str, key: str) -> float:
        started = time.perf_counter()
        self.conn.request("POST", path, BODY, {"Content-Type": "application/json", "X-User": key})
        response = self.conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise SystemExit(f"{path}: HTTP {response.status}")
        return elapsed * 1000.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(direct_port: int, gateway_port: int, requests: int) -> dict[str, float]:
    direct, gateway = Sequential(direct_port), Sequential(gateway_port)
    d: list[float] = []
    g: list[float] = []
    for _ in range(50):  # warm both
        direct.call("/v2/models/bert/versions/1/infer", "warm")
        gateway.call("/v2/models/bert/infer", "warm")
    block = 100
    for start in range(0, requests, block):
        for i in range(start, min(start + block, requests)):
            d.append(direct.call("/v2/models/bert/versions/1/infer", f"user-{i}"))
        for i in range(start, min(start + block, requests)):
            g.append(gateway.call("/v2/models/bert/infer", f"user-{i}"))
    out = {
        "direct_p50_ms": statistics.median(d),
        "direct_p99_ms": percentile(d, 0.99),
        "gateway_p50_ms": statistics.median(g),
        "gateway_p99_ms": percentile(g, 0.99),
    }
    out["added_p50_ms"] = out["gateway_p50_ms"] - out["direct_p50_ms"]
    out["added_p99_ms"] = out["gateway_p99_ms"] - out["direct_p99_ms"]
    return out


async def _throughput(url: str, concurrency: int, seconds: float) -> float:
    import httpx

    transport = httpx.AsyncHTTPTransport(
        socket_options=NODELAY,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )
    done = 0
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker(n: int) -> None:
            nonlocal done
            i = 0
            while time.perf_counter() < deadline:
                response = await client.post(
                    url, content=BODY,
                    headers={"Content-Type": "application/json", "X-User": f"w{n}-{i}"},
                )  # fmt: skip
                response.raise_for_status()
                done += 1
                i += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return done / (time.perf_counter() - started)


def throughput(
    direct_port: int, gateway_port: int, concurrency: int, seconds: float
) -> dict[str, float]:
    direct_url = f"http://127.0.0.1:{direct_port}/v2/models/bert/versions/1/infer"
    gateway_url = f"http://127.0.0.1:{gateway_port}/v2/models/bert/infer"
    d, g = [], []
    for _ in range(2):  # interleaved halves
        d.append(asyncio.run(_throughput(direct_url, concurrency, seconds / 2)))
        g.append(asyncio.run(_throughput(gateway_url, concurrency, seconds / 2)))
    out = {"direct_rps": statistics.mean(d), "gateway_rps": statistics.mean(g)}
    out["ratio"] = out["gateway_rps"] / out["direct_rps"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/tmp/mvc-bench")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("--upstream", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        upstream_main(*args.upstream)
        return

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    root = os.path.join(args.dir, "gateway")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    store = os.path.join(root, "store")
    make_store(store)
    ports = {"v1.0.0": free_port(), "v1.1.0": free_port()}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for number, port in enumerate(ports.values(), start=1):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        os.path.abspath(__file__),
                        "--upstream",
                        str(port),
                        str(number),
                    ]
                )
            )
        config = os.path.join(root, "serve.yaml")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write(
                "poll_interval: 1s\nroutes:\n  bert:\n    channel: prod\n    protocol: triton\n"
                "    key: header X-User\n    versions:\n"
                + "".join(
                    f"      {tag}: {{url: http://127.0.0.1:{port}, number: {n}}}\n"
                    for n, (tag, port) in enumerate(ports.items(), start=1)
                )
            )
        gateway_port = free_port()
        env = {**os.environ, "MVC_DIR": store}
        mvc = shutil.which("mvc") or "mvc"
        procs.append(
            subprocess.Popen(
                [mvc, "serve", config, "--port", str(gateway_port)],
                env=env,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
        for port in [*ports.values(), gateway_port]:
            wait_listening(port, procs[-1] if port == gateway_port else procs[0])
        say(f"latency: {args.requests} sequential requests each way…")
        lat = latency(ports["v1.0.0"], gateway_port, args.requests)
        say(f"throughput: {args.concurrency} in flight, {args.seconds:g}s each way…")
        thr = throughput(ports["v1.0.0"], gateway_port, args.concurrency, args.seconds)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    result: dict[str, Any] = {"latency": lat, "throughput": thr}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'':12} {'direct':>10} {'gateway':>10} {'added':>10}")
    print(
        f"{'p50 ms':12} {lat['direct_p50_ms']:10.3f} {lat['gateway_p50_ms']:10.3f} {lat['added_p50_ms']:10.3f}"
    )
    print(
        f"{'p99 ms':12} {lat['direct_p99_ms']:10.3f} {lat['gateway_p99_ms']:10.3f} {lat['added_p99_ms']:10.3f}"
    )
    print(
        f"{'req/s':12} {thr['direct_rps']:10.0f} {thr['gateway_rps']:10.0f} {'x' + format(thr['ratio'], '.2f'):>10}"
    )


if __name__ == "__main__":
    main()
