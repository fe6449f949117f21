"""Hostile model files: malformed safetensors headers are refused cleanly, pickles never run.

A safetensors file whose header lies is refused by ``commit`` with one line naming the file
(exit 1, ``InvalidInput``) and nothing is recorded. A pickle is stored as opaque bytes and
flagged "unsafe to load" whatever its name says: detection is by content (magic bytes) as well
as by extension, and no command ever unpickles anything (the payload's marker file never
appears).
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import struct
import zipfile

import pytest
from faultkit import snapshot

from mvc.chunking import looks_like_pickle, plan_file
from mvc.objects import KIND_BLOB, KIND_PICKLE

# --- safetensors header attacks -------------------------------------------------------------------


def _safetensors(header: dict | bytes, data: bytes = b"", *, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _t(dtype="F32", shape=(2,), begin=0, end=8) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}


HOSTILE_HEADERS = {
    "length-2^63": (_safetensors({"a": _t()}, bytes(8), length=1 << 63), "header length"),
    "length-over-limit": (_safetensors(b"{}", length=100_000_001), "over the"),
    "length-past-end": (_safetensors({"a": _t()}, bytes(8), length=4096), "past the end"),
    "length-zero": (_safetensors(b"", length=0), "too small"),
    "too-short": (b"\x01\x02", "too short"),
    "overlap": (_safetensors({"a": _t(end=8), "b": _t(begin=4, end=12)}, bytes(12)), "overlap"),
    "same-offsets": (_safetensors({"a": _t(), "b": _t()}, bytes(8)), "overlap"),
    "gap": (_safetensors({"a": _t(end=8), "b": _t(begin=12, end=20)}, bytes(20)), "hole"),
    "uncovered-tail": (_safetensors({"a": _t()}, bytes(12)), "not covered"),
    "truncated": (_safetensors({"a": _t(shape=(4,), end=16)}, bytes(8)), "truncated"),
    "duplicate-name": (
        b"",  # built below: json.dumps cannot write a duplicate key
        "duplicate key",
    ),
    "unknown-dtype": (_safetensors({"a": _t(dtype="F128")}, bytes(8)), "unknown dtype"),
    "dtype-not-text": (_safetensors({"a": {**_t(), "dtype": ["F32"]}}, bytes(8)), "dtype"),
    "shape-overflow": (
        _safetensors({"a": _t(shape=(1 << 32, 1 << 32, 1 << 32), end=0)}),
        "overflows 64 bits",
    ),
    "shape-negative": (_safetensors({"a": _t(shape=(-2,), end=0)}), "non-negative"),
    "shape-float": (_safetensors({"a": _t(shape=(2.0,))}, bytes(8)), "non-negative"),
    "size-mismatch": (_safetensors({"a": _t(shape=(3,), end=8)}, bytes(8)), "span"),
    "offsets-reversed": (_safetensors({"a": _t(begin=8, end=0)}, bytes(8)), "end before"),
    "offset-negative": (
        _safetensors({"a": _t(begin=-8, end=0), "b": _t(begin=0, end=8)}, bytes(8)),
        "non-negative",
    ),
    "offset-bool": (_safetensors({"a": _t(begin=False, end=8)}, bytes(8)), "non-negative"),
    "offset-float": (_safetensors({"a": _t(begin=0.0, end=8)}, bytes(8)), "non-negative"),
    "overlap-contained": (
        _safetensors({"a": _t(shape=(4,), end=16), "b": _t(begin=4, end=12)}, bytes(16)),
        "overlap",
    ),
    "deep-json": (_safetensors(b'{"__metadata__":' + b"[" * 200_000 + b"]" * 200_000 + b"}"), ""),
    "nan": (_safetensors(b'{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,8]}}'), "NaN"),
    "nul-in-name": (_safetensors({"emb\u0000.weight": _t()}, bytes(8)), "control character"),
    "escape-in-name": (_safetensors({"emb\u001b[2J": _t()}, bytes(8)), "control character"),
    "nul-in-metadata-key": (
        _safetensors({"__metadata__": {"a\u0000": "x"}, "a": _t()}, bytes(8)),
        "control character",
    ),
    "lone-surrogate": (_safetensors(b'{"\\ud800":' + json.dumps(_t()).encode() + b"}"), "text"),
    "not-utf8": (_safetensors(b'{"\xff":1}'), "UTF-8"),
    "trailing-garbage": (_safetensors(b'{"a":' + json.dumps(_t()).encode() + b"}x", bytes(8)), ""),
    "not-an-object": (_safetensors(b"[1, 2]"), "start with"),
    "extra-key": (_safetensors({"a": {**_t(), "evil": 1}}, bytes(8)), "unknown key"),
}
_dup = b'{"a":' + json.dumps(_t()).encode() + b',"a":' + json.dumps(_t()).encode() + b"}"
HOSTILE_HEADERS["duplicate-name"] = (_safetensors(_dup, bytes(8)), "duplicate key")


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_hostile_safetensors_header_is_refused(case, versions, cli, mvc_proc, nothing_lost) -> None:
    content, detail = HOSTILE_HEADERS[case]
    folder = pathlib.Path(versions.root, "models/bert")
    (folder / "evil.safetensors").write_bytes(content)
    before = snapshot(versions.repo)
    error = mvc_proc.fails("commit", "models/bert", "-m", "evil", code=1, cwd=versions.root)
    assert "evil.safetensors" in error and "safetensors header" in error
    assert detail in error, error
    assert len(error) < 400  # one readable line, not an echo of the hostile bytes
    assert cli("fsck", "--json").json()["ok"]
    nothing_lost.check(versions.repo, before, fsck=False)  # fsck just ran, in-process
    assert snapshot(versions.repo, files=False).refs == before.refs  # nothing committed
    # Stored as opaque bytes only when asked.
    cli("commit", "models/bert", "-m", "as bytes", "--raw")


def test_a_valid_file_with_odd_but_legal_names_is_accepted(versions, mvc_proc) -> None:
    folder = pathlib.Path(versions.root, "models/bert")
    header = {"__metadata__": {"note": "line one\nline two"}, "dé/jà.w": _t()}
    (folder / "odd.safetensors").write_bytes(_safetensors(header, bytes(8)))
    mvc_proc("commit", "models/bert", "-m", "odd", cwd=versions.root)


# --- pickles are flagged by content and never run -------------------------------------------------


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickle_bytes(marker: pathlib.Path, protocol: int = 4) -> bytes:
    return pickle.dumps({"state_dict": _Payload(str(marker))}, protocol=protocol)


def _torch_zip(marker: pathlib.Path, path: pathlib.Path) -> None:
    """The layout of ``torch.save`` (a zip whose first entry is ``<name>/data.pkl``)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("model/data.pkl", _pickle_bytes(marker, 2))
        archive.writestr("model/byteorder", "little")
        archive.writestr("model/data/0", bytes(64))


