"""Crash safety: ``kill -9`` at every write point loses nothing (docs/reliability.md).

Each case runs the real ``mvc`` with ``MVC_CRASH_AT=point[:n]`` (mvc/faults.py): the process
SIGKILLs itself the n-th time it reaches that write point. Then: it really died there; every ref
is at its old value or a new, complete one; every object reachable before verifies; old versions
read back byte-identical; ``mvc fsck`` exits 0; and re-running the command succeeds and gives
the result an uninterrupted run would have.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest
from faultkit import CRASH_ENV, read_version_files, snapshot


def _folder_files(folder: pathlib.Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _refs(repo_root: str) -> dict[str, str | None]:
    from mvc.repo import Repo

    repo = Repo(repo_root)
    return {str(r): repo.refs.get(r) for r in repo.refs.list_refs()}


def _tip(repo_root: str, ref: str) -> str | None:
    return _refs(repo_root).get(ref)


# --- commit ---------------------------------------------------------------------------------------

COMMIT_POINTS = [
    "commit.chunks",  # a file's chunks written (pending in the batch), its manifest not yet
    "commit.manifests",  # every file's manifest written, the tree not yet
    "commit.tree",  # the tree written, the batch not yet flushed: nothing visible
    "storage.batch-rename:3",  # the batch half renamed: some objects visible, not all
    "commit.objects",  # the whole closure durable, no version yet
    "commit.version",  # the version written, the branch not moved
    "refs.before-entry",  # about to create the branch's next log entry
    "storage.exclusive-temp",  # the entry's temp file written, not yet linked into place
    "refs.entry",  # the branch moved; binding and stat cache not yet updated
    "commit.ref",  # the commit is recorded; the working-folder binding is not
]


@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_commit_killed(point, versions, make_model, mvc_proc, cli, nothing_lost) -> None:
    before = snapshot(versions.repo)
    folder = make_model(pathlib.Path(versions.root) / "models/bert", seed=7)
    mvc_proc.crashes("commit", "models/bert", "-m", "seven", point=point, cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    tip = _tip(versions.root, "bert branch main")
    assert tip in (versions.ids["bert@3"], None) or _parent(versions, tip) == versions.ids["bert@3"]

    mvc_proc("commit", "models/bert", "-m", "seven", cwd=versions.root)
    tip = _tip(versions.root, "bert branch main")
    assert _parent(versions, tip) == versions.ids["bert@3"]  # exactly one new version
    assert read_version_files(versions.repo, tip) == _folder_files(folder)
    assert "clean" in cli("status", "bert").stdout
    nothing_lost.check(versions.repo, before)


def _parent(versions, oid: str | None) -> str | None:
    if oid is None:
        return None
    from mvc.repo import Repo

    parents = Repo(versions.root).objects.get_version(oid).parents
    return parents[0] if parents else None


# --- tag, branch and channel moves ----------------------------------------------------------------

REF_POINTS = ["refs.before-entry", "storage.exclusive-temp", "refs.entry"]


@pytest.mark.parametrize("point", REF_POINTS)
@pytest.mark.parametrize(
    "command, ref, target",
    [
        (("tag", "bert", "v2.0.0"), "bert tag v2.0.0", "bert@3"),
        (("branch", "bert", "dev"), "bert branch dev", "bert@3"),
        (("channel", "set", "bert", "prod", "{bert@3}"), "bert channel prod", None),
    ],
    ids=["tag", "branch", "channel"],
)
def test_ref_move_killed(
    point, command, ref, target, versions, mvc_proc, cli, nothing_lost
) -> None:
    args = [a.format(**versions.ids) for a in command]
    before = snapshot(versions.repo)
    mvc_proc.crashes(*args, point=point, cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    after_crash = _tip(versions.root, ref)
    assert after_crash == before.refs.get(ref) or point == "refs.entry"

    if after_crash == before.refs.get(ref):
        mvc_proc(*args, cwd=versions.root)
    now = _tip(versions.root, ref)
    assert now is not None and now != before.refs.get(ref)
    if target:
        assert now == versions.ids[target]
    else:  # a channel names a deployment record whose stable arm is the version
        shown = cli("channel", "show", "bert", "prod", "--json")
        assert versions.ids["bert@3"] in shown.stdout
    nothing_lost.check(versions.repo, before)


@pytest.mark.parametrize("point", ["deploy.record", *REF_POINTS])
def test_deploy_killed(point, versions, mvc_proc, cli, nothing_lost) -> None:
    before = snapshot(versions.repo)
    args = ("deploy", "bert", "prod", versions.ids["bert@3"], "--canary", "10")
    mvc_proc.crashes(*args, point=point, cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    if _tip(versions.root, "bert channel prod") == before.refs["bert channel prod"]:
        mvc_proc(*args, cwd=versions.root)
    shown = cli("channel", "show", "bert", "prod", "--json").stdout
    assert versions.ids["bert@3"] in shown and versions.ids["bert@2"] in shown
    nothing_lost.check(versions.repo, before)


@pytest.mark.parametrize("point", ["annotate.object", *REF_POINTS])
def test_annotate_killed(point, versions, mvc_proc, cli, nothing_lost) -> None:
    """Killed while annotating: the annotation is recorded whole or not at all, once."""
    before = snapshot(versions.repo)
    args = ("annotate", "bert@v1.0.0", "--metric", "accuracy=0.91", "--note", "eval")
    mvc_proc.crashes(*args, point=point, cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    shown = cli("show", "bert@v1.0.0", "--json").json()
    if "0.91" not in json.dumps(shown):
        mvc_proc(*args, cwd=versions.root)
        shown = cli("show", "bert@v1.0.0", "--json").json()
    assert json.dumps(shown).count('"eval"') == 1, shown
    nothing_lost.check(versions.repo, before)


# --- checkout -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("point", ["checkout.staged", "checkout.rename:2", "checkout.renamed"])
def test_checkout_killed(point, versions, mvc_proc, cli, nothing_lost) -> None:
    """Killed while the working folder changes: the store is untouched, the folder holds each
    file whole (old or new), and checking out again finishes the job."""
    folder = pathlib.Path(versions.root) / "models/bert"
    old, new = versions.files[versions.ids["bert@3"]], versions.files[versions.ids["bert@1"]]
    before = snapshot(versions.repo)
    mvc_proc.crashes("checkout", "bert@v1.0.0", point=point, cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    for rel, data in _folder_files(folder).items():
        if not rel.startswith(".mvc-tmp-") and "/.mvc-tmp-" not in rel:
            assert data in (old.get(rel), new.get(rel)), f"{rel} is torn"

    mvc_proc("checkout", "bert@v1.0.0", "--force", cwd=versions.root)
    assert _folder_files(folder) == new  # and the killed run's temp files are gone
    assert "clean" in cli("status", "bert").stdout
    nothing_lost.check(versions.repo, before)


# --- export ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["export.file:1", "export.file:3", "export.manifest"])
def test_first_export_killed(point, versions, mvc_proc, nothing_lost, tmp_path) -> None:
    """The first export into an empty folder, killed: running it again finishes it."""
    dest = tmp_path / "serve"
    export = ("export", "bert", "prod", "--format", "dir", "--to", str(dest))
    before = snapshot(versions.repo)
    mvc_proc.crashes(*export, point=point, cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    mvc_proc(*export, cwd=versions.root)
    files = _folder_files(dest)
    stable = {k.removeprefix("stable/"): v for k, v in files.items() if k.startswith("stable/")}
    assert stable == versions.files[versions.ids["bert@2"]]
    assert set(files) - {f"stable/{k}" for k in stable} == {"mvc-export.json", "routing.json"}


@pytest.mark.slow
@pytest.mark.parametrize("point", ["export.file:2", "export.manifest"])
def test_re_export_killed(point, versions, mvc_proc, cli, nothing_lost, tmp_path) -> None:
    """A re-export (a new version on the channel) killed part-way: the store is untouched and
    the next export finishes with exactly the new version's files."""
    dest = tmp_path / "serve"
    export = ("export", "bert", "prod", "--format", "dir", "--to", str(dest))
    cli(*export)
    cli("channel", "set", "bert", "prod", versions.ids["bert@3"])
    before = snapshot(versions.repo)
    mvc_proc.crashes(*export, point=point, cwd=versions.root)
    nothing_lost.check(versions.repo, before)

    mvc_proc(*export, cwd=versions.root)
    files = _folder_files(dest)
    stable = {k.removeprefix("stable/"): v for k, v in files.items() if k.startswith("stable/")}
    assert stable == versions.files[versions.ids["bert@3"]]
    assert set(files) - {f"stable/{k}" for k in stable} == {"mvc-export.json", "routing.json"}


