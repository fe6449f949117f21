"""The safetensors header parser: real files parse; hostile ones raise InvalidInput, only that."""

from __future__ import annotations

import json
import struct
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import safetensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from mvc.errors import InvalidInput, NotFound
from mvc.formats.safetensors import (
    DTYPE_BITS,
    DTYPE_SIZES,
    HINT,
    MAX_HEADER,
    SafetensorsHeader,
    float_width,
    looks_like_safetensors,
    parse_header,
    read_header,
)


def build(
    header: Any = None, data: bytes = b"", *, raw: bytes | None = None, pad: int = 0
) -> bytes:
    """A safetensors file from a header (a dict, or raw JSON bytes) and a data buffer."""
    body = raw if raw is not None else json.dumps(header).encode()
    body += b" " * pad
    return struct.pack("<Q", len(body)) + body + data


def parse(blob: bytes) -> SafetensorsHeader:
    return parse_header(blob, len(blob), "models/bert/model.safetensors")


def refused(blob: bytes, match: str) -> InvalidInput:
    with pytest.raises(InvalidInput, match=match) as info:
        parse(blob)
    assert str(info.value).startswith("models/bert/model.safetensors: malformed safetensors header")
    assert info.value.hint == HINT
    return info.value


def u8(begin: int, end: int, shape: Any = None, dtype: Any = "U8") -> dict[str, Any]:
    return {"dtype": dtype, "shape": [end - begin] if shape is None else shape,
            "data_offsets": [begin, end]}  # fmt: skip


# --- real files ------------------------------------------------------------------------------


def test_file_saved_by_safetensors_parses(tmp_path):
    path = tmp_path / "model.safetensors"
    tensors: dict[str, np.ndarray] = {
        "encoder.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "encoder.bias": np.zeros(4, dtype=np.float64),
        "ids": np.array([1, 2, 3], dtype=np.int64),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 5), dtype=np.float16),
        "scalar": np.array(3, dtype=np.int32),
    }
    save_file(tensors, str(path), metadata={"format": "pt", "note": "ünïcode"})
    blob = path.read_bytes()
    header = parse(blob)
    assert header.metadata == {"format": "pt", "note": "ünïcode"}
    assert {t.name for t in header.tensors} == set(tensors)
    starts = [t.start for t in header.tensors]
    assert starts == sorted(starts) and header.tensors[0].start == header.header_size
    for info in header.tensors:
        array = tensors[info.name]
        assert info.shape == array.shape
        assert blob[info.start : info.end] == array.tobytes()
        assert info.nbytes == array.nbytes
    assert read_header(str(path), "model.safetensors") == header


def test_bf16_and_fp8_files_parse(tmp_path):
    path = tmp_path / "low.safetensors"
    tensors = {
        "bf16": np.linspace(-2, 2, 10).astype(ml_dtypes.bfloat16),
        "e4m3": np.linspace(-2, 2, 7).astype(ml_dtypes.float8_e4m3fn),
        "e5m2": np.linspace(-2, 2, 5).astype(ml_dtypes.float8_e5m2),
    }
    save_file(tensors, str(path))
    blob = path.read_bytes()
    header = read_header(str(path))
    dtypes = {t.name: t.dtype for t in header.tensors}
    assert dtypes == {"bf16": "BF16", "e4m3": "F8_E4M3", "e5m2": "F8_E5M2"}
    for info in header.tensors:
        assert blob[info.start : info.end] == tensors[info.name].tobytes()
    assert float_width("BF16") == 2 and float_width("F8_E4M3") is None


def test_empty_file_with_no_tensors():
    header = parse(build({}, pad=6))
    assert header.tensors == () and header.metadata == {} and header.header_size == 16
    assert parse(build({"__metadata__": None})).metadata == {}


def test_tensors_may_be_listed_in_any_order_and_zero_sized_anywhere_contiguous():
    blob = build({"b": u8(2, 5), "a": u8(0, 2), "z": u8(2, 2), "end": u8(5, 5)}, b"x" * 5)
    assert [t.name for t in parse(blob).tensors] == ["a", "z", "b", "end"]


def test_sub_byte_dtypes_must_fill_whole_bytes():
    assert parse(build({"x": u8(0, 2, [4], "F4")}, b"ab")).tensors[0].dtype == "F4"
    assert parse(build({"x": u8(0, 3, [4], "F6_E3M2")}, b"abc")).tensors[0].shape == (4,)
    refused(build({"x": u8(0, 1, [3], "F4")}, b"a"), "do not fill whole bytes")
    refused(build({"x": u8(0, 1, [1], "F6_E2M3")}, b"a"), "do not fill whole bytes")


