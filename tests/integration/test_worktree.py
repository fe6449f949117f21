"""Working folders: the stat cache is never fooled, .mvcignore, and hostile paths both ways."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import time

import blake3
import pytest

from mvc.errors import CorruptObject, InvalidInput
from mvc.objects import Tree, TreeEntry, Version
from mvc.ops.snapshot import stat_cache_for
from mvc.refnames import branch
from mvc.worktree import statcache
from mvc.worktree.paths import safe_target, validate_version_path
from mvc.worktree.scan import FileStat
from mvc.worktree.statcache import RACY_MARGIN_NS, StatCache


def tree_of(store, version_id: str) -> Tree:
    return store.objects.get_tree(store.objects.get_version(version_id).tree)


def log_ids(cli, model: str = "bert") -> list[str]:
    return [entry["id"] for entry in cli("log", model, "--json").json()]


@pytest.fixture
def trusting_cache(monkeypatch):
    """Entries become trustworthy as soon as the cache is saved (instead of 2 s later).

    ctime, inode and device are still compared, so this only removes the wait, not a check.
    """
    monkeypatch.setattr(statcache, "RACY_MARGIN_NS", 0)


# --- the stat cache: never fooled by a timestamp-preserving copy ------------------------------


def _copy_with_cp(src: str, dst: str) -> None:
    subprocess.run(["cp", "-rp", src, dst], check=True)


def _copy_with_copytree(src: str, dst: str) -> None:
    shutil.copytree(src, dst, copy_function=shutil.copy2)


@pytest.mark.parametrize("copy", [_copy_with_cp, _copy_with_copytree], ids=["cp-rp", "copytree"])
def test_timestamp_preserving_copy_of_another_version_is_a_change(
    store, cli, make_model, trusting_cache, tmp_path, copy
) -> None:
    folder = make_model("models/bert", seed=0)
    v1 = cli("commit", "models/bert", "-m", "v1").stdout.strip()
    snapshot_v1 = str(tmp_path / "snapshot-v1")
    copy(str(folder), snapshot_v1)

    # v2: other bytes, but the very same names, sizes and mtimes as v1's files
    make_model("models/bert", seed=1)
    for name in os.listdir(folder):
        info = os.stat(os.path.join(snapshot_v1, name))
        assert info.st_size == os.path.getsize(folder / name)
        os.utime(folder / name, ns=(info.st_atime_ns, info.st_mtime_ns))
    v2 = cli("commit", "models/bert", "-m", "v2").stdout.strip()
    assert v2 and v2 != v1
    state = cli("status", "--json").json()[0]
    assert state["clean"] and state["hashed_files"] == 0  # the cache is in use

    # replace the folder by the copy of v1: same names, sizes and mtimes as v2's cache entries
    shutil.rmtree(folder)
    copy(snapshot_v1, str(folder))
    state = cli("status", "--json").json()[0]
    assert not state["clean"]
    assert sorted(state["modified"]) == ["config.json", "model.safetensors"]

    v3 = cli("commit", "models/bert", "-m", "back to v1").stdout.strip()
    assert v3 not in ("", v1, v2)
    assert store.objects.get_version(v3).tree == store.objects.get_version(v1).tree
    assert log_ids(cli) == [v3, v2, v1]


def test_unchanged_files_are_not_rehashed(store, cli, make_model, trusting_cache) -> None:
    folder = make_model("models/bert")
    cli("commit", "models/bert", "-m", "v1")
    first = cli("status", "--json").json()[0]
    assert first["clean"] and first["hashed_files"] == 0
    (folder / "config.json").write_text('{"hidden_size": 65, "seed": 0}\n')
    state = cli("status", "--json").json()[0]
    assert state["modified"] == ["config.json"] and state["hashed_files"] == 1
    nothing = cli("commit", "models/bert", "-m", "again", "--json").json()
    assert nothing["created"] is True and nothing["hashed_files"] <= 1


def test_racy_entries_are_reverified(tmp_path) -> None:
    cache_path = str(tmp_path / "index.json")
    entry = TreeEntry("ab" * 32, 5, "cd" * 32, "blob", False)  # type: ignore[arg-type]
    now = time.time_ns()
    fresh = FileStat(5, now, now, 1, 2, False)
    old = FileStat(5, now - 10 * RACY_MARGIN_NS, now - 10 * RACY_MARGIN_NS, 3, 2, False)

    cache = StatCache(cache_path)
    cache.record("fresh.bin", fresh, entry)
    cache.record("old.bin", old, entry)
    cache.save()
    loaded = StatCache.load(cache_path)
    assert loaded.lookup("old.bin", old) == entry
    assert loaded.lookup("fresh.bin", fresh) is None  # too close to the cache's own time
    assert loaded.has_racy_entries()
    # any differing stat fact means "not known"
    for changed in (
        FileStat(6, old.mtime_ns, old.ctime_ns, 3, 2, False),
        FileStat(5, old.mtime_ns + 1, old.ctime_ns, 3, 2, False),
        FileStat(5, old.mtime_ns, old.ctime_ns + 1, 3, 2, False),
        FileStat(5, old.mtime_ns, old.ctime_ns, 4, 2, False),
        FileStat(5, old.mtime_ns, old.ctime_ns, 3, 9, False),
        FileStat(5, old.mtime_ns, old.ctime_ns, 3, 2, True),
    ):
        assert loaded.lookup("old.bin", changed) is None

    # re-verified racy entries are saved again and trusted once the cache is old enough
    loaded.record("fresh.bin", fresh, entry)
    assert loaded.dirty
    loaded.save()
    later = StatCache.load(cache_path)
    later.written_ns = now + 2 * RACY_MARGIN_NS
    assert later.lookup("fresh.bin", fresh) == entry


@pytest.mark.parametrize(
    "damage",
    [b"", b"{", b"[]", b'{"version": 1}', b'{"version":1,"written_ns":1,"files":{"a":[1]}}'],
)
def test_a_damaged_stat_cache_is_ignored(tmp_path, damage: bytes) -> None:
    path = tmp_path / "index.json"
    path.write_bytes(damage)
    cache = StatCache.load(str(path))
    assert cache.files == {}


def test_status_after_a_damaged_cache_rehashes(store, cli, make_model) -> None:
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "v1")
    caches = [os.path.join(top, name) for top, _, names in os.walk(".mvc/index") for name in names]
    assert caches
    for path in caches:
        with open(path, "wb") as handle:
            handle.write(b"\x00garbage")
    state = cli("status", "--json").json()[0]
    assert state["clean"] and state["hashed_files"] == 3


# --- checked-out files are not fsynced; the stat cache re-hashes them after a restart ------------


@pytest.fixture
def boot(monkeypatch):
    """``boot("b1")`` makes this process run in the boot whose id is "b1" (None: no boot id)."""

    def set_boot(boot_id: str | None) -> None:
        monkeypatch.setattr(statcache, "read_boot_id", lambda: boot_id)

    set_boot("boot-1")
    return set_boot


@pytest.fixture
def fsynced_inodes(monkeypatch):
    """The inodes of every file ``os.fsync`` is called on (a rename keeps a file's inode)."""
    seen: set[int] = set()
    real = os.fsync

    def spy(fd) -> None:
        seen.add(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def _v1_checked_out(store, cli, make_model, fsynced: set[int] | None = None) -> str:
    """Versions v1 and v2 of ``bert``, then v1 checked out over v2 in the bound folder (it
    writes model.safetensors and config.json; tokenizer.json is the same in both). ``fsynced``
    is emptied before the checkout: inodes of files fsynced and removed before may be reused."""
    make_model("models/bert", seed=0)
    v1 = cli("commit", "models/bert", "-m", "v1").stdout.strip()
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "v2")
    if fsynced is not None:
        fsynced.clear()
    written = cli("checkout", f"bert@{v1}", "--json").json()["written"]
    assert written == ["config.json", "model.safetensors"]
    return v1


def _damage_behind_the_cache(store, rel: str) -> None:
    """What a power cut can leave of a file written but never flushed: its last blocks zeros
    while its inode (size, mtime, ctime) is what the stat cache recorded. ``os.utime`` puts the
    mtime back; the ctime cannot be set back, so the cache's entry is moved to the new one."""
    path = os.path.join("models", "bert", rel)
    before = os.stat(path)
    with open(path, "r+b") as handle:
        handle.seek(before.st_size - 4096)
        handle.write(b"\0" * 4096)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    cache = stat_cache_for(store, os.path.abspath(os.path.join("models", "bert")))
    cache.files[rel] = dataclasses.replace(cache.files[rel], stat=FileStat.of(after))
    cache.save(force=True)


def test_a_file_checked_out_unflushed_is_rehashed_after_a_restart(
    store, cli, make_model, trusting_cache, boot
) -> None:
    _v1_checked_out(store, cli, make_model)
    state = cli("status", "--json").json()[0]
    assert state["clean"] and state["hashed_files"] == 0  # same boot: the page cache is the file
    _damage_behind_the_cache(store, "model.safetensors")
    assert cli("status", "--json").json()[0]["clean"]  # stat alone cannot see the damage

    boot("boot-2")
    state = cli("status", "--json").json()[0]
    assert state["modified"] == ["model.safetensors"]
    assert state["hashed_files"] == 2  # both files the checkout wrote, once
    again = cli("status", "--json").json()[0]
    assert again["modified"] == ["model.safetensors"] and again["hashed_files"] == 0  # verified


def test_commit_after_a_restart_does_not_trust_an_unflushed_file(
    store, cli, make_model, trusting_cache, boot
) -> None:
    _v1_checked_out(store, cli, make_model)
    _damage_behind_the_cache(store, "model.safetensors")
    boot("boot-2")
    made = cli(
        "commit", "models/bert", "--branch", "disk", "-m", "what the disk holds", "--json"
    ).json()
    assert made["created"] is True
    with open("models/bert/model.safetensors", "rb") as handle:
        on_disk = blake3.blake3(handle.read()).hexdigest()
    assert tree_of(store, made["version"]).files["model.safetensors"].b3 == on_disk


def test_checkout_after_a_restart_does_not_trust_an_unflushed_file(
    store, cli, make_model, trusting_cache, boot
) -> None:
    _v1_checked_out(store, cli, make_model)
    _damage_behind_the_cache(store, "model.safetensors")
    boot("boot-2")
    refused = cli("checkout", "bert@main", expect=None)
    assert refused.exit_code != 0 and "model.safetensors" in refused.stderr
    cli("checkout", "bert@main", "--force")
    assert cli("status", "--json").json()[0]["clean"]


def test_checkout_leaves_worktree_files_unflushed_by_default(
    store, cli, make_model, boot, fsynced_inodes
) -> None:
    cli("config", "set", "core.fsync", "true")  # the store stays durable
    _v1_checked_out(store, cli, make_model, fsynced_inodes)
    written = {os.stat(f"models/bert/{rel}").st_ino for rel in ("config.json", "model.safetensors")}
    assert fsynced_inodes and not written & fsynced_inodes
    marked = StatCache.load(stat_cache_for(store, os.path.abspath("models/bert")).path)
    assert {rel for rel, c in marked.files.items() if c.unflushed == "boot-1"} == {
        "config.json",
        "model.safetensors",
    }


@pytest.mark.parametrize("setting", ["checkout.fsync", "no boot id"])
def test_checkout_fsyncs_worktree_files_when_asked_or_without_a_boot_id(
    store, cli, make_model, trusting_cache, boot, fsynced_inodes, setting
) -> None:
    cli("config", "set", "core.fsync", "true")
    if setting == "checkout.fsync":
        cli("config", "set", "checkout.fsync", "true")
    else:
        boot(None)
    _v1_checked_out(store, cli, make_model, fsynced_inodes)
    written = {os.stat(f"models/bert/{rel}").st_ino for rel in ("config.json", "model.safetensors")}
    assert written <= fsynced_inodes
    cache = StatCache.load(stat_cache_for(store, os.path.abspath("models/bert")).path)
    assert all(c.unflushed is None for c in cache.files.values())
    boot("boot-2")
    state = cli("status", "--json").json()[0]
    assert state["clean"] and state["hashed_files"] == 0  # flushed: trusted after a restart


def test_a_serving_folder_is_fsynced_as_the_store_is(
    store, cli, make_model, boot, fsynced_inodes, tmp_path
) -> None:
    """mvc.load and the Router trust a cache folder by its name, with no stat cache to re-check
    it after a restart: its files are made durable like the store's objects."""
    import mvc

    cli("config", "set", "core.fsync", "true")
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "v1")
    fsynced_inodes.clear()
    mvc.load("bert@main", repo=str(store.root), cache_dir=str(tmp_path / "cache"))
    files = [os.path.join(d, f) for d, _, names in os.walk(tmp_path / "cache") for f in names]
    assert len(files) == 3 and {os.stat(f).st_ino for f in files} <= fsynced_inodes


