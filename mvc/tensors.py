"""Tensors of safetensors files read piece by piece, from the store or from a folder, as numbers.

A ``TensorFile`` is one safetensors file seen as a byte range with a chunk layout: a stored file's
layout is its manifest; a file on disk is planned the way ``commit`` would cut it, and a piece's
id is hashed only when asked for. ``chunk_ids(start, end)`` answers "which chunks hold exactly
these bytes" so callers can tell identical tensors apart without decoding them. Reads are bounded:
a stored file keeps at most two decoded chunks in memory, a disk file reads with ``pread``.

Decoding covers every dtype safetensors 0.8 knows: numpy's own, ``ml_dtypes`` for bf16 and the
fp8/fp6/fp4 families. Sub-byte dtypes are packed: F4 holds two elements per byte (first element in
the low nibble, as PyTorch's float4_e2m1fn_x2), F6 four elements per three bytes (first element in
the low 6 bits of the little-endian 24-bit group). numpy is imported only when something is decoded.
"""

from __future__ import annotations

import bisect
import mmap
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mvc.chunking import plan_file
from mvc.errors import CorruptObject, InvalidInput, MvcError, cannot_map, unmappable
from mvc.formats.safetensors import DTYPE_BITS, DTYPE_SIZES, SafetensorsHeader, parse_header
from mvc.ids import ObjectId, hash_bytes

if TYPE_CHECKING:
    import numpy as np

    from mvc.objects import FileManifest
    from mvc.store import ObjectStore

BLOCK_BYTES = 1 << 20  # bytes of a tensor turned into numbers at once (small blocks stay in cache)


@dataclass(frozen=True)
class Piece:
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


class TensorFile(Protocol):
    name: str
    size: int

    def header(self) -> SafetensorsHeader: ...

    def chunk_ids(self, start: int, end: int) -> tuple[ObjectId, ...] | None: ...

    def read(self, start: int, end: int) -> bytes: ...

    def pieces(self, start: int, end: int) -> list[Piece]: ...


class _Layout:
    """Chunk boundaries of a file; shared by stored and disk files."""

    def __init__(self, pieces: list[Piece]) -> None:
        self._pieces = pieces
        self._starts = [p.offset for p in pieces]

    def index(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset) - 1

    def covering(self, start: int, end: int) -> list[int]:
        """Indexes of the pieces overlapping [start, end)."""
        if end <= start:
            return []
        first = self.index(start)
        last = self.index(end - 1)
        return list(range(max(first, 0), last + 1))

    def exact(self, start: int, end: int) -> list[int] | None:
        """Indexes of the pieces that tile exactly [start, end), or None if boundaries differ."""
        found = self.covering(start, end)
        if not found:
            return [] if start == end else None
        if self._pieces[found[0]].offset != start or self._pieces[found[-1]].end != end:
            return None
        return found

    def piece(self, index: int) -> Piece:
        return self._pieces[index]


