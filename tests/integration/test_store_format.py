"""Store format 2: a file of one chunk has no manifest object, and a store (local or remote) is
upgraded to format 2 exactly when it is about to hold a tree that needs it."""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

from mvc.errors import UnknownFormat
from mvc.objects import Tree, TreeEntry
from mvc.specs import resolve
from mvc.storage.local import LocalStorage
from mvc.store import ObjectStore

FROZEN_1 = pathlib.Path(__file__).resolve().parents[1] / "data" / "frozen-store-1"
FORMAT_1 = "mvc store format 1\n"
FORMAT_2 = "mvc store format 2\n"


def _object_files(store_dir: pathlib.Path) -> int:
    return sum(len(names) for _here, _dirs, names in os.walk(store_dir / "objects"))


def _small_folder(root: pathlib.Path) -> None:
    for index in range(30):
        path = root / f"tokenizers/lang-{index:02d}/vocab.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"[PAD]\n[UNK]\nword{index}\n" * 20)
    (root / "config.json").write_text('{"layers": 2}\n')


def test_a_folder_of_small_files_takes_one_object_per_file(store, cli, tmp_path) -> None:
    folder = tmp_path / "many"
    _small_folder(folder)
    cli("commit", str(folder), "--model", "many", "-m", "small files")
    # 31 files, then the tree and the version: no manifests.
    assert _object_files(pathlib.Path(".mvc")) == 31 + 2
    assert pathlib.Path(".mvc/format").read_text() == FORMAT_2
    version = store.objects.get_version(resolve(store, "many").version)
    tree = store.objects.get_tree(version.tree)
    assert all(entry.one_chunk and entry.manifest == entry.b3 for entry in tree.files.values())
    out = tmp_path / "out"
    cli("checkout", "many", "--to", str(out))  # written whole, verified against the entry's b3
    for path in folder.rglob("*"):
        if path.is_file():
            assert (out / path.relative_to(folder)).read_bytes() == path.read_bytes()
    report = cli("fsck", "--json").json()
    assert report["ok"] is True and report["reachable"] == 33


def test_a_small_safetensors_shard_is_one_object_and_still_reads_as_tensors(
    store, cli, make_model, tmp_path
) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    folder = tmp_path / "shard"
    folder.mkdir()
    weights = {"w": np.arange(64, dtype=np.float32).reshape(8, 8), "b": np.ones(8, np.float32)}
    save_file(weights, str(folder / "model.safetensors"))
    cli("commit", str(folder), "--model", "shard", "-m", "one")
    assert _object_files(pathlib.Path(".mvc")) == 1 + 2
    (shown,) = cli("show", "shard", "--json").json()["files"]
    assert (shown["tensors"]["tensors"], shown["tensors"]["parameters"]) == (2, 72)
    weights["w"] = weights["w"] * 2
    save_file(weights, str(folder / "model.safetensors"))
    cli("commit", str(folder), "--model", "shard", "-m", "two")
    (group,) = cli("diff", "shard~1", "shard", "--json").json()["tensors"]
    assert [(c["name"], c["status"]) for c in group["changes"]] == [("w", "changed")]
    assert group["unchanged"] == 1


