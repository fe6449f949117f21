"""Concurrency in one local store: processes racing on one branch, one tag and one channel,
with a reader reading all the while.

Invariants, not timings: ``_race_helpers`` lines the racers up with a ``multiprocessing``
barrier right before each makes its first ref change, so all of them planned the move on the
same value and go at once. Then:

- **one winner per log entry**: of the racers that planned on one value, exactly one moved
  the ref; the others were told it moved (exit 11) and overwrote nothing;
- **contiguous logs**: entries 1..n, each entry's ``old`` the entry before it's ``new``;
- **no lost update**: each loser that tried again landed on top, so every racer's change is in
  the history (a commit's parent is the value before it, a deployment record replaces the one
  before it);
- **readers see only whole values**: a reader in the test process resolves the branch again
  and again while the racers write, and every version it sees reads back in full (verified).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from _race_helpers import (
    commit_here_until_landed,
    deploy_here_until_landed,
    racers,
    tag_here,
)
from faultkit import read_version_files

from mvc.objects import history_ids
from mvc.refnames import branch, channel, tag
from mvc.refs import RefEntry
from mvc.repo import Repo

RACERS = 3
MAIN = branch("bert", "main")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    with racers(RACERS) as made:
        yield made


def _contiguous(entries: list[RefEntry]) -> None:
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0].old is None
    for before, after in zip(entries, entries[1:], strict=False):
        assert after.old == before.new


def _race_while_reading(pool: Any, root: str, task: Any, jobs: list[tuple]) -> tuple[list, set]:
    """Run the racers; meanwhile resolve ``bert@main`` and read its files whole, again and
    again. Returns the racers' results and every version the reader saw."""
    pending = [pool.apply_async(task, job) for job in jobs]
    seen: set[str] = set()
    while not all(p.ready() for p in pending):
        value = Repo(root).refs.get(MAIN)
        if value is not None and value not in seen:
            read_version_files(Repo(root), value)  # raises if anything is missing or damaged
            seen.add(value)
    return [p.get(120) for p in pending], seen


def _versions(cli: Any, make_model: Any) -> list[str]:
    """``bert`` on ``main``, then one version per racer on a branch of its own."""
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "start")
    made = []
    for i in range(RACERS):
        make_model(f"runs/v{i}", seed=20 + i)
        done = cli("commit", f"runs/v{i}", "--model", "bert", "--branch", f"b{i}", "-m", "v")
        made.append(done.stdout.strip())
    return made


def test_racing_commits_to_one_branch_lose_no_update(store, cli, make_model, pool) -> None:
    make_model("models/bert", seed=0)
    start = cli("commit", "models/bert", "-m", "start").stdout.strip()
    for i in range(RACERS):
        make_model(f"runs/r{i}", seed=10 + i)
    env = dict(os.environ)
    jobs = [(store.root, env, i) for i in range(RACERS)]

    results, seen = _race_while_reading(pool, store.root, commit_here_until_landed, jobs)

    assert all(r["landed"] for r in results), results
    assert sorted(r["conflicts"] for r in results)[0] == 0  # someone won the first round
    assert sum(r["conflicts"] for r in results) >= RACERS - 1  # and the others were told
    repo = Repo(store.root)
    log = repo.refs.entries(MAIN)
    _contiguous(log)
    assert len(log) == 1 + RACERS and log[0].new == start
    assert {e.new for e in log[1:]} == {r["landed"] for r in results}
    for entry in log[1:]:
        assert history_ids(repo.objects.get_meta(entry.new))[0] == entry.old
    assert seen <= {e.new for e in log}  # the reader saw only values the branch really held
    assert cli("fsck", "--json").json()["ok"]


def test_racing_tags_of_one_name_have_one_winner(store, cli, make_model, pool) -> None:
    versions = _versions(cli, make_model)
    env = dict(os.environ)
    jobs = [(store.root, env, i, versions[i]) for i in range(RACERS)]

    results, _seen = _race_while_reading(pool, store.root, tag_here, jobs)

    winners = [r for r in results if "landed" in r]
    assert len(winners) == 1, results
    for loser in (r for r in results if "landed" not in r):
        code, message = loser["error"]
        assert code == 11 and "v9.0.0" in message, loser
    log = Repo(store.root).refs.entries(tag("bert", "v9.0.0"))
    assert [(e.seq, e.old, e.new) for e in log] == [(1, None, winners[0]["landed"])]
    assert cli("fsck", "--json").json()["ok"]


def test_racing_deploys_to_one_channel_lose_no_update(store, cli, make_model, pool) -> None:
    versions = _versions(cli, make_model)
    cli("channel", "set", "bert", "prod", "main")
    env = dict(os.environ)
    jobs = [(store.root, env, i, versions[i]) for i in range(RACERS)]

    results, _seen = _race_while_reading(pool, store.root, deploy_here_until_landed, jobs)

    assert all(r["landed"] for r in results), results
    assert sum(r["conflicts"] for r in results) >= RACERS - 1
    repo = Repo(store.root)
    log = repo.refs.entries(channel("bert", "prod"))
    _contiguous(log)
    assert len(log) == 1 + RACERS
    assert {e.new for e in log[1:]} == {r["landed"] for r in results}
    for entry in log[1:]:  # each record replaces the one before it: no deploy overwritten
        assert history_ids(repo.objects.get_meta(entry.new)) == [entry.old]
    assert cli("fsck", "--json").json()["ok"]
