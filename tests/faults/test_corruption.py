"""Corruption: damaged objects and ref logs are never counted as good data.

Each test states the guarantee it checks. Common to all: a clear one-line error naming the
object or ref and the next step, a documented exit code, no traceback, nothing lost.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tracemalloc

import pytest
from _integrity_helpers import commit, data_chunks, fsck_json, object_path, pushed_clone

from mvc import codec
from mvc.errors import CorruptObject
from mvc.repo import Repo
from mvc.store import object_key

# --- lost data is never hidden behind a remote ----------------------------------------------------


def test_an_object_lost_here_and_on_the_remote_is_damage(store, cli, make_model, tmp_path):
    """Guarantee: fsck reports a missing object as "expected from a remote" only after checking
    that the remote has it; missing here and there is damage (exit 12)."""
    version, clone = pushed_clone(cli, make_model, tmp_path)
    chunk = data_chunks(Repo(str(clone)), version)[0]
    object_path(clone / ".mvc", chunk).unlink()

    # The remote still has it: recoverable, reported as expected from the remote.
    report = fsck_json(cli, clone, expect=0)
    assert report["ok"] and [p["object"] for p in report["promised"]] == [chunk]

    # Gone on the remote too: damage, named as such.
    object_path(tmp_path / "remote", chunk).unlink()
    report = fsck_json(cli, clone, expect=12)
    assert not report["ok"] and report["promised"] == []
    assert [p["object"] for p in report["problems"]] == [chunk]
    assert "origin" in report["problems"][0]["detail"]


def test_a_deleted_remote_does_not_vouch_for_lost_data(store, cli, make_model, tmp_path):
    """Guarantee: when the remote store is gone, objects only it could supply are damage."""
    version, clone = pushed_clone(cli, make_model, tmp_path)
    chunk = data_chunks(Repo(str(clone)), version)[0]
    object_path(clone / ".mvc", chunk).unlink()
    shutil.rmtree(tmp_path / "remote")
    result = cli("-C", clone, "fsck", expect=12)
    assert chunk in result.stdout and "Traceback" not in result.stderr


def test_an_unreachable_remote_is_said_so_and_not_trusted(
    store, cli, make_model, tmp_path, monkeypatch
):
    """Guarantee: fsck does not claim data is safe on a remote it cannot reach: it says so and
    exits 3 (partial: not everything could be checked); --offline skips the remote on purpose
    and lists the objects as unverified."""
    from mvc import remotes  # where remotes are opened
    from mvc.errors import RemoteError

    version, clone = pushed_clone(cli, make_model, tmp_path)
    chunk = data_chunks(Repo(str(clone)), version)[0]
    object_path(clone / ".mvc", chunk).unlink()

    def unreachable(*_args, **_kwargs):
        raise RemoteError("cannot reach remote origin: connection refused")

    monkeypatch.setattr(remotes, "open_remote_storage", unreachable)
    result = cli("-C", clone, "fsck", expect=3)
    assert "origin" in result.stderr and "could not be checked" in result.stderr
    report = fsck_json(cli, clone, expect=3)
    assert [p["object"] for p in report["unverified"]] == [chunk] and report["promised"] == []

    offline = fsck_json(cli, clone, "--offline", expect=0)
    assert [p["object"] for p in offline["unverified"]] == [chunk]


# --- a damaged object is never counted as present -------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_commit_rewrites_a_damaged_copy_instead_of_reusing_it(
    store, cli, make_model, tmp_path, damage
):
    """Guarantee: commit counts an object as present only when it is the right size; a
    truncated or empty copy is written again from the data being committed."""
    version = commit(cli, make_model, 1)
    chunk = data_chunks(store, version)[0]
    path = object_path(store.store_dir, chunk)
    path.write_bytes(path.read_bytes()[: 100 if damage == "truncate" else 0])
    shutil.rmtree("models/bert")
    make_model("models/bert", seed=1)
    (tmp_path / "work" / "models" / "bert" / "notes.txt").write_text("a change\n")
    cli("commit", "models/bert", "-m", "again")
    assert fsck_json(cli, tmp_path / "work", expect=0)["ok"]
    cli("checkout", "bert@main", "--to", tmp_path / "out")


def test_pull_replaces_a_truncated_local_copy(store, cli, make_model, tmp_path):
    """Guarantee: pull does not count a truncated local object as present: it fetches a good
    copy over it, no `--quarantine` needed."""
    version, clone = pushed_clone(cli, make_model, tmp_path)
    chunk = data_chunks(Repo(str(clone)), version)[0]
    path = object_path(clone / ".mvc", chunk)
    path.write_bytes(path.read_bytes()[:-1])
    assert fsck_json(cli, clone, expect=12)["problems"][0]["object"] == chunk
    cli("-C", clone, "pull", "origin", "bert")
    assert fsck_json(cli, clone, expect=0)["ok"]


class _RemoteFiles:
    """A push target of one kind (a folder, or an fsspec memory store: sizes compared over
    the storage interface), with raw access to its object files."""

    def __init__(self, kind: str, tmp_path) -> None:
        import secrets

        self.kind = kind
        if kind == "file":
            self.url = f"file://{tmp_path / 'remote'}"
            self.root = str(tmp_path / "remote")
        else:
            self.name = f"mvc-faults-{secrets.token_hex(6)}"
            self.url = f"memory://{self.name}/store"
            self.root = f"/{self.name}/store"

    def _fs(self):
        import fsspec

        return fsspec.filesystem("file" if self.kind == "file" else "memory")

    def read(self, oid: str) -> bytes:
        return bytes(self._fs().cat_file(f"{self.root}/{object_key(oid)}"))

    def write(self, oid: str, data: bytes) -> None:
        self._fs().pipe_file(f"{self.root}/{object_key(oid)}", data)

    def cleanup(self) -> None:
        if self.kind == "memory" and self._fs().exists(f"/{self.name}"):
            self._fs().rm(f"/{self.name}", recursive=True)


@pytest.fixture(params=["file", "memory"])
def remote_files(request, tmp_path):
    files = _RemoteFiles(request.param, tmp_path)
    yield files
    files.cleanup()


def _same_tensors_new_header(cli) -> None:
    """A new version whose weights file reuses the tensor data (only its header changed)."""
    from safetensors.numpy import load_file, save_file

    weights = "models/bert/model.safetensors"
    save_file(load_file(weights), weights, metadata={"note": "same tensors"})
    cli("commit", "models/bert", "-m", "new header, same data")


def test_push_keeps_a_remote_copy_encoded_otherwise(store, cli, make_model, remote_files):
    """Guarantee (no needless uploads): a remote copy of another size than the local one is
    kept when its own envelope header accounts for its length (pushed raw, repacked here)."""
    make_model("models/bert", seed=1, scale=4)  # tensors big enough for grouped compression
    cli("commit", "models/bert", "-m", "one")
    cli("remote", "add", "origin", remote_files.url)
    cli("push", "origin", "bert")
    assert cli("repack", "--json").json()["compressed"] > 0
    _same_tensors_new_header(cli)
    pushed = cli("push", "origin", "bert", "--json").json()
    assert pushed["transfer"]["chunks_sent"] == 1  # the new header only


def test_push_replaces_a_damaged_copy_on_the_remote(store, cli, make_model, tmp_path, remote_files):
    """Guarantee: push does not take a wrong-size copy on the remote for the object: it sends
    its own, and the remote ref moves only onto complete data."""
    version = commit(cli, make_model, 1)
    cli("remote", "add", "origin", remote_files.url)
    cli("push", "origin", "bert")
    chunk = data_chunks(store, version)[0]
    remote_files.write(chunk, remote_files.read(chunk)[:100])
    _same_tensors_new_header(cli)
    cli("push", "origin", "bert")
    assert remote_files.read(chunk) == object_path(store.store_dir, chunk).read_bytes()
    cli("clone", remote_files.url, tmp_path / "clone")
    assert fsck_json(cli, tmp_path / "clone", expect=0)["ok"]


# --- the stored-bytes checksum is checked ---------------------------------------------------------


def _with_junk_after_zstd(path) -> None:
    """Re-encode the object at ``path`` as one zstd frame (valid sb3), then append junk."""
    stored = path.read_bytes()
    data = codec.decode(stored)
    parts = codec.encode(data + b"", compress=True)
    header, _ = codec.read_header(b"".join(parts))
    assert header["c"] == "zstd", header
    path.write_bytes(b"".join(bytes(p) for p in parts) + b"junk after the frame")


def _config_chunk(repo: Repo, version: str) -> str:
    objects = repo.objects
    tree = objects.get_tree(objects.get_version(version).tree)
    return objects.manifest_of(tree.files["tokenizer.json"]).chunks[0].id


def test_junk_after_a_zstd_frame_is_corruption_everywhere(store, cli, make_model, tmp_path):
    """Guarantee: stored bytes that do not match the envelope's checksum (or run past the
    compressed frame) are corrupt: fsck reports them, push and pull refuse to copy them."""
    version = commit(cli, make_model, 1)
    chunk = _config_chunk(store, version)
    _with_junk_after_zstd(object_path(store.store_dir, chunk))

    report = fsck_json(cli, tmp_path / "work", expect=12)
    assert [p["object"] for p in report["problems"] if p["kind"] == "corrupt"] == [chunk]

    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    pushed = cli("push", "origin", "bert", expect=12)
    assert chunk[:12] in pushed.stderr
    assert not object_path(tmp_path / "remote", chunk).exists()


def test_pull_refuses_junk_after_a_zstd_frame(store, cli, make_model, tmp_path):
    """Guarantee: pull verifies stored bytes before they enter the store."""
    version = commit(cli, make_model, 1)
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "bert")
    chunk = _config_chunk(store, version)
    _with_junk_after_zstd(object_path(tmp_path / "remote", chunk))
    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    pulled = cli("-C", fresh, "pull", "origin", "bert", expect=12)
    assert chunk[:12] in pulled.stderr
    assert not object_path(fresh / ".mvc", chunk).exists()


def test_codec_checks_the_stored_checksum():
    """Guarantee (unit): a compressed envelope whose payload does not hash to sb3 never decodes."""
    parts = codec.encode(b"abc" * 10000, compress=True)
    stored = bytearray(b"".join(bytes(p) for p in parts))
    assert codec.verify_stored(stored)
    stored[-1] ^= 1
    assert not codec.verify_stored(stored)
    with pytest.raises(CorruptObject):
        codec.decode(bytes(stored))


# --- memory stays bounded whatever sizes an object claims -----------------------------------------


def _bomb(claimed: int) -> bytes:
    """A zstd envelope claiming ``claimed`` bytes whose frame decodes to 256 MiB of zeros."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=3)
    chunk = b"\0" * (1 << 20)
    writer = compressor.compressobj()
    frame = b"".join(writer.compress(chunk) for _ in range(256)) + writer.flush()
    header = {"c": "zstd", "n": claimed, "sb3": codec._stored_checksum([frame])}
    return b"".join(bytes(p) for p in codec._frame(header, [frame])[:1]) + frame


