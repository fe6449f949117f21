"""PEFT adapters: recognised on commit, checked against a base (pass and fail, never silent),
and merged into the base's weights exactly as a plain numpy reference computes them."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from mvc.errors import EXIT_ERROR, EXIT_NO_STORE

H, H2, V, R, ALPHA = 16, 24, 32, 4, 8

DTYPES = {"F32": np.float32, "BF16": ml_dtypes.bfloat16, "F16": np.float16}


def write_st(path: Path, tensors: dict[str, np.ndarray]) -> None:
    names = {
        np.dtype(np.float32): "F32",
        np.dtype(ml_dtypes.bfloat16): "BF16",
        np.dtype(np.float16): "F16",
    }
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": names[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(body)) + body + b"".join(blobs))


def read_st(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + start : 8 + n + end], DTYPES[info["dtype"]]).reshape(
            info["shape"]
        )
    return out


def base_tensors(dtype=np.float32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {
        "model.embed_tokens.weight": (V, H),
        "model.layers.0.self_attn.q_proj.weight": (H, H),
        "model.layers.0.self_attn.v_proj.weight": (H2, H),  # out != in: orientation matters
        "model.layers.0.mlp.c_fc.weight": (H, H2),  # GPT-2 Conv1D layout: (in, out)
        "model.norm.weight": (H,),
        "lm_head.weight": (V, H),
    }
    return {k: rng.standard_normal(s).astype(np.float32).astype(dtype) for k, s in shapes.items()}


def write_base(folder: Path, dtype=np.float32) -> dict[str, np.ndarray]:
    tensors = base_tensors(dtype)
    write_st(folder / "model.safetensors", tensors)
    (folder / "config.json").write_text(json.dumps({"hidden_size": H, "vocab_size": V}))
    return tensors


def write_adapter(
    folder: Path,
    *,
    targets=("q_proj", "v_proj"),
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
    config: dict | None = None,
    extra: dict[str, np.ndarray] | None = None,
    seed: int = 1,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    default = {
        "model.layers.0.self_attn.q_proj": ((R, H), (H, R)),
        "model.layers.0.self_attn.v_proj": ((R, H), (H2, R)),
    }
    tensors = {}
    for module, (a_shape, b_shape) in (shapes or default).items():
        prefix = f"base_model.model.{module}"
        tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal(a_shape).astype(np.float32)
        tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal(b_shape).astype(np.float32)
    tensors.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    write_st(folder / "adapter_model.safetensors", tensors)
    settings = {
        "peft_type": "LORA",
        "r": R,
        "lora_alpha": ALPHA,
        "target_modules": list(targets),
        "base_model_name_or_path": "tiny-llama",
        "task_type": "CAUSAL_LM",
    }
    settings.update(config or {})
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    return tensors


@pytest.fixture
def base(store, cli):
    tensors = write_base(Path("models/llama"))
    cli("commit", "models/llama", "-m", "base")
    cli("tag", "llama", "v1.0.0")
    return tensors


# --- recognising and checking -------------------------------------------------------------------


def test_commit_records_and_checks_an_adapter(base, cli) -> None:
    write_adapter(Path("out/lora"))
    result = cli(
        "commit", "out/lora", "--model", "sql-lora", "--base", "llama@v1.0.0", "-m", "lora"
    )
    version = result.stdout.strip()
    shown = cli("show", f"sql-lora@{version[:12]}", "--json").json()
    assert shown["lineage"]["adapter"] == {
        "type": "LORA",
        "rank": R,
        "alpha": float(ALPHA),
        "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": "tiny-llama",
        "path": "",
    }
    base_ref = shown["lineage"]["base"]
    llama = cli("show", "llama@v1.0.0", "--json").json()
    assert base_ref == {
        "model": "llama",
        "version": llama["id"],
        "tree": llama["tree"],
        "spec": "llama@v1.0.0",
    }
    assert "without --base" not in result.stderr


def test_commit_refuses_an_adapter_that_does_not_fit(base, cli) -> None:
    write_adapter(
        Path("out/lora"),
        shapes={"model.layers.0.self_attn.q_proj": ((R, H + 1), (H, R))},
        targets=("q_proj",),
    )
    result = cli(
        "commit",
        "out/lora",
        "--model",
        "bad-lora",
        "-m",
        "bad-lora",
        "--base",
        "llama",
        expect=EXIT_ERROR,
    )
    assert "does not fit" in result.stderr and "q_proj" in result.stderr
    assert result.stdout == ""
    assert "bad-lora" not in cli("models").stdout  # nothing was recorded


def test_a_retrained_adapter_keeps_its_base_and_is_checked_against_it(base, cli) -> None:
    write_adapter(Path("out/lora"))
    cli("commit", "out/lora", "--model", "sql-lora", "--base", "llama@v1.0.0", "-m", "one")
    write_adapter(Path("out/lora"), seed=5)  # retrained: new weights, same base
    again = cli("commit", "out/lora", "--model", "sql-lora", "-m", "two")
    assert "without --base" not in again.stderr
    shown = cli("show", "sql-lora", "--json").json()
    assert shown["lineage"]["base"]["spec"] == "llama@v1.0.0"
    write_adapter(
        Path("out/lora"),
        shapes={"model.layers.0.self_attn.q_proj": ((R, H + 1), (H, R))},
        targets=("q_proj",),
    )
    refused = cli("commit", "out/lora", "--model", "sql-lora", "-m", "bad", expect=EXIT_ERROR)
    assert "does not fit" in refused.stderr


def test_commit_without_base_warns(store, cli) -> None:
    write_adapter(Path("out/lora"))
    result = cli("commit", "out/lora", "--model", "lora", "-m", "x")
    assert "without --base" in result.stderr
    assert result.stdout.strip()


def test_commit_refuses_an_inconsistent_adapter(store, cli) -> None:
    write_adapter(Path("out/lora"), config={"r": 8})  # tensors have rank 4
    result = cli("commit", "out/lora", "--model", "lora", "-m", "lora", expect=EXIT_ERROR)
    assert "r=8" in result.stderr


def test_check_compat_passes(base, cli) -> None:
    write_adapter(Path("out/lora"))
    cli("commit", "out/lora", "--model", "sql-lora", "-m", "sql-lora", "--base", "llama")
    result = cli("check-compat", "llama@v1.0.0", "sql-lora")
    assert result.stdout.splitlines() == [
        "ok  model.layers.0.self_attn.q_proj -> model.layers.0.self_attn.q_proj.weight",
        "ok  model.layers.0.self_attn.v_proj -> model.layers.0.self_attn.v_proj.weight",
    ]
    assert "compatible: 2 modules" in result.stderr
    data = cli("check-compat", "llama", "out/lora", "--json").json()  # a folder works too
    assert data["compatible"] is True and data["problems"] == []
    assert data["modules"][1]["lora_B_shape"] == [H2, R]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {
                "shapes": {"model.layers.0.self_attn.v_proj": ((R, H), (H, R))},
                "targets": ("v_proj",),
            },
            "shape mismatch",
        ),
        (
            {
                "shapes": {"model.layers.0.self_attn.k_proj": ((R, H), (H, R))},
                "targets": ("k_proj",),
            },
            "no tensor",
        ),
        (
            {
                "shapes": {"model.layers.0.self_attn.q_proj": ((R, H), (H, R))},
                "targets": ("q_proj", "o_proj"),
            },
            "o_proj",
        ),
        ({"config": {"r": 2}}, "rank mismatch"),
        ({"shapes": {"model.norm": ((R, H), (H, R))}, "targets": ("norm",)}, "cannot adapt"),
    ],
    ids=["shape", "missing-module", "missing-target", "rank", "not-a-matrix"],
)
def test_check_compat_fails_loudly(base, cli, kwargs, message) -> None:
    write_adapter(Path("out/lora"), **kwargs)
    result = cli("check-compat", "llama", "out/lora", expect=EXIT_ERROR)
    assert "does not fit" in result.stderr and message in result.stderr
    assert "BAD" in result.stdout
    report = cli("check-compat", "llama", "out/lora", "--json", expect=EXIT_ERROR)
    assert report.json()["compatible"] is False and report.json()["problems"]


def test_other_adapter_types_are_unsupported(base, cli) -> None:
    write_adapter(Path("out/ia3"), config={"peft_type": "IA3"})
    result = cli("check-compat", "llama", "out/ia3", expect=EXIT_ERROR)
    assert "IA3" in result.stderr and "LoRA adapters only" in result.stderr
    # committing one records what it is, without pretending to check it
    cli("commit", "out/ia3", "--model", "ia3", "-m", "ia3", "--base", "llama")
    assert cli("show", "ia3", "--json").json()["lineage"]["adapter"]["type"] == "IA3"


def test_check_compat_on_something_that_is_not_an_adapter(base, cli) -> None:
    result = cli("check-compat", "llama", "llama", expect=EXIT_ERROR)
    assert "not a PEFT adapter" in result.stderr
    cli("check-compat", "nowhere", "llama", expect=1)
    assert EXIT_NO_STORE != EXIT_ERROR


# --- merging ------------------------------------------------------------------------------------


def reference_merge(w, a, b, scale, *, transposed=False):
    delta = (b.astype(np.float32) @ a.astype(np.float32)) * np.float32(scale)
    if transposed:
        delta = delta.T
    return (w.astype(np.float32) + delta).astype(w.dtype)


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F16"])
def test_merge_matches_numpy(store, cli, dtype) -> None:
    tensors = write_base(Path("models/llama"), DTYPES[dtype])
    cli("commit", "models/llama", "-m", "base")
    lora = write_adapter(Path("out/lora"))
    cli("commit", "out/lora", "--model", "sql-lora", "-m", "sql-lora", "--base", "llama")
    merged_id = cli(
        "merge-adapter", "llama", "sql-lora", "--model", "llama-sql", "-m", "merged"
    ).stdout.strip()
    cli("checkout", "llama-sql", "--to", "out/merged")
    merged = read_st(Path("out/merged/model.safetensors"))
    for module in ("q_proj", "v_proj"):
        name = f"model.layers.0.self_attn.{module}"
        expected = reference_merge(
            tensors[f"{name}.weight"],
            lora[f"base_model.model.{name}.lora_A.weight"],
            lora[f"base_model.model.{name}.lora_B.weight"],
            ALPHA / R,
        )
        got = merged[f"{name}.weight"]
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(
            got.astype(np.float32), expected.astype(np.float32), rtol=1e-6, atol=1e-6
        )
        assert np.mean(got.view(np.uint8) == expected.view(np.uint8)) > 0.99
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert merged[name].tobytes() == tensors[name].tobytes()
    assert (
        Path("out/merged/config.json").read_bytes() == Path("models/llama/config.json").read_bytes()
    )
    lineage = cli("show", "llama-sql", "--json").json()["lineage"]
    assert lineage["base"]["model"] == "llama" and lineage["merged_adapter"]["model"] == "sql-lora"
    assert lineage["merged_adapter"]["adapter"]["rank"] == R
    assert lineage["derivation"] == "merge-adapter"
    graph = cli("lineage", "llama-sql", "--json").json()
    relations = {(e["relation"], graph["nodes"][e["to"]]["model"]) for e in graph["ancestry"]}
    assert {("base", "llama"), ("merged_adapter", "sql-lora")} <= relations
    assert merged_id == graph["root"]


def test_merge_fan_in_fan_out_embedding_and_rslora(store, cli) -> None:
    tensors = write_base(Path("models/gpt"))
    cli("commit", "models/gpt", "-m", "base")
    rng = np.random.default_rng(5)
    emb_a = rng.standard_normal((R, V)).astype(np.float32)
    emb_b = rng.standard_normal((H, R)).astype(np.float32)
    lora = write_adapter(
        Path("out/lora"),
        shapes={"model.layers.0.mlp.c_fc": ((R, H), (H2, R))},
        targets=("c_fc", "embed_tokens"),
        config={"fan_in_fan_out": True, "use_rslora": True},
        extra={
            "base_model.model.model.embed_tokens.lora_embedding_A": emb_a,
            "base_model.model.model.embed_tokens.lora_embedding_B": emb_b,
        },
    )
    cli("commit", "out/lora", "--model", "gpt-lora", "-m", "gpt-lora", "--base", "gpt")
    cli("merge-adapter", "gpt", "gpt-lora", "--model", "gpt-merged")
    cli("checkout", "gpt-merged", "--to", "out/merged")
    merged = read_st(Path("out/merged/model.safetensors"))
    scale = ALPHA / np.sqrt(R)
    expected = reference_merge(
        tensors["model.layers.0.mlp.c_fc.weight"],
        lora["base_model.model.model.layers.0.mlp.c_fc.lora_A.weight"],
        lora["base_model.model.model.layers.0.mlp.c_fc.lora_B.weight"],
        scale,
        transposed=True,
    )
    np.testing.assert_allclose(
        merged["model.layers.0.mlp.c_fc.weight"], expected, rtol=1e-6, atol=1e-6
    )
    expected_emb = reference_merge(
        tensors["model.embed_tokens.weight"], emb_a, emb_b, scale, transposed=True
    )
    np.testing.assert_allclose(
        merged["model.embed_tokens.weight"], expected_emb, rtol=1e-6, atol=1e-6
    )


def test_merge_refuses_what_it_cannot_do(base, cli) -> None:
    write_adapter(Path("out/dora"), config={"use_dora": True})
    cli("commit", "out/dora", "--model", "dora", "-m", "dora", "--base", "llama")
    result = cli("merge-adapter", "llama", "dora", "--model", "merged", expect=EXIT_ERROR)
    assert "DoRA" in result.stderr
    write_adapter(
        Path("out/bad"),
        shapes={"model.layers.0.self_attn.q_proj": ((R, H2), (H, R))},
        targets=("q_proj",),
    )
    cli("commit", "out/bad", "--model", "bad", "-m", "bad")  # no --base: recorded unchecked
    result = cli("merge-adapter", "llama", "bad", "--model", "merged", expect=EXIT_ERROR)
    assert "does not fit" in result.stderr
    assert "merged" not in cli("models").stdout


def test_merge_replaces_modules_to_save(store, cli) -> None:
    write_base(Path("models/llama"), ml_dtypes.bfloat16)
    cli("commit", "models/llama", "-m", "base")
    head = np.random.default_rng(9).standard_normal((V, H)).astype(np.float32)
    write_adapter(
        Path("out/lora"),
        config={"modules_to_save": ["lm_head"]},
        extra={"base_model.model.lm_head.modules_to_save.default.weight": head},
    )
    report = cli("check-compat", "llama", "out/lora", "--json").json()
    assert {"module": "lm_head.weight", "kind": "replaced", "ok": True}.items() <= next(
        m for m in report["modules"] if m["kind"] == "replaced"
    ).items()
    cli("commit", "out/lora", "--model", "lora", "-m", "lora", "--base", "llama")
    data = cli("merge-adapter", "llama", "lora", "--model", "merged", "--json").json()
    assert data["replaced_tensors"] == ["lm_head.weight"]
    assert len(data["merged_tensors"]) == 2
    cli("checkout", "merged", "--to", "out/merged")
    merged = read_st(Path("out/merged/model.safetensors"))
    assert merged["lm_head.weight"].tobytes() == head.astype(ml_dtypes.bfloat16).tobytes()
