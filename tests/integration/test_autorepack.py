"""``repack.auto``: a commit starts a detached ``mvc repack --auto`` of what commits wrote, never
waits for it, and never starts a second one while one runs.

The background process is real (``python -m mvc repack --auto``, started by the commit); the
tests hold repack's own lock (``.mvc/locks/repack``, the one every delta-making repack takes)
to keep it waiting where they need it to be still running.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from contextlib import ExitStack

import numpy as np
import pytest

from mvc import codec
from mvc.ops import autorepack
from mvc.refnames import branch
from mvc.repo import Repo
from mvc.storage import lock
from mvc.store import object_key


def _write(folder: pathlib.Path, seed: int, tuned_from: int | None = None) -> None:
    """Smooth fp32 weights (their exponent bytes compress); a fine-tune perturbs the low bits."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed if tuned_from is None else tuned_from)
    weights = rng.normal(0, 0.02, (256, 256)).astype(np.float32)
    if tuned_from is not None:
        noise = np.random.default_rng(seed).normal(0, 1e-4, weights.shape).astype(np.float32)
        weights = (weights * (1 + noise)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"layer.weight": weights}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"seed": seed}) + "\n")


def _chunks(repo: Repo, version: str) -> list[str]:
    tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
    manifest = repo.objects.manifest_of(tree.files["model.safetensors"])
    return [c.id for c in manifest.chunks if c.size >= 4096]


def _encodings(repo: Repo, version: str) -> set[str]:
    found = set()
    for oid in _chunks(repo, version):
        stored = (pathlib.Path(repo.store_dir) / object_key(oid)).read_bytes()
        found.add(codec.read_header(stored)[0]["c"])
    return found


def _wait(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _log(store: Repo) -> str:
    path = pathlib.Path(store.store_dir) / autorepack.LOG
    return path.read_text() if path.exists() else ""


def _done(store: Repo) -> bool:
    taken = pathlib.Path(store.store_dir) / autorepack.TAKEN
    return not autorepack.running(store) and not taken.exists() and "examined" in _log(store)


@pytest.fixture
def auto(store, cli):
    cli("config", "set", "repack.auto", "true")
    cli("config", "set", "repack.auto_bytes", "1")
    return Repo(store.root)


def test_a_commit_with_repack_auto_repacks_its_chunks_in_the_background(
    auto, cli, tmp_path
) -> None:
    folder = tmp_path / "work" / "models" / "bert"
    _write(folder, seed=0)
    v1 = cli("commit", "models/bert", "-m", "base").stdout.strip()
    _wait(lambda: _done(auto), "the first background repack")
    assert _encodings(auto, v1) == {"group"}  # compressed: byte-grouped, exponents zstd'd
    _write(folder, seed=1, tuned_from=0)
    result = cli("commit", "models/bert", "-m", "tuned")
    v2 = result.stdout.strip()
    assert "repacking in the background" in result.stderr and "repack.log" in result.stderr
    _wait(lambda: _done(auto) and _log(auto).count("examined") == 2, "the second repack")
    assert _encodings(auto, v2) == {"delta"}  # the fine-tune: deltas against v1's chunks
    assert _log(auto).count("started after the commit of") == 2
    cli("fsck")
    out = tmp_path / "out"
    cli("checkout", f"bert@{v2}", "--to", str(out))
    assert (out / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


def test_the_commit_returns_while_the_repack_still_runs(auto, cli, tmp_path) -> None:
    folder = tmp_path / "work" / "models" / "bert"
    _write(folder, seed=0)
    with lock.hold(os.path.join(auto.store_dir, "locks", "repack")):
        v1 = cli("commit", "models/bert", "-m", "base").stdout.strip()
        # the commit is back, and its repack is under way, held up by the lock we hold
        _wait(lambda: autorepack.running(auto), "the background repack to start")
        assert autorepack.running(auto) and _encodings(auto, v1) == {"raw"}
        assert Repo(auto.root).refs.get(branch("bert", "main")) == v1
    _wait(lambda: _done(auto), "the background repack to finish")
    assert _encodings(auto, v1) == {"group"}


def test_two_commits_do_not_start_two_repacks(auto, cli, tmp_path) -> None:
    folder = tmp_path / "work" / "models" / "bert"
    _write(folder, seed=0)
    with ExitStack() as held:
        held.enter_context(lock.hold(os.path.join(auto.store_dir, "locks", "repack")))
        cli("commit", "models/bert", "-m", "base")
        _wait(lambda: autorepack.running(auto), "the background repack to start")
        _write(folder, seed=1, tuned_from=0)
        second = cli("commit", "models/bert", "-m", "tuned")
        v2 = second.stdout.strip()
        assert "repacking in the background" not in second.stderr
        # a repack started by hand meanwhile finds the lock taken and does nothing
        assert "another background repack is running" in cli("repack", "--auto").stderr
    _wait(lambda: _done(auto), "the background repack to finish")
    assert _log(auto).count("started after the commit of") == 1
    assert _log(auto).count("examined") == 1
    assert _encodings(auto, v2) == {"raw"}  # queued for the next run, not repacked twice at once
    assert v2 in (pathlib.Path(auto.store_dir) / autorepack.PENDING).read_text()
    cli("repack", "--auto")
    assert _encodings(auto, v2) == {"delta"}
    assert not (pathlib.Path(auto.store_dir) / autorepack.PENDING).exists()


def test_below_the_threshold_nothing_starts(store, cli, tmp_path) -> None:
    cli("config", "set", "repack.auto", "true")
    cli("config", "set", "repack.auto_bytes", "1G")
    _write(tmp_path / "work" / "models" / "bert", seed=0)
    result = cli("commit", "models/bert", "-m", "base")
    assert "background" not in result.stderr
    assert not (pathlib.Path(store.store_dir) / autorepack.LOG).exists()
    assert autorepack.pending_bytes(store) > 200_000  # queued, for when more arrives


def test_off_by_default_queues_nothing(store, cli, tmp_path) -> None:
    _write(tmp_path / "work" / "models" / "bert", seed=0)
    assert "background" not in cli("commit", "models/bert", "-m", "base").stderr
    assert not (pathlib.Path(store.store_dir) / autorepack.PENDING).exists()
    assert cli("config", "get", "repack.auto").stdout.strip() == "false"


def test_a_run_killed_after_taking_the_queue_is_finished_by_the_next(auto, cli, tmp_path) -> None:
    """The taken list survives a killed run: the next run repacks it."""
    folder = tmp_path / "work" / "models" / "bert"
    _write(folder, seed=0)
    cli("config", "set", "repack.auto", "false")
    v1 = cli("commit", "models/bert", "-m", "base").stdout.strip()
    autorepack.queue(auto, v1, 262144)
    with autorepack.hold_if_free(auto) as free:  # what a run does first, then it is killed
        assert free
        assert autorepack.take(auto) == [v1]
    assert (pathlib.Path(auto.store_dir) / autorepack.TAKEN).exists()
    assert _encodings(auto, v1) == {"raw"}
    cli("repack", "--auto")
    assert _encodings(auto, v1) == {"group"}
    assert not (pathlib.Path(auto.store_dir) / autorepack.TAKEN).exists()


def test_bad_sizes_are_refused(store, cli) -> None:
    result = cli("config", "set", "repack.auto_bytes", "lots", expect=2)
    assert "repack.auto_bytes" in result.stderr and "512M" in result.stderr
