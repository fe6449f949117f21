"""mvc's pre-commit hooks, run by the real ``pre-commit try-repo`` against a git repository the
test makes (pre-commit installs mvc from this checkout into its own environment, as a team's
``.pre-commit-config.yaml`` would). Under CI=true a missing pre-commit fails."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mvc.ops.checks import check_files

MVC_REPO = Path(__file__).resolve().parents[2]
# pre-commit builds a fresh environment for every try-repo; the user's pip cache keeps that to
# seconds (the suite's fixtures give tests a fresh HOME, which would empty it).
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or os.path.expanduser("~/.cache/pip")

pytestmark = pytest.mark.slow


def pre_commit() -> str:
    found = shutil.which("pre-commit") or shutil.which(
        "pre-commit", path=os.path.dirname(sys.executable)
    )
    if found is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("pre-commit is not installed (the test extra installs it)", pytrace=False)
        pytest.skip("pre-commit is not installed (pip install -e '.[test]' installs it)")
    return found


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def try_repo(cwd: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PIP_CACHE_DIR": PIP_CACHE,
        "PRE_COMMIT_HOME": str(cwd.parent / "pre-commit-home"),
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        [pre_commit(), "try-repo", str(MVC_REPO), "--files", *files],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def hook_outcomes(output: str) -> dict[str, str]:
    """{hook name: Passed/Failed/Skipped} from pre-commit's report lines."""
    outcomes = {}
    for line in output.splitlines():
        for word in ("Passed", "Failed", "Skipped"):
            if line.endswith(word) and "..." in line:
                outcomes[line.split("...")[0].rstrip(".")] = word
    return outcomes


@pytest.fixture
def project(tmp_path: Path, cli, make_model) -> Path:
    """A git repository with an mvc store, model bert committed at v1.0.0, and a current lock."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    cli("-C", root, "init")
    make_model(root / "models" / "bert")
    cli("-C", root, "commit", "models/bert", "-m", "v1")
    cli("-C", root, "tag", "bert", "v1.0.0")
    (root / "mvc.yaml").write_text("requires:\n  bert: ^1.0\n")
    cli("-C", root, "lock")
    (root / "README.md").write_text("serving bert\n")
    return root


def test_every_hook_passes_on_a_clean_project(project):
    git(project, "add", "README.md", "mvc.yaml", "mvc.lock")
    done = try_repo(project, "README.md", "mvc.yaml", "mvc.lock")
    outcomes = hook_outcomes(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(outcomes.values()) <= {"Passed", "Skipped"} and "Passed" in outcomes.values()


def test_each_hook_catches_its_problem(project, make_model):
    (project / "notes.txt").write_bytes(pickle.dumps({"optimizer": [1, 2, 3]}))
    (project / "broken.safetensors").write_bytes((64).to_bytes(8, "little") + b"{" * 64)
    (project / "mvc.yaml").write_text("requires:\n  bert: ^2.0\n")  # the lock is now stale
    make_model(project / "models" / "bert", seed=1)  # uncommitted changes in a model folder
    staged = ["notes.txt", "broken.safetensors", "models/bert/model.safetensors", "mvc.yaml"]
    git(project, "add", "-f", *staged)
    done = try_repo(project, *staged)
    report = done.stdout
    assert done.returncode == 1, report
    outcomes = hook_outcomes(report)
    assert outcomes["model folders committed (mvc status)"] == "Failed"
    assert outcomes["no pickle-based weights (by content)"] == "Failed"
    assert outcomes["safetensors headers are valid"] == "Failed"
    assert outcomes["no model weights in git"] == "Failed"
    assert outcomes["mvc.lock matches mvc.yaml and the store"] == "Failed"
    assert "notes.txt: a pickle" in report
    assert "broken.safetensors: malformed safetensors header" in report
    assert "models/bert/model.safetensors: model weights (safetensors" in report
    assert "bert@^2.0" in report


# --- the checks themselves, in-process -----------------------------------------------------------


def test_pickles_are_found_by_content_not_name(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps([1.0], protocol=2))
    (tmp_path / "innocent.txt").write_bytes(pickle.dumps("x", protocol=5))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "floats.npy", np.zeros(4, dtype=np.float32))
    (tmp_path / "raw.bin").write_bytes(np.zeros(16, dtype=np.float32).tobytes())
    result = check_files("pickle", [str(p) for p in sorted(tmp_path.iterdir())])
    assert result.checked == 5
    assert {Path(f.path).name for f in result.findings} == {
        "pytorch_model.bin",
        "innocent.txt",
        "objects.npy",
    }


def test_weights_and_large_files_are_kept_out_of_git(tmp_path):
    from safetensors.numpy import save_file

    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(tmp_path / "renamed.dat"))
    (tmp_path / "big.log").write_bytes(b"x" * 2048)
    (tmp_path / "small.txt").write_text("fine")
    result = check_files(
        "weights-in-git", [str(p) for p in sorted(tmp_path.iterdir())], max_bytes=1024
    )
    kinds = {Path(f.path).name: f.kind for f in result.findings}
    assert kinds == {"renamed.dat": "safetensors", "big.log": "large"}
