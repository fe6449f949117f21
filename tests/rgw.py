"""A throwaway single-node Ceph cluster serving S3 (RGW) on loopback, for the tests.

One monitor, one OSD on memstore (objects in the OSD's memory), and radosgw with the beast
frontend, all under one temp folder, with no authentication inside the cluster (it listens on
127.0.0.1 only and lives for one test session). Pools hold one copy. No mgr: RGW serves
without one.

``RgwCluster.start()`` returns once RGW answers S3 requests and an S3 user exists whose keys
are the suite's dummy AWS credentials, so every client of the session (boto3, s3fs, an ``mvc``
subprocess) talks to moto and to RGW with the same environment, each by its endpoint URL.
Start-up is bounded; a failure raises ``RgwUnavailable`` carrying the tail of every daemon's
log. ``stop()`` kills the daemons and removes the folder. On Linux the daemons also die with
the process that started them (``PR_SET_PDEATHSIG``), so a crashed test run leaves none behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

#: The Debian packages that provide the daemons and tools used here.
PACKAGES = ("radosgw", "ceph-mon", "ceph-osd", "ceph-common")
_PROGRAMS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph")
#: Seconds the whole start-up may take, and one admin command.
START_TIMEOUT = 60.0
START_ATTEMPTS = 3
_COMMAND_TIMEOUT = 30.0


class RgwUnavailable(Exception):
    """The cluster could not be started; the message says why and ends with the daemon logs."""


def missing_programs() -> list[str]:
    return [name for name in _PROGRAMS if shutil.which(name) is None]


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, all different (each socket stays open until all are had)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class RgwCluster:
    """``cluster = RgwCluster.start(key, secret)``; ``cluster.endpoint``; ``cluster.stop()``."""

    root: str
    endpoint: str
    access_key: str
    secret_key: str
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def start(cls, access_key: str, secret_key: str, timeout: float = START_TIMEOUT) -> RgwCluster:
        """A running cluster, or ``RgwUnavailable`` within ``timeout`` seconds.

        A start that fails is retried (a new cluster in a new folder) while time remains: Ceph
        16.2's clients now and then send their first command before they know the cluster's
        fsid, and the monitor refuses it ("handle_command on fsid 0000..."; seen about once in
        fifteen starts on a loaded machine).
        """
        missing = missing_programs()
        if missing:
            raise RgwUnavailable(
                f"{', '.join(missing)} not installed (apt-get install {' '.join(PACKAGES)})"
            )
        deadline = time.monotonic() + timeout
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return cls._start_once(access_key, secret_key, deadline)
            except RgwUnavailable as exc:
                if attempt == START_ATTEMPTS or time.monotonic() > deadline:
                    raise RgwUnavailable(f"attempt {attempt} of {START_ATTEMPTS}: {exc}") from exc
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(cls, access_key: str, secret_key: str, deadline: float) -> RgwCluster:
        root = tempfile.mkdtemp(prefix="mvc-rgw-")  # short: admin socket paths are bounded
        mon_port, port = _free_ports(2)
        cluster = cls(root, f"http://127.0.0.1:{port}", access_key, secret_key)
        try:
            cluster._write_config(mon_port=mon_port, rgw_port=port)
            cluster._start_mon()
            cluster._start_osd()
            cluster._spawn("rgw", ["radosgw", "-n", "client.rgw.r", "-f"])
            cluster._wait_for_s3(deadline)
            cluster._admin(
                ["radosgw-admin", "user", "create", "--uid", "mvc", "--display-name", "mvc"]
                + ["--access-key", access_key, "--secret-key", secret_key]
            )
        except BaseException as exc:
            report = cluster.logs()
            cluster.stop()
            if isinstance(exc, RgwUnavailable | subprocess.SubprocessError | OSError):
                raise RgwUnavailable(f"{exc}\n{report}") from exc
            raise
        return cluster

    # --- start-up -----------------------------------------------------------------------------

    @property
    def _conf(self) -> str:
        return os.path.join(self.root, "ceph.conf")

    def _write_config(self, mon_port: int, rgw_port: int) -> None:
        for folder in ("mon", "osd", "rgw", "run", "log", "crash"):
            os.mkdir(os.path.join(self.root, folder))
        r = self.root
        text = f"""\
