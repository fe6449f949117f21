"""Last use (mvc.lastuse): checkout, load, pull, export and Router picks note the versions
they use; the serving path never writes per request; concurrent processes lose nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from deployfix import Store

import mvc
from mvc import lastuse
from mvc.exports import export
from mvc.lastuse import flush_all, read_last_use
from mvc.ops import deploy as ops
from mvc.ops import remotes
from mvc.repo import Repo
from mvc.router import Router


@pytest.fixture(autouse=True)
def fresh_trackers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no accumulated uses (trackers are per process)."""
    monkeypatch.setattr(lastuse, "_TRACKERS", {})


def uses(repo: Repo) -> dict[str, tuple[str, int]]:
    return {v: (u.at, u.uses) for v, u in read_last_use(repo.store_dir).items()}


def test_router_picks_are_batched_never_a_write_per_request(st: Store) -> None:
    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    ops.deploy_canary(st.repo, "bert", "prod", "v1.5.0", 30)
    router = Router(st.repo, "bert", "prod")
    stable, canary = st.ids["bert@v1.4.0"], st.ids["bert@v1.5.0"]
    started = time.perf_counter()
    picks = [router.route(f"user-{i}").version for i in range(20_000)]
    per_pick = (time.perf_counter() - started) / len(picks)
    assert uses(st.repo) == {}  # nothing written yet: the batch waits for its flush
    assert flush_all() == 2
    after = uses(st.repo)
    assert after[stable][1] == picks.count(stable) and after[canary][1] == picks.count(canary)
    assert after[stable][0] == st.repo.now()  # the repo's (frozen) clock
    assert per_pick < 200e-6, f"{per_pick * 1e6:.1f} µs per route()"


def test_checkout_load_export_and_pull_note_their_versions(st: Store, tmp_path) -> None:
    v14, v15, v16 = (st.ids[f"bert@v1.{n}.0"] for n in (4, 5, 6))
    mvc.checkout("bert@v1.4.0", repo=st.repo, to=str(tmp_path / "co"))
    mvc.load("bert@v1.5.0", repo=st.repo, cache_dir=str(tmp_path / "cache"))
    ops.set_channel(st.repo, "bert", "prod", "v1.6.0")
    export(st.repo, "bert", "prod", "dir", str(tmp_path / "export"))
    flush_all()
    assert {v14, v15, v16} <= set(uses(st.repo))

    clone_root = tmp_path / "clone"
    clone_root.mkdir()
    clone = Repo.init(str(clone_root))
    remotes.add_remote(clone, "origin", st.root)
    remotes.pull(clone, "origin", "bert@prod")
    flush_all()
    assert v16 in uses(clone)


def test_concurrent_processes_lose_no_use(st: Store) -> None:
    """Two processes flushing the same version 50 times each, at once: every use is counted,
    and the newest instant wins."""
    version = st.ids["bert@v1.4.0"]
    script = textwrap.dedent(
        f"""
        import sys
        from datetime import UTC, datetime
        from mvc import lastuse
        moment = datetime(2030, 1, int(sys.argv[1]), tzinfo=UTC)
        t = lastuse.tracker({st.repo.store_dir!r})
        for _ in range(50):
            t.note("bert", {version!r}, lambda: moment)
            t.flush()
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(day)]) for day in (3, 9)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert uses(st.repo)[version] == ("2030-01-09T00:00:00Z", 100)


def test_a_failed_flush_keeps_its_batch(st: Store, tmp_path) -> None:
    version = st.ids["bert@v1.4.0"]
    blocked = lastuse.UseTracker(str(tmp_path / "no-such-folder"))
    blocked.note("bert", version, st.repo.clock)
    assert blocked.flush() == 0 and blocked.failures == 1
    assert blocked.flush() == 0 and blocked.failures == 2
    blocked.path = lastuse.tracker(st.repo.store_dir).path  # the folder is back
    assert blocked.flush() == 1 and uses(st.repo)[version][1] == 1


def test_an_adapter_served_by_a_channel_is_noted_as_used(st: Store, tmp_path) -> None:
    """A channel arm's adapter is used with its base (as load notes both): routing to it and
    exporting it note the adapter version too."""
    ops.set_channel(st.repo, "bert", "prod", "v1.4.0 + sql-lora@v1.3.0")
    Router(st.repo, "bert", "prod").route("user-1")
    flush_all()
    assert st.ids["sql-lora@v1.3.0"] in uses(st.repo)
    ops.set_channel(st.repo, "bert", "prod", "v1.4.0 + sql-lora@v1.4.0")
    export(st.repo, "bert", "prod", "dir", str(tmp_path / "export"))
    flush_all()
    assert st.ids["sql-lora@v1.4.0"] in uses(st.repo)
