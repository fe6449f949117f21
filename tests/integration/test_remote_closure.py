"""Closure before reference, across stores: a ref never names a version whose data is not here,
even when its metadata arrived by fetch."""

from __future__ import annotations

import os


def _fetched_store(cli, folder, remote, remote_folder):
    """A new store that fetched (metadata only) from a folder remote."""
    os.makedirs(folder)
    cli("-C", folder, "init")
    cli("-C", folder, "remote", "add", remote, f"file://{remote_folder}")
    cli("-C", folder, "fetch", remote)
    return folder


def _fsck(cli, store_dir):
    return cli("-C", store_dir, "fsck", "--json", expect=None).json()


def test_tagging_a_fetched_version_pulls_its_data_first(store, cli, make_model, tmp_path):
    make_model("models/bert", seed=1)
    version = cli("commit", "models/bert", "-m", "one").stdout.strip()
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "bert")
    other = _fetched_store(cli, tmp_path / "other", "origin", tmp_path / "remote")
    assert _fsck(cli, other)["promised"], "fetch brings metadata only"

    cli("-C", other, "tag", "bert", "v9.0.0", f"id={version}")
    report = _fsck(cli, other)
    assert report["ok"] and report["promised"] == []
    cli("-C", other, "channel", "set", "bert", "prod", "v9.0.0", "-m", "serve it")
    cli("-C", other, "checkout", "bert@prod", "--to", tmp_path / "served")
    with (
        open(tmp_path / "served" / "config.json", "rb") as served,
        open("models/bert/config.json", "rb") as original,
    ):
        assert served.read() == original.read()


def test_push_into_a_working_store_with_fetched_metadata_sends_the_data(
    store, cli, make_model, tmp_path
):
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "one")
    cli("remote", "add", "hub", f"file://{tmp_path / 'hub'}")
    cli("push", "hub", "bert")
    # The colleague has the version's metadata, no data.
    colleague = _fetched_store(cli, tmp_path / "colleague", "hub", tmp_path / "hub")

    cli("remote", "add", "colleague", str(colleague))
    cli("push", "colleague", "bert")
    report = _fsck(cli, colleague)
    assert report["ok"] and report["promised"] == [], report


def test_fetched_models_resolve_through_remote_tracking_names(store, cli, make_model, tmp_path):
    make_model("models/bert", seed=1)
    version = cli("commit", "models/bert", "-m", "one").stdout.strip()
    cli("tag", "bert", "v1.0.0")
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "bert")
    other = _fetched_store(cli, tmp_path / "other", "origin", tmp_path / "remote")

    assert cli("-C", other, "log", "bert@origin/main", "--json").json()[0]["id"] == version
    assert cli("-C", other, "show", "bert@origin/1.0.0", "--json").json()["id"] == version
    missing = cli("-C", other, "log", "bert", expect=1)
    assert "bert@origin/main" in missing.stderr and "mvc pull origin bert" in missing.stderr


def test_a_corrupt_object_is_repaired_by_quarantine_then_pull(store, cli, make_model, tmp_path):
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "one")
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "bert")
    objects = tmp_path / "work" / ".mvc" / "objects"
    biggest = max((p for p in objects.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[-1] ^= 0xFF
    biggest.write_bytes(bytes(data))

    damaged = cli("fsck", "--quarantine", "--json", expect=12).json()
    assert damaged["quarantined"] == [biggest.parent.name + biggest.name]
    assert not biggest.exists()
    cli("pull", "origin", "bert")
    assert cli("fsck", "--json").json()["ok"]
    cli("checkout", "bert@main", "--to", tmp_path / "again")


def test_gc_waits_for_quarantined_objects_to_be_repaired(store, cli, make_model, tmp_path):
    make_model("models/bert", seed=1)
    version = cli("commit", "models/bert", "-m", "one").stdout.strip()
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "bert")
    path = tmp_path / "work" / ".mvc" / "objects" / version[:2] / version[2:]
    path.write_bytes(path.read_bytes()[:-1] + b"!")  # the version object itself
    cli("fsck", "--quarantine", expect=12)
    assert cli("fsck", "--json", expect=12).json()["problems"]  # a ref's target is gone
    stopped = cli("gc", "--grace", "0s", expect=12)
    assert "gc stops" in stopped.stderr
    cli("pull", "origin", "bert")
    assert cli("fsck", "--json").json()["ok"]
    assert cli("gc", "--grace", "0s", "--json").json()["deleted"] == 0


def test_huge_numbers_on_the_command_line_are_kept_exactly(store, cli, make_model):
    make_model("models/bert", seed=1)
    big = "1" + "0" * 400
    cli("commit", "models/bert", "-m", "x", "--param", f"big={big}")
    assert cli("show", "bert", "--json").json()["params"]["big"] == int(big)


def test_diff_and_cat_bring_the_data_of_a_fetched_version(store, cli, make_model, tmp_path):
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "one")
    make_model("models/bert", seed=2)
    cli("commit", "models/bert", "-m", "two")
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "bert")
    other = _fetched_store(cli, tmp_path / "other", "origin", tmp_path / "remote")
    diff = cli("-C", other, "diff", "bert@origin/main~1", "bert@origin/main", "--json").json()
    assert diff["verdict"]
    with open("models/bert/model.safetensors", "rb") as handle:
        original = handle.read()
    cat = cli("-C", other, "cat", "bert@origin/main", "model.safetensors")
    assert cat.stdout_bytes == original