def test_dtype_tables():
    assert set(DTYPE_SIZES) == set(DTYPE_BITS)
    for dtype, bits in DTYPE_BITS.items():
        unit = DTYPE_SIZES[dtype]
        assert unit * 8 % bits == 0, dtype  # a unit holds whole elements
        if bits % 8 == 0:
            assert unit == bits // 8
    assert {d: float_width(d) for d in ("F16", "BF16", "F32", "F64", "I32", "U8", "F8_E8M0")} == {
        "F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I32": None, "U8": None, "F8_E8M0": None,
    }  # fmt: skip


def test_looks_like_safetensors():
    assert looks_like_safetensors("a/model.safetensors")
    assert looks_like_safetensors("MODEL.SAFETENSORS")
    assert not looks_like_safetensors("model.safetensors.json")
    assert not looks_like_safetensors("pytorch_model.bin")


# --- hostile headers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "too short"),
        (b"\x02\x00\x00", "too short"),
        (struct.pack("<Q", 0), "too small"),
        (struct.pack("<Q", 1) + b"{", "too small"),
        (struct.pack("<Q", MAX_HEADER + 1) + b"{}", "over the"),
        (struct.pack("<Q", (1 << 64) - 1) + b"{}", "over the"),
        (struct.pack("<Q", 100) + b"{}", "past the end"),
    ],
)
def test_bad_header_length(blob, match):
    refused(blob, match)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a\xc3":1}', "not UTF-8"),
        (b"not json", "does not start with"),
        (b" {}", "does not start with"),
        (b"\xef\xbb\xbf{}", "does not start with"),
        (b"[]", "does not start with"),
        (b'{"a"', "not valid JSON"),
        (b"{}}", "other than space padding"),
        (b"{}\x00\x00", "other than space padding"),
        (b"{}\n", "other than space padding"),
        (b'{"x": NaN}', "NaN is not allowed"),
        (b'{"x": -Infinity}', "Infinity is not allowed"),
        (b'{"x": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"{" + b'"a":[' * 100_000 + b"}", "not valid JSON"),
    ],
)
def test_header_that_is_not_a_json_object(raw, match):
    refused(build(raw=raw), match)


def test_unknown_dtype():
    refused(build({"x": u8(0, 1, dtype="u8")}, b"a"), "unknown dtype 'u8'")
    refused(build({"x": u8(0, 1, dtype=8)}, b"a"), "unknown dtype 8")


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ([-1], "not a non-negative integer"),
        ([1.0], "not a non-negative integer"),
        ([True], "not a non-negative integer"),
        (["1"], "not a non-negative integer"),
        ([1 << 64], "not a non-negative integer"),
        ([1 << 32, 1 << 32], "overflows 64 bits"),
        ([1 << 32, 1 << 32, 0], "overflows 64 bits"),
        (3, "shape is not a list"),
    ],
)
def test_bad_shapes(shape, match):
    refused(build({"x": u8(0, 1, shape)}, b"a"), match)


@pytest.mark.parametrize(
    "offsets", [[0], [0, 1, 2], [-1, 0], [0.0, 1], [0, 1 << 64], "0,1", None, [False, True]]
)
def test_bad_offsets(offsets):
    refused(build({"x": {"dtype": "U8", "shape": [1], "data_offsets": offsets}}, b"a"),
            "not a pair of non-negative integers")  # fmt: skip


def test_shape_and_offsets_disagree():
    refused(build({"x": u8(0, 4, [2], "F32")}, b"abcd"), r"F32 '\[2\]' = 8 bytes.*span 4")
    refused(build({"x": u8(3, 1, [0])}, b"abc"), "end before they begin")


def test_overlap():
    exc = refused(build({"x": u8(0, 4), "y": u8(2, 6)}, b"a" * 6), "tensor 'y' offsets overlap 'x'")
    assert "malformed safetensors header: tensor 'y' offsets overlap 'x'" in str(exc)
    refused(build({"x": u8(0, 4), "y": u8(0, 4)}, b"a" * 4), "offsets overlap")
    refused(build({"x": u8(0, 4), "z": u8(2, 2)}, b"a" * 4), "tensor 'z' offsets overlap 'x'")


def test_hole():
    refused(build({"x": u8(0, 2), "y": u8(3, 5)}, b"a" * 5), "hole of 1 bytes before tensor 'y'")
    refused(build({"x": u8(1, 2)}, b"aa"), "hole of 1 bytes before tensor 'x'")


def test_truncated_and_over_long_data():
    refused(build({"x": u8(0, 8)}, b"a" * 7), "truncated")
    refused(build({"x": u8(0, 8)}, b"a" * 9), "1 bytes after the last tensor")
    refused(build({}, b"junk"), "4 bytes after the last tensor")


