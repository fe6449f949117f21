"""The performance paths keep the store's guarantees: batched durable writes, parallel verified
checkout writes, the raw-object read shortcut, and the CLI's one-command start-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mvc import codec
from mvc import store as store_module
from mvc.canonical import encode_canonical
from mvc.errors import CorruptObject, NotFound
from mvc.ids import ObjectId, hash_bytes
from mvc.objects import ChunkRef, FileManifest
from mvc.storage.local import TMP_PREFIX, LocalStorage
from mvc.store import BASE_CACHE, BaseCache, ObjectStore, object_key


def _files(root: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _dirs, names in os.walk(root)
        for name in names
    )


# --- LocalStorage.batch -----------------------------------------------------------------------


def test_a_batch_shows_nothing_under_its_final_names_until_it_ends(tmp_path) -> None:
    storage = LocalStorage(str(tmp_path))
    with storage.batch():
        storage.write("objects/ab/cd", [b"one"])
        storage.write("objects/ef/gh", [b"two", b"!"])
        assert not os.path.exists(tmp_path / "objects/ab/cd")  # no name before durability
        assert storage.exists("objects/ab/cd")  # ...but the batch's own reads see it
        assert storage.read("objects/ef/gh") == b"two!"
        assert storage.size("objects/ab/cd") == 3
    assert (tmp_path / "objects/ab/cd").read_bytes() == b"one"
    assert (tmp_path / "objects/ef/gh").read_bytes() == b"two!"
    assert not [f for f in _files(str(tmp_path)) if TMP_PREFIX in f]


def test_a_failed_batch_leaves_no_object_and_no_temp_file(tmp_path) -> None:
    storage = LocalStorage(str(tmp_path))
    with pytest.raises(RuntimeError), storage.batch():
        storage.write("objects/ab/cd", [b"one"])
        raise RuntimeError("interrupted")
    assert _files(str(tmp_path)) == []


def test_writing_a_key_twice_in_a_batch_keeps_the_last_value_and_one_file(tmp_path) -> None:
    storage = LocalStorage(str(tmp_path))
    with storage.batch():
        storage.write("k/v", [b"first"])
        storage.write("k/v", [b"second"])
    assert _files(str(tmp_path)) == ["k/v"]
    assert storage.read("k/v") == b"second"


def test_without_fsync_a_batch_still_stages_and_a_failure_leaves_nothing(tmp_path) -> None:
    storage = LocalStorage(str(tmp_path), fsync=False)
    with storage.batch():
        storage.write("k/v", [b"x"])
        assert storage.read("k/v") == b"x"  # readable inside the batch
    assert (tmp_path / "k/v").read_bytes() == b"x"
    with pytest.raises(RuntimeError), storage.batch():
        storage.write("k/w", [b"y"])
        raise RuntimeError("a file changed while it was read")
    assert not storage.exists("k/w") and os.listdir(tmp_path / "k") == ["v"]


@pytest.mark.parametrize("stall", ["fsync", "rename"])
def test_a_write_stays_readable_while_another_thread_flushes_it(tmp_path, monkeypatch, stall):
    """flush_pending from one thread while another reads what is being flushed (a push that
    verifies a delta whose base is in the round being made durable): every read, exists and
    size sees the bytes, whether the flush is stalled in its fsyncs or between renames."""
    import threading

    from mvc.storage import local

    storage = LocalStorage(str(tmp_path), fsync=(stall == "fsync"))
    stalled, release = threading.Event(), threading.Event()
    if stall == "fsync":
        real = local._fsync_file

        def slow_fsync(path: str) -> None:
            stalled.set()
            release.wait(10)
            real(path)

        monkeypatch.setattr(local, "_fsync_file", slow_fsync)
    else:
        real_replace = os.replace
        renamed: list[str] = []

        def slow_replace(src, dst) -> None:
            real_replace(src, dst)
            renamed.append(str(dst))
            if len(renamed) == 1:  # one renamed, the other not yet
                stalled.set()
                release.wait(10)

        monkeypatch.setattr(local.os, "replace", slow_replace)
    with storage.batch():
        storage.write("objects/ab/cd", [b"base"])
        storage.write("objects/ef/gh", [b"delta"])
        flusher = threading.Thread(target=storage.flush_pending)
        flusher.start()
        assert stalled.wait(10)
        try:
            for key, value in (("objects/ab/cd", b"base"), ("objects/ef/gh", b"delta")):
                assert storage.exists(key) and storage.size(key) == len(value)
                assert storage.read(key) == value
                with storage.open_read(key) as handle:
                    assert handle.read() == value
        finally:
            release.set()
            flusher.join(10)
    assert (tmp_path / "objects/ab/cd").read_bytes() == b"base"
    assert not [f for f in _files(str(tmp_path)) if TMP_PREFIX in f]


def test_a_read_racing_a_second_write_of_the_same_key_finds_the_new_copy(tmp_path, monkeypatch):
    """Two threads write the same object (a delta's base sent first by one, as a chunk by the
    other): the second write's temp file replaces the first. A reader that looked up the
    first temp just before finds the second instead of a spurious NotFound (seen as a push
    failing with 'object … is missing from remote')."""
    storage = LocalStorage(str(tmp_path))
    with storage.batch():
        storage.write("objects/ab/cd", [b"same"])
        stale = storage._readable("objects/ab/cd")
        storage.write("objects/ab/cd", [b"same"])  # the other thread's copy: the first goes
        assert not os.path.exists(stale)
        fresh = storage._readable
        lookups = iter([stale, stale])  # read's lookup, then exists' lookup, happened earlier
        monkeypatch.setattr(storage, "_readable", lambda key: next(lookups, None) or fresh(key))
        assert storage.read("objects/ab/cd") == b"same"
        assert storage.exists("objects/ab/cd")


# --- ObjectStore.write_file and get_bytes -----------------------------------------------------


def _store_file(store: ObjectStore, pieces: list[bytes], *, compress: bool) -> FileManifest:
    refs = []
    for piece in pieces:
        oid = store.put_bytes(piece, elem_width=4, compress=compress)
        refs.append(ChunkRef(oid, len(piece)))
    whole = b"".join(pieces)
    return FileManifest(size=len(whole), b3=hash_bytes(whole), kind="blob", chunks=tuple(refs))


@pytest.fixture(params=["on this thread", "on the pool"])
def write_path(request, monkeypatch) -> None:
    """``write_file``'s two ways: a small file on the calling thread, a large one chunk by
    chunk on a pool. The files here are small, so for the pool its threshold is lowered."""
    if request.param == "on the pool":
        monkeypatch.setattr(store_module, "_PARALLEL_MIN", 0)


def _flip_a_stored_byte(store: ObjectStore, oid: str) -> None:
    """Damage object ``oid`` where it lies: one bit of its stored bytes flipped near the end."""
    path = Path(str(store.storage.local_path(object_key(oid))))
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(raw))


def _pieces() -> list[bytes]:
    import numpy as np

    rng = np.random.default_rng(7)
    floats = (rng.standard_normal(300_000).astype(np.float32) * 0.02).tobytes()
    return [floats[:400_000], b"", floats[400_000:], b"tail bytes"]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.usefixtures("write_path")
def test_write_file_reassembles_the_file_at_its_offsets(tmp_path, compress) -> None:
    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    pieces = [p for p in _pieces() if p]
    manifest = _store_file(store, pieces, compress=compress)
    seen: list[int] = []
    out = tmp_path / "out.bin"
    fd = os.open(out, os.O_RDWR | os.O_CREAT)
    try:
        store.write_file(manifest, fd, "out.bin", jobs=3, on_chunk=seen.append)
    finally:
        os.close(fd)
    assert out.read_bytes() == b"".join(pieces)
    assert seen == [len(p) for p in pieces]  # progress in file order


@pytest.mark.usefixtures("write_path")
def test_write_file_refuses_a_damaged_chunk_and_names_it(tmp_path) -> None:
    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    pieces = [p for p in _pieces() if p]
    manifest = _store_file(store, pieces, compress=False)
    bad = manifest.chunks[1].id
    _flip_a_stored_byte(store, bad)
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(CorruptObject) as caught:
            store.write_file(manifest, fd, "out.bin")
    finally:
        os.close(fd)
    assert bad[:12] in caught.value.message
    with pytest.raises(CorruptObject):
        store.get_bytes(bad)  # the raw-read shortcut verifies too


@pytest.mark.usefixtures("write_path")
def test_write_file_checks_the_whole_file_hash(tmp_path) -> None:
    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    pieces = [p for p in _pieces() if p]
    manifest = _store_file(store, pieces, compress=False)
    lying = FileManifest(manifest.size, hash_bytes(b"other"), manifest.kind, manifest.chunks)
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(CorruptObject, match="reassemble"):
            store.write_file(lying, fd, "out.bin")
    finally:
        os.close(fd)


def test_get_bytes_reads_raw_and_encoded_objects_alike(tmp_path) -> None:
    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    data = _pieces()[2]
    raw_id = store.put_bytes(data, elem_width=4, compress=False)
    assert store.get_bytes(raw_id) == data
    other = ObjectStore(LocalStorage(str(tmp_path / "other")))
    packed_id = other.put_bytes(data, elem_width=4, compress=True)
    stored = other.read_stored(packed_id)
    assert codec.read_header(stored)[0]["c"] != "raw"
    assert other.get_bytes(packed_id) == data
    assert store.get_bytes(store.put_bytes(b"")) == b""


def _tuned(data: bytes, seed: int) -> bytes:
    """``data``'s float32 values with their low bits changed, like a few training steps."""
    import numpy as np

    values = np.frombuffer(data, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0, 1e-4, values.shape).astype(np.float32)
    return (values * (1 + noise)).astype(np.float32).tobytes()


