"""When each version was last used: checkout, load, pull, export and Router picks.

A use is noted in an in-process accumulator (a dict update: no clock read and nothing written
on the serving path) and flushed to a small SQLite table in the store, ``.mvc/lastuse.sqlite``,
at most once per ``FLUSH_SECONDS`` per store and process, and at exit; each flush stamps its
uses with the repository clock's time then. A one-shot command (``mvc checkout``) writes once,
at exit.

Invariants:

- A flush is one SQLite transaction (``BEGIN IMMEDIATE``; concurrent processes wait for one
  another up to the store's lock timeout); each row keeps the latest instant any process saw
  (``max``) and adds the counts, so no process loses another's uses and a torn write is
  impossible (SQLite's journal).
- A crash (SIGKILL, power loss) loses at most the uses noted since the last flush of that
  process. A flush that fails (a read-only store, a lock held too long) keeps its batch for the
  next one; it never raises into the caller: last use is advisory, never worth a failed request.
- The table is not part of the object graph: deleting it loses only last-use facts (archive
  rules then see each version's commit time instead).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mvc.ids import ObjectId
from mvc.repo import Repo

#: Where the table lives, below the store folder.
DB_FILE = "lastuse.sqlite"
#: A process writes its accumulated uses at most this often (seconds), and at exit.
FLUSH_SECONDS = 60.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS last_use ("
    " version TEXT PRIMARY KEY, model TEXT NOT NULL, at TEXT NOT NULL, uses INTEGER NOT NULL)"
)
_UPSERT = (
    "INSERT INTO last_use (version, model, at, uses) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(version) DO UPDATE SET at = max(at, excluded.at), uses = uses + excluded.uses"
)


@dataclass(frozen=True)
class LastUse:
    version: ObjectId
    model: str
    at: str  # ISO-8601 UTC, seconds precision
    uses: int


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class UseTracker:
    """The uses one process noted for one store, not yet written. Safe to share between threads."""

    def __init__(self, store_dir: str, timeout: float = 10.0) -> None:
        self.path = os.path.join(store_dir, DB_FILE)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pending: dict[ObjectId, tuple[str, int]] = {}
        self._clock: Callable[[], datetime] | None = None
        self._due = time.monotonic() + FLUSH_SECONDS
        self.failures = 0

    def note(self, model: str, version: ObjectId, clock: Callable[[], datetime]) -> None:
        """Remember a use (a dict update; no clock read, no I/O); write the batch when a flush
        is due, at most once per ``FLUSH_SECONDS``."""
        with self._lock:
            old = self._pending.get(version)
            self._pending[version] = (model, old[1] + 1 if old else 1)
            self._clock = clock
        if time.monotonic() >= self._due:
            self.flush()

    def flush(self) -> int:
        """Write every pending use in one transaction, stamped with the time of the flush (a
        use is at most ``FLUSH_SECONDS`` older than its stamp); how many versions it wrote."""
        with self._lock:
            batch, self._pending = self._pending, {}
            clock = self._clock
            self._due = time.monotonic() + FLUSH_SECONDS
        if not batch or clock is None:
            return 0
        at = _iso(clock())
        rows = [(v, m, at, n) for v, (m, n) in sorted(batch.items())]
        import sqlite3

        try:
            with _connect(self.path, self.timeout) as db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(_UPSERT, rows)
                db.execute("COMMIT")
        except (sqlite3.Error, OSError):
            self.failures += 1
            with self._lock:  # keep the batch for the next flush
                for version, (model, count) in batch.items():
                    now = self._pending.get(version)
                    self._pending[version] = (model, count + (now[1] if now else 0))
            return 0
        return len(rows)


class _Closing:
    def __init__(self, db: Any) -> None:
        self.db = db

    def __enter__(self) -> Any:
        return self.db

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None and self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.db.close()


def _connect(path: str, timeout: float) -> _Closing:
    import sqlite3

    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        db.execute(_SCHEMA)
    except BaseException:
        db.close()
        raise
    return _Closing(db)


_TRACKERS: dict[str, UseTracker] = {}
_TRACKERS_LOCK = threading.Lock()


def tracker(store_dir: str, timeout: float = 10.0) -> UseTracker:
    """This process's accumulator for the store at ``store_dir`` (one per store)."""
    found = _TRACKERS.get(store_dir)
    if found is None:
        with _TRACKERS_LOCK:
            found = _TRACKERS.get(store_dir)
            if found is None:
                if not _TRACKERS:
                    atexit.register(flush_all)
                found = _TRACKERS[store_dir] = UseTracker(store_dir, timeout)
    return found


def note_use(repo: Repo, model: str, version: ObjectId) -> None:
    """Note that ``version`` of ``model`` was used now (batched; see the module's docstring)."""
    tracker(repo.store_dir, repo.lock_timeout).note(model, version, repo.clock)


def flush_all() -> int:
    """Write every store's pending uses (at exit; tests call it to see the table now)."""
    return sum(t.flush() for t in list(_TRACKERS.values()))


def read_last_use(store_dir: str) -> dict[ObjectId, LastUse]:
    """Every version's last use as the table holds it (what this process has not flushed yet
    is not in it). An absent or unreadable table is empty: last use is advisory."""
    import sqlite3

    path = os.path.join(store_dir, DB_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with _connect(path, 10.0) as db:
            rows = db.execute("SELECT version, model, at, uses FROM last_use").fetchall()
    except (sqlite3.Error, OSError):
        return {}
    return {ObjectId(v): LastUse(ObjectId(v), m, a, int(n)) for v, m, a, n in rows}
