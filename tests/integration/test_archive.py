"""Archiving to cold storage and restoring: round trips through the CLI against a local folder
and moto's S3, shared chunks kept, checkout of an archived version refused with how to restore,
fsck and gc honouring archive records. The clock is frozen (``Repo``'s default clock)."""

from __future__ import annotations

import os
import pathlib

import blake3
import pytest

from mvc.archives import read_archive
from mvc.errors import EXIT_ARCHIVED, EXIT_USAGE
from mvc.repo import Repo
from mvc.store import object_key


def b3(path: pathlib.Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


@pytest.fixture
def bert(store, cli, make_model, clock):
    """Three versions of bert on main, each with its own weights; all share the tokenizer and
    the position ids tensor; only v2 has notes.txt. Returns their ids."""
    folder = make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "one")
    v1 = cli("show", "bert", "--json").json()["id"]
    make_model("models/bert", seed=2)
    (folder / "notes.txt").write_text("only in v2\n" * 200)
    clock.advance(1)
    cli("commit", "models/bert", "-m", "two")
    v2 = cli("show", "bert", "--json").json()["id"]
    make_model("models/bert", seed=1)
    (folder / "notes.txt").unlink()
    clock.advance(1)
    cli("commit", "models/bert", "-m", "three")
    v3 = cli("show", "bert", "--json").json()["id"]
    return v1, v2, v3


def chunks_of(repo: Repo, version: str) -> set[str]:
    tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
    return {c.id for e in tree.files.values() for c in repo.objects.manifest_of(e).chunks}


def header_of(repo: Repo, version: str) -> str:
    """The chunk holding the safetensors header of model.safetensors (it stays local)."""
    tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
    return repo.objects.manifest_of(tree.files["model.safetensors"]).chunks[0].id


def test_archive_moves_only_unshared_chunks_and_restore_brings_them_back(
    store, cli, bert, tmp_path
) -> None:
    v1, v2, _v3 = bert
    cli("remote", "add", "cold", str(tmp_path / "cold"))
    repo = Repo(store.root)
    header = header_of(repo, v2)
    own = chunks_of(repo, v2) - chunks_of(repo, v1) - chunks_of(repo, _v3) - {header}
    shared = chunks_of(repo, v2) & (chunks_of(repo, v1) | chunks_of(repo, _v3))
    assert own and shared and header not in shared
    cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "before"))

    result = cli("archive", f"bert@{v2}", "--remote", "cold", "--json").json()
    assert result["chunks_moved"] == len(own) and result["chunks_kept"] == len(shared) + 1
    assert all(not repo.objects.has(c) for c in own)
    assert all(repo.objects.has(c) for c in shared) and repo.objects.has(header)
    cold = tmp_path / "cold"
    assert all((cold / object_key(c)).is_file() for c in own)
    record = read_archive(repo.storage, v2)
    assert record is not None and set(record.chunks) == own and record.remote == "cold"

    # still listed and resolvable, metadata local, and show says where its data went
    shown = cli("show", f"bert@{v2}", "--json").json()
    assert shown["id"] == v2 and shown["archived"]["remote"] == "cold"
    assert "archived" not in cli("show", f"bert@{v1}", "--json").json()
    text = cli("show", f"bert@{v2}").stdout
    assert "archived on cold remote cold" in text and f"mvc restore bert@{v2[:12]}" in text
    # the neighbours check out as before
    assert [e["id"] for e in cli("log", "bert", "--json").json()] == [_v3, v2, v1]
    cli("checkout", f"bert@{v1}", "--to", str(tmp_path / "one"))
    refused = cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "two"), expect=EXIT_ARCHIVED)
    assert "archived" in refused.stderr and f"mvc restore bert@{v2[:12]}" in refused.stderr

    restored = cli("restore", f"bert@{v2}", "--json").json()
    assert restored["was_archived"] and restored["chunks_restored"] == len(own)
    assert read_archive(repo.storage, v2) is None
    assert "archived" not in cli("show", f"bert@{v2}", "--json").json()
    cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "after"))
    for name in ("model.safetensors", "notes.txt", "config.json", "tokenizer.json"):
        assert b3(tmp_path / "after" / name) == b3(tmp_path / "before" / name)
    assert cli("fsck", "--json").json()["ok"]
    log = cli("policy", "log", "--json").json()
    assert [(e["action"], e["version"], e["rule"]) for e in log] == [
        ("archive", v2, "manual"),
        ("restore", v2, None),
    ]


