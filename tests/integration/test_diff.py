"""``diff``: tensor statistics against numpy for every dtype family, unchanged tensors skipped
unread, the working folder as B, configs and metadata, and the CLI's two renderings."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import mvc.chunking
import mvc.tensors
from mvc.ops.commit import commit
from mvc.ops.diff import diff
from mvc.tensors import _pack_bits, _unpack_bits, decode


def write_st(path: Path, tensors: dict[str, tuple[str, list[int], bytes]], meta=None) -> None:
    """A safetensors file from raw bytes, in the order given (any dtype, bf16/fp8/fp4 included)."""
    header: dict = {"__metadata__": meta} if meta else {}
    offset, blobs = 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(body)) + body + b"".join(blobs))


def reference(a: np.ndarray, b: np.ndarray) -> dict:
    """The statistics, computed the plain way on whole arrays."""
    bits_a = a.view(np.dtype(f"u{a.dtype.itemsize}")) if a.dtype.itemsize > 0 else a
    bits_b = b.view(np.dtype(f"u{b.dtype.itemsize}"))
    wide = np.complex128 if np.iscomplexobj(a) else np.float64
    x, y = a.astype(wide).ravel(), b.astype(wide).ravel()
    d = y - x
    return {
        "changed_elements": int(np.count_nonzero(bits_a != bits_b)),
        "max_abs_diff": float(np.max(np.abs(d))),
        "relative_l2": float(np.linalg.norm(d) / np.linalg.norm(x)),
        "cosine": float(np.vdot(x, y).real / (np.linalg.norm(x) * np.linalg.norm(y))),
    }


def check_stats(stats: dict, ref: dict, elements: int) -> None:
    assert stats["elements"] == elements
    assert stats["changed_elements"] == ref["changed_elements"]
    assert stats["changed_fraction"] == pytest.approx(ref["changed_elements"] / elements)
    for key in ("max_abs_diff", "relative_l2", "cosine"):
        assert stats[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), key


DTYPES = [
    ("F32", np.float32),
    ("F16", np.float16),
    ("F64", np.float64),
    ("BF16", ml_dtypes.bfloat16),
    ("F8_E4M3", ml_dtypes.float8_e4m3fn),
    ("F8_E5M2", ml_dtypes.float8_e5m2),
    ("F8_E8M0", ml_dtypes.float8_e8m0fnu),
    ("I32", np.int32),
    ("I8", np.int8),
    ("U8", np.uint8),
    ("C64", np.complex64),
]


def sample(dtype, shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(1, 100, size=shape).astype(dtype)
    if np.dtype(dtype).kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    values = rng.uniform(0.25, 4.0, size=shape)  # positive: fits F8_E8M0 (powers of two)
    return values.astype(np.float32).astype(dtype)


@pytest.fixture
def small_pieces(monkeypatch):
    """Cut tensors into 1 KiB pieces and compute 512 bytes at a time, so small tensors exercise
    the multi-chunk, multi-window paths."""
    monkeypatch.setitem(mvc.chunking.plan_file.__kwdefaults__, "max_piece", 1024)
    monkeypatch.setitem(mvc.chunking.plan_file.__kwdefaults__, "whole_safetensors", 0)
    monkeypatch.setattr(mvc.ops.diff, "WHOLE_SAFETENSORS", 0)
    monkeypatch.setattr(mvc.tensors, "BLOCK_BYTES", 512)


@pytest.mark.parametrize(("st_dtype", "dtype"), DTYPES, ids=[d[0] for d in DTYPES])
def test_tensor_stats_match_numpy(store, small_pieces, st_dtype, dtype) -> None:
    shape = [48, 40]
    a = sample(dtype, shape, 0)
    b = a.copy()
    b[5:9] = sample(dtype, [4, 40], 1)  # a few rows: most chunks stay identical
    b[30, 3] = sample(dtype, [1], 2)[0]
    keep = sample(np.float32, [16], 3)
    folder = Path("models/m")
    write_st(
        folder / "w.safetensors",
        {"t": (st_dtype, shape, a.tobytes()), "keep": ("F32", [16], keep.tobytes())},
    )
    commit(store, str(folder), message="a")
    write_st(
        folder / "w.safetensors",
        {"t": (st_dtype, shape, b.tobytes()), "keep": ("F32", [16], keep.tobytes())},
    )
    commit(store, str(folder), message="b")
    result = diff(store, "m~1", "m")
    (group,) = result.tensors
    (change,) = group.changes
    assert (change.name, change.status) == ("t", "changed")
    check_stats(change.stats, reference(a, b), a.size)
    assert group.unchanged == group.skipped_identical == 1
    assert result.bump == "minor"


def test_sub_byte_packing() -> None:
    assert decode(bytes([0x21]), "F4").astype(np.float32).tolist() == [0.5, 1.0]
    for dtype, size in (("F4", 8), ("F6_E2M3", 9), ("F6_E3M2", 9)):
        data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
        assert _pack_bits(_unpack_bits(data, dtype), dtype) == data


def test_fp4_stats(store) -> None:
    rng = np.random.default_rng(0)
    codes_a = rng.integers(1, 8, 64, dtype=np.uint8)  # positive, finite fp4 codes
    codes_b = codes_a.copy()
    codes_b[:10] = (codes_b[:10] % 7) + 1
    folder = Path("models/q")
    write_st(folder / "w.safetensors", {"t": ("F4", [64], _pack_bits(codes_a, "F4"))})
    commit(store, str(folder), message="a")
    write_st(folder / "w.safetensors", {"t": ("F4", [64], _pack_bits(codes_b, "F4"))})
    commit(store, str(folder), message="b")
    (change,) = diff(store, "q~1", "q").tensors[0].changes
    a, b = codes_a.view(ml_dtypes.float4_e2m1fn), codes_b.view(ml_dtypes.float4_e2m1fn)
    check_stats(change.stats, reference(a, b), 64)


def test_unchanged_tensors_are_never_read(store, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    big = rng.standard_normal((256, 256)).astype(np.float32)
    small = rng.standard_normal(100).astype(np.float32)
    folder = Path("models/m")
    write_st(
        folder / "w.safetensors",
        {"big": ("F32", [256, 256], big.tobytes()), "small": ("F32", [100], small.tobytes())},
    )
    commit(store, str(folder), message="a")
    small2 = small.copy()
    small2[0] += 1
    write_st(
        folder / "w.safetensors",
        {"big": ("F32", [256, 256], big.tobytes()), "small": ("F32", [100], small2.tobytes())},
    )
    commit(store, str(folder), message="b")
    reads: list[tuple[int, int]] = []
    original = mvc.tensors.StoredTensorFile.read

    def spy(self, start, end):
        reads.append((start, end))
        return original(self, start, end)

    monkeypatch.setattr(mvc.tensors.StoredTensorFile, "read", spy)
    result = diff(store, "m~1", "m")
    header_size = struct.unpack("<Q", (folder / "w.safetensors").read_bytes()[:8])[0] + 8
    big_range = (header_size, header_size + big.nbytes)
    assert result.tensors[0].skipped_identical == 1
    assert not [r for r in reads if r[0] < big_range[1] and r[1] > big_range[0]]


def test_nonfinite_and_renames_and_shapes(store) -> None:
    a = np.array([1.0, np.nan, np.inf, 4.0], np.float32)
    b = np.array([1.0, np.nan, np.inf, 5.0], np.float32)
    folder = Path("models/m")
    same = np.arange(6, dtype=np.float32)
    write_st(
        folder / "w.safetensors",
        {
            "x": ("F32", [4], a.tobytes()),
            "old": ("F32", [6], same.tobytes()),
            "s": ("F32", [2], b"\0" * 8),
        },
    )
    commit(store, str(folder), message="a")
    write_st(
        folder / "w.safetensors",
        {
            "x": ("F32", [4], b.tobytes()),
            "new": ("F32", [6], same.tobytes()),
            "s": ("F32", [1, 2], b"\0" * 8),
        },
    )
    commit(store, str(folder), message="b")
    result = diff(store, "m~1", "m")
    changes = {c.name: c for c in result.tensors[0].changes}
    assert changes["x"].stats["changed_elements"] == 1
    assert changes["x"].stats["nonfinite"] == 2
    assert changes["x"].stats["max_abs_diff"] == 1.0
    assert changes["new"].status == "renamed" and changes["new"].renamed_from == "old"
    assert changes["s"].status == "reshaped"
    assert result.bump == "major"
    json.dumps(result.to_json(), allow_nan=False)  # the JSON document has no NaN


def test_sharded_tensor_moving_between_shards_is_not_a_change(store) -> None:
    w1 = np.ones((4, 4), np.float32)
    w2 = np.full((4, 4), 2, np.float32)
    folder = Path("models/s")
    write_st(folder / "model-00001-of-00002.safetensors", {"a": ("F32", [4, 4], w1.tobytes())})
    write_st(folder / "model-00002-of-00002.safetensors", {"b": ("F32", [4, 4], w2.tobytes())})
    commit(store, str(folder), message="a")
    write_st(
        folder / "model-00001-of-00002.safetensors",
        {"a": ("F32", [4, 4], w1.tobytes()), "b": ("F32", [4, 4], w2.tobytes())},
    )
    write_st(folder / "model-00002-of-00002.safetensors", {"c": ("F32", [1], b"\0" * 4)})
    commit(store, str(folder), message="b")
    result = diff(store, "s~1", "s")
    assert [(c.name, c.status) for c in result.tensors[0].changes] == [("c", "added")]


def test_working_folder_config_and_metadata(store, cli, make_model) -> None:
    folder = make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "one", "--param", "lr=0.1", "--metric", "acc=0.5")
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "two", "--param", "lr=0.2", "--metric", "acc=0.75")
    before = sorted(p.name for p in (Path(store.store_dir) / "objects").rglob("*"))
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = 999
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "README.md").write_text("docs\n")
    result = diff(store, "bert")  # against the working folder
    assert result.b.folder is not None and result.b.version_id is None
    assert {(f.path, f.status) for f in result.files} == {
        ("config.json", "changed"),
        ("README.md", "added"),
    }
    assert result.configs[0].changed == {"hidden_size": (64, 999)}
    assert result.bump == "major"
    assert sorted(p.name for p in (Path(store.store_dir) / "objects").rglob("*")) == before
    meta = diff(store, "bert~1", "bert").metadata
    assert meta["params"]["changed"] == {"lr": {"old": 0.1, "new": 0.2}}
    assert meta["metrics"]["acc"] == {"old": 0.5, "new": 0.75, "delta": 0.25}


def test_cli_diff(store, cli, make_model) -> None:
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "one")
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "two", "--metric", "acc=0.9")
    human = cli("diff", "bert~1", "bert")
    assert human.stdout.splitlines()[-1].startswith("verdict: minor")
    assert "~ embed.weight" in human.stdout and "rel-L2" in human.stdout
    data = cli("diff", "bert~1", "bert", "--json").json()
    assert set(data) >= {
        "a",
        "b",
        "files",
        "tensors",
        "configs",
        "metadata",
        "bump",
        "verdict",
        "evidence",
    }
    assert data["bump"] == "minor"
    changed = {c["name"]: c for c in data["tensors"][0]["changes"]}
    assert changed["embed.weight"]["stats"]["changed_fraction"] > 0.99
    fast = cli("diff", "bert~1", "bert", "--json", "--no-stats").json()
    assert fast["bump"] == "minor" and fast["tensors"][0]["changes"][0]["stats"] is None
    assert (
        cli("diff", "bert", expect=0).stdout.splitlines()[-1]
        == "verdict: none: no difference that needs a new version"
    )
    cli("diff", "nope", expect=1)


def test_malformed_file_in_the_working_folder(store, cli, make_model) -> None:
    folder = make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "one")
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    data = cli("diff", "bert", "--json").json()
    # a file no loader can read any more: its tensors are gone, which breaks the interface
    assert data["files"][0]["kind"] == "blob"
    assert data["bump"] == "major"
    assert {e["reason"] for e in data["evidence"]} >= {"tensor removed", "weights changed"}


def test_help_does_not_import_numpy() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom mvc.cli.main import app\n"
        "heavy = [m for m in ('numpy', 'ml_dtypes', 'safetensors', 'semver') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
