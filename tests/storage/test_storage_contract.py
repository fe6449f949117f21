"""One contract every storage passes: a local folder, fsspec memory, S3 (moto, and Ceph's RGW, a
real S3 implementation), and the generic fsspec adapter (fsspec's own local filesystem, whose
create is not atomic).

Plus the pieces around it: refs' compare-and-swap on each storage, the retry wrapper against an
injected flaky filesystem, opening storages by URL, and the atomic-create probe.
"""

from __future__ import annotations

import errno
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mvc.errors import InvalidInput, MvcError, NotFound, RefConflict, RemoteError, UsageError
from mvc.ids import ObjectId, hash_bytes
from mvc.refnames import branch
from mvc.refs import RefStore
from mvc.storage import LocalStorage, Storage
from mvc.storage.base import BatchingStorage, KernelCopyStorage, StorageBase
from mvc.storage.prefixed import PrefixedStorage
from mvc.storage.remote import (
    FsspecStorage,
    RetryPolicy,
    is_transient,
    open_storage,
    probe_atomic_create,
)
from mvc.store import ObjectStore, object_key

BACKENDS = [
    "local",
    "memory",
    pytest.param("s3", marks=pytest.mark.s3),
    pytest.param("rgw", marks=[pytest.mark.s3, pytest.mark.rgw]),
    "fsspec-file",
    "prefixed",  # the decorator remote-tracking refs live in
]


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Storage]:
    kind = request.param
    if kind == "local":
        yield open_storage(str(tmp_path / "store"))
    elif kind == "memory":
        opened = open_storage(f"memory://mvc-test-{secrets.token_hex(6)}/store")
        yield opened
        assert isinstance(opened, FsspecStorage)
        if opened.fs.exists(opened.root):
            opened.fs.rm(opened.root, recursive=True)
    elif kind in ("s3", "rgw"):
        remote = request.getfixturevalue("s3_url" if kind == "s3" else "rgw_url")
        yield open_storage(remote.url, remote.options)
    elif kind == "prefixed":
        yield PrefixedStorage(open_storage(str(tmp_path / "store")), "remotes/origin")
    else:
        import fsspec

        yield FsspecStorage(fsspec.filesystem("file"), str(tmp_path / "store"))