class StoredTensorFile:
    """A safetensors file in the store, read chunk by chunk (each chunk verified)."""

    def __init__(self, objects: ObjectStore, manifest: FileManifest, name: str) -> None:
        self.objects = objects
        self.manifest = manifest
        self.name = name
        self.size = manifest.size
        pieces, offset = [], 0
        for ref in manifest.chunks:
            pieces.append(Piece(offset, ref.size))
            offset += ref.size
        self._layout = _Layout(pieces)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._header: SafetensorsHeader | None = None

    def _chunk(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is None:
            ref = self.manifest.chunks[index]
            data = self.objects.get_bytes(ref.id)
            if len(data) != ref.size:
                raise CorruptObject(
                    f"chunk {ref.id[:12]} of {self.name} has the wrong size", object_id=ref.id
                )
            self._cache[index] = data
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return data

    def header(self) -> SafetensorsHeader:
        if self._header is None:
            if self.size < 8:
                raise InvalidInput(f"{self.name}: too short to be a safetensors file")
            import struct

            (n,) = struct.unpack("<Q", self.read(0, 8))
            head = self.read(0, min(self.size, 8 + min(n, 100_000_000)))
            self._header = parse_header(head, self.size, self.name)
        return self._header

    def pieces(self, start: int, end: int) -> list[Piece]:
        return [self._layout.piece(i) for i in self._layout.covering(start, end)]

    def chunk_ids(self, start: int, end: int) -> tuple[ObjectId, ...] | None:
        found = self._layout.exact(start, end)
        if found is None:
            return None
        return tuple(self.manifest.chunks[i].id for i in found)

    def read(self, start: int, end: int) -> bytes:
        parts = []
        for index in self._layout.covering(start, end):
            piece = self._layout.piece(index)
            data = self._chunk(index)
            lo, hi = max(start, piece.offset), min(end, piece.end)
            parts.append(data[lo - piece.offset : hi - piece.offset])
        return parts[0] if len(parts) == 1 else b"".join(parts)


class DiskTensorFile:
    """A safetensors file in a folder, cut the way ``commit`` would cut it; ids hashed lazily."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self.size = os.fstat(self._fd).st_size
            if self.size == 0:
                raise InvalidInput(f"{name}: empty file is not a safetensors file")
            try:
                mapped = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
            except OSError as exc:
                if not cannot_map(exc):
                    raise
                raise unmappable(name, exc) from exc
            with mapped as data:
                view = memoryview(data)
                try:
                    plan = plan_file(path, view, name)
                finally:
                    view.release()
        except BaseException:
            os.close(self._fd)
            raise
        assert plan.header is not None
        self._header = plan.header
        self._layout = _Layout([Piece(s.offset, s.length) for s in plan.spans])
        self._ids: dict[int, ObjectId] = {}

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DiskTensorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def header(self) -> SafetensorsHeader:
        return self._header

    def pieces(self, start: int, end: int) -> list[Piece]:
        return [self._layout.piece(i) for i in self._layout.covering(start, end)]

    def chunk_ids(self, start: int, end: int) -> tuple[ObjectId, ...] | None:
        found = self._layout.exact(start, end)
        if found is None:
            return None
        out = []
        for index in found:
            if index not in self._ids:
                piece = self._layout.piece(index)
                self._ids[index] = hash_bytes(self.read(piece.offset, piece.end))
            out.append(self._ids[index])
        return tuple(out)

    def read(self, start: int, end: int) -> bytes:
        data = os.pread(self._fd, end - start, start)
        if len(data) != end - start:
            raise MvcError(f"{self.name} changed while it was being read", hint="run again")
        return data


def tensor_windows(
    source: TensorFile, start: int, end: int, unit: int, block: int | None = None
) -> Iterator[tuple[int, int]]:
    """Consecutive element-aligned windows tiling [start, end), each inside one chunk of
    ``source`` where the chunks allow it, and at most ``block`` bytes (default BLOCK_BYTES)."""
    block = block or BLOCK_BYTES
    block = max(unit, block - block % unit)
    cursor = start
    for piece in source.pieces(start, end):
        piece_end = min(end, piece.end)
        while cursor < piece_end:
            stop = min(piece_end, cursor + block)
            if (stop - start) % unit:  # a chunk edge inside an element: run on to whole ones
                stop = min(end, stop + unit - (stop - start) % unit)
            yield cursor, stop
            cursor = stop
    while cursor < end:  # only if the layout does not cover the range (never for our files)
        stop = min(end, cursor + block)
        yield cursor, stop
        cursor = stop


# --- decoding -------------------------------------------------------------------------------------

_NUMPY_NAMES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "<u2",
    "I16": "<i2",
    "U32": "<u4",
    "I32": "<i4",
    "U64": "<u8",
    "I64": "<i8",
    "F16": "<f2",
    "F32": "<f4",
    "F64": "<f8",
    "C64": "<c8",
}
_ML_DTYPES = {
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F4": "float4_e2m1fn",
    "F6_E2M3": "float6_e2m3fn",
    "F6_E3M2": "float6_e3m2fn",
}
FLOAT_DTYPES = frozenset(("F16", "F32", "F64", "C64", *_ML_DTYPES))


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """The numpy dtype of one element (sub-byte dtypes: one element per byte, as ml_dtypes)."""
    import numpy as np

    if dtype in _NUMPY_NAMES:
        return np.dtype(_NUMPY_NAMES[dtype])
    if dtype in _ML_DTYPES:
        import ml_dtypes

        found: np.dtype[Any] = np.dtype(getattr(ml_dtypes, _ML_DTYPES[dtype]))
        return found
    raise InvalidInput(f"unknown safetensors dtype {dtype!r}")


def element_unit(dtype: str) -> int:
    """Bytes that hold a whole number of elements (1 element, or 2 for F4, 4 for F6)."""
    return DTYPE_SIZES[dtype]


def element_count(nbytes: int, dtype: str) -> int:
    return nbytes * 8 // DTYPE_BITS[dtype]


def _unpack_bits(buf: bytes | memoryview, dtype: str) -> np.ndarray:
    """Sub-byte elements, one per uint8."""
    import numpy as np

    raw = np.frombuffer(buf, dtype=np.uint8)
    if DTYPE_BITS[dtype] == 4:
        out = np.empty(raw.size * 2, dtype=np.uint8)
        out[0::2] = raw & 0x0F
        out[1::2] = raw >> 4
        return out
    groups = raw.reshape(-1, 3).astype(np.uint32)
    word = groups[:, 0] | (groups[:, 1] << 8) | (groups[:, 2] << 16)
    out = np.empty((groups.shape[0], 4), dtype=np.uint8)
    for k in range(4):
        out[:, k] = (word >> (6 * k)) & 0x3F
    return out.reshape(-1)


def _pack_bits(codes: np.ndarray, dtype: str) -> bytes:
    import numpy as np

    codes = codes.astype(np.uint8)
    if DTYPE_BITS[dtype] == 4:
        return bytes((codes[0::2] & 0x0F) | ((codes[1::2] & 0x0F) << 4))
    group = codes.reshape(-1, 4).astype(np.uint32) & 0x3F
    word = group[:, 0] | (group[:, 1] << 6) | (group[:, 2] << 12) | (group[:, 3] << 18)
    out = np.empty((group.shape[0], 3), dtype=np.uint8)
    for k in range(3):
        out[:, k] = (word >> (8 * k)) & 0xFF
    return out.reshape(-1).tobytes()


def element_bits(buf: bytes | memoryview, dtype: str) -> np.ndarray:
    """Each element's bit pattern as an unsigned integer: equal bits means an unchanged element."""
    import numpy as np

    if DTYPE_BITS[dtype] < 8:
        return _unpack_bits(buf, dtype)
    width = DTYPE_BITS[dtype] // 8
    return np.frombuffer(buf, dtype=np.dtype(f"<u{width}"))


def decode(buf: bytes | memoryview, dtype: str) -> np.ndarray:
    """The elements in ``buf`` as a 1-D array of their own dtype."""
    import numpy as np

    if DTYPE_BITS[dtype] < 8:
        return _unpack_bits(buf, dtype).view(numpy_dtype(dtype))
    return np.frombuffer(buf, dtype=numpy_dtype(dtype))


def to_float(values: np.ndarray, dtype: str, *, wide: bool = True) -> np.ndarray:
    """Values as float64 (``wide``) or float32; complex64 as complex128/complex64."""
    import numpy as np

    if dtype == "C64":
        return values.astype(np.complex128 if wide else np.complex64)
    return values.astype(np.float64 if wide else np.float32)


def encode(values: np.ndarray, dtype: str) -> bytes:
    """Float values cast (round to nearest) to a safetensors dtype, as its little-endian bytes."""
    target = numpy_dtype(dtype)
    cast = values.astype(target)
    if DTYPE_BITS[dtype] < 8:
        import numpy as np

        return _pack_bits(cast.view(np.uint8), dtype)
    return cast.tobytes()


# --- statistics of a changed tensor -----------------------------------------------------------


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """Re(<x, y>) in float64, without BLAS: its threads cost more than they save on blocks this
    small, and a lot more on a busy machine."""
    import numpy as np

    if np.iscomplexobj(x):
        return float(np.einsum("i,i->", np.conj(x), y).real)
    return float(np.einsum("i,i->", x, y))


@dataclass
class TensorStats:
    """Running sums over a tensor's elements, in float64 (complex128 for C64)."""

    elements: int = 0
    changed: int = 0
    nonfinite: int = 0
    max_abs: float = 0.0
    sum_d2: float = 0.0
    sum_a2: float = 0.0
    sum_b2: float = 0.0
    sum_ab: float = 0.0

    def add_identical(self, buf: bytes | memoryview, dtype: str) -> None:
        """A piece whose bytes are the same on both sides: only the norms move."""
        import numpy as np

        values = to_float(decode(buf, dtype), dtype)
        self.elements += values.size
        finite = np.isfinite(values)
        if not finite.all():
            self.nonfinite += int(values.size - np.count_nonzero(finite))
            values = values[finite]
        square = _dot(values, values)
        self.sum_a2 += square
        self.sum_b2 += square
        self.sum_ab += square

    def add(self, a_buf: bytes | memoryview, b_buf: bytes | memoryview, dtype: str) -> None:
        import numpy as np

        self.changed += int(
            np.count_nonzero(element_bits(a_buf, dtype) != element_bits(b_buf, dtype))
        )
        a = to_float(decode(a_buf, dtype), dtype)
        b = to_float(decode(b_buf, dtype), dtype)
        self.elements += a.size
        finite = np.isfinite(a) & np.isfinite(b)
        if not finite.all():
            self.nonfinite += int(a.size - np.count_nonzero(finite))
            a, b = a[finite], b[finite]
        if a.size == 0:
            return
        d = b - a
        self.max_abs = max(self.max_abs, float(np.max(np.abs(d))))
        self.sum_d2 += _dot(d, d)
        self.sum_a2 += _dot(a, a)
        self.sum_b2 += _dot(b, b)
        self.sum_ab += _dot(a, b)

    def to_json(self) -> dict[str, Any]:
        # Hand-written: the document is statistics derived from the running sums, not the sums.
        import math

        norm_a, norm_b = math.sqrt(self.sum_a2), math.sqrt(self.sum_b2)
        rel = math.sqrt(self.sum_d2) / norm_a if norm_a > 0 else None
        cosine = self.sum_ab / (norm_a * norm_b) if norm_a > 0 and norm_b > 0 else None
        if cosine is not None:
            cosine = max(-1.0, min(1.0, cosine))

        def finite(value: float | None) -> float | None:
            return value if value is not None and math.isfinite(value) else None  # JSON-safe

        return {
            "elements": self.elements,
            "changed_elements": self.changed,
            "changed_fraction": self.changed / self.elements if self.elements else 0.0,
            "max_abs_diff": finite(self.max_abs),
            "relative_l2": finite(rel),
            "cosine": finite(cosine),
            "nonfinite": self.nonfinite,
        }