# --- push and pull --------------------------------------------------------------------------------


def _bare(root: pathlib.Path):
    """The remote's objects and refs, opened directly (a bare remote has no config)."""
    from mvc.refs import RefStore
    from mvc.storage.local import LocalStorage
    from mvc.store import ObjectStore

    storage = LocalStorage(str(root))
    return ObjectStore(storage), RefStore(storage, who=lambda: "t", now=lambda: "t")


def _remote_complete(root: pathlib.Path) -> dict[str, str | None]:
    """Every ref on the remote names a complete, verified closure; returns the refs."""
    from mvc.graph import reachable

    objects, refs = _bare(root)
    found = {}
    for ref in refs.list_refs():
        value = refs.get(ref)
        walked = reachable(objects, [value])
        missing = [(m.object, m.needed_by) for m in walked.missing]
        for oid in walked.reached:
            objects.get_bytes(oid)
        assert not missing, f"remote {ref} at {value} lacks {missing[:3]}"
        found[str(ref)] = value
    return found


PUSH_POINTS = [
    "transfer.object:5",  # some objects on the remote, durable one by one
    "push.objects",  # every object there, no remote ref moved
    "refs.before-entry",
    "push.ref",  # the remote ref moved; the local tracking ref not yet
]


@pytest.mark.slow
@pytest.mark.parametrize("point", PUSH_POINTS)
def test_push_killed(point, versions, mvc_proc, cli, nothing_lost, tmp_path) -> None:
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{remote}")
    cli("push", "origin", "gpt")  # the remote exists and has history
    before = snapshot(versions.repo)
    env = {"MVC_TRANSFER_FLUSH_BYTES": "1"}
    mvc_proc.crashes("push", "origin", "bert", point=point, cwd=versions.root, env=env)
    nothing_lost.check(versions.repo, before)
    on_remote = _remote_complete(remote)
    assert on_remote.get("gpt branch main") == versions.ids["gpt@1"]
    assert on_remote.get("bert branch main") in (None, versions.ids["bert@3"])

    landed = _object_count(remote)
    resumed = mvc_proc("push", "origin", "bert", "--json", cwd=versions.root).stdout
    # The resume sends only what is missing: each object it sends is one the remote lacked.
    assert json.loads(resumed)["transfer"]["objects_sent"] == _object_count(remote) - landed
    on_remote = _remote_complete(remote)
    local = _refs(versions.root)
    assert {k: v for k, v in on_remote.items() if k.startswith("bert ")} == {
        k: v for k, v in local.items() if k.startswith("bert ")
    }
    assert _tracked(versions.root, "origin") == on_remote  # what this store knows of origin
    nothing_lost.check(versions.repo, before)