def test_reading_a_format_1_store_leaves_it_format_1_and_new_content_upgrades_it(
    tmp_path, mvc_env, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    root = tmp_path / "old"
    shutil.copytree(FROZEN_1, root)
    monkeypatch.chdir(root)
    fmt = root / ".mvc" / "format"
    for command in (("status",), ("log", "bert"), ("fsck",), ("show", "bert@v1.0.0")):
        cli(*command)
    assert fmt.read_text() == FORMAT_1
    # A push of format-1 trees makes a format-1 remote: older mvc can still read it.
    remote = tmp_path / "remote"
    cli("remote", "add", "folder", f"file://{remote}")
    cli("push", "folder", "bert")
    assert (remote / "format").read_text() == FORMAT_1

    (root / "models" / "bert" / "notes.txt").write_text("a new small file\n")
    cli("commit", "models/bert", "-m", "notes")
    assert fmt.read_text() == FORMAT_2
    # Its push brings the remote a format-2 tree: the remote is upgraded before it arrives.
    cli("push", "folder", "bert")
    assert (remote / "format").read_text() == FORMAT_2

    # A format-1 store that pulls a format-2 tree is upgraded too, and reads it whole.
    fresh = tmp_path / "fresh"
    cli("init", str(fresh))
    assert (fresh / ".mvc" / "format").read_text() == FORMAT_1
    cli("-C", str(fresh), "remote", "add", "folder", f"file://{remote}")
    cli("-C", str(fresh), "pull", "folder", "bert")
    assert (fresh / ".mvc" / "format").read_text() == FORMAT_2
    notes = cli("-C", str(fresh), "cat", "bert", "notes.txt").stdout_bytes
    assert notes == b"a new small file\n"
    assert cli("-C", str(fresh), "fsck", "--json").json()["ok"] is True


@pytest.mark.parametrize("first", ["status", "diff"])
def test_status_or_diff_then_commit_of_a_touched_format_1_folder_makes_no_version(
    tmp_path, mvc_env, monkeypatch: pytest.MonkeyPatch, cli, first
) -> None:
    """status and diff record re-hashed files in the stat cache, which commit then trusts:
    they must record the checked-out version's entries, not new one-chunk ones."""
    import mvc.worktree.statcache as statcache

    root = tmp_path / "old"
    shutil.copytree(FROZEN_1, root)
    monkeypatch.chdir(root)
    monkeypatch.setattr(statcache, "RACY_MARGIN_NS", -(10**9))  # trust what was just hashed
    for path in (root / "models" / "bert").iterdir():
        os.utime(path)
    cli(*(["diff", "bert"] if first == "diff" else ["status"]))
    done = cli("commit", "models/bert", "-m", "touched", "--json").json()
    assert (done["created"], done["hashed_files"]) == (False, 0)  # the cache answered
    assert (root / ".mvc" / "format").read_text() == FORMAT_1


def test_a_commit_keeps_no_parent_entry_whose_objects_are_gone(
    store, cli, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parent's entry stands for a re-hashed file only while the store holds its objects."""
    import mvc.ops.snapshot as snapshot

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.txt").write_text("same\n")
    (folder / "b.txt").write_text("one\n")
    cli("commit", str(folder), "--model", "m", "-m", "one")
    parent = store.objects.get_tree(store.objects.get_version(resolve(store, "m").version).tree)
    entry = parent.files["a.txt"]
    # The parent as a format-1 store holds it: a manifest, which is then lost.
    manifest_id = store.objects.put_meta(entry.implied_manifest())
    old_style = TreeEntry(manifest_id, entry.size, entry.b3, entry.kind, entry.executable)
    real = snapshot._as_in

    def like_format_1(like, rel, found, **kwargs):
        if like is not None and rel == "a.txt":
            like = Tree({**like.files, rel: old_style})
        return real(like, rel, found, **kwargs)

    monkeypatch.setattr(snapshot, "_as_in", like_format_1)
    store.objects.delete(manifest_id)
    shutil.rmtree(".mvc/index", ignore_errors=True)
    (folder / "b.txt").write_text("two\n")
    cli("commit", str(folder), "--model", "m", "-m", "two")
    tree = store.objects.get_tree(store.objects.get_version(resolve(store, "m").version).tree)
    assert tree.files["a.txt"] == entry  # its own entry, not the one naming a lost manifest
    assert cli("fsck", "--json").json()["ok"] is True


def test_an_older_mvc_is_refused_by_name_and_an_unknown_format_is_never_overwritten(
    store, cli, make_model, tmp_path
) -> None:
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "one")
    fmt = pathlib.Path(".mvc/format")
    fmt.write_text("mvc store format 3\n")
    failed = cli("status", expect=10)
    assert "mvc store format 3" in failed.stderr and "upgrade mvc" in failed.stderr
    # A remote's object store reads the format when it first needs it.
    remote_like = ObjectStore(LocalStorage(str(pathlib.Path(".mvc").resolve())))
    with pytest.raises(UnknownFormat, match="will not write"):
        remote_like.require_format(2)
    assert fmt.read_text() == "mvc store format 3\n"


def test_a_failed_batch_forgets_its_format_upgrade(tmp_path) -> None:
    """The upgrade written inside a commit's batch is discarded with it; a retry writes it."""
    root = tmp_path / "store"
    (root / "objects").mkdir(parents=True)
    (root / "format").write_text(FORMAT_1)
    objects = ObjectStore(LocalStorage(str(root)), store_format=1)
    with pytest.raises(OSError, match="disk full"), objects.batch():
        objects.require_format(2)
        raise OSError("disk full")
    assert (root / "format").read_text() == FORMAT_1
    objects.require_format(2)
    assert (root / "format").read_text() == FORMAT_2
