"""Object envelopes: how an object's bytes are stored, never what they are.

An object file is ``MAGIC | u32 header length | header | payload``. The header is canonical JSON
describing the codec (a large raw one followed by up to ``PAGE - 1`` spaces, see ``encode``);
the object's id is always the blake3 of the *decoded* bytes, so changing codec (compressing in
a repack, re-delta-ing) never changes an id.

Codecs:
  raw    payload is the bytes.
  zstd   payload is one zstd frame.
  group  bytes are regrouped by position within fixed-width elements (byte ``k`` of every
         element forms stream ``k``), each stream stored raw or zstd, whichever is smaller. The
         exponent bytes of floats compress; most mantissa bytes are noise and stay raw.
  delta  the bytes are XOR'd with those of a base object of equal length (or, with ``x: sub``,
         the base's ``w``-byte elements subtracted) and the result encoded with an inner codec
         (typically group). Chains are bounded (``MAX_DELTA_DEPTH``).

Compressed envelopes carry ``sb3``, the blake3 of the payload, so a transfer can verify stored
bytes without decoding them.

``decode_view`` makes new memory for what it decodes; ``decode_into`` (a checkout's path) writes
into the caller's buffer, with a ``DecodeScratch`` of buffers reused chunk after chunk.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from mvc.canonical import decode_json, encode_canonical
from mvc.errors import CorruptObject
from mvc.ids import new_hasher

MAGIC = b"MVC\x01"
_HEADER_LEN = struct.Struct("<I")
MAX_HEADER = 1 << 20
MAX_DELTA_DEPTH = 8
PAGE = 4096
#: Raw payloads of this size or more are page-aligned like their source (``encode``'s
#: ``offset``): at most PAGE - 1 spaces of header, 0.4% of such an object.
ALIGN_MIN = 1 << 20
SAMPLE = 64 << 10
# A stream is compressed only when the sample shrinks below this fraction.
WORTH_IT = 0.92
ZSTD_LEVEL = 1
# Decoded sizes up to this are allocated in one go when the zstd frame agrees with the header.
_ZSTD_ONE_SHOT = 256 << 20
#: Compressed input fed per step when the decoded size is not trusted (bounds each step's output).
_BOUNDED_STEP = 512
#: No object is larger than this (chunks are at most 16 MiB; metadata far smaller): an envelope
#: claiming more is refused before anything is decoded or allocated.
MAX_OBJECT = 256 << 20

Buffer = bytes | bytearray | memoryview
BaseLoader = Callable[[str], bytes]


def _zstd_compress(data: Buffer, level: int = ZSTD_LEVEL) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level).compress(data)


def _zstd_decompress(data: Buffer, size: int) -> bytes:
    """Exactly one zstd frame that decodes to ``size`` bytes, nothing after it. Memory stays
    within about ``size`` plus one step's output, whatever the frame claims."""
    import zstandard

    try:
        if size <= _ZSTD_ONE_SHOT and zstandard.frame_content_size(data) == size:
            # zstd itself checks the frame decodes to the size it declares.
            decoder = zstandard.ZstdDecompressor().decompressobj()
            out = decoder.decompress(data)
        else:
            # The size comes from a header we do not trust: never allocate it up front.
            decoder, out = _zstd_decompress_bounded(data, size)
    except zstandard.ZstdError as exc:
        raise CorruptObject(f"zstd payload does not decode: {exc}") from exc
    if len(out) != size:
        raise CorruptObject(f"zstd payload decoded to {len(out)} or more bytes, expected {size}")
    if not decoder.eof or decoder.unused_data:
        raise CorruptObject("zstd payload is not exactly one complete frame")
    return out


