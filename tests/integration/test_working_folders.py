"""A bound working folder remembers the version it holds, so a branch that moves elsewhere
(a CI commit from another folder, a pull) is never silently undone by the next commit."""

from __future__ import annotations

import shutil


def test_commit_from_another_folder_leaves_the_bound_folder_behind_not_dirty(
    store, cli, make_model
):
    make_model("models/bert", seed=1)
    first = cli("commit", "models/bert", "-m", "baseline").stdout.strip()
    shutil.copytree("models/bert", "out/run-17")
    with open("out/run-17/extra.json", "w") as handle:
        handle.write('{"epoch": 2}')
    ci = cli("commit", "out/run-17", "--model", "bert", "-m", "nightly").stdout.strip()

    status = cli("status", "--json").json()[0]
    assert status["clean"] and status["behind"]
    assert status["version"] == first and status["branch_tip"] == ci

    # Committing the stale folder would revert the nightly version: refused, nothing moves.
    refused = cli("commit", "models/bert", "-m", "stale", "--allow-empty", expect=11)
    assert "moved" in refused.stderr and "mvc checkout bert@main" in refused.stderr
    assert cli("log", "bert", "--json").json()[0]["id"] == ci

    cli("checkout", "bert@main")
    status = cli("status", "--json").json()[0]
    assert status["clean"] and not status["behind"] and status["version"] == ci
    with open("models/bert/extra.json") as handle:
        assert handle.read() == '{"epoch": 2}'


def test_binding_follows_each_commit_and_checkout(store, cli, make_model):
    make_model("models/bert", seed=1)
    v1 = cli("commit", "models/bert", "-m", "one").stdout.strip()
    make_model("models/bert", seed=2)
    v2 = cli("commit", "models/bert", "-m", "two").stdout.strip()
    assert cli("status", "--json").json()[0]["version"] == v2
    cli("checkout", f"bert@{v1[:12]}")
    status = cli("status", "--json").json()[0]
    assert status["version"] == v1 and status["branch"] is None and not status["behind"]
