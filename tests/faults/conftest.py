"""Shared fixtures of the fault suite (docs/reliability.md).

Every fault test states one promise and checks it the same way:

- ``versions``: a store with a few versions already in it (two models, a tag, a channel), so a
  fault has something to lose.
- ``nothing_lost``: take a ``snapshot()`` before the fault, call ``nothing_lost.check(before)``
  after it: every ref resolves to its old value or to a new, complete value; every object that
  was reachable before still verifies; the files of every old version read back byte-identical;
  and ``mvc fsck`` exits 0 (dangling objects allowed; the real command, run in-process).
- ``mvc_proc``: the real ``mvc`` entry point as a subprocess (a fresh process, real exit codes
  and signals). ``mvc_proc.fails(*args, code=N)`` asserts a clean failure: exit ``N``, one
  ``error:`` line (an optional ``hint:`` line), no traceback, nothing on stdout.

The helpers live in ``faultkit.py`` (``from faultkit import snapshot``); only fixtures
from ``tests/conftest.py`` are used, so a fault test file works with or without
this module's helpers; prefer them, they keep the checks uniform.
"""

from __future__ import annotations

import os

import pytest
from faultkit import (
    CRASH_ENV,
    MvcProcess,
    NothingLost,
    Versions,
    read_version_files,
    snapshot,
)

os.environ.pop(CRASH_ENV, None)  # never inherited from the shell that runs the suite


@pytest.fixture
def mvc_proc(mvc_env) -> MvcProcess:
    """The real ``mvc`` entry point as a subprocess, with the test's clean environment."""
    return MvcProcess(dict(mvc_env))


@pytest.fixture
def versions(store, cli, make_model) -> Versions:
    """``bert`` with three versions on ``main`` (tag ``v1.0.0`` on the first, channel ``prod``
    on the second) and ``gpt`` with one, committed from ``models/bert`` and ``models/gpt``."""
    made = Versions(store, store.root)
    for n in range(3):
        make_model("models/bert", seed=n)
        done = cli("commit", "models/bert", "-m", f"bert {n + 1}", "--json")
        made.ids[f"bert@{n + 1}"] = done.json()["version"]
    make_model("models/gpt", seed=10)
    made.ids["gpt@1"] = cli("commit", "models/gpt", "-m", "gpt 1", "--json").json()["version"]
    cli("tag", "bert", "v1.0.0", made.ids["bert@1"])
    cli("channel", "set", "bert", "prod", made.ids["bert@2"])
    for oid in made.ids.values():
        made.files[oid] = read_version_files(store, oid)
    return made


@pytest.fixture
def nothing_lost(mvc_proc, cli) -> NothingLost:
    """``before = snapshot(repo)``; fault; ``nothing_lost.check(repo, before)``."""
    return NothingLost(mvc_proc, in_process=cli)


@pytest.fixture
def take_snapshot():
    """``take_snapshot(repo)`` -> Snapshot (the function, for tests that prefer a fixture)."""
    return snapshot


@pytest.fixture
def crash_env() -> str:
    """The crash hook's variable name, for tests that build their own environment."""
    return CRASH_ENV
