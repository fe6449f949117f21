"""Resources: a full disk, a read-only store, Ctrl-C in the middle of hashing.

Each case checks the same promise: a one-line error naming the path and a documented exit code
(1; 130 for Ctrl-C), no traceback, refs as they were, no temp file left, ``fsck`` clean.

The full disk is a real one: a 4-8 MiB tmpfs mounted by the fixture (the suite runs as root
here and in CI). Where mounting is not permitted the fixture falls back to refusing to create
files under the folder once it holds its size (``os.open`` patched), which is a full disk as
mvc's write paths meet it. The read-only store is a read-only bind mount (root ignores file
modes), or ``chmod -R a-w`` without root.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _worktree_helpers import files_under

from mvc.repo import Repo

# --- fixtures ---------------------------------------------------------------------------------


def _mount(*args: str) -> bool:
    try:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return done.returncode == 0


def _umount(path: Any) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``small_disk(path, mib)`` makes ``path`` a file system of ``mib`` MiB; unmounted after."""
    mounted: list[Any] = []

    def make(path: Any, mib: int = 4) -> Any:
        path.mkdir(parents=True, exist_ok=True)
        if _mount("-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)):
            mounted.append(path)
            return path
        assert os.geteuid() != 0, "root could not mount a tmpfs: the real full disk must run"
        _limit_creations(monkeypatch, str(path), mib << 20)
        return path

    yield make
    for path in reversed(mounted):
        _umount(path)


def _limit_creations(monkeypatch: pytest.MonkeyPatch, root: str, budget: int) -> None:
    real_open = os.open

    def limited(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        full = os.path.abspath(os.fsdecode(path))
        if flags & os.O_CREAT and full.startswith(root + os.sep):
            used = sum(len(data) for data in files_under(root).values())
            if used >= budget:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), full)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", limited)


def fill(folder: Any) -> None:
    """Fill the file system ``folder`` is on (an untracked file ``filler.bin``)."""
    with open(os.path.join(folder, "filler.bin"), "wb") as handle:
        try:
            for _ in range(64):
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.fixture
def read_only() -> Iterator[Any]:
    """``read_only(folder)`` makes ``folder`` read-only until the test ends."""
    undo: list[Any] = []

    def make(folder: Any) -> None:
        folder = str(folder)
        if _mount("--bind", folder, folder):
            undo.append(lambda: _umount(folder))
            assert _mount("-o", "remount,ro,bind", folder), "cannot remount read-only"
            return
        assert os.geteuid() != 0, "root could not bind-mount: the read-only store must run"
        for base, dirs, names in os.walk(folder):
            for name in [*dirs, *names]:
                path = os.path.join(base, name)
                os.chmod(path, os.stat(path).st_mode & ~0o222)
        os.chmod(folder, os.stat(folder).st_mode & ~0o222)
        undo.append(lambda: _writable_again(folder))

    yield make
    for step in reversed(undo):
        step()


def _writable_again(folder: str) -> None:
    os.chmod(folder, os.stat(folder).st_mode | stat.S_IWUSR)
    for base, dirs, names in os.walk(folder):
        for name in [*dirs, *names]:
            path = os.path.join(base, name)
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)


