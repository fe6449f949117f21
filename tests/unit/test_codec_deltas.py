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


# --- decode_into: the same bytes as decode, into reused buffers ----------------------------------


def _stored(parts: list[codec.Buffer]) -> bytes:
    return b"".join(bytes(p) for p in parts)


@pytest.mark.parametrize("base_in_out", [False, True])
@pytest.mark.parametrize("width", [2, 4, 8])
def test_decode_into_reuses_its_buffers_across_sizes_and_matches_decode(width, base_in_out) -> None:
    """One scratch decodes grouped, zstd, raw and delta envelopes of shrinking and growing
    sizes (and odd tails) into the same memory: every result equals ``decode``'s, whether the
    base loader hands back the base's bytes or decodes them into the output (``base_in_out``)."""
    rng = np.random.default_rng(width)
    scratch = codec.DecodeScratch()
    for n in (300_001, 70_000, 1_000_003, 4096, 300_000):
        floats = rng.normal(0, 0.02, n // 4 + 1).astype(np.float32).tobytes()[:n]
        tuned = bytes(b ^ (i & 3) for i, b in enumerate(floats[:4096])) + floats[4096:]
        envelopes = [
            _stored(codec.encode(floats, elem_width=width, compress=True)),
            _stored(codec.encode(floats, compress=True)),
            _stored(codec.encode(floats, compress=False)),
        ]
        for transform in codec.TRANSFORMS:
            delta = codec.encode_delta(
                tuned, "b" * 64, floats, base_depth=0, elem_width=width, transform=transform
            )
            if delta is not None:
                envelopes.append(_stored(delta))

        def base(_base_id: str, floats: bytes = floats) -> bytes:
            return floats

        def base_into(_base_id: str, out: np.ndarray, floats: bytes = floats) -> bytes | None:
            if not base_in_out:
                return floats
            out[:] = np.frombuffer(floats, dtype=np.uint8)
            return None

        for stored in envelopes:
            expected = codec.decode(stored, base)
            out = scratch.array("out", len(expected))
            out[:] = 0xAA  # whatever the last use left there
            codec.decode_into(stored, out, base_into, scratch, expected_size=n)
            assert out.tobytes() == expected


def _grouped_with_zstd_stream(stream: bytes, n: int) -> bytes:
    """A 4-wide grouped envelope of ``n`` bytes whose first stream is the zstd ``stream``."""
    plane = n // 4
    specs = [{"c": "zstd", "n": plane, "z": len(stream)}] + [
        {"c": "raw", "n": plane} for _ in range(3)
    ]
    specs.append({"c": "raw", "n": 0})
    head = encode_canonical({"c": "group", "n": n, "w": 4, "s": specs})
    return codec.MAGIC + len(head).to_bytes(4, "little") + head + stream + bytes(3 * plane)


@pytest.mark.parametrize("damage", ["short", "long", "junk after", "two frames", "not zstd"])
def test_decode_into_refuses_a_zstd_stream_that_is_not_one_frame_of_its_size(damage) -> None:
    import zstandard

    n = 4 * 50_000
    plane = bytes(range(256)) * (50_000 // 256) + bytes(50_000 % 256)
    frame = zstandard.ZstdCompressor().compress(plane)
    stream = {
        "short": zstandard.ZstdCompressor().compress(plane[:-1]),
        "long": zstandard.ZstdCompressor().compress(plane + b"x"),
        "junk after": frame + b"junk",
        "two frames": frame + frame,
        "not zstd": bytes(len(frame)),
    }[damage]
    good = _grouped_with_zstd_stream(frame, n)
    out = np.empty(n, dtype=np.uint8)
    codec.decode_into(good, out, None, codec.DecodeScratch())
    assert out.tobytes() == codec.decode(good)
    with pytest.raises(CorruptObject):
        codec.decode_into(_grouped_with_zstd_stream(stream, n), out, None, codec.DecodeScratch())


def test_decode_into_refuses_a_size_that_is_not_the_buffers() -> None:
    stored = _stored(codec.encode(bytes(5000), compress=False))
    with pytest.raises(CorruptObject):
        codec.decode_into(stored, np.empty(4999, dtype=np.uint8), None, codec.DecodeScratch())
    with pytest.raises(CorruptObject):
        codec.decode_into(
            stored, np.empty(5000, dtype=np.uint8), None, codec.DecodeScratch(), expected_size=1
        )
