"""A stand-in for a training job: writes a model folder and its evaluation metrics.

    python examples/ci/train.py OUT_DIR METRICS_JSON [--seed N]

The weights come from examples/make_model.py (a fine-tune of OUT_DIR when it already holds a
model); the metrics are what an evaluation step would write (a JSON object of numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("metrics")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    command = [
        sys.executable,
        os.path.join(HERE, "..", "make_model.py"),
        args.out,
        "--seed",
        str(args.seed),
    ]
    if os.path.exists(os.path.join(args.out, "model.safetensors")):
        command += ["--finetune-of", args.out]
    subprocess.run(command, check=True)
    accuracy = round(0.85 + (args.seed % 10) / 100, 4)
    with open(args.metrics, "w", encoding="utf-8") as handle:
        json.dump({"accuracy": accuracy, "eval_loss": round(1 - accuracy, 4)}, handle)


if __name__ == "__main__":
    main()
