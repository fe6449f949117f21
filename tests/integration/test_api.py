"""The public Python API: mvc.open_repo / init_repo / Repo / MvcError / Router / load."""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from deployfix import Store
from safetensors.numpy import load_file, save_file

import mvc
from mvc.api import read_folder, read_tensors
from mvc.errors import InvalidInput, NotFound, UsageError
from mvc.ops import deploy as ops
from mvc.ops.commit import commit


def original(st: Store, model: str, tag: str, name: str) -> dict[str, np.ndarray]:
    return load_file(os.path.join(st.root, "work", model, tag, name))


def test_public_names(tmp_path, mvc_env) -> None:
    repo = mvc.init_repo(str(tmp_path / "new"))
    assert isinstance(repo, mvc.Repo)
    (tmp_path / "new" / "deep" / "er").mkdir(parents=True)
    found = mvc.open_repo(str(tmp_path / "new" / "deep" / "er"))
    assert found.root == repo.root
    with pytest.raises(mvc.MvcError) as caught:
        mvc.open_repo(str(tmp_path))
    assert caught.value.exit_code == 10 and caught.value.hint
    with pytest.raises(AttributeError):
        _ = mvc.nothing_here  # type: ignore[attr-defined]


def test_load_memory_maps_a_version(st: Store, tmp_path) -> None:
    tensors = mvc.load("bert@v1.5.0", repo=st.repo, cache_dir=str(tmp_path / "cache"))
    expected = original(st, "bert", "v1.5.0", "model.safetensors")
    assert sorted(tensors) == sorted(expected)
    for name, array in tensors.items():
        np.testing.assert_array_equal(array, expected[name])
        assert array.dtype == expected[name].dtype
        assert isinstance(array, np.memmap) and not array.flags.writeable
    copies = mvc.load("bert@v1.5.0", repo=st.repo, cache_dir=str(tmp_path / "cache"), mmap=False)
    assert all(not isinstance(a, np.memmap) and a.flags.writeable for a in copies.values())