def test_a_serving_folder_has_durable_names_before_it_has_its_own(
    store, cli, make_model, monkeypatch, tmp_path
) -> None:
    """Durable bytes are not enough for a folder trusted by its name: after a power cut its
    files' names must be there too. Every folder of the checkout is flushed before the folder
    is renamed into the cache, and the cache's folders after."""
    import mvc

    cli("config", "set", "core.fsync", "true")
    make_model("models/bert", extra={"tokenizer/vocab.txt": "a b c\n"})
    cli("commit", "models/bert", "-m", "v1")
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            events.append(("flush", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src, dst) -> None:
        events.append(("rename", f"{src} -> {dst}"))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    mvc.load("bert@main", repo=str(store.root), cache_dir=str(tmp_path / "cache"))
    [(at, moved)] = [(i, e[1]) for i, e in enumerate(events) if e[0] == "rename"]
    temp, final = moved.split(" -> ")
    assert os.path.isfile(os.path.join(final, "tokenizer", "vocab.txt"))
    flushed_before = {path for kind, path in events[:at] if kind == "flush"}
    assert {temp, os.path.join(temp, "tokenizer")} <= flushed_before
    flushed_after = {path for kind, path in events[at:] if kind == "flush"}
    assert {os.path.dirname(final), str(tmp_path / "cache")} <= flushed_after


def test_unflushed_entries_keep_their_boot_until_verified_in_another(tmp_path, boot) -> None:
    cache_path = str(tmp_path / "index.json")
    entry = TreeEntry("ab" * 32, 5, "cd" * 32, "blob", False)  # type: ignore[arg-type]
    past = time.time_ns() - 10 * RACY_MARGIN_NS
    stat = FileStat(5, past, past, 1, 2, False)
    cache = StatCache(cache_path)
    cache.record("a.bin", stat, entry, unflushed=True)
    cache.save()

    same = StatCache.load(cache_path)
    assert same.lookup("a.bin", stat) == entry
    same.record("a.bin", stat, entry)  # re-hashed in the boot it was written: still unflushed
    assert same.files["a.bin"].unflushed == "boot-1"

    boot("boot-2")
    other = StatCache.load(cache_path)
    assert other.lookup("a.bin", stat) is None
    other.record("a.bin", stat, entry)  # re-hashed after the restart: what the disk holds
    assert other.files["a.bin"].unflushed is None and other.dirty
    other.save()
    assert StatCache.load(cache_path).lookup("a.bin", stat) == entry

    boot(None)  # no boot id now: an entry written unflushed is never trusted
    cache = StatCache(cache_path)
    cache.record("b.bin", stat, entry, unflushed=True)
    assert cache.files["b.bin"].unflushed is None  # the caller must flush (checkout does)


def test_a_stat_cache_of_the_previous_format_still_loads(tmp_path) -> None:
    path = tmp_path / "index.json"
    past = time.time_ns() - 10 * RACY_MARGIN_NS
    entry = [5, past, past, 1, 2, 0, "ab" * 32, "cd" * 32, "blob"]
    path.write_text(json.dumps({"version": 1, "written_ns": time.time_ns(), "files": {"a": entry}}))
    new_place = tmp_path / "v2" / "index.json"
    cache = StatCache.load(str(new_place), older=str(path))
    assert cache.lookup("a", FileStat(5, past, past, 1, 2, False)) is not None
    cache.save(force=True)  # saved as version 2 in its own place; the old file stays as it was
    assert json.loads(new_place.read_text())["version"] == 2
    assert json.loads(path.read_text())["version"] == 1
    assert StatCache.load(str(new_place), older=str(path)).files.keys() == {"a"}


def test_an_older_mvc_rewriting_its_stat_cache_does_not_drop_the_unflushed_marks(
    store, cli, make_model, trusting_cache, boot
) -> None:
    """An mvc that knows only version 1 ignores a version 2 cache and writes its own, without
    marks, where it keeps caches. The version 2 cache is elsewhere, so its marks survive."""
    _v1_checked_out(store, cli, make_model)
    folder = os.path.abspath("models/bert")
    current = stat_cache_for(store, folder)
    old_place = os.path.join(store.store_dir, "index", "models%2Fbert.json")
    assert current.path != old_place
    v1_entries = {  # what the older mvc records after re-hashing the files: no marks
        rel: [
            *(c.stat.size, c.stat.mtime_ns, c.stat.ctime_ns, c.stat.ino, c.stat.dev),
            int(c.stat.executable),
            *(c.entry.manifest, c.entry.b3, c.entry.kind),
        ]
        for rel, c in current.files.items()
    }
    os.makedirs(os.path.dirname(old_place), exist_ok=True)
    with open(old_place, "w", encoding="utf-8") as handle:
        json.dump({"version": 1, "written_ns": time.time_ns(), "files": v1_entries}, handle)
    _damage_behind_the_cache(store, "model.safetensors")

    boot("boot-2")
    assert cli("status", "--json").json()[0]["modified"] == ["model.safetensors"]


# --- .mvcignore -------------------------------------------------------------------------------


def test_mvcignore_leaves_files_out(store, cli, make_model) -> None:
    make_model(
        "models/bert",
        extra={
            ".mvcignore": "# scratch\n*.log\ncheckpoints/\n!keep.log\n",
            "train.log": "noise",
            "keep.log": "kept",
            "checkpoints/step-1/model.safetensors": b"not even valid",
            "sub/notes.log": "noise",
            ".git/HEAD": "ref: refs/heads/main\n",
        },
    )
    cli("commit", "models/bert", "-m", "v1")
    files = cli("ls", "bert").stdout.split()
    assert files == [
        ".mvcignore",
        "config.json",
        "keep.log",
        "model.safetensors",
        "tokenizer.json",
    ]
    # ignored files never make the folder dirty
    with open("models/bert/train.log", "a") as handle:
        handle.write("more")
    assert cli("status", "--json").json()[0]["clean"]
    # the ignore file is versioned: changing it is a change
    with open("models/bert/.mvcignore", "a") as handle:
        handle.write("tokenizer.json\n")
    state = cli("status", "--json").json()[0]
    assert state["modified"] == [".mvcignore"] and state["removed"] == ["tokenizer.json"]


def test_store_folder_is_never_versioned(store, cli, make_model) -> None:
    """Committing the store's root folder leaves .mvc/ out."""
    make_model(".", seed=0)
    cli("commit", ".", "--model", "root", "-m", "v1")
    assert not any(p.startswith(".mvc") for p in cli("ls", "root").stdout.split())


# --- hostile paths on commit ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["back\\slash.txt", "new\nline.txt", "tab\tname", "bell\x07"],
    ids=["backslash", "newline", "tab", "control"],
)
def test_commit_refuses_unsafe_file_names(store, cli, make_model, name: str) -> None:
    folder = make_model("models/bert")
    (folder / name).write_text("x")
    result = cli("commit", "models/bert", "-m", "v1", expect=1)
    assert result.stdout == ""
    assert "unsafe path" in result.stderr
    assert store.refs.get(branch("bert", "main")) is None


