"""Hostile remotes: rewritten histories, moved tags, escaping tree paths, endless listings,
stalled answers.

What mvc guarantees: a remote branch that moved backwards or to a history that does not
descend from what we saw, or a ref log whose ``old`` -> ``new`` chain is broken, is reported
(a warning in the result, on stderr and in ``--json``) and a local branch is not fast-forwarded
onto it without ``--force``; a tag that moved on a remote is never followed; a tree whose paths
escape is refused before anything enters the store; listings and answers are bounded.

Remotes are folders the test writes into directly (the attacker's view), or moto S3 behind
``FaultProxy``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from _remote_helpers import FaultProxy, Rule, no_sleep, put_meta, raw_entry, raw_put, ref_key

from mvc.refnames import branch, tag
from mvc.remotes import open_remote, tracked_values
from mvc.repo import Repo

MAIN = branch("bert", "main")


def _commit(cli: Any, make_model: Any, seed: int, *args: str) -> str:
    make_model("models/bert", seed=seed)
    return cli(*args, "commit", "models/bert", "-m", f"seed {seed}").stdout.strip()


def _append(root: Any, ref: Any, old: str | None, new: str | None) -> None:
    """Append an entry to a remote ref's log by hand (what a hostile or buggy writer does)."""
    seqs = sorted(int(n) for n in os.listdir(os.path.join(root, *ref.folder.split("/"))))
    raw_put(root, ref_key(ref, seqs[-1] + 1), raw_entry(new, seqs[-1] + 1, old=old))


@pytest.fixture
def origin(store: Repo, cli: Any, tmp_path: Any) -> Any:
    root = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{root}")
    return root


def _clone(cli: Any, origin: Any, tmp_path: Any, name: str = "clone") -> Any:
    target = tmp_path / name
    cli("clone", f"file://{origin}", target)
    return target


# --- rewritten histories --------------------------------------------------------------------------


def test_a_branch_moved_backwards_is_reported_by_fetch(store, cli, make_model, origin, tmp_path):
    a = _commit(cli, make_model, 0)
    b = _commit(cli, make_model, 1)
    cli("push", "origin", "bert")
    clone = _clone(cli, origin, tmp_path)
    _append(origin, MAIN, b, a)  # the remote's main goes back to a
    fetched = cli("-C", clone, "fetch", "origin", "--json").json()
    assert [(r["name"], r["status"]) for r in fetched["refs"]] == [("main", "rewritten")]
    assert any("backwards" in w and "main" in w for w in fetched["warnings"])
    human = cli("-C", clone, "fetch", "origin")  # nothing new: no warning twice
    assert "backwards" not in human.stderr
    assert Repo(str(clone)).refs.get(MAIN) == b  # the local branch did not move


def test_pull_refuses_to_fast_forward_onto_a_rewritten_history(
    store, cli, make_model, origin, tmp_path
):
    a = _commit(cli, make_model, 0)
    cli("push", "origin", "bert")
    clone = _clone(cli, origin, tmp_path)  # local main = a
    b = _commit(cli, make_model, 1)
    cli("push", "origin", "bert")
    cli("-C", clone, "fetch", "origin")  # tracking = b; local main still a
    # c is built on a, not on b: the remote's main jumps sideways and b vanishes from it.
    cli("branch", "bert", "side", a)
    cli("checkout", "bert@side")
    c = _commit(cli, make_model, 2)
    cli("push", "origin", "bert@side")
    _append(origin, MAIN, b, c)
    human = cli("-C", clone, "fetch", "origin")
    assert "rewrote" in human.stderr and "main" in human.stderr
    refused = cli("-C", clone, "pull", "origin", "bert@main", expect=11)
    assert "rewr" in refused.stderr and "--force" in refused.stderr
    assert Repo(str(clone)).refs.get(MAIN) == a
    forced = cli("-C", clone, "pull", "origin", "bert@main", "--force", "--json").json()
    assert forced["refs"][0]["status"] == "forced"
    assert Repo(str(clone)).refs.get(MAIN) == c