@pytest.fixture
def store_on_small_disk(tmp_path, mvc_env, small_disk, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """A store whose whole root is a 4 MiB file system; the current folder is its root."""
    root = small_disk(tmp_path / "disk", 4)
    Repo.init(str(root))
    repo = Repo(str(root))
    with repo.editing_config() as values:
        values["user.name"] = "Test User"
        values["core.fsync"] = False
    monkeypatch.chdir(root)
    return Repo(str(root))


def _refs(repo: Repo) -> dict[str, str]:
    """What every ref resolves to (one that never got an entry resolves to nothing)."""
    fresh = Repo(repo.root)
    values = {str(ref): fresh.refs.get(ref) for ref in fresh.refs.list_refs(live=False)}
    return {name: str(value) for name, value in values.items() if value is not None}


def _temps(folder: Any, prefix: str) -> list[str]:
    return [k for k in files_under(folder) if os.path.basename(k).startswith(prefix)]


def _clean(result: Any) -> None:
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


# --- disk full --------------------------------------------------------------------------------


def test_disk_full_during_commit_leaves_store_and_refs_as_they_were(
    store_on_small_disk, cli, make_model, tmp_path
) -> None:
    repo = store_on_small_disk
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "v1")
    before_refs, before_config = (
        _refs(repo),
        (tmp_path / "disk/models/bert/config.json").read_bytes(),
    )
    source = tmp_path / "src"
    make_model(source, seed=1, extra={"big.bin": os.urandom(6 << 20)})
    failed = cli("commit", source, "--model", "big", "-m", "too big", expect=1)
    _clean(failed)
    assert "disk full" in failed.stderr and str(tmp_path / "disk") in failed.stderr
    assert _refs(repo) == before_refs
    assert _temps(tmp_path / "disk" / ".mvc", ".tmp-") == []
    cli("fsck")
    assert cli("cat", "bert", "config.json").stdout_bytes == before_config


@pytest.mark.parametrize(
    "command",
    [
        ("tag", "bert", "v1.0.0"),
        ("branch", "bert", "dev"),
        ("channel", "set", "bert", "prod", "main", "-m", "x"),
        ("commit", "models/bert", "-m", "v2"),
    ],
    ids=["tag", "branch", "channel", "commit"],
)
def test_disk_full_during_ref_and_log_writes(store_on_small_disk, cli, make_model, command):
    repo = store_on_small_disk
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "v1")
    with open(os.path.join(repo.root, "models/bert/notes.txt"), "w") as handle:
        handle.write("a change for the commit case")
    before = _refs(repo)
    fill(repo.root)
    failed = cli(*command, expect=1)
    _clean(failed)
    assert "disk full" in failed.stderr and repo.root in failed.stderr
    assert _refs(repo) == before
    assert _temps(os.path.join(repo.root, ".mvc"), ".tmp-") == []
    os.unlink(os.path.join(repo.root, "filler.bin"))
    cli("fsck")


def test_disk_full_during_checkout_to_a_new_folder(
    store, cli, make_model, small_disk, tmp_path
) -> None:
    make_model("models/bert", seed=0, extra={"big.bin": os.urandom(6 << 20)})
    cli("commit", "models/bert", "-m", "v1")
    disk = small_disk(tmp_path / "disk", 4)
    target = disk / "out"
    failed = cli("checkout", "bert", "--to", target, expect=1)
    _clean(failed)
    assert "disk full" in failed.stderr and str(target) in failed.stderr
    assert _temps(disk, ".mvc-tmp-") == []
    assert not target.exists() or files_under(target) == {}
    cli("fsck")