def test_commit_refuses_symlinks_out_of_the_tree(store, cli, make_model, tmp_path) -> None:
    folder = make_model("models/bert")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not capture")
    os.symlink(secret, folder / "leak.txt")
    result = cli("commit", "models/bert", "-m", "v1", expect=1)
    assert "leak.txt" in result.stderr and "symlink" in result.stderr
    assert store.refs.get(branch("bert", "main")) is None
    # asked explicitly, the content (not the link) is stored
    cli("commit", "models/bert", "-m", "v1", "--follow-symlinks")
    assert cli("cat", "bert", "leak.txt").stdout == "do not capture"


def test_commit_refuses_symlinked_folders_and_dangling_links(
    store, cli, make_model, tmp_path
) -> None:
    folder = make_model("models/bert")
    os.symlink(folder / "missing.bin", folder / "dangling.bin")
    assert "dangling" in cli("commit", "models/bert", "-m", "v1", expect=1).stderr
    os.unlink(folder / "dangling.bin")
    (folder / "sub").mkdir()
    os.symlink("sub", folder / "loop")
    assert "folder" in cli("commit", "models/bert", "-m", "v1", expect=1).stderr


def test_symlink_inside_the_tree_is_stored_as_its_content(store, cli, make_model) -> None:
    folder = make_model("models/bert")
    os.symlink("config.json", folder / "alias.json")
    cli("commit", "models/bert", "-m", "v1")
    assert cli("cat", "bert", "alias.json").stdout == (folder / "config.json").read_text()


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../escape",
        "a/./b",
        "a//b",
        "a/",
        "C:/x",
        "c:x",
        "a\\..\\b",
        "nul\x00byte",
        "new\nline",
        ".mvc/config.yaml",
        "x" * 5000,
    ],
)
def test_unsafe_version_paths(path: str) -> None:
    with pytest.raises(InvalidInput):
        validate_version_path(path)


