"""``find``: every condition, the catalog behind it (rebuilt when lost), and the CLI."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mvc.errors import EXIT_USAGE
from mvc.objects import Tree, Version
from mvc.ops.catalog import CACHE_KEY
from mvc.ops.find import Query, find, parse_where
from mvc.refnames import branch, tag


@pytest.fixture
def zoo(store):
    """Three models built through the API, with times, params, metrics, datasets and a base."""
    tree = store.objects.put_meta(Tree({}))

    def put(model, minute, parents=(), params=None, metrics=None, lineage=None):
        return store.objects.put_meta(
            Version(
                model=model,
                tree=tree,
                parents=tuple(parents),
                author="t",
                time=f"2026-02-0{1 + minute // 60}T10:{minute % 60:02d}:00Z",
                message=f"{model} at {minute}",
                params=params or {},
                metrics=metrics or {},
                lineage=lineage or {},
            )
        )

    squad = {"name": "squad", "uri": "data/squad", "hash": "blake3:abcdef0123456789"}
    b1 = put("bert", 0, params={"lr": 0.001}, metrics={"accuracy": 0.80})
    b2 = put("bert", 1, [b1], {"lr": 0.002}, {"accuracy": 0.91}, {"datasets": [squad]})
    b3 = put("bert", 62, [b2], {"lr": 0.002, "opt": "adam"}, {"accuracy": 0.95})
    base = {"model": "bert", "version": b2, "tree": tree, "spec": "bert@v1.1.0"}
    l1 = put("team/lora", 5, params={"r": 8}, metrics={"accuracy": 0.93}, lineage={"base": base})
    g1 = put("gpt", 3, metrics={"loss": 1.5})
    refs = store.refs
    refs.set_if_equals(branch("bert", "main"), None, b3, "t")
    refs.set_if_equals(tag("bert", "v1.0.0"), None, b1, "t")
    refs.set_if_equals(tag("bert", "v1.1.0"), None, b2, "t")
    refs.set_if_equals(tag("bert", "v2.0.0-rc.1"), None, b3, "t")
    refs.set_if_equals(branch("team/lora", "main"), None, l1, "t")
    refs.set_if_equals(branch("gpt", "main"), None, g1, "t")
    return {"b1": b1, "b2": b2, "b3": b3, "l1": l1, "g1": g1}


def ids(store, zoo, **query) -> list[str]:
    names = {v: k for k, v in zoo.items()}
    return [names[f.id] for f in find(store, Query(**query))]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["b3", "l1", "g1", "b2", "b1"]),
        ({"models": ["bert"]}, ["b3", "b2", "b1"]),
        ({"models": ["team/*", "gpt"]}, ["l1", "g1"]),
        ({"tag": "^1"}, ["b2", "b1"]),
        ({"tag": "~1.0"}, ["b1"]),
        ({"tag": "v1.1.0"}, ["b2"]),
        ({"tag": "^2.0.0-rc.0"}, ["b3"]),
        ({"params": {"lr": 0.002}}, ["b3", "b2"]),
        ({"params": {"opt": "adam"}}, ["b3"]),
        ({"where": [parse_where("accuracy>=0.9")]}, ["b3", "l1", "b2"]),
        ({"where": [parse_where("accuracy>0.91"), parse_where("accuracy<0.95")]}, ["l1"]),
        ({"where": [parse_where("lr<0.002")]}, ["b1"]),  # a param, when no metric has the name
        ({"where": [parse_where("loss = 1.5")]}, ["g1"]),
        ({"where": [parse_where("opt!=sgd")]}, ["b3"]),
        ({"datasets": ["squad"]}, ["b2"]),
        ({"datasets": ["abcdef01"]}, ["b2"]),
        ({"datasets": ["data/squad"]}, ["b2"]),
        ({"base": "bert"}, ["l1"]),
        ({"base": "bert@v1.1.0"}, ["l1"]),
        ({"base": "bert@v1.0.0"}, []),
        ({"since": "2026-02-01T10:03"}, ["b3", "l1", "g1"]),
        ({"until": "2026-02-01T10:01:00Z"}, ["b2", "b1"]),
        ({"since": "2026-02-01", "until": "2026-02-01T23:59", "models": ["bert"]}, ["b2", "b1"]),
        ({"limit": 2}, ["b3", "l1"]),
    ],
)
def test_find(store, zoo, query, expected) -> None:
    assert ids(store, zoo, **query) == expected


def test_bad_where() -> None:
    from mvc.errors import UsageError

    for text in ("accuracy", ">=0.9", "a>>b"):
        with pytest.raises(UsageError):
            parse_where(text)


def test_index_is_rebuilt_from_the_objects(store, zoo) -> None:
    everything = ids(store, zoo)
    assert store.storage.exists(CACHE_KEY)
    store.storage.delete(CACHE_KEY)
    assert ids(store, zoo) == everything
    store.storage.write(CACHE_KEY, [b'{"format": 99, "versions": {}}'])
    assert ids(store, zoo) == everything
    store.storage.write(CACHE_KEY, [b"\x00garbage"])
    assert ids(store, zoo) == everything


def test_new_versions_and_moved_refs_are_seen(store, cli, make_model) -> None:
    make_model("models/m", seed=0)
    cli("commit", "models/m", "-m", "one", "--metric", "acc=0.5")
    assert [f.record["message"] for f in find(store, Query())] == ["one"]
    make_model("models/m", seed=1)
    cli("commit", "models/m", "-m", "two", "--metric", "acc=0.7")
    cli("tag", "m", "v1.0.0")
    found = find(store, Query(where=[parse_where("acc>0.6")]))
    assert [f.record["message"] for f in found] == ["two"]
    assert [n.name for n in found[0].names] == ["main", "v1.0.0"]
    cli("tag", "m", "-d", "v1.0.0", "--force")
    assert find(store, Query(tag="v1.0.0")) == []


def test_find_cli(store, zoo, cli) -> None:
    data = cli("find", "--where", "accuracy>=0.9", "--model", "bert", "--json").json()
    assert [d["id"] for d in data] == [zoo["b3"], zoo["b2"]]
    assert set(data[0]) >= {"id", "model", "time", "params", "metrics", "lineage", "names"}
    assert {"model": "bert", "kind": "tag", "name": "v2.0.0-rc.1"} in data[0]["names"]
    lines = cli("find", "--dataset", "squad").stdout.splitlines()
    assert lines == [
        f"bert@{zoo['b2'][:12]}  2026-02-01T10:01:00Z  (v1.1.0)  bert at 1  [accuracy=0.91]"
    ]
    empty = cli("find", "--model", "nothing")
    assert empty.stdout == "" and "no version matches" in empty.stderr
    cli("find", "--where", "accuracy", expect=EXIT_USAGE)
    cli("find", "--since", "yesterday", expect=EXIT_USAGE)


@pytest.mark.slow
def test_find_over_thousands_of_versions(store) -> None:
    tree = store.objects.put_meta(Tree({}))
    for m in range(4):
        parent = None
        for i in range(500):
            parent = store.objects.put_meta(
                Version(
                    model=f"m{m}",
                    tree=tree,
                    parents=(parent,) if parent else (),
                    author="gen",
                    time=f"2026-01-01T{i // 60 % 24:02d}:{i % 60:02d}:00Z",
                    message=str(i),
                    metrics={"acc": i / 500},
                )
            )
        store.refs.set_if_equals(branch(f"m{m}", "main"), None, parent, "gen")
    assert len(find(store, Query())) == 2000  # builds the index
    started = time.perf_counter()
    found = find(store, Query(where=[parse_where("acc>=0.99")]))
    elapsed = time.perf_counter() - started
    assert len(found) == 4 * 5
    assert elapsed < 1.0  # warm: answered from the index
    assert Path(store.store_dir, CACHE_KEY).is_file()