def _object_count(store_dir: pathlib.Path) -> int:
    """Whole objects only: a killed writer's temp files (.tmp-*) are not objects."""
    return sum(1 for p in (store_dir / "objects").rglob("*") if p.is_file() and p.name[0] != ".")


def _tracked(root: str, remote: str) -> dict[str, str]:
    from mvc.ops.remotes import tracked_values
    from mvc.repo import Repo

    return {str(ref): value for ref, value in tracked_values(Repo(root), remote).items()}


@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.parametrize("point", ["transfer.object:5", "push.ref"])
def test_push_to_s3_killed(point, versions, mvc_proc, cli, nothing_lost, s3_url, tmp_path) -> None:
    """The same on S3 (moto on loopback): what a clone sees is complete, before and after."""
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    cli("remote", "add", "origin", s3_url.url)
    cli("push", "origin", "gpt")
    before = snapshot(versions.repo)
    mvc_proc.crashes("push", "origin", "bert", point=point, cwd=versions.root, env=aws)
    nothing_lost.check(versions.repo, before)
    cli("clone", s3_url.url, tmp_path / "early")  # verifies every object it takes
    early = _refs(str(tmp_path / "early"))
    assert early.get("gpt branch main") == versions.ids["gpt@1"]
    assert early.get("bert branch main") in (None, versions.ids["bert@3"])

    mvc_proc("push", "origin", "bert", cwd=versions.root, env=aws)
    cli("clone", s3_url.url, tmp_path / "late")
    assert cli("-C", tmp_path / "late", "fsck").exit_code == 0
    late = {k: v for k, v in _refs(str(tmp_path / "late")).items() if k.startswith("bert ")}
    assert late == {k: v for k, v in _refs(versions.root).items() if k.startswith("bert ")}