def test_a_zstd_bomb_is_refused_with_bounded_memory():
    """Guarantee: an envelope claiming 2^40 bytes is refused before anything is decoded, and
    an object larger than its expected size is refused without decoding past that size; peak
    memory stays far below the claimed size."""
    bomb = _bomb(1 << 40)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptObject, match="larger than"):
            codec.decode(bomb)
        with pytest.raises(CorruptObject):
            codec.decode(bomb, expected_size=1 << 20)
        # A plausible claim (1 MiB) over a frame that inflates to 256 MiB: decoding stops
        # a step past the claim.
        with pytest.raises(CorruptObject, match="more than"):
            codec.decode(_bomb(1 << 20))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak


def test_a_zstd_bomb_in_the_store_is_reported_by_fsck_with_bounded_memory(
    store, cli, make_model, tmp_path
):
    """Guarantee: through the CLI too, a bomb standing in for a chunk is reported as corrupt
    (exit 12) and never inflated: peak RSS of the process grows far less than the bomb's
    inflated size."""
    import resource

    version = commit(cli, make_model, 1)
    chunk = data_chunks(store, version)[0]
    object_path(store.store_dir, chunk).write_bytes(_bomb(1 << 40))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        report = fsck_json(cli, tmp_path / "work", expect=12)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert peak < 64 << 20, peak
    assert [p["object"] for p in report["problems"] if p["kind"] == "corrupt"] == [chunk]
    assert "larger than" in report["problems"][0]["detail"]
    assert grown < 128 << 10, f"peak RSS grew by {grown} KiB"


