"""``rollback --to INSTANT`` (what the channel served then), ``--to REV`` after a blue-green
switch, and ``branch -d`` refusing to drop versions nothing else reaches (``-D`` does)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from deployfix import Store

from mvc.errors import MvcError, NotFound, UsageError
from mvc.ops import deploy as ops
from mvc.ops.names import create_branch, delete_branch
from mvc.refnames import branch

M, C = "bert", "prod"


def _timeline(st: Store) -> dict[str, ops.Move]:
    moves = {}
    st.clock.now = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    moves["first"] = ops.set_channel(st.repo, M, C, "v1.4.0")
    st.clock.now = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)
    moves["canary"] = ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    st.clock.now = datetime(2026, 3, 3, 14, 30, tzinfo=UTC)
    moves["promote"] = ops.promote(st.repo, M, C)
    st.clock.now = datetime(2026, 3, 3, 16, 0, tzinfo=UTC)
    moves["set"] = ops.set_channel(st.repo, M, C, "v1.6.0")
    return moves


def test_rollback_to_an_instant_restores_what_served_then(st: Store) -> None:
    moves = _timeline(st)
    back = ops.rollback(st.repo, M, C, to="2026-03-03T14:00")  # mid-canary
    assert back.record.arms == moves["canary"].record.arms
    assert back.record.restores == moves["canary"].record.id
    again = ops.rollback(st.repo, M, C, to="2026-03-03T10:00Z")
    assert again.record.stable.version == st.ids["bert@v1.4.0"]
    assert again.record.restores == moves["first"].record.id
    with pytest.raises(NotFound, match="did not exist yet"):
        ops.rollback(st.repo, M, C, to="2026-03-03T08:00")
    with pytest.raises(UsageError, match="current record"):
        ops.rollback(st.repo, M, C, to=st.clock.now.strftime("%Y-%m-%dT%H:%M:%S"))


def test_rollback_to_a_version_that_was_switched_to(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_blue_green(st.repo, M, C, "v1.5.0")
    switched = ops.switch(st.repo, M, C)  # v1.5.0 serves alone, v1.4.0 warm as blue
    ops.set_channel(st.repo, M, C, "v1.6.0")
    back = ops.rollback(st.repo, M, C, to="v1.5.0")
    assert back.record.restores == switched.record.id
    assert back.record.state == "switched"


def test_cli_rollback_to_an_instant(st: Store, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    moves = _timeline(st)
    monkeypatch.chdir(st.root)
    out = cli("rollback", M, C, "--to", "2026-03-03T12:00", "--json").json()
    assert out["record"]["restores"] == moves["first"].record.id


def test_branch_delete_refuses_to_drop_unmerged_versions(st: Store, cli, monkeypatch) -> None:
    st.add(M, "v9.0.0")  # on main
    create_branch(st.repo, M, "merged", "v1.5.0")
    delete_branch(st.repo, M, "merged")  # everything on it is on main too
    repo = st.repo
    # A branch with two versions of its own.
    create_branch(repo, M, "exp", "v1.6.0")
    tip = repo.refs.get(branch(M, "main"))
    for seed in (20, 21):
        from deployfix import write_model

        from mvc.ops.commit import commit

        folder = f"{st.root}/work/exp-{seed}"
        write_model(folder, seed)
        commit(repo, folder, message=f"exp {seed}", model=M, branch="exp")
    assert repo.refs.get(branch(M, "main")) == tip
    with pytest.raises(MvcError, match=r"not merged: deleting it leaves 2 version\(s\)"):
        delete_branch(repo, M, "exp")
    monkeypatch.chdir(st.root)
    refused = cli("branch", M, "-d", "exp", expect=1)
    assert "mvc branch bert -D exp" in refused.stderr
    # A channel that served the tip keeps it (and its history) reachable.
    exp_tip = repo.refs.get(branch(M, "exp"))
    ops.set_channel(repo, M, "lab", exp_tip)
    ops.set_channel(repo, M, "lab", "v1.4.0")
    delete_branch(repo, M, "exp")
    assert repo.refs.get(branch(M, "exp")) is None


def test_branch_force_delete(st: Store, cli, monkeypatch) -> None:
    from deployfix import write_model

    from mvc.ops.commit import commit

    create_branch(st.repo, M, "exp", "v1.6.0")
    write_model(f"{st.root}/work/exp", 30)
    commit(st.repo, f"{st.root}/work/exp", message="exp", model=M, branch="exp")
    monkeypatch.chdir(st.root)
    cli("branch", M, "-D", "exp")
    assert st.repo.refs.get(branch(M, "exp")) is None