PULL_POINTS = [
    "transfer.object:5",  # some objects here, no ref
    "pull.objects",  # every object here, no ref
    "pull.tracking",  # tracking refs moved, local refs not
    "refs.journal",  # the three-ref transaction journalled, no entry made
    # The 3 tracking refs take entries 1-3; the 4th is the transaction's first local ref: one
    # of three moved, the journal rolls the rest forward.
    "refs.entry:4",
    "storage.batch-rename:4",  # the pulled objects half visible
]


def _puller(versions, cli, make_model, tmp_path):
    """A second store with a model of its own and ``origin`` holding all of ``bert``."""
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{remote}")
    cli("push", "origin", "bert")
    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "config", "set", "user.name", "Puller")
    make_model(fresh / "own", seed=50)
    cli("-C", fresh, "commit", "own", "-m", "own")
    cli("-C", fresh, "remote", "add", "origin", f"file://{remote}")
    wanted = {k: v for k, v in _refs(versions.root).items() if k.startswith("bert ")}
    return fresh, wanted


def _pulled(fresh, wanted) -> dict[str, str | None]:
    return {k: v for k, v in _refs(str(fresh)).items() if k in wanted}


@pytest.mark.slow
@pytest.mark.parametrize("point", PULL_POINTS)
def test_pull_killed(point, versions, mvc_proc, cli, make_model, nothing_lost, tmp_path) -> None:
    from mvc.repo import Repo

    fresh, wanted = _puller(versions, cli, make_model, tmp_path)
    repo = Repo(str(fresh))
    before = snapshot(repo)
    env = {"MVC_TRANSFER_FLUSH_BYTES": "1"}
    mvc_proc.crashes("pull", "origin", "bert", point=point, cwd=fresh, env=env)
    journal = fresh / ".mvc" / "txn"
    if point.startswith("refs."):
        assert list(journal.iterdir())  # the transaction did not finish...
        # ...and the first read rolls it forward: no reader sees some refs moved and not others.
        assert _pulled(fresh, wanted) == wanted
        assert not list(journal.iterdir())
    nothing_lost.check(repo, before)
    landed = _object_count(fresh / ".mvc")
    resumed = mvc_proc("pull", "origin", "bert", "--json", cwd=fresh).stdout
    assert json.loads(resumed)["transfer"]["objects_sent"] == _object_count(fresh / ".mvc") - landed
    assert _pulled(fresh, wanted) == wanted
    assert _tracked(str(fresh), "origin") == wanted
    for name in ("bert@1", "bert@2", "bert@3"):
        assert read_version_files(repo, versions.ids[name]) == versions.files[versions.ids[name]]
    nothing_lost.check(repo, before)