def _zstd_decompress_into(data: Buffer, out: Any, scratch: DecodeScratch) -> None:
    """Exactly one zstd frame decoded into ``out``, a writable uint8 array of the size the
    frame must decode to: no allocation, and memory bounded by ``out`` whatever the frame
    claims. Refused: a frame that decodes to fewer or more bytes, or bytes after the frame."""
    import zstandard

    view = memoryview(data)
    target = memoryview(out)
    done = 0
    try:
        reader = scratch.decompressor().stream_reader(view, read_across_frames=False)
        with reader:
            while done < len(target):
                got = reader.readinto(target[done:])
                if not got:
                    break
                done += got
            more = reader.read(1) if done == len(target) else b""
    except zstandard.ZstdError as exc:
        raise CorruptObject(f"zstd payload does not decode: {exc}") from exc
    if done != len(target) or more:
        raise CorruptObject(
            f"zstd payload decoded to {done + len(more)}{' or more' if more else ''} bytes, "
            f"expected {len(target)}"
        )
    if zstd_frame_length(lambda at, n: bytes(view[at : at + n]), 0, len(view)) != len(view):
        raise CorruptObject("zstd payload is not exactly one complete frame")


class DecodeScratch:
    """Buffers that one thread's decodes reuse, chunk after chunk (``decode_into``): no fresh
    allocation, so no page faults and no zeroing of new memory per chunk. Grown to the largest
    size asked for under each name; never shared between threads (nor is its zstd context)."""

    def __init__(self) -> None:
        self._arrays: dict[str, Any] = {}
        self._decompressor: Any = None

    def array(self, name: str, size: int) -> Any:
        """A writable uint8 array of ``size`` bytes, reusing the memory of the last one of
        this name (its old contents are overwritten by whoever asks next)."""
        import numpy as np

        held = self._arrays.get(name)
        if held is None or len(held) < size:
            held = self._arrays[name] = np.empty(size, dtype=np.uint8)
        return held[:size]

    def decompressor(self) -> Any:
        if self._decompressor is None:
            import zstandard

            self._decompressor = zstandard.ZstdDecompressor()
        return self._decompressor


def _zstd_decompress_bounded(data: Buffer, size: int) -> tuple[Any, bytes]:
    """Decompress in small steps of input, stopping once more than ``size`` bytes come out.
    One step of ``_BOUNDED_STEP`` input bytes yields at most ~32768 times as much."""
    import zstandard

    decoder = zstandard.ZstdDecompressor().decompressobj()
    view = memoryview(data)
    pieces: list[bytes] = []
    total = 0
    for start in range(0, len(view), _BOUNDED_STEP):
        if decoder.eof:
            raise CorruptObject("zstd payload is not exactly one complete frame")
        piece = decoder.decompress(view[start : start + _BOUNDED_STEP])
        total += len(piece)
        if total > size:
            raise CorruptObject(f"zstd payload decodes to more than the {size} bytes expected")
        pieces.append(piece)
    return decoder, b"".join(pieces)


def _pays(data: Buffer) -> bool:
    sample = memoryview(data)[:SAMPLE]
    if len(sample) < 512:
        return False
    return len(_zstd_compress(sample)) < WORTH_IT * len(sample)


def _stored_checksum(parts: Sequence[Buffer]) -> str:
    hasher = new_hasher()
    for part in parts:
        hasher.update(part)
    return str(hasher.hexdigest())


def _frame(
    header: dict[str, Any], payload: Sequence[Buffer], offset: int | None = None
) -> list[Buffer]:
    if header["c"] != "raw":
        header = {**header, "sb3": _stored_checksum(payload)}
    head = encode_canonical(header)
    if offset is not None and header["c"] == "raw" and header["n"] >= ALIGN_MIN:
        head += b" " * _padding(len(head), offset)
    return [MAGIC + _HEADER_LEN.pack(len(head)) + head, *payload]


def _padding(head_length: int, offset: int) -> int:
    """Spaces after a raw header that put its payload at ``offset``'s place within a page: a
    kernel copy between the object file and the model file then moves whole pages (a copy
    between different in-page offsets measured 0.43 s per GiB here, against 0.31 s)."""
    return (offset - 8 - head_length) % PAGE


def split_streams(data: Buffer, width: int) -> list[bytes]:
    """Byte ``k`` of every ``width``-byte element, as ``width`` streams, plus the odd tail."""
    import numpy as np

    usable = len(data) - len(data) % width
    grid = np.frombuffer(data, dtype=np.uint8, count=usable).reshape(-1, width)
    streams = [grid[:, k].tobytes() for k in range(width)]
    streams.append(bytes(memoryview(data)[usable:]))
    return streams


