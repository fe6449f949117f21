"""Concurrency: gc never collects what a writer is about to make reachable, and never blocks
writers for its whole run.

Faults are injected deterministically: a patched step waits on an event while another command
runs, so the tests need no sleeps and no timing luck.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _integrity_helpers import commit, fsck_json

from mvc.errors import LockTimeout
from mvc.ops import maintenance, remotes
from mvc.repo import Repo

WAIT = 30.0  # seconds a paused step waits at most (the test fails rather than hangs)


class Paused:
    """Wraps ``module.name`` so its first call signals ``reached`` and waits for ``release``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        real = getattr(module, name)

        def paused(*args: Any, **kwargs: Any) -> Any:
            if not self.reached.is_set():
                self.reached.set()
                assert self.release.wait(WAIT), "the test never released the paused step"
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, paused)


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # reported by the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_commit_during_gc_succeeds_and_is_kept(store, cli, make_model, tmp_path, monkeypatch):
    """Guarantee: gc marks without holding the objects lock, so a commit made while gc marks
    does not wait for it; gc re-reads the refs under the lock before deleting, so the commit's
    objects are kept even with no grace period."""
    commit(cli, make_model, 1)
    pause = Paused(monkeypatch, maintenance, "_mark")
    gc, outcome = _in_thread(lambda: maintenance.gc(Repo(str(tmp_path / "work")), grace=0.0))
    assert pause.reached.wait(WAIT)
    try:
        new = commit(cli, make_model, 2)  # default 60 s lock timeout: must not need it
        cli("--lock-timeout", "1", "tag", "bert", "v2.0.0")
    finally:
        pause.release.set()
        gc.join(WAIT)
    assert not isinstance(outcome[0], BaseException), outcome
    assert fsck_json(cli, tmp_path / "work", expect=0)["ok"]
    assert cli("log", "bert", "--json").json()[0]["id"] == new
    cli("checkout", "bert@v2.0.0", "--to", tmp_path / "out")


def test_gc_in_a_working_store_remote_never_collects_what_a_push_reuses(
    store, cli, make_model, tmp_path, monkeypatch
):
    """Guarantee: a push into a working store holds that store's objects lock (shared) from
    looking at what is there until its refs moved, so gc there cannot delete objects the push
    counts on: gc waits (here: times out, exit 11) and the pushed ref names complete data."""
    hub = tmp_path / "hub"
    cli("init", hub)
    commit(cli, make_model, 1)
    cli("branch", "bert", "tmp")
    cli("remote", "add", "hub", hub)
    cli("push", "hub", "bert@tmp")
    cli("-C", hub, "branch", "bert", "-D", "tmp")  # the pushed objects are now garbage there

    pause = Paused(monkeypatch, remotes, "_move_remote_refs")
    push, outcome = _in_thread(lambda: remotes.push(Repo(str(tmp_path / "work")), "hub", "bert"))
    assert pause.reached.wait(WAIT)
    try:
        hub_repo = Repo(str(hub))
        hub_repo.lock_timeout = 0.5
        with pytest.raises(LockTimeout):
            maintenance.gc(hub_repo, grace=0.0)
    finally:
        pause.release.set()
        push.join(WAIT)
    assert not isinstance(outcome[0], BaseException), outcome
    assert fsck_json(cli, hub, expect=0)["ok"]
    cli("-C", hub, "checkout", "bert@main", "--to", tmp_path / "out")
    # Once the push is done, gc there runs and keeps what the pushed ref reaches.
    cli("-C", hub, "gc", "--grace", "0s")
    assert fsck_json(cli, hub, expect=0)["ok"]