def test_a_broken_log_chain_is_reported_and_not_fast_forwarded(
    store, cli, make_model, origin, tmp_path
):
    a = _commit(cli, make_model, 0)
    cli("push", "origin", "bert")
    clone = _clone(cli, origin, tmp_path)
    b = _commit(cli, make_model, 1)
    cli("push", "origin", "bert")
    c = _commit(cli, make_model, 2)
    cli("branch", "bert", "carrier", c)  # c's objects reach the remote on another branch
    cli("push", "origin", "bert@carrier")
    # Entry 3 claims to replace a, but entry 2 ended at b: someone rewrote the log.
    assert open_remote(Repo(store.root), "origin").refs.get(MAIN) == b
    _append(origin, MAIN, a, c)
    fetched = cli("-C", clone, "fetch", "origin", "--json").json()
    assert any("log" in w and "entry 3" in w for w in fetched["warnings"]), fetched["warnings"]
    refused = cli("-C", clone, "pull", "origin", "bert@main", expect=11)
    assert "--force" in refused.stderr
    assert Repo(str(clone)).refs.get(MAIN) == a


def test_a_tag_moved_on_the_remote_is_never_followed(store, cli, make_model, origin, tmp_path):
    a = _commit(cli, make_model, 0)
    cli("tag", "bert", "v1.0.0")
    b = _commit(cli, make_model, 1)
    cli("push", "origin", "bert")
    clone = _clone(cli, origin, tmp_path)
    v1 = tag("bert", "v1.0.0")
    _append(origin, v1, a, b)  # the tag moves on the remote
    fetched = cli("-C", clone, "fetch", "origin", "--json").json()
    assert any("v1.0.0" in w and "never move" in w for w in fetched["warnings"])
    pulled = cli("-C", clone, "pull", "origin", "bert", "--json").json()  # the rest still pulls
    assert any("v1.0.0" in w for w in pulled["warnings"])
    assert Repo(str(clone)).refs.get(v1) == a
    assert tracked_values(Repo(str(clone)), "origin")[v1] == a
    # A store that never saw the tag before refuses it too: the remote's log shows it moved.
    fresh = _clone(cli, origin, tmp_path, "fresh")
    assert Repo(str(fresh)).refs.get(v1) is None
    assert v1 not in tracked_values(Repo(str(fresh)), "origin")
    assert Repo(str(fresh)).refs.get(MAIN) == b


# --- hostile trees --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../../outside.txt",
        "/etc/outside.txt",
        "a/../../outside.txt",
        ".git/hooks/outside-pre-commit",
        ".mvc/outside-config.yaml",
    ],
)
@pytest.mark.parametrize("command", ["fetch", "pull", "clone"])
def test_trees_whose_paths_escape_are_refused_before_anything_is_stored(
    store, cli, make_model, origin, tmp_path, path, command
):
    version = _commit(cli, make_model, 0)
    cli("push", "origin", "bert")
    good = store.objects.get_meta(store.objects.get_version(version).tree)
    entry = next(iter(good["files"].values()))
    tree = put_meta(origin, {**good, "files": {path: entry}})
    evil = put_meta(origin, {**store.objects.get_meta(version), "tree": tree, "parents": []})
    raw_put(origin, ref_key(branch("bert", "evil"), 1), raw_entry(evil))
    target = tmp_path / "target"
    if command == "clone":
        failed = cli("clone", f"file://{origin}", target, expect=12)
    else:
        cli("init", target)
        cli("-C", target, "remote", "add", "origin", f"file://{origin}")
        args = ["origin"] if command == "fetch" else ["origin", "bert@evil"]
        failed = cli("-C", target, command, *args, expect=12)
    assert "unsafe path" in failed.stderr and tree[:12] in failed.stderr
    repo = Repo(str(target))
    assert not repo.objects.has(tree) and not repo.objects.has(evil)
    assert branch("bert", "evil") not in tracked_values(repo, "origin")
    assert not any("outside" in n for _b, _d, ns in os.walk(tmp_path) for n in ns)


