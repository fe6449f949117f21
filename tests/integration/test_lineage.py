"""Lineage: what commit records (--dataset, --base, --from), the ancestry/descendant walk in
three renderings, ``log --graph``, and queries over a generated history of thousands of versions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import blake3
import pytest

from mvc.errors import EXIT_ERROR, EXIT_USAGE, UsageError
from mvc.objects import Tree, Version
from mvc.ops.catalog import CACHE_KEY, load_catalog
from mvc.ops.lineage import layout_graph, lineage, parse_dataset, topo_order
from mvc.refnames import branch, tag


def test_parse_dataset() -> None:
    assert parse_dataset("squad=data/squad") == ("squad", "data/squad", None)
    assert parse_dataset("wiki=s3://corp/wiki@sha256:ab12cd34ef") == (
        "wiki",
        "s3://corp/wiki",
        "sha256:ab12cd34ef",
    )
    assert parse_dataset("hub=hf://datasets/squad@main") == (
        "hub",
        "hf://datasets/squad@main",
        None,
    )
    for bad in ("squad", "=x", "squad=", "a b=x"):
        with pytest.raises(UsageError):
            parse_dataset(bad)


def test_commit_records_datasets_base_and_sources(store, cli, make_model) -> None:
    make_model("models/teacher", seed=0)
    teacher = cli("commit", "models/teacher", "-m", "teacher").stdout.strip()
    Path("data/train").mkdir(parents=True)
    Path("data/train/a.txt").write_text("alpha\n")
    Path("data/train/b.txt").write_text("beta\n")
    Path("data/eval.jsonl").write_text('{"q": 1}\n')
    make_model("models/student", seed=1)
    student = cli(
        "commit",
        "models/student",
        "-m",
        "distilled",
        "--dataset",
        "train=data/train",
        "--dataset",
        "eval=data/eval.jsonl",
        "--dataset",
        "web=s3://corp/web@blake3:0123456789abcdef",
        "--from",
        "teacher",
    ).stdout.strip()
    lineage_map = cli("show", "student", "--json").json()["lineage"]
    datasets = {d["name"]: d for d in lineage_map["datasets"]}
    eval_hash = blake3.blake3(Path("data/eval.jsonl").read_bytes()).hexdigest()
    assert datasets["eval"] == {
        "name": "eval",
        "uri": "data/eval.jsonl",
        "hash": f"blake3:{eval_hash}",
        "hashed": True,
        "files": 1,
        "size": 9,
    }
    listing = "".join(
        f"{name}\0{blake3.blake3(Path('data/train', name).read_bytes()).hexdigest()}\n"
        for name in ("a.txt", "b.txt")
    )
    assert datasets["train"]["hash"] == "blake3:" + blake3.blake3(listing.encode()).hexdigest()
    assert datasets["web"] == {
        "name": "web",
        "uri": "s3://corp/web",
        "hash": "blake3:0123456789abcdef",
        "hashed": False,
    }
    assert lineage_map["derived_from"][0]["version"] == teacher
    graph = cli("lineage", "teacher", "--json").json()
    assert {"from": student, "to": teacher, "relation": "derived_from"} in graph["descendants"]


def test_dataset_errors(store, cli, make_model) -> None:
    make_model("models/m", seed=0)
    # a missing file is an error (1) everywhere, not a usage error (docs/exit-codes.md, issue 12)
    result = cli("commit", "models/m", "-m", "m", "--dataset", "x=missing/path", expect=EXIT_ERROR)
    assert "does not exist" in result.stderr
    Path("d.txt").write_text("data")
    result = cli(
        "commit", "models/m", "-m", "m", "--dataset", "x=d.txt@blake3:00000000ff", expect=EXIT_ERROR
    )
    assert "hashes to" in result.stderr
    digest = blake3.blake3(b"data").hexdigest()
    cli(
        "commit", "models/m", "-m", "m", "--dataset", f"x=d.txt@{digest[:16]}"
    )  # a matching prefix is fine


@pytest.fixture
def family(store, cli, make_model):
    """base v1 -> v2 (main), v1 -> exp; an adapter-like model on v2; a fine-tune derived from v2."""
    make_model("models/base", seed=0)
    ids = {"v1": cli("commit", "models/base", "-m", "base one").stdout.strip()}
    make_model("models/base", seed=1)
    ids["v2"] = cli("commit", "models/base", "-m", "base two").stdout.strip()
    cli("tag", "base", "v1.0.0")
    cli("branch", "base", "exp", "main~1")
    make_model("other", seed=2)
    ids["exp"] = cli(
        "commit", "other", "--model", "base", "--branch", "exp", "-m", "experiment"
    ).stdout.strip()
    Path("data.txt").write_text("d")
    make_model("models/tuned", seed=3)
    ids["tuned"] = cli(
        "commit", "models/tuned", "--base", "base@v1.0.0", "--dataset", "d=data.txt", "-m", "tuned"
    ).stdout.strip()
    make_model("models/q", seed=4)
    ids["quant"] = cli("commit", "models/q", "--from", "tuned", "-m", "quantised").stdout.strip()
    return ids


def test_lineage_walks_both_ways(family, store) -> None:
    graph = lineage(store, "tuned")
    ups = {(e.child, e.parent, e.relation) for e in graph.ancestry}
    assert (family["tuned"], family["v2"], "base") in ups
    assert (family["v2"], family["v1"], "parent") in ups
    assert any(
        e.relation == "dataset" and e.parent.startswith("dataset:d@blake3:") for e in graph.ancestry
    )
    downs = {(e.child, e.parent, e.relation) for e in graph.descendants}
    assert downs == {(family["quant"], family["tuned"], "derived_from")}
    base_graph = lineage(store, "base@v1.0.0~1")
    assert {(e.child, e.relation) for e in base_graph.down(family["v1"])} == {
        (family["v2"], "parent"),
        (family["exp"], "parent"),
    }
    shallow = lineage(store, "q", depth=1)
    assert shallow.truncated and family["v2"] not in shallow.nodes


def test_lineage_cli_renderings(family, cli) -> None:
    tree = cli("lineage", "tuned").stdout
    assert tree.splitlines()[0].startswith(f"tuned@{family['tuned'][:12]}")
    assert "came from" in tree and "made from it" in tree
    assert f"base base@{family['v2'][:12]} (main, v1.0.0)" in tree
    assert "dataset d data.txt (blake3:" in tree
    dot = cli("lineage", "tuned", "--format", "dot").stdout
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    assert f'"{family["tuned"]}" -> "{family["v2"]}" [label="base", style=dashed];' in dot
    data = cli("lineage", "tuned", "--format", "json").json()
    assert data == cli("lineage", "tuned", "--json").json()
    assert data["root"] == family["tuned"] and data["nodes"][family["v2"]]["model"] == "base"
    cli("lineage", "tuned", "--format", "svg", expect=EXIT_USAGE)


def test_log_graph(family, cli) -> None:
    lines = cli("log", "base", "--graph").stdout.splitlines()
    # both tips first (their order depends on commit times), then the lines join at v1
    assert lines[0].startswith("* ") and lines[1].startswith("| * ")
    tips = {family["exp"][:12]: "(exp)", family["v2"][:12]: "(main, v1.0.0)"}
    for line in lines[:2]:
        short_id = line.replace("|", " ").replace("*", " ").split()[0]
        assert tips.pop(short_id) in line
    assert lines[2] == "|/"
    assert lines[3].startswith("*") and family["v1"][:12] in lines[3]
    assert len(lines) == 4
    data = cli("log", "base", "--graph", "--json").json()
    assert {d["id"] for d in data[:2]} == {family["exp"], family["v2"]}
    assert [d["graph"] for d in data] == ["*", "| *", "*"]
    assert data[2]["id"] == family["v1"]


def test_layout_graph_with_a_merge() -> None:
    # m merges b into a; a and b both come from root
    parents = {"m": ["a", "b"], "a": ["root"], "b": ["root"], "root": []}
    times = {"m": "4", "a": "3", "b": "2", "root": "1"}
    order = topo_order(times, parents)
    assert order == ["m", "a", "b", "root"]
    rows = [(r.graph, r.version) for r in layout_graph(order, parents)]
    assert rows == [
        ("*", "m"),
        ("|\\", None),
        ("* |", "a"),
        ("| *", "b"),
        ("|/", None),
        ("*", "root"),
    ]


# --- generated history --------------------------------------------------------------------------


def generate(repo, models: int, per_model: int, *, tag_every: int = 10) -> list[str]:
    """Linear histories built directly through the object and ref API (fast)."""
    tree = repo.objects.put_meta(Tree({}))
    tips = []
    for m in range(models):
        parent = None
        for i in range(per_model):
            version = Version(
                model=f"m{m}",
                tree=tree,
                parents=(parent,) if parent else (),
                author="gen",
                time=f"2026-01-{1 + i // 1440:02d}T{(i // 60) % 24:02d}:{i % 60:02d}:00Z",
                message=f"v{i}",
                params={"i": i},
                metrics={"acc": i / per_model},
                lineage={"base": {"model": "m0", "version": tips[0], "tree": tree, "spec": "m0"}}
                if m and i == 0
                else {},
            )
            parent = repo.objects.put_meta(version)
            if i % tag_every == 0:
                repo.refs.set_if_equals(tag(f"m{m}", f"v0.{i}.0"), None, parent, "gen")
        repo.refs.set_if_equals(branch(f"m{m}", "main"), None, parent, "gen")
        tips.append(parent)
    return tips


@pytest.mark.slow
def test_lineage_over_thousands_of_versions(store) -> None:
    tips = generate(store, models=3, per_model=1000)
    started = time.perf_counter()
    catalog = load_catalog(store)
    cold = time.perf_counter() - started
    assert len(catalog.reachable) == 3000
    assert store.storage.exists(CACHE_KEY)
    started = time.perf_counter()
    catalog = load_catalog(store)
    whole = lineage(store, "m1", depth=0, catalog=catalog)
    warm = time.perf_counter() - started
    assert sum(1 for e in whole.ancestry if e.relation == "parent") == 999 + 999
    assert any(e.relation == "base" and e.parent == tips[0] for e in whole.ancestry)
    first = lineage(store, "m0@v0.0.0", depth=0, catalog=catalog)
    # m0's chain, then (through the base edges on m0's tip) the chains of m1 and m2
    assert len([e for e in first.descendants if e.relation == "parent"]) == 3 * 999
    assert len([e for e in first.descendants if e.relation == "base"]) == 2
    tip_down = lineage(store, "m0", depth=0, catalog=catalog)
    assert len([e for e in tip_down.descendants if e.relation == "base"]) == 2
    assert warm < cold + 5 and warm < 5  # generous: the 10,000-version timing is a benchmark


def test_catalog_is_rebuilt_when_lost_or_damaged(store, cli, make_model) -> None:
    make_model("models/m", seed=0)
    cli("commit", "models/m", "-m", "one")
    first = load_catalog(store)
    assert len(first.reachable) == 1
    store.storage.write(CACHE_KEY, [b"{not json"])
    assert load_catalog(store).reachable == first.reachable
    store.storage.delete(CACHE_KEY)
    make_model("models/m", seed=1)
    cli("commit", "models/m", "-m", "two")
    assert len(load_catalog(store).reachable) == 2
    assert len(json.loads(store.storage.read(CACHE_KEY))["versions"]) == 2
