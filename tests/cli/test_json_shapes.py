"""Every ``--json`` document of the command line, pinned byte for byte (DESIGN §6: a stable shape).

One deterministic store (a fixed clock and identity, seeded tensors, no git) goes through every
command that has ``--json``; each document is compared with its golden file under
``tests/data/json/``. Only what truly varies between runs is normalised: the temporary folder
(``<tmp>``), transfer durations (``0.0``) and the work counters, which are not part of the
stable shape (``"<work>"``, docs/json.md).

A change of shape fails here. If it is intended, document it in docs/ and regenerate:

    MVC_UPDATE_GOLDEN=1 python -m pytest -q tests/cli/test_json_shapes.py
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from deployfix import Clock as ManualClock
from deployfix import write_adapter
from deployfix import write_model as write_bert

from mvc.repo import Repo

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "data" / "json"
UPDATE = bool(os.environ.get("MVC_UPDATE_GOLDEN"))
_DURATION = re.compile(r'("duration_seconds": )[0-9.e-]+')
# Work counters are not part of the stable shape (docs/json.md): only their presence is pinned.
_WORK = re.compile(r'("(?:hashed_files|hashed_bytes|new_chunks|new_bytes)": )\d+')


class Clock:
    """One second later at every call: distinct, reproducible times."""

    def __init__(self) -> None:
        self.now = datetime(2026, 4, 5, 6, 7, 8, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def shapes(tmp_path, mvc_env, monkeypatch, cli):
    """``shapes(name, *args)`` runs ``mvc ARGS --json`` and checks it against ``<name>.json``."""
    monkeypatch.setenv("MVC_USER_NAME", "Golden Writer")
    monkeypatch.setenv("MVC_USER_EMAIL", "golden@example.com")
    monkeypatch.setenv("MVC_CORE_FSYNC", "false")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    # The command line opens its store with the default clock: make that default a fixed one.
    monkeypatch.setitem(Repo.__init__.__kwdefaults__, "clock", Clock())
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)
    seen: list[str] = []

    def run(name: str, *args: object, expect: int = 0) -> dict | list:
        result = cli(*args, "--json", expect=expect)
        text = _DURATION.sub(r"\g<1>0.0", result.stdout.replace(str(tmp_path), "<tmp>"))
        text = _WORK.sub(r'\g<1>"<work>"', text)
        golden = GOLDEN / f"{name}.json"
        assert name not in seen, f"two documents named {name}"
        seen.append(name)
        if UPDATE:
            GOLDEN.mkdir(parents=True, exist_ok=True)
            golden.write_text(text, encoding="utf-8")
        assert golden.exists(), f"no golden {golden}; run with MVC_UPDATE_GOLDEN=1"
        assert text == golden.read_text(encoding="utf-8"), f"mvc {args[0]}: --json {name} changed"
        return result.json()

    run.root = root  # type: ignore[attr-defined]
    run.tmp = tmp_path  # type: ignore[attr-defined]
    run.seen = seen  # type: ignore[attr-defined]
    return run


def test_every_json_document_keeps_its_shape(shapes, cli) -> None:
    root, tmp = shapes.root, shapes.tmp
    shapes("init", "init")
    bert = root / "models" / "bert"
    write_bert(str(bert), seed=1)
    shapes("commit", "commit", "models/bert", "--model", "bert", "-m", "baseline", "--bind")
    shapes("tag-create", "tag", "bert", "v1.0.0", "-m", "first release")
    write_bert(str(bert), seed=2)
    (bert / "notes.txt").write_text("uncommitted\n")
    shapes("status-changed", "status")
    (bert / "notes.txt").unlink()
    shapes(
        "commit-lineage",
        "commit",
        "models/bert",
        "-m",
        "fine-tuned",
        "-p",
        "lr=2e-05",
        "--metric",
        "accuracy=0.913",
        "--dataset",
        "squad=hf://datasets/squad@0123abcd",
        "--from",
        "bert@v1.0.0",
    )
    shapes("tag-bump", "tag", "bert", "--bump", "auto", "--dry-run")
    cli("tag", "bert", "v1.1.0")
    shapes("branch-create", "branch", "bert", "experiment", "v1.0.0")
    shapes("branch-list", "branch", "bert")
    shapes("tag-list", "tag", "bert")
    shapes("status", "status")
    shapes("log", "log", "bert")
    shapes("log-graph", "log", "bert", "--graph")
    shapes("show", "show", "bert@v1.1.0")
    shapes("ls", "ls", "bert@v1.1.0")
    shapes("diff", "diff", "bert@v1.0.0", "bert@v1.1.0")
    shapes("diff-no-stats", "diff", "bert~1", "bert", "--no-stats")
    shapes("lineage", "lineage", "bert")
    shapes("find", "find", "--where", "accuracy>=0.9", "--model", "bert")
    shapes("checkout", "checkout", "bert@v1.0.0", "--to", str(tmp / "out"))

    write_adapter(str(root / "models" / "lora"), seed=10)
    cli("commit", "models/lora", "--model", "lora", "-m", "adapter", "--base", "bert@v1.1.0")
    shapes("check-compat", "check-compat", "bert@v1.1.0", "lora")
    shapes("merge-adapter", "merge-adapter", "bert@v1.1.0", "lora", "--model", "merged")
    shapes("models", "models")

    shapes("channel-set", "channel", "set", "bert", "prod", "v1.0.0", "-m", "first")
    shapes("deploy-canary", "deploy", "bert", "prod", "v1.1.0", "--canary", "10", "-m", "try")
    shapes("channel-show", "channel", "show", "bert", "prod")
    at = ("--at", "2026-04-05T06:00:00Z")
    shapes("metrics-log", "metrics", "log", "bert@prod", "--arm", "canary", "latency_ms=212", *at)
    cli("metrics", "log", "bert@prod", "latency_ms=180", "error=0", "--at", "2026-04-05T06:00:30Z")
    window = ("--since", "2026-04-05T05:00", "--until", "2026-04-05T07:00")
    shapes("metrics-show", "metrics", "show", "bert", "prod", *window)
    shapes("channel-list", "channel", "list")
    shapes("route", "route", "bert", "prod", "-k", "user-1", "-k", "user-2")
    shapes("route-one", "route", "bert", "prod", "-k", "user-3")
    shapes("promote", "promote", "bert", "prod", "-m", "looks good")
    shapes("rollback", "rollback", "bert", "prod", "-m", "undo")
    shapes("deploy-blue-green", "deploy", "bert", "prod", "v1.1.0", "--blue-green")
    shapes("switch", "switch", "bert", "prod")
    shapes("deploy-ab", "deploy", "bert", "prod", "--ab", "v1.0.0=50,v1.1.0=50")
    shapes("channel-history", "channel", "history", "bert", "prod")
    shapes("channel-history-at", "channel", "history", "bert", "prod", "--at", "2026-04-05T06:08")
    shapes("route-at", "route", "bert", "prod", "-k", "user-1", "--at", "2026-04-05T06:08")
    shapes("channel-set-adapter", "channel", "set", "bert", "adapted", "v1.1.0 + lora@main")
    shapes("route-adapter", "route", "bert", "adapted", "-k", "user-1")
    shapes("export", "export", "bert", "prod", "--format", "dir", "--to", str(tmp / "serve"))

    # guard and explain run in a copy of the store on a clock of their own, so the documents
    # after them keep their objects and times
    shared_clock = Repo.__init__.__kwdefaults__["clock"]
    own_clock = ManualClock(datetime(2026, 4, 6, 9, 0, 0, tzinfo=UTC))  # moved by hand only
    Repo.__init__.__kwdefaults__["clock"] = own_clock
    guarded = tmp / "guarded"
    shutil.copytree(root, guarded, symlinks=True)
    os.chdir(guarded)
    (guarded / "mvc.yaml").write_text(GUARD_POLICY, encoding="utf-8")
    cli("channel", "set", "bert", "live", "v1.0.0")
    canary = cli("deploy", "bert", "live", "v1.1.0", "--canary", "10", "--json").json()
    own_clock.tick(0.5)
    shapes("guard-inconclusive", "guard", "bert", "live", expect=21)
    _log_guard_points(guarded, canary["record"])
    shapes("guard-dry-run", "guard", "bert", "live", "--dry-run", expect=20)
    shapes("explain", "explain", "bert", "live")
    shapes("guard-rollback", "guard", "bert", "live", expect=20)
    Repo.__init__.__kwdefaults__["clock"] = shared_clock
    os.chdir(root)

    shapes("config-get", "config", "get", "user.email")
    shapes("config-list", "config", "list")
    remote = tmp / "remote"
    shapes("remote-add", "remote", "add", "origin", f"file://{remote}")
    shapes("remote-list", "remote", "list")
    shapes("push", "push", "origin", "bert", "-j", "1")
    shapes("remote-show", "remote", "show", "origin")
    shapes("fetch", "fetch", "origin", "-j", "1")
    shapes("pull", "pull", "origin", "bert", "-j", "1")
    shapes("clone", "clone", f"file://{remote}", str(tmp / "clone"), "--checkout")

    shapes("repack", "repack")
    shapes("fsck", "fsck")
    shapes("gc-dry-run", "gc", "--grace", "0s", "--dry-run")
    shapes("gc", "gc", "--grace", "0s")
    # Last before the damage below: these commands move the shared clock for what follows.
    at = ("--at", "2026-04-05T06:00:00Z")
    for arm, value in (("a", 230), ("a", 212), ("b", 180), ("b", 190)):
        cli("metrics", "log", "bert@prod", "--arm", arm, f"latency_ms={value}", *at)
    since = ("--since", "2026-04-05T05:00")
    shapes(
        "metrics-compare",
        "metrics",
        "compare",
        "bert@prod:a",
        "bert@prod:b",
        "--min-samples",
        "2",
        *since,
    )
    png = str(tmp / "latency.png")
    shapes(
        "metrics-plot",
        "metrics",
        "plot",
        "bert",
        "prod",
        "--since",
        "2026-04-05T05:59",
        "--step",
        "10m",
        "--output",
        png,
    )
    # Lifecycle documents come last, so the moves above keep their times and ids.
    shapes("annotate", "annotate", "bert@v1.1.0", "--metric", "accuracy=0.93", "--note", "eval")
    shapes("show-annotated", "show", "bert@v1.1.0")
    shapes(
        "deprecate",
        "deprecate",
        "bert@<1.1",
        "--on",
        "2027-01-31",
        "-m",
        "use 1.1",
        "--replacement",
        "bert@v1.1.0",
    )
    shapes("deprecations", "deprecations")

    first = cli("log", "bert@v1.0.0", "-n", "1", "--json").json()[0]["id"]
    damaged = root / ".mvc" / "objects" / first[:2] / first[2:]
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"!")  # the v1.0.0 version object itself
    shapes("fsck-damaged", "fsck", expect=12)

    # lifecycle: an untagged version that is no branch's head, archived by the policy
    for seed in (3, 4):
        write_bert(str(bert), seed=seed)
        cli("commit", "models/bert", "-m", f"seed {seed}")
    (root / "mvc.yaml").write_text("archive:\n  remote: cold\n  rules: [{unused_for: 0s}]\n")
    cli("remote", "add", "cold", f"file://{tmp / 'cold'}")
    shapes("policy-plan", "policy", "plan")
    shapes("policy-apply", "policy", "apply")
    shapes("restore", "restore", "bert~1")
    shapes("archive", "archive", "bert~1", "--remote", "cold")
    shapes("show-archived", "show", "bert~1")
    shapes("policy-log", "policy", "log")

    # Every golden file is one of the documents above: none is left behind by a renamed case.
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(shapes.seen)


GUARD_POLICY = """\
slo:
  bert:
    window: 1h
    min_samples: 5
    rules:
      - error_rate <= 0.01
      - latency_p99_ms: no worse than stable + 10%
"""


def _log_guard_points(root: pathlib.Path, record: dict) -> None:
    """Six points per arm of a canary record, just after it began: the canary errs."""
    from mvc.instants import parse_instant
    from mvc.metrics.model import Point, Source
    from mvc.metrics.sqlite import MetricsDB

    since = parse_instant(record["when"]).timestamp()
    source = Source("web-1", "7", (("python", "3.12.1"), ("torch", "2.13.0")))
    points = []
    for arm in record["arms"]:
        canary = arm["role"] == "canary"
        for i in range(6):
            at = since + 0.1 * (i + 1)
            for name, value in (("error", float(canary)), ("latency_ms", 100.0 + 20 * canary)):
                points.append(
                    Point("bert", arm["version"], name, value, at, "live", arm["label"], source)
                )
    with MetricsDB.open(Repo(str(root))) as db:
        db.append(points)


def test_every_document_is_listed_in_the_docs() -> None:
    """docs/json.md names every golden document, so the published list is the tested one."""
    doc = (GOLDEN.parent.parent.parent / "docs" / "json.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\| `([a-z0-9-]+)` \| `mvc ", doc))
    assert listed == {path.stem for path in GOLDEN.glob("*.json")}
