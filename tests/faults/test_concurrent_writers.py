"""Concurrency: writers in separate processes racing on one remote ref, on every kind of remote
that takes concurrent writers: a folder (``link()``/``O_EXCL``), moto's S3 and Ceph's RGW (a
real S3 implementation; ``If-None-Match: *`` on PutObject).

Invariants, not timings (``_race_helpers`` lines the racers up with a barrier right before
they create the same log entry):

- **one winner per log entry**: of racers that planned the same move, exactly one lands; every
  other is told "remote ref moved; pull and retry" (exit 11) and overwrote nothing;
- **contiguous logs**: the remote ref's log is numbered 1..n without gaps, and each entry's
  ``old`` is the entry before it's ``new``;
- **no lost update**: a loser that pulls and tries again lands on top, so in the end every
  racer's change is in the ref's history (for a branch: its file is in the final version).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from _race_helpers import (
    commit_and_push_until_landed,
    deploy_and_push_until_landed,
    race,
    racers,
    tag_and_push,
)

from mvc.objects import history_ids
from mvc.ops import remotes
from mvc.refnames import branch, channel, tag
from mvc.refs import RefEntry
from mvc.repo import Repo

RACERS = 3

pytestmark = pytest.mark.slow


@pytest.fixture(
    params=[
        "folder",
        pytest.param("moto", marks=pytest.mark.s3),
        pytest.param("rgw", marks=[pytest.mark.s3, pytest.mark.rgw]),
    ]
)
def remote_url(request: pytest.FixtureRequest, tmp_path: Any) -> tuple[str, list[str]]:
    """A fresh remote of each kind, and the ``-o`` options to reach it."""
    if request.param == "folder":
        return f"file://{tmp_path}/remote", []
    s3 = request.getfixturevalue("s3_url" if request.param == "moto" else "rgw_url")
    return s3.url, ["-o", f"endpoint_url={s3.options['endpoint_url']}"]


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    """``RACERS`` spawned processes, reused by every test here (spawning costs ~1 s each)."""
    with racers(RACERS) as made:
        yield made


def _clones(cli: Any, url: str, options: list[str], tmp_path: Any) -> list[str]:
    """The store's ``bert`` pushed to ``url``, then one clone per racer, checked out (cloned
    once and copied: a clone from S3 takes seconds, and a copied store is the same store)."""
    added = cli("remote", "add", "origin", url, *options)
    assert "--single-writer" not in added.stderr  # the probe found create-if-absent honoured
    assert cli("remote", "list", "--json").json()[0]["atomic_create"] is True
    cli("push", "origin", "bert")
    first = tmp_path / "racer0"
    cli("clone", url, first, "--checkout", *options)
    cli("-C", first, "config", "set", "core.fsync", "false")
    folders = []
    for i in range(RACERS):
        folder = tmp_path / f"racer{i}"
        if i:
            shutil.copytree(first, folder, symlinks=True)
        cli("-C", folder, "config", "set", "user.name", f"Racer {i}")
        folders.append(str(folder))
    return folders


def _contiguous(entries: list[RefEntry]) -> None:
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0].old is None
    for before, after in zip(entries, entries[1:], strict=False):
        assert after.old == before.new  # every move built on the one before it


def test_racing_pushes_to_one_branch_lose_no_update(
    store, cli, make_model, remote_url, tmp_path, pool
) -> None:
    url, options = remote_url
    make_model("models/bert", seed=0)
    start = cli("commit", "models/bert", "-m", "start").stdout.strip()
    folders = _clones(cli, url, options, tmp_path)

    results = race(
        pool,
        commit_and_push_until_landed,
        [(f, dict(os.environ), i) for i, f in enumerate(folders)],
    )

    assert all(r["landed"] for r in results), results
    assert sorted(r["conflicts"] for r in results)[0] == 0  # someone won the first round
    # The first round: all three planned the same move; one won, two were told so.
    assert sum(r["conflicts"] for r in results) >= RACERS - 1
    repo = Repo(str(store.root))
    log = remotes.open_remote(repo, "origin").refs.entries(branch("bert", "main"))
    _contiguous(log)
    assert len(log) == 1 + RACERS  # the first push, then one entry per racer: no lost update
    assert log[0].new == start
    assert {e.new for e in log[1:]} == {r["landed"] for r in results}
    # Each landed version is built on the one before it, and the last holds every racer's file.
    cli("pull", "origin", "bert")
    for entry in log[1:]:
        assert history_ids(repo.objects.get_meta(entry.new))[0] == entry.old
    cli("checkout", "bert@main", "--to", tmp_path / "final")
    found = sorted(n for n in os.listdir(tmp_path / "final") if n.startswith("racer-"))
    assert found == [f"racer-{i}.txt" for i in range(RACERS)]


def test_racing_pushes_of_one_tag_have_one_winner(
    store, cli, make_model, remote_url, tmp_path, pool
) -> None:
    url, options = remote_url
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "start")
    folders = _clones(cli, url, options, tmp_path)

    results = race(pool, tag_and_push, [(f, dict(os.environ), i) for i, f in enumerate(folders)])

    winners = [r for r in results if "landed" in r]
    assert len(winners) == 1, results
    for loser in (r for r in results if "landed" not in r):
        code, message = loser["error"]
        assert code == 11 and "remote ref moved; pull and retry" in message, loser
        code, message = loser["again"]  # and trying again is refused: tags never move
        assert code == 11 and "tags never move" in message, loser
    repo = Repo(str(store.root))
    log = remotes.open_remote(repo, "origin").refs.entries(tag("bert", "v9.0.0"))
    assert [(e.seq, e.old, e.new) for e in log] == [(1, None, winners[0]["version"])]


def test_racing_deploys_to_one_channel_lose_no_update(
    store, cli, make_model, remote_url, tmp_path, pool
) -> None:
    url, options = remote_url
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "start")
    cli("channel", "set", "bert", "prod", "main")
    folders = _clones(cli, url, options, tmp_path)

    jobs = [(f, dict(os.environ), i) for i, f in enumerate(folders)]
    results = race(pool, deploy_and_push_until_landed, jobs)

    assert all(r["landed"] for r in results), results
    assert sum(r["conflicts"] for r in results) >= RACERS - 1
    repo = Repo(str(store.root))
    log = remotes.open_remote(repo, "origin").refs.entries(channel("bert", "prod"))
    _contiguous(log)
    assert len(log) == 1 + RACERS
    assert {e.new for e in log[1:]} == {r["landed"] for r in results}
    # Every racer's deploy is in the channel's history, each record replacing the one before.
    cli("pull", "origin", "bert@channel=prod")
    for entry in log[1:]:
        assert history_ids(repo.objects.get_meta(entry.new)) == [entry.old]
