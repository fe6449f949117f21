"""Make a small but realistic model folder (safetensors weights, config, tokenizer) to try mvc on.

    python examples/make_model.py models/tiny-bert [--seed N] [--finetune-of models/tiny-bert]

With --finetune-of, the weights are the given model's plus a small update (like a fine-tune),
so most bytes differ only in their low bits and unchanged tensors stay identical.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from safetensors.numpy import load_file, save_file

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
