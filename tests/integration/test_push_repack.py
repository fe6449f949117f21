"""Push sends the compact form (issue 14, `push.repack`): a fine-tune committed (whole chunks)
and pushed goes to the remote as deltas of its parent's chunks where the base is there or goes
with it; the remote reads back byte for byte and fscks clean."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from mvc import codec
from mvc.ids import ObjectId
from mvc.repo import Repo
from mvc.storage.local import LocalStorage
from mvc.store import ObjectStore, object_key


def _tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "embed.weight": rng.normal(0, 0.02, (512, 256)).astype(np.float32),
        "layer.0.weight": rng.normal(0, 0.02, (256, 256)).astype(np.float32),
        "position_ids": np.arange(128, dtype=np.int64),
    }


def _tuned(tensors: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Low bits perturbed (a relative change of about 1e-4): what a few training steps do."""
    rng = np.random.default_rng(1000 + seed)
    out = {}
    for name, value in tensors.items():
        if value.dtype == np.float32:
            noise = rng.normal(0, 1e-4, value.shape).astype(np.float32)
            value = (value * (1 + noise)).astype(np.float32)
        out[name] = value
    return out


def _write(folder: pathlib.Path, tensors: dict[str, np.ndarray], note: str) -> bytes:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"note": note}) + "\n")
    return (folder / "model.safetensors").read_bytes()


def _commit(cli, folder: pathlib.Path, *args: str) -> str:
    return str(cli("commit", str(folder), "-m", folder.name, *args, "--json").json()["version"])


def _new_chunks(repo: Repo, version: str, parent: str | None) -> dict[ObjectId, int]:
    """The chunks of a version's weights its parent lacks, with their raw sizes."""

    def chunks(of: str) -> dict[ObjectId, int]:
        tree = repo.objects.get_tree(repo.objects.get_version(of).tree)
        manifest = repo.objects.manifest_of(tree.files["model.safetensors"])
        return {c.id: c.size for c in manifest.chunks}

    mine = chunks(version)
    theirs = chunks(parent) if parent else {}
    return {c: size for c, size in mine.items() if c not in theirs}


def _remote_deltas(remote: pathlib.Path) -> dict[ObjectId, str]:
    objects = ObjectStore(LocalStorage(str(remote)))  # the remote is a bare store
    found = {}
    for oid in objects.iter_ids():
        base = codec.header_delta_base(objects.read_header(oid))
        if base is not None:
            found[oid] = base[0]
    return found


def _fine_tune_pushed(cli, tmp_path: pathlib.Path) -> tuple[str, str, bytes, pathlib.Path]:
    folder = tmp_path / "work" / "models" / "bert"
    _write(folder, _tensors(0), "base")
    base = _commit(cli, folder, "--model", "bert")
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{remote}")
    cli("push", "origin", "bert")
    wanted = _write(folder, _tuned(_tensors(0), 1), "tuned")
    tuned = _commit(cli, folder, "--model", "bert")
    return base, tuned, wanted, remote


def test_a_fine_tune_pushed_after_commit_arrives_as_deltas_and_reads_back(store, cli, tmp_path):
    base, tuned, wanted, remote = _fine_tune_pushed(cli, tmp_path)
    new = _new_chunks(store, tuned, base)
    assert all(store.objects.read_header(c)["c"] == "raw" for c in new)  # commit wrote them whole
    sent = cli("push", "origin", "bert", "--json").json()["transfer"]
    assert sent["chunks_sent"] == len(new) + 1  # and config.json's
    assert sent["bytes_sent"] < 0.75 * sum(new.values())  # far fewer bytes than the raw chunks
    deltas = _remote_deltas(remote)
    assert len(deltas.keys() & new.keys()) == 2  # both fp32 tensors; position_ids is unchanged
    for delta, its_base in deltas.items():  # every delta's base is on the remote
        assert (remote / object_key(its_base)).exists(), delta
    local = Repo(str(store.root))  # the push repacked this store: compact here too
    for delta in deltas:
        assert codec.is_delta(local.objects.read_stored(delta))

    clone = tmp_path / "clone"
    cli("clone", f"file://{remote}", clone)
    assert cli("-C", clone, "fsck", "--json").json()["ok"]
    out = tmp_path / "out"
    cli("-C", clone, "checkout", f"bert@{tuned}", "--to", out)
    assert (out / "model.safetensors").read_bytes() == wanted


def test_push_repack_false_sends_chunks_as_stored(store, cli, tmp_path):
    base, tuned, _wanted, remote = _fine_tune_pushed(cli, tmp_path)
    cli("config", "set", "push.repack", "false")
    sent = cli("push", "origin", "bert", "--json").json()["transfer"]
    assert sent["bytes_sent"] > sum(_new_chunks(store, tuned, base).values())
    assert not _remote_deltas(remote)
    assert all(store.objects.read_header(c)["c"] == "raw" for c in _new_chunks(store, tuned, base))


def test_no_delta_is_sent_against_a_base_the_remote_does_not_get(store, cli, tmp_path):
    """A model committed with --base another model: pushed alone, the base's chunks are
    neither on the remote nor sent (push sends history, not lineage bases), so its chunks go
    whole and the remote reads them without the base."""
    base_folder = tmp_path / "work" / "models" / "base"
    _write(base_folder, _tensors(0), "base")
    base = _commit(cli, base_folder, "--model", "base")
    folder = tmp_path / "work" / "models" / "merged"
    wanted = _write(folder, _tuned(_tensors(0), 5), "merged")
    merged = _commit(cli, folder, "--model", "merged", "--base", f"base@{base}")
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{remote}")
    cli("push", "origin", "merged")
    assert not _remote_deltas(remote)
    clone = tmp_path / "clone"
    cli("clone", f"file://{remote}", clone)
    assert cli("-C", clone, "fsck", "--json").json()["ok"]
    cli("-C", clone, "checkout", f"merged@{merged}", "--to", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == wanted
    # Pushed with its base, the same chunks go as deltas.
    remote2 = tmp_path / "remote2"
    cli("remote", "add", "second", f"file://{remote2}")
    cli("push", "second", "base")
    cli("push", "second", "merged")
    assert _remote_deltas(remote2)


def test_a_damaged_base_here_does_not_block_a_push_that_does_not_send_it(store, cli, tmp_path):
    """The remote already holds the base version; here one of its chunks is damaged. The push
    of the fine-tune sends the new chunks as stored instead of deltas of that base (and the
    remote's good copy is untouched); fsck still reports the damage here."""
    base, tuned, wanted, remote = _fine_tune_pushed(cli, tmp_path)
    tree = store.objects.get_tree(store.objects.get_version(base).tree)
    manifest = store.objects.manifest_of(tree.files["model.safetensors"])
    damaged = max(manifest.chunks, key=lambda c: c.size).id  # a big tensor the fine-tune changed
    assert damaged not in _new_chunks(store, tuned, None)
    path = pathlib.Path(store.store_dir) / object_key(damaged)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    pushed = cli("push", "origin", "bert", "--json").json()
    assert pushed["transfer"]["chunks_sent"] >= 1
    assert (remote / object_key(damaged)).read_bytes() != bytes(data)  # the good copy stays
    clone = tmp_path / "clone"
    cli("clone", f"file://{remote}", clone)
    out = tmp_path / "out"
    cli("-C", clone, "checkout", f"bert@{tuned}", "--to", out)
    assert (out / "model.safetensors").read_bytes() == wanted
    assert not cli("fsck", "--json", expect=12).json()["ok"]
