"""``mvc policy plan|apply|log`` over a real store: the plan says which rule and which facts,
apply archives and logs each action once, an interrupted apply (SIGKILL at a write point) is
finished by the next run and never repeated. The clock is frozen in-process; the subprocess
runs (for the crash) use versions committed in 2020, far older than any rule's threshold."""

from __future__ import annotations

import os
import pathlib
import signal
from datetime import UTC, datetime
from typing import Any

import pytest

from mvc.archives import list_archives
from mvc.errors import EXIT_ARCHIVED
from mvc.lastuse import flush_all
from mvc.repo import Repo

POLICY = """\
archive:
  remote: cold
  rules:
    - unused_for: 90d
"""


@pytest.fixture
def clock(clock: Any) -> Any:
    """The shared frozen clock, started in 2020 here."""
    clock.now = datetime(2020, 1, 1, 12, 0, 0, tzinfo=UTC)
    return clock


@pytest.fixture
def models(store, cli, make_model, clock, tmp_path):
    """bert: four versions on main a day apart (each its own weights); a cold folder remote;
    the policy file. Returns the ids, oldest first."""
    ids = []
    for seed in range(4):
        make_model("models/bert", seed=seed)
        cli("commit", "models/bert", "-m", f"v{seed}")
        ids.append(cli("show", "bert", "--json").json()["id"])
        clock.advance(1)
    cli("remote", "add", "cold", str(tmp_path / "cold"))
    pathlib.Path(store.root, "mvc.yaml").write_text(POLICY)
    return ids


def test_plan_names_rule_and_facts_and_apply_does_it_once(store, cli, models, clock, tmp_path):
    v0, v1, v2, v3 = models
    clock.advance(10)
    cli("tag", "bert", "v1.0.0", v1)  # a release: never archived
    cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "used"))  # a use, 10 days in
    flush_all()
    clock.advance(85)  # v0 idle 98 days, v2 used 85 days ago, v3 is main's head

    plan = cli("policy", "plan", "--json").json()
    assert [(a["action"], a["version"]) for a in plan["actions"]] == [("archive", v0)]
    action = plan["actions"][0]
    assert action["rule"] == "archive.rules[0] (unused_for: 90d)" and action["remote"] == "cold"
    assert "never used" in action["why"] and action["facts"]["created"] == "2020-01-01T12:00:00Z"
    kept = {a["version"]: a["why"] for a in plan["kept"]}
    assert set(kept) == {v1, v3}
    assert "release tag v1.0.0" in kept[v1] and "head of branch main" in kept[v3]
    text = cli("policy", "plan").stdout
    assert f"archive bert@{v0[:12]} -> cold [archive.rules[0] (unused_for: 90d)]" in text

    applied = cli("policy", "apply", "--json").json()
    assert [(a["action"], a["version"], a["status"]) for a in applied["actions"]] == [
        ("archive", v0, "done")
    ]
    cli("checkout", f"bert@{v0}", "--to", str(tmp_path / "x"), expect=EXIT_ARCHIVED)
    again = cli("policy", "apply", "--json").json()
    assert again["actions"] == []
    log = cli("policy", "log", "--json").json()
    assert [(e["seq"], e["action"], e["version"], e["rule"]) for e in log] == [
        (1, "archive", v0, "archive.rules[0] (unused_for: 90d)")
    ]
    assert log[0]["when"] == "2020-04-09T12:00:00Z" and "never used" in log[0]["why"]

    clock.advance(6)  # v2 last used 91 days ago: its turn
    assert [a["version"] for a in cli("policy", "plan", "--json").json()["actions"]] == [v2]


def test_without_a_policy_file_plan_and_apply_do_nothing(store, cli, models) -> None:
    os.unlink(os.path.join(store.root, "mvc.yaml"))
    plan = cli("policy", "plan", "--json").json()
    assert plan["source"] is None and plan["actions"] == [] and plan["kept"] == []
    assert cli("policy", "apply", "--json").json()["actions"] == []


def test_a_bad_policy_file_is_a_usage_error_with_its_line(store, cli, models) -> None:
    pathlib.Path(store.root, "mvc.yaml").write_text("archive:\n  remote: cold\n  rulez: []\n")
    refused = cli("policy", "plan", expect=2)
    assert "mvc.yaml:3: archive.rulez: unknown key" in refused.stderr


@pytest.mark.parametrize(
    "point",
    [
        "archive.copied",
        "archive.recorded",
        "archive.delete:2",
        "archive.delete:7",
        "archive.copied:3",
    ],
)
def test_an_interrupted_apply_is_finished_by_the_next_run_and_never_repeated(
    store, cli, models, run_mvc, point, tmp_path
) -> None:
    """Killed at a write point of the first archive; every version stays readable (checked
    out, or restorable); the re-run finishes and logs each action exactly once."""
    v0, v1, v2, v3 = models
    # the subprocess sees the real clock: versions from 2020 are idle, all but main's head
    killed = run_mvc("policy", "apply", env={"MVC_CRASH_AT": point}, cwd=store.root)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    repo = Repo(store.root)
    archived = {r.version for r in list_archives(repo.storage)}
    for version in (v0, v1, v2, v3):
        folder = tmp_path / f"check-{version[:8]}"
        if version in archived:
            cli("checkout", f"bert@{version}", "--to", str(folder), expect=EXIT_ARCHIVED)
        else:
            cli("checkout", f"bert@{version}", "--to", str(folder))
    assert cli("fsck", "--json").json()["ok"]

    logged = {e["version"] for e in cli("policy", "log", "--json").json()}
    plan = cli("policy", "plan", "--json").json()
    resumed = {a["version"] for a in plan["actions"] if a["action"] == "resume"}
    assert resumed == archived - logged
    assert bool(resumed) == (not point.startswith("archive.copied"))
    done = run_mvc("policy", "apply", "--json", cwd=store.root)
    assert done.returncode == 0, done.stderr
    assert cli("policy", "apply", "--json").json()["actions"] == []
    log = cli("policy", "log", "--json").json()
    assert sorted(e["version"] for e in log) == sorted([v0, v1, v2])
    assert all(e["action"] == "archive" for e in log)
    for version in (v0, v1, v2):
        cli("restore", f"bert@{version}")
        cli("checkout", f"bert@{version}", "--to", str(tmp_path / f"back-{version[:8]}"))
    assert cli("fsck", "--json").json()["ok"]


def test_an_interrupted_restore_is_finished_by_the_next_and_logged_once(
    store, cli, models, run_mvc, tmp_path
) -> None:
    v0 = models[0]
    cli("archive", f"bert@{v0}", "--remote", "cold")
    killed = run_mvc(
        "restore", f"bert@{v0}", env={"MVC_CRASH_AT": "restore.copied"}, cwd=store.root
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [r.version for r in list_archives(Repo(store.root).storage)] == [v0]
    again = cli("restore", f"bert@{v0}", "--json").json()
    assert again["was_archived"] and again["chunks_restored"] == 0  # all were back already
    cli("checkout", f"bert@{v0}", "--to", str(tmp_path / "back"))
    log = cli("policy", "log", "--json").json()
    assert [e["action"] for e in log] == ["archive", "restore"]


def test_two_applies_at_once_archive_and_log_each_version_once(store, cli, models) -> None:
    """Two cron jobs overlapping: the second waits for the first's policy lock, then finds
    nothing left to do."""
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mvc", "policy", "apply", "--json"],
            cwd=store.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    log = cli("policy", "log", "--json").json()
    assert sorted(e["version"] for e in log) == sorted(models[:3])