# --- bounded listings and answers (S3 behind the fault proxy) -------------------------------------


@pytest.fixture
def proxy(s3_endpoint: str) -> Any:
    with FaultProxy(s3_endpoint) as running:
        yield running


@pytest.mark.s3
def test_a_listing_that_never_ends_is_cut_off_with_a_clear_error(
    store, cli, make_model, s3_url, proxy, monkeypatch
):
    no_sleep(monkeypatch)
    _commit(cli, make_model, 0)
    cli("remote", "add", "origin", s3_url.url, "-o", f"endpoint_url={proxy.url}")
    cli("push", "origin", "bert")
    monkeypatch.setattr("mvc.storage.remote.MAX_LIST_PAGES", 20)
    rule = proxy.add(
        Rule(
            "GET",
            r"list-type=2.*prefix=store%2Frefs%2Fheads%2Fbert%2Fmain",
            "endless_listing",
            times=10**6,
        )
    )
    failed = cli("fetch", "origin", expect=1)
    assert "listing" in failed.stderr and "20 pages" in failed.stderr
    assert 20 <= rule.hits <= 21


@pytest.mark.s3
def test_a_stalled_answer_times_out_and_is_retried(
    store, cli, make_model, s3_url, proxy, monkeypatch
):
    no_sleep(monkeypatch)
    version = _commit(cli, make_model, 0)
    cli(
        "remote",
        "add",
        "origin",
        s3_url.url,
        "-o",
        f"endpoint_url={proxy.url}",
        "-o",
        "read_timeout=0.5",
    )
    cli("push", "origin", "bert")
    rule = proxy.add(Rule("GET", r"/refs/heads/bert/main/0000000001", "stall:3", times=1))
    fetched = cli("fetch", "origin", "--json")
    assert rule.hits == 1 and fetched.exit_code == 0
    assert tracked_values(Repo(store.root), "origin")[MAIN] == version
    stalled = proxy.add(Rule("GET", r"/refs/heads/bert/main/0000000001", "stall:2", times=10))
    failed = cli("pull", "origin", "bert", expect=1)
    assert stalled.hits == 5 and "still failing after 5 tries" in failed.stderr


def test_an_enormous_ref_log_entry_is_refused_without_reading_it_whole(
    store, cli, make_model, origin, tmp_path
):
    _commit(cli, make_model, 0)
    cli("push", "origin", "bert")
    huge = raw_entry(None, 2)[:-1] + b',"pad":"' + b"x" * (8 * 2**20) + b'"}'
    raw_put(origin, ref_key(MAIN, 2), huge)
    failed = cli("fetch", "origin", expect=12)
    assert "larger than 65536 bytes" in failed.stderr and "remote origin" in failed.stderr


@pytest.mark.s3
def test_an_enormous_ref_log_entry_on_s3_costs_one_small_ranged_read(
    store, cli, make_model, s3_url, s3_client, proxy
):
    _commit(cli, make_model, 0)
    cli("remote", "add", "origin", s3_url.url, "-o", f"endpoint_url={proxy.url}")
    cli("push", "origin", "bert")
    key = f"store/{ref_key(MAIN, 2)}"
    s3_client.put_object(Bucket=s3_url.bucket, Key=key, Body=b"{" + b" " * (8 * 2**20) + b"}")
    failed = cli("fetch", "origin", expect=12)
    assert "larger than 65536 bytes" in failed.stderr
    assert proxy.requests("GET", ref_key(MAIN, 2) + "$")
    sent = [n for m, p, n in proxy.answered if m == "GET" and p.endswith(ref_key(MAIN, 2))]
    assert all(n <= 65537 for n in sent)  # a ranged read, never the 8 MiB
