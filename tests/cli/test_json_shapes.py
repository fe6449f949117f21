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
from datetime import UTC, datetime, timedelta

import pytest
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
    shapes("channel-set-adapter", "channel", "set", "bert", "adapted", "v1.1.0 + lora@main")
    shapes("route-adapter", "route", "bert", "adapted", "-k", "user-1")
    shapes("export", "export", "bert", "prod", "--format", "dir", "--to", str(tmp / "serve"))

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
    first = cli("log", "bert@v1.0.0", "-n", "1", "--json").json()[0]["id"]
    damaged = root / ".mvc" / "objects" / first[:2] / first[2:]
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"!")  # the v1.0.0 version object itself
    shapes("fsck-damaged", "fsck", expect=12)

    # Every golden file is one of the documents above: none is left behind by a renamed case.
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(shapes.seen)


def test_every_document_is_listed_in_the_docs() -> None:
    """docs/json.md names every golden document, so the published list is the tested one."""
    doc = (GOLDEN.parent.parent.parent / "docs" / "json.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\| `([a-z0-9-]+)` \| `mvc ", doc))
    assert listed == {path.stem for path in GOLDEN.glob("*.json")}
