"""A new user's first hour (issue 12), through the installed ``mvc`` in a subprocess.

Each test is one rough edge a newcomer met: a typo'd path, a command run twice, a usage slip.
"""

from __future__ import annotations

import os
from pathlib import Path

from mvc.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- clone and remote add never write into a folder that is not a store -------------------------


def test_clone_of_a_mistyped_path_fails_and_writes_nothing(store, run_mvc, tmp_path) -> None:
    done = run_mvc("clone", tmp_path / "typo" / "path", tmp_path / "dest")
    assert done.returncode == EXIT_ERROR, done.stderr
    assert done.stderr.startswith("error: no mvc store at ") and "Traceback" not in done.stderr
    assert not (tmp_path / "typo").exists() and not (tmp_path / "dest").exists()


def test_clone_and_remote_add_refuse_a_folder_that_is_not_a_store(store, run_mvc, tmp_path) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    before = _tree(foreign)
    done = run_mvc("clone", foreign, tmp_path / "dest")
    assert done.returncode == EXIT_USAGE
    assert "neither an mvc store nor empty (it holds cat.jpg)" in done.stderr
    assert not (tmp_path / "dest").exists()
    done = run_mvc("remote", "add", "x", foreign, cwd=store.root)
    assert done.returncode == EXIT_USAGE and "neither an mvc store nor empty" in done.stderr
    assert _tree(foreign) == before  # no probe/ written there
    assert run_mvc("remote", "list", cwd=store.root).stdout == ""


def test_remote_add_of_a_folder_not_made_yet_writes_nothing(store, run_mvc, tmp_path) -> None:
    done = run_mvc("remote", "add", "backup", tmp_path / "later", cwd=store.root)
    assert done.returncode == EXIT_OK, done.stderr
    assert "does not exist yet; the first push creates it" in done.stderr
    assert not (tmp_path / "later").exists()


def test_cloning_an_empty_store_is_an_explicit_choice(store, run_mvc, tmp_path) -> None:
    empty = tmp_path / "empty"
    assert run_mvc("init", empty).returncode == EXIT_OK
    done = run_mvc("clone", empty, tmp_path / "dest")
    assert done.returncode == EXIT_USAGE
    assert "is an empty store: there is nothing to clone" in done.stderr
    assert "--allow-empty" in done.stderr and not (tmp_path / "dest").exists()
    done = run_mvc("clone", empty, tmp_path / "dest", "--allow-empty")
    assert done.returncode == EXIT_OK, done.stderr
    assert "the remote is empty" in done.stderr
    assert (tmp_path / "dest" / ".mvc").is_dir()
    assert os.listdir(tmp_path / "dest") == [".mvc"]


# --- auto-bump on a real retrain -----------------------------------------------------------------


def test_a_retrain_saved_by_a_newer_framework_bumps_minor(store, run_mvc, make_model) -> None:
    """Newer transformers drop the position_ids buffer and save bos_token_id: null."""
    import json

    from safetensors.numpy import load_file, save_file

    folder = make_model("models/bert", seed=0)
    assert run_mvc("commit", "models/bert", "-m", "v1", cwd=store.root).returncode == 0
    assert run_mvc("tag", "bert", "v1.0.0", cwd=store.root).returncode == 0
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["position_ids"]
    tensors["layer.0.weight"] = tensors["layer.0.weight"] * 1.01  # retrained
    save_file(tensors, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "bos_token_id": None}))
    assert run_mvc("commit", "models/bert", "-m", "retrain", cwd=store.root).returncode == 0
    done = run_mvc("tag", "bert", "--bump", "auto", "--explain", cwd=store.root)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("bert@v1.1.0 ") and lines[1].startswith("minor since v1.0.0")
    assert "  patch  framework buffer removed: model.safetensors: position_ids" in lines
    assert "  patch  config key with its default value: config.json: bos_token_id added (null)" in (
        lines
    )
    assert not any(line.startswith("  major") for line in lines)