@pytest.mark.parametrize(
    "path", ["a", "a/b/c.safetensors", ".mvcignore", "é/ü.json", "..a", "a..b"]
)
def test_safe_version_paths(path: str) -> None:
    assert validate_version_path(path) == path


# --- checkout never writes through a symlink or outside its target ---------------------------


def test_checkout_refuses_a_symlinked_folder_in_the_target(
    store, cli, make_model, tmp_path
) -> None:
    make_model("models/bert", extra={"sub/inner.json": "{}"})
    cli("commit", "models/bert", "-m", "v1")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "sub")
    result = cli("checkout", "bert", "--to", str(target), "--force", expect=None)
    assert result.exit_code != 0
    assert list(outside.iterdir()) == []


def test_checkout_refuses_a_symlinked_file_in_the_target(store, cli, make_model, tmp_path) -> None:
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "v1")
    victim = tmp_path / "victim.json"
    victim.write_text("precious")
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(victim, target / "config.json")
    result = cli("checkout", "bert", "--to", str(target), "--force", expect=None)
    assert result.exit_code != 0
    assert victim.read_text() == "precious"
    assert os.path.islink(target / "config.json")


def test_safe_target_refuses_links_and_non_folders(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "file").write_text("x")
    os.symlink(tmp_path, root / "link")
    assert safe_target(str(root), "real/new.bin") == str(root / "real" / "new.bin")
    assert safe_target(str(root), "absent/new.bin") == str(root / "absent" / "new.bin")
    for rel in ("link/x", "link", "file/x", "real"):
        with pytest.raises(InvalidInput):
            safe_target(str(root), rel)