def join_streams(streams: Sequence[Buffer], width: int) -> bytes:
    return bytes(_join_array(streams, width).tobytes())


def _join_array(streams: Sequence[Buffer], width: int) -> Any:
    """``split_streams`` undone, into one new writable uint8 array (the odd tail included)."""
    import numpy as np

    out = np.empty(len(streams[0]) * width + len(streams[width]), dtype=np.uint8)
    _join_into(streams, width, out)
    return out


#: Elements un-grouped per step: the step's planes and its output (1-4 MiB) stay in the CPU's
#: caches while each is combined, where whole-chunk passes go out to memory each time.
_JOIN_STEP = 1 << 18


def _join_into(
    streams: Sequence[Buffer],
    width: int,
    out: Any,
    scratch: DecodeScratch | None = None,
    xor_with: Buffer | None = None,
) -> None:
    """``split_streams`` undone into ``out`` (a writable uint8 array of the decoded size), and
    with ``xor_with`` that buffer XOR'd in on the way (a delta undone in the same pass); when
    ``xor_with`` is ``out`` itself, the joined bytes are XOR'd into what ``out`` holds.

    The planes are combined pairwise as little-endian integers (byte ``k`` of an element is
    bits ``8k..8k+7``): two byte planes make 16-bit halves, two of those 32-bit words, and so
    on, each step a vectorised cast, shift and or. numpy's byte-strided copy (``np.stack``)
    moves one byte per iteration: this is 1.5-2.5x faster on 4-byte elements."""
    import numpy as np

    count, tail = len(streams[0]), len(streams[width])
    body = count * width
    planes = [np.frombuffer(streams[k], dtype=np.uint8, count=count) for k in range(width)]
    words = out[:body].view(f"<u{width}")
    in_place = xor_with is out
    other = None if xor_with is None or in_place else np.frombuffer(xor_with, dtype=np.uint8)
    other_words = None if other is None else other[:body].view(f"<u{width}")
    step = min(_JOIN_STEP, count) or 1
    temps: dict[tuple[int, int], Any] = {}

    def buffer(name: str, size: int) -> Any:
        """A uint8 array of ``size`` bytes: ``scratch``'s, reused, where there is one."""
        return scratch.array(name, size) if scratch is not None else np.empty(size, np.uint8)

    joined_step = None
    if in_place:  # each step is joined beside ``out``, then XOR'd into it
        joined_step = buffer("joined", step * width).view(f"<u{width}")
    for start in range(0, count, step):
        end = min(count, start + step)
        level: list[Any] = [plane[start:end] for plane in planes]
        size = 1
        while len(level) > 1:
            size *= 2
            joined = []
            for pair in range(0, len(level), 2):
                if len(level) == 2:
                    target = words[start:end] if joined_step is None else joined_step[: end - start]
                else:
                    key = (size, pair)
                    if key not in temps:
                        temps[key] = buffer(f"join{size}.{pair}", step * size).view(f"<u{size}")
                    target = temps[key][: end - start]
                np.copyto(target, level[pair + 1])
                np.left_shift(target, 4 * size, out=target)
                np.bitwise_or(target, level[pair], out=target)
                joined.append(target)
            level = joined
        if joined_step is not None:
            np.bitwise_xor(words[start:end], level[0], out=words[start:end])
        elif other_words is not None:
            np.bitwise_xor(words[start:end], other_words[start:end], out=words[start:end])
    if tail:
        rest = np.frombuffer(streams[width], dtype=np.uint8)
        if in_place:
            np.bitwise_xor(out[body:], rest, out=out[body:])
            return
        out[body:] = rest
        if other is not None:
            np.bitwise_xor(out[body:], other[body:], out=out[body:])


def _raw_header(size: int, elem_width: int | None) -> dict[str, Any]:
    # The element width rides along so a later repack knows how to group the bytes.
    return {"c": "raw", "n": size, "w": elem_width} if elem_width else {"c": "raw", "n": size}


