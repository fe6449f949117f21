"""Remotes: push, fetch, pull and clone between stores over a path, file://, memory:// and S3.

What a user relies on: round trips give back the same bytes; a partial pull moves only that
version's data; an interrupted transfer, run again, completes with only what is missing; a remote
serving a wrong byte is named and no ref moves; hostile remote names and paths are never
followed; concurrent pushers never lose an update; credentials are never stored.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mvc.canonical import encode_canonical
from mvc.errors import CorruptObject, RefConflict, RemoteError
from mvc.ids import hash_bytes
from mvc.objects import encode_object
from mvc.ops import remotes
from mvc.refnames import branch, tag
from mvc.refs import RefStore
from mvc.remotes import open_remote, tracked_values
from mvc.repo import Repo
from mvc.storage import LocalStorage
from mvc.storage.base import StorageBase
from mvc.store import ObjectStore, object_key

# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture(params=["path", "file", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def remote(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[str, list[str]]]:
    """A remote URL of each kind and the CLI options to add it with."""
    kind = request.param
    if kind == "path":  # another working store
        other = tmp_path / "other"
        Repo.init(str(other))
        yield str(other), []
    elif kind == "file":
        yield f"file://{tmp_path}/remote-store", []
    elif kind == "memory":
        name = f"mvc-remote-{secrets.token_hex(6)}"
        yield f"memory://{name}/store", []
        import fsspec

        fs = fsspec.filesystem("memory")
        if fs.exists(f"/{name}"):
            fs.rm(f"/{name}", recursive=True)
    else:
        s3 = request.getfixturevalue("s3_url")
        yield s3.url, ["-o", f"endpoint_url={s3.options['endpoint_url']}"]


def remote_refs(repo: Repo, name: str = "origin") -> RefStore:
    """The remote's refs, as the store's current configuration names it."""
    return open_remote(Repo(repo.root), name).refs


def commit(cli: Any, make_model: Any, seed: int, folder: str = "models/bert", **kw: Any) -> str:
    make_model(folder, seed=seed, **kw)
    return cli("commit", folder, "-m", f"seed {seed}").stdout.strip()


def files_of(folder: Any) -> dict[str, bytes]:
    out = {}
    for base, _dirs, names in os.walk(folder):
        for name in names:
            full = os.path.join(base, name)
            with open(full, "rb") as handle:
                out[os.path.relpath(full, folder)] = handle.read()
    return out


def data_chunks(repo: Repo, version: str) -> set[str]:
    """Tensor-data chunks of a version (every chunk but safetensors headers and small files)."""
    objects = repo.objects
    found = set()
    for entry in objects.get_tree(objects.get_version(version).tree).files.values():
        manifest = objects.manifest_of(entry)
        if manifest.kind == "safetensors":
            found.update(c.id for c in manifest.chunks[1:])
        elif manifest.size > 64 * 1024:
            found.update(c.id for c in manifest.chunks)
    return found


class Faulty(StorageBase):
    """A storage that fails (or runs ``fault``) once more than ``limit`` objects were written or
    read: an interrupted transfer, injected."""

    def __init__(self, inner: Any, *, op: str, limit: int, fault: Any = None) -> None:
        self.inner = inner
        self.op = op
        self.limit = limit
        self.count = 0
        self.lock = threading.Lock()
        self.fault = fault

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def batching(self) -> Any:  # batches still write through ``write`` below
        return self.inner.batching()

    def _tick(self, op: str, key: str) -> None:
        if op != self.op or not key.startswith("objects/"):
            return
        with self.lock:
            self.count += 1
            if self.count > self.limit:
                if self.fault:
                    self.fault()
                raise RemoteError(f"injected failure at {key}")

    def write(self, key: str, parts: Any) -> None:
        self._tick("write", key)
        self.inner.write(key, parts)

    def read(self, key: str) -> bytes:
        self._tick("read", key)
        return self.inner.read(key)


def wrap_remote(monkeypatch: pytest.MonkeyPatch, wrapper: Any) -> None:
    import mvc.remotes as remote_module  # where remotes are opened

    real = remote_module.open_storage
    monkeypatch.setattr(
        remote_module, "open_storage", lambda url, options=None: wrapper(real(url, options))
    )


# --- round trips ----------------------------------------------------------------------------------


def test_push_clone_pull_round_trip(store, cli, make_model, remote, tmp_path) -> None:
    url, options = remote
    v1 = commit(cli, make_model, 0)
    cli("tag", "bert", "v1.0.0")
    v2 = commit(cli, make_model, 1)
    cli("remote", "add", "origin", url, *options)
    pushed = cli("push", "origin", "bert", "--json").json()
    assert {(r["kind"], r["name"], r["status"]) for r in pushed["refs"]} == {
        ("tag", "v1.0.0", "created"),
        ("branch", "main", "created"),
    }
    assert pushed["transfer"]["objects_sent"] > 0
    again = cli("push", "origin", "bert", "--json").json()
    assert again["transfer"]["objects_sent"] == 0
    assert {r["status"] for r in again["refs"]} == {"up-to-date"}

    clone_dir = tmp_path / "clone"
    cloned = cli("clone", url, clone_dir, "--checkout", *options, "--json").json()
    assert cloned["checked_out"] == ["bert"]
    assert files_of(clone_dir / "bert") == files_of(store.abspath("models/bert"))
    log = [e["id"] for e in cli("-C", clone_dir, "log", "bert", "--json").json()]
    assert log == [v2, v1]
    assert cli("-C", clone_dir, "fsck", "--json").json()["ok"]

    # A new version upstream (one file gone): pull fast-forwards the clone and updates its
    # clean folder, removing that file too.
    make_model("models/bert", seed=2)
    os.remove(store.abspath("models/bert/tokenizer.json"))
    v3 = cli("commit", "models/bert", "-m", "v3").stdout.strip()
    cli("push", "origin", "bert@main")
    pulled = cli("-C", clone_dir, "pull", "origin", "bert", "--json").json()
    changes = {r["name"]: (r["status"], r["new"]) for r in pulled["refs"]}
    assert changes == {"main": ("fast-forward", v3), "v1.0.0": ("up-to-date", v1)}
    assert pulled["updated_folders"] == ["bert"]
    assert files_of(clone_dir / "bert") == files_of(store.abspath("models/bert"))
    assert cli("-C", clone_dir, "status", "--json").json()[0]["clean"]
    entries = remote_refs(store).entries(branch("bert", "main"))
    assert [(e.old, e.new) for e in entries] == [(None, v2), (v2, v3)]


def test_two_working_stores_share_through_a_path(store, cli, make_model, tmp_path) -> None:
    other = Repo.init(str(tmp_path / "other"))
    v1 = commit(cli, make_model, 0)
    cli("remote", "add", "team", tmp_path / "other")
    cli("push", "team", "bert")
    # The other store sees bert as its own model, with every object it needs.
    assert Repo(other.root).refs.get(branch("bert", "main")) == v1
    assert cli("-C", tmp_path / "other", "fsck", "--json").json()["ok"]
    assert not os.path.exists(tmp_path / "other" / "objects")  # written inside other/.mvc


def test_partial_pull_transfers_only_that_version(store, cli, make_model, tmp_path) -> None:
    versions = []
    for seed in range(3):
        versions.append(commit(cli, make_model, seed))
        cli("tag", "bert", f"v1.{seed}.0")
    cli("remote", "add", "origin", f"file://{tmp_path}/remote")
    cli("push", "origin", "bert")

    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{tmp_path}/remote")
    pulled = cli("-C", fresh, "pull", "origin", "bert@v1.1.0", "--json").json()
    assert [(r["name"], r["status"]) for r in pulled["refs"]] == [("v1.1.0", "created")]
    local = Repo(str(fresh))
    present = set(local.objects.iter_ids())
    wanted = data_chunks(store, versions[1])
    others = (data_chunks(store, versions[0]) | data_chunks(store, versions[2])) - wanted
    assert wanted <= present
    assert not (others & present)  # no other version's tensor data came along
    sent_data = sum(store.objects.storage.size(object_key(c)) for c in wanted)
    assert pulled["transfer"]["bytes_sent"] < sent_data + 64 * 1024  # data + small metadata

    # History came as metadata: log works; fsck knows what the remote still owes.
    assert [e["id"] for e in cli("-C", fresh, "log", "bert@v1.1.0", "--json").json()] == [
        versions[1],
        versions[0],
    ]
    report = cli("-C", fresh, "fsck", "--json").json()
    assert report["ok"] and report["promised"]
    assert all("expected from remote origin" in p["detail"] for p in report["promised"])


def test_fetch_brings_metadata_and_checkout_fetches_data_on_demand(
    store, cli, make_model, tmp_path
) -> None:
    v1 = commit(cli, make_model, 0)
    v2 = commit(cli, make_model, 1)
    cli("remote", "add", "origin", f"file://{tmp_path}/remote")
    cli("push", "origin", "bert")

    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{tmp_path}/remote")
    fetched = cli("-C", fresh, "fetch", "origin", "--json").json()
    assert [(r["name"], r["status"], r["new"]) for r in fetched["refs"]] == [
        ("main", "created", v2)
    ]
    local = Repo(str(fresh))
    assert not (data_chunks(store, v2) & set(local.objects.iter_ids()))
    assert local.refs.list_refs() == []  # tracking refs are not local refs
    shown = cli("-C", fresh, "show", f"bert@{v2[:12]}", "--json").json()
    assert shown["id"] == v2 and shown["parents"] == [v1]
    shown_refs = cli("-C", fresh, "remote", "show", "origin", "--json").json()["refs"]
    assert [(r["name"], r["version"]) for r in shown_refs] == [("main", v2)]

    # gc keeps what remote-tracking refs reach; fsck reports missing data as promised.
    cli("-C", fresh, "gc", "--grace", "0s")
    assert local.objects.has(v1) and local.objects.has(v2)
    report = cli("-C", fresh, "fsck", "--json").json()
    assert report["ok"] and report["promised"] and report["dangling"] == 0

    out = tmp_path / "v2"
    cli("-C", fresh, "checkout", f"bert@{v2[:12]}", "--to", out)
    assert files_of(out) == files_of(store.abspath("models/bert"))
    assert data_chunks(store, v2) <= set(local.objects.iter_ids())


def test_remote_removal_forgets_tracking_refs(store, cli, make_model, tmp_path) -> None:
    commit(cli, make_model, 0)
    cli("remote", "add", "origin", f"file://{tmp_path}/remote")
    cli("push", "origin", "bert")
    assert tracked_values(store, "origin")
    cli("remote", "remove", "origin")
    assert cli("remote", "list", "--json").json() == []
    assert list(store.storage.walk("remotes")) == []


# --- interrupted transfers resume ---------------------------------------------------------------


def _many_chunks(make_model: Any, folder: str, seed: int) -> None:
    extra = {f"shard-{i}.bin": os.urandom(100_000 + i) for i in range(12)}
    make_model(folder, seed=seed, extra=extra)


def test_interrupted_push_resumes_with_only_what_is_missing(
    store, cli, make_model, tmp_path, monkeypatch
) -> None:
    # Durable after every object, so the test can count exactly what a rerun still sends.
    monkeypatch.setenv("MVC_TRANSFER_FLUSH_BYTES", "1")
    _many_chunks(make_model, "models/bert", 0)
    version = cli("commit", "models/bert", "-m", "big").stdout.strip()
    url = f"file://{tmp_path}/remote"
    cli("remote", "add", "origin", url)
    total = len(list(store.objects.iter_ids()))

    with monkeypatch.context() as patch:
        wrap_remote(patch, lambda inner: Faulty(inner, op="write", limit=7))
        failed = cli("push", "origin", "bert", "--jobs", "2", expect=1)
    assert "injected failure" in failed.stderr
    remote_objects = ObjectStore(LocalStorage(f"{tmp_path}/remote"))
    landed = list(remote_objects.iter_ids())
    assert 1 <= len(landed) < total
    for oid in landed:  # whatever landed is whole and verified
        remote_objects.get_bytes(oid)
    assert remote_refs(store).get(branch("bert", "main")) is None  # no ref moved

    resumed = cli("push", "origin", "bert", "--json").json()
    assert resumed["transfer"]["objects_sent"] == total - len(landed)
    assert remote_refs(store).get(branch("bert", "main")) == version


def test_interrupted_pull_resumes_with_only_what_is_missing(
    store, cli, make_model, tmp_path, monkeypatch
) -> None:
    # Durable after every object, so the test can count exactly what a rerun still sends.
    monkeypatch.setenv("MVC_TRANSFER_FLUSH_BYTES", "1")
    _many_chunks(make_model, "models/bert", 0)
    cli("commit", "models/bert", "-m", "big")
    url = f"file://{tmp_path}/remote"
    cli("remote", "add", "origin", url)
    cli("push", "origin", "bert")
    total = len(list(store.objects.iter_ids()))

    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", url)
    with monkeypatch.context() as patch:
        # Planning reads the few metadata objects (one-chunk files have none); the failure
        # comes while chunks arrive.
        wrap_remote(patch, lambda inner: Faulty(inner, op="read", limit=12))
        cli("-C", fresh, "pull", "origin", "bert", "--jobs", "2", expect=1)
    local = Repo(str(fresh))
    landed = list(local.objects.iter_ids())
    assert 1 <= len(landed) < total
    assert local.refs.list_refs() == []

    resumed = cli("-C", fresh, "pull", "origin", "bert", "--json").json()
    assert resumed["transfer"]["objects_sent"] == total - len(landed)
    report = cli("-C", fresh, "fsck", "--json").json()
    assert report["ok"] and report["promised"] == []


def test_an_interrupted_clone_with_checkout_hints_a_resume_that_also_checks_out(
    store, cli, make_model, tmp_path, monkeypatch
) -> None:
    _many_chunks(make_model, "models/bert", 0)
    cli("commit", "models/bert", "-m", "big")
    url = f"file://{tmp_path}/remote"
    cli("remote", "add", "origin", url)
    cli("push", "origin", "bert")
    fresh = tmp_path / "fresh"
    faulty = Faulty(None, op="read", limit=12)  # one count across the clone's opens

    def wrap(inner: Any) -> Faulty:
        faulty.inner = inner
        return faulty

    with monkeypatch.context() as patch:
        wrap_remote(patch, wrap)  # metadata is read while fetching, chunks fail while pulling
        failed = cli("clone", url, fresh, "--checkout", "--jobs", "2", expect=1)
    hint = failed.stderr.splitlines()[-1]
    steps = [part.split("`")[1] for part in hint.split("; ")[-1].split(", then ")]
    assert steps == [
        f"mvc -C {fresh} pull origin --all",
        f"mvc -C {fresh} checkout bert --to bert --bind",
    ]
    for step in steps:
        cli(*step.split()[1:])
    assert (fresh / "bert" / "model.safetensors").read_bytes() == (
        tmp_path / "work" / "models" / "bert" / "model.safetensors"
    ).read_bytes()
    assert cli("-C", fresh, "status").stdout == "bert (bert, on main): clean\n"


KILLING_MVC = """
import os, signal, sys, threading
import mvc.storage.remote as remote
from mvc.storage.base import StorageBase

