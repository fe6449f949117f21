"""Writers racing on one remote, each in its own process (tests/faults/test_concurrent_writers.py).

``racers(n)`` is a pool of ``n`` spawned processes sharing one ``multiprocessing.Barrier``. Each
task runs in a separate clone and, on its first push, waits at the barrier just before it
creates the remote ref's next log entry: every racer has read the same remote value and planned
the same move, so they all try to create the same entry at once. No sleeps, no timing luck.

A task returns a plain dict (it crosses a process boundary): what landed, and how many times
the remote said "another writer got there first".
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mvc.errors import ImmutableRef, MvcError, RefConflict

#: Seconds a racer waits at the barrier for the others (the test fails rather than hangs).
BARRIER_WAIT = 60.0
#: Attempts a racer makes before giving up (n racers need at most n).
MAX_ATTEMPTS = 10

_barrier: Any = None


def _init(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


@contextmanager
def racers(count: int) -> Iterator[Any]:
    """A pool of ``count`` fresh processes (spawned: no state forked from the test runner)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count, timeout=BARRIER_WAIT)
    pool = context.Pool(count, initializer=_init, initargs=(barrier,))
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def race(pool: Any, task: Callable[..., dict], jobs: list[tuple]) -> list[dict]:
    """Run ``task(*job)`` for every job at once, one per racer; results in job order."""
    pending = [pool.apply_async(task, job) for job in jobs]
    return [p.get(BARRIER_WAIT * 2) for p in pending]


@contextmanager
def _lined_up() -> Iterator[None]:
    """This process's first create of a ``refs/`` key (the remote ref's next entry: a push
    writes nothing else under refs/ before it) waits at the barrier."""
    from mvc.storage.local import LocalStorage
    from mvc.storage.remote import FsspecStorage

    waited: list[bool] = []
    originals = {cls: cls.create_exclusive for cls in (LocalStorage, FsspecStorage)}

    def wrap(real: Callable[..., bool]) -> Callable[..., bool]:
        def create_exclusive(self: Any, key: str, data: bytes) -> bool:
            if key.startswith("refs/") and not waited:
                waited.append(True)
                _barrier.wait()
            return real(self, key, data)

        return create_exclusive

    for cls, real in originals.items():
        cls.create_exclusive = wrap(real)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls, real in originals.items():
            cls.create_exclusive = real  # type: ignore[method-assign]


def _open(root: str, env: dict[str, str]) -> Any:
    from mvc.repo import Repo

    os.environ.clear()
    os.environ.update(env)
    return Repo(root)


def _write(folder: str, racer: int, attempt: int) -> None:
    with open(os.path.join(folder, f"racer-{racer}.txt"), "w", encoding="utf-8") as handle:
        handle.write(f"racer {racer}, attempt {attempt}\n")


def _push_first_lined_up(repo: Any, spec: str, first: bool) -> Any:
    from mvc.ops import remotes

    if not first:
        return remotes.push(repo, "origin", spec)
    with _lined_up():
        return remotes.push(repo, "origin", spec)


def commit_and_push_until_landed(root: str, env: dict[str, str], racer: int) -> dict:
    """Add ``racer-N.txt`` to ``bert`` on ``main`` and push; when another writer got there
    first, pull (taking the remote's value), add the file again on top and push again."""
    from mvc.ops import remotes
    from mvc.ops.commit import commit

    repo = _open(root, env)
    folder = os.path.join(root, "bert")
    conflicts = 0
    for attempt in range(MAX_ATTEMPTS):
        _write(folder, racer, attempt)
        version = commit(repo, folder, message=f"racer {racer} attempt {attempt}").version_id
        try:
            _push_first_lined_up(repo, "bert@main", attempt == 0)
            return {"racer": racer, "landed": version, "conflicts": conflicts}
        except RefConflict as exc:
            assert exc.exit_code == 11 and "remote ref moved; pull and retry" in str(exc), exc
            conflicts += 1
        remotes.pull(repo, "origin", "bert@main", force=True)
    return {"racer": racer, "landed": None, "conflicts": conflicts}


