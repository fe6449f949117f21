"""Reading a safetensors header without trusting it.

A safetensors file is ``u64 N (little-endian) | N bytes of UTF-8 JSON | data buffer``. The JSON
object maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets
relative to the data buffer) and may hold ``"__metadata__": {str: str}``.

``parse_header`` accepts a header only if it is at least as strict as the reference ``safetensors``
library (0.8) would be, and stricter where the format leaves room for confusion:

- ``8 + N <= file size``, ``2 <= N <= 100 MB``; the header is UTF-8, starts with ``{`` and holds
  one JSON object followed only by space padding; no NaN/Infinity, no duplicate keys at any level,
  no lone surrogates; no control characters (NUL, ESC…) in tensor names or metadata keys;
- every tensor has exactly the keys dtype, shape and data_offsets; a known dtype; a shape of
  non-negative integers whose element count fits in 64 bits; ``end - begin`` equal to the bytes
  its elements take (sub-byte dtypes must fill whole bytes);
- sorted by offset, the tensors tile the data buffer exactly: no overlap, no hole, and the last one
  ends where the file ends (a truncated or over-long file is refused).

Every failure is ``InvalidInput`` naming the file; no other exception escapes for any input bytes.
On success the returned offsets are absolute file offsets that lie inside the file and cover
``[header_size, file_size)`` contiguously.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Any, NoReturn

from mvc.errors import InvalidInput, MvcError, NotFound

MAX_HEADER = 100_000_000  # the reference library's limit
MIN_HEADER = 2  # "{}"
_U64 = struct.Struct("<Q")
_U64_MAX = (1 << 64) - 1
_KEYS = frozenset(("dtype", "shape", "data_offsets"))
_METADATA = "__metadata__"
HINT = "fix or re-export the file, or commit it with --raw to store it as opaque bytes"

# Bits per element of every dtype safetensors 0.8 knows.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

# Bytes per element; for sub-byte dtypes, the smallest whole number of bytes that holds a whole
# number of elements (F4: 1 byte = 2 elements, F6: 3 bytes = 4 elements). Splitting a tensor at
# multiples of this never cuts an element.
DTYPE_SIZES: dict[str, int] = {
    dtype: bits // 8 if bits % 8 == 0 else {4: 1, 6: 3}[bits] for dtype, bits in DTYPE_BITS.items()
}

# Dtypes whose bytes are worth regrouping by position (their exponent bytes compress).
# C64 is two interleaved F32s.
_FLOAT_WIDTHS = {"F16": 2, "BF16": 2, "F32": 4, "C64": 4, "F64": 8}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute file offset of the first byte
    end: int  # absolute file offset just past the last byte

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    header_size: int  # 8 + N: where the data buffer starts
    tensors: tuple[TensorInfo, ...]  # sorted by start
    metadata: dict[str, str]


def looks_like_safetensors(path: str) -> bool:
    return path.lower().endswith(".safetensors")


def float_width(dtype: str) -> int | None:
    """The byte-grouping width of a floating-point dtype; None for ints, bools and fp8/fp4/fp6."""
    return _FLOAT_WIDTHS.get(dtype)


class _Malformed(Exception):
    """Internal: raised while parsing, turned into InvalidInput with the file's name."""


def _fail(detail: str) -> NoReturn:
    raise _Malformed(detail)


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                _fail(f"duplicate key {_short(key)}")
            seen.add(key)
    return result


def _no_constants(token: str) -> NoReturn:
    _fail(f"{token} is not allowed in JSON")


def _is_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        return False
    return True


