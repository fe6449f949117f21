"""Folders of many small files (tokenizers, many-shard models): the commit path that does them
in parallel, one batch, one round of durability, keeps every guarantee of the one-by-one path."""

from __future__ import annotations

import json
import os

import pytest

from mvc.errors import MvcError
from mvc.ids import hash_bytes
from mvc.objects import ChunkRef, FileManifest, TreeEntry
from mvc.storage import local
from mvc.storage.local import TMP_PREFIX, LocalStorage
from mvc.store import ObjectStore, object_key


def _small_folder(root, count: int = 120) -> dict[str, bytes]:
    """``count`` small files in a few sub-folders, some of them equal (shared tokens maps)."""
    files = {}
    for index in range(count):
        lang = f"tokenizers/lang-{index % 12:02d}"
        files[f"{lang}/vocab-{index:03d}.txt"] = f"[PAD]\n[UNK]\nword{index}\n".encode() * 40
        files[f"{lang}/special_tokens_map.json"] = b'{"pad_token": "[PAD]"}\n'
    files["config.json"] = json.dumps({"layers": count}).encode()
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _objects(store_root) -> list[str]:
    found = []
    for folder, _dirs, names in os.walk(store_root / ".mvc" / "objects"):
        found += [os.path.join(folder, name) for name in names]
    return sorted(found)


# --- LocalStorage.batch: staged temp files, folders made once, one syncfs --------------------


def test_a_batch_stages_temp_files_above_the_fan_out_folders(tmp_path) -> None:
    storage = LocalStorage(str(tmp_path))
    with storage.batch():
        storage.write("objects/ab/cd", [b"one"])
        storage.write("objects/ef/gh", [b"two"])
        staged = sorted(n for n in os.listdir(tmp_path / "objects") if n.startswith(TMP_PREFIX))
        assert len(staged) == 2  # both in objects/, where their inodes are made together
        assert os.listdir(tmp_path / "objects/ab") == []  # the fan-out folder holds no temp
        assert storage.read("objects/ab/cd") == b"one"  # the batch's own reads see it
    assert (tmp_path / "objects/ab/cd").read_bytes() == b"one"
    assert (tmp_path / "objects/ef/gh").read_bytes() == b"two"
    assert sorted(os.listdir(tmp_path / "objects")) == ["ab", "ef"]  # no temp file left


def test_temp_names_are_unique_counted_and_shaped_for_gc_without_a_random_draw_each(
    tmp_path, monkeypatch
) -> None:
    """A temp name costs no getrandom: the random part is drawn once per process and a
    counter follows it; the names keep the shape gc and exports clean up (16 hex digits)."""
    storage = LocalStorage(str(tmp_path), fsync=False)
    drawn: list[int] = []
    original = local.os.urandom
    monkeypatch.setattr(local.os, "urandom", lambda n: drawn.append(n) or original(n))
    monkeypatch.setattr(local, "_TEMP_NAMES", local._TempNames())
    from concurrent.futures import ThreadPoolExecutor

    with storage.batch():
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: storage.write(f"objects/{i:02x}/x", [b"%d" % i]), range(200)))
        staged = [n for n in os.listdir(tmp_path / "objects") if n.startswith(TMP_PREFIX)]
    assert len(staged) == len(set(staged)) == 200
    assert all(len(n) == len(TMP_PREFIX) + 16 for n in staged)
    assert all(int(n[len(TMP_PREFIX) :], 16) >= 0 for n in staged)
    assert len({n[: len(TMP_PREFIX) + 8] for n in staged}) == 1  # one random part...
    assert drawn == [4]  # ...drawn once
    assert [storage.read(f"objects/{i:02x}/x") for i in range(200)] == [
        b"%d" % i for i in range(200)
    ]


