"""examples/ci: the pipeline both CI examples run, driven end to end against a folder remote,
and the workflow files themselves checked for what they rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"

pytestmark = pytest.mark.slow


def pipeline(
    work: Path, remote: Path, seed: int, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    bin_dir = os.path.dirname(sys.executable)  # `mvc` and `python` of this environment
    return subprocess.run(
        ["bash", str(EXAMPLES / "pipeline.sh")],
        cwd=work,
        env={
            **env,
            "PATH": f"{bin_dir}:{env.get('PATH', '')}",
            "REMOTE_URL": str(remote),
            "SEED": str(seed),
            "MODEL": "tiny-bert",
            "CHANNEL": "prod",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_two_runs_release_then_canary_and_the_guard_waits_for_traffic(tmp_path, mvc_env):
    remote = tmp_path / "team-remote"
    first_runner, second_runner = tmp_path / "runner-1", tmp_path / "runner-2"
    for runner in (first_runner, second_runner):  # each a checkout of the model's repository
        runner.mkdir()
        (runner / "mvc.yaml").write_bytes((EXAMPLES / "mvc.yaml").read_bytes())
    first = pipeline(first_runner, remote, 1, mvc_env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "tagged v1.0.0" in first.stdout and "released v1.0.0 on prod" in first.stdout
    # a fresh runner: the history comes from the remote, the new version is a canary
    second = pipeline(second_runner, remote, 2, mvc_env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "not enough traffic yet" in second.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "mvc", "channel", "show", "tiny-bert", "prod", "--json"],
        cwd=second_runner,
        capture_output=True,
        text=True,
        env=mvc_env,
        check=True,
    )
    roles = {arm["role"]: arm["weight"] for arm in json.loads(shown.stdout)["arms"]}
    assert roles == {"stable": 90, "canary": 10}
    log = subprocess.run(
        [sys.executable, "-m", "mvc", "log", "tiny-bert", "--json"],
        cwd=second_runner,
        capture_output=True,
        text=True,
        env=mvc_env,
        check=True,
    )
    assert len(json.loads(log.stdout)) == 2  # the second run's version has the first as parent


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_workflows_run_the_pipeline_and_treat_21_as_wait(name):
    text = (EXAMPLES / name).read_text()
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    assert "examples/ci/pipeline.sh" in text
    assert "mvc guard" in text and "21" in text