def _as_delta(store: ObjectStore, data: bytes, base: bytes) -> ObjectId:
    """Store ``data`` as a delta against ``base`` (both stored), as repack does."""
    oid, base_id = store.put_bytes(data), store.put_bytes(base)
    parts = codec.encode_delta(data, base_id, base, base_depth=0, elem_width=4)
    assert parts is not None
    store.replace_encoding(oid, parts)
    assert codec.header_delta_base(store.read_header(oid)) == (base_id, 1)
    return oid


def _manifest(pieces: list[tuple[ObjectId, bytes]]) -> FileManifest:
    whole = b"".join(data for _oid, data in pieces)
    refs = tuple(ChunkRef(oid, len(data)) for oid, data in pieces)
    return FileManifest(size=len(whole), b3=hash_bytes(whole), kind="blob", chunks=refs)


def _write_out(store: ObjectStore, manifest: FileManifest, out: Path) -> bytes:
    fd = os.open(out, os.O_RDWR | os.O_CREAT)
    try:
        store.write_file(manifest, fd, "out.bin", jobs=2)
    finally:
        os.close(fd)
    return out.read_bytes()


class _Hashed:
    """Counts the bytes given to blake3, whoever hashes them (ids, hashers, threads)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import blake3

        real = blake3.blake3
        counter = self

        class Counting:
            AUTO = real.AUTO

            def __init__(self, data: bytes = b"", **options: int) -> None:
                self.real = real(**options)
                self.update(data)

            def update(self, data: bytes) -> Counting:
                counter.total += len(data)
                self.real.update(data)
                return self

            def hexdigest(self) -> str:
                return str(self.real.hexdigest())

        self.total = 0
        monkeypatch.setattr(blake3, "blake3", Counting)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.usefixtures("write_path")
def test_write_file_hashes_every_byte_once(tmp_path, monkeypatch, compress) -> None:
    """Raw or compressed, each chunk is read once and hashed once, as part of the whole
    file's blake3 (which the verified manifest records): no second pass per chunk."""
    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    pieces = [p for p in _pieces() if p]
    manifest = _store_file(store, pieces, compress=compress)
    hashed = _Hashed(monkeypatch)
    assert _write_out(store, manifest, tmp_path / "out.bin") == b"".join(pieces)
    assert hashed.total == manifest.size