def _has_control(text: str) -> bool:
    """C0 controls and DEL: a NUL truncates names in C tools, an ESC rewrites terminals."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _is_u64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U64_MAX


def _decode_json(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"header is not UTF-8 ({exc.reason} at byte {8 + exc.start})")
    if not text.startswith("{"):
        _fail("header does not start with '{'")
    decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    try:
        value, end = decoder.raw_decode(text)
    except json.JSONDecodeError as exc:
        _fail(f"header is not valid JSON: {exc.msg} at character {exc.pos}")
    except (ValueError, RecursionError) as exc:  # e.g. an integer with too many digits
        _fail(f"header is not valid JSON: {exc}")
    if text[end:].strip(" "):
        _fail("header has bytes other than space padding after its JSON object")
    if not isinstance(value, dict):
        _fail("header is not a JSON object")
    return value


def _parse_metadata(value: Any) -> dict[str, str]:
    if value is None:  # the reference library accepts an explicit null
        return {}
    if not isinstance(value, dict):
        _fail("__metadata__ is not an object")
    for key, item in value.items():
        if not _is_text(key) or not _is_text(item):
            _fail(f"__metadata__ value of {_short(str(key))} is not a string")
        if _has_control(key):
            _fail(f"__metadata__ key {_short(key)} has a control character")
    return dict(value)


def _element_count(name: str, shape: Any) -> int:
    if not isinstance(shape, list):
        _fail(f"tensor {_short(name)} shape is not a list")
    count = 1
    for dim in shape:
        if not _is_u64(dim):
            _fail(f"tensor {_short(name)} shape has {dim!r:.40}, not a non-negative integer")
        count *= dim
        if count > _U64_MAX:  # as the reference library: checked multiplication, left to right
            _fail(f"tensor {_short(name)} shape overflows 64 bits")
    return count


def _parse_tensor(name: str, entry: Any, base: int) -> TensorInfo:
    if not _is_text(name):
        _fail(f"tensor name {_short(name)} is not valid text")
    if _has_control(name):
        _fail(f"tensor name {_short(name)} has a control character")
    if not isinstance(entry, dict):
        _fail(f"tensor {_short(name)} is not an object")
    if set(entry) != _KEYS:
        missing, extra = sorted(_KEYS - set(entry)), sorted(set(entry) - _KEYS)
        what = f"lacks {', '.join(missing)}" if missing else f"has unknown key {_short(extra[0])}"
        _fail(f"tensor {_short(name)} {what}")
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        _fail(f"tensor {_short(name)} has unknown dtype {dtype!r:.40}")
    count = _element_count(name, entry["shape"])
    offsets = entry["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_u64, offsets))):
        _fail(f"tensor {_short(name)} data_offsets is not a pair of non-negative integers")
    begin, end = offsets
    if end < begin:
        _fail(f"tensor {_short(name)} data_offsets end before they begin ({begin} > {end})")
    bits = count * DTYPE_BITS[dtype]
    if bits % 8:
        _fail(f"tensor {_short(name)}: {count} elements of {dtype} do not fill whole bytes")
    if bits // 8 != end - begin:
        shape = _short(str(entry["shape"]), 40)
        _fail(
            f"tensor {_short(name)} is {dtype} {shape} = {bits // 8} bytes, "
            f"but its data_offsets span {end - begin}"
        )
    return TensorInfo(name, dtype, tuple(entry["shape"]), base + begin, base + end)


def _parse(head: bytes | bytearray | memoryview, file_size: int) -> SafetensorsHeader:
    if file_size < 8 or len(head) < 8:
        _fail(f"file is {file_size} bytes, too short for the 8-byte header length")
    (n,) = _U64.unpack(bytes(head[:8]))
    if n < MIN_HEADER:
        _fail(f"header length {n} is too small")
    if n > MAX_HEADER:
        _fail(f"header length {n} is over the {MAX_HEADER}-byte limit")
    header_size = 8 + n
    if header_size > file_size:
        _fail(f"header length {n} runs past the end of the file ({file_size} bytes)")
    if len(head) < header_size:
        _fail(f"only {len(head)} of the {header_size} header bytes were read")
    value = _decode_json(bytes(head[8:header_size]))
    metadata = _parse_metadata(value.pop(_METADATA, None))
    tensors = sorted(
        (_parse_tensor(name, entry, header_size) for name, entry in value.items()),
        key=lambda t: (t.start, t.end, t.name),
    )
    cursor, previous = header_size, ""
    for tensor in tensors:
        if tensor.start < cursor:
            _fail(f"tensor {_short(tensor.name)} offsets overlap {_short(previous)}")
        if tensor.start > cursor:
            gap = tensor.start - cursor
            _fail(f"hole of {gap} bytes before tensor {_short(tensor.name)}")
        cursor, previous = tensor.end, tensor.name
    if cursor > file_size:
        _fail(f"file is truncated: its tensors need {cursor} bytes, the file has {file_size}")
    if cursor < file_size:
        _fail(f"{file_size - cursor} bytes after the last tensor are not covered by any tensor")
    return SafetensorsHeader(header_size, tuple(tensors), metadata)


def parse_header(
    head: bytes | bytearray | memoryview, file_size: int, name: str
) -> SafetensorsHeader:
    """Validate the header at the start of ``head`` against a file of ``file_size`` bytes.

    ``head`` holds at least the first ``8 + N`` bytes of the file (the whole file is fine).
    """
    try:
        return _parse(head, file_size)
    except _Malformed as exc:
        raise InvalidInput(f"{name}: malformed safetensors header: {exc}", hint=HINT) from None


def read_header(path: str, name: str | None = None) -> SafetensorsHeader:
    """Read and validate only the header of the file at ``path`` (the data is not read)."""
    label = name if name is not None else path
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
            if len(head) == 8:
                (n,) = _U64.unpack(head)
                if MIN_HEADER <= n <= MAX_HEADER and 8 + n <= size:
                    head += handle.read(n)
    except FileNotFoundError as exc:
        raise NotFound(f"{label}: no such file") from exc
    except OSError as exc:
        raise MvcError(f"{label}: cannot read: {exc.strerror or exc}") from exc
    return parse_header(head, size, label)
