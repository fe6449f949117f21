"""Chunk plans cover the file exactly, cut safetensors at tensors and other big files by content."""

from __future__ import annotations

import json
import mmap
import random
import struct
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from mvc.chunking import (
    CDC_MAX,
    CDC_MIN,
    FIXED_SPAN,
    MAX_PIECE,
    SMALL_FILE,
    WHOLE_SAFETENSORS,
    ChunkSpan,
    FilePlan,
    plan_file,
)
from mvc.errors import InvalidInput
from mvc.formats.safetensors import DTYPE_BITS, DTYPE_SIZES, float_width
from mvc.objects import KIND_BLOB, KIND_PICKLE, KIND_SAFETENSORS


def assert_covers(plan: FilePlan, size: int) -> None:
    """The invariant: spans tile [0, size) in order, none empty."""
    offset = 0
    for span in plan.spans:
        assert span.offset == offset and span.length > 0, (span, offset)
        offset += span.length
    assert offset == size


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def build(tensors: dict[str, tuple[str, list[int]]], seed: int = 0) -> bytes:
    """A safetensors file with random tensor bytes, laid out in the order given."""
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = int(np.prod(shape, dtype=np.int64)) * DTYPE_BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body + random_bytes(offset, seed)


def piece_bytes(data: bytes, plan: FilePlan) -> list[bytes]:
    return [data[s.offset : s.offset + s.length] for s in plan.spans]


# --- safetensors -----------------------------------------------------------------------------


