"""The one object-graph walker (``mvc.graph``) on a dict-backed reader: no store, no files."""

from __future__ import annotations

from typing import Any

import pytest

from mvc.errors import CorruptObject, NotFound
from mvc.graph import (
    ANCESTRY,
    DATA,
    FIRST,
    FSCK,
    GC,
    LIVE,
    LOG,
    PROMISES,
    Edges,
    Missing,
    Node,
    Rule,
    Unreadable,
    Walk,
    walk,
)
from mvc.ids import ObjectId


def oid(n: int) -> ObjectId:
    return ObjectId(f"{n:064x}")


class DictReader:
    """Objects as ``Node`` values in a dict; an absent key is an absent object. ``broken`` ids
    are present but unreadable. Every read is recorded."""

    def __init__(self, nodes: dict[ObjectId, Node], broken: set[ObjectId] = frozenset()):
        self.nodes = nodes
        self.broken = broken
        self.reads: list[ObjectId] = []

    def read_node(self, oid: ObjectId) -> Node:
        self.reads.append(oid)
        if oid in self.broken:
            raise CorruptObject(f"object {oid[:12]} does not hash to its id")
        if oid not in self.nodes:
            raise NotFound(f"object {oid[:12]} is missing", hint="run `mvc fsck`")
        return self.nodes[oid]


def version(tree: ObjectId, *parents: ObjectId, **lineage: Any) -> Node:
    return Node({"type": "version", "tree": tree, "parents": list(parents), "lineage": lineage})


def tree(*manifests: ObjectId) -> Node:
    return Node({"type": "tree", "files": {f"f{i}": {"m": m} for i, m in enumerate(manifests)}})


def manifest(*chunks: ObjectId) -> Node:
    return Node({"type": "file", "chunks": [[c, 4] for c in chunks]})


def chunk(base: ObjectId | None = None) -> Node:
    return Node(None, base)


def history() -> dict[ObjectId, Node]:
    """v2 -> v1 -> v0; v2's file has a chunk stored as a delta against v1's chunk."""
    return {
        oid(100): version(oid(10)),
        oid(10): tree(oid(1)),
        oid(1): manifest(oid(50)),
        oid(50): chunk(),
        oid(101): version(oid(11), oid(100)),
        oid(11): tree(oid(2)),
        oid(2): manifest(oid(51)),
        oid(51): chunk(),
        oid(102): version(oid(12), oid(101)),
        oid(12): tree(oid(3)),
        oid(3): manifest(oid(52)),
        oid(52): chunk(base=oid(51)),
    }


def test_a_live_delta_keeps_its_base_reachable_even_without_history() -> None:
    """gc must never delete a base a live delta needs: the base is reached through the delta,
    not only through the older version that also holds it."""
    nodes = history()
    closure_only = Rule(Edges.CLOSURE | Edges.DELTA_BASES, Missing.REPORT, Unreadable.RAISE)
    reached = walk(DictReader(nodes), [oid(102)], closure_only).reached
    assert oid(51) in reached
    assert oid(101) not in reached and oid(2) not in reached  # history was not followed
    assert oid(51) in walk(DictReader(nodes), [oid(102)], GC).reached


def test_data_reaches_a_versions_chunks_and_their_bases_but_not_its_history() -> None:
    """What archiving keeps for live versions: v2's data includes v1's chunk (v2's delta base)
    but not v1 itself, its tree or v0's chunk."""
    reached = walk(DictReader(history()), [oid(102)], DATA).reached
    assert {oid(102), oid(12), oid(3), oid(52), oid(51)} == reached


def test_without_delta_bases_the_base_is_not_reached() -> None:
    rule = Rule(Edges.CLOSURE, Missing.REPORT, Unreadable.RAISE)
    assert oid(51) not in walk(DictReader(history()), [oid(102)], rule).reached


def test_gc_and_fsck_reach_closure_and_history() -> None:
    for rule in (GC, FSCK):
        assert walk(DictReader(history()), [oid(102)], rule).reached == set(history())