def _plant_version(store, files: dict[str, dict], model: str = "evil") -> str:
    """A version whose tree holds ``files`` verbatim, with branch ``main`` pointing at it."""
    good = store.objects.put_bytes(b"payload")
    from mvc.ids import hash_bytes
    from mvc.objects import ChunkRef, FileManifest

    b3 = hash_bytes(b"payload")
    manifest = store.objects.put_meta(FileManifest(7, b3, "blob", (ChunkRef(good, 7),)))
    entries = {
        path: {"m": manifest, "size": 7, "b3": b3, "kind": "blob", "x": False, **extra}
        for path, extra in files.items()
    }
    tree_id = store.objects.put_meta({"type": "tree", "format": 1, "files": entries})
    version = Version(model, tree_id, (), "mallory", "2026-01-01T00:00:00Z", "evil")
    version_id = store.objects.put_meta(version)
    store.refs.set_if_equals(branch(model, "main"), None, version_id, "planted")
    return version_id


HOSTILE_TREES = {
    "parent": {"../escape.txt": {}},
    "deep-parent": {"a/../../escape.txt": {}},
    "absolute": {"/tmp/escape.txt": {}},
    "drive": {"C:/escape.txt": {}},
    "backslash": {"..\\escape.txt": {}},
    "nul": {"a\x00b": {}},
    "store": {".mvc/format": {}},
    "git": {".git/hooks/post-checkout": {}},
    "file-and-folder": {"a": {}, "a/b": {}},
}