def test_load_by_path_and_default_cache(st: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(st.root)
    tensors = mvc.load("bert@v1.4.0")
    assert "embeddings.weight" in tensors
    assert mvc.load("bert@v1.4.0", repo=st.root).keys() == tensors.keys()
    assert os.path.isdir(os.path.join(st.root, ".mvc", "cache", "serve", "bert"))


def reference_merge(st: Store, base_tag: str, adapter_tag: str) -> dict[str, np.ndarray]:
    base = original(st, "bert", base_tag, "model.safetensors")
    lora = original(st, "sql-lora", adapter_tag, "adapter_model.safetensors")
    with open(os.path.join(st.root, "work", "sql-lora", adapter_tag, "adapter_config.json")) as f:
        config = json.load(f)
    scale = config["lora_alpha"] / config["r"]
    merged = dict(base)
    for name in base:
        module = name.removesuffix(".weight")
        a = lora.get(f"base_model.model.{module}.lora_A.weight")
        if a is not None:
            b = lora[f"base_model.model.{module}.lora_B.weight"]
            merged[name] = (base[name].astype(np.float64) + scale * (b @ a)).astype(np.float32)
    return merged


def test_load_merges_a_lora_adapter(st: Store, tmp_path) -> None:
    cache = str(tmp_path / "cache")
    merged = mvc.load("bert@v1.4.0 + sql-lora@v1.4.0", repo=st.repo, cache_dir=cache)
    reference = reference_merge(st, "v1.4.0", "v1.4.0")
    base = original(st, "bert", "v1.4.0", "model.safetensors")
    for name in reference:
        np.testing.assert_allclose(merged[name], reference[name], rtol=1e-5, atol=1e-6)
    query = "encoder.layer.0.attention.query.weight"
    assert not np.allclose(merged[query], base[query])  # the adapter really changed it
    assert isinstance(merged["embeddings.weight"], np.memmap)  # untouched tensors stay mapped
    same = mvc.load("bert@v1.4.0", repo=st.repo, adapter="sql-lora@v1.4.0", cache_dir=cache)
    for name in merged:
        np.testing.assert_array_equal(same[name], merged[name])
    with pytest.raises(UsageError, match="once"):
        mvc.load("bert@v1.4.0 + sql-lora@v1.4.0", repo=st.repo, adapter="sql-lora@v1.3.0")


def test_load_a_channel_arm_brings_its_adapter(st: Store, tmp_path) -> None:
    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    ops.deploy_canary(st.repo, "bert", "prod", "v1.4.0 + sql-lora@v1.3.0", 10)
    cache = str(tmp_path / "cache")
    stable = mvc.load("bert@prod", repo=st.repo, cache_dir=cache)
    canary = mvc.load("bert@prod:canary", repo=st.repo, cache_dir=cache)
    reference = reference_merge(st, "v1.4.0", "v1.3.0")
    name = "encoder.layer.1.attention.value.weight"
    np.testing.assert_array_equal(
        stable[name], original(st, "bert", "v1.4.0", "model.safetensors")[name]
    )
    np.testing.assert_allclose(canary[name], reference[name], rtol=1e-5, atol=1e-6)


def test_load_takes_base_and_adapter_from_one_channel_read(
    st: Store, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel that moves while ``load`` reads it never pairs one record's base with the next
    record's adapter: both come from the record the spec resolved to."""
    ops.set_channel(st.repo, "bert", "prod", "v1.4.0 + sql-lora@v1.3.0")
    cache = str(tmp_path / "cache")
    expected = mvc.load("bert@v1.4.0 + sql-lora@v1.3.0", repo=st.repo, cache_dir=cache)
    prod = ops.channel_ref("bert", "prod")
    read_ref = st.repo.refs.get
    reads: list[str | None] = []

    def get_then_deploy(ref):  # the first read of prod sees the old record, then prod moves
        value = read_ref(ref)
        if ref == prod and not reads:
            reads.append(value)
            ops.set_channel(st.repo, "bert", "prod", "v1.5.0 + sql-lora@v1.4.0")
        return value

    monkeypatch.setattr(st.repo.refs, "get", get_then_deploy)
    loaded = mvc.load("bert@prod", repo=st.repo, cache_dir=cache)
    assert reads and read_ref(prod) != reads[0]  # the channel did move during the load
    assert loaded.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(loaded[name], expected[name])


def test_load_refuses_an_adapter_that_does_not_fit(st: Store) -> None:
    with pytest.raises(InvalidInput, match="does not fit"):
        mvc.load("bert@v1.4.0 + bad-lora@v1.0.0", repo=st.repo)
    with pytest.raises(NotFound):
        mvc.load("bert@v9.0.0", repo=st.repo)


def write_raw_safetensors(path: str, tensors: list[tuple[str, str, list[int], bytes]]) -> None:
    """A safetensors file written by hand: any dtype, and an unaligned data section."""
    header: dict[str, object] = {}
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    head = json.dumps(header).encode()
    head += b" " * ((8 - (len(head) + 8) % 8) % 8 + 3)  # three extra bytes: unaligned tensors
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(head)) + head)
        for *_rest, data in tensors:
            handle.write(data)


