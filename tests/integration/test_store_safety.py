"""The store under stress: concurrent commits, crashes, corruption, hostile input, gc, tags, config.

Crashes are real: a subprocess runs the real CLI with a hook (``MVC_TEST_HOOK``, read only by the
small wrapper script below, never by mvc) that ``os._exit``s at a chosen point.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mvc.canonical import encode_canonical
from mvc.refnames import branch
from mvc.storage import lock
from mvc.store import object_key

# A wrapper around the real entry point that dies (os._exit) or pauses at a chosen point.
HOOKED_MVC = textwrap.dedent(
    """
    import os, signal, sys, time

    hook = os.environ.get("MVC_TEST_HOOK", "")
    kind, _, arg = hook.partition(":")

    from mvc.storage.local import LocalStorage
    from mvc.refs import RefStore
    from mvc.repo import Repo
    from mvc.store import ObjectStore

    if kind in ("objects", "torn"):
        original_write = LocalStorage.write
        count = [0]

        def write(self, key, parts):
            if key.startswith("objects/"):
                count[0] += 1
                if count[0] > int(arg):
                    if kind == "torn":  # a temp file with half the bytes, never renamed
                        data = b"".join(bytes(p) for p in parts)
                        target = self.path(key)
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        with open(os.path.join(os.path.dirname(target), ".tmp-torn"), "wb") as f:
                            f.write(data[: len(data) // 2])
                    os._exit(77)
            return original_write(self, key, parts)

        LocalStorage.write = write

    if kind == "before-ref":
        RefStore.transaction = lambda *a, **k: os._exit(77)

    if kind == "after-ref":
        Repo.set_binding = lambda *a, **k: os._exit(77)

    if kind == "pause-before-ref":  # arg: a file to create once the objects are written
        original_transaction = RefStore.transaction

        def transaction(self, *a, **k):
            open(arg, "w").close()
            time.sleep(1.5)
            return original_transaction(self, *a, **k)

        RefStore.transaction = transaction

    if kind in ("checkout-kill", "checkout-sigint"):  # die while the 2nd file is being written
        original_iter = ObjectStore.iter_file
        files = [0]

        def iter_file(self, manifest, name="file"):
            files[0] += 1
            for index, piece in enumerate(original_iter(self, manifest, name)):
                if files[0] == int(arg) and index == 0:
                    if kind == "checkout-kill":
                        os._exit(77)
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(5)
                yield piece

        ObjectStore.iter_file = iter_file
        original_write_file = ObjectStore.write_file  # checkout's parallel path

        def write_file(self, manifest, fd, name="file", **kwargs):
            files[0] += 1
            if files[0] == int(arg):
                os.write(fd, b"half")  # the temp file holds some bytes
                if kind == "checkout-kill":
                    os._exit(77)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            return original_write_file(self, manifest, fd, name, **kwargs)

        ObjectStore.write_file = write_file

    if kind == "go":  # start together with the other writers: wait for the start file
        while not os.path.exists(arg):
            time.sleep(0.005)

    from mvc.cli.main import app

    app(sys.argv[1:], prog_name="mvc")
    """
)


@pytest.fixture
def hooked(tmp_path, mvc_env):
    """``hooked(hook, *args)`` runs mvc in a subprocess with a crash/pause hook."""
    script = tmp_path / "hooked_mvc.py"
    script.write_text(HOOKED_MVC)

    def start(hook: str, *args: str, cwd=None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            cwd=cwd or os.getcwd(),
            env={**os.environ, "MVC_TEST_HOOK": hook},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(hook: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
        proc = start(hook, *args, cwd=cwd)
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    run.start = start  # type: ignore[attr-defined]
    return run


def folder_bytes(folder) -> dict[str, bytes]:
    root = Path(folder)
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".mvc" not in p.parts
    }


def assert_reads_back(cli, spec: str, expected: dict[str, bytes], where) -> None:
    cli("checkout", spec, "--to", str(where))
    assert folder_bytes(where) == expected


def fsck_ok(cli) -> dict:
    report = cli("fsck", "--json").json()
    assert report["ok"], report
    return report


def chunk_ids(store, version_id: str, path: str) -> list[str]:
    tree = store.objects.get_tree(store.objects.get_version(version_id).tree)
    manifest = store.objects.manifest_of(tree.files[path])
    return [ref.id for ref in manifest.chunks]


# --- concurrency ------------------------------------------------------------------------------


def test_concurrent_commits_to_one_branch_lose_nothing(
    store, cli, make_model, hooked, tmp_path
) -> None:
    make_model("models/bert", seed=0)
    base = cli("commit", "models/bert", "-m", "base").stdout.strip()
    writers = 4
    for i in range(writers):
        make_model(f"runs/r{i}", seed=10 + i)
    go = tmp_path / "go"
    procs = [
        hooked.start(f"go:{go}", "commit", f"runs/r{i}", "--model", "bert", "-m", f"run {i}")
        for i in range(writers)
    ]
    time.sleep(0.3)
    go.touch()
    results = [(p, *p.communicate(timeout=60)) for p in procs]

    landed = []
    for proc, out, err in results:
        assert proc.returncode in (0, 11), err
        if proc.returncode == 0:
            landed.append(out.strip())
        else:
            assert "moved" in err and out == ""
    assert landed, "at least one writer must win"
    history = [e["id"] for e in cli("log", "bert", "--json").json()]
    assert history[-1] == base
    assert sorted(history[:-1]) == sorted(landed)  # every success is on the line, nothing lost
    for newer, older in zip(history, history[1:], strict=False):
        assert store.objects.get_version(newer).parents == (older,)
    fsck_ok(cli)


def test_a_commit_that_loses_the_race_fails_with_moved(store, cli, make_model, monkeypatch) -> None:
    """Deterministic version of the race: another commit lands while this one is snapshotting."""
    from mvc.ops import commit as commit_module

    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "base")
    make_model("runs/a", seed=1)
    make_model("runs/b", seed=2)
    real_snapshot = commit_module.snapshot
    sneaked = []

    def snapshot_after_a_rival(repo, target, **kwargs):
        if not sneaked:
            sneaked.append(None)
            sneaked[0] = cli("commit", "runs/b", "--model", "bert", "-m", "rival").stdout.strip()
        return real_snapshot(repo, target, **kwargs)

    monkeypatch.setattr(commit_module, "snapshot", snapshot_after_a_rival)
    result = cli("commit", "runs/a", "--model", "bert", "-m", "loser", expect=11)
    assert result.stdout == ""
    assert "moved" in result.stderr and "mvc log bert" in result.stderr
    assert cli("log", "bert", "--json").json()[0]["id"] == sneaked[0]
    fsck_ok(cli)


# --- crash safety -----------------------------------------------------------------------------

CRASH_POINTS = ["objects:0", "objects:3", "torn:2", "before-ref", "after-ref"]


@pytest.mark.parametrize("hook", CRASH_POINTS)
def test_a_killed_commit_leaves_the_store_consistent(
    store, cli, make_model, hooked, tmp_path, hook
) -> None:
    make_model("models/bert", seed=0)
    v1 = cli("commit", "models/bert", "-m", "v1").stdout.strip()
    v1_files = folder_bytes("models/bert")
    make_model("models/bert", seed=1, extra={"extra.txt": "new file"})
    v2_files = folder_bytes("models/bert")

    crashed = hooked(hook, "commit", "models/bert", "-m", "v2")
    assert crashed.returncode == 77, crashed.stderr

    fsck_ok(cli)
    history = [e["id"] for e in cli("log", "bert", "--json").json()]
    if hook == "after-ref":
        assert len(history) == 2 and history[1] == v1  # the ref moved before the crash
    else:
        assert history == [v1]
    assert_reads_back(cli, f"bert@id={v1}", v1_files, tmp_path / "v1")
    assert folder_bytes("models/bert") == v2_files  # the user's folder is untouched

    # running the command again finishes the job
    cli("commit", "models/bert", "-m", "v2 again", expect=0)
    fsck_ok(cli)
    assert_reads_back(cli, "bert@main", v2_files, tmp_path / "v2")
    assert cli("status", "--json").json()[0]["clean"]


def test_gc_never_runs_between_a_commits_objects_and_its_ref(
    store, cli, make_model, hooked, tmp_path
) -> None:
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "v1")
    make_model("models/bert", seed=1)
    marker = tmp_path / "objects-written"
    proc = hooked.start(f"pause-before-ref:{marker}", "commit", "models/bert", "-m", "v2")
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cli("gc", "--grace", "0s", "--json")  # waits for the commit's objects lock
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    fsck_ok(cli)
    assert cli("log", "bert", "--json").json()[0]["id"] == out.strip()
    assert_reads_back(cli, "bert", folder_bytes("models/bert"), tmp_path / "v2")


@pytest.mark.parametrize("how", ["checkout-sigint", "checkout-kill"])
def test_an_interrupted_checkout_leaves_the_folder_as_it_was(
    store, cli, make_model, hooked, how
) -> None:
    make_model("models/bert", seed=0, extra={"a.txt": "a0", "b.txt": "b0"})
    cli("commit", "models/bert", "-m", "v1")
    make_model("models/bert", seed=1, extra={"a.txt": "a1", "b.txt": "b1"})
    cli("commit", "models/bert", "-m", "v2")
    before = folder_bytes("models/bert")

    result = hooked(f"{how}:2", "checkout", "bert@main~1")
    assert result.returncode == (130 if how == "checkout-sigint" else 77), result.stderr
    assert folder_bytes("models/bert") == before or how == "checkout-kill"
    after = {k: v for k, v in folder_bytes("models/bert").items() if ".mvc-tmp-" not in k}
    assert after == before  # no file was replaced, half-written or removed
    state = cli("status", "--json").json()[0]
    assert state["clean"], state  # leftover temp files of a killed checkout are not content
    assert state["branch"] == "main"  # HEAD did not move
    cli("checkout", "bert@main~1")
    assert json.loads(Path("models/bert/config.json").read_text())["seed"] == 0


# --- corruption -------------------------------------------------------------------------------


def flip_byte(store, oid: str, where: float = 0.5) -> None:
    path = store.storage.local_path(object_key(oid))
    data = bytearray(Path(path).read_bytes())
    data[int(len(data) * where)] ^= 0x01
    os.chmod(path, 0o644)
    Path(path).write_bytes(bytes(data))


def test_a_flipped_byte_is_found_by_fsck_and_refused_by_checkout(
    store, cli, make_model, tmp_path
) -> None:
    make_model("models/bert", seed=0, extra={"deep/er/notes.txt": "z" * 1000})
    v1 = cli("commit", "models/bert", "-m", "v1").stdout.strip()
    make_model("models/bert", seed=1, extra={"deep/er/notes.txt": "z" * 1000})
    cli("commit", "models/bert", "-m", "v2")
    before = folder_bytes("models/bert")
    victim = max(
        chunk_ids(store, v1, "model.safetensors"), key=lambda c: store.storage.size(object_key(c))
    )
    flip_byte(store, victim)

    result = cli("fsck", expect=12)
    assert victim in result.stdout and "corrupt" in result.stdout
    report = cli("fsck", "--json", expect=12).json()
    assert not report["ok"]
    assert [p["object"] for p in report["problems"]] == [victim]

    # into a new folder: nothing is written, and trying again says the same (not "not empty")
    fresh = tmp_path / "fresh"
    for _ in range(2):
        result = cli("checkout", f"bert@id={v1}", "--to", str(fresh), expect=12)
        assert victim[:12] in result.stderr
        assert not fresh.exists() or not [p for p in fresh.rglob("*") if p.is_file()]
    # into the working folder: it stays as it was, HEAD stays on main
    cli("checkout", f"bert@id={v1}", expect=12)
    assert folder_bytes("models/bert") == before
    assert cli("status", "--json").json()[0]["branch"] == "main"
    # cat streams: what it wrote before the damaged chunk is right, and it stops there
    streamed = cli("cat", f"bert@id={v1}", "model.safetensors", expect=12).stdout_bytes
    make_model(tmp_path / "v1-again", seed=0, extra={"deep/er/notes.txt": "z" * 1000})
    original = (tmp_path / "v1-again" / "model.safetensors").read_bytes()
    assert len(streamed) < len(original) and original.startswith(streamed)


@pytest.mark.parametrize("damage", ["flip-meta", "truncate", "empty", "missing"])
def test_damaged_metadata_objects(store, cli, make_model, damage) -> None:
    make_model("models/bert")
    v1 = cli("commit", "models/bert", "-m", "v1").stdout.strip()
    tree = store.objects.get_version(v1).tree
    path = Path(store.storage.local_path(object_key(tree)))
    if damage == "flip-meta":
        flip_byte(store, tree, 0.9)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-5])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    report = cli("fsck", "--json", expect=12).json()
    assert tree in [p["object"] for p in report["problems"]]
    code = 1 if damage == "missing" else 12
    assert cli("ls", "bert", expect=code).stdout == ""
    assert tree[:12] in cli("show", "bert", expect=code).stderr


def test_a_damaged_ref_log_is_reported(store, cli, make_model) -> None:
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "v1")
    entry = Path(store.store_dir, "refs", "heads", "bert", "main", "0000000001")
    entry.write_bytes(b"{not json")
    report = cli("fsck", "--json", expect=12).json()
    assert report["problems"][0]["kind"] == "ref"
    assert "bert branch main" in report["problems"][0]["detail"]
    assert cli("log", "bert", expect=12).stdout == ""


# --- hostile safetensors and pickles ----------------------------------------------------------


def _safetensors(header: dict | bytes, data: bytes, length: int | None = None) -> bytes:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(body) if length is None else length) + body + data


_T = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
MALFORMED = {
    "header-length-too-big": _safetensors({"a": _T}, b"\0" * 8, length=10**6),
    "header-length-huge": _safetensors({"a": _T}, b"\0" * 8, length=2**63),
    "overlapping-offsets": _safetensors(
        {"a": _T, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12
    ),
    "unknown-dtype": _safetensors({"a": {**_T, "dtype": "F33"}}, b"\0" * 8),
    "duplicate-names": _safetensors(
        b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        b'"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
        b"\0" * 8,
    ),
    "truncated-data": _safetensors({"a": {**_T, "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
    "not-json": _safetensors(b"\xff\xfe garbage", b""),
    "too-short": b"\x01\x02",
}


@pytest.mark.parametrize("blob", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_safetensors_fail_the_commit_unless_raw(
    store, cli, make_model, blob: bytes
) -> None:
    folder = make_model("models/bert")
    (folder / "adapter.safetensors").write_bytes(blob)
    result = cli("commit", "models/bert", "-m", "v1", expect=1)
    assert "adapter.safetensors" in result.stderr and "--raw" in result.stderr
    assert result.stdout == ""
    assert store.refs.get(branch("bert", "main")) is None

    version = cli("commit", "models/bert", "-m", "v1", "--raw").stdout.strip()
    assert version
    listing = {f["path"]: f for f in cli("ls", "bert", "--json").json()}
    assert listing["adapter.safetensors"]["kind"] == "blob"
    assert cli("cat", "bert", "adapter.safetensors").stdout_bytes == blob
    fsck_ok(cli)
    # status only compares content: it works on a folder holding a file committed with --raw
    assert cli("status", "--json").json()[0]["clean"]
    (folder / "other.safetensors").write_bytes(blob + b"!")
    assert cli("status", "--json").json()[0]["added"] == ["other.safetensors"]
    # every commit of a folder holding a malformed safetensors file needs --raw (never a cache
    # hit that skips the check)
    assert "adapter.safetensors" in cli("commit", "models/bert", "-m", "v2", expect=1).stderr
    cli("commit", "models/bert", "-m", "v2", "--raw")


def test_pickle_files_are_stored_as_bytes_and_never_loaded(
    store, cli, make_model, tmp_path
) -> None:
    marker = tmp_path / "pwned"
    # Unpickling this would run os.system("touch <marker>").
    evil = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    folder = make_model("models/bert", extra={"pytorch_model.bin": evil, "optim.pt": evil})
    cli("commit", "models/bert", "-m", "v1")
    shown = cli("show", "bert", "--json").json()
    files = {f["path"]: f for f in shown["files"]}
    for name in ("pytorch_model.bin", "optim.pt"):
        assert files[name]["kind"] == "pickle"
        assert files[name]["note"] == "pickle: unsafe to load"
        assert files[name]["tensors"] is None
    assert files["model.safetensors"]["note"] is None
    assert "pickle: unsafe to load" in cli("show", "bert").stdout
    cli("checkout", "bert", "--to", str(tmp_path / "out"))
    assert (tmp_path / "out" / "pytorch_model.bin").read_bytes() == evil
    assert (folder / "pytorch_model.bin").read_bytes() == evil
    assert not marker.exists()


# --- gc -----------------------------------------------------------------------------------------


def test_gc_keeps_reachable_and_young_objects_and_deletes_the_rest(
    store, cli, make_model, tmp_path
) -> None:
    make_model("models/bert", seed=0)
    v1 = cli("commit", "models/bert", "-m", "v1").stdout.strip()
    v1_files = folder_bytes("models/bert")
    make_model("runs/exp", seed=1)
    v2 = cli("commit", "runs/exp", "--model", "bert", "--branch", "exp", "-m", "exp").stdout.strip()
    doomed = set(chunk_ids(store, v2, "model.safetensors")) - set(
        chunk_ids(store, v1, "model.safetensors")
    )
    cli("branch", "bert", "-D", "exp")
    loose = store.objects.put_bytes(b"never referenced")

    young = cli("gc", "--json").json()  # default grace: everything is too young to delete
    assert young["deleted"] == 0 and young["kept_young"] > 0
    assert store.objects.has(v2) and store.objects.has(loose)

    dry = cli("gc", "--grace", "0s", "--dry-run", "--json").json()
    assert dry["dry_run"] and dry["deleted"] >= len(doomed) + 2
    assert store.objects.has(v2)

    done = cli("gc", "--grace", "0s", "--json").json()
    assert done["deleted"] == dry["deleted"]
    assert not store.objects.has(v2) and not store.objects.has(loose)
    assert not any(store.objects.has(c) for c in doomed)
    fsck_ok(cli)
    assert_reads_back(cli, f"bert@id={v1}", v1_files, tmp_path / "v1")


def test_gc_keeps_whole_histories_and_tags(store, cli, make_model, tmp_path) -> None:
    versions = []
    for seed in range(3):
        make_model("models/bert", seed=seed)
        versions.append(
            (
                cli("commit", "models/bert", "-m", f"v{seed}").stdout.strip(),
                folder_bytes("models/bert"),
            )
        )
    cli("tag", "bert", "v0.1.0", f"id={versions[0][0]}")
    assert cli("gc", "--grace", "0s", "--json").json()["deleted"] == 0
    for i, (vid, files) in enumerate(versions):
        assert_reads_back(cli, f"bert@id={vid}", files, tmp_path / f"v{i}")


def test_gc_waits_for_writers_and_gives_up_clearly(store, cli, make_model) -> None:
    loose = store.objects.put_bytes(b"unreferenced")
    with lock.hold(os.path.join(store.store_dir, "locks", "objects"), shared=True):
        result = cli("--lock-timeout", "0.3", "gc", "--grace", "0s", expect=11)
        assert "lock" in result.stderr and "--lock-timeout" in result.stderr
        assert store.objects.has(loose)
    cli("gc", "--grace", "0s")
    assert not store.objects.has(loose)


# --- tags ---------------------------------------------------------------------------------------


def test_tags_never_move(store, cli, make_model) -> None:
    make_model("models/bert", seed=0)
    v1 = cli("commit", "models/bert", "-m", "v1").stdout.strip()
    make_model("models/bert", seed=1)
    v2 = cli("commit", "models/bert", "-m", "v2").stdout.strip()
    assert cli("tag", "bert", "v1.0.0", "main~1").stdout.strip() == f"bert@v1.0.0 {v1}"
    for name in ("v1.0.0", "1.0.0"):
        result = cli("tag", "bert", name, expect=11)
        assert "never move" in result.stderr and v1[:12] in result.stderr
    # already there: an idempotent success, nothing moves (issue 12: CI jobs re-run)
    assert cli("tag", "bert", "v1.0.0", "main~1").stdout.strip() == f"bert@v1.0.0 {v1}"
    assert cli("tag", "bert", "-d", "v1.0.0", expect=2).exit_code == 2  # needs --force
    cli("tag", "bert", "-d", "v1.0.0", "--force")
    assert cli("tag", "bert", "v1.0.0", expect=11).exit_code == 11  # the name stays reserved
    cli("tag", "bert", "v1.0.0", "main~1")  # ...for the version it named
    tags = cli("tag", "bert", "--json").json()
    assert [(t["name"], t["version"]) for t in tags] == [("v1.0.0", v1)]
    assert cli("show", "bert@1.0.0", "--json").json()["id"] == v1
    assert v2 != v1

    from mvc.errors import ImmutableRef
    from mvc.refnames import tag

    with pytest.raises(ImmutableRef):
        store.refs.set_if_equals(tag("bert", "v1.0.0"), v1, v2, "force it")  # type: ignore[arg-type]


# --- config -------------------------------------------------------------------------------------


def test_a_bad_store_config_is_a_clear_error(store, cli) -> None:
    config = Path(store.config_path)
    config.write_text("user: [unclosed\n")
    result = cli("status", expect=1)
    assert "config.yaml" in result.stderr and "YAML" in result.stderr
    assert "Traceback" not in result.stderr
    config.write_text("- a list\n")
    assert "mapping" in cli("models", expect=1).stderr
    # Schema errors are usage errors (exit 2), with file:line (tests/faults/test_bad_config.py).
    config.write_text("core:\n  colour: blue\n")
    assert "core.colour" in cli("models", expect=2).stderr
    config.write_text("core:\n  lock_timeout: soon\n")
    assert "lock_timeout" in cli("models", expect=2).stderr


def test_a_bad_user_config_is_a_clear_error(store, cli, mvc_env) -> None:
    user = Path(os.environ["XDG_CONFIG_HOME"], "mvc", "config.yaml")
    user.parent.mkdir(parents=True)
    user.write_text("user:\n  name: [\n")
    result = cli("models", expect=1)
    assert str(user) in result.stderr


def test_config_keys_are_validated(store, cli) -> None:
    assert "unknown config key" in cli("config", "set", "colour", "blue", expect=2).stderr
    assert cli("config", "get", "core.nope", expect=2).exit_code == 2
    assert cli("config", "set", "core.lock_timeout", "soon", expect=2).exit_code == 2
    assert cli("config", "set", "core.jobs", "0", expect=2).exit_code == 2
    cli("config", "set", "user.email", "ada@example.com")
    cli("config", "set", "core.lock_timeout", "2m")
    assert cli("config", "get", "core.lock_timeout").stdout.strip() == "120.0"
    got = cli("config", "get", "user.email", "--json").json()
    assert got == {"key": "user.email", "value": "ada@example.com", "source": store.config_path}
    listing = cli("config", "list", "--json").json()
    assert listing["user.name"] == {"value": "Test User", "source": store.config_path}
    assert listing["gc.grace"]["source"] == "default"
    cli("config", "unset", "user.email")
    assert cli("config", "get", "user.email").stdout == ""
    assert cli("config", "unset", "user.email", expect=2).exit_code == 2


def test_config_layers(store, cli, mvc_env) -> None:
    user = Path(os.environ["XDG_CONFIG_HOME"], "mvc", "config.yaml")
    user.parent.mkdir(parents=True)
    user.write_text("user:\n  name: From User File\n  email: user@example.com\n")
    assert cli("config", "get", "user.email").stdout.strip() == "user@example.com"
    assert cli("config", "get", "user.name").stdout.strip() == "Test User"  # store beats user
    env = {"MVC_USER_NAME": "From Env"}
    assert cli("config", "get", "user.name", env=env).stdout.strip() == "From Env"
    assert cli("models", env={"MVC_CORE_JOBS": "lots"}, expect=2).exit_code == 2


def test_store_of_unknown_format_is_refused(store, cli) -> None:
    Path(store.store_dir, "format").write_text("mvc store format 99\n")
    result = cli("status", expect=10)
    assert "format" in result.stderr and "upgrade" in result.stderr
    shutil.rmtree(store.store_dir)
    assert cli("status", expect=10).exit_code == 10


# --- ref transactions ---------------------------------------------------------------------------


def _two_versions(store, cli, make_model) -> tuple[str, str]:
    make_model("models/bert", seed=0)
    v1 = cli("commit", "models/bert", "-m", "v1").stdout.strip()
    make_model("models/bert", seed=1)
    v2 = cli("commit", "models/bert", "-m", "v2").stdout.strip()
    return v1, v2


def test_local_ref_transactions_are_all_or_nothing(store, cli, make_model) -> None:
    from mvc.errors import RefConflict
    from mvc.refs import RefUpdate

    v1, v2 = _two_versions(store, cli, make_model)
    updates = [
        RefUpdate(branch("bert", "release"), None, v1),  # type: ignore[arg-type]
        RefUpdate(branch("bert", "main"), v1, v2),  # type: ignore[arg-type]  (main is at v2)
    ]
    with pytest.raises(RefConflict):
        store.refs.transaction(updates, "both or none")
    assert store.refs.get(branch("bert", "release")) is None


def test_unlocked_ref_transactions_say_what_moved(store, cli, make_model) -> None:
    """Without a local lock (the remote case) refs move one by one; a failure says which moved."""
    from mvc.errors import EXIT_PARTIAL, PartialFailure
    from mvc.refs import RefStore, RefUpdate

    v1, v2 = _two_versions(store, cli, make_model)
    remote_like = RefStore(store.storage, who=lambda: "t", now=lambda: "2026-01-01T00:00:00Z")
    updates = [
        RefUpdate(branch("bert", "release"), None, v1),  # type: ignore[arg-type]
        RefUpdate(branch("bert", "main"), v1, v2),  # type: ignore[arg-type]
    ]
    with pytest.raises(PartialFailure) as caught:
        remote_like.transaction(updates, "one by one")
    assert caught.value.exit_code == EXIT_PARTIAL
    assert "bert branch release" in caught.value.message
    assert store.refs.get(branch("bert", "release")) == v1


def test_a_refused_ref_transaction_is_never_finished_later(store, cli, make_model) -> None:
    """A writer that bypasses the lock takes a slot mid-transaction: the command reports what
    moved, and its journal is gone, so no later read rolls the rest forward behind its back."""
    from mvc.errors import PartialFailure
    from mvc.refs import RefEntry, RefUpdate, _entry_key

    v1, v2 = _two_versions(store, cli, make_model)
    a, b, c = (branch("bert", name) for name in ("a", "b", "c"))
    real_create = store.refs._create

    def rival_first(key, entry, ref):
        if ref == b:  # the lockless writer wins b's first entry
            rival = RefEntry(1, None, v1, "rival", "2026-01-01T00:00:00Z", "rival")
            store.storage.create_exclusive(_entry_key(b, 1), encode_canonical(rival.to_json()))
        real_create(key, entry, ref)

    store.refs._create = rival_first  # type: ignore[method-assign]
    updates = [RefUpdate(a, None, v1), RefUpdate(b, None, v2), RefUpdate(c, None, v2)]
    with pytest.raises(PartialFailure, match="already moved: bert branch a"):
        store.refs.transaction(updates, "three")  # type: ignore[arg-type]
    del store.refs._create
    assert os.listdir(os.path.join(store.store_dir, "txn")) == []
    fresh = type(store)(store.root)
    assert fresh.refs.get(a) == v1 and fresh.refs.get(b) == v1 and fresh.refs.get(c) is None


def test_a_crash_inside_a_ref_transaction_is_rolled_forward(store, cli, make_model) -> None:
    from mvc.refs import RefEntry, _entry_key

    v1, v2 = _two_versions(store, cli, make_model)
    planned = [
        (
            _entry_key(branch("bert", "a"), 1),
            RefEntry(1, None, v1, "t", "2026-01-01T00:00:00Z", "x"),
        ),  # type: ignore[arg-type]
        (
            _entry_key(branch("bert", "b"), 1),
            RefEntry(1, None, v2, "t", "2026-01-01T00:00:00Z", "x"),
        ),  # type: ignore[arg-type]
    ]
    store.refs._write_journal(planned)  # the journal is written...
    key, entry = planned[0]
    store.refs._create(key, entry, branch("bert", "a"))  # ...one entry landed, then the crash
    assert os.path.exists(os.path.join(store.store_dir, key))  # half applied on disk...
    assert not os.path.exists(os.path.join(store.store_dir, planned[1][0]))
    # ...but the next read (any process, any ref) finishes the interrupted one first.
    assert store.refs.get(branch("bert", "b")) == v2
    assert store.refs.get(branch("bert", "a")) == v1
    assert os.listdir(os.path.join(store.store_dir, "txn")) == []
    cli("branch", "bert", "c")
    fsck_ok(cli)


@pytest.mark.parametrize("damage", ["tree", "ref-log"])
def test_gc_refuses_to_run_on_a_damaged_store(store, cli, make_model, damage) -> None:
    """What a damaged object or ref log names would look unreachable: gc must not delete it."""
    make_model("models/bert")
    v1 = cli("commit", "models/bert", "-m", "v1").stdout.strip()
    if damage == "tree":
        flip_byte(store, store.objects.get_version(v1).tree, 0.9)
    else:
        Path(store.store_dir, "refs", "heads", "bert", "main", "0000000001").write_bytes(b"{")
    before = sorted(store.objects.iter_ids())
    result = cli("gc", "--grace", "0s", expect=12)
    assert "gc stops" in result.stderr and "mvc fsck" in result.stderr
    assert sorted(store.objects.iter_ids()) == before


@pytest.mark.parametrize("fsync", [True, False])
def test_a_file_rewritten_in_place_during_commit_stores_nothing(
    store, cli, make_model, monkeypatch, fsync
):
    """A checkpoint rewritten (same size) while mvc reads it must not become a corrupt object."""
    from mvc.errors import MvcError
    from mvc.ops.commit import commit as do_commit
    from mvc.repo import Repo
    from mvc.storage.local import LocalStorage

    make_model("models/bert", seed=1)
    cli("config", "set", "core.fsync", str(fsync).lower())
    original = LocalStorage.write_from
    rewritten: list[int] = []

    def write_from(self, key, head, fd, offset, length):  # type: ignore[no-untyped-def]
        if not rewritten and length > 10_000:  # another process rewrites the file right now
            rewritten.append(offset)
            with open("models/bert/model.safetensors", "r+b") as handle:
                handle.seek(offset + 16)
                handle.write(b"\x42" * 64)
        return original(self, key, head, fd, offset, length)

    monkeypatch.setattr(LocalStorage, "write_from", write_from)
    with pytest.raises(MvcError, match="changed while it was being read"):
        do_commit(Repo(str(store.root)), "models/bert", message="race")
    assert rewritten
    monkeypatch.setattr(LocalStorage, "write_from", original)
    assert cli("fsck", "--json").json()["ok"]
    cli("commit", "models/bert", "-m", "after the writer finished")
    assert cli("fsck", "--json").json()["ok"]