def test_pickle_magic_is_recognised() -> None:
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert looks_like_pickle(pickle.dumps([1, 2], protocol=protocol))
    for harmless in (b"", b"\x80", b"\x80\x09", b"hello", b'{"a": 1}', b"PK\x03\x04short"):
        assert not looks_like_pickle(harmless)
    assert plan_file("notes.txt", pickle.dumps([1], protocol=4), "notes.txt").kind == KIND_PICKLE
    assert plan_file("notes.txt", b"just notes", "notes.txt").kind == KIND_BLOB


@pytest.mark.slow
def test_pickle_payloads_are_never_executed(versions, mvc_proc, tmp_path) -> None:
    """Commit, status, show, diff, log, export and checkout a folder full of pickles: none runs,
    and each is flagged "unsafe to load" whatever its name."""
    marker = tmp_path / "PWNED"
    folder = pathlib.Path(versions.root, "models/bert")
    (folder / "pytorch_model.bin").write_bytes(_pickle_bytes(marker))
    (folder / "notes.txt").write_bytes(_pickle_bytes(marker, 2))
    (folder / "optimizer").write_bytes(_pickle_bytes(marker, 5))
    _torch_zip(marker, folder / "checkpoint.data")
    run = lambda *args: mvc_proc(*args, cwd=versions.root)  # noqa: E731
    run("commit", "models/bert", "-m", "pickles")
    shown = json.loads(run("show", "bert", "--json").stdout)
    kinds = {f["path"]: f["kind"] for f in shown["files"]}
    for name in ("pytorch_model.bin", "notes.txt", "optimizer", "checkpoint.data"):
        assert kinds[name] == KIND_PICKLE, (name, kinds)
    assert kinds["config.json"] == KIND_BLOB
    human = run("show", "bert").stdout
    assert human.count("pickle: unsafe to load") == 4
    run("status")
    run("diff", "bert@main~1", "bert@main")
    run("diff", "bert@main~1", "bert@main", "--json")
    run("log", "bert")
    run("channel", "set", "bert", "prod", "main")
    run("export", "bert", "prod", "--format", "dir", "--to", str(tmp_path / "served"))
    run("checkout", "bert@main", "--to", str(tmp_path / "copy"))
    run("fsck")
    assert (tmp_path / "copy" / "notes.txt").read_bytes() == (folder / "notes.txt").read_bytes()
    assert not marker.exists()


def test_the_api_never_unpickles(versions, tmp_path) -> None:
    """``mvc.load`` reads safetensors only; reading a pickle's bytes returns bytes."""
    import mvc
    from mvc.api import commit, read_file

    marker = tmp_path / "PWNED"
    payload = _pickle_bytes(marker)
    (pathlib.Path(versions.root, "models/bert") / "extra.pt").write_bytes(payload)
    commit("models/bert", "api pickle", repo=versions.root)
    tensors = mvc.load("bert", repo=versions.root, cache_dir=str(tmp_path / "cache"))
    assert "embed.weight" in tensors
    assert read_file("bert", "extra.pt", repo=versions.root) == payload
    assert not marker.exists()