@pytest.mark.usefixtures("write_path")
def test_write_file_decodes_a_shared_delta_base_once(tmp_path, monkeypatch) -> None:
    """Two chunks stored as deltas against one base: the base is read, verified and hashed
    once (the store's base cache holds it), and each delta's result only as part of the file."""
    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    base = _pieces()[0]
    first, second = _tuned(base, 1), _tuned(base, 2)
    base_id = hash_bytes(base)
    manifest = _manifest(
        [(_as_delta(store, first, base), first), (_as_delta(store, second, base), second)]
    )
    reads: list[str] = []
    real_read, real_map = store.read_stored, store.map_stored
    monkeypatch.setattr(
        store, "read_stored", lambda oid, **kw: reads.append(oid) or real_read(oid, **kw)
    )
    monkeypatch.setattr(
        store, "map_stored", lambda oid, **kw: reads.append(oid) or real_map(oid, **kw)
    )
    hashed = _Hashed(monkeypatch)
    assert _write_out(store, manifest, tmp_path / "out.bin") == first + second
    assert reads.count(base_id) == 1
    assert hashed.total == manifest.size + len(base)
    assert store.bases.get(base_id) == base


def test_the_delta_base_cache_is_bounded_by_bytes() -> None:
    cache = BaseCache(1000)
    for n in range(10):
        cache.put(f"{n:064x}", bytes([n]) * 300)
        assert cache.size <= 1000
    assert cache.get(f"{9:064x}") == bytes([9]) * 300  # the newest are kept
    assert cache.get(f"{0:064x}") is None  # the oldest went first
    cache.put("f" * 64, b"x" * 1001)  # larger than the whole cache: not kept
    assert cache.get("f" * 64) is None and cache.size <= 1000
    assert BaseCache().limit == BASE_CACHE