def tag_and_push(root: str, env: dict[str, str], racer: int) -> dict:
    """Commit a version of its own, tag it ``v9.0.0`` here and push the tag."""
    from mvc.ops import names
    from mvc.ops.commit import commit

    repo = _open(root, env)
    folder = os.path.join(root, "bert")
    _write(folder, racer, 0)
    version = commit(repo, folder, message=f"racer {racer}").version_id
    names.create_tag(repo, "bert", "v9.0.0", version)
    outcome: dict = {"racer": racer, "version": version}
    try:
        _push_first_lined_up(repo, "bert@v9.0.0", True)
        outcome["landed"] = version
    except RefConflict as exc:
        outcome["error"] = (exc.exit_code, str(exc))
        try:  # tags never move: pushing again is refused, not a second entry
            _push_first_lined_up(repo, "bert@v9.0.0", False)
        except ImmutableRef as again:
            outcome["again"] = (again.exit_code, str(again))
    return outcome


def deploy_and_push_until_landed(root: str, env: dict[str, str], racer: int) -> dict:
    """Commit a version of its own, deploy it to channel ``prod`` here and push the channel;
    when another writer got there first, pull the channel and deploy again on top."""
    from mvc.ops import remotes
    from mvc.ops.commit import commit
    from mvc.ops.deploy import set_channel

    repo = _open(root, env)
    folder = os.path.join(root, "bert")
    _write(folder, racer, 0)
    version = commit(repo, folder, message=f"racer {racer}").version_id
    conflicts = 0
    for attempt in range(MAX_ATTEMPTS):
        record = set_channel(repo, "bert", "prod", str(version)).entry.new
        try:
            _push_first_lined_up(repo, "bert@channel=prod", attempt == 0)
            return {"racer": racer, "version": version, "landed": record, "conflicts": conflicts}
        except RefConflict as exc:
            assert exc.exit_code == 11 and "remote ref moved; pull and retry" in str(exc), exc
            conflicts += 1
        remotes.pull(repo, "origin", "bert@channel=prod", force=True)
    return {"racer": racer, "version": version, "landed": None, "conflicts": conflicts}


# --- racers in one local store (tests/faults/test_local_racers.py) -------------------------------


@contextmanager
def _lined_up_here() -> Iterator[None]:
    """This process's first ref change in a local store waits at the barrier *before* it takes
    the refs lock: every racer has planned its move on the same value when they all go."""
    from mvc.refs import RefStore

    real = RefStore.transaction
    waited: list[bool] = []

    def transaction(self: Any, updates: Any, why: str) -> Any:
        if not waited:
            waited.append(True)
            _barrier.wait()
        return real(self, updates, why)

    RefStore.transaction = transaction  # type: ignore[method-assign]
    try:
        yield
    finally:
        RefStore.transaction = real  # type: ignore[method-assign]


def commit_here_until_landed(root: str, env: dict[str, str], racer: int) -> dict:
    """Commit ``runs/rN`` to ``bert``'s ``main`` in the one store all racers share; when the
    branch moved meanwhile (exit 11), commit again on top of the new tip."""
    from mvc.ops.commit import commit

    repo = _open(root, env)
    folder = os.path.join(root, "runs", f"r{racer}")
    conflicts = 0
    with _lined_up_here():
        for attempt in range(MAX_ATTEMPTS):
            _write(folder, racer, attempt)
            try:
                done = commit(repo, folder, model="bert", message=f"racer {racer}")
                return {"racer": racer, "landed": done.version_id, "conflicts": conflicts}
            except RefConflict as exc:
                assert exc.exit_code == 11 and "moved" in str(exc), exc
                conflicts += 1
    return {"racer": racer, "landed": None, "conflicts": conflicts}


def tag_here(root: str, env: dict[str, str], racer: int, version: str) -> dict:
    """Tag ``version`` as ``v9.0.0`` in the shared store (every racer names another version)."""
    from mvc.ops import names

    repo = _open(root, env)
    with _lined_up_here():
        try:
            names.create_tag(repo, "bert", "v9.0.0", version)
            return {"racer": racer, "landed": version}
        except MvcError as exc:
            return {"racer": racer, "error": (exc.exit_code, str(exc))}


def deploy_here_until_landed(root: str, env: dict[str, str], racer: int, version: str) -> dict:
    """Point channel ``prod`` at ``version`` in the shared store; when another deploy landed
    first (exit 11), deploy again on top of it."""
    from mvc.ops.deploy import set_channel

    repo = _open(root, env)
    conflicts = 0
    with _lined_up_here():
        for _attempt in range(MAX_ATTEMPTS):
            try:
                record = set_channel(repo, "bert", "prod", version).entry.new
                return {"racer": racer, "landed": record, "conflicts": conflicts}
            except RefConflict as exc:
                assert exc.exit_code == 11, exc
                conflicts += 1
    return {"racer": racer, "landed": None, "conflicts": conflicts}
