"""Canonical JSON: the exact bytes metadata objects are hashed and stored as.

Sorted keys, no insignificant white space, UTF-8 (not ASCII escapes), no NaN or infinities,
integers as integers. The same value gives the same bytes on every machine; a golden test pins them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from mvc.errors import InvalidInput


def _check(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{where}: {value!r} cannot be stored (NaN and infinities are refused)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{where}: keys must be strings, got {key!r}")
            _check(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]")
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise InvalidInput(f"{where}: {type(value).__name__} is not JSON")


def encode_canonical(value: Any) -> bytes:
    _check(value, "object")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def decode_json(data: bytes, what: str) -> Any:
    """Parse JSON we stored; anything malformed is our own error naming ``what``.

    ``NaN``, ``Infinity`` and ``-Infinity`` are refused: canonical JSON never holds them (and
    they are not JSON), so bytes that do were not written by mvc, and a value read here must be
    printable as valid JSON.
    """

    def refuse(name: str) -> Any:
        raise InvalidInput(f"{what} holds {name}, which canonical JSON never does")

    try:
        return json.loads(data.decode("utf-8"), parse_constant=refuse)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from exc


def parse_scalar(text: str) -> Any:
    """A value typed on the command line (``--param lr=2e-5``, ``--where 'acc>=0.9'``): numbers
    and booleans become JSON numbers and booleans; anything else, NaN and infinities included,
    stays text (canonical JSON has no NaN)."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return text if isinstance(value, float) and not math.isfinite(value) else value
    return text
