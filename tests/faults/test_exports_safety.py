"""Export and checkout safety: never through a symlink, never wedged by a kill, no temp left.

Every export format writes through one sink, so each case runs for every format: the layout a
clean export makes is learnt first, then the hostile destination is built from it.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from _worktree_helpers import deploy, files_under, run_killed

from mvc.exports import FORMATS

M, C = "bert", "prod"


def _export(cli, fmt: str, dest, expect: int | None = 0):
    return cli("export", M, C, "--format", fmt, "--to", dest, expect=expect)


def _layout(cli, fmt: str, tmp_path) -> dict[str, bytes]:
    probe = tmp_path / f"probe-{fmt}"
    _export(cli, fmt, probe)
    return files_under(probe)


def _model_folder(layout: dict[str, bytes]) -> str:
    """The folder (relative) of the exported model files: where a planted link would bite."""
    model = next(k for k in sorted(layout) if k.endswith("model.safetensors"))
    return os.path.dirname(model)


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_refuses_a_symlinked_folder_in_its_destination(
    store, cli, make_model, tmp_path, fmt
) -> None:
    deploy(cli, make_model, mlflow=fmt == "mlflow")
    layout = _layout(cli, fmt, tmp_path)
    if not any(k.endswith("model.safetensors") for k in layout):
        pytest.fail(f"{fmt} export wrote no model files: {sorted(layout)}")
    folder = _model_folder(layout)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    link = dest / folder
    link.parent.mkdir(parents=True)
    link.symlink_to(outside, target_is_directory=True)
    # A manifest from "an earlier export", so the destination is not refused as foreign.
    (dest / "mvc-export.json").write_text(json.dumps({"format": 1, "files": {}}))
    failed = _export(cli, fmt, dest, expect=1)
    assert "symlink" in failed.stderr and "Traceback" not in failed.stderr
    assert os.listdir(outside) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_planted_manifest_never_deletes_outside(store, cli, make_model, tmp_path, fmt) -> None:
    deploy(cli, make_model, mlflow=fmt == "mlflow")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old").symlink_to(outside, target_is_directory=True)
    planted = {"format": 1, "files": {"old/precious.txt": "0" * 64}}
    (dest / "mvc-export.json").write_text(json.dumps(planted))
    failed = _export(cli, fmt, dest, expect=1)
    assert "symlink" in failed.stderr and "old" in failed.stderr
    assert (outside / "precious.txt").read_text() == "keep me"


def test_a_symlinked_manifest_is_refused(store, cli, make_model, tmp_path) -> None:
    deploy(cli, make_model)
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"format": 1, "files": {}}))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mvc-export.json").symlink_to(outside)
    failed = _export(cli, "dir", dest, expect=1)
    assert "mvc-export.json" in failed.stderr and "symlink" in failed.stderr
    assert json.loads(outside.read_text()) == {"format": 1, "files": {}}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_killed_first_export_can_be_rerun(store, cli, make_model, tmp_path, fmt) -> None:
    deploy(cli, make_model, size=3 << 20, mlflow=fmt == "mlflow")
    layout = _layout(cli, fmt, tmp_path)
    dest = tmp_path / "dest"
    killed = run_killed(
        ["export", M, C, "--format", fmt, "--to", dest], kill_in="export", cwd=store.root, dest=dest
    )
    assert killed.returncode == -9, killed.stderr
    assert os.path.isdir(dest) and os.listdir(dest)  # the kill left something behind
    out = _export(cli, fmt, dest)
    assert "Traceback" not in out.stderr
    after = files_under(dest)
    assert set(after) == set(layout)
    probe = str(tmp_path / f"probe-{fmt}").encode()
    for key, data in layout.items():  # configs name their folder: compare them with it replaced
        if key != "mvc-export.json":
            assert after[key] == data.replace(probe, str(dest).encode()), key
    manifest = json.loads(after["mvc-export.json"])
    assert "complete" not in manifest and "pending" not in manifest
    assert not [k for k in after if os.path.basename(k).startswith(".tmp-")]


def test_a_rerun_after_a_kill_still_refuses_foreign_files(store, cli, make_model, tmp_path):
    deploy(cli, make_model, size=3 << 20)
    dest = tmp_path / "dest"
    run_killed(
        ["export", M, C, "--format", "dir", "--to", dest],
        kill_in="export",
        cwd=store.root,
        dest=dest,
    )
    # Somebody's file, where the export will write later: not in the killed run's intent.
    (dest / "routing.json").write_text("mine")
    failed = _export(cli, "dir", dest, expect=2)
    assert "routing.json" in failed.stderr
    assert (dest / "routing.json").read_text() == "mine"


# --- checkout temp files ----------------------------------------------------------------------

_TEMP = re.compile(r"^\.mvc-tmp-")


def _temps(folder) -> list[str]:
    return [k for k in files_under(folder) if _TEMP.match(os.path.basename(k))]


@pytest.mark.parametrize("next_command", ["status", "checkout", "commit"])
def test_a_killed_checkout_leaves_no_temp_files_after_the_next_command(
    store, cli, make_model, tmp_path, next_command
) -> None:
    folder = make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "v1")
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "v2")
    before = files_under(folder)
    killed = run_killed(["checkout", "bert@main~1"], kill_in="checkout", cwd=store.root)
    assert killed.returncode == -9, killed.stderr
    assert _temps(folder), "the kill should have left a staged temp file"
    assert {k: v for k, v in files_under(folder).items() if not _TEMP.match(k)} == before
    if next_command == "status":
        state = cli("status", "--json").json()[0]
        assert not state["added"] and not state["modified"] and not state["removed"]
    elif next_command == "commit":
        (folder / "notes.txt").write_text("new")
        cli("commit", "models/bert", "-m", "v3")
        listed = cli("ls", "bert").stdout
        assert ".mvc-tmp" not in listed and "notes.txt" in listed
    else:
        cli("checkout", "bert@main~1")
    assert _temps(folder) == []


def test_temp_files_of_a_live_checkout_are_left_alone(store, cli, make_model) -> None:
    folder = make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "v1")
    live = folder / f".mvc-tmp-{os.getpid()}-0123456789ab"  # this process is running
    dead = folder / ".mvc-tmp-99999999-0123456789ab"  # no process has this id
    lookalike = folder / ".mvc-tmp-notes.txt"  # not mvc's pattern: the user's file
    for path in (live, dead, lookalike):
        path.write_text("x")
    cli("status")
    assert live.exists() and lookalike.exists() and not dead.exists()


def test_a_refused_export_removes_no_temp_files(store, cli, make_model, tmp_path) -> None:
    """Temp files are cleaned only in a folder known to be an export's: never in, say, a
    folder holding a store whose commit is writing right now."""
    deploy(cli, make_model)
    dest = tmp_path / "somebodys"
    (dest / ".mvc" / "objects").mkdir(parents=True)
    live = dest / ".mvc" / "objects" / ".tmp-0123456789abcdef"
    beside = dest / ".tmp-0123456789abcdef"
    for path in (live, beside):
        path.write_text("being written")
    (dest / "notes.txt").write_text("mine")
    _export(cli, "dir", dest, expect=2)
    assert live.exists() and beside.exists()