@pytest.mark.parametrize("damaged", ["base", "delta"])
@pytest.mark.usefixtures("write_path")
def test_write_file_names_a_damaged_delta_or_base(tmp_path, damaged) -> None:
    """Damage in a delta's payload or in its base: refused, naming the damaged object, and
    nothing damaged is left in the base cache."""
    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    base = _pieces()[0]
    tuned = _tuned(base, 1)
    delta = _as_delta(store, tuned, base)
    bad = delta if damaged == "delta" else hash_bytes(base)
    _flip_a_stored_byte(store, bad)
    with pytest.raises(CorruptObject) as caught:
        _write_out(store, _manifest([(delta, tuned)]), tmp_path / "out.bin")
    assert caught.value.object_id == bad and bad[:12] in caught.value.message
    assert store.bases.size == 0


@pytest.mark.usefixtures("write_path")
def test_write_file_decodes_chunks_of_every_kind_and_size_into_reused_buffers(
    tmp_path, monkeypatch
) -> None:
    """Grouped, zstd, raw and delta chunks (XOR and difference, bases shared or not) of
    growing and shrinking sizes, on two threads: the buffers each decode reuses never leak
    one chunk's bytes into another's, and each base is hashed once."""
    import numpy as np

    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    rng = np.random.default_rng(3)
    pieces: list[tuple[ObjectId, bytes]] = []
    bases: dict[str, int] = {}
    for n in (400_000, 80_000, 1_200_000, 4096, 80_000, 600_004):
        data = rng.normal(0, 0.02, n // 4 + 1).astype(np.float32).tobytes()[:n]
        pieces.append((store.put_bytes(data, elem_width=4, compress=True), data))
        if n % 4:
            continue  # a difference needs whole elements
        base_id = store.put_bytes(data)
        for seed, transform in enumerate(codec.TRANSFORMS):
            tuned = _tuned(data, n + seed)
            oid = store.put_bytes(tuned)
            parts = codec.encode_delta(
                tuned, base_id, data, base_depth=0, elem_width=4, transform=transform
            )
            assert parts is not None
            store.replace_encoding(oid, parts)
            pieces.append((oid, tuned))
            bases[base_id] = len(data)
    pieces.append((store.put_bytes(b"raw tail", compress=False), b"raw tail"))
    manifest = _manifest(pieces)
    hashed = _Hashed(monkeypatch)
    assert _write_out(store, manifest, tmp_path / "out.bin") == b"".join(d for _o, d in pieces)
    assert hashed.total == manifest.size + sum(bases.values())


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.usefixtures("write_path")
def test_write_file_names_a_damaged_base_on_the_fast_path(tmp_path, shared) -> None:
    """A damaged base under one delta or under two (decoded once, by one thread): refused,
    named, and not cached."""
    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    base = _pieces()[0]
    pieces = [(_as_delta(store, _tuned(base, n), base), _tuned(base, n)) for n in (1, 2)]
    if not shared:
        pieces = pieces[:1]
    bad = hash_bytes(base)
    _flip_a_stored_byte(store, bad)
    with pytest.raises(CorruptObject) as caught:
        _write_out(store, _manifest(pieces), tmp_path / "out.bin")
    assert caught.value.object_id == bad and bad[:12] in caught.value.message
    assert pieces[0][0][:12] in caught.value.message  # what it takes down
    assert store.bases.size == 0


@pytest.mark.parametrize("damage", ["missing", "not an envelope"])
@pytest.mark.usefixtures("write_path")
def test_write_file_says_which_base_is_missing_or_unreadable(tmp_path, damage) -> None:
    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    base = _pieces()[0]
    tuned = _tuned(base, 1)
    delta = _as_delta(store, tuned, base)
    path = Path(str(store.storage.local_path(object_key(hash_bytes(base)))))
    os.chmod(path, 0o644)
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"garbage, not an mvc envelope" * 100)
    with pytest.raises((NotFound, CorruptObject)) as caught:
        _write_out(store, _manifest([(delta, tuned)]), tmp_path / "out.bin")
    assert hash_bytes(base)[:12] in caught.value.message
    assert isinstance(caught.value, NotFound if damage == "missing" else CorruptObject)
    assert store.bases.size == 0


