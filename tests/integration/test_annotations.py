"""Annotations: metrics and notes attached to a version after commit, through the command line;
shown, searched, pushed and pulled, never changing the version's id."""

from __future__ import annotations

import json

from mvc.refnames import notes
from mvc.repo import Repo


def _commit(cli, make_model, seed: int = 0, *extra: str) -> str:
    make_model("models/bert", seed=seed)
    return cli("commit", "models/bert", "-m", f"seed {seed}", *extra).stdout.strip()


def test_annotate_appends_and_the_newest_metric_wins(store, cli, make_model, tmp_path) -> None:
    v1 = _commit(cli, make_model, 0, "--metric", "accuracy=0.80", "--param", "lr=0.1")
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps({"accuracy": 0.91, "latency_p99_ms": 120}))
    first = cli("annotate", "bert", "--metrics", eval_file, "--note", "eval 1", "--json").json()
    assert first["version"] == v1 and first["annotation"]["previous"] is None
    assert first["annotation"]["who"] == "Test User" and first["annotation"]["note"] == "eval 1"
    second = cli("annotate", f"bert@{v1[:10]}", "--metric", "accuracy=0.93", "--json").json()
    assert second["annotation"]["previous"] == first["annotation"]["id"]
    assert second["metrics"] == {"accuracy": 0.93, "latency_p99_ms": 120}

    shown = cli("show", "bert", "--json").json()
    assert shown["id"] == v1  # the version is never rewritten
    assert shown["metrics"] == {"accuracy": 0.80}
    assert [a["note"] for a in shown["annotations"]] == ["", "eval 1"]  # newest first
    text = cli("show", "bert").stdout
    assert "accuracy=0.91, latency_p99_ms=120; eval 1" in text

    # The log keeps every step (append-only): two entries on the notes ref.
    log = Repo(store.root).refs.entries(notes("bert", v1))
    assert [e.new for e in log] == [first["annotation"]["id"], second["annotation"]["id"]]


def test_find_sees_annotation_metrics(store, cli, make_model) -> None:
    v1 = _commit(cli, make_model, 0, "--metric", "accuracy=0.80")
    v2 = _commit(cli, make_model, 1, "--metric", "accuracy=0.85")
    assert cli("find", "--where", "accuracy>=0.9", "--json").json() == []
    cli("annotate", f"bert@{v1}", "--metric", "accuracy=0.95")
    found = cli("find", "--where", "accuracy>=0.9", "--json").json()
    assert [f["id"] for f in found] == [v1]
    assert found[0]["annotated_metrics"] == {"accuracy": 0.95}
    assert found[0]["metrics"] == {"accuracy": 0.80}
    assert [f["id"] for f in cli("find", "--where", "accuracy<0.9", "--json").json()] == [v2]
    assert "[accuracy=0.95]" in cli("find", "--where", "accuracy>=0.9").stdout


def test_annotate_refuses_nothing_and_bad_numbers(store, cli, make_model) -> None:
    _commit(cli, make_model)
    assert "nothing to annotate" in cli("annotate", "bert", expect=2).stderr
    assert "must be a number" in cli("annotate", "bert", "--metric", "acc=high", expect=2).stderr
    assert "no model" in cli("annotate", "gpt", "--note", "x", expect=1).stderr


def test_annotations_travel_with_push_and_pull(store, cli, make_model, tmp_path) -> None:
    v1 = _commit(cli, make_model)
    cli("tag", "bert", "v1.0.0")
    cli("annotate", "bert@v1.0.0", "--metric", "accuracy=0.91", "--note", "eval")
    cli("remote", "add", "origin", f"file://{tmp_path}/remote")
    pushed = cli("push", "origin", "bert@v1.0.0", "--json").json()
    assert {(r["kind"], r["status"]) for r in pushed["refs"]} == {
        ("tag", "created"),
        ("notes", "created"),
    }
    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{tmp_path}/remote")
    cli("-C", fresh, "pull", "origin", "bert@v1.0.0")
    shown = cli("-C", fresh, "show", "bert@v1.0.0", "--json").json()
    assert shown["id"] == v1
    assert [(a["metrics"], a["note"]) for a in shown["annotations"]] == [
        ({"accuracy": 0.91}, "eval")
    ]
    # Annotated over there, pulled back here: the chain fast-forwards.
    cli("-C", fresh, "annotate", "bert@v1.0.0", "--metric", "accuracy=0.92")
    cli("-C", fresh, "push", "origin", "bert")
    cli("pull", "origin", "bert")
    here = cli("show", "bert@v1.0.0", "--json").json()["annotations"]
    assert [a["metrics"] for a in here] == [{"accuracy": 0.92}, {"accuracy": 0.91}]
    assert cli("fsck", "--json").json()["ok"]
    assert cli("-C", fresh, "fsck", "--json").json()["ok"]


def test_gc_keeps_annotations(store, cli, make_model) -> None:
    _commit(cli, make_model)
    note = cli("annotate", "bert", "--note", "keep me", "--json").json()["annotation"]["id"]
    cli("gc", "--grace", "0s")
    assert Repo(store.root).objects.has(note)


def test_a_metrics_only_commit_points_at_annotate(store, cli, make_model, tmp_path) -> None:
    (tmp_path / "data.txt").write_text("rows")
    v1 = _commit(cli, make_model, 0, "--param", "lr=0.1", "--dataset", f"d={tmp_path}/data.txt")
    refused = cli("commit", "models/bert", "-m", "eval", "--metric", "accuracy=0.9", expect=2)
    assert "metrics and params alone make no new version" in refused.stderr
    assert f"mvc annotate bert@{v1[:12]} --metric" in refused.stderr
    assert len(cli("log", "bert", "--json").json()) == 1
    # --allow-empty makes a new version that keeps what was true of the same weights.
    cli("commit", "models/bert", "-m", "eval", "--metric", "accuracy=0.9", "--allow-empty")
    newest = cli("show", "bert", "--json").json()
    assert newest["id"] != v1 and newest["parents"] == [v1]
    assert newest["params"] == {"lr": 0.1} and newest["metrics"] == {"accuracy": 0.9}
    assert [d["name"] for d in newest["lineage"]["datasets"]] == ["d"]