@pytest.mark.parametrize("files", list(HOSTILE_TREES.values()), ids=list(HOSTILE_TREES))
def test_hostile_tree_objects_are_rejected(store, cli, tmp_path, files) -> None:
    _plant_version(store, files)
    target = tmp_path / "box" / "out"
    target.parent.mkdir()
    result = cli("checkout", "evil", "--to", str(target), expect=None)
    assert result.exit_code == 12, result.stderr
    assert "unsafe" in result.stderr or "malformed" in result.stderr
    assert not (tmp_path / "box" / "escape.txt").exists()
    assert not target.exists() or not any(target.rglob("*"))
    for command in (("ls", "evil"), ("show", "evil")):
        assert cli(*command, expect=None).exit_code == 12
    assert cli("fsck", expect=None).exit_code == 12


def test_decode_tree_rejects_hostile_paths_directly(store) -> None:
    for name, files in HOSTILE_TREES.items():
        version_id = _plant_version(store, files, model=f"m-{name}")
        with pytest.raises(CorruptObject):
            tree_of(store, version_id)


# --- checkout and the working folder ----------------------------------------------------------


def test_checkout_refuses_to_overwrite_changes_and_names_them(store, cli, make_model) -> None:
    folder = make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "v1")
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "v2")
    (folder / "config.json").write_text("local edit\n")
    result = cli("checkout", "bert@main~1", expect=1)
    assert "config.json" in result.stderr and "--force" in result.stderr
    assert (folder / "config.json").read_text() == "local edit\n"
    cli("checkout", "bert@main~1", "--force")
    assert json.loads((folder / "config.json").read_text())["seed"] == 0


