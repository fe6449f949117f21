"""Planning how a file's bytes are cut into chunks (DESIGN.md §4). Pure: no IO, no hashing.

- A safetensors file: its header (``8 + N`` bytes) is one chunk, then each tensor's bytes; a tensor
  over ``max_piece`` is cut into equal element-aligned pieces (plus a shorter last one), so an
  unchanged tensor or piece is the same chunk in every version and model. Zero-byte tensors add
  no chunk. Float tensors carry their byte-grouping width as a codec hint. A file of at most
  ``WHOLE_SAFETENSORS`` bytes (a shard of a many-shard folder, a test model) is one chunk: the
  object files per tensor cost more than their dedup and deltas can save at that size.
- Pickle-based checkpoints (``.bin``, ``.pt``…, or any file whose bytes are a pickle) are chunked
  like any other file, never unpickled.
- Any other file up to ``SMALL_FILE`` is one chunk; a larger one is cut by content-defined
  chunking (FastCDC), so an insertion shifts only the chunks around it.

Invariant: the spans of a plan cover ``[0, len(data))`` contiguously, in order, with no empty span;
an empty file has no span. The cut points are part of what makes dedup work across versions, so
the constants below must not change casually: changing them never breaks a store (chunks are
content-addressed), it only stops new chunks from matching old ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from mvc.formats.safetensors import (
    DTYPE_SIZES,
    SafetensorsHeader,
    float_width,
    looks_like_safetensors,
    parse_header,
)
from mvc.objects import KIND_BLOB, KIND_PICKLE, KIND_SAFETENSORS

MAX_PIECE = 16 << 20  # largest piece of a tensor
SMALL_FILE = 4 << 20  # other files up to this size are one chunk
WHOLE_SAFETENSORS = 64 << 10  # safetensors files up to this size are one chunk
CDC_MIN = 256 << 10
CDC_AVG = 1 << 20  # FastCDC's actual mean is about CDC_AVG + CDC_MIN
CDC_MAX = 4 << 20
FIXED_SPAN = 4 << 20  # only when pyfastcdc cannot be imported
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class ChunkSpan:
    offset: int
    length: int
    elem_width: int | None = None  # codec hint: byte-group with this element width


@dataclass(frozen=True)
class FilePlan:
    kind: str
    spans: tuple[ChunkSpan, ...]
    header: SafetensorsHeader | None = None


def file_kind(path: str, *, raw: bool = False) -> str:
    """How a file is understood, by its name alone (``plan_file`` also looks at its bytes)."""
    if not raw and looks_like_safetensors(path):
        return KIND_SAFETENSORS
    if path.lower().endswith(PICKLE_SUFFIXES):
        return KIND_PICKLE
    return KIND_BLOB


_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_NAME_AT = 30  # a zip local file header is 30 bytes, then the entry's name


def looks_like_pickle(data: Buffer) -> bool:
    """Whether bytes are a pickle, by content: the PROTO opcode of protocols 2-5
    (``torch.save``'s legacy format, ``pickle.dump``'s default) or a ``torch.save`` zip whose
    first entry is a ``.pkl``. Protocols 0 and 1 have no magic; their extensions still count."""
    head = bytes(data[: _ZIP_NAME_AT + 512])
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head.startswith(_ZIP_LOCAL) and len(head) >= _ZIP_NAME_AT:
        length = int.from_bytes(head[26:28], "little")
        name = head[_ZIP_NAME_AT : _ZIP_NAME_AT + length]
        return len(name) == length and name.lower().endswith(b".pkl")
    return False


def plan_file(
    path: str,
    data: Buffer,
    name: str,
    *,
    raw: bool = False,
    max_piece: int = MAX_PIECE,
    whole_safetensors: int = WHOLE_SAFETENSORS,
) -> FilePlan:
    """Plan the chunks of a whole file held in ``data`` (typically an mmap'd memoryview).

    ``path`` decides the kind by its extension; ``name`` is how errors refer to the file.
    A malformed safetensors file raises ``InvalidInput`` (unless ``raw``). ``max_piece`` and
    ``whole_safetensors`` are for tests of the cuts; the store uses the defaults.
    """
    if max_piece < 1:
        raise ValueError(f"max_piece must be positive, got {max_piece}")
    kind = file_kind(path, raw=raw)
    if kind == KIND_BLOB and looks_like_pickle(data):
        kind = KIND_PICKLE  # a pickle is flagged whatever its name (notes.txt, optimizer)
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if kind == KIND_SAFETENSORS:
        header = parse_header(data, size, name)
        if size <= whole_safetensors:
            return FilePlan(kind, (ChunkSpan(0, size),), header)
        return FilePlan(kind, _safetensors_spans(header, max_piece), header)
    return FilePlan(kind, _blob_spans(data, size))


def _safetensors_spans(header: SafetensorsHeader, max_piece: int) -> tuple[ChunkSpan, ...]:
    spans = [ChunkSpan(0, header.header_size, None)]
    for tensor in header.tensors:
        width = float_width(tensor.dtype)
        unit = DTYPE_SIZES[tensor.dtype]
        piece = max(unit, max_piece - max_piece % unit)
        for offset in range(tensor.start, tensor.end, piece):
            spans.append(ChunkSpan(offset, min(piece, tensor.end - offset), width))
    return tuple(spans)


def _blob_spans(data: Buffer, size: int) -> tuple[ChunkSpan, ...]:
    if size == 0:
        return ()
    if size <= SMALL_FILE:
        return (ChunkSpan(0, size),)
    return tuple(ChunkSpan(offset, length) for offset, length in _cdc_cuts(data, size))


def _cdc_cuts(data: Buffer, size: int) -> list[tuple[int, int]]:
    try:
        from pyfastcdc import FastCDC
    except ImportError:
        return [(off, min(FIXED_SPAN, size - off)) for off in range(0, size, FIXED_SPAN)]
    view = data if isinstance(data, bytes | bytearray | memoryview) else memoryview(data)
    chunker = FastCDC(CDC_AVG, min_size=CDC_MIN, max_size=CDC_MAX)
    # Keep only integers: a chunk's .data would pin the caller's mmap open.
    return [(chunk.offset, chunk.length) for chunk in chunker.cut_buf(view)]
