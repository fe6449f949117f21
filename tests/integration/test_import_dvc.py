"""``mvc import dvc`` against real DVC projects made by the real ``dvc`` (the test extra installs
it; under CI=true a missing dvc fails instead of skipping)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from once import built_once

from mvc.errors import InvalidInput
from mvc.formats.dvc import Md5Check, parse_listing, parse_outs

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Data Scientist",
    "GIT_AUTHOR_EMAIL": "ds@example.com",
    "GIT_COMMITTER_NAME": "Data Scientist",
    "GIT_COMMITTER_EMAIL": "ds@example.com",
    "DVC_NO_ANALYTICS": "1",
}


def _need_dvc() -> None:
    try:
        import dvc  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            raise  # CI installs dvc (the test extra): missing is a failure
        pytest.skip("dvc is not installed (pip install -e '.[test]' installs it)")


def run(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        args, cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{args} failed: {done.stderr}"
    return done.stdout.strip()


def dvc(cwd: Path, *args: str) -> str:
    return run(cwd, sys.executable, "-m", "dvc", *args)


def _build_project(root: Path) -> None:
    """A git + DVC project with ``models/bert`` added to DVC and committed to git, and a store."""
    (root / "models" / "bert").mkdir(parents=True)
    run(root, "git", "init", "-q")
    dvc(root, "init", "-q")
    bert = root / "models" / "bert"
    (bert / "config.json").write_text('{"hidden_size": 8}\n')
    (bert / "sub").mkdir()
    (bert / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 40)
    dvc(root, "add", "-q", "models/bert")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-q", "-m", "pin bert v1")
    run(root, sys.executable, "-m", "mvc", "init")


@pytest.fixture(scope="session")
def project_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project, made once per run (dvc's start-up makes it seconds); tests get copies."""
    _need_dvc()
    return built_once(tmp_path_factory, "dvc-project", _build_project)


