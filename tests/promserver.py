"""A throwaway Prometheus server on loopback, for the tests (Debian's ``prometheus`` package).

``PrometheusServer.start(targets)`` writes a config that scrapes ``targets`` (``host:port`` of
exporters the test runs) every second, starts ``/usr/bin/prometheus`` on 127.0.0.1 with a free
port and a temporary storage folder, and returns once its API answers. ``wait_for(promql,
value)`` polls until a scrape has brought the data in. ``stop()`` ends the process and removes
the folder; on Linux it also dies with the process that started it (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

PACKAGE = "prometheus"  # Debian: /usr/bin/prometheus and /usr/bin/promtool
PROGRAM = "prometheus"
START_TIMEOUT = 30.0


class PrometheusUnavailable(Exception):
    """Prometheus is not installed or did not start; the message says why (and its log)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class PrometheusServer:
    root: str
    url: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, targets: list[str], timeout: float = START_TIMEOUT) -> PrometheusServer:
        program = shutil.which(PROGRAM) or (
            "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None
        )
        if program is None:
            raise PrometheusUnavailable(
                f"{PROGRAM} is not installed (apt-get install {PACKAGE}; .ci/run does)"
            )
        root = tempfile.mkdtemp(prefix="mvc-prometheus-")
        config = os.path.join(root, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: mvc\n    static_configs:\n"
                f"      - targets: {json.dumps(targets)}\n"
            )
        port = free_port()
        log = open(os.path.join(root, "prometheus.log"), "wb")  # noqa: SIM115 - the process's
        process = subprocess.Popen(
            [
                program,
                f"--config.file={config}",
                f"--storage.tsdb.path={os.path.join(root, 'data')}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()
        server = cls(root, f"http://127.0.0.1:{port}", process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return server
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        tail = server.log()[-2000:]
        server.stop()
        raise PrometheusUnavailable(f"prometheus did not become ready in {timeout:g}s:\n{tail}")

    def log(self) -> str:
        try:
            with open(os.path.join(self.root, "prometheus.log"), encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            return ""

    def query(self, promql: str) -> list[dict[str, object]]:
        params = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=5) as answer:
            result = json.load(answer)["data"]["result"]
        assert isinstance(result, list)
        return result

    def wait_for(self, promql: str, value: float, timeout: float = 30.0) -> None:
        """Until ``promql`` gives one series with ``value`` (scrapes are every second)."""
        deadline = time.monotonic() + timeout
        seen: object = None
        while time.monotonic() < deadline:
            seen = self.query(promql)
            if len(seen) == 1 and float(seen[0]["value"][1]) == value:  # type: ignore[index]
                return
            time.sleep(0.2)
        raise PrometheusUnavailable(f"{promql} never gave {value} (last: {seen}):\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_or_skip(targets: list[str]) -> PrometheusServer:
    """``PrometheusServer.start`` for a test: where Prometheus is missing or does not start the
    test is skipped with the reason, except under CI=true (.ci/run installs it), where it fails."""
    import pytest

    try:
        return PrometheusServer.start(targets)
    except PrometheusUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"Prometheus did not start: {exc}", pytrace=False)
        pytest.skip(f"Prometheus unavailable: {str(exc).splitlines()[0]}")