def test_a_delta_chunk_is_archived_self_contained(store, cli, make_model, clock, tmp_path) -> None:
    """A fine-tune's tensors are stored as deltas against its parent's: the cold copy must be
    readable without the parent's chunk, and the parent's chunk (its base) stays here."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = tmp_path / "work" / "models" / "ft"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    base = rng.standard_normal((512, 512)).astype(np.float32)
    save_file({"w": base}, str(folder / "model.safetensors"))
    cli("commit", "models/ft", "-m", "base")
    first = cli("show", "ft", "--json").json()["id"]
    tuned = base.view(np.uint32) ^ rng.integers(0, 4, base.shape, dtype=np.uint32)
    save_file({"w": tuned.view(np.float32)}, str(folder / "model.safetensors"))
    cli("commit", "models/ft", "-m", "tuned")
    clock.advance(1)
    save_file({"w": base * 2}, str(folder / "model.safetensors"))
    cli("commit", "models/ft", "-m", "third")
    tuned_id = cli("log", "ft", "--json").json()[1]["id"]
    cli("remote", "add", "cold", str(tmp_path / "cold"))
    cli("checkout", f"ft@{tuned_id}", "--to", str(tmp_path / "before"))
    cli("archive", f"ft@{tuned_id}", "--remote", "cold")
    cli("checkout", f"ft@{first}", "--to", str(tmp_path / "first"))  # its chunks are intact
    cli("restore", f"ft@{tuned_id}")
    cli("checkout", f"ft@{tuned_id}", "--to", str(tmp_path / "after"))
    assert b3(tmp_path / "after" / "model.safetensors") == b3(
        tmp_path / "before" / "model.safetensors"
    )


def test_versions_a_channel_or_release_tag_needs_are_refused(store, cli, bert, tmp_path) -> None:
    v1, v2, _ = bert
    cli("remote", "add", "cold", str(tmp_path / "cold"))
    cli("tag", "bert", "v1.0.0", v1)
    cli("channel", "set", "bert", "prod", v2)
    for version, why in ((v1, "release tag v1.0.0"), (v2, "served by channel prod")):
        refused = cli("archive", f"bert@{version}", "--remote", "cold", expect=EXIT_USAGE)
        assert why in refused.stderr


def test_fsck_counts_an_archived_chunk_as_promised_and_checks_the_cold_remote(
    store, cli, bert, tmp_path
) -> None:
    _, v2, _ = bert
    cli("remote", "add", "cold", str(tmp_path / "cold"))
    cli("archive", f"bert@{v2}", "--remote", "cold")
    report = cli("fsck", "--json").json()
    assert report["ok"] and report["promised"]
    assert all("remote cold" in p["detail"] for p in report["promised"])
    assert cli("fsck", "--offline", "--json", expect=None).json()["unverified"]
    # a chunk lost on the cold remote too is damage
    record = read_archive(Repo(store.root).storage, v2)
    assert record is not None
    os.unlink(tmp_path / "cold" / object_key(record.chunks[0]))
    damaged = cli("fsck", "--json", expect=12).json()
    assert any(record.chunks[0] == p["object"] for p in damaged["problems"])


def test_gc_keeps_an_archived_version_whose_branch_is_gone(store, cli, bert, tmp_path) -> None:
    """gc honours archive records: the version's metadata (and the chunks it shares) stay,
    even when no ref reaches it any more."""
    v1, v2, v3 = bert
    cli("branch", "bert", "side", v2)
    cli("remote", "add", "cold", str(tmp_path / "cold"))
    cli("archive", f"bert@{v2}", "--remote", "cold")
    # rewrite main back to v1 and drop the side branch: nothing but the record reaches v2
    repo = Repo(store.root)
    from mvc.refnames import branch

    repo.refs.set_if_equals(branch("bert", "main"), v3, v1, "test: reset")
    repo.refs.set_if_equals(branch("bert", "side"), v2, None, "test: delete")
    cli("gc", "--grace", "0s")
    assert repo.objects.has(v2)
    cli("restore", f"bert@{v2}")
    cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "back"))


@pytest.mark.s3
def test_s3_cold_remote_writes_the_storage_class_and_round_trips(
    store, cli, bert, tmp_path, s3_url, s3_client
) -> None:
    _, v2, _ = bert
    cli(
        "remote",
        "add",
        "cold",
        s3_url.url,
        "-o",
        f"endpoint_url={s3_url.options['endpoint_url']}",
        "-o",
        "storage_class=GLACIER_IR",
    )
    cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "before"))
    cli("archive", f"bert@{v2}", "--remote", "cold")
    record = read_archive(Repo(store.root).storage, v2)
    assert record is not None and record.chunks
    for chunk in record.chunks:
        head = s3_client.head_object(Bucket=s3_url.bucket, Key=f"store/{object_key(chunk)}")
        assert head["StorageClass"] == "GLACIER_IR"
        body = s3_client.get_object(Bucket=s3_url.bucket, Key=f"store/{object_key(chunk)}")
        assert body["Body"].read()
    cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "refused"), expect=EXIT_ARCHIVED)
    cli("restore", f"bert@{v2}")
    cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "after"))
    for name in ("model.safetensors", "notes.txt"):
        assert b3(tmp_path / "after" / name) == b3(tmp_path / "before" / name)


@pytest.mark.slow
def test_the_archiving_example_runs(mvc_env, tmp_path) -> None:
    """examples/archiving/run.sh, with this interpreter's mvc first on PATH."""
    import shutil
    import subprocess
    import sys

    bash = shutil.which("bash")
    assert bash
    script = pathlib.Path(__file__).resolve().parents[2] / "examples" / "archiving" / "run.sh"
    done = subprocess.run(
        [bash, str(script)],
        cwd=tmp_path,
        env={
            **mvc_env,
            "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{mvc_env['PATH']}",
            "TMPDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "checkout of the archived version exited 24" in done.stdout
    assert "restore tiny-bert@" in done.stdout


def test_push_sends_an_archived_versions_data_from_the_cold_remote(
    store, cli, bert, tmp_path
) -> None:
    _, v2, _ = bert
    cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "before"))
    cli("remote", "add", "cold", str(tmp_path / "cold"))
    cli("remote", "add", "origin", str(tmp_path / "origin"))
    cli("archive", f"bert@{v2}", "--remote", "cold")
    cli("push", "origin", "bert")
    cli("clone", str(tmp_path / "origin"), str(tmp_path / "clone"))
    cli("-C", str(tmp_path / "clone"), "checkout", f"bert@{v2}", "--to", str(tmp_path / "there"))
    for name in ("model.safetensors", "notes.txt"):
        assert b3(tmp_path / "there" / name) == b3(tmp_path / "before" / name)
    cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "here"), expect=EXIT_ARCHIVED)