@pytest.fixture
def project(project_template: Path, tmp_path: Path, mvc_env) -> Path:
    """A private copy of a git + DVC project with ``models/bert`` added to DVC and committed to
    git, and an mvc store at its root."""
    root = tmp_path / "project"
    shutil.copytree(project_template, root, symlinks=True, ignore=shutil.ignore_patterns(".built"))
    return root


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_a_dvc_added_folder_imports_byte_identical_with_its_git_pin(project, run_mvc):
    done = run_mvc("import", "dvc", "models/bert.dvc", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["commit"]["model"] == "bert"
    head = run(project, "git", "rev-parse", "HEAD")
    assert result["mapped"]["git_commit"] == head
    shown = json.loads(run_mvc("show", "bert", "--json", cwd=project).stdout)
    dvc_facts = shown["lineage"]["dvc"]
    assert dvc_facts["file"] == "models/bert.dvc" and dvc_facts["git_commit"] == head
    assert dvc_facts["md5"].endswith(".dir")
    out = project / "checked-out"
    assert run_mvc("checkout", "bert", "--to", str(out), cwd=project).returncode == 0
    assert files_of(out) == files_of(project / "models" / "bert")


def test_rev_imports_what_an_older_commit_pinned(project, run_mvc):
    old = files_of(project / "models" / "bert")
    (project / "models" / "bert" / "config.json").write_text('{"hidden_size": 16}\n')
    dvc(project, "add", "-q", "models/bert")
    run(project, "git", "commit", "-q", "-am", "pin bert v2")
    first = run_mvc(
        "import", "dvc", "models/bert", "--rev", "HEAD~1", "--model", "old", cwd=project
    )
    assert first.returncode == 0, first.stderr
    assert run_mvc("checkout", "old", "--to", str(project / "old"), cwd=project).returncode == 0
    assert files_of(project / "old") == old
    shown = json.loads(run_mvc("show", "old", "--json", cwd=project).stdout)
    assert shown["lineage"]["dvc"]["git_commit"] == run(project, "git", "rev-parse", "HEAD~1")


def test_an_uncommitted_dvc_file_is_recorded_as_such(project, run_mvc):
    (project / "models" / "bert" / "config.json").write_text('{"hidden_size": 32}\n')
    dvc(project, "add", "-q", "models/bert")  # not committed to git
    result = json.loads(run_mvc("import", "dvc", "models/bert.dvc", "--json", cwd=project).stdout)
    assert result["mapped"]["uncommitted"] is True


def test_a_dvc_lock_stage_output_brings_params_and_deps(project, run_mvc):
    (project / "params.yaml").write_text("lr: 0.01\nepochs: 3\n")
    (project / "data.txt").write_text("training data\n")
    (project / "train.py").write_text(
        "import os\nos.makedirs('out', exist_ok=True)\n"
        "open('out/model.bin','wb').write(open('data.txt','rb').read() * 3)\n"
    )
    dvc(
        project,
        "stage",
        "add",
        "-q",
        "-n",
        "train",
        "-p",
        "lr,epochs",
        "-d",
        "data.txt",
        "-d",
        "train.py",
        "-o",
        "out",
        f"{sys.executable} train.py",
    )
    dvc(project, "repro", "-q")
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-q", "-m", "train")
    done = run_mvc("import", "dvc", "out", "--model", "trained", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    shown = json.loads(run_mvc("show", "trained", "--json", cwd=project).stdout)
    assert shown["params"] == {"lr": 0.01, "epochs": 3}
    assert shown["lineage"]["dvc"]["stage"] == "train"
    deps = {d["name"]: d for d in shown["lineage"]["datasets"]}
    assert deps["data.txt"]["hash"] == "md5:" + hashlib.md5(b"training data\n").hexdigest()
    assert run_mvc("cat", "trained", "model.bin", cwd=project).stdout == "training data\n" * 3


def _cache_file(project: Path, content: bytes) -> Path:
    md5 = hashlib.md5(content).hexdigest()
    return project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def test_a_damaged_cache_object_is_refused_and_nothing_is_committed(project, run_mvc):
    weights = (project / "models" / "bert" / "sub" / "weights.bin").read_bytes()
    cached = _cache_file(project, weights)
    os.chmod(cached, 0o644)
    cached.write_bytes(weights[:-1] + b"X")
    done = run_mvc("import", "dvc", "models/bert.dvc", cwd=project)
    assert done.returncode == 1
    assert "does not match its md5" in done.stderr and "sub/weights.bin" in done.stderr
    assert "Traceback" not in done.stderr
    assert run_mvc("log", "bert", cwd=project).returncode == 1  # no such model


def test_a_missing_cache_object_says_to_pull_it(project, run_mvc):
    weights = (project / "models" / "bert" / "sub" / "weights.bin").read_bytes()
    _cache_file(project, weights).unlink()
    done = run_mvc("import", "dvc", "models/bert.dvc", cwd=project)
    assert done.returncode == 1
    assert "is not in the cache" in done.stderr and "dvc pull" in done.stderr


def test_a_path_dvc_does_not_track_is_not_found(project, run_mvc):
    (project / "loose").mkdir()
    done = run_mvc("import", "dvc", "loose", cwd=project)
    assert done.returncode == 1 and "not tracked by DVC" in done.stderr


# --- the file formats, pure ----------------------------------------------------------------------


def test_parse_outs_names_file_and_line():
    with pytest.raises(InvalidInput, match=r"bert.dvc:2: output md5 'nope'"):
        parse_outs("outs:\n- md5: nope\n  path: bert\n", "bert.dvc")
    with pytest.raises(InvalidInput, match="not a relative path"):
        parse_outs("outs:\n- md5: " + "a" * 32 + "\n  path: ../../etc\n", "x.dvc")


@pytest.mark.parametrize("rel", ["../escape", "/abs", "a/../../b", "a\\b", ""])
def test_listing_paths_that_leave_the_folder_are_refused(rel):
    listing = json.dumps([{"md5": "a" * 32, "relpath": rel}]).encode()
    with pytest.raises(InvalidInput, match="unsafe or repeated"):
        parse_listing(listing, "x.dir")


def test_dvc2_text_files_match_their_crlf_to_lf_md5():
    text = b"line one\r\nline two\r\n"
    unix_md5 = hashlib.md5(text.replace(b"\r\n", b"\n")).hexdigest()
    for split in range(len(text) + 1):  # a CRLF cut between two blocks still counts
        check = Md5Check(legacy=True)
        check.update(text[:split])
        check.update(text[split:])
        assert check.matches(unix_md5)
    strict = Md5Check(legacy=False)
    strict.update(text)
    assert not strict.matches(unix_md5)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"plain\nunix\n",
        b"dos\r\nlines\r\n" * 100,
        b"text first\r\n" * 60 + b"\0 a NUL after the first 512 bytes\r\n",
        b"\0binary at once\r\n" * 50,
        bytes(range(256)) * 8 + b"\r\n",  # mostly non-text: binary to DVC
        "ünïcödé\r\n".encode() * 40,  # non-ASCII, but under 30%
        b"\r" * 700,  # a lone CR at every block edge
    ],
)
def test_dvc2_text_rule_agrees_with_dvc_data(content, tmp_path):
    """A DVC 2 (``md5-dos2unix``) digest made by dvc-data itself is accepted, whatever the
    file holds; and the plain md5 is accepted too."""
    from dvc_data.hashfile.hash import file_md5

    path = tmp_path / "f"
    path.write_bytes(content)
    dvc2 = file_md5(str(path), name="md5-dos2unix")
    for block in (1, 7, 512, 1 << 20):
        check = Md5Check(legacy=True)
        for start in range(0, len(content), block):
            check.update(content[start : start + block])
        assert check.matches(dvc2), (block, content[:20])
        assert check.matches(hashlib.md5(content).hexdigest())