real = remote.open_storage
limit, op = int(os.environ["KILL_AFTER"]), os.environ["KILL_ON"]
count, lock = [0], threading.Lock()

class Killing(StorageBase):  # no capability forwarded: every read and write goes through it
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def batching(self):  # batches still write through ``write`` below
        return self.inner.batching()
    def _tick(self, kind, key):
        if kind == op and key.startswith("objects/"):
            with lock:
                count[0] += 1
                if count[0] > limit:
                    os.kill(os.getpid(), signal.SIGKILL)
    def write(self, key, parts):
        self._tick("write", key)
        return self.inner.write(key, parts)
    def read(self, key):
        self._tick("read", key)
        return self.inner.read(key)

remote.open_storage = lambda url, options=None: Killing(real(url, options))
from mvc.cli.main import app
app(sys.argv[1:], prog_name="mvc")
"""


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_killed_transfer_resumes(store, cli, make_model, tmp_path, direction, monkeypatch) -> None:
    """A process SIGKILLed half-way leaves only whole objects; the rerun sends the rest."""
    monkeypatch.setenv("MVC_TRANSFER_FLUSH_BYTES", "1")  # durable after every object
    _many_chunks(make_model, "models/bert", 3)
    cli("commit", "models/bert", "-m", "big")
    url = f"file://{tmp_path}/remote"
    cli("remote", "add", "origin", url)
    total = len(list(store.objects.iter_ids()))
    if direction == "push":
        where, target = store.root, ObjectStore(LocalStorage(f"{tmp_path}/remote"))
    else:
        cli("push", "origin", "bert")
        where = str(tmp_path / "fresh")
        cli("init", where)
        cli("-C", where, "remote", "add", "origin", url)
        target = Repo(where).objects
    # A pull first reads the few metadata objects, then the chunks: kill among the chunks.
    after, on = ("6", "write") if direction == "push" else ("12", "read")
    env = {**os.environ, "KILL_AFTER": after, "KILL_ON": on}
    killed = subprocess.run(
        [sys.executable, "-c", KILLING_MVC, direction, "origin", "bert", "--jobs", "2"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    landed = list(target.iter_ids())
    assert 1 <= len(landed) < total
    for oid in landed:
        target.get_bytes(oid)  # complete and verified, never a torn file
    resumed = cli("-C", where, direction, "origin", "bert", "--json").json()
    assert resumed["transfer"]["objects_sent"] == total - len(landed)
    assert cli("-C", where if direction == "pull" else store.root, "fsck", "--json").json()["ok"]


# --- a remote that serves wrong bytes -------------------------------------------------------------


@pytest.mark.parametrize("what", ["chunk", "tree"])
def test_tampered_remote_object_is_named_and_no_ref_moves(
    store, cli, make_model, tmp_path, what
) -> None:
    version = commit(cli, make_model, 0)
    cli("remote", "add", "origin", f"file://{tmp_path}/remote")
    cli("push", "origin", "bert")
    tree = store.objects.get_version(version).tree
    victim = sorted(data_chunks(store, version))[0] if what == "chunk" else tree
    path = f"{tmp_path}/remote/{object_key(victim)}"
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    data[-1] ^= 0x01
    os.chmod(path, 0o644)
    with open(path, "wb") as handle:
        handle.write(bytes(data))

    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{tmp_path}/remote")
    failed = cli("-C", fresh, "pull", "origin", "bert@main", expect=12)
    assert "remote origin" in failed.stderr and victim in failed.stderr.replace("\n", "")
    local = Repo(str(fresh))
    assert local.refs.list_refs(live=False) == []
    assert tracked_values(local, "origin") == {}
    assert not local.objects.has(victim)


@pytest.mark.slow
@pytest.mark.s3
def test_tampered_s3_object_is_refused(store, cli, make_model, s3_url, s3_client, tmp_path) -> None:
    version = commit(cli, make_model, 0)
    cli("remote", "add", "origin", s3_url.url)
    cli("push", "origin", "bert")
    victim = sorted(data_chunks(store, version))[0]
    key = f"store/{object_key(victim)}"
    body = bytearray(s3_client.get_object(Bucket=s3_url.bucket, Key=key)["Body"].read())
    body[-1] ^= 0x80
    s3_client.put_object(Bucket=s3_url.bucket, Key=key, Body=bytes(body))
    failed = cli("clone", s3_url.url, tmp_path / "clone", expect=12)
    assert victim[:12] in failed.stderr and "remote origin" in failed.stderr
    assert Repo(str(tmp_path / "clone")).refs.list_refs(live=False) == []


# --- hostile remotes ------------------------------------------------------------------------------


def _raw_entry(new: str, seq: int = 1) -> bytes:
    return encode_canonical(
        {"seq": seq, "old": None, "new": new, "who": "x", "when": "2026-01-01T00:00:00Z", "why": ""}
    )


def _raw_put(root: Any, key: str, data: bytes) -> None:
    path = os.path.join(str(root), *key.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def test_hostile_ref_names_are_never_followed(store, cli, make_model, tmp_path) -> None:
    version = commit(cli, make_model, 0)
    root = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{root}")
    cli("push", "origin", "bert")
    for key in (
        "refs/heads/bert/..%2F..%2F..%2Fescaped/0000000001",
        "refs/heads/%2E%2E/main/0000000001",
        "refs/heads/bert/%2Fabs/0000000001",
        "refs/tags/bert/.hidden/0000000001",
        "refs/heads/..%2F..%2Fevil/x/0000000001",
    ):
        _raw_put(root, key, _raw_entry(version))
    fetched = cli("fetch", "origin", "--json").json()
    assert [(r["model"], r["name"]) for r in fetched["refs"]] == []  # main was tracked by push
    assert [str(r) for r in tracked_values(store, "origin")] == ["bert branch main"]
    outside_remote = [
        os.path.relpath(os.path.join(b, n), tmp_path)
        for b, _d, ns in os.walk(tmp_path)
        for n in ns
        if not os.path.relpath(b, tmp_path).startswith("remote")
    ]
    assert not [p for p in outside_remote if "escaped" in p or "evil" in p or "abs" in p]
    cli("pull", "origin", "--all")
    assert [str(r) for r in store.refs.list_refs()] == ["bert branch main"]


def test_hostile_ref_values_and_tree_paths_are_refused(store, cli, make_model, tmp_path) -> None:
    version = commit(cli, make_model, 0)
    root = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{root}")
    cli("push", "origin", "bert")

    # A log entry whose value is a path, not an id.
    _raw_put(root, "refs/heads/bert/evil/0000000001", _raw_entry("../../../../etc/passwd"))
    failed = cli("fetch", "origin", expect=12)
    assert "remote origin" in failed.stderr
    os.remove(os.path.join(root, "refs/heads/bert/evil/0000000001"))

    # A version whose tree writes outside any folder; its ids are honest hashes.
    good_tree = store.objects.get_meta(store.objects.get_version(version).tree)
    entry = next(iter(good_tree["files"].values()))
    tree = {**good_tree, "files": {"../../outside.txt": entry}}
    tree_id = _put_meta(root, tree)
    version_value = {**store.objects.get_meta(version), "tree": tree_id, "parents": []}
    evil = _put_meta(root, version_value)
    _raw_put(root, "refs/heads/bert/evil/0000000001", _raw_entry(evil))

    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{root}")
    failed = cli("-C", fresh, "pull", "origin", "bert@evil", expect=12)
    assert "unsafe path" in failed.stderr and tree_id[:12] in failed.stderr
    assert not Repo(str(fresh)).objects.has(tree_id)
    assert not any("outside" in n for _b, _d, ns in os.walk(tmp_path) for n in ns)
    assert Repo(str(fresh)).refs.list_refs(live=False) == []


def _put_meta(root: Any, value: dict) -> str:
    from mvc import codec

    data = encode_object(value)
    oid = hash_bytes(data)
    _raw_put(root, object_key(oid), b"".join(codec.encode(data, compress=True, meta=True)))
    return oid


def test_delta_cycles_on_a_remote_are_refused(store, tmp_path) -> None:
    from mvc import codec
    from mvc.transfer import PULL, transfer

    source = ObjectStore(LocalStorage(str(tmp_path / "src")))
    a, b = os.urandom(4096), os.urandom(4096)
    ida, idb = hash_bytes(a), hash_bytes(b)
    for oid, data, base_id, base in ((ida, a, idb, b), (idb, b, ida, a)):
        header = {"c": "delta", "n": 4096, "base": base_id, "d": 1, "i": {"c": "raw", "n": 4096}}
        xored = bytes(x ^ y for x, y in zip(data, base, strict=True))
        source.storage.write(object_key(oid), codec._frame(header, [xored]))
    manifest = {"type": "file", "format": 1, "size": 4096, "b3": ida, "kind": "blob"}
    manifest_id = source.put_meta({**manifest, "chunks": [[ida, 4096]]})
    with pytest.raises(CorruptObject, match="delta chain loops"):
        transfer(source, store.objects, [manifest_id], PULL, source_label="remote evil")
    assert not store.objects.has(ida) and not store.objects.has(idb)


# --- many writers ---------------------------------------------------------------------------------


def _clone_and_commit(cli: Any, make_model: Any, url: str, folder: Any, seed: int) -> str:
    cli("clone", url, folder, "--checkout")
    make_model(f"{folder}/bert", seed=seed)
    return cli("-C", folder, "commit", "bert", "-m", f"from {seed}").stdout.strip()


def test_racing_pushers_have_one_winner_and_lose_no_update(
    store, cli, make_model, tmp_path, monkeypatch
) -> None:
    """Both pushers read the same remote value and pass the ancestry check; at the
    compare-and-swap exactly one wins and the other is told to pull and retry."""
    commit(cli, make_model, 0)
    url = f"file://{tmp_path}/remote"
    cli("remote", "add", "origin", url)
    cli("push", "origin", "bert")
    start = remote_refs(store).get(branch("bert", "main"))
    candidates = [
        _clone_and_commit(cli, make_model, url, tmp_path / f"c{i}", 10 + i) for i in range(2)
    ]
    barrier = threading.Barrier(2, timeout=20)

    class AtTheLine(StorageBase):
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def batching(self) -> Any:
            return self.inner.batching()

        def create_exclusive(self, key: str, data: bytes) -> bool:
            if key.startswith("refs/"):
                barrier.wait()
            return self.inner.create_exclusive(key, data)

    wrap_remote(monkeypatch, AtTheLine)
    outcomes: list[Any] = [None, None]

    def push(i: int) -> None:
        try:
            outcomes[i] = remotes.push(Repo(str(tmp_path / f"c{i}")), "origin", "bert@main")
        except RefConflict as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, o in enumerate(outcomes) if not isinstance(o, RefConflict)]
    assert len(winners) == 1
    loser = outcomes[1 - winners[0]]
    assert "remote ref moved; pull and retry" in str(loser) and loser.exit_code == 11
    entries = remote_refs(store).entries(branch("bert", "main"))
    assert [(e.old, e.new) for e in entries][-1] == (start, candidates[winners[0]])


@pytest.mark.slow
@pytest.mark.s3
def test_concurrent_push_processes_on_s3_one_winner_per_step(
    store, cli, make_model, s3_url, tmp_path
) -> None:
    commit(cli, make_model, 0)
    cli("remote", "add", "origin", s3_url.url)
    cli("push", "origin", "bert")
    pushers = [tmp_path / f"c{i}" for i in range(3)]
    for folder in pushers:
        cli("clone", s3_url.url, folder, "--checkout")
    winners: list[str] = []
    step = 0
    while len(pushers) > 1:  # a 3-way race, then a 2-way race between the losers
        step += 1
        for i, folder in enumerate(pushers):
            cli("-C", folder, "pull", "origin", "bert", "--force")
            make_model(f"{folder}/bert", seed=100 * step + i)
            cli("-C", folder, "commit", "bert", "-m", f"step {step}")
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "mvc", "push", "origin", "bert@main"],
                cwd=folder,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for folder in pushers
        ]
        outputs = [p.communicate(timeout=60) for p in procs]  # reads and closes both pipes
        results = [(p.returncode, err) for p, (_out, err) in zip(procs, outputs, strict=True)]
        codes = [code for code, _ in results]
        assert codes.count(0) == 1, results
        assert all(code == 11 and "remote ref moved" in err for code, err in results if code)
        winner = pushers.pop(codes.index(0))
        winners.append(Repo(str(winner)).refs.get(branch("bert", "main")) or "")
    entries = remote_refs(store).entries(branch("bert", "main"))
    assert [e.new for e in entries[1:]] == winners  # every step's winner, in order
    for before, after in zip(entries, entries[1:], strict=False):
        assert after.old == before.new  # no update was lost


def _register_plain_filesystem() -> None:
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    class PlainFileSystem(LocalFileSystem):
        """A backend whose create-if-absent is check-then-write (like many fsspec backends)."""

        protocol = ("plainfs",)

        @classmethod
        def _strip_protocol(cls, path: str) -> str:
            return super()._strip_protocol(path.replace("plainfs://", "file://", 1))

    fsspec.register_implementation("plainfs", PlainFileSystem, clobber=True)


def test_backend_without_conditional_create_needs_single_writer(
    store, cli, make_model, tmp_path
) -> None:
    _register_plain_filesystem()
    version = commit(cli, make_model, 0)
    added = cli("remote", "add", "plain", f"plainfs://{tmp_path}/plain")
    assert "--single-writer" in added.stderr
    assert cli("remote", "list", "--json").json()[0]["atomic_create"] is False
    refused = cli("push", "plain", "bert", expect=2)
    assert "create-if-absent" in refused.stderr and "--single-writer" in refused.stderr
    pushed = cli("push", "plain", "bert", "--single-writer", "--json").json()
    assert pushed["single_writer"] is True
    entry = remote_refs(store, "plain").latest(branch("bert", "main"))
    assert entry is not None and entry.new == version and "--single-writer" in entry.why


# --- refs: forward only, tags never move -----------------------------------------------------------


def test_push_refuses_to_rewind_and_force_is_recorded(store, cli, make_model, tmp_path) -> None:
    v1 = commit(cli, make_model, 0)
    v2 = commit(cli, make_model, 1)
    cli("remote", "add", "origin", f"file://{tmp_path}/remote")
    cli("push", "origin", "bert")
    cli("branch", "bert", "old", v1)
    # Move local main back to v1 by pushing the 'old' branch's value under main's name:
    store.refs.set_if_equals(branch("bert", "main"), v2, v1, "test rewinds main")
    refused = cli("push", "origin", "bert@main", expect=11)
    assert "remote ref moved; pull and retry" in refused.stderr
    assert remote_refs(store).get(branch("bert", "main")) == v2
    forced = cli("push", "origin", "bert@main", "--force", "--json").json()
    assert [r["status"] for r in forced["refs"]] == ["forced"]
    entry = remote_refs(store).latest(branch("bert", "main"))
    assert entry is not None and entry.new == v1 and "--force" in entry.why


def test_tags_never_move_on_either_side(store, cli, make_model, tmp_path) -> None:
    v1 = commit(cli, make_model, 0)
    url = f"file://{tmp_path}/remote"
    cli("remote", "add", "origin", url)
    cli("push", "origin", "bert")
    other = tmp_path / "other"
    cli("clone", url, other, "--checkout")

    # Someone else's tag of the same name on the remote: pushing ours is refused.
    cli("tag", "bert", "v1.0.0")
    remote_refs(store).set_if_equals(tag("bert", "v1.0.0"), None, hash_bytes(b"x"), "other")
    refused = cli("push", "origin", "bert@v1.0.0", expect=11)
    assert "tags never move" in refused.stderr
    assert remote_refs(store).get(tag("bert", "v1.0.0")) == hash_bytes(b"x")

    # A local tag that differs from the remote's is never moved by a pull either.
    v2 = commit(cli, make_model, 1)
    cli("tag", "bert", "v2.0.0")
    cli("push", "origin", "bert@v2.0.0")
    cli("-C", other, "tag", "bert", "v2.0.0")  # here: names v1
    refused = cli("-C", other, "pull", "origin", "bert@v2.0.0", expect=11)
    assert "tags never move" in refused.stderr
    assert Repo(str(other)).refs.get(tag("bert", "v2.0.0")) == v1 != v2


def test_pull_refuses_diverged_branches_and_dirty_folders(store, cli, make_model, tmp_path) -> None:
    commit(cli, make_model, 0)
    url = f"file://{tmp_path}/remote"
    cli("remote", "add", "origin", url)
    cli("push", "origin", "bert")
    other = tmp_path / "other"
    cli("clone", url, other, "--checkout")
    commit(cli, make_model, 1)
    cli("push", "origin", "bert")

    (other / "bert" / "config.json").write_text("{}\n")  # an uncommitted change
    dirty = cli("-C", other, "pull", "origin", "bert@main", expect=1)
    assert "uncommitted changes" in dirty.stderr
    cli("-C", other, "commit", "bert", "-m", "local work")  # now diverged
    diverged = cli("-C", other, "pull", "origin", "bert@main", expect=11)
    assert "diverged" in diverged.stderr


# --- CLI: remote management, credentials, errors ---------------------------------------------------


def test_remote_commands(store, cli, tmp_path) -> None:
    url = f"memory://mvc-cli-{secrets.token_hex(4)}/store"
    cli("remote", "add", "origin", url, "-o", "anon=false")
    assert cli("remote").stdout == "origin\n"
    verbose = cli("remote", "-v").stdout
    assert url in verbose and "atomic" in verbose and "anon=false" in verbose
    cli("remote", "set-option", "origin", "profile", "ml")
    listed = cli("remote", "list", "--json").json()
    assert listed == [
        {
            "name": "origin",
            "url": url,
            "options": {"anon": "false", "profile": "ml"},
            "atomic_create": None,  # probed again before the next push
        }
    ]
    cli("remote", "set-option", "origin", "profile", "--unset")
    assert cli("remote", "list", "--json").json()[0]["options"] == {"anon": "false"}
    cli("remote", "add", "origin", url, expect=2)
    cli("remote", "add", "bad/name", url, expect=2)
    cli("remote", "remove", "origin")
    assert cli("remote", "list").stdout == ""
    assert cli("remote", "remove", "origin", expect=1).stderr.count("no remote named") == 1
    assert "remote" not in json.dumps(store.store_config())


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "key=AKIAEXAMPLE"],
        ["-o", "secret=s3cr3t"],
        ["-o", "aws_secret_access_key=s3cr3t"],
        ["-o", "token=s3cr3t"],
        ["-o", "account_key=s3cr3t"],
        ["-o", "password=s3cr3t"],
        ["-o", "credentials=s3cr3t"],
    ],
)
def test_credentials_are_never_stored(store, cli, args) -> None:
    refused = cli("remote", "add", "origin", "s3://bucket/store", *args, expect=2)
    assert "credential" in refused.stderr
    assert "s3cr3t" not in json.dumps(store.store_config())
    assert "AKIAEXAMPLE" not in json.dumps(store.store_config())


@pytest.mark.parametrize(
    "url",
    ["s3://AKIAEXAMPLE:s3cr3t@bucket/store", "az://c/store?sig=s3cr3t&sv=1", "gs://b/x#s3cr3t"],
)
def test_urls_carrying_secrets_are_refused(store, cli, url) -> None:
    refused = cli("remote", "add", "origin", url, expect=2)
    assert "s3cr3t" not in refused.stderr + refused.stdout
    assert "s3cr3t" not in json.dumps(store.store_config())


def test_missing_backend_gives_the_install_hint(store, cli, monkeypatch) -> None:
    from fsspec.registry import _registry

    monkeypatch.delitem(_registry, "gs", raising=False)
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    failed = cli("remote", "add", "origin", "gs://bucket/store", expect=1)
    assert "pip install 'mvc[gcs]'" in failed.stderr


def test_cli_usage_and_not_found_errors(store, cli, make_model, tmp_path) -> None:
    commit(cli, make_model, 0)
    cli("push", "nowhere", "bert", expect=1)
    cli("remote", "add", "origin", f"file://{tmp_path}/remote")
    assert "--all" in cli("push", "origin", expect=2).stderr
    cli("push", "origin", "bert", "--all", expect=2)
    cli("push", "origin", "nosuch", expect=1)
    cli("push", "origin", "bert@main~1", expect=2)
    cli("pull", "origin", "bert", expect=1)  # the remote is empty
    cli("push", "origin", "bert", "--jobs", "0", expect=2)
    # a remote folder holding something else is not taken over
    os.makedirs(tmp_path / "busy")
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert "neither an mvc store nor empty" in (
        cli("remote", "add", "busy", tmp_path / "busy", expect=2).stderr
    )
    # ... nor when it was empty when added and filled with something else since
    (tmp_path / "busy" / "notes.txt").unlink()
    cli("remote", "add", "busy", tmp_path / "busy")
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert "neither an mvc store nor empty" in cli("push", "busy", "bert", expect=2).stderr


def test_push_and_pull_human_output(store, cli, make_model, tmp_path) -> None:
    commit(cli, make_model, 0)
    cli("remote", "add", "origin", f"file://{tmp_path}/remote")
    pushed = cli("push", "origin", "bert")
    assert pushed.stdout == ""  # summaries are for people: stderr
    assert "sent" in pushed.stderr and "bert branch main" in pushed.stderr
    assert "up to date" in cli("push", "origin", "--all").stderr
    fetched = cli("fetch", "origin")
    assert fetched.stdout == "" and "fetched 0 objects" in fetched.stderr
    shown = cli("remote", "show", "origin").stdout.split("\t")
    assert shown[:3] == ["bert", "branch", "main"]


# --- channels and progress ------------------------------------------------------------------------


def _record(model: str, version: str, previous: str | None) -> dict:
    return {
        "type": "deployment",
        "format": 1,
        "model": model,
        "channel": "prod",
        "arms": [{"role": "stable", "version": version, "weight": 100}],
        "previous": previous,
        "refs": [version],
        **{"restores": None, "action": "set", "state": "stable"},
        **{"who": "Ada", "when": "2026-03-01T12:00:00Z", "why": "deploy"},
    }


def test_channels_travel_with_the_versions_they_serve(store, cli, make_model, tmp_path) -> None:
    from mvc.refnames import channel
    from mvc.specs import resolve

    v1 = commit(cli, make_model, 0)
    v2 = commit(cli, make_model, 1)
    prod = channel("bert", "prod")
    first = store.objects.put_meta(_record("bert", v1, None))
    store.refs.set_if_equals(prod, None, first, "deploy v1")
    url = f"file://{tmp_path}/remote"
    cli("remote", "add", "origin", url)
    cli("push", "origin", "bert")
    second = store.objects.put_meta(_record("bert", v2, first))
    store.refs.set_if_equals(prod, first, second, "deploy v2")
    pushed = cli("push", "origin", "bert@prod", "--json").json()
    assert [(r["kind"], r["status"]) for r in pushed["refs"]] == [("channel", "fast-forward")]

    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", url)
    cli("-C", fresh, "pull", "origin", "bert@prod")
    local = Repo(str(fresh))
    assert resolve(local, "bert@prod").version == v2
    assert data_chunks(store, v2) <= set(local.objects.iter_ids())
    assert not (data_chunks(store, v1) - data_chunks(store, v2)) & set(local.objects.iter_ids())
    assert local.objects.has(first)  # the record it replaced, for rollback
    out = tmp_path / "served"
    cli("-C", fresh, "checkout", "bert@prod", "--to", out)
    assert files_of(out) == files_of(store.abspath("models/bert"))


def test_transfer_reports_bytes_and_objects(store, cli, make_model, tmp_path) -> None:
    from mvc.transfer import PUSH, transfer

    version = commit(cli, make_model, 0)

    class Recorder:
        def __init__(self) -> None:
            self.total: int | None = None
            self.advanced = 0
            self.objects_seen: list[tuple[int, int]] = []

        def start(self, description: str, total: int | None) -> None:
            self.total = total

        def advance(self, amount: int) -> None:
            self.advanced += amount

        def finish(self) -> None:
            pass

        def objects(self, done: int, total: int) -> None:
            self.objects_seen.append((done, total))

    recorder = Recorder()
    dest = ObjectStore(LocalStorage(str(tmp_path / "dest")))
    result = transfer(store.objects, dest, [version], PUSH, jobs=3, progress=recorder)
    assert recorder.total == recorder.advanced > 0
    assert recorder.objects_seen[-1] == (result.objects_sent, result.objects_sent)
    assert result.objects_sent == len(list(store.objects.iter_ids())) == len(list(dest.iter_ids()))
    assert result.to_json().keys() == {
        "objects_sent",
        "bytes_sent",
        "chunks_sent",
        "objects_skipped",
        "duration_seconds",
    }
    again = transfer(store.objects, dest, [version], PUSH, trust_destination=True)
    assert (again.objects_sent, again.objects_skipped) == (0, 1)


def test_a_push_killed_inside_a_flush_round_leaves_nothing_visible(
    store, cli, make_model, tmp_path
) -> None:
    """With the default flush size, objects become visible together, children first, once
    they are durable: a push killed before that leaves the remote as it was."""
    _many_chunks(make_model, "models/bert", 3)
    cli("commit", "models/bert", "-m", "big")
    url = f"file://{tmp_path}/remote"
    cli("remote", "add", "origin", url)
    total = len(list(store.objects.iter_ids()))
    env = {**os.environ, "KILL_AFTER": "6", "KILL_ON": "write"}
    killed = subprocess.run(
        [sys.executable, "-c", KILLING_MVC, "push", "origin", "bert", "--jobs", "2"],
        cwd=store.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list(ObjectStore(LocalStorage(f"{tmp_path}/remote")).iter_ids()) == []
    resumed = cli("push", "origin", "bert", "--json").json()
    assert resumed["transfer"]["objects_sent"] == total