# --- the CLI runs only the command it was given --------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], ("status", False)),
        (["-C", "some/dir", "commit", "x"], ("commit", False)),
        (["-Csome/dir", "--lock-timeout=3", "log"], ("log", False)),
        (["--lock-timeout", "3", "config", "get", "user.name"], ("config", False)),
        (["--version"], (None, True)),
        (["--help"], (None, False)),
        (["-h", "status"], (None, False)),
        ([], (None, False)),
        (["--no-such-option", "status"], (None, False)),
    ],
)
def test_the_invoked_command_is_read_from_the_command_line(argv, expected) -> None:
    from mvc.cli.main import _invoked

    assert _invoked(argv) == expected


def _command_names(app) -> list[str]:
    """The top-level commands of a Typer app, read through Typer's and click's public API."""
    import typer
    import typer.core

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return sorted(group.commands)


def test_a_narrowed_app_keeps_only_the_invoked_command() -> None:
    from mvc.cli.main import _narrowed, app

    assert _command_names(_narrowed(["status"])) == ["status"]
    assert _command_names(_narrowed(["config", "get", "user.name"])) == ["config"]
    assert _command_names(_narrowed(["--version"])) == []
    assert _narrowed(["no-such-command"]) is app  # click still suggests the right spelling
    assert _narrowed([]) is app
    assert len(_command_names(app)) > 1  # the module's app itself is never changed
    assert _command_names(_narrowed(["push"])) == ["push"]  # building twice adds nothing