def test_a_huge_sparse_object_on_a_remote_is_not_read_whole(store, cli, make_model, tmp_path):
    """Guarantee: pull reads at most what a chunk's manifest size allows of a remote object;
    a 64 GiB (sparse) object stands where a chunk should be and is refused with bounded memory."""
    version = commit(cli, make_model, 1)
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "bert")
    chunk = data_chunks(store, version)[0]
    remote_copy = object_path(tmp_path / "remote", chunk)
    with open(remote_copy, "r+b") as handle:
        handle.truncate(64 << 30)
    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    tracemalloc.start()
    try:
        pulled = cli("-C", fresh, "pull", "origin", "bert", expect=12)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chunk[:12] in pulled.stderr and "larger" in pulled.stderr
    assert peak < 256 << 20, peak
    assert not object_path(fresh / ".mvc", chunk).exists()


# --- a torn ref-log entry -------------------------------------------------------------------------


def _newest_entry(store_dir, model="bert", kind="heads", name="main"):
    folder = os.path.join(store_dir, "refs", kind, model, name)
    return os.path.join(folder, sorted(os.listdir(folder))[-1])


def test_a_torn_newest_ref_entry_is_reported_then_repaired(store, cli, make_model, tmp_path):
    """Guarantee: a torn (interrupted) newest log entry is reported clearly on every read and
    write (exit 12, naming the ref and `mvc fsck --repair-refs`), never silently skipped; the
    repair sets it aside, the ref reads its previous value and the log keeps a note."""
    first = commit(cli, make_model, 1)
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "bert")
    commit(cli, make_model, 2)
    entry = _newest_entry(store.store_dir)
    with open(entry, "r+b") as handle:
        handle.truncate(10)

    for args in (
        ("log", "bert"),
        ("show", "bert"),
        ("commit", "models/bert", "-m", "x"),
        ("push", "origin", "bert"),
        ("pull", "origin", "bert"),
    ):
        failed = cli(*args, expect=12)
        assert "bert" in failed.stderr and "mvc fsck --repair-refs" in failed.stderr, args
    report = fsck_json(cli, tmp_path / "work", expect=12)
    assert any(p["kind"] == "ref" and "main" in p["detail"] for p in report["problems"])
    assert "mvc fsck --repair-refs" in cli("fsck", expect=12).stderr
    assert cli("log", "bert", expect=12).stderr.count("\n") == 2  # one error line, one hint

    repaired = fsck_json(cli, tmp_path / "work", "--repair-refs", expect=0)
    assert repaired["ok"] and repaired["repaired_refs"]
    log = cli("log", "bert", "--json").json()
    assert log[0]["id"] == first
    main = next(r for r in Repo(str(tmp_path / "work")).refs.list_refs() if r.name == "main")
    assert "repair" in Repo(str(tmp_path / "work")).refs.entries(main)[-1].why
    assert os.path.exists(os.path.join(store.store_dir, "quarantine", "refs"))
    # The folder still holds the interrupted write's version: bring it to the branch, go on.
    cli("checkout", "bert@main")
    commit(cli, make_model, 3)
    assert fsck_json(cli, tmp_path / "work", expect=0)["ok"]
    cli("gc")  # the torn bytes kept under quarantine/refs/ are no lost object to wait for