def element_width(stored: Buffer) -> int | None:
    header, _ = read_header(stored)
    width = header.get("w") if header["c"] in ("raw", "group") else None
    return width if width in (2, 4, 8) else None


def _encode_plain(
    data: Buffer, elem_width: int | None, compress: bool
) -> tuple[dict[str, Any], list[Buffer]]:
    size = len(data)
    if compress and elem_width in (2, 4, 8) and size >= 4 * SAMPLE:
        streams = split_streams(data, elem_width)
        specs: list[dict[str, Any]] = []
        payload: list[Buffer] = []
        for stream in streams:
            if _pays(stream):
                packed = _zstd_compress(stream)
                specs.append({"c": "zstd", "n": len(stream), "z": len(packed)})
                payload.append(packed)
            else:
                specs.append({"c": "raw", "n": len(stream)})
                payload.append(stream)
        if any(spec["c"] == "zstd" for spec in specs):
            return {"c": "group", "n": size, "w": elem_width, "s": specs}, payload
        return _raw_header(size, elem_width), [data]
    if compress and _pays(data):
        packed = _zstd_compress(data)
        if len(packed) < size:
            return {"c": "zstd", "n": size}, [packed]
    return _raw_header(size, elem_width), [data]


def encode(
    data: Buffer,
    *,
    elem_width: int | None = None,
    compress: bool = True,
    meta: bool = False,
    offset: int | None = None,
) -> list[Buffer]:
    """The stored form of ``data`` as a list of buffers to write in order (no big copies).

    ``meta`` marks metadata objects (manifests, trees, versions…) so reachability walks can
    tell them from chunks without decoding chunk data. ``offset``: where ``data`` sits in the
    file it came from; a large raw envelope then pads its header to match that offset's place
    in a page (JSON ignores the trailing spaces, so every reader reads it as before).
    """
    header, payload = _encode_plain(data, elem_width, compress)
    if meta:
        header = {**header, "m": 1}
    return _frame(header, payload, offset)


def is_delta(stored: Buffer) -> bool:
    """Whether an envelope (or its first part, which holds the header) is a delta."""
    header, _ = read_header(stored)
    return bool(header["c"] == "delta")


def is_raw(stored: Buffer) -> bool:
    """Whether an envelope (or its first part) stores its bytes as they are."""
    header, _ = read_header(stored)
    return bool(header["c"] == "raw")


def is_meta(stored: Buffer) -> bool:
    header, _ = read_header(stored)
    return header.get("m") == 1


#: Delta transforms: ``xor`` (the default, no ``x`` field) and ``sub``, the difference of
#: little-endian unsigned ``w``-byte elements modulo 2**(8w).
TRANSFORMS = ("xor", "sub")


def _uints(width: int) -> Any:
    import numpy as np

    return {2: np.uint16, 4: np.uint32, 8: np.uint64}[width]


def _apply(transform: str, width: int | None, a: Buffer, b: Buffer, *, undo: bool) -> bytes:
    """``a`` XOR ``b``; for ``sub``, ``a - b`` (``undo``: ``a + b``) element-wise."""
    import numpy as np

    if transform == "sub":
        if width not in (2, 4, 8) or len(a) % width:
            raise CorruptObject("subtraction delta without a whole number of elements")
        kind = np.dtype(_uints(width)).newbyteorder("<")
        x, y = np.frombuffer(a, dtype=kind), np.frombuffer(b, dtype=kind)
        return (x + y if undo else x - y).astype(kind).tobytes()
    return np.bitwise_xor(
        np.frombuffer(a, dtype=np.uint8), np.frombuffer(b, dtype=np.uint8)
    ).tobytes()


def encode_delta(
    data: Buffer,
    base_id: str,
    base: Buffer,
    *,
    base_depth: int,
    elem_width: int | None,
    transform: str = "xor",
) -> list[Buffer] | None:
    """A delta envelope against ``base``, or None when it would not be smaller or is not allowed
    (``sub`` needs an element width that divides the length)."""
    if len(base) != len(data) or base_depth + 1 > MAX_DELTA_DEPTH:
        return None
    if transform == "sub" and (elem_width not in (2, 4, 8) or len(data) % (elem_width or 1)):
        return None
    with np_errstate():
        diff = _apply(transform, elem_width, data, base, undo=False)
    inner, payload = _encode_plain(diff, elem_width, compress=True)
    if inner["c"] == "raw":
        return None
    header: dict[str, Any] = {
        "c": "delta",
        "n": len(data),
        "base": base_id,
        "d": base_depth + 1,
        "i": inner,
    }
    if transform == "sub":
        header = {**header, "x": "sub", "w": elem_width}
    return _frame(header, payload)