def test_checkout_keeps_untracked_files_and_removes_dropped_ones(store, cli, make_model) -> None:
    folder = make_model("models/bert", extra={"old.txt": "old"})
    cli("commit", "models/bert", "-m", "v1")
    os.unlink(folder / "old.txt")
    (folder / "new.txt").write_text("new")
    cli("commit", "models/bert", "-m", "v2")
    (folder / "scratch.txt").write_text("mine")
    cli("checkout", "bert@main~1")
    assert (folder / "old.txt").read_text() == "old"
    assert not (folder / "new.txt").exists()
    assert (folder / "scratch.txt").read_text() == "mine"
    state = cli("status", "--json").json()[0]
    assert state["added"] == ["scratch.txt"] and not state["modified"] and not state["removed"]


def test_checkout_restores_bytes_and_executable_bit(store, cli, make_model, tmp_path) -> None:
    folder = make_model(
        "models/bert",
        extra={"bin/run.sh": "#!/bin/sh\necho hi\n", "empty.txt": "", "a/b/c/d.json": "{}"},
    )
    os.chmod(folder / "bin" / "run.sh", 0o755)
    cli("commit", "models/bert", "-m", "v1")
    out = tmp_path / "copy"
    cli("checkout", "bert", "--to", str(out))
    rels = (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "bin/run.sh",
        "empty.txt",
        "a/b/c/d.json",
    )
    for rel in rels:
        assert (out / rel).read_bytes() == (folder / rel).read_bytes()
    assert os.access(out / "bin" / "run.sh", os.X_OK)
    assert not os.access(out / "config.json", os.X_OK)
    # a fresh checkout into a non-empty folder needs --force
    assert cli("checkout", "bert", "--to", str(out), expect=1).exit_code == 1