@pytest.mark.parametrize("old", ["itself", "unrelated"])
def test_a_broken_local_log_chain_is_reported_then_repaired(store, cli, make_model, old):
    """Guarantee: a log entry whose ``old`` is not the previous entry's ``new`` (here: it names
    the entry's own value, or a version the ref never held) is reported by fsck and stops gc
    (exit 12); `mvc fsck --repair-refs` sets the entry aside and rewrites it as a note that
    changes nothing: the ref keeps its value, the log is one chain again, gc runs."""
    import json

    from mvc.canonical import encode_canonical

    first = commit(cli, make_model, 1)
    second = commit(cli, make_model, 2)
    stray = commit(cli, make_model, 3, folder="models/gpt")
    entry = _newest_entry(store.store_dir)
    value = json.loads(pathlib.Path(entry).read_bytes())
    assert (value["old"], value["new"]) == (first, second)
    value["old"] = second if old == "itself" else stray
    pathlib.Path(entry).write_bytes(encode_canonical(value))

    report = fsck_json(cli, store.root, expect=12)
    assert [p["detail"] for p in report["problems"]] == [
        "bert branch main: log entry 2 does not follow entry 1"
    ]
    assert "--repair-refs" in cli("fsck", expect=12).stderr
    assert "repair the refs" in cli("gc", expect=12).stderr
    assert cli("log", "bert", "--json").json()[0]["id"] == second  # reads still work

    repaired = fsck_json(cli, store.root, "--repair-refs", expect=0)
    assert repaired["ok"] and repaired["repaired_refs"] == ["bert branch main: entry 2"]
    main = next(r for r in Repo(store.root).refs.list_refs() if r.name == "main")
    log = Repo(store.root).refs.entries(main)
    assert [(e.old, e.new) for e in log] == [(None, first), (first, second)]
    assert "repair" in log[-1].why and "did not follow" in log[-1].why
    kept = os.path.join(store.store_dir, "quarantine", "refs", "heads", "bert", "main")
    assert json.loads(pathlib.Path(kept, "0000000002").read_bytes()) == value
    cli("gc")
    commit(cli, make_model, 4)
    assert fsck_json(cli, store.root, expect=0)["ok"]