def test_a_missing_object_is_reported_with_the_path_that_reached_it() -> None:
    nodes = history()
    del nodes[oid(50)]
    done = walk(DictReader(nodes), [oid(102)], FSCK)
    assert [m.object for m in done.missing] == [oid(50)]
    assert done.missing[0].path == (
        "a ref",
        f"version {oid(102)[:12]}",
        f"version {oid(101)[:12]}",
        f"version {oid(100)[:12]}",
        f"tree {oid(10)[:12]}",
        f"file {oid(1)[:12]}",
    )
    assert done.missing[0].needed_by == f"file {oid(1)[:12]}"
    assert oid(50) not in done.reached


def test_a_missing_delta_base_is_reported_as_needed_by_the_delta() -> None:
    nodes = history()
    del nodes[oid(51)]
    done = walk(DictReader(nodes), [oid(102)], GC)
    assert done.missing[0].object == oid(51)
    assert done.missing[0].needed_by.startswith("delta ")  # the first path that reached it


def test_a_missing_object_raises_naming_its_path_under_raise() -> None:
    nodes = history()
    del nodes[oid(11)]
    rule = Rule(Edges.CLOSURE | Edges.HISTORY, Missing.RAISE, Unreadable.RAISE)
    with pytest.raises(NotFound) as caught:
        walk(DictReader(nodes), [oid(102)], rule)
    assert oid(11)[:12] in caught.value.message
    assert f"needed by a ref → version {oid(102)[:12]} → version {oid(101)[:12]}" in (
        caught.value.message
    )
    assert caught.value.hint == "run `mvc fsck`"


def test_promised_objects_are_reached_but_not_followed() -> None:
    nodes = history()
    del nodes[oid(101)]  # history beyond a partial fetch
    done = walk(DictReader(nodes), [oid(102)], ANCESTRY)
    assert done.reached == {oid(102), oid(101)} and not done.missing


def test_promises_name_chunks_without_reading_them() -> None:
    nodes = history()
    del nodes[oid(52)]
    reader = DictReader(nodes)
    reached = walk(reader, [oid(102)], PROMISES).reached
    assert {oid(50), oid(51), oid(52)} <= reached
    assert not {oid(50), oid(51), oid(52)} & set(reader.reads)


def test_an_unreadable_object_raises_under_raise_and_is_skipped_under_skip() -> None:
    nodes = history()
    with pytest.raises(CorruptObject, match="cannot be read: .*does not hash") as caught:
        walk(DictReader(nodes, broken={oid(11)}), [oid(102)], GC)
    assert caught.value.object_id == oid(11)
    done = walk(DictReader(nodes, broken={oid(11)}), [oid(102)], FSCK)
    assert oid(11) in done.reached and oid(2) not in done.reached  # not followed
    assert oid(50) in done.reached  # the rest of history still walked


def test_metadata_whose_edges_do_not_parse_is_unreadable() -> None:
    hostile = {oid(1): Node({"type": "tree", "files": {"a": {"m": 17}}})}
    with pytest.raises(CorruptObject, match="edges do not parse"):
        walk(DictReader(hostile), [oid(1)], GC)
    assert walk(DictReader(hostile), [oid(1)], FSCK).reached == {oid(1)}


@pytest.mark.parametrize("rule", [GC, FSCK, PROMISES, ANCESTRY, FIRST], ids=str)
def test_cycles_in_hostile_data_terminate(rule: Rule) -> None:
    hostile = {
        oid(1): version(oid(2), oid(3)),
        oid(2): tree(oid(4)),
        oid(3): version(oid(2), oid(1)),  # a parent cycle
        oid(4): manifest(oid(5), oid(4)),  # a manifest naming itself as a chunk
        oid(5): chunk(base=oid(6)),
        oid(6): chunk(base=oid(5)),  # a delta cycle
    }
    reader = DictReader(hostile)
    done = walk(reader, [oid(1)], rule)
    assert oid(1) in done.reached
    assert len(reader.reads) == len(set(reader.reads))  # each object read once