def test_dtypes_map_to_numpy(tmp_path) -> None:
    bf16 = np.array([1.5, -2.0, 3.25], dtype=ml_dtypes.bfloat16)
    f8 = np.array([0.5, -1.0], dtype=ml_dtypes.float8_e4m3fn)
    i64 = np.array([[1, -2], [3, 4]], dtype="<i8")
    flags = np.array([True, False, True])
    path = str(tmp_path / "mixed.safetensors")
    write_raw_safetensors(
        path,
        [
            ("bf16", "BF16", [3], bf16.tobytes()),
            ("f8", "F8_E4M3", [2], f8.tobytes()),
            ("i64", "I64", [2, 2], i64.tobytes()),
            ("flags", "BOOL", [3], flags.tobytes()),
            ("empty", "F32", [0, 4], b""),
        ],
    )
    tensors = read_tensors(path)
    assert tensors["bf16"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(tensors["bf16"].astype(np.float32), [1.5, -2.0, 3.25])
    np.testing.assert_array_equal(tensors["f8"].astype(np.float32), [0.5, -1.0])
    np.testing.assert_array_equal(tensors["i64"], i64)
    np.testing.assert_array_equal(tensors["flags"], flags)
    assert tensors["empty"].shape == (0, 4)
    write_raw_safetensors(str(tmp_path / "f4.safetensors"), [("x", "F4", [2], b"\x12")])
    with pytest.raises(UsageError, match="F4"):
        read_tensors(str(tmp_path / "f4.safetensors"))


def test_sharded_models_load_together_and_clashes_are_refused(st: Store, tmp_path) -> None:
    folder = tmp_path / "sharded"
    folder.mkdir()
    save_file({"a": np.ones(3, np.float32)}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({"b": np.zeros(2, np.float16)}, str(folder / "model-00002-of-00002.safetensors"))
    result = commit(st.repo, str(folder), message="sharded", model="sharded")
    tensors = mvc.load(f"sharded@id={result.version_id}", repo=st.repo)
    assert sorted(tensors) == ["a", "b"] and tensors["b"].dtype == np.float16
    save_file({"a": np.ones(1, np.float32)}, str(folder / "extra.safetensors"))
    with pytest.raises(InvalidInput, match="tensor 'a' is in both"):
        read_folder(str(folder))


# --- framework="pt": torch tensors, bf16 included ----------------------------------------------


def _torch() -> Any:
    import importlib
    import os

    if os.environ.get("CI", "").lower() in ("true", "1"):
        return importlib.import_module("torch")  # CI installs it (.ci/run): missing is a failure
    return pytest.importorskip("torch")


def test_load_as_torch_keeps_every_dtype_bit_for_bit(st: Store, tmp_path) -> None:
    """torch.from_numpy refuses ml_dtypes' bfloat16; framework="pt" hands torch its own dtype."""
    torch = _torch()
    bf16 = np.array([[1.5, -2.0, 3.25], [0.1, 7.0, -0.0]], dtype=ml_dtypes.bfloat16)
    f8 = np.array([0.5, -1.0, 448.0], dtype=ml_dtypes.float8_e4m3fn)
    f32 = np.array([1.0, 2.5], dtype=np.float32)
    with pytest.raises(TypeError):
        torch.from_numpy(read_tensors_of(st, bf16, f8, f32)["bf16"])  # the bug this fixes
    commit(st.repo, os.path.join(st.root, "work", "typed"), message="typed", model="typed")
    loaded = mvc.load("typed", repo=st.repo, framework="pt")
    assert loaded["bf16"].dtype == torch.bfloat16 and loaded["f8"].dtype == torch.float8_e4m3fn
    assert loaded["f32"].dtype == torch.float32
    reference = torch.tensor(bf16.astype(np.float32).tolist(), dtype=torch.bfloat16)
    assert torch.equal(loaded["bf16"], reference)
    assert loaded["bf16"].view(torch.int16).numpy().tobytes() == bf16.tobytes()
    assert loaded["f8"].view(torch.uint8).numpy().tobytes() == f8.tobytes()
    assert torch.equal(loaded["f32"], torch.tensor([1.0, 2.5]))
    # copy-on-write: writable, and a write never reaches the cache the next load reads
    loaded["f32"].add_(1)
    again = mvc.load("typed", repo=st.repo, framework="pt")
    assert torch.equal(again["f32"], torch.tensor([1.0, 2.5]))
    # a model takes them as they are
    layer = torch.nn.Linear(3, 2, bias=False).to(torch.bfloat16)
    layer.load_state_dict({"weight": loaded["bf16"]})
    assert torch.equal(layer.weight.detach(), reference)


def read_tensors_of(st: Store, bf16, f8, f32) -> dict[str, np.ndarray]:
    folder = os.path.join(st.root, "work", "typed")
    os.makedirs(folder)
    path = os.path.join(folder, "model.safetensors")
    write_raw_safetensors(
        path,
        [
            ("bf16", "BF16", list(bf16.shape), bf16.tobytes()),
            ("f8", "F8_E4M3", list(f8.shape), f8.tobytes()),
            ("f32", "F32", list(f32.shape), f32.tobytes()),
        ],
    )
    return read_tensors(path)


def test_load_as_torch_merges_adapters_like_numpy(st: Store) -> None:
    torch = _torch()
    spec = "bert@v1.4.0 + sql-lora@v1.3.0"
    as_numpy = mvc.load(spec, repo=st.repo)
    as_torch = mvc.load(spec, repo=st.repo, framework="pt")
    assert set(as_numpy) == set(as_torch)
    for name, array in as_numpy.items():
        assert torch.equal(as_torch[name], torch.from_numpy(np.array(array))), name
    with pytest.raises(UsageError, match="unknown framework"):
        mvc.load(spec, repo=st.repo, framework="jax")  # type: ignore[call-overload]