def test_one_bad_ref_does_not_hide_the_other_models(store, cli, make_model):
    """Guarantee: `mvc models` lists every readable model and names the damaged one (exit 3)."""
    commit(cli, make_model, 1)
    commit(cli, make_model, 2, folder="models/gpt")
    with open(_newest_entry(store.store_dir), "wb") as handle:
        handle.write(b"{not json")
    listed = cli("models", "--json", expect=3)
    assert "gpt" in listed.stdout and "bert" in listed.stderr


def test_one_bad_model_on_a_remote_does_not_fail_the_others(store, cli, make_model, tmp_path):
    """Guarantee: clone and fetch bring every model they can; a model whose ref or data is
    damaged on the remote is named, and the command exits 3 (partial)."""
    commit(cli, make_model, 1)
    gpt = commit(cli, make_model, 2, folder="models/gpt")
    commit(cli, make_model, 3, folder="models/t5")
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "--all")
    # bert's ref log is torn on the remote; t5's version object is damaged there.
    with open(_newest_entry(tmp_path / "remote"), "wb") as handle:
        handle.write(b"")
    t5 = store.refs.get(
        next(r for r in store.refs.list_refs() if r.model == "t5" and r.kind == "heads")
    )
    path = object_path(tmp_path / "remote", t5)
    path.write_bytes(path.read_bytes()[:-3] + b"???")

    cloned = cli("clone", f"file://{tmp_path / 'remote'}", tmp_path / "clone", expect=3)
    assert "bert" in cloned.stderr and "t5" in cloned.stderr
    assert cli("-C", tmp_path / "clone", "log", "gpt", "--json").json()[0]["id"] == gpt

    fetched = cli("-C", tmp_path / "clone", "fetch", "origin", expect=3)
    assert "bert" in fetched.stderr


