"""Test data built once per run and shared by the xdist workers (``from once import built_once``)."""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import Callable

import pytest


def isolate_environment(patch: pytest.MonkeyPatch, home: pathlib.Path) -> None:
    """Keep the user's real configuration out: a fresh HOME and XDG_CONFIG_HOME, no MVC_* or
    GIT_* variables, no system git config, no progress bars, no colour."""
    for variable in list(os.environ):
        if variable.startswith(("MVC_", "GIT_")):
            patch.delenv(variable)
    patch.setenv("HOME", str(home))
    patch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    patch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    patch.setenv("MVC_NO_PROGRESS", "1")
    patch.setenv("NO_COLOR", "1")


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[pathlib.Path], None]
) -> pathlib.Path:
    """The folder ``build(folder)`` fills, made once per test run: the first xdist worker to
    ask builds it, under a file lock, in the folder the workers' temp folders share (the
    pytest-xdist pattern); the others wait for it and reuse it. Treat it as read-only: copy
    it (``shutil.copytree(..., symlinks=True)``) before changing anything. The build runs with
    a fresh HOME and no MVC_*/GIT_* variables, as tests do (the ``mvc_env`` fixture)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's folder, above popen-gw0, popen-gw1, ...
    folder = pathlib.Path(base) / f"built-once-{name}"
    with FileLock(f"{folder}.lock"):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a half-built one: its builder failed
            folder.mkdir()
            with pytest.MonkeyPatch.context() as patch:
                home = pathlib.Path(f"{folder}.home")
                home.mkdir(exist_ok=True)
                isolate_environment(patch, home)  # as tests run: no user configuration
                build(folder)
            (folder / ".built").touch()
    return folder