[global]
fsid = {uuid.uuid4()}
mon host = v1:127.0.0.1:{mon_port}
mon initial members = a
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = {r}/run
admin socket = {r}/run/$name.asok
log file = {r}/log/$name.log
crash dir = {r}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
osd crush chooseleaf type = 0
mon data avail crit = 0
mon data avail warn = 0
paxos propose interval = 0.05
[mon.a]
mon data = {r}/mon
[osd.0]
osd data = {r}/osd
osd objectstore = memstore
memstore device bytes = {512 * 2**20}
osd class load list = *
osd class default list = *
osd crush update on start = false
osd class update on start = false
[client.rgw.r]
rgw data = {r}/rgw
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
"""
        with open(self._conf, "w", encoding="utf-8") as handle:
            handle.write(text)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CEPH_")}
        env["CEPH_CONF"] = self._conf
        return env

    def _admin(self, argv: list[str], tries: int = 1) -> str:
        """Run an admin command; ``tries`` > 1 for idempotent commands sent to the monitor,
        which it may refuse with EPERM when the client was too quick (see ``start``)."""
        for attempt in range(1, tries + 1):
            done = subprocess.run(
                argv,
                env=self._env(),
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
            if done.returncode == 0:
                return done.stdout
            if attempt < tries:
                time.sleep(0.2)
        raise RgwUnavailable(
            f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()[-500:]}"
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(os.path.join(self.root, "log", f"{name}.out"), "wb") as out:
            self.daemons[name] = subprocess.Popen(
                argv,
                env=self._env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # a prctl only: nothing else runs before exec
            )

    def _start_mon(self) -> None:
        self._admin(["ceph-mon", "--id", "a", "--mkfs", "--keyring", "/dev/null"])
        self._spawn("mon", ["ceph-mon", "--id", "a", "-f"])

    def _start_osd(self) -> None:
        osd_uuid = str(uuid.uuid4())
        self._admin(["ceph", "--connect-timeout", "20", "osd", "new", osd_uuid], tries=5)
        # Placed by hand: an OSD updating its own crush entry at start-up sometimes sends the
        # command before it knows the cluster's fsid, is refused, and exits.
        self._admin(["ceph", "osd", "crush", "add", "osd.0", "1", "root=default"], tries=5)
        self._admin(["ceph-osd", "--id", "0", "--mkfs", "--osd-uuid", osd_uuid])
        self._spawn("osd", ["ceph-osd", "--id", "0", "-f"])

    def _wait_for_s3(self, deadline: float) -> None:
        while True:
            for name, proc in self.daemons.items():
                if proc.poll() is not None:
                    raise RgwUnavailable(f"{name} exited {proc.returncode} during start-up")
            try:
                with urllib.request.urlopen(self.endpoint, timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RgwUnavailable("RGW did not answer S3 requests in time")
            time.sleep(0.25)

    # --- reporting and teardown ---------------------------------------------------------------

    def logs(self, lines: int = 15) -> str:
        """The last lines of every daemon's log, for a failure message."""
        parts = []
        folder = os.path.join(self.root, "log")
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            with open(os.path.join(folder, name), errors="replace") as handle:
                tail = handle.readlines()[-lines:]
            if tail:
                parts.append(f"--- {name} (last {len(tail)} lines)\n{''.join(tail).rstrip()}")
        return "\n".join(parts) or "(no daemon logs)"

    def stop(self) -> None:
        # SIGKILL: nothing here is worth keeping, and a memstore OSD asked to stop first
        # writes every object it holds to its folder.
        for proc in self.daemons.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in self.daemons.values():
            proc.wait(10)
        self.daemons.clear()
        shutil.rmtree(self.root, ignore_errors=True)