def test_checkout_onto_a_file_is_refused(store, cli, make_model, tmp_path) -> None:
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "v1")
    (tmp_path / "afile").write_text("keep")
    result = cli("checkout", "bert", "--to", str(tmp_path / "afile"), expect=2)
    assert "not a folder" in result.stderr
    assert (tmp_path / "afile").read_text() == "keep"


def test_checkout_across_a_file_that_becomes_a_folder(store, cli, make_model) -> None:
    folder = make_model("models/bert", extra={"tokenizer": "a file"})
    cli("commit", "models/bert", "-m", "v1")
    os.unlink(folder / "tokenizer")
    (folder / "tokenizer" / "sub").mkdir(parents=True)
    (folder / "tokenizer" / "sub" / "vocab.json").write_text("{}")
    (folder / "tokenizer" / "merges.txt").write_text("a b")
    cli("commit", "models/bert", "-m", "v2")

    cli("checkout", "bert@main~1")
    assert (folder / "tokenizer").read_text() == "a file"
    assert cli("status", "--json").json()[0]["clean"]
    cli("checkout", "bert@main")
    assert (folder / "tokenizer" / "sub" / "vocab.json").read_text() == "{}"
    assert cli("status", "--json").json()[0]["clean"]

    # an untracked file inside the folder must never be lost: refuse instead
    (folder / "tokenizer" / "mine.txt").write_text("untracked")
    result = cli("checkout", "bert@main~1", expect=None)
    assert result.exit_code != 0
    assert (folder / "tokenizer" / "mine.txt").read_text() == "untracked"
    assert (folder / "tokenizer" / "sub" / "vocab.json").read_text() == "{}"
    assert cli("status", "--json").json()[0]["branch"] == "main"


def test_a_touched_unflushed_file_is_still_rehashed_after_a_restart(
    store, cli, make_model, trusting_cache, boot
) -> None:
    """A new mtime (``touch``) or ctime (``chmod``) flushes nothing: status re-hashes the file
    from the page cache, and its entry must stay marked as written unflushed in this boot."""
    _v1_checked_out(store, cli, make_model)
    path = "models/bert/model.safetensors"
    later = os.stat(path).st_mtime_ns - 5_000_000_000
    os.utime(path, ns=(later, later))
    state = cli("status", "--json").json()[0]
    assert state["clean"] and state["hashed_files"] == 1
    _damage_behind_the_cache(store, "model.safetensors")

    boot("boot-2")
    assert cli("status", "--json").json()[0]["modified"] == ["model.safetensors"]


def test_a_run_without_a_boot_id_keeps_the_unflushed_mark(
    store, cli, make_model, trusting_cache, boot
) -> None:
    """A status run where the system gives no boot id (no /proc in a sandbox) cannot tell
    whether the machine restarted: its re-hash must not clear the mark of the boot that
    wrote the file, or a later boot trusts what it never read from the disk."""
    _v1_checked_out(store, cli, make_model)
    boot(None)
    assert cli("status", "--json").json()[0]["clean"]
    _damage_behind_the_cache(store, "model.safetensors")

    boot("boot-2")
    assert cli("status", "--json").json()[0]["modified"] == ["model.safetensors"]