@pytest.mark.slow
def test_roll_forward_killed(versions, mvc_proc, cli, make_model, tmp_path) -> None:
    """Killed again while rolling a crashed transaction forward: the next change finishes it."""
    fresh, wanted = _puller(versions, cli, make_model, tmp_path)
    mvc_proc.crashes("pull", "origin", "bert", point="refs.journal", cwd=fresh)
    mvc_proc.crashes("branch", "own", "side", point="refs.recover", cwd=fresh)
    entries = [p for p in (fresh / ".mvc" / "refs").rglob("0*") if "/bert/" in str(p)]
    assert len(entries) == 1  # one entry rolled forward, then killed
    assert _pulled(fresh, wanted) == wanted  # the next read finishes it
    mvc_proc("branch", "own", "side", cwd=fresh)
    assert cli("-C", fresh, "fsck").exit_code == 0


# --- gc and repack --------------------------------------------------------------------------------


def _with_garbage(versions, cli, make_model) -> None:
    """A branch with its own version, then deleted: its objects become unreachable. And a
    compressible file on ``main``, stored raw (``core.compress`` is off), for repack."""
    notes = pathlib.Path(versions.root) / "models/bert/notes.txt"
    notes.write_text("the same line, again and again\n" * 4000)
    cli("commit", "models/bert", "-m", "notes")
    make_model(pathlib.Path(versions.root) / "scratch", seed=99)
    cli("commit", "scratch", "--model", "bert", "--branch", "tmp", "-m", "x")
    cli("branch", "bert", "-D", "tmp")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["gc.marked", "gc.delete:2", "repack.replace:1"])