def test_load_of_an_archived_version_says_how_to_restore(store, cli, bert, tmp_path) -> None:
    import mvc
    from mvc.errors import Archived

    _, v2, _ = bert
    cache = str(tmp_path / "cache")
    before = mvc.load(f"bert@{v2}", repo=store.root, cache_dir=cache, mmap=False)
    cli("remote", "add", "cold", str(tmp_path / "cold"))
    cli("archive", f"bert@{v2}", "--remote", "cold")
    with pytest.raises(Archived) as refused:  # the cache folder still holds it: refused anyway
        mvc.load(f"bert@{v2}", repo=store.root, cache_dir=cache)
    assert refused.value.exit_code == EXIT_ARCHIVED and "mvc restore" in (refused.value.hint or "")
    cli("restore", f"bert@{v2}")
    after = mvc.load(f"bert@{v2}", repo=store.root, cache_dir=str(tmp_path / "fresh"))
    assert sorted(after) == sorted(before)
    assert all((after[name] == before[name]).all() for name in before)


def test_an_archive_a_release_tag_overtakes_keeps_the_version_here(
    store, cli, bert, tmp_path, monkeypatch
) -> None:
    """A tag that lands after the archive's first check (a race with another process, staged
    here by tagging right after the record is written) wins: no chunk is deleted, the record
    goes, the version stays whole; once the record exists, such moves are refused outright."""
    from mvc.errors import UsageError
    from mvc.ops import archive as ops_archive
    from mvc.refnames import tag

    _, v2, _ = bert
    cli("remote", "add", "cold", str(tmp_path / "cold"))
    repo = Repo(store.root)
    before = chunks_of(repo, v2)
    write = ops_archive.write_archive

    def write_then_race(storage, record) -> None:
        write(storage, record)
        cli("tag", "bert", "v9.0.0", v2, expect=EXIT_ARCHIVED)  # refused: the record exists
        repo.refs.set_if_equals(tag("bert", "v9.0.0"), None, v2, "a tag that raced the archive")

    monkeypatch.setattr(ops_archive, "write_archive", write_then_race)
    with pytest.raises(UsageError) as refused:
        ops_archive.archive_version(repo, f"bert@{v2}", "cold")
    assert "release tag v9.0.0" in refused.value.message
    assert read_archive(repo.storage, v2) is None
    assert all(repo.objects.has(c) for c in before)
    cli("checkout", f"bert@{v2}", "--to", str(tmp_path / "whole"))