def np_errstate() -> Any:
    """Wrapping integer arithmetic is intended: no overflow warnings (numpy raises none for
    arrays, but keep it explicit and cheap)."""
    import numpy as np

    return np.errstate(over="ignore")


def read_header(stored: Buffer) -> tuple[dict[str, Any], int]:
    """The header of an envelope and the offset where its payload starts."""
    view = memoryview(stored)
    if len(view) < 8 or bytes(view[:4]) != MAGIC:
        raise CorruptObject("object does not start with the mvc envelope magic")
    (length,) = _HEADER_LEN.unpack(view[4:8])
    if length > MAX_HEADER or 8 + length > len(view):
        raise CorruptObject("object envelope header length is out of range")
    try:
        header = decode_json(bytes(view[8 : 8 + length]), "object envelope header")
    except Exception as exc:  # our InvalidInput, re-raised as corruption of this object
        raise CorruptObject(str(exc)) from exc
    if not isinstance(header, dict) or not isinstance(header.get("c"), str):
        raise CorruptObject("object envelope header is not a codec description")
    return header, 8 + length


def _int(header: dict[str, Any], key: str) -> int:
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptObject(f"object envelope field {key!r} is not a size")
    return value


def _decode_plain(header: dict[str, Any], payload: memoryview) -> bytes:
    out = _decode_plain_any(header, payload)
    return out if isinstance(out, bytes) else bytes(out.tobytes())


def _decode_plain_any(header: dict[str, Any], payload: memoryview) -> Any:
    """A self-contained payload decoded: bytes, or for a grouped one the writable numpy uint8
    array its streams were joined into (a delta is undone in it, in place, saving a copy)."""
    codec = header["c"] if isinstance(header, dict) else None
    size = _int(header, "n")
    if codec == "raw":
        if len(payload) != size:
            raise CorruptObject(f"raw payload has {len(payload)} bytes, header says {size}")
        return bytes(payload)
    if codec == "zstd":
        return _zstd_decompress(payload, size)
    if codec == "group":
        width, streams = _group_streams(header, payload, _zstd_decompress)
        out = _join_array(streams, width)
        if len(out) != size:
            raise CorruptObject("grouped envelope decodes to the wrong size")
        return out
    raise CorruptObject(f"unknown object codec {codec!r}")


def _group_streams(
    header: dict[str, Any],
    payload: memoryview,
    zstd_stream: Callable[[memoryview, int], Buffer],
) -> tuple[int, list[Buffer]]:
    """A grouped payload's element width and its streams (``width`` byte planes, then the
    tail), checked against the stream table: raw streams are read in place, zstd ones
    decoded by ``zstd_stream(frame, decoded_size)``."""
    width = _int(header, "w")
    specs = header.get("s")
    if width not in (2, 4, 8) or not isinstance(specs, list) or len(specs) != width + 1:
        raise CorruptObject("grouped envelope has a bad stream table")
    streams: list[Buffer] = []
    offset = 0
    for spec in specs:
        if not isinstance(spec, dict):
            raise CorruptObject("grouped envelope has a bad stream entry")
        n = _int(spec, "n")
        if spec.get("c") == "zstd":
            z = _int(spec, "z")
            streams.append(zstd_stream(payload[offset : offset + z], n))
            offset += z
        elif spec.get("c") == "raw":
            if offset + n > len(payload):
                raise CorruptObject("grouped envelope stream runs past the payload")
            streams.append(payload[offset : offset + n])  # read in place, not copied
            offset += n
        else:
            raise CorruptObject("grouped envelope has an unknown stream codec")
    if offset != len(payload) or any(len(s) != len(streams[0]) for s in streams[:width]):
        raise CorruptObject("grouped envelope streams do not match the payload")
    return width, streams