def test_a_temp_name_taken_by_another_process_is_not_a_failed_write(tmp_path, monkeypatch) -> None:
    """Two processes may draw the same random part: O_EXCL refuses the taken name, and the
    write goes on under a fully random one; the other process's file is left alone."""
    storage = LocalStorage(str(tmp_path), fsync=False)
    names = local._TempNames()
    monkeypatch.setattr(local, "_TEMP_NAMES", names)
    (tmp_path / "objects").mkdir()
    storage.write("objects/ab/first", [b"1"])  # the folders exist; the counter is at 1
    taken = f"{TMP_PREFIX}{names._tag}{names._count + 1:08x}"  # the name the next write draws
    (tmp_path / "objects" / "ab" / taken).write_bytes(b"someone else's")
    storage.write("objects/ab/second", [b"2"])
    assert storage.read("objects/ab/second") == b"2"
    assert (tmp_path / "objects" / "ab" / taken).read_bytes() == b"someone else's"


def test_a_forked_child_draws_its_own_temp_names(tmp_path) -> None:
    names = local._TempNames()
    parent = names.next()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first name and leave at once
        os.write(write, names.next().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child[: len(TMP_PREFIX) + 8] != parent[: len(TMP_PREFIX) + 8]
    assert names.next()[: len(TMP_PREFIX) + 8] == parent[: len(TMP_PREFIX) + 8]


def test_a_failed_batch_removes_its_staged_temp_files(tmp_path) -> None:
    storage = LocalStorage(str(tmp_path))
    with pytest.raises(RuntimeError), storage.batch():
        storage.write("objects/ab/cd", [b"one"])
        raise RuntimeError("a file changed while it was read")
    assert os.listdir(tmp_path / "objects") == ["ab"]
    assert os.listdir(tmp_path / "objects/ab") == []


def test_fan_out_folders_are_made_once_per_writer(tmp_path, monkeypatch) -> None:
    made: list[str] = []
    real = os.makedirs

    def makedirs(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(local.os, "makedirs", makedirs)
    storage = LocalStorage(str(tmp_path))
    with storage.batch():
        for index in range(50):
            storage.write(f"objects/ab/{index:04d}", [b"x"])
    # One call for the fan-out folder (os.makedirs itself makes objects/ on the way), not 50.
    assert made[0] == str(tmp_path / "objects" / "ab")
    assert made.count(made[0]) == 1 and len(made) <= 2


def test_a_folder_removed_behind_the_writer_is_made_again(tmp_path) -> None:
    storage = LocalStorage(str(tmp_path))
    storage.write("objects/ab/cd", [b"one"])
    os.unlink(tmp_path / "objects/ab/cd")
    os.rmdir(tmp_path / "objects/ab")  # gc removes an emptied fan-out folder
    storage.write("objects/ab/ef", [b"two"])
    assert (tmp_path / "objects/ab/ef").read_bytes() == b"two"


@pytest.mark.skipif(local._syncfs_call() is None, reason="syncfs is Linux's")
def test_a_batch_of_many_files_is_made_durable_by_syncfs_not_an_fsync_each(
    tmp_path, monkeypatch
) -> None:
    synced: list[str] = []
    fsynced: list[int] = []
    real_syncfs, real_fsync = local._syncfs, os.fsync

    def syncfs(path: str) -> None:
        synced.append(path)
        real_syncfs(path)

    def fsync(fd: int) -> None:
        fsynced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(local, "_syncfs", syncfs)
    monkeypatch.setattr(local.os, "fsync", fsync)
    monkeypatch.setattr(local, "_SYNCFS_MAX_WAITING", 1 << 62)  # however busy the machine is
    storage = LocalStorage(str(tmp_path))
    count = local._SYNCFS_MIN_FILES
    with storage.batch():
        for index in range(count):
            storage.write(f"objects/{index % 7:02x}/{index:04d}", [b"x" * index])
    # Once before the renames (contents), once after (names): no fsync of any file or folder.
    assert synced == [str(tmp_path)] * 2 and fsynced == []
    assert all(
        (tmp_path / f"objects/{i % 7:02x}/{i:04d}").read_bytes() == b"x" * i for i in range(count)
    )
    synced.clear()
    with storage.batch():  # a few files: an fsync each, and one per folder
        for index in range(3):
            storage.write(f"objects/aa/{index}", [b"y"])
    assert synced == [] and len(fsynced) == 3 + 2  # 3 files; objects/aa and objects/


def test_objects_on_another_file_system_are_fsynced_one_by_one(tmp_path, monkeypatch) -> None:
    """`objects/` a symlink to another file system (a tmpfs here): a syncfs of the store's
    root would not reach its files, so a big batch fsyncs each file instead."""
    import tempfile

    other = tempfile.mkdtemp(dir="/dev/shm")
    try:
        if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
            pytest.fail("/dev/shm is expected to be a file system of its own (tmpfs)")
        (tmp_path / "objects").symlink_to(other)
        synced: list[str] = []
        fsynced: list[int] = []
        real_fsync = os.fsync
        monkeypatch.setattr(local, "_syncfs", synced.append)
        monkeypatch.setattr(local.os, "fsync", lambda fd: (fsynced.append(fd), real_fsync(fd)))
        monkeypatch.setattr(local, "_SYNCFS_MAX_WAITING", 1 << 62)
        storage = LocalStorage(str(tmp_path))
        count = local._SYNCFS_MIN_FILES
        with storage.batch():
            for index in range(count):
                storage.write(f"objects/{index % 7:02x}/{index:04d}", [b"z" * index])
        assert synced == [] and len(fsynced) >= count
        assert (tmp_path / "objects/03/0010").read_bytes() == b"z" * 10
    finally:
        import shutil

        shutil.rmtree(other, ignore_errors=True)


def test_a_busy_system_makes_a_big_batch_durable_file_by_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(
        local, "_SYNCFS_MAX_WAITING", -1
    )  # more is waiting than syncfs may wait for
    fsynced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsynced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(local.os, "fsync", fsync)
    storage = LocalStorage(str(tmp_path))
    with storage.batch():
        for index in range(local._SYNCFS_MIN_FILES):
            storage.write(f"objects/ab/{index:04d}", [b"z"])
    assert len(fsynced) == local._SYNCFS_MIN_FILES + 2  # every file, objects/ab and objects/


# --- ObjectStore: what a batch wrote is not written again ------------------------------------


def test_equal_bytes_twice_in_a_batch_are_written_once(tmp_path, monkeypatch) -> None:
    store = ObjectStore(LocalStorage(str(tmp_path)))
    writes: list[str] = []
    real_write = LocalStorage.write

    def write(self, key, parts):  # type: ignore[no-untyped-def]
        writes.append(key)
        return real_write(self, key, parts)

    monkeypatch.setattr(LocalStorage, "write", write)
    data = b"special tokens"
    oid = hash_bytes(data)
    manifest = FileManifest(size=len(data), b3=oid, kind="blob", chunks=(ChunkRef(oid, 14),))
    with store.batch():
        assert store.add_bytes(data, oid) is True
        assert store.add_bytes(data, oid) is False  # still a temp file: known, not looked for
        first = store.put_meta(manifest)
        assert store.put_meta(manifest) == first
    assert writes == [object_key(oid), object_key(first)]
    entry = TreeEntry(first, len(data), oid, "blob")
    assert store.get_bytes(oid) == data and store.has_file(entry)
    assert store.add_bytes(data, oid) is False  # after the batch: present on disk


def test_a_failed_batch_forgets_what_it_wrote(tmp_path) -> None:
    store = ObjectStore(LocalStorage(str(tmp_path)))
    data = b"written, then discarded"
    oid = hash_bytes(data)
    with pytest.raises(RuntimeError), store.batch():
        assert store.add_bytes(data, oid) is True
        raise RuntimeError("interrupted")
    assert not store.has(oid)
    with store.batch():
        assert store.add_bytes(data, oid) is True  # written again, not skipped as "known"
    assert store.get_bytes(oid) == data


# --- commit and status of a folder of small files --------------------------------------------


def test_a_folder_of_small_files_round_trips_and_dedupes(store, cli, tmp_path) -> None:
    files = _small_folder(tmp_path / "work" / "many")
    done = cli("commit", "many", "-m", "tokenizers", "--json").json()
    assert done["hashed_files"] == len(files)
    distinct = {hash_bytes(data) for data in files.values()}
    assert done["new_chunks"] == len(distinct)  # 12 equal maps: one chunk, written once
    assert cli("fsck", "--json").json()["ok"]
    assert cli("status", "--json").json()[0]["clean"]
    cli("checkout", "many@main", "--to", str(tmp_path / "out"))
    for rel, data in files.items():
        assert (tmp_path / "out" / rel).read_bytes() == data


def test_a_noop_commit_looks_up_no_object_and_a_change_still_checks_what_it_reuses(
    store, cli, tmp_path, monkeypatch
) -> None:
    """The parent's tree is whole in the store, so when the stat cache makes exactly that tree
    nothing is opened there; once anything changed, every cached entry reused is checked
    present (status may have cached a file it never stored)."""
    from mvc.worktree import statcache

    monkeypatch.setattr(statcache, "RACY_MARGIN_NS", 0)  # every entry trusted at once
    files = _small_folder(tmp_path / "work" / "many")
    cli("commit", "many", "-m", "v1")
    looked: list[str] = []
    real = ObjectStore.has_intact
    monkeypatch.setattr(
        ObjectStore, "has_intact", lambda self, oid: looked.append(oid) or real(self, oid)
    )
    again = cli("commit", "many", "-m", "v2", "--json").json()
    assert again["created"] is False and again["hashed_files"] == 0
    assert looked == []
    (tmp_path / "work" / "many" / "config.json").write_text('{"layers": 0}')
    changed = cli("commit", "many", "-m", "v3", "--json").json()
    assert changed["created"] is True and changed["modified"] == ["config.json"]
    assert len(set(looked)) >= len(files) - 12  # each reused manifest (12 maps are one file)
    assert cli("fsck", "--json").json()["ok"]


def test_the_tree_does_not_depend_on_how_many_workers_hashed_it(store, cli, tmp_path) -> None:
    trees = []
    for jobs in ("1", "6"):
        _small_folder(tmp_path / "work" / f"many{jobs}")
        cli("config", "set", "core.jobs", jobs)
        done = cli("commit", f"many{jobs}", "-m", "x", "--json").json()
        trees.append(store.objects.get_version(done["version"]).tree)
    assert trees[0] == trees[1]


def test_the_first_bad_file_in_folder_order_is_the_one_named(store, cli, tmp_path) -> None:
    folder = tmp_path / "work" / "many"
    _small_folder(folder)
    for name in ("b-shard.safetensors", "y-shard.safetensors"):
        (folder / name).write_bytes(b"\xff" * 64)  # a header length past the end: malformed
    for _ in range(3):  # whichever worker finishes first
        failed = cli("commit", "many", "-m", "x", expect=None)
        assert failed.exit_code != 0
        assert "b-shard.safetensors" in failed.stderr and "y-shard" not in failed.stderr
    assert _objects(tmp_path / "work") == []  # the batch discarded every object it wrote


def test_a_small_file_rewritten_while_read_stores_nothing(store, cli, tmp_path, monkeypatch):
    from mvc.ops import snapshot as snap
    from mvc.ops.commit import commit as do_commit
    from mvc.repo import Repo

    folder = tmp_path / "work" / "many"
    _small_folder(folder, count=20)
    real_read = snap._read_whole
    rewritten: list[int] = []

    by_inode = {os.stat(p).st_ino: p for p in folder.rglob("*") if p.is_file()}

    def read_whole(fd: int, size: int) -> bytes:
        data = real_read(fd, size)
        if not rewritten:  # another process rewrites the file right after mvc read it
            rewritten.append(fd)
            with open(by_inode[os.fstat(fd).st_ino], "r+b") as handle:
                handle.write(b"X" * 8)  # same size: only its mtime and ctime tell
        return data

    monkeypatch.setattr(snap, "_read_whole", read_whole)
    with pytest.raises(MvcError, match="changed while it was being read"):
        do_commit(Repo(str(store.root)), str(folder), message="race")
    assert rewritten and _objects(tmp_path / "work") == []
    monkeypatch.setattr(snap, "_read_whole", real_read)
    cli("commit", "many", "-m", "after the writer finished")
    assert cli("fsck", "--json").json()["ok"]
