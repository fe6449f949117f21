"""``codec.zstd_frame_length``: a zstd frame's length from its block headers alone.

Presence checks (``ObjectStore.has_intact``) use it to tell a truncated or padded zstd object
without reading or hashing the whole file, so an unchanged file's commit stays a stat or two.
"""

from __future__ import annotations

import os

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from mvc.codec import zstd_frame_length


def _reader(buf: bytes):
    return lambda at, n: buf[at : at + n]


@pytest.mark.parametrize("checksum", [False, True])
@pytest.mark.parametrize(
    "data",
    [b"", b"x", b"abc" * 200_000, os.urandom(300_000), os.urandom(7) + b"\0" * 1_000_000],
    ids=["empty", "one", "repetitive", "noise", "rle"],
)
def test_the_length_of_a_real_frame(data: bytes, checksum: bool) -> None:
    frame = zstandard.ZstdCompressor(level=1, write_checksum=checksum).compress(data)
    stored = b"header" + frame
    assert zstd_frame_length(_reader(stored), 6, len(stored)) == len(frame)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=400_000), cut=st.integers(min_value=1, max_value=64))
def test_a_truncated_frame_has_no_length(data: bytes, cut: int) -> None:
    frame = zstandard.ZstdCompressor(level=3).compress(data)
    short = frame[: max(0, len(frame) - cut)]
    assert zstd_frame_length(_reader(short), 0, len(short)) is None


@given(st.binary(max_size=64))
def test_any_bytes_give_a_length_within_them_or_none(junk: bytes) -> None:
    length = zstd_frame_length(_reader(junk), 0, len(junk))
    assert length is None or 0 < length <= len(junk)
