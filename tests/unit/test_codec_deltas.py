"""Delta envelopes: XOR and integer difference round-trip; hostile headers are refused."""

from __future__ import annotations

import numpy as np
import pytest

from mvc import codec
from mvc.canonical import encode_canonical
from mvc.errors import CorruptObject


def _pair(width: int) -> tuple[bytes, bytes]:
    rng = np.random.default_rng(width)
    base = rng.normal(0, 0.02, 70_000).astype(np.float32)
    tuned = (base * (1 + rng.normal(0, 1e-3, base.shape))).astype(np.float32)
    if width == 2:  # bf16-like: the top halves
        return (tuned.view(np.uint32) >> 16).astype(np.uint16).tobytes(), (
            base.view(np.uint32) >> 16
        ).astype(np.uint16).tobytes()
    return tuned.tobytes(), base.tobytes()


@pytest.mark.parametrize("transform", codec.TRANSFORMS)
@pytest.mark.parametrize("width", [2, 4])
def test_both_transforms_round_trip_and_are_smaller(transform, width) -> None:
    data, base = _pair(width)
    parts = codec.encode_delta(
        data, "b" * 64, base, base_depth=2, elem_width=width, transform=transform
    )
    assert parts is not None
    stored = b"".join(bytes(p) for p in parts)
    assert len(stored) < 0.8 * len(data)
    assert codec.delta_base(stored) == ("b" * 64, 3)
    assert codec.decode(stored, lambda _b: base) == data


def test_a_difference_that_wraps_decodes_exactly() -> None:
    data = np.array([0, 1, 0xFFFFFFFF] * 30_000, dtype="<u4").tobytes()
    base = np.array([0xFFFFFFFF, 2, 0] * 30_000, dtype="<u4").tobytes()
    parts = codec.encode_delta(data, "b" * 64, base, base_depth=0, elem_width=4, transform="sub")
    assert parts is not None
    assert codec.decode(b"".join(bytes(p) for p in parts), lambda _b: base) == data


def test_subtraction_needs_whole_elements() -> None:
    data, base = _pair(4)
    assert (
        codec.encode_delta(
            data[:-1], "b" * 64, base[:-1], base_depth=0, elem_width=4, transform="sub"
        )
        is None
    )
    assert (
        codec.encode_delta(data, "b" * 64, base, base_depth=0, elem_width=None, transform="sub")
        is None
    )


@pytest.mark.parametrize(
    "extra", [{"x": "rot13"}, {"x": "sub"}, {"x": "sub", "w": 3}, {"x": "sub", "w": 8}]
)
def test_hostile_transform_headers_are_corruption(extra) -> None:
    payload = bytes(4098)
    inner = {"c": "raw", "n": len(payload)}
    header = {"c": "delta", "n": len(payload), "base": "b" * 64, "d": 1, "i": inner, **extra}
    head = encode_canonical(header)
    stored = codec.MAGIC + len(head).to_bytes(4, "little") + head + payload
    with pytest.raises(CorruptObject):
        codec.decode(stored, lambda _b: bytes(len(payload)))
