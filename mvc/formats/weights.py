"""What a file is, by its first bytes: is it model weights, and can loading it run code?

Names lie (``model.bin`` may be a pickle or raw floats; ``notes.txt`` may be a pickle), so the
checks behind mvc's pre-commit hooks look at content. Pure: bytes in, a verdict out.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from mvc.bump_rules import WEIGHT_SUFFIXES
from mvc.chunking import looks_like_pickle

#: How many bytes ``sniff`` wants (the safetensors length prefix, a zip entry name, an npy header).
HEAD_BYTES = 4096

# The extensions bump_rules grades as weights, plus a few more formats that only carry weights.
_WEIGHT_SUFFIXES = (*WEIGHT_SUFFIXES, ".hdf5", ".joblib", ".mlmodel", ".engine", ".plan")


@dataclass(frozen=True)
class Sniffed:
    kind: str  # safetensors, pickle, gguf, hdf5, numpy, numpy-pickle, zip, onnx, other
    weights: bool  # a model-weights format
    runs_code: bool  # loading it can execute code (pickle, or numpy with object arrays)


def sniff(head: bytes, name: str) -> Sniffed:
    """The kind of a file from its first ``HEAD_BYTES`` bytes (and, for ONNX, its name)."""
    lower = name.lower()
    if looks_like_pickle(head):
        return Sniffed("pickle", True, True)
    if head.startswith(b"\x93NUMPY"):
        if _npy_holds_objects(head):
            return Sniffed("numpy-pickle", True, True)
        return Sniffed("numpy", True, False)
    if head.startswith(b"GGUF") or head.startswith(b"lmgg") or head.startswith(b"tjgg"):
        return Sniffed("gguf", True, False)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return Sniffed("hdf5", True, False)
    if _looks_like_safetensors(head):
        return Sniffed("safetensors", True, False)
    if head.startswith(b"PK\x03\x04"):
        return Sniffed("zip", lower.endswith(_WEIGHT_SUFFIXES), False)
    if lower.endswith(".onnx"):
        return Sniffed("onnx", True, False)
    return Sniffed("other", False, False)


def weight_suffix(name: str) -> bool:
    return name.lower().endswith(_WEIGHT_SUFFIXES)


def _looks_like_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length, then a JSON object: safetensors' layout."""
    if len(head) < 10:
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= 100_000_000 and head[8:9] == b"{"


def _npy_holds_objects(head: bytes) -> bool:
    """An .npy header whose dtype is object (``'|O'``): numpy.load unpickles those."""
    major = head[6] if len(head) > 6 else 0
    size_bytes = 2 if major == 1 else 4
    start = 8 + size_bytes
    if len(head) < start:
        return False
    length = int.from_bytes(head[8:start], "little")
    text = head[start : start + length].decode("latin-1", "replace")
    try:
        header = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return "'O'" in text or "|O" in text  # unreadable header: judge by what it mentions
    descr = header.get("descr") if isinstance(header, dict) else None
    return "O" in str(descr)
