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


# --- format-1 entries (an older mvc's) beside format-2 ones ---------------------------------


@pytest.fixture
def as_format_1():
    """Commits inside write what an older mvc wrote: a manifest even for a one-chunk file."""
    from unittest import mock

    from mvc.objects import FileManifest

    return mock.patch.object(FileManifest, "one_chunk", property(lambda self: False))


def _fsck_ok(store) -> bool:
    from mvc.ops.maintenance import fsck

    return fsck(store).ok


def _put(folder: pathlib.Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def _first_in_format_1(store, work: pathlib.Path, as_format_1) -> str:
    """Model m's first version, a config.json of one chunk, as an older mvc committed it."""
    from mvc.ops.commit import commit

    _put(work, "config.json", "X")
    with as_format_1:
        return commit(store, str(work), message="v1", model="m").version_id


def test_a_folder_given_the_tips_content_holds_the_tip_for_status_as_for_commit(
    store, tmp_path, as_format_1
) -> None:
    from mvc.ops.commit import commit
    from mvc.ops.status import folder_state

    work, other = tmp_path / "m", tmp_path / "other"
    _put(work, "config.json", "X")
    commit(store, str(work), message="v1", model="m")
    _put(other, "config.json", "Y")
    with as_format_1:  # the branch moves to a version an older mvc wrote
        tip = commit(store, str(other), message="b", model="m").version_id
    _put(work, "config.json", "Y")
    status, _ = folder_state(store, store.binding("m"))
    assert (status.version, status.behind, status.modified) == (tip, False, [])
    again = commit(store, str(work), message="again")
    assert again.created is False and store.binding("m").version == tip


def test_a_rehashed_file_keeps_the_entry_whose_chunk_this_commit_wrote_again(
    store, tmp_path, as_format_1
) -> None:
    from mvc.ops.commit import commit

    work = tmp_path / "m"
    first = _first_in_format_1(store, work, as_format_1)
    entry = store.objects.get_tree(store.objects.get_version(first).tree).files["config.json"]
    store.objects.delete(entry.b3)  # its chunk lost; the manifest stays
    shutil.rmtree(".mvc/index", ignore_errors=True)  # re-hashed: the chunk is written again
    touched = commit(store, str(work), message="touched")
    assert touched.created is False
    assert store.objects.has(entry.b3) and _fsck_ok(store)


def test_install_replaces_a_folder_an_older_install_wrote_in_format_1(
    store, tmp_path, as_format_1
) -> None:
    from mvc.ops.commit import commit
    from mvc.ops.lock import _held_tree
    from mvc.ops.worktrees import checkout
    from mvc.specs import by_id

    work = tmp_path / "m"
    v1 = _first_in_format_1(store, work, as_format_1)
    _put(work, "config.json", "Y")
    commit(store, str(work), message="v2")
    folder = tmp_path / "installed"
    checkout(store, by_id("m", v1), to=str(folder))
    # Right after the checkout every file is racy and re-hashed: the recorded entries stand.
    _tree, held = _held_tree(store, str(folder))
    assert held == store.objects.get_version(v1).tree


def test_diff_without_stats_finds_an_unchanged_tensor_when_its_file_outgrows_one_chunk(
    store, tmp_path
) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    from mvc.ops.commit import commit
    from mvc.ops.diff import compare, version_side

    work = tmp_path / "m"
    work.mkdir()
    kept = np.arange(10_000, dtype=np.float32)  # 40 KB: the first file is one chunk
    save_file({"a": kept}, str(work / "model.safetensors"))
    v1 = commit(store, str(work), message="1", model="m").version_id
    save_file({"a": kept, "b": np.ones(10_000, np.float32)}, str(work / "model.safetensors"))
    v2 = commit(store, str(work), message="2").version_id
    (group,) = compare(store, version_side(store, v1), version_side(store, v2), stats=False).tensors
    assert [(c.name, c.status) for c in group.changes] == [("b", "added")]
    assert group.unchanged == 1
