"""Make a small but realistic model folder (safetensors weights, config, tokenizer) to try mvc on.

    python examples/make_model.py models/tiny-bert [--seed N] [--finetune-of models/tiny-bert]

With --finetune-of, the weights are the given model's plus a small update (like a fine-tune),
so most bytes differ only in their low bits and unchanged tensors stay identical.
"""

from __future__ import annotations

import argparse
import json
import os
import struct

import numpy as np

LAYERS = 2
HIDDEN = 128
VOCAB = 1000


def base_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {"embeddings.word_embeddings.weight": rng.normal(0, 0.02, (VOCAB, HIDDEN))}
    for layer in range(LAYERS):
        prefix = f"encoder.layer.{layer}"
        for name in ("query", "key", "value", "output"):
            weights[f"{prefix}.attention.{name}.weight"] = rng.normal(0, 0.02, (HIDDEN, HIDDEN))
            weights[f"{prefix}.attention.{name}.bias"] = np.zeros(HIDDEN)
        weights[f"{prefix}.intermediate.dense.weight"] = rng.normal(0, 0.02, (4 * HIDDEN, HIDDEN))
        weights[f"{prefix}.output.dense.weight"] = rng.normal(0, 0.02, (HIDDEN, 4 * HIDDEN))
    return {name: value.astype(np.float32) for name, value in weights.items()}


def save_file(weights: dict[str, np.ndarray], path: str, metadata: dict[str, str]) -> None:
    """Write float32 tensors as safetensors: an 8-byte header length, a JSON header, the data."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for name, value in weights.items():
        header[name] = {
            "dtype": "F32",
            "shape": list(value.shape),
            "data_offsets": [offset, offset + value.nbytes],
        }
        offset += value.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        for value in weights.values():
            handle.write(np.ascontiguousarray(value, dtype="<f4").tobytes())


def load_file(path: str) -> dict[str, np.ndarray]:
    """Read back the float32 tensors :func:`save_file` wrote."""
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
        data = handle.read()
    header.pop("__metadata__", None)
    return {
        name: np.frombuffer(data[entry["data_offsets"][0] : entry["data_offsets"][1]], dtype="<f4")
        .reshape(entry["shape"])
        .copy()
        for name, entry in header.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finetune-of", help="folder of a model to derive from")
    args = parser.parse_args()
    if args.finetune_of:
        weights = load_file(os.path.join(args.finetune_of, "model.safetensors"))
        rng = np.random.default_rng(args.seed)
        for name in list(weights)[: len(weights) // 2]:  # half the tensors were trained
            update = rng.normal(0, 1e-4, weights[name].shape).astype(np.float32)
            weights[name] = weights[name] + update
    else:
        weights = base_weights(args.seed)
    os.makedirs(args.folder, exist_ok=True)
    save_file(weights, os.path.join(args.folder, "model.safetensors"), metadata={"format": "np"})
    config = {
        "model_type": "bert",
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "vocab_size": VOCAB,
        "num_labels": 2,
    }
    with open(os.path.join(args.folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    tokens = {f"tok{i}": i for i in range(VOCAB)}
    with open(os.path.join(args.folder, "tokenizer.json"), "w", encoding="utf-8") as handle:
        json.dump({"version": "1.0", "model": {"type": "WordPiece", "vocab": tokens}}, handle)


if __name__ == "__main__":
    main()