def raw_put(storage: Storage, relative: str, data: bytes) -> None:
    """Write bypassing key validation, as a hostile or foreign writer would."""
    if isinstance(storage, PrefixedStorage):
        raw_put(storage.inner, f"{storage.prefix}/{relative}", data)
        return
    if isinstance(storage, LocalStorage):
        path = os.path.join(storage.root, *relative.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    else:
        assert isinstance(storage, FsspecStorage)
        path = f"{storage.root}/{relative}"
        storage.fs.makedirs(path.rpartition("/")[0], exist_ok=True)
        storage.fs.pipe_file(path, data)


def race(workers: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` in ``workers`` threads released together."""
    barrier = threading.Barrier(workers)

    def go(index: int) -> Any:
        barrier.wait()
        return fn(index)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(go, range(workers)))


# --- the storage contract ---------------------------------------------------------------------


def test_read_write_round_trip(storage: Storage) -> None:
    storage.write("a/b/c", [b"hello"])
    assert storage.read("a/b/c") == b"hello"
    storage.write("a/b/c", [b"new ", bytearray(b"value "), memoryview(b"in parts")])
    assert storage.read("a/b/c") == b"new value in parts"
    storage.write("empty", [])
    assert storage.read("empty") == b""
    assert storage.size("empty") == 0
    storage.write("gen", (bytes([i]) * 1000 for i in range(50)))
    assert storage.read("gen") == b"".join(bytes([i]) * 1000 for i in range(50))
    assert storage.exists("a/b/c") and storage.size("a/b/c") == 18
    assert storage.local_path("a/b/c") is None or os.path.isfile(storage.local_path("a/b/c") or "")


def test_open_read_streams(storage: Storage) -> None:
    data = bytes(range(256)) * 64
    storage.write("blob", [data])
    with storage.open_read("blob") as stream:
        assert stream.read(3) == data[:3]
        assert stream.read(1000) == data[3:1003]
        assert stream.read() == data[1003:]
        assert stream.read() == b""
    storage.write("none", [b""])
    with storage.open_read("none") as stream:
        assert stream.read() == b""


def test_missing_keys(storage: Storage) -> None:
    for call in (storage.read, storage.open_read, storage.size, storage.age_seconds):
        with pytest.raises(NotFound, match="nope/x"):
            call("nope/x")
    assert not storage.exists("nope/x")
    storage.delete("nope/x")  # deleting what is absent is fine
    assert storage.list("nope") == []
    assert list(storage.walk("nope")) == []


def test_failed_write_never_exposes_partial_content(storage: Storage) -> None:
    storage.write("k", [b"old"])

    def parts() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        storage.write("k", parts())
    assert storage.read("k") == b"old"
    with pytest.raises(RuntimeError):
        storage.write("fresh", parts())
    assert not storage.exists("fresh")
    assert storage.list("") == ["k"]


def test_create_exclusive_wins_once(storage: Storage) -> None:
    assert storage.create_exclusive("refs/x/0000000001", b"first")
    assert not storage.create_exclusive("refs/x/0000000001", b"second")
    assert storage.read("refs/x/0000000001") == b"first"


def test_concurrent_create_exclusive_has_one_winner(storage: Storage) -> None:
    if not storage.atomic_create:
        pytest.skip("this backend's create is check-then-write (atomic_create is False)")
    for round_ in range(4):
        key = f"race/{round_}"

        def create(i: int, key: str = key) -> bool:
            return storage.create_exclusive(key, b"writer %d" % i)

        results = race(8, create)
        assert results.count(True) == 1
        assert storage.read(key) == b"writer %d" % results.index(True)


def test_list_and_walk(storage: Storage) -> None:
    keys = ["objects/ab/cdef", "objects/ab/0123", "objects/cd/4567", "objects2/x", "config.yaml"]
    for key in keys:
        storage.write(key, [key.encode()])
    assert storage.list("") == ["config.yaml", "objects", "objects2"]
    assert storage.list("objects") == ["ab", "cd"]
    assert storage.list("objects/ab") == ["0123", "cdef"]
    assert storage.list("config.yaml") == []  # a key is not a folder
    assert storage.list("obj") == []  # nor is a mere prefix of one
    assert list(storage.walk("objects")) == [
        "objects/ab/0123",
        "objects/ab/cdef",
        "objects/cd/4567",
    ]
    assert sorted(storage.walk("")) == sorted(keys)
    storage.delete("objects/cd/4567")
    assert not storage.exists("objects/cd/4567")
    assert storage.list("objects/cd") == []  # a folder emptied may linger (local) or vanish (S3)
    assert "objects/cd/4567" not in list(storage.walk(""))


def test_listings_skip_keys_that_fail_validation(storage: Storage) -> None:
    storage.write("refs/ok", [b"1"])
    raw_put(storage, "refs/bad name", b"2")
    raw_put(storage, "refs/sub/also bad", b"3")
    assert storage.list("refs") == ["ok", "sub"]
    assert list(storage.walk("refs")) == ["refs/ok"]


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "", "a/./b", "a/../b", "trail/"])
def test_invalid_keys_are_refused(storage: Storage, key: str) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: storage.read(key),
        lambda: storage.open_read(key),
        lambda: storage.write(key, [b"x"]),
        lambda: storage.create_exclusive(key, b"x"),
        lambda: storage.exists(key),
        lambda: storage.size(key),
        lambda: storage.delete(key),
        lambda: storage.age_seconds(key),
        lambda: storage.local_path(key),
    ]
    if key:  # '' is the root folder for listings
        calls += [lambda: storage.list(key), lambda: list(storage.walk(key))]
    for call in calls:
        with pytest.raises(InvalidInput):
            call()


def test_age_seconds_is_sane(storage: Storage) -> None:
    storage.write("fresh", [b"x"])
    assert 0.0 <= storage.age_seconds("fresh") < 60.0


def test_probe_atomic_create_matches_the_backend(storage: Storage) -> None:
    assert probe_atomic_create(storage) is storage.atomic_create
    assert storage.list("probe") == []


# --- refs: compare-and-swap over every storage -------------------------------------------------


def _refs(storage: Storage) -> RefStore:
    return RefStore(storage, who=lambda: "tester", now=lambda: "2026-01-01T00:00:00Z", lock=None)


def _oid(text: str) -> ObjectId:
    return hash_bytes(text.encode())


def test_refs_compare_and_swap_one_winner_per_step(storage: Storage) -> None:
    if not storage.atomic_create:
        pytest.skip("refs need an atomic create-if-absent")
    refs, ref = _refs(storage), branch("bert", "main")
    for step in range(4):
        expected = refs.get(ref)  # both writers start from the same value...

        def move(i: int, expected: ObjectId | None = expected, step: int = step) -> bool:
            try:
                refs.set_if_equals(ref, expected, _oid(f"{i}-{step}"), "race")
            except RefConflict:
                return False
            return True

        results = race(2, move)  # ...and exactly one of them moves it
        assert results.count(True) == 1
        assert refs.get(ref) == _oid(f"{results.index(True)}-{step}")
    log = refs.entries(ref)
    assert [entry.seq for entry in log] == [1, 2, 3, 4]


def test_refs_racing_writers_lose_no_update(storage: Storage) -> None:
    if not storage.atomic_create:
        pytest.skip("refs need an atomic create-if-absent")
    refs, ref = _refs(storage), branch("bert", "main")
    per_writer = 5

    def advance(i: int) -> int:
        conflicts = 0
        for step in range(per_writer):
            while True:
                current = refs.get(ref)
                try:
                    refs.set_if_equals(ref, current, _oid(f"{i}-{step}"), "advance")
                    break
                except RefConflict:
                    conflicts += 1
        return conflicts

    race(2, advance)
    log = refs.entries(ref)
    assert len(log) == 2 * per_writer
    assert {entry.new for entry in log} == {_oid(f"{i}-{s}") for i in range(2) for s in range(5)}
    for before, after in zip(log, log[1:], strict=False):
        assert after.old == before.new  # every move built on the one before it


# --- S3 specifics (moto, and Ceph RGW: a real S3 implementation) -------------------------------


@pytest.fixture(params=["moto", pytest.param("rgw", marks=pytest.mark.rgw)])
def s3_server(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """A fresh bucket and a boto3 client, on moto and on Ceph RGW."""
    if request.param == "moto":
        return request.getfixturevalue("s3_url"), request.getfixturevalue("s3_client")
    return request.getfixturevalue("rgw_url"), request.getfixturevalue("rgw_client")


@pytest.mark.s3
def test_s3_multipart_write_is_invisible_until_complete(s3_server: tuple[Any, Any]) -> None:
    s3_url, s3_client = s3_server
    storage = open_storage(s3_url.url, s3_url.options)
    assert isinstance(storage, FsspecStorage)
    storage._adapter.part_size = 5 * 2**20  # type: ignore[attr-defined]
    piece = os.urandom(2**20)
    storage.write("big", [piece] * 11)
    assert storage.read("big") == piece * 11
    with storage.open_read("big") as stream:
        assert stream.read(10) == piece[:10]

    def dying() -> Iterator[bytes]:
        yield from [piece] * 6
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        storage.write("big2", dying())
    assert not storage.exists("big2")
    assert not s3_client.list_multipart_uploads(Bucket=s3_url.bucket).get("Uploads")


@pytest.mark.s3
def test_s3_server_refuses_a_second_conditional_put_with_412(s3_server: tuple[Any, Any]) -> None:
    """The create-if-absent that ref logs rely on (RGW has honoured it since before 16.2)."""
    import botocore.exceptions

    s3_url, client = s3_server
    client.put_object(Bucket=s3_url.bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.put_object(Bucket=s3_url.bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    assert client.get_object(Bucket=s3_url.bucket, Key="k")["Body"].read() == b"1"


# --- retries ------------------------------------------------------------------------------------


class FakeClientError(Exception):
    """Looks like botocore's ClientError to the classifier (duck-typed ``response``)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{code} ({status})")
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


def _caused(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (OSError(errno.EBUSY, "SlowDown"), True),
        (_caused(OSError(errno.EIO, "?"), FakeClientError(503, "SlowDown")), True),
        (
            _caused(OSError(errno.EIO, "?"), FakeClientError(409, "ConditionalRequestConflict")),
            True,
        ),
        (FakeClientError(500, "InternalError"), True),
        (FakeClientError(429, "TooManyRequests"), True),
        (FakeClientError(403, "AccessDenied"), False),
        (FakeClientError(412, "PreconditionFailed"), False),
        (FakeClientError(501, "NotImplemented"), False),
        (PermissionError(), False),
        (FileNotFoundError(), False),
        (OSError(errno.ENOSPC, "full"), False),
        (ValueError("bad"), False),
    ],
)
def test_transient_errors_are_classified(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def _flaky_storage(failures: dict[str, list[BaseException]]) -> tuple[FsspecStorage, list[float]]:
    """A memory-backed storage whose methods first raise the queued errors, then work."""
    from fsspec.implementations.memory import MemoryFileSystem

    class FlakyMemory(MemoryFileSystem):
        calls: dict[str, int] = {}

        def _maybe_fail(self, name: str) -> None:
            self.calls[name] = self.calls.get(name, 0) + 1
            queue = failures.get(name)
            if queue:
                raise queue.pop(0)

        def cat_file(self, path: str, start: Any = None, end: Any = None, **kw: Any) -> Any:
            self._maybe_fail("cat_file")
            return super().cat_file(path, start=start, end=end, **kw)

        def pipe_file(self, path: str, value: Any, mode: str = "overwrite", **kw: Any) -> None:
            self._maybe_fail("pipe_file")
            super().pipe_file(path, value, mode=mode, **kw)

        def info(self, path: str, **kw: Any) -> Any:
            self._maybe_fail("info")
            return super().info(path, **kw)

    FlakyMemory.calls = {}
    fs = FlakyMemory(skip_instance_cache=True)
    sleeps: list[float] = []
    policy = RetryPolicy(tries=5, first_delay=0.1, max_delay=0.3, sleep=sleeps.append)
    root = f"/flaky-{secrets.token_hex(6)}"
    return FsspecStorage(fs, root, url="memory://store", retry=policy), sleeps


def test_transient_failures_are_retried_with_bounded_backoff() -> None:
    storage, sleeps = _flaky_storage({})
    storage.write("k", [b"value"])
    storage, sleeps = _flaky_storage(
        {
            "cat_file": [
                ConnectionResetError("reset"),
                TimeoutError("slow"),
                OSError(errno.EBUSY, ""),
            ]
        }
    )
    storage.fs.pipe_file(f"{storage.root}/k", b"value")
    assert storage.read("k") == b"value"
    assert len(sleeps) == 3
    assert all(0 < delay <= 0.3 for delay in sleeps)
    assert 0.05 <= sleeps[0] <= 0.1  # the first pause is first_delay, jittered down at most half


def test_write_is_retried() -> None:
    from botocore.exceptions import ClientError

    throttled = ClientError(
        {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject"
    )
    storage, sleeps = _flaky_storage({"pipe_file": [throttled]})
    storage.write("k", [b"a", b"b"])
    assert storage.read("k") == b"ab"
    assert len(sleeps) == 1


def test_retries_are_bounded_and_then_name_remote_and_key() -> None:
    storage, sleeps = _flaky_storage({"cat_file": [OSError(errno.EBUSY, "busy")] * 10})
    storage.fs.pipe_file(f"{storage.root}/objects/ab/cd", b"x")
    with pytest.raises(RemoteError) as caught:
        storage.read("objects/ab/cd")
    assert len(sleeps) == 4  # five tries in all
    assert "objects/ab/cd" in str(caught.value) and "memory://store" in str(caught.value)
    assert "5 tries" in str(caught.value)


def test_permanent_failures_fail_at_once_without_credentials() -> None:
    secret = PermissionError(
        "denied for https://AKIAEXAMPLE:s3cr3t@host/x?X-Amz-Signature=deadbeef&X-Amz-Credential=AK"
    )
    storage, sleeps = _flaky_storage({"cat_file": [secret]})
    storage.fs.pipe_file(f"{storage.root}/k", b"x")
    with pytest.raises(RemoteError) as caught:
        storage.read("k")
    assert sleeps == []
    message = f"{caught.value} {caught.value.hint}"
    assert "k on memory://store" in message and "access denied" in message
    for leaked in ("s3cr3t", "AKIAEXAMPLE", "deadbeef"):
        assert leaked not in message


def test_not_found_is_not_retried() -> None:
    storage, sleeps = _flaky_storage({})
    with pytest.raises(NotFound):
        storage.read("absent")
    assert sleeps == []


def test_create_retried_after_a_lost_answer_recognises_its_own_write() -> None:
    """The first attempt lands but its answer is lost; the retry must not report a loss."""
    storage, sleeps = _flaky_storage({})
    original = storage.fs.pipe_file
    lost = [True]

    def lands_then_times_out(path: str, value: Any, **kw: Any) -> None:
        original(path, value, **kw)
        if lost.pop() if lost else False:
            raise TimeoutError("answer lost")

    storage.fs.pipe_file = lands_then_times_out
    assert storage.create_exclusive("refs/x/0000000001", b"mine")
    assert len(sleeps) == 1
    assert not storage.create_exclusive("refs/x/0000000001", b"theirs")
    assert storage.read("refs/x/0000000001") == b"mine"


# --- opening storages by URL --------------------------------------------------------------------


def test_open_storage_maps_urls(tmp_path: Any) -> None:
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    local = open_storage(f"file://{tmp_path}/store")
    assert isinstance(local, LocalStorage) and local.root == f"{tmp_path}/store"
    memory = open_storage("memory://mvc-open-test/store")
    assert isinstance(memory, FsspecStorage) and memory.atomic_create
    assert memory.url == "memory://mvc-open-test/store"


def test_open_storage_refuses_passwords_in_urls() -> None:
    with pytest.raises(UsageError) as caught:
        open_storage("s3://AKIAEXAMPLE:s3cr3t@bucket/store")
    assert "s3cr3t" not in str(caught.value)


def test_unknown_scheme_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="nosuch://"):
        open_storage("nosuch://bucket/store")


@pytest.mark.parametrize(
    ("scheme", "module", "extra"),
    [("s3", "s3fs", "s3"), ("gs", "gcsfs", "gcs"), ("az", "adlfs", "azure")],
)
def test_missing_backend_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, scheme: str, module: str, extra: str
) -> None:
    from fsspec.registry import _registry

    monkeypatch.delitem(_registry, scheme, raising=False)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` fail
    with pytest.raises(MvcError) as caught:
        open_storage(f"{scheme}://bucket/store")
    assert caught.value.hint == f"pip install 'mvc[{extra}]'"


def test_probe_detects_a_backend_that_ignores_the_condition() -> None:
    class Overwriting(FsspecStorage):
        def create_exclusive(self, key: str, data: bytes) -> bool:
            self.write(key, [data])
            return True

    import fsspec

    storage = Overwriting(fsspec.filesystem("memory"), f"/probe-test-{secrets.token_hex(4)}")
    assert storage.atomic_create
    assert not probe_atomic_create(storage)
    assert storage.list("probe") == []


def test_importing_the_remote_module_does_not_import_fsspec() -> None:
    code = "import sys, mvc.storage.remote; assert 'fsspec' not in sys.modules, 'fsspec loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_local_read_errors_are_ours(tmp_path) -> None:
    """A file where a folder should be is 'not found'; an unreadable file names the key."""
    from mvc.errors import MvcError, NotFound

    storage = LocalStorage(str(tmp_path))
    storage.write("a", [b"x"])
    with pytest.raises(NotFound):
        storage.read("a/b")
    with pytest.raises(NotFound):
        storage.size("a/b")
    storage.write("secret", [b"x"])
    os.chmod(tmp_path / "secret", 0)
    if os.access(tmp_path / "secret", os.R_OK):  # root reads anything: nothing to check
        return
    with pytest.raises(MvcError, match="cannot read secret"):
        storage.read("secret")


def test_storages_declare_their_capabilities(tmp_path) -> None:
    """Batching and kernel copies are Protocols the object store checks with isinstance."""
    local = open_storage(str(tmp_path / "store"))
    assert isinstance(local, BatchingStorage) and isinstance(local, KernelCopyStorage)
    memory = open_storage(f"memory://mvc-test-{secrets.token_hex(6)}/store")
    assert not isinstance(memory, BatchingStorage) and not isinstance(memory, KernelCopyStorage)
    prefixed = PrefixedStorage(local, "remotes/origin")
    assert not isinstance(prefixed, BatchingStorage) and isinstance(prefixed, Storage)


def test_capabilities_are_answered_by_each_storage_and_never_forwarded(tmp_path) -> None:
    """Callers ask ``storage.batching()`` and the like; a wrapper that forwards every other
    attribute to a local storage still answers None, so reads and writes go through it."""
    local = open_storage(str(tmp_path / "store"))
    queries = ("local_root", "batching", "kernel_copy", "bounded_reads")
    assert local.local_root() == str(tmp_path / "store")
    assert all(getattr(local, q)() is local for q in queries[1:])
    memory = open_storage(f"memory://mvc-test-{secrets.token_hex(6)}/store")
    prefixed = PrefixedStorage(local, "remotes/origin")
    for other in (memory, prefixed):
        assert [getattr(other, q)() for q in queries] == [None] * 4

    class Wrapper(StorageBase):
        def __init__(self, inner: Storage) -> None:
            self.inner = inner
            self.reads: list[str] = []

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def read(self, key: str) -> bytes:
            self.reads.append(key)
            return self.inner.read(key)

    wrapped = Wrapper(local)
    assert [getattr(wrapped, q)() for q in queries] == [None] * 4
    assert wrapped.local_path("objects/ab") is None
    oid = ObjectStore(local).put_bytes(b"through the wrapper")
    assert ObjectStore(wrapped).get_bytes(oid) == b"through the wrapper"
    assert wrapped.reads == [object_key(oid)]  # the bounded local read did not bypass it


def test_small_reads_ask_for_capped_reads_and_never_bypass_a_wrapper(tmp_path) -> None:
    """A remote's ref-log entries are read with ``read_small``: a local or fsspec storage reads
    at most the limit (its ``capped_reads``); a wrapper that forwards every other attribute
    answers None, so the read goes through the wrapper's own ``size`` and ``read``."""
    from mvc.errors import CorruptObject
    from mvc.storage.small import read_small

    local = open_storage(str(tmp_path / "store"))
    memory = open_storage(f"memory://mvc-test-{secrets.token_hex(6)}/store")
    assert local.capped_reads() is local and memory.capped_reads() is memory
    assert PrefixedStorage(local, "remotes/origin").capped_reads() is None

    class Wrapper(StorageBase):
        def __init__(self, inner: Storage) -> None:
            self.inner = inner
            self.reads: list[str] = []

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def read(self, key: str) -> bytes:
            self.reads.append(key)
            return self.inner.read(key)

    for storage in (local, memory):
        storage.write("refs/small", [b"entry"])
        storage.write("refs/big", [b"x" * 100])
        assert read_small(storage, "refs/small", 10) == b"entry"
        with pytest.raises(CorruptObject, match="larger than 10 bytes"):
            read_small(storage, "refs/big", 10)
        wrapped = Wrapper(storage)
        assert wrapped.capped_reads() is None
        assert read_small(wrapped, "refs/small", 10) == b"entry"
        with pytest.raises(CorruptObject):
            read_small(wrapped, "refs/big", 10)
        assert wrapped.reads == ["refs/small"]  # the big one was refused by its size, unread