# --- every read path refuses damage ---------------------------------------------------------------


def _damage(path, how: str, other: bytes) -> None:
    data = path.read_bytes()
    if how == "flip":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # another valid object under this name
        path.write_bytes(other)


@pytest.mark.parametrize("how", ["flip", "truncate", "empty", "other"])
def test_every_read_path_refuses_a_damaged_chunk(store, cli, make_model, tmp_path, how):
    """Guarantee: a damaged data chunk (flipped byte, truncated, empty, or another valid
    object's bytes under its name) is refused by checkout, cat, diff, export, push and mvc.load
    with exit 12 (or CorruptObject) naming the object; no file is written where the user asked."""
    import mvc

    version = commit(cli, make_model, 1)
    chunks = data_chunks(store, version)
    path = object_path(store.store_dir, chunks[0])
    _damage(path, how, object_path(store.store_dir, chunks[1]).read_bytes())

    out = tmp_path / "out"
    failed = cli("checkout", "bert@main", "--to", out, expect=12)
    assert chunks[0][:12] in failed.stderr and "Traceback" not in failed.stderr
    assert not (out / "model.safetensors").exists()
    failed = cli("cat", "bert@main", "model.safetensors", expect=12)
    assert chunks[0][:12] in failed.stderr
    make_model("models/bert", seed=2)  # a second version: diff compares the tensors' values
    cli("commit", "models/bert", "-m", "two")
    failed = cli("diff", "bert@main~1", "bert@main", expect=12)
    assert chunks[0][:12] in failed.stderr
    cli("channel", "set", "bert", "prod", "main~1")
    served = tmp_path / "served"
    failed = cli("export", "bert", "prod", "--format", "dir", "--to", served, expect=12)
    assert chunks[0][:12] in failed.stderr
    assert not [p for p in served.rglob("*.safetensors")], "no damaged bytes exported"
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    failed = cli("push", "origin", "bert", expect=12)
    assert chunks[0][:12] in failed.stderr
    assert not list((tmp_path / "remote").glob("refs/*/*/*/*")), "no remote ref moved"
    with pytest.raises(CorruptObject):
        mvc.load("bert@main~1", repo=str(tmp_path / "work"), cache_dir=str(tmp_path / "cache"))
    report = fsck_json(cli, tmp_path / "work", expect=12)
    assert [p["object"] for p in report["problems"] if p["kind"] == "corrupt"] == [chunks[0]]


@pytest.mark.parametrize("how", ["flip", "truncate", "empty", "other"])
def test_every_kind_of_damage_is_repaired_from_a_remote(store, cli, make_model, tmp_path, how):
    """Guarantee: whatever the damage, `fsck --quarantine` then `pull` from a remote that has
    good copies gives back a store that verifies and the version's exact bytes."""
    from faultkit import read_version_files

    version, clone = pushed_clone(cli, make_model, tmp_path)
    repo = Repo(str(clone))
    good = read_version_files(repo, version)
    chunks = data_chunks(repo, version)
    _damage(
        object_path(clone / ".mvc", chunks[0]),
        how,
        object_path(clone / ".mvc", chunks[1]).read_bytes(),
    )

    damaged = fsck_json(cli, clone, "--quarantine", expect=12)
    assert [p["object"] for p in damaged["problems"] if p["kind"] == "corrupt"] == [chunks[0]]
    cli("-C", clone, "pull", "origin", "bert")
    assert fsck_json(cli, clone, expect=0)["ok"]
    assert read_version_files(Repo(str(clone)), version) == good
