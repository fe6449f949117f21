"""The package as a user gets it: ``pip install .`` into a fresh venv, no test extras.

Catches a run-time dependency that only the test extras (or mypy) happened to pull in: every
import the installed ``mvc`` makes must come from its declared dependencies.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import venv
from collections.abc import Iterator

import pytest
from once import built_once

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def installed_mvc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """The ``bin`` folder of a new venv holding mvc installed by plain ``pip install <source>``,
    made once per run (the xdist workers share it; the tests only run what it holds).

    The source is copied first (what a build needs: pyproject.toml, README.md, mvc/), so the
    build writes nothing into the checkout and parallel runs cannot collide.
    """
    base = built_once(tmp_path_factory, "installed-mvc", _install)
    yield base / "venv" / ("Scripts" if os.name == "nt" else "bin")


# The user's pip cache keeps the install to seconds (the build runs with a fresh HOME).
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or os.path.expanduser("~/.cache/pip")


def _install(base: pathlib.Path) -> None:
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "mvc", source / "mvc", ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True, symlinks=os.name != "nt")
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    done = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(source)],
        cwd=base,
        env=_clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_CACHE_DIR=PIP_CACHE),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"pip install {source} failed:\n{done.stderr[-3000:]}"


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything pointing Python at the checkout."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not name.startswith("MVC_")
    }
    env["PYTHONNOUSERSITE"] = "1"
    return {**env, **extra}


def _run(bin_dir: pathlib.Path, *args: str, cwd: pathlib.Path, home: pathlib.Path):
    env = _clean_env(
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        MVC_NO_PROGRESS="1",
        NO_COLOR="1",
    )
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_venv_has_mvc_and_no_test_extras(installed_mvc: pathlib.Path, tmp_path) -> None:
    probe = (
        "import importlib.util, json, mvc, os\n"
        "print(json.dumps({'file': mvc.__file__, 'extras': [m for m in "
        "('pytest', 'hypothesis', 'safetensors', 'moto', 'mypy') "
        "if importlib.util.find_spec(m)], "
        "'typed': os.path.isfile(os.path.join(os.path.dirname(mvc.__file__), 'py.typed'))}))"
    )
    done = _run(installed_mvc, "python", "-c", probe, cwd=tmp_path, home=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert pathlib.Path(found["file"]).is_relative_to(installed_mvc.parent)
    assert found["extras"] == []
    assert found["typed"]  # PEP 561: type checkers read mvc's annotations (mypy, IDEs)
    assert str(ROOT) not in found["file"]


def test_installed_mvc_commits_with_an_mvcignore(installed_mvc: pathlib.Path, tmp_path) -> None:
    mvc = str(installed_mvc / "mvc")
    work = tmp_path / "work"
    model = work / "models" / "bert"
    model.mkdir(parents=True)
    (model / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (model / "config.json").write_text('{"hidden_size": 8}\n')
    (model / "notes.tmp").write_text("scratch\n")
    (model / ".mvcignore").write_text("*.tmp\n")

    def mvc_ok(*args: str) -> subprocess.CompletedProcess[str]:
        done = _run(installed_mvc, mvc, *args, cwd=work, home=tmp_path)
        assert done.returncode == 0, f"mvc {' '.join(args)}: {done.returncode}\n{done.stderr}"
        return done

    mvc_ok("init")
    mvc_ok("config", "set", "user.name", "Installed Test")
    mvc_ok("commit", "models/bert", "-m", "first", "--model", "bert")
    files = [
        entry["path"] for entry in json.loads(mvc_ok("show", "bert", "--json").stdout)["files"]
    ]
    assert sorted(files) == [".mvcignore", "config.json", "weights.bin"]
    assert "notes.tmp" not in mvc_ok("ls", "bert").stdout


def test_the_readme_quickstart_runs_on_the_installed_package(
    installed_mvc: pathlib.Path, tmp_path
) -> None:
    """README's first command, ``pip install . && bash examples/quickstart.sh``, stays true."""
    bash = shutil.which("bash")
    assert bash, "the quickstart is a bash script"
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    done = subprocess.run(
        [bash, str(ROOT / "examples" / "quickstart.sh")],
        cwd=tmp_path,
        env=_clean_env(
            PATH=f"{installed_mvc}{os.pathsep}{os.environ.get('PATH', '')}",
            HOME=str(tmp_path),
            XDG_CONFIG_HOME=str(tmp_path / ".config"),
            TMPDIR=str(env_tmp),
            MVC_NO_PROGRESS="1",
            NO_COLOR="1",
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"quickstart failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "blake3 of the checked-out file matches the version" in done.stdout
