"""Metadata objects and envelopes: golden bytes and ids, round trips, and hostile bytes.

The golden values below are the storage format. If one of these tests fails, ids of existing
stores would change: fix the code, never the constants (unless the store format version moves).
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mvc import codec
from mvc.canonical import encode_canonical
from mvc.errors import CorruptObject, InvalidInput, MvcError, NotFound, UnknownFormat
from mvc.ids import hash_bytes
from mvc.objects import (
    ChunkRef,
    FileManifest,
    Tree,
    TreeEntry,
    Version,
    child_ids,
    decode_file_manifest,
    decode_meta,
    decode_tree,
    decode_version,
    encode_object,
    history_ids,
)
from mvc.paths import check_twins, path_problem
from mvc.refnames import branch
from mvc.refs import RefEntry, decode_entry
from mvc.storage.local import LocalStorage
from mvc.store import ObjectStore, object_key

# --- golden objects -----------------------------------------------------------------------------

HELLO_B3 = (
    "d74981efa70a0c880b8d8c1985d075dbcbf679b99a5f9914e5aaf96b831a9e24"  # b3sum of "hello world"
)

MANIFEST = FileManifest(11, HELLO_B3, "blob", (ChunkRef(HELLO_B3, 11),))  # type: ignore[arg-type]
MANIFEST_BYTES = (
    b'{"b3":"d74981efa70a0c880b8d8c1985d075dbcbf679b99a5f9914e5aaf96b831a9e24",'
    b'"chunks":[["d74981efa70a0c880b8d8c1985d075dbcbf679b99a5f9914e5aaf96b831a9e24",11]],'
    b'"format":1,"kind":"blob","size":11,"type":"file"}'
)
MANIFEST_ID = "fe9ef4b977bc21b72d9b2c521f9e119637bb243a59b94cf9bcf2476ced608f8b"

TREE = Tree(
    {
        "weights/\u00e9.bin": TreeEntry(MANIFEST_ID, 11, HELLO_B3, "pickle", True),  # type: ignore[arg-type]
        "config.json": TreeEntry(MANIFEST_ID, 11, HELLO_B3, "blob", False),  # type: ignore[arg-type]
    }
)
TREE_BYTES = (
    b'{"files":{"config.json":{"b3":"d74981efa70a0c880b8d8c1985d075dbcbf679b99a5f9914e5aaf96b831a9e24",'
    b'"kind":"blob","m":"fe9ef4b977bc21b72d9b2c521f9e119637bb243a59b94cf9bcf2476ced608f8b",'
    b'"size":11,"x":false},'
    b'"weights/\xc3\xa9.bin":{"b3":"d74981efa70a0c880b8d8c1985d075dbcbf679b99a5f9914e5aaf96b831a9e24",'
    b'"kind":"pickle","m":"fe9ef4b977bc21b72d9b2c521f9e119637bb243a59b94cf9bcf2476ced608f8b",'
    b'"size":11,"x":true}},"format":1,"type":"tree"}'
)
TREE_ID = "8c33863aec6132b3d10af12f8d4cfe8d95fe3d88d215c80d4468da6c1b5961a1"

VERSION = Version(
    model="bert",
    tree=TREE_ID,  # type: ignore[arg-type]
    parents=(),
    author="Ada <ada@example.com>",
    time="2026-01-02T03:04:05Z",
    message="baseline \u2713",
    params={"lr": 2e-05, "epochs": 3, "opt": "adam"},
    metrics={"accuracy": 0.913},
    git=None,
    lineage={"datasets": ["wiki"]},
)
VERSION_BYTES = (
    '{"author":"Ada <ada@example.com>","format":1,"git":null,"lineage":{"datasets":["wiki"]},'
    '"message":"baseline \u2713","metrics":{"accuracy":0.913},"model":"bert",'
    '"params":{"epochs":3,"lr":2e-05,"opt":"adam"},"parents":[],"time":"2026-01-02T03:04:05Z",'
    '"tree":"8c33863aec6132b3d10af12f8d4cfe8d95fe3d88d215c80d4468da6c1b5961a1","type":"version"}'
).encode("utf-8")
VERSION_ID = "8bde298679bac10b9651a08298b031d10bbf04d22d7608c99185d632df37b97f"

CHILD = Version(
    model="bert",
    tree=TREE_ID,  # type: ignore[arg-type]
    parents=(VERSION_ID,),  # type: ignore[arg-type]
    author="Ada <ada@example.com>",
    time="2026-01-03T00:00:00Z",
    message="second",
    git={"commit": "a" * 40, "dirty": True},
)
CHILD_ID = "beb9990bac27ce7f2d77ad50f75fb19fd624533b7a096257069d22bdf1e48c74"


def test_blake3_of_hello_world_is_b3sum() -> None:
    assert hash_bytes(b"hello world") == HELLO_B3


@pytest.mark.parametrize(
    ("obj", "expected", "oid"),
    [
        (MANIFEST, MANIFEST_BYTES, MANIFEST_ID),
        (TREE, TREE_BYTES, TREE_ID),
        (VERSION, VERSION_BYTES, VERSION_ID),
    ],
    ids=["file", "tree", "version"],
)
def test_canonical_bytes_and_ids_are_pinned(obj, expected: bytes, oid: str) -> None:
    assert encode_object(obj) == expected
    assert hash_bytes(expected) == oid


def test_child_version_id_is_pinned() -> None:
    assert hash_bytes(encode_object(CHILD)) == CHILD_ID


def test_canonical_json_rules() -> None:
    # sorted keys at every level, no spaces, UTF-8 (not \u escapes), integers stay integers
    assert encode_canonical({"b": 1, "a": {"d": [1.5, None, True], "c": "\u00e9"}}) == (
        b'{"a":{"c":"\xc3\xa9","d":[1.5,null,true]},"b":1}'
    )
    for bad in (float("nan"), float("inf"), {1: 2}, b"bytes", {"x": {1, 2}}):
        with pytest.raises(MvcError):
            encode_canonical(bad)


@pytest.mark.parametrize(
    ("obj", "data", "oid", "decoder"),
    [
        (MANIFEST, MANIFEST_BYTES, MANIFEST_ID, decode_file_manifest),
        (TREE, TREE_BYTES, TREE_ID, decode_tree),
        (VERSION, VERSION_BYTES, VERSION_ID, decode_version),
    ],
    ids=["file", "tree", "version"],
)
def test_decode_round_trips(obj, data: bytes, oid: str, decoder) -> None:
    value = decode_meta(data, oid)
    assert decoder(value, oid) == obj
    assert encode_object(decoder(value, oid)) == data


def test_closure_and_history_ids() -> None:
    assert child_ids(json.loads(MANIFEST_BYTES)) == [HELLO_B3]
    assert child_ids(json.loads(TREE_BYTES)) == [MANIFEST_ID, MANIFEST_ID]
    child = json.loads(encode_object(CHILD))
    assert child_ids(child) == [TREE_ID]
    assert history_ids(child) == [VERSION_ID]
    record = {"type": "deployment", "format": 1, "refs": [VERSION_ID, "junk"], "previous": CHILD_ID}
    assert child_ids(record) == [VERSION_ID]
    assert history_ids(record) == [CHILD_ID]


# --- envelopes ------------------------------------------------------------------------------------


def _join(parts) -> bytes:
    return b"".join(bytes(p) for p in parts)


def test_raw_envelope_golden_bytes() -> None:
    header = b'{"c":"raw","n":11}'
    assert _join(codec.encode(b"hello world", compress=False)) == (
        b"MVC\x01" + struct.pack("<I", len(header)) + header + b"hello world"
    )
    header = b'{"c":"raw","m":1,"n":11}'
    assert _join(codec.encode(b"hello world", meta=True)) == (
        b"MVC\x01" + struct.pack("<I", len(header)) + header + b"hello world"
    )


def test_store_writes_golden_objects(tmp_path) -> None:
    objects = ObjectStore(LocalStorage(str(tmp_path), fsync=False))
    assert objects.put_bytes(b"hello world") == HELLO_B3
    assert objects.put_meta(MANIFEST) == MANIFEST_ID
    assert objects.put_meta(TREE) == TREE_ID
    assert objects.put_meta(VERSION) == VERSION_ID
    fresh = ObjectStore(LocalStorage(str(tmp_path), fsync=False))
    assert fresh.get_version(VERSION_ID) == VERSION
    assert fresh.get_tree(TREE_ID) == TREE
    assert fresh.get_manifest(MANIFEST_ID) == MANIFEST
    assert b"".join(fresh.iter_file(MANIFEST)) == b"hello world"
    assert sorted(fresh.iter_ids()) == sorted([HELLO_B3, MANIFEST_ID, TREE_ID, VERSION_ID])
    with pytest.raises(NotFound):
        fresh.get_tree(VERSION_ID)  # a version is not a tree


def _floats(n: int, seed: int = 0, dtype=np.float32) -> bytes:
    return np.random.default_rng(seed).standard_normal(n).astype(dtype).tobytes()


@pytest.mark.parametrize(
    ("data", "width", "codec_name"),
    [
        (b"", None, "raw"),
        (b"x" * 100, None, "raw"),  # too small to be worth compressing
        (b"abc" * 50_000, None, "zstd"),
        (np.random.default_rng(0).bytes(5000), None, "raw"),  # noise is never compressed
        (_floats(100_000), 4, "group"),
        (_floats(150_001, dtype=np.float16) + b"\x01", 2, "group"),  # odd tail byte
        (_floats(40_000, dtype=np.float64), 8, "group"),
    ],
    ids=["empty", "small", "text", "noise", "fp32", "fp16-tail", "fp64"],
)
def test_envelope_round_trips(data: bytes, width: int | None, codec_name: str) -> None:
    stored = _join(codec.encode(data, elem_width=width, compress=True))
    header, _ = codec.read_header(stored)
    assert header["c"] == codec_name
    assert codec.decode(stored) == data
    assert codec.verify_stored(stored)
    if codec_name != "raw":
        assert len(stored) < len(data)


def test_grouped_envelope_compresses_float_exponents() -> None:
    data = _floats(200_000)
    stored = _join(codec.encode(data, elem_width=4, compress=True))
    header, _ = codec.read_header(stored)
    compressed = [s["c"] for s in header["s"]]
    assert compressed[3] == "zstd"  # the exponent byte of little-endian fp32
    assert len(stored) < 0.95 * len(data)


def test_delta_envelope_round_trip() -> None:
    base = _floats(100_000, seed=1)
    arr = np.frombuffer(base, dtype=np.uint32).copy()
    arr ^= np.random.default_rng(2).integers(0, 1 << 8, arr.size, dtype=np.uint32)  # low bits
    data = arr.tobytes()
    base_id = hash_bytes(base)
    parts = codec.encode_delta(data, base_id, base, base_depth=0, elem_width=4)
    assert parts is not None
    stored = _join(parts)
    assert codec.delta_base(stored) == (base_id, 1)
    assert len(stored) < len(data) / 2
    assert codec.decode(stored, {base_id: base}.__getitem__) == data
    with pytest.raises(CorruptObject):
        codec.decode(stored)  # no base loader
    with pytest.raises(CorruptObject):
        codec.decode(stored, lambda _oid: base[:-4])  # base of the wrong size
    assert (
        codec.encode_delta(data, base_id, base, base_depth=codec.MAX_DELTA_DEPTH, elem_width=4)
        is None
    )


def test_a_flipped_stored_byte_is_detected() -> None:
    data = b"abc" * 50_000
    stored = bytearray(_join(codec.encode(data, compress=True)))
    stored[-10] ^= 0x40
    assert not codec.verify_stored(bytes(stored))


def test_store_refuses_delta_cycles(tmp_path) -> None:
    """Hostile delta chains (an object that is its own base, or a cycle) are our error."""
    objects = ObjectStore(LocalStorage(str(tmp_path), fsync=False))
    a, b, c = "ab" * 32, "cd" * 32, "ef" * 32
    for oid, base in ((a, a), (b, c), (c, b)):
        header = {"c": "delta", "n": 4, "base": base, "d": 1, "i": {"c": "raw", "n": 4}}
        head = encode_canonical(header)
        envelope = b"MVC\x01" + struct.pack("<I", len(head)) + head + b"abcd"
        objects.storage.write(object_key(oid), [envelope])
    for oid in (a, b):
        with pytest.raises(CorruptObject, match="delta chain"):
            objects.get_bytes(oid)


# --- property: round trips ---------------------------------------------------------------------

_ROUND = settings(max_examples=100, deadline=None, database=None)
object_ids = st.binary(min_size=1, max_size=8).map(hash_bytes)
version_paths = (
    st.lists(
        st.text(
            st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\:"),
            min_size=1,
            max_size=8,
        ).filter(lambda s: s not in (".", "..", ".mvc", ".git")),
        min_size=1,
        max_size=3,
    )
    .map("/".join)
    .filter(lambda p: path_problem(p) is None)
)
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_maps = st.dictionaries(st.text(max_size=8), json_leaf, max_size=4)


@_ROUND
@given(
    st.binary(max_size=5000),
    st.sampled_from([None, 2, 4, 8]),
    st.booleans(),
    st.booleans(),
)
def test_envelope_round_trip_property(data: bytes, width, compress: bool, meta: bool) -> None:
    stored = _join(codec.encode(data, elem_width=width, compress=compress, meta=meta))
    assert codec.decode(stored) == data
    assert codec.is_meta(stored) == meta
    assert codec.verify_stored(stored)


@pytest.mark.slow
@_ROUND
@given(
    model=st.sampled_from(["bert", "team/sql-lora", "a.b_c-d"]),
    tree=object_ids,
    parents=st.lists(object_ids, max_size=2),
    author=st.text(max_size=20),
    message=st.text(max_size=40),
    params=json_maps,
    metrics=json_maps,
    git=st.none() | st.fixed_dictionaries({"commit": st.text(max_size=40), "dirty": st.booleans()}),
    lineage=json_maps,
)
def test_version_round_trip_property(
    model, tree, parents, author, message, params, metrics, git, lineage
) -> None:
    version = Version(
        model,
        tree,
        tuple(parents),
        author,
        "2026-01-02T03:04:05Z",
        message,
        params,
        metrics,
        git,
        lineage,
    )
    data = encode_object(version)
    oid = hash_bytes(data)
    assert decode_version(decode_meta(data, oid), oid) == version
    assert encode_object(decode_version(decode_meta(data, oid), oid)) == data


def _without_twins(files: dict) -> dict:
    kept: dict = {}
    for path, entry in files.items():
        try:
            check_twins([*kept, path])
        except InvalidInput:
            continue
        kept[path] = entry
    return kept


@_ROUND
@given(
    st.dictionaries(
        version_paths,
        st.builds(
            TreeEntry,
            object_ids,
            st.integers(0, 2**40),
            object_ids,
            st.sampled_from(["blob", "pickle", "safetensors"]),
            st.booleans(),
        ).filter(lambda e: e.size > 0 or not e.one_chunk),  # refused: test below
        max_size=5,
    ),
    st.lists(st.tuples(object_ids, st.integers(0, 2**30)), max_size=4),
)
def test_tree_and_manifest_round_trip_property(files: dict, chunks: list) -> None:
    # a path cannot be both a file and a folder: drop the folders' files
    files = {p: e for p, e in files.items() if not any(q.startswith(p + "/") for q in files)}
    files = _without_twins(files)  # "A" and "a" are one file on macOS and Windows
    tree = Tree(files)
    data = encode_object(tree)
    assert decode_tree(decode_meta(data, "t" * 64), "t" * 64) == tree
    manifest = FileManifest(
        sum(size for _c, size in chunks),
        HELLO_B3,
        "blob",
        tuple(ChunkRef(c, size) for c, size in chunks),
    )
    data = encode_object(manifest)
    assert decode_file_manifest(decode_meta(data, "m" * 64), "m" * 64) == manifest


def test_a_one_chunk_entry_names_its_chunk_and_an_empty_one_is_refused() -> None:
    entry = TreeEntry(HELLO_B3, 5, HELLO_B3, "blob")
    assert entry.one_chunk and entry.implied_manifest() == FileManifest(
        5, HELLO_B3, "blob", (ChunkRef(HELLO_B3, 5),)
    )
    tree = Tree({"hello.txt": entry})
    assert tree.store_format == 2 and Tree({}).store_format == 1
    assert decode_tree(decode_meta(encode_object(tree), "t" * 64), "t" * 64) == tree
    empty = Tree({"e": TreeEntry(HELLO_B3, 0, HELLO_B3, "blob")})
    with pytest.raises(CorruptObject, match="an empty file cannot be a chunk"):
        decode_tree(decode_meta(encode_object(empty), "t" * 64), "t" * 64)


# --- hostile bytes: only our own errors ---------------------------------------------------------

_FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _envelope(header: object, payload: bytes) -> bytes:
    head = json.dumps(header).encode()
    return b"MVC\x01" + struct.pack("<I", len(head)) + head + payload


codec_headers = st.fixed_dictionaries(
    {"c": st.sampled_from(["raw", "zstd", "group", "delta", "other"])},
    optional={
        "n": st.integers(-5, 1 << 62) | json_values,
        "w": st.sampled_from([0, 1, 2, 4, 8, 3]) | json_values,
        "s": st.lists(
            st.fixed_dictionaries(
                {"c": st.sampled_from(["raw", "zstd", "x"]), "n": st.integers(-1, 300)},
                optional={"z": st.integers(-1, 300) | json_values},
            ),
            max_size=9,
        )
        | json_values,
        "base": st.text(max_size=70) | json_values,
        "d": json_values,
        "i": json_values | st.fixed_dictionaries({"c": st.sampled_from(["raw", "zstd", "group"])}),
        "m": json_values,
        "sb3": json_values,
    },
)


@_FUZZ
@given(st.binary(max_size=400))
def test_codec_decode_arbitrary_bytes(data: bytes) -> None:
    for stored in (data, b"MVC\x01" + data):
        try:
            codec.decode(stored, lambda oid: b"x" * 16)
        except CorruptObject:
            pass


@_FUZZ
@given(codec_headers, st.binary(max_size=300))
def test_codec_decode_hostile_headers(header: dict, payload: bytes) -> None:
    stored = _envelope(header, payload)
    for loader in (None, lambda oid: payload, lambda oid: b""):
        try:
            codec.decode(stored, loader)
            codec.verify_stored(stored)
            codec.delta_base(stored)
            codec.is_meta(stored)
            codec.element_width(stored)
        except CorruptObject:
            pass


def test_codec_decode_zstd_frame_claiming_a_huge_size() -> None:
    import zstandard

    frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"abc" * 100)
    for n in (1 << 40, 1 << 62):
        with pytest.raises(CorruptObject):
            codec.decode(_envelope({"c": "zstd", "n": n}, frame))
        spec = [{"c": "zstd", "n": n, "z": len(frame)}, {"c": "raw", "n": 0}, {"c": "raw", "n": 0}]
        with pytest.raises(CorruptObject):
            codec.decode(_envelope({"c": "group", "n": 2 * n, "w": 2, "s": spec}, frame))


_DECODERS = (decode_file_manifest, decode_tree, decode_version)


def _decode_all(data: bytes, oid: str) -> None:
    try:
        value = decode_meta(data, oid)
    except (CorruptObject, UnknownFormat):
        return
    for decoder in _DECODERS:
        try:
            decoded = decoder(value, oid)
        except CorruptObject:
            continue
        child_ids(value)
        history_ids(value)
        assert encode_object(decoded)  # whatever decodes must re-encode


@_FUZZ
@given(st.binary(max_size=300))
def test_object_decoders_arbitrary_bytes(data: bytes) -> None:
    _decode_all(data, "cd" * 32)


def _mutations(base: dict) -> st.SearchStrategy[dict]:
    keys = sorted(base) + ["extra"]
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=4).map(
        lambda changes: {**base, **changes}
    )


@_FUZZ
@given(
    st.one_of(
        _mutations(json.loads(MANIFEST_BYTES)),
        _mutations(json.loads(TREE_BYTES)),
        _mutations(json.loads(VERSION_BYTES)),
        st.builds(
            lambda path, entry: {"type": "tree", "format": 1, "files": {path: entry}},
            st.text(max_size=12),
            _mutations(json.loads(TREE_BYTES)["files"]["config.json"]),
        ),
        st.builds(
            lambda chunks: {
                "type": "file",
                "format": 1,
                "size": 3,
                "b3": HELLO_B3,
                "kind": "blob",
                "chunks": chunks,
            },
            json_values,
        ),
        json_values,
    )
)
def test_object_decoders_hostile_values(value) -> None:
    _decode_all(json.dumps(value).encode(), "cd" * 32)


REF = branch("bert", "main")


@_FUZZ
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_ref_entry_decoder_arbitrary_bytes(data: bytes) -> None:
    try:
        entry = decode_entry(data, REF, 1)
    except CorruptObject:
        return
    assert isinstance(entry, RefEntry)


@_FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["seq", "old", "new", "who", "when", "why", "extra"]),
        json_values,
        max_size=6,
    )
)
def test_ref_entry_decoder_hostile_values(changes: dict) -> None:
    good = {"seq": 1, "old": None, "new": VERSION_ID, "who": "a", "when": "b", "why": "c"}
    try:
        entry = decode_entry(json.dumps({**good, **changes}).encode(), REF, 1)
    except CorruptObject:
        return
    assert entry.seq == 1


def test_ref_entry_golden_bytes_round_trip() -> None:
    entry = RefEntry(1, None, VERSION_ID, "Ada", "2026-01-02T03:04:05Z", "commit: x")  # type: ignore[arg-type]
    data = encode_canonical(entry.to_json())
    assert data == (
        b'{"new":"8bde298679bac10b9651a08298b031d10bbf04d22d7608c99185d632df37b97f","old":null,'
        b'"seq":1,"when":"2026-01-02T03:04:05Z","who":"Ada","why":"commit: x"}'
    )
    assert decode_entry(data, REF, 1) == entry
    with pytest.raises(CorruptObject):
        decode_entry(data, REF, 2)  # an entry copied to the wrong position


def test_store_reads_of_hostile_objects_are_our_errors(tmp_path) -> None:
    """Bytes planted under an object's name (a remote we do not trust) give only our errors."""
    objects = ObjectStore(LocalStorage(str(tmp_path), fsync=False))
    oid = "ef" * 32
    payloads = [
        b"",
        b"MVC\x01",
        b"MVC\x01\xff\xff\xff\xff",
        _envelope({"c": "raw", "n": 3}, b"abc"),  # valid envelope, wrong content for the id
        _envelope(
            {"c": "delta", "n": 3, "base": "../../etc/passwd", "d": 1, "i": {"c": "raw", "n": 3}},
            b"abc",
        ),
        _envelope(
            {"c": "delta", "n": 3, "base": "12" * 32, "d": 1, "i": {"c": "raw", "n": 3}}, b"abc"
        ),
    ]
    for payload in payloads:
        objects.storage.write(object_key(oid), [payload])
        objects._meta_cache.clear()
        for read in (objects.get_bytes, objects.get_meta, objects.get_version, objects.get_tree):
            with pytest.raises(MvcError):
                read(oid)