def decode(
    stored: Buffer,
    load_base: BaseLoader | None = None,
    *,
    expected_size: int | None = None,
    check_stored: bool = True,
) -> bytes:
    """The object's bytes (see ``decode_view``). The caller verifies them against the id."""
    out = decode_view(stored, load_base, expected_size=expected_size, check_stored=check_stored)
    return out if isinstance(out, bytes) else out.tobytes()


def decode_view(
    stored: Buffer,
    load_base: BaseLoader | None = None,
    *,
    expected_size: int | None = None,
    check_stored: bool = True,
) -> bytes | memoryview:
    """The object's bytes, as ``bytes`` or, for a grouped envelope or a delta over one, a view
    of the new array they were decoded into (no final copy: for a caller that writes them out
    and lets them go). The caller verifies them against the id.

    Before anything is decoded: the size the header claims is at most ``MAX_OBJECT`` and, when
    the caller knows it (a chunk's size from its file manifest), equal to ``expected_size``;
    with ``check_stored``, a compressed payload matches its stored checksum ``sb3``. A caller
    that hashes the result against the id may skip that: the id covers every decoded byte, and
    bytes that decode to nothing (junk after a zstd frame, a grouped stream too long) are
    refused by the decoders themselves.
    """
    header, start = read_header(stored)
    check_size(header, expected_size)
    payload = memoryview(stored)[start:]
    expected_sb3 = header.get("sb3")
    if (
        check_stored
        and header["c"] != "raw"
        and expected_sb3 is not None
        and _stored_checksum([payload]) != expected_sb3
    ):
        raise CorruptObject("its stored bytes do not match their checksum (sb3)")
    if header["c"] != "delta":
        plain = _decode_plain_any(header, payload)
        return plain if isinstance(plain, bytes) else memoryview(plain)
    base_id, inner, transform, width = _delta_fields(header)
    if load_base is None:
        raise CorruptObject("delta object needs its base, which is not available here")
    diff = _decode_plain_any(inner, payload)
    base = load_base(base_id)
    if len(base) != len(diff) or len(diff) != _int(header, "n"):
        raise CorruptObject("delta and its base differ in size")
    with np_errstate():
        if isinstance(diff, bytes):
            return _apply(transform, width, diff, base, undo=True)
        return _undo_in_place(transform, width, diff, base)


def _delta_fields(header: dict[str, Any]) -> tuple[str, dict[str, Any], str, int | None]:
    """A delta envelope's base id, inner codec, transform and element width, checked."""
    base_id = header.get("base")
    inner = header.get("i")
    if not isinstance(base_id, str) or not isinstance(inner, dict) or "c" not in inner:
        raise CorruptObject("delta envelope without a base or inner codec")
    transform = header.get("x", "xor")
    width = header.get("w") if transform == "sub" else None
    if transform not in TRANSFORMS or (transform == "sub" and width not in (2, 4, 8)):
        raise CorruptObject(f"delta envelope with an unknown transform {transform!r}")
    return base_id, inner, transform, width


#: ``decode_into``'s base loader: given a base's id and the output buffer, the base's bytes,
#: or None when it decoded them into that buffer itself (the delta is then undone in place).
BaseInto = Callable[[str, Any], Buffer | None]