def test_gc_killed(point, versions, mvc_proc, cli, make_model, nothing_lost) -> None:
    _with_garbage(versions, cli, make_model)
    before = snapshot(versions.repo)
    mvc_proc.crashes("gc", "--grace", "0s", point=point, cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    mvc_proc("gc", "--grace", "0s", cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    again = cli("gc", "--grace", "0s", "--json").json()
    assert again["deleted"] == 0 and again["repack"]["compressed"] == 0  # nothing left to do


def _with_fine_tunes(versions, cli) -> None:
    """Two fine-tunes of ``bert``'s latest weights (low bits changed), stored whole, for repack
    to turn into deltas."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    weights = pathlib.Path(versions.root) / "models/bert/model.safetensors"
    rng = np.random.default_rng(5)
    for n in range(2):
        tensors = load_file(str(weights))
        for name, value in tensors.items():
            if value.dtype == np.float32:
                noise = rng.normal(0, 1e-4, value.shape).astype(np.float32)
                tensors[name] = (value * (1 + noise)).astype(np.float32)
        save_file(tensors, str(weights))
        cli("commit", "models/bert", "-m", f"fine-tune {n}")


@pytest.mark.parametrize("point", ["repack.delta:1", "repack.delta:3"])
def test_repack_making_deltas_killed(point, versions, mvc_proc, cli, nothing_lost) -> None:
    """Killed between two delta rewrites (or compressions), every version still reads back;
    run again, repack finishes the job and a third run has nothing left to do."""
    _with_fine_tunes(versions, cli)
    before = snapshot(versions.repo)
    mvc_proc.crashes("repack", point=point, cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    mvc_proc("repack", cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    again = cli("repack", "--json").json()
    assert again["deltas"] == 0 and again["compressed"] == 0


def test_push_killed_while_making_deltas(versions, mvc_proc, cli, nothing_lost, tmp_path) -> None:
    """Killed between two of push's delta rewrites (push.repack), nothing is lost here and
    the remote is untouched; run again, the push sends deltas and the remote reads back."""
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{remote}")
    cli("push", "origin", "bert")
    _with_fine_tunes(versions, cli)
    before = snapshot(versions.repo)
    mvc_proc.crashes("push", "origin", "bert", point="push.repack:2", cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    assert _remote_complete(remote).get("bert branch main") == versions.ids["bert@3"]
    mvc_proc("push", "origin", "bert", cwd=versions.root)
    nothing_lost.check(versions.repo, before)
    on_remote = _remote_complete(remote)
    assert on_remote["bert branch main"] == _refs(versions.root)["bert branch main"]


def test_crash_hook_is_inert_without_its_variable(versions, mvc_proc) -> None:
    """The hook costs nothing and does nothing unless set (and a bad count means the 1st hit)."""
    from mvc import faults

    assert faults._parse(None) is None and faults._parse("") is None
    assert faults._parse("a.b:3") == ("a.b", 3) and faults._parse("a.b:x") == ("a.b", 1)
    assert CRASH_ENV not in os.environ
    mvc_proc("log", "bert", cwd=versions.root, env={CRASH_ENV: "no.such.point"})


# --- randomised kill loop -------------------------------------------------------------------------


@pytest.mark.slow
def test_random_kills_lose_nothing(versions, mvc_proc, cli, make_model, nothing_lost, tmp_path):
    """Dozens of commit/push/gc runs, each SIGKILLed after a random delay (seeded: a failure
    replays). The invariant holds after every kill, checked in-process to stay within budget."""
    from mvc.ops.maintenance import fsck
    from mvc.repo import Repo

    rng = random.Random(15)
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{remote}")
    env = {**mvc_proc.base_env, "MVC_TRANSFER_FLUSH_BYTES": "4096"}
    commands = {
        "commit": ["commit", "models/bert", "-m", "loop"],
        "push": ["push", "origin", "bert"],
        "gc": ["gc", "--grace", "0s"],
    }
    clock = time.monotonic()
    mvc_proc("commit", "models/bert", "-m", "timing", cwd=versions.root, expect=None)
    startup = min(time.monotonic() - clock, 2.0)  # how long one run takes on this machine now
    # When to kill each command, learnt as the loop runs (machines and their load differ): a
    # run that finished first pulls its estimate below that delay, a kill lets it drift later.
    estimate = dict.fromkeys(commands, 1.5 * startup)
    started, killed, iterations = time.monotonic(), 0, 0
    before = snapshot(versions.repo)
    while iterations < 36 and time.monotonic() - started < 50:
        what = ("commit", "push", "gc")[iterations % 3]
        if what == "commit":
            make_model(pathlib.Path(versions.root) / "models/bert", seed=100 + iterations)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mvc", *commands[what]],
            cwd=versions.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        delay = rng.uniform(0.3, 1.0) * estimate[what]
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        _out, err = proc.communicate(timeout=30)
        killed += proc.returncode == -signal.SIGKILL
        if proc.returncode == -signal.SIGKILL:
            estimate[what] *= 1.05
        else:
            estimate[what] = 0.8 * min(estimate[what], delay)
        assert proc.returncode in (0, -signal.SIGKILL), err.decode()
        repo = Repo(versions.root)
        report = fsck(repo)
        assert report.ok, [p.to_json() for p in report.problems]
        before = nothing_lost.check(repo, before, fsck=False)
        if remote.exists():
            _remote_complete(remote)
        iterations += 1
    print(f"{iterations} runs, {killed} killed mid-way, {time.monotonic() - started:.0f} s")
    assert iterations >= 12 and killed >= iterations // 2, (iterations, killed)
    nothing_lost.check(versions.repo, snapshot(versions.repo))
