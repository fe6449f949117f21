"""Hugging Face sharded checkpoints: byte-identical round trips, and ``show`` reading the index.

The shards are written by huggingface_hub's own ``save_torch_state_dict`` (what
``save_pretrained`` calls) on CPU torch; .ci/run installs both (peft needs huggingface_hub), and
under CI=true their absence fails."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def _hub_and_torch() -> tuple[Any, Any]:
    try:
        import huggingface_hub
        import torch
    except ImportError:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            raise
        pytest.skip("torch and huggingface_hub are not installed (.ci/run installs them)")
    return huggingface_hub, torch


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def sharded(store, tmp_path) -> Path:
    hub, torch = _hub_and_torch()
    torch.manual_seed(0)
    state = {f"layer.{i}.weight": torch.randn(64, 64) for i in range(6)}
    state["embed.weight"] = torch.randn(128, 64).to(torch.bfloat16)
    folder = Path(store.root) / "models" / "big"
    folder.mkdir(parents=True)
    hub.save_torch_state_dict(state, str(folder), max_shard_size="40KB")
    (folder / "config.json").write_text(json.dumps({"hidden_size": 64}) + "\n")
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0}}}) + "\n")
    return folder


def test_a_sharded_folder_round_trips_and_show_reads_its_index(store, cli, sharded, tmp_path):
    shards = sorted(p.name for p in sharded.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2
    cli("commit", "models/big", "-m", "sharded")
    cli("checkout", "big", "--to", tmp_path / "out")
    assert files_in(tmp_path / "out") == files_in(sharded)
    shown = cli("show", "big", "--json").json()
    (index,) = shown["shards"]
    assert index["index"] == "model.safetensors.index.json"
    assert index["shards"] == shards and index["tensors"] == 7 and index["problems"] == []
    assert index["total_size"] == 6 * 64 * 64 * 4 + 128 * 64 * 2
    text = cli("show", "big").stdout
    assert f"shards   model.safetensors.index.json: {len(shards)} shards, 7 tensors" in text


def test_show_names_what_an_index_gets_wrong(store, cli, sharded):
    path = sharded / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    first, *_ = sorted(index["weight_map"])
    index["weight_map"][first] = "model-00099-of-00099.safetensors"
    index["metadata"]["total_size"] += 1
    path.write_text(json.dumps(index))
    cli("commit", "models/big", "-m", "bad index")
    (report,) = cli("show", "big", "--json").json()["shards"]
    assert any(
        "model-00099-of-00099.safetensors is named by the index" in p for p in report["problems"]
    )
    assert any("which the index does not map" in p and first in p for p in report["problems"])


def test_a_version_without_an_index_has_no_shards_key(store, cli, make_model):
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "plain")
    assert "shards" not in cli("show", "bert", "--json").json()


def test_a_broken_index_is_reported_not_fatal(store, cli, make_model):
    make_model("models/bert", extra={"model.safetensors.index.json": "{not json"})
    cli("commit", "models/bert", "-m", "x")
    (report,) = cli("show", "bert", "--json").json()["shards"]
    assert report["problems"][0].startswith("unreadable index: not JSON")