def test_a_checkout_too_big_for_the_disk_fails_before_copying(
    store, cli, make_model, small_disk, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big file's disk space is reserved at once (``preallocate``): a disk too small for it
    fails there, before one byte of it is copied."""
    import mvc.store

    make_model("models/bert", seed=0, extra={"big.bin": os.urandom(6 << 20)})
    cli("commit", "models/bert", "-m", "v1")
    copied: list[int] = []
    real = mvc.store.copy_range

    def counting(src: int, dst: int, src_offset: int, dst_offset: int, length: int) -> None:
        copied.append(length)
        real(src, dst, src_offset, dst_offset, length)

    monkeypatch.setattr(mvc.store, "copy_range", counting)
    disk = small_disk(tmp_path / "disk", 4)
    failed = cli("checkout", "bert", "--to", disk / "out", expect=1)
    assert "disk full" in failed.stderr and "big.bin" in failed.stderr
    assert copied == []  # big.bin is the first file staged; nothing was copied for it
    assert _temps(disk, ".mvc-tmp-") == []


def test_disk_full_during_an_in_place_checkout(
    store, cli, make_model, small_disk, tmp_path
) -> None:
    folder = small_disk(tmp_path / "work" / "models" / "bert", 8)
    make_model(folder, seed=0)
    cli("commit", "models/bert", "-m", "v1")
    (folder / "big.bin").write_bytes(os.urandom(5 << 20))
    cli("commit", "models/bert", "-m", "v2")
    cli("checkout", "bert@main~1")
    fill(folder)
    before = files_under(folder)
    binding = store.binding("bert")
    failed = cli("checkout", "bert@main", expect=1)
    _clean(failed)
    assert "disk full" in failed.stderr and "big.bin" in failed.stderr
    assert files_under(folder) == before  # temp files gone, every file as it was
    assert Repo(store.root).binding("bert") == binding
    state = cli("status", "--json").json()[0]
    assert state["added"] == ["filler.bin"] and not state["modified"] and not state["removed"]


# --- a read-only store ------------------------------------------------------------------------

WRITES = [
    ("commit", "models/bert", "-m", "v2"),
    ("tag", "bert", "v1.0.0"),
    ("branch", "bert", "dev"),
    ("channel", "set", "bert", "prod", "main", "-m", "x"),
    ("gc",),
    ("repack",),
    ("config", "set", "user.name", "Someone"),
    ("checkout", "bert@main", "--force"),
]
READS = [
    ("log", "bert"),
    ("cat", "bert", "config.json"),
    ("fsck",),
    ("show", "bert"),
    ("ls", "bert"),
    ("models",),
    ("status",),
]


def test_a_read_only_store_refuses_every_write_cleanly_and_still_serves_reads(
    store, cli, make_model, read_only
) -> None:
    folder = make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "v1")
    (folder / "config.json").write_text('{"changed": true}\n')
    before = _refs(store)
    shutil.rmtree(os.path.join(store.store_dir, "index"))  # status cannot even make its folder
    read_only(store.store_dir)
    for command in WRITES:
        failed = cli(*command, expect=None)
        assert failed.exit_code == 1, (command, failed.stderr)
        _clean(failed)
        assert "read-only" in failed.stderr and store.store_dir in failed.stderr, command
    for command in READS:
        cli(*command)
    assert cli("cat", "bert", "config.json").stdout != '{"changed": true}\n'
    # checkout refused before touching the folder (the binding it would move is in the store)
    assert (folder / "config.json").read_text() == '{"changed": true}\n'
    assert _refs(store) == before


# --- Ctrl-C while a large file is hashed and stored (issue 12) -------------------------------


@pytest.mark.slow
def test_ctrl_c_during_commit_of_a_large_file_exits_130(store, tmp_path) -> None:
    folder = tmp_path / "work" / "models" / "bert"
    folder.mkdir(parents=True)
    block = os.urandom(1 << 20)
    with open(folder / "weights.bin", "wb") as handle:  # 300 MiB, every MiB different
        for index in range(300):
            handle.write(index.to_bytes(8, "little") + block[8:])
    objects = os.path.join(store.store_dir, "objects")
    before = files_under(objects) if os.path.isdir(objects) else {}
    process = subprocess.Popen(
        [sys.executable, "-m", "mvc", "commit", "models/bert", "-m", "big"],
        cwd=store.root,
        env={**os.environ, "MVC_CORE_FSYNC": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.isdir(objects) and any(files for _base, _dirs, files in os.walk(objects)):
            break  # the first chunk of weights.bin is being stored
        time.sleep(0.001)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err and "BufferError" not in err and "internal error" not in err
    assert Repo(store.root).refs.list_refs(live=False) == []
    assert _temps(store.store_dir, ".tmp-") == []
    assert files_under(objects).keys() >= before.keys()
    done = subprocess.run(
        [sys.executable, "-m", "mvc", "fsck"], cwd=store.root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