def test_a_noop_commit_of_a_repacked_folder_hashes_no_stored_bytes(
    store, cli, make_model, monkeypatch
) -> None:
    """Presence of a zstd chunk is judged from its block headers, never by hashing it."""
    make_model("models/bert")
    notes = Path(store.abspath("models/bert")) / "notes.txt"
    notes.write_text("the same line\n" * 50_000)  # compressible: zstd after the repack
    cli("commit", "models/bert", "-m", "v1")
    cli("repack")
    calls: list[int] = []
    real = codec.verify_stored
    monkeypatch.setattr(codec, "verify_stored", lambda b: calls.append(len(b)) or real(b))
    result = cli("commit", "models/bert", "-m", "again")
    assert "nothing changed" in result.stderr
    assert calls == []


@pytest.mark.usefixtures("write_path")
def test_write_file_blames_a_delta_that_names_a_base_of_another_size(tmp_path) -> None:
    """The base a delta names is intact but not as long as the delta: the delta is the damage
    (as ``get_bytes`` says), not the base."""
    store = ObjectStore(LocalStorage(str(tmp_path / "store")))
    base = _pieces()[0]
    tuned = _tuned(base, 1)
    other_id = store.put_bytes(base[:100_000])
    oid = store.put_bytes(tuned)
    parts = codec.encode_delta(tuned, other_id, base, base_depth=0, elem_width=4)
    assert parts is not None
    store.replace_encoding(oid, parts)
    with pytest.raises(CorruptObject) as caught:
        _write_out(store, _manifest([(oid, tuned)]), tmp_path / "out.bin")
    assert caught.value.object_id == oid and "differ in size" in caught.value.message
    assert store.get_bytes(other_id) == base[:100_000]  # the base is fine


# --- page-aligned raw payloads ----------------------------------------------------------------


def test_a_large_raw_envelope_puts_its_payload_where_its_source_sits_in_a_page() -> None:
    data = os.urandom(codec.ALIGN_MIN)
    for offset in (0, 1, 33, 4095, 4096, 123_457):
        stored = b"".join(bytes(p) for p in codec.encode(data, compress=False, offset=offset))
        header, start = codec.read_header(stored)
        assert start % codec.PAGE == offset % codec.PAGE
        assert header == {"c": "raw", "n": len(data)}  # the padding is JSON whitespace
        assert codec.decode(stored) == data
    small = b"".join(bytes(p) for p in codec.encode(data[:1000], compress=False, offset=100))
    assert codec.read_header(small)[1] == 8 + len(b'{"c":"raw","n":1000}')  # not worth a page


