"""Recording metrics from serving code: buffered, tagged from a route decision, flushed in batches.

``Recorder(repo).record(decision, latency_ms=12.5, error=0)`` turns one request's measurements
into points tagged with the decision's model, channel, arm and version, so serving code never
spells an id. Points wait in memory and go to the store's metric database in one transaction
when ``max_points`` are pending, when the oldest has waited ``max_delay`` seconds (a background
thread), on ``flush()``, on ``close()`` and at interpreter exit. The hot path is a lock and a
list append.

Every point carries this process's ``Source``: host, process id and the serving environment
(Python, platform, hardware, versions of the ML packages installed), computed once per process.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import platform
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from mvc.ids import ObjectId
from mvc.metrics.model import Point, Source
from mvc.metrics.sqlite import MetricsDB
from mvc.repo import Repo

#: Packages whose versions describe a serving environment, when installed.
KEY_PACKAGES = (
    "mvc",
    "numpy",
    "safetensors",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "onnxruntime",
    "tensorflow",
    "jax",
    "vllm",
    "tritonclient",
    "kserve",
)


class Decision(Protocol):
    """What a recorder reads from a route decision (``mvc.router.RouteDecision`` has it)."""

    @property
    def model(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def version(self) -> ObjectId: ...
    @property
    def label(self) -> str: ...


def serving_environment() -> tuple[tuple[str, str], ...]:
    """Python, platform, hardware and the key packages' versions of this process."""
    found = {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": str(os.cpu_count() or 0),
    }
    for name in KEY_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    torch = sys.modules.get("torch")  # never imported here: only described when serving uses it
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is not None and cuda.is_available():
            found["gpu"] = str(cuda.get_device_name(0))
    except Exception:  # noqa: BLE001 - a broken driver must not stop metrics
        pass
    return tuple(sorted(found.items()))


_SOURCE: tuple[int, Source] | None = None


def this_process() -> Source:
    """This process's source (recomputed in a forked child: its pid differs)."""
    global _SOURCE
    pid = os.getpid()
    if _SOURCE is None or _SOURCE[0] != pid:
        _SOURCE = (pid, Source(socket.gethostname(), str(pid), serving_environment()))
    return _SOURCE[1]


class Recorder:
    """Buffers points and writes them to a store's metric database in batches. Thread-safe."""

    def __init__(
        self,
        repo: Repo | str | None = None,
        *,
        max_points: int = 1000,
        max_delay: float = 1.0,
        source: Source | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo if isinstance(repo, Repo) else Repo.discover(repo)
        self.max_points = max_points
        self.max_delay = max_delay
        self.source = source
        self._clock = clock
        self._pending: list[Point] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        _LIVE.add(self)

    def record(
        self,
        decision: Decision,
        *,
        at: float | None = None,
        arm: str | None = None,
        **values: float,
    ) -> None:
        """One request's measurements (``latency_ms=12.5, error=0``) for the decision's arm;
        ``arm="shadow"`` records a shadow's outcome under the same decision."""
        when = self._clock() if at is None else at
        label = arm or decision.label
        version = decision.version
        if arm is not None and arm != decision.label:
            version = _arm_version(decision, arm)
        source = self.source or this_process()
        points = [
            Point(
                decision.model, version, name, float(value), when, decision.channel, label, source
            )
            for name, value in values.items()
        ]
        self.add(points)

    def add(self, points: list[Point]) -> None:
        """Queue points made elsewhere (any model, version, channel or arm)."""
        if not points:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("this Recorder is closed")
            self._pending.extend(points)
            full = len(self._pending) >= self.max_points
            if self._thread is None and self.max_delay > 0:
                self._thread = threading.Thread(
                    target=self._run, name="mvc-metrics-recorder", daemon=True
                )
                self._thread.start()
        if full:
            self.flush()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write what is pending now, in one transaction; the number of points written."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                with MetricsDB.open(self.repo) as db:
                    return db.append(batch)
            except BaseException:
                with self._lock:  # not lost: written by the next flush
                    self._pending[:0] = batch
                raise

    def close(self) -> None:
        """Flush and stop the background thread; further records raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()
        _LIVE.discard(self)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._wake.wait(self.max_delay):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - kept pending; flush() and close() raise it
                continue


def _arm_version(decision: Decision, label: str) -> ObjectId:
    """The version of another arm named in the decision (a shadow it mirrored)."""
    for arm in (getattr(decision, "arm", None), *getattr(decision, "shadows", ())):
        if arm is not None and getattr(arm, "label", None) == label:
            return ObjectId(arm.version)
    raise ValueError(f"the decision names no arm {label!r}; its arm is {decision.label!r}")


_LIVE: weakref.WeakSet[Recorder] = weakref.WeakSet()
_DEFAULT: dict[str, Recorder] = {}
_DEFAULT_LOCK = threading.Lock()


def default_recorder(repo: Repo | str | None = None) -> Recorder:
    """The process's shared recorder for a store (the one holding the current folder by
    default), made on first use."""
    resolved = repo if isinstance(repo, Repo) else Repo.discover(repo)
    with _DEFAULT_LOCK:
        found = _DEFAULT.get(resolved.root)
        if found is None or found._closed:
            found = _DEFAULT[resolved.root] = Recorder(resolved)
        return found


def record(
    decision: Decision,
    *,
    repo: Repo | str | None = None,
    at: float | None = None,
    arm: str | None = None,
    **values: float,
) -> None:
    """Record one request's measurements for the arm ``decision`` routed it to, through the
    process's shared recorder for ``repo`` (buffered; flushed within a second and at exit)."""
    default_recorder(repo).record(decision, at=at, arm=arm, **values)


@atexit.register
def _flush_at_exit() -> None:
    for recorder in list(_LIVE):
        try:
            recorder.close()
        except Exception:  # noqa: BLE001, S110 - exiting: nothing left to report to
            pass