def decode_into(
    stored: Buffer,
    out: Any,
    load_base: BaseInto | None,
    scratch: DecodeScratch,
    *,
    expected_size: int | None = None,
) -> None:
    """``decode_view`` into ``out``, a writable uint8 array as long as the object: zstd streams
    are decompressed into ``scratch``'s buffers, raw streams read where they lie in ``stored``,
    and a delta's base is XOR'd in while the streams are joined (one pass over the result).
    The same checks as ``decode_view`` without ``check_stored``: the caller verifies the
    result against the id. ``load_base`` is called before any stream is decoded, so it may
    decode the base with the same ``scratch``, and into ``out`` itself (see ``BaseInto``)."""
    header, start = read_header(stored)
    size = check_size(header, expected_size)
    if len(out) != size:
        raise CorruptObject(f"it claims {size} bytes where {len(out)} are expected")
    payload = memoryview(stored)[start:]
    if header["c"] != "delta":
        _decode_plain_into(header, payload, out, scratch)
        return
    base_id, inner, transform, width = _delta_fields(header)
    if load_base is None:
        raise CorruptObject("delta object needs its base, which is not available here")
    if _int(inner, "n") != size:
        raise CorruptObject("delta and its base differ in size")
    base = load_base(base_id, out)
    if base is not None and len(base) != size:
        raise CorruptObject("delta and its base differ in size")
    if transform == "xor":  # XOR'd into the base's bytes in ``out``, or with ``base``
        _decode_plain_into(inner, payload, out, scratch, xor_with=out if base is None else base)
        return
    if base is None:  # the base is in ``out``: the difference goes beside it, then is added
        diff = scratch.array("diff", size)
        _decode_plain_into(inner, payload, diff, scratch)
        with np_errstate():
            _undo_in_place(transform, width, out, diff)
        return
    _decode_plain_into(inner, payload, out, scratch)
    with np_errstate():
        _undo_in_place(transform, width, out, base)


def _decode_plain_into(
    header: dict[str, Any],
    payload: memoryview,
    out: Any,
    scratch: DecodeScratch,
    xor_with: Buffer | None = None,
) -> None:
    """``_decode_plain_any`` into ``out`` (see ``decode_into``), ``xor_with`` XOR'd in;
    ``xor_with`` may be ``out`` itself: the decoded bytes are then XOR'd into what it holds."""
    import numpy as np

    codec = header["c"] if isinstance(header, dict) else None
    size = _int(header, "n")
    if size != len(out):
        raise CorruptObject(f"payload decodes to {size} bytes, expected {len(out)}")
    if codec == "group":
        used = 0  # bytes of the scratch planes the zstd streams so far took

        def into_planes(frame: memoryview, n: int) -> Buffer:
            nonlocal used
            if used + n > size:  # more stream bytes than the object: never allocated
                raise CorruptObject("grouped envelope streams do not match the payload")
            plane = scratch.array("planes", size)[used : used + n]
            _zstd_decompress_into(frame, plane, scratch)
            used += n
            return plane  # type: ignore[no-any-return]

        width, streams = _group_streams(header, payload, into_planes)
        if len(streams[0]) * width + len(streams[width]) != size:
            raise CorruptObject("grouped envelope streams do not match the payload")
        _join_into(streams, width, out, scratch, xor_with)
        return
    in_place = xor_with is out
    if codec == "raw":
        if len(payload) != size:
            raise CorruptObject(f"raw payload has {len(payload)} bytes, header says {size}")
        data = np.frombuffer(payload, dtype=np.uint8)
        if in_place:
            np.bitwise_xor(out, data, out=out)
            return
        out[:] = data
    elif codec == "zstd":
        target = scratch.array("planes", size) if in_place else out
        _zstd_decompress_into(payload, target, scratch)
        if in_place:
            np.bitwise_xor(out, target, out=out)
            return
    else:
        raise CorruptObject(f"unknown object codec {codec!r}")
    if xor_with is not None:
        np.bitwise_xor(out, np.frombuffer(xor_with, dtype=np.uint8), out=out)


def _undo_in_place(transform: str, width: int | None, diff: Any, base: Buffer) -> memoryview:
    """``_apply(..., undo=True)`` into ``diff``, a writable uint8 array: one copy fewer."""
    import numpy as np

    if transform == "sub":
        if width not in (2, 4, 8) or len(diff) % width:
            raise CorruptObject("subtraction delta without a whole number of elements")
        kind = np.dtype(_uints(width)).newbyteorder("<")
        np.add(diff.view(kind), np.frombuffer(base, dtype=kind), out=diff.view(kind))
    else:
        np.bitwise_xor(diff, np.frombuffer(base, dtype=np.uint8), out=diff)
    return memoryview(diff)