def test_safetensors_header_then_tensors(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(
        {
            "w": np.ones((4, 4), np.float32),
            "b": np.zeros(3, np.float16),
            "ids": np.arange(5, dtype=np.int64),
            "empty": np.zeros((0,), np.float32),
        },
        str(path),
    )
    data = path.read_bytes()
    plan = plan_file(str(path), data, "model.safetensors", whole_safetensors=0)
    assert plan.kind == KIND_SAFETENSORS and plan.header is not None
    assert_covers(plan, len(data))
    assert plan.spans[0] == ChunkSpan(0, plan.header.header_size, None)
    widths = {(t.start, t.end): float_width(t.dtype) for t in plan.header.tensors}
    assert [(s.offset, s.offset + s.length, s.elem_width) for s in plan.spans[1:]] == [
        (start, end, width) for (start, end), width in widths.items() if end > start
    ]
    assert {s.elem_width for s in plan.spans[1:]} == {2, 4, None}


def test_a_small_safetensors_file_is_one_chunk_and_a_larger_one_is_cut_per_tensor():
    small = build({"w": ("F32", [100]), "b": ("F32", [10])})
    plan = plan_file("s.safetensors", small, "s")
    assert plan.kind == KIND_SAFETENSORS and plan.spans == (ChunkSpan(0, len(small)),)
    assert plan.header is not None and [t.name for t in plan.header.tensors] == ["w", "b"]
    large = build({"w": ("F32", [WHOLE_SAFETENSORS // 4]), "b": ("F32", [10])})
    plan = plan_file("l.safetensors", large, "l")
    assert len(large) > WHOLE_SAFETENSORS and [s.elem_width for s in plan.spans] == [None, 4, 4]


def test_large_tensor_is_cut_into_element_aligned_pieces():
    data = build({"h": ("U8", [3]), "big": ("F32", [1000]), "tail": ("BF16", [7])})
    plan = plan_file("m.safetensors", data, "m", max_piece=1000, whole_safetensors=0)
    assert_covers(plan, len(data))
    assert plan.header is not None
    big = next(t for t in plan.header.tensors if t.name == "big")
    pieces = [s for s in plan.spans if big.start <= s.offset < big.end]
    assert [s.length for s in pieces] == [1000, 1000, 1000, 1000]
    assert all(s.elem_width == 4 for s in pieces)
    plan = plan_file(
        "m.safetensors", data, "m", max_piece=1002, whole_safetensors=0
    )  # rounded down to 1000
    assert [s.length for s in plan.spans if big.start <= s.offset < big.end] == [1000] * 4
    plan = plan_file("m.safetensors", data, "m", max_piece=1500, whole_safetensors=0)
    assert [s.length for s in plan.spans if big.start <= s.offset < big.end] == [1500, 1500, 1000]


def test_unchanged_pieces_are_the_same_bytes_after_an_edit():
    shapes = {"a": ("F32", [3000]), "b": ("BF16", [5000])}
    before = build(shapes, seed=1)
    after = bytearray(before)
    after[-1] ^= 0xFF  # the last element of the last tensor
    old = piece_bytes(
        before, plan_file("x.safetensors", before, "x", max_piece=4096, whole_safetensors=0)
    )
    new = piece_bytes(
        bytes(after),
        plan_file("x.safetensors", bytes(after), "x", max_piece=4096, whole_safetensors=0),
    )
    assert len(old) == len(new) and old[:-1] == new[:-1] and old[-1] != new[-1]


def test_tensor_pieces_dedup_when_the_header_grows():
    small = build({"a": ("F32", [4096])}, seed=3)
    # Same tensor bytes behind a longer header (a renamed tensor): its pieces still match.
    renamed = build({"a_much_longer_name_for_the_same_tensor": ("F32", [4096])}, seed=3)
    one = piece_bytes(
        small, plan_file("x.safetensors", small, "x", max_piece=1024, whole_safetensors=0)
    )
    two = piece_bytes(
        renamed, plan_file("x.safetensors", renamed, "x", max_piece=1024, whole_safetensors=0)
    )
    assert one[1:] == two[1:] and one[0] != two[0]


def test_sub_byte_tensors_are_cut_at_whole_elements():
    data = build({"f6": ("F6_E2M3", [4000]), "f4": ("F4", [3000])})
    plan = plan_file("q.safetensors", data, "q", max_piece=1000, whole_safetensors=0)
    assert_covers(plan, len(data))
    assert plan.header is not None
    f6 = next(t for t in plan.header.tensors if t.name == "f6")
    assert [s.length for s in plan.spans if f6.start <= s.offset < f6.end] == [999, 999, 999, 3]
    assert all(s.elem_width is None for s in plan.spans[1:])


def test_malformed_safetensors_raises_unless_raw():
    data = b"\x10\x00\x00\x00\x00\x00\x00\x00not a header at all"
    with pytest.raises(InvalidInput, match="weights/model.safetensors: malformed"):
        plan_file("/abs/weights/model.safetensors", data, "weights/model.safetensors")
    plan = plan_file("model.safetensors", data, "model.safetensors", raw=True)
    assert plan == FilePlan(KIND_BLOB, (ChunkSpan(0, len(data)),))
    with pytest.raises(InvalidInput):
        plan_file("empty.safetensors", b"", "empty.safetensors")
    assert plan_file("empty.safetensors", b"", "e", raw=True) == FilePlan(KIND_BLOB, ())


def test_safetensors_without_tensors_is_its_header():
    data = build({})
    assert plan_file("e.safetensors", data, "e").spans == (ChunkSpan(0, len(data)),)


# --- other files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("pytorch_model.bin", KIND_PICKLE),
        ("ckpt/model.PT", KIND_PICKLE),
        ("x.pth", KIND_PICKLE),
        ("x.ckpt", KIND_PICKLE),
        ("x.pkl", KIND_PICKLE),
        ("x.pickle", KIND_PICKLE),
        ("config.json", KIND_BLOB),
        ("tokenizer.model", KIND_BLOB),
        ("README", KIND_BLOB),
    ],
)
def test_kinds_by_extension(path, kind):
    assert plan_file(path, b"", path) == FilePlan(kind, ())
    assert plan_file(path, b"abc", path) == FilePlan(kind, (ChunkSpan(0, 3),))
    small = bytes(SMALL_FILE)
    assert plan_file(path, small, path).spans == (ChunkSpan(0, SMALL_FILE),)


def test_large_blob_uses_content_defined_chunks():
    data = random_bytes(12 << 20, seed=7)
    plan = plan_file("weights.bin", data, "weights.bin")
    assert plan.kind == KIND_PICKLE and plan.header is None
    assert_covers(plan, len(data))
    lengths = [s.length for s in plan.spans]
    assert all(n <= CDC_MAX for n in lengths) and all(n >= CDC_MIN for n in lengths[:-1])
    assert len(set(lengths)) > 1  # cut by content, not at fixed offsets
    assert all(s.elem_width is None for s in plan.spans)
    assert plan_file("weights.bin", data, "weights.bin") == plan  # deterministic


def test_an_insertion_only_changes_nearby_chunks():
    data = random_bytes(12 << 20, seed=8)
    edited = data[:1000] + b"inserted!" + data[1000:]
    old = set(piece_bytes(data, plan_file("f.dat", data, "f.dat")))
    new = piece_bytes(edited, plan_file("f.dat", edited, "f.dat"))
    assert sum(piece in old for piece in new) >= len(new) - 2


def test_plan_over_an_mmap_leaves_it_closable(tmp_path):
    path = tmp_path / "big.dat"
    path.write_bytes(random_bytes(SMALL_FILE + 12345, seed=9))
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mapped)
        plan = plan_file(str(path), view, "big.dat")
        assert_covers(plan, SMALL_FILE + 12345)
        view.release()
        mapped.close()  # BufferError if the plan kept a view into the map


def test_without_pyfastcdc_falls_back_to_fixed_spans(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyfastcdc", None)  # makes the import raise ImportError
    size = 2 * FIXED_SPAN + 5
    plan = plan_file("x.dat", bytes(size), "x.dat")
    assert [s.length for s in plan.spans] == [FIXED_SPAN, FIXED_SPAN, 5]


def test_max_piece_must_be_positive():
    with pytest.raises(ValueError):
        plan_file("x.safetensors", build({}), "x", max_piece=0)
    assert MAX_PIECE == 16 << 20


# --- properties ------------------------------------------------------------------------------

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tensor_layouts(draw: st.DrawFn) -> dict[str, tuple[str, list[int]]]:
    layout = {}
    for index in range(draw(st.integers(0, 5))):
        dtype = draw(st.sampled_from(sorted(DTYPE_BITS)))
        shape = draw(st.lists(st.integers(0, 40), max_size=3))
        count = int(np.prod(shape)) if shape else 1
        if count * DTYPE_BITS[dtype] % 8:
            shape = [*shape, 8]  # sub-byte dtypes need whole bytes
        layout[f"t{index}"] = (dtype, shape)
    return layout


@PROPS
@given(tensor_layouts(), st.integers(1, 300))
def test_safetensors_plan_covers_the_file(layout, max_piece):
    data = build(layout)
    if len(data) <= WHOLE_SAFETENSORS:
        assert plan_file("p.safetensors", data, "p").spans == (ChunkSpan(0, len(data)),)
    plan = plan_file("p.safetensors", data, "p", max_piece=max_piece, whole_safetensors=0)
    assert_covers(plan, len(data))
    assert plan.header is not None and plan.spans[0].length == plan.header.header_size
    for tensor in plan.header.tensors:
        unit = DTYPE_SIZES[tensor.dtype]
        pieces = [s for s in plan.spans if tensor.start <= s.offset < tensor.end]
        assert sum(s.length for s in pieces) == tensor.nbytes
        assert all(s.length % unit == 0 for s in pieces)
        assert all(s.length == pieces[0].length for s in pieces[:-1])
        assert all(s.length <= max(max_piece, unit) for s in pieces)
        assert all(s.elem_width == float_width(tensor.dtype) for s in pieces)


@settings(max_examples=12, deadline=None)
@given(
    st.one_of(
        st.integers(0, 4096),
        st.integers(SMALL_FILE - 2, SMALL_FILE + 2),
        st.integers(SMALL_FILE, 3 * SMALL_FILE),
    ),
    st.sampled_from(["a.bin", "b.txt", "c.safetensors"]),
)
def test_blob_plan_covers_the_file(size, path):
    data = random_bytes(size, seed=size)
    plan = plan_file(path, data, path, raw=True)
    assert_covers(plan, size)
    if size <= SMALL_FILE:
        assert len(plan.spans) == (1 if size else 0)
    else:
        assert len(plan.spans) >= 2 and all(s.length <= CDC_MAX for s in plan.spans)