def test_first_parent_follows_only_first_parents_in_order() -> None:
    nodes = history()
    nodes[oid(103)] = version(oid(12), oid(102), oid(100))  # a merge
    order = list(Walk(DictReader(nodes), FIRST).run([oid(103)]))
    assert order == [oid(103), oid(102), oid(101), oid(100)]


def test_first_parent_stops_reading_when_the_caller_stops() -> None:
    reader = DictReader(history())
    chain = Walk(reader, FIRST).run([oid(102)])
    assert next(chain) == oid(102)
    assert reader.reads == [oid(102)]


def test_ancestry_stops_at_the_ancestor() -> None:
    reader = DictReader(history())
    assert oid(101) in Walk(reader, ANCESTRY).run([oid(102)])
    assert oid(100) not in reader.reads


def test_deployment_records_reach_the_versions_they_name_and_earlier_records() -> None:
    nodes = history()
    nodes[oid(200)] = Node({"type": "deployment", "refs": [oid(100)], "previous": None})
    nodes[oid(201)] = Node({"type": "deployment", "refs": [oid(102)], "previous": oid(200)})
    reached = walk(DictReader(nodes), [oid(201)], GC).reached
    assert {oid(200), oid(100), oid(102)} <= reached
    closure = Rule(Edges.CLOSURE, Missing.REPORT, Unreadable.RAISE)
    assert oid(200) not in walk(DictReader(nodes), [oid(201)], closure).reached


def test_live_reaches_versions_records_serve_and_history_but_no_tree() -> None:
    """Archiving's walk: every version a ref, its history or a channel's records reach."""
    nodes = history()
    nodes[oid(103)] = version(oid(12))  # a version only a record serves
    nodes[oid(200)] = Node({"type": "deployment", "refs": [oid(103)], "previous": None})
    nodes[oid(201)] = Node({"type": "deployment", "refs": [oid(101)], "previous": oid(200)})
    reader = DictReader(nodes)
    reached = walk(reader, [oid(201)], LIVE).reached
    assert reached == {oid(201), oid(200), oid(103), oid(101), oid(100)}
    assert set(reader.reads) == reached  # no tree, manifest or chunk was read


def test_lineage_edges_reach_an_adapters_base_only_when_asked() -> None:
    nodes = history()
    nodes[oid(300)] = version(oid(12), base={"model": "base", "version": oid(100)})
    lineage = Rule(Edges.LINEAGE, Missing.REPORT, Unreadable.RAISE)
    assert walk(DictReader(nodes), [oid(300)], lineage).reached == {oid(300), oid(100)}
    assert oid(100) not in walk(DictReader(nodes), [oid(300)], FSCK).reached


def test_known_objects_end_the_walk() -> None:
    reader = DictReader(history())
    done = walk(reader, [oid(102)], GC, known={oid(101)})
    assert oid(101) in done.reached and oid(100) not in done.reached
    assert oid(101) not in reader.reads


def test_log_ends_quietly_where_history_is_absent_and_first_raises() -> None:
    nodes = history()
    del nodes[oid(100)]  # beyond a partial pull
    assert list(Walk(DictReader(nodes), LOG).run([oid(102)])) == [oid(102), oid(101)]
    with pytest.raises(NotFound, match="needed by"):
        list(Walk(DictReader(nodes), FIRST).run([oid(102)]))


def test_a_long_path_is_shortened_in_messages_but_kept_whole() -> None:
    nodes = {oid(i): version(oid(1000), oid(i + 1)) for i in range(1, 50)}
    with pytest.raises(NotFound) as caught:
        walk(DictReader(nodes), [oid(1)], FIRST)
    assert "… 46 more →" in caught.value.message and len(caught.value.message) < 300
    done = walk(DictReader(nodes), [oid(1)], LOG)
    assert len(done.missing[0].path) == 50