def test_committed_tensors_are_copied_page_to_page(store, cli, tmp_path, monkeypatch) -> None:
    """Each large raw chunk's payload has the in-page offset its bytes have in the model file,
    so commit and checkout copy whole pages; the padded objects check out, fsck and clone as
    any other."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    tensors = {
        f"layer.{i}.weight": rng.standard_normal((700 + i, 513)).astype(np.float32)
        for i in range(4)
    }
    folder = Path(store.abspath("models/big"))
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"note": "x" * 37})
    model = (folder / "model.safetensors").read_bytes()
    cli("commit", "models/big", "-m", "v1")

    checked = 0
    for name in _files(store.abspath(".mvc/objects")):
        stored = Path(store.abspath(".mvc/objects"), name).read_bytes()
        header, start = codec.read_header(stored)
        if header["c"] != "raw" or header["n"] < codec.ALIGN_MIN:
            continue
        offset = model.find(stored[start : start + 4096])
        assert offset >= 0
        assert start % codec.PAGE == offset % codec.PAGE
        checked += 1
    assert checked == len(tensors)

    cli("checkout", "big@main", "--to", "out")
    assert Path(store.abspath("out/model.safetensors")).read_bytes() == model
    cli("fsck")
    cli("clone", store.root, str(tmp_path / "clone"))
    monkeypatch.chdir(tmp_path / "clone")
    cli("checkout", "big@main", "--to", "out")
    assert (tmp_path / "clone/out/model.safetensors").read_bytes() == model


def test_repack_keeps_a_padded_chunk_that_does_not_compress(store, cli) -> None:
    """Dropping the page padding would save a few KiB of a chunk that neither compresses nor
    deltas against its parent's: repack (and its delta pass) leaves such an object as it is
    instead of rewriting it."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(5)
    folder = Path(store.abspath("models/noise"))
    folder.mkdir(parents=True)
    objects = Path(store.abspath(".mvc/objects"))

    def padded() -> dict[str, bytes]:
        found = {}
        for name in _files(str(objects)):
            stored = (objects / name).read_bytes()
            header, start = codec.read_header(stored)
            if header["c"] == "raw" and start > 8 + len(encode_canonical(header)):
                found[name] = stored
        return found

    for take in ("v1", "v2"):  # v2's tensor has v1's as its delta base, and is as random
        noise = rng.integers(0, 256, size=(3 << 20,), dtype=np.uint8)
        save_file({"noise": noise}, str(folder / "model.safetensors"))
        (folder / "weights.bin").write_bytes(os.urandom(3 << 20))
        cli("commit", "models/noise", "-m", take)
    before = padded()
    assert len(before) >= 4  # the large chunks were padded, so the case is exercised
    cli("repack")
    assert padded() == before


# --- file systems that cannot map files ---------------------------------------------------------


@pytest.fixture
def no_mmap(monkeypatch):
    """``mmap`` fails as on a FUSE or network mount that does not map files (ENODEV)."""
    import errno
    import mmap

    def refuse(*args, **kwargs):
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(mmap, "mmap", refuse)


def _big_model(store) -> bytes:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(11)
    folder = Path(store.abspath("models/big"))
    folder.mkdir(parents=True, exist_ok=True)
    weights = {f"w{i}": rng.standard_normal((600, 700)).astype(np.float32) for i in range(3)}
    save_file(weights, str(folder / "model.safetensors"))
    return (folder / "model.safetensors").read_bytes()


@pytest.mark.parametrize("repacked", [False, True])
def test_checkout_reads_objects_where_the_store_cannot_map_them(
    store, cli, repacked, request
) -> None:
    model = _big_model(store)
    cli("commit", "models/big", "-m", "v1")
    if repacked:
        cli("repack")
    request.getfixturevalue("no_mmap")
    cli("checkout", "big@main", "--to", "out")
    assert Path(store.abspath("out/model.safetensors")).read_bytes() == model


def test_committing_a_large_file_that_cannot_be_mapped_says_so_and_stores_nothing(
    store, cli, no_mmap
) -> None:
    _big_model(store)
    failed = cli("commit", "models/big", "-m", "v1", expect=1)
    assert "cannot read model.safetensors" in failed.stderr
    assert "does not map files" in failed.stderr and "local disk" in failed.stderr
    assert cli("log", "big", expect=1).exit_code == 1  # no version was made


def test_diffing_a_working_file_that_cannot_be_mapped_says_so(store, cli, request) -> None:
    _big_model(store)
    cli("commit", "models/big", "-m", "v1")
    path = Path(store.abspath("models/big/model.safetensors"))
    changed = bytearray(path.read_bytes())
    changed[-4:] = b"\x00\x00\x80\x3f"  # the last float is now 1.0
    path.write_bytes(bytes(changed))
    request.getfixturevalue("no_mmap")
    failed = cli("diff", "big", expect=1)  # HEAD against the working folder
    assert "cannot read model.safetensors" in failed.stderr and "local disk" in failed.stderr