def test_duplicates_are_refused_at_every_level():
    t = b'{"dtype":"U8","shape":[1],"data_offsets":[0,1]}'
    refused(build(raw=b'{"a":' + t + b',"a":' + t + b"}", data=b"a"), "duplicate key 'a'")
    refused(build(raw=b'{"__metadata__":{},"__metadata__":{}}'), "duplicate key")
    refused(build(raw=b'{"__metadata__":{"k":"1","k":"2"}}'), "duplicate key 'k'")
    dup_field = b'{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    refused(build(raw=dup_field, data=b"a"), "duplicate key 'dtype'")


def test_bad_tensor_entries():
    refused(build({"x": [1, 2]}), "is not an object")
    refused(build({"x": {"dtype": "U8", "shape": [0]}}), "lacks data_offsets")
    refused(build({"x": {**u8(0, 1), "extra": 1}}, b"a"), "unknown key 'extra'")
    refused(build(raw=b'{"\\ud800":' + json.dumps(u8(0, 1)).encode() + b"}", data=b"a"),
            "not valid text")  # fmt: skip


def test_bad_metadata():
    refused(build({"__metadata__": {"a": 1}}), "not a string")
    refused(build({"__metadata__": ["a"]}), "not an object")
    refused(build({"__metadata__": "a"}), "not an object")
    refused(build(raw=b'{"__metadata__":{"a":"\\udc00"}}'), "not a string")


def test_read_header_reads_only_the_header(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(build({"x": u8(0, 1 << 20)}, b"\0" * (1 << 20)))
    header = read_header(str(path), "x.safetensors")
    assert header.tensors[0].end == path.stat().st_size
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(InvalidInput, match="x.safetensors: .*truncated"):
        read_header(str(path), "x.safetensors")
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(InvalidInput, match="over the"):
        read_header(str(path))
    with pytest.raises(NotFound):
        read_header(str(tmp_path / "missing.safetensors"))


def test_head_may_be_a_memoryview_and_longer_than_the_header():
    blob = build({"x": u8(0, 3)}, b"abc")
    assert parse_header(memoryview(blob), len(blob), "x") == parse(blob)
    assert parse_header(blob[: len(blob) - 3], len(blob), "x") == parse(blob)
    with pytest.raises(InvalidInput, match="were read"):
        parse_header(blob[:10], len(blob), "x")


# --- properties ------------------------------------------------------------------------------

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_ours(blob: bytes) -> SafetensorsHeader | None:
    try:
        return parse(blob)
    except InvalidInput:
        return None


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_invalid_input(blob):
    only_ours(blob)


@FAST
@given(st.binary(max_size=300), st.integers(0, 400))
def test_arbitrary_bytes_behind_a_plausible_length(body, extra):
    only_ours(struct.pack("<Q", min(len(body), max(0, len(body) - extra))) + body)


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 70), 1 << 70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
json_value: st.SearchStrategy[Any] = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
dtypes = st.sampled_from(sorted(DTYPE_BITS))


@st.composite
def near_valid_files(draw: st.DrawFn) -> bytes:
    """Mostly well-formed files, with one random field replaced now and then."""
    header: dict[str, Any] = {}
    offset = 0
    for index in range(draw(st.integers(0, 4))):
        dtype = draw(dtypes)
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        count = int(np.prod(shape)) if shape else 1
        size = count * DTYPE_BITS[dtype] // 8
        header[f"t{index}"] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + size],
        }
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5)))
    if draw(st.booleans()) and header:
        victim = draw(st.sampled_from(sorted(header)))
        if draw(st.booleans()) or victim == "__metadata__":
            header[victim] = draw(json_value)
        else:
            key = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
            header[victim][key] = draw(json_value)
    data_size = max(0, offset + draw(st.integers(-2, 2)))
    return build(header, bytes(data_size), pad=draw(st.integers(0, 7)))


@FAST
@given(near_valid_files())
def test_we_accept_only_what_the_reference_library_accepts(blob):
    ours = only_ours(blob)
    if ours is None:
        return
    theirs = {name: view for name, view in safetensors.deserialize(blob)}
    assert {t.name for t in ours.tensors} == set(theirs)
    for info in ours.tensors:
        assert info.dtype == theirs[info.name]["dtype"]
        assert list(info.shape) == theirs[info.name]["shape"]
        assert blob[info.start : info.end] == bytes(theirs[info.name]["data"])
    assert ours.tensors == tuple(sorted(ours.tensors, key=lambda t: t.start))
