"""Background repack after commit (``repack.auto``), as git packs loose objects after its
porcelain commands (``gc.auto``).

With ``repack.auto`` on, every ``mvc commit`` that made a version queues it: one line
(``VERSION NEW_CHUNK_BYTES``) appended to ``.mvc/repack/pending``. When the queued bytes reach
``repack.auto_bytes``, ``after_commit`` starts ``mvc repack --auto`` as a detached process (its
own session, stdin closed, stdout and stderr appended to ``.mvc/logs/repack.log``) and returns at
once: the commit never waits for the repack.

``mvc.ops.queued_repack.run_pending`` (what that process runs) repacks only what the queued versions brought: the
chunks of the files each added or changed against its parent, deltas planned against their
parents (never a walk over the whole store or history). Invariants:

- One background repack at a time per store: it holds ``.mvc/locks/repack-auto`` for its whole
  run, taken without waiting; a run that finds it held does nothing (a commit that finds it held
  starts nothing). It also takes repack's own lock, so it waits for a manual ``mvc repack``.
- Crash safety: the queue is taken by renaming it to ``pending.taken`` under that lock, and the
  taken list is deleted only after the repack finished; a run that finds a taken list (its
  predecessor was killed) repacks it first. Repack itself replaces each envelope atomically, so
  a run killed at any point leaves every object readable.
- The queue is a hint, never the only copy of anything: a lost line only leaves chunks loose
  for the next ``mvc repack`` or ``gc``.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from mvc.errors import MvcError, environment_error
from mvc.ids import ObjectId, is_object_id, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.repo import Repo

PENDING = os.path.join("repack", "pending")
TAKEN = os.path.join("repack", "pending.taken")
LOG = os.path.join("logs", "repack.log")
LOCK = os.path.join("locks", "repack-auto")


@dataclass
class BackgroundRepack(JsonShaped):
    """What ``after_commit`` did: ``started`` a repack, or why not (``reason``)."""

    started: bool
    reason: str
    pending_bytes: int
    log: str  # the log file, relative to the store's root
    pid: int | None = None

    json_shape: ClassVar[Shape] = Shape()


def _path(repo: Repo, name: str) -> str:
    return os.path.join(repo.store_dir, name)


def queue(repo: Repo, version: ObjectId, new_bytes: int) -> None:
    """Append one version to the queue (one small ``O_APPEND`` write: concurrent commits
    never interleave their lines)."""
    path = _path(repo, PENDING)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{version} {new_bytes}\n".encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise environment_error(exc, f"the repack queue {path}") from exc


def _read_queue(path: str) -> list[tuple[ObjectId, int]]:
    """The queue's lines; a torn or foreign line is skipped (the queue is only a hint)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise environment_error(exc, f"the repack queue {path}") from exc
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and is_object_id(parts[0]) and parts[1].isdigit():
            found.append((ObjectId(parts[0]), int(parts[1])))
    return found


def pending_bytes(repo: Repo) -> int:
    """New chunk bytes the queued (and not yet repacked) versions brought."""
    queued = _read_queue(_path(repo, PENDING)) + _read_queue(_path(repo, TAKEN))
    return sum(size for _, size in queued)


@contextmanager
def hold_if_free(repo: Repo) -> Iterator[bool]:
    """Hold the background repack's lock if it is free (True), else do nothing (False)."""
    path = _path(repo, LOCK)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise environment_error(exc, f"the lock file {path}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def running(repo: Repo) -> bool:
    """Whether a background repack holds its lock now."""
    with hold_if_free(repo) as free:
        return not free


def after_commit(repo: Repo, version: ObjectId, new_bytes: int) -> BackgroundRepack | None:
    """Queue a new version and start a background repack when enough bytes are queued.
    None when ``repack.auto`` is off (nothing is queued then)."""
    if not repo.config.get("repack.auto"):
        return None
    queue(repo, version, new_bytes)
    queued = pending_bytes(repo)
    threshold = int(repo.config.get("repack.auto_bytes"))
    log = os.path.join(os.path.basename(repo.store_dir), LOG)
    if queued < threshold:
        return BackgroundRepack(False, f"{queued} of {threshold} bytes queued", queued, log)
    if running(repo):
        return BackgroundRepack(False, "a background repack is already running", queued, log)
    pid = _spawn(repo, version, queued)
    return BackgroundRepack(True, f"{queued} bytes queued", queued, log, pid)


def _spawn(repo: Repo, version: ObjectId, queued: int) -> int:
    """``mvc repack --auto`` detached: started by a shell that exits at once, so it is nobody's
    child to reap (init adopts it) and a long-lived caller keeps no handle on it; in a session
    of its own (a Ctrl-C at the commit's terminal does not reach it); no stdin; its output
    appended to the log."""
    path = _path(repo, LOG)
    argv = [sys.executable, "-m", "mvc", "-C", repo.root, "repack", "--auto"]
    launch = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            log.write(
                f"{stamp} started after the commit of {short(version)} ({queued} bytes queued)\n"
            )
        done = subprocess.run(
            ["/bin/sh", "-c", launch, "sh", path, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            start_new_session=True,
            check=True,
            timeout=60,
        )
        return int(done.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise MvcError(
            f"could not start the background repack: {exc}", hint="run `mvc repack` instead"
        ) from exc


def take(repo: Repo) -> list[ObjectId]:
    """The versions to repack: a taken list a killed run left, then the queue, renamed to the
    taken list (commits queue into a new file meanwhile). Call with the lock held."""
    pending, taken = _path(repo, PENDING), _path(repo, TAKEN)
    try:
        if not os.path.exists(taken):
            os.replace(pending, taken)
        elif os.path.exists(pending):  # a killed run's list first, then what came since
            # Renamed before it is read: a commit queueing meanwhile starts a new file
            # instead of appending to one about to be deleted.
            moving = pending + ".moving"
            os.replace(pending, moving)
            now = _read_queue(moving)
            with open(taken, "a", encoding="utf-8") as handle:
                handle.writelines(f"{oid} {size}\n" for oid, size in now)
                handle.flush()
                os.fsync(handle.fileno())
            os.unlink(moving)
    except FileNotFoundError:
        pass  # nothing queued
    except OSError as exc:
        raise environment_error(exc, f"the repack queue {pending}") from exc
    return list(dict.fromkeys(oid for oid, _ in _read_queue(taken)))
