"""Small stores for the deployment tests: a tiny BERT-shaped model, tagged versions, LoRA adapters.

Built through the library (commit + tag), with an injectable clock so history times are exact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from safetensors.numpy import save_file

from mvc.errors import MvcError, NotFound, UsageError
from mvc.ops.commit import commit
from mvc.ops.names import create_tag
from mvc.repo import Repo

HIDDEN = 8
LAYERS = 2
ENV = {"MVC_USER_NAME": "Ada", "MVC_USER_EMAIL": "ada@example.com", "MVC_CORE_FSYNC": "false"}


class Clock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, minutes: float = 1) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now


def base_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {"embeddings.weight": rng.normal(0, 0.02, (32, HIDDEN)).astype(np.float32)}
    for layer in range(LAYERS):
        for name in ("query", "value"):
            key = f"encoder.layer.{layer}.attention.{name}"
            weights[f"{key}.weight"] = rng.normal(0, 0.02, (HIDDEN, HIDDEN)).astype(np.float32)
            weights[f"{key}.bias"] = np.zeros(HIDDEN, np.float32)
    return weights


def write_model(folder: str, seed: int) -> None:
    os.makedirs(folder, exist_ok=True)
    save_file(base_weights(seed), os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump({"model_type": "bert", "hidden_size": HIDDEN, "seed": seed}, handle)


def write_adapter(folder: str, seed: int, *, rank: int = 2, in_dim: int = HIDDEN) -> None:
    """A PEFT LoRA folder for the query/value projections (in_dim != HIDDEN: a bad fit)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(LAYERS):
        for name in ("query", "value"):
            key = f"base_model.model.encoder.layer.{layer}.attention.{name}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(0, 1, (rank, in_dim)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = rng.normal(0, 1, (HIDDEN, rank)).astype(np.float32)
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": ["query", "value"],
    }
    with open(os.path.join(folder, "adapter_config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)


@dataclass
class Store:
    repo: Repo
    clock: Clock
    root: str
    ids: dict[str, str] = field(default_factory=dict)  # "model@tag" -> version id

    def add(self, model: str, tag: str, writer: str = "model", seed: int = 0, **kw: int) -> str:
        folder = os.path.join(self.root, "work", model, tag)
        if writer == "model":
            write_model(folder, seed)
        else:
            write_adapter(folder, seed, **kw)
        result = commit(self.repo, folder, message=f"{model} {tag}", model=model)
        assert result.version_id
        create_tag(self.repo, model, tag, f"id={result.version_id}")
        self.ids[f"{model}@{tag}"] = result.version_id
        self.clock.tick()
        return result.version_id

    def reopen(self) -> Repo:
        return Repo(self.root, env=ENV, clock=self.clock)


def build_store(root: str, *, adapters: bool = False) -> Store:
    clock = Clock()
    repo = Repo.init(root, env=ENV, clock=clock)
    store = Store(repo, clock, root)
    for seed, tag in enumerate(("v1.4.0", "v1.5.0", "v1.6.0"), start=1):
        store.add("bert", tag, seed=seed)
    if adapters:
        store.add("sql-lora", "v1.3.0", writer="adapter", seed=10)
        store.add("sql-lora", "v1.4.0", writer="adapter", seed=11, rank=4)
        store.add("sql-lora", "v2.0.0", writer="adapter", seed=13, rank=20)
        store.add("bad-lora", "v1.0.0", writer="adapter", seed=12, in_dim=HIDDEN + 4)
    return store


# --- the rollout state machine ------------------------------------------------------------------

U, N = UsageError, NotFound
# The transition table of docs/deployment.md: state -> action -> the state it leads to, or the
# error it is refused with. tests/unit/test_deployment.py checks every cell on the pure planners;
# tests/integration/test_deploy.py runs one move of each kind through the command line.
TABLE: dict[str, dict[str, str | type[MvcError]]] = {
    "none": {
        "set": "stable", "canary": N, "step": N, "blue-green": N, "shadow": N, "ab": N,
        "promote": N, "promote-arm": N, "switch": N, "rollback": N,
    },
    "stable": {
        "set": "stable", "canary": "canary", "step": U, "blue-green": "staged",
        "shadow": "shadow", "ab": "ab", "promote": U, "promote-arm": U, "switch": U,
        "rollback": N,
    },
    "canary": {
        "set": "stable", "canary": U, "step": "canary", "blue-green": U, "shadow": U, "ab": U,
        "promote": "stable", "promote-arm": U, "switch": U, "rollback": "stable",
    },
    "staged": {
        "set": "stable", "canary": U, "step": U, "blue-green": U, "shadow": U, "ab": U,
        "promote": U, "promote-arm": U, "switch": "switched", "rollback": "stable",
    },
    "switched": {
        "set": "stable", "canary": "canary", "step": U, "blue-green": "staged",
        "shadow": "shadow", "ab": "ab", "promote": "stable", "promote-arm": U,
        "switch": "switched", "rollback": "stable",
    },
    "shadow": {
        "set": "stable", "canary": "canary", "step": U, "blue-green": "staged",
        "shadow": "shadow", "ab": "ab", "promote": U, "promote-arm": U, "switch": U,
        "rollback": "stable",
    },
    "ab": {
        "set": "stable", "canary": U, "step": U, "blue-green": U, "shadow": U, "ab": "ab",
        "promote": U, "promote-arm": "stable", "switch": U, "rollback": "stable",
    },
}  # fmt: skip
