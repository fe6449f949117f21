"""Recording metrics from serving code: buffered, tagged from a route decision, flushed in batches.

``Recorder(repo).record(decision, latency_ms=12.5, error=0)`` turns one request's measurements
into points tagged with the decision's model, channel, arm and version, so serving code never
spells an id. Points wait in memory and go to the store's metric database in one transaction
by a background thread every ``max_delay`` seconds and as soon as ``max_points`` are pending
(so the request that fills a batch does not wait for its write), on ``flush()``, on
``close()`` and at interpreter exit. The hot path checks the values, takes a lock and appends
a tuple; the points are made when a batch is written.

Every point carries this process's ``Source``: host, process id and the serving environment
(Python, platform, hardware, versions of the ML packages installed), computed once per process.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import math
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


#: A request's measurements as the hot path keeps them: made into Points when flushed.
_Entry = tuple[str, ObjectId, str | None, str | None, float, dict[str, float]]


class Recorder:
    """Buffers points and writes them to a store's metric database in batches. Thread-safe.

    At most ``max_pending`` points wait (default 100 batches): while the database cannot be
    written (a full disk), the oldest are dropped beyond that and counted in ``dropped``, so a
    serving process never grows without bound."""

    def __init__(
        self,
        repo: Repo | str | None = None,
        *,
        max_points: int = 1000,
        max_delay: float = 1.0,
        max_pending: int | None = None,
        source: Source | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo if isinstance(repo, Repo) else Repo.discover(repo)
        self.max_points = max(1, max_points)
        self.max_delay = max_delay
        self.max_pending = max_pending if max_pending is not None else 100 * self.max_points
        self.source = source
        self.dropped = 0
        self._clock = clock
        self._entries: list[_Entry] = []
        self._points: list[Point] = []
        self._retry: list[Point] = []  # a batch whose write failed: first in the next one
        self._count = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._kick = threading.Event()  # flush now (a full batch, or closing)
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
        ``arm="shadow"`` records a shadow's outcome under the same decision. A value that is
        not a finite number raises ``ValueError`` here, never poisoning a later batch."""
        for name, value in values.items():
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"metric {name}={value!r} is not a finite number")
        label = decision.label
        version = decision.version
        if arm is not None and arm != label:
            version = _arm_version(decision, arm)
            label = arm
        entry = (
            decision.model,
            version,
            decision.channel,
            label,
            self._clock() if at is None else at,
            values,
        )
        with self._lock:
            self._check_open()
            self._entries.append(entry)
            self._count += len(values)
            full = self._queued()
        if full:
            self._flush_full()

    def add(self, points: list[Point]) -> None:
        """Queue points made elsewhere (any model, version, channel or arm)."""
        if not points:
            return
        with self._lock:
            self._check_open()
            self._points.extend(points)
            self._count += len(points)
            full = self._queued()
        if full:
            self._flush_full()

    def _flush_full(self) -> None:
        """A full batch: the timer thread writes it (the request goes on), or, without a
        timer (``max_delay=0``), this thread."""
        if self._thread is not None:
            self._kick.set()
        else:
            self.flush()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Recorder is closed")

    def _queued(self) -> bool:
        """Under the lock: start the timer on first use; whether a batch is full."""
        if self._thread is None and self.max_delay > 0:
            self._thread = threading.Thread(
                target=self._run, name="mvc-metrics-recorder", daemon=True
            )
            self._thread.start()
        return self._count >= self.max_points

    @property
    def pending(self) -> int:
        with self._lock:
            return self._count

    def _take(self) -> list[Point]:
        with self._lock:
            entries, points, retry = self._entries, self._points, self._retry
            self._entries, self._points, self._retry, self._count = [], [], [], 0
        source = self.source or this_process()
        batch = [
            Point(model, version, name, float(value), at, channel, label, source)
            for model, version, channel, label, at, values in entries
            for name, value in values.items()
        ]
        return retry + batch + points

    def flush(self) -> int:
        """Write what is pending now, in one transaction; the number of points written."""
        with self._write_lock:
            batch = self._take()
            if not batch:
                return 0
            try:
                with MetricsDB.open(self.repo) as db:
                    return db.append(batch)
            except BaseException:
                with self._lock:  # not lost: written by the next flush, within max_pending
                    over = min(self._count + len(batch) - self.max_pending, len(batch))
                    if over > 0:  # the oldest go first
                        self.dropped += over
                        batch = batch[over:]
                    self._retry = batch
                    self._count += len(batch)
                raise

    def close(self) -> None:
        """Flush and stop the background thread; further records raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._kick.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()
        _LIVE.discard(self)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._closed:
            self._kick.wait(self.max_delay)
            self._kick.clear()
            if self._closed:
                return  # close() writes the rest on its own thread, where errors are seen
            try:
                self.flush()
            except Exception:  # noqa: BLE001, S112 - kept pending; flush() and close() raise it
                continue


def _arm_version(decision: Decision, label: str) -> ObjectId:
    """The version of another arm named in the decision (a shadow it mirrored)."""
    for arm in (getattr(decision, "arm", None), *getattr(decision, "shadows", ())):
        if arm is not None and getattr(arm, "label", None) == label:
            return ObjectId(arm.version)
    raise ValueError(f"the decision names no arm {label!r}; its arm is {decision.label!r}")


_LIVE: weakref.WeakSet[Recorder] = weakref.WeakSet()
_DEFAULT: dict[str, Recorder] = {}  # by the store's root, or by the path record() was given
_DEFAULT_LOCK = threading.Lock()


def default_recorder(repo: Repo | str | None = None) -> Recorder:
    """The process's shared recorder for a store (the one holding the current folder by
    default), made on first use; the store is looked up once per path, not per call."""
    key = repo.root if isinstance(repo, Repo) else os.path.abspath(repo or os.getcwd())
    found = _DEFAULT.get(key)
    if found is not None and not found._closed:
        return found
    with _DEFAULT_LOCK:
        found = _DEFAULT.get(key)
        if found is None or found._closed:
            found = _DEFAULT[key] = Recorder(repo)
        return found


def _after_fork_in_child() -> None:
    """A forked worker (gunicorn, multiprocessing) starts with none of its parent's pending
    points (the parent writes those) and no timer thread (threads do not survive a fork)."""
    global _DEFAULT_LOCK
    _DEFAULT_LOCK = threading.Lock()
    for recorder in list(_LIVE):
        recorder._entries, recorder._points, recorder._retry, recorder._count = [], [], [], 0
        recorder._lock = threading.Lock()
        recorder._write_lock = threading.Lock()
        recorder._kick = threading.Event()
        recorder._thread = None


os.register_at_fork(after_in_child=_after_fork_in_child)


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