def check_size(header: dict[str, Any], expected_size: int | None = None) -> int:
    """The decoded size an envelope header claims, refused when over ``MAX_OBJECT`` or not
    ``expected_size``."""
    size = _int(header, "n")
    if size > MAX_OBJECT:
        raise CorruptObject(
            f"it claims {size} bytes, larger than the largest object mvc stores "
            f"({MAX_OBJECT >> 20} MiB)"
        )
    if expected_size is not None and size != expected_size:
        raise CorruptObject(f"it claims {size} bytes where {expected_size} are expected")
    return size


def payload_length(header: dict[str, Any]) -> int | None:
    """How many payload bytes follow an envelope's header, where the header says (raw and
    grouped envelopes, and deltas over them); None for a zstd frame, whose length only its
    checksum ``sb3`` vouches for. Raises CorruptObject for a header that makes no sense."""
    codec = header["c"]
    if codec == "delta":
        inner = header.get("i")
        if not isinstance(inner, dict) or not isinstance(inner.get("c"), str):
            raise CorruptObject("delta envelope without an inner codec")
        return payload_length(inner)
    if codec == "raw":
        return _int(header, "n")
    if codec == "group":
        specs = header.get("s")
        if not isinstance(specs, list) or not all(isinstance(x, dict) for x in specs):
            raise CorruptObject("grouped envelope has a bad stream table")
        return sum(_int(x, "z") if x.get("c") == "zstd" else _int(x, "n") for x in specs)
    if codec == "zstd":
        return None
    raise CorruptObject(f"unknown object codec {codec!r}")


def stored_size_limit(size: int) -> int:
    """The most stored bytes an object of ``size`` decoded bytes can take in any envelope we
    write (raw: header + bytes; zstd and grouped streams: at most a little over the input)."""
    return size + (size >> 6) + 8 + MAX_HEADER


def delta_base(stored: Buffer) -> tuple[str, int] | None:
    """(base id, depth) of a delta envelope, or None for a self-contained one."""
    return header_delta_base(read_header(stored)[0])


def header_delta_base(header: dict[str, Any]) -> tuple[str, int] | None:
    """(base id, depth) an envelope header names, or None for a self-contained object."""
    if header["c"] != "delta":
        return None
    base, depth = header.get("base"), header.get("d")
    if not isinstance(base, str) or not isinstance(depth, int):
        raise CorruptObject("delta envelope without a base")
    return base, depth


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_FCS_BYTES = (0, 2, 4, 8)
_DICT_ID_BYTES = (0, 1, 2, 4)


def zstd_frame_length(read_at: Callable[[int, int], bytes], start: int, end: int) -> int | None:
    """The length of the zstd frame that begins at ``start``, found by walking its block
    headers (RFC 8878 §3.1.1) through ``read_at(offset, n)``: a few bytes per 128 KiB block,
    nothing decoded. None when the bytes up to ``end`` hold no complete frame. This is how
    presence checks tell a truncated or padded zstd object without reading it whole."""
    head = read_at(start, 6)
    if len(head) < 5 or head[:4] != _ZSTD_MAGIC:
        return None
    descriptor = head[4]
    single_segment = bool(descriptor & 0x20)
    fcs = _FCS_BYTES[descriptor >> 6] or (1 if single_segment else 0)
    pos = start + 5 + (0 if single_segment else 1) + _DICT_ID_BYTES[descriptor & 3] + fcs
    while True:
        block = read_at(pos, 3)
        if len(block) < 3:
            return None
        value = int.from_bytes(block, "little")
        last, kind, size = value & 1, (value >> 1) & 3, value >> 3
        if kind == 3:  # reserved: not a frame
            return None
        pos += 3 + (1 if kind == 1 else size)
        if pos > end:
            return None
        if last:
            break
    pos += 4 if descriptor & 0x04 else 0  # the content checksum
    return pos - start if pos <= end else None


def verify_stored(stored: Buffer) -> bool:
    """Whether the payload matches its stored checksum (raw envelopes: always True here)."""
    header, start = read_header(stored)
    raw: bool = header["c"] == "raw"
    expected: object = header.get("sb3")
    if raw or expected is None:
        return raw
    return _stored_checksum([memoryview(stored)[start:]]) == expected
