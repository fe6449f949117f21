"""Shared fixtures. Keep each group small and under its own heading.

Tests never reach the internet: S3 is moto's server on loopback, started once per session, and
for the cases that need a real S3 implementation, Ceph's RGW on loopback (tests/rgw.py).

The folders mirror the layers (docs/architecture.md):
  unit/         pure code: ids, canonical bytes, chunk plans, config parsing, the layer rules
  storage/      the one contract every storage backend passes (folder, fsspec memory, S3)
  integration/  use cases through a real store (ops, API, remotes, deployment), the frozen store
  cli/          the real entry point: exit codes, stdout/stderr, docs/cli.md, the installed package
  property/     hypothesis: round trips, and hostile bytes in -> only our own errors out
  data/         the frozen store of format 1 and the script that wrote it
Tests longer than a couple of seconds are marked ``slow`` (they still run in CI).
"""

from __future__ import annotations

import os
import secrets
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from hypothesis import settings
from once import isolate_environment

# --- bytecode for the processes tests start -------------------------------------------------------

# Where PYTHONDONTWRITEBYTECODE is set (it is on the machines this suite runs on), every
# `python -m mvc` a test starts would compile all of mvc from source again: 0.1-0.15 s of each
# of the suite's thousands of subprocesses. They keep their bytecode under one folder outside
# the tree instead (the source tree stays free of __pycache__, as that variable intends).
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    os.environ.setdefault(
        "PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), f"mvc-tests-pyc-{os.getuid()}")
    )

# --- hypothesis ------------------------------------------------------------------------------------

# The same examples on every run, and no per-example deadline: a busy 2-core machine stretches
# an example past hypothesis's 200 ms default, which would fail a property that holds.
settings.register_profile("mvc", derandomize=True, deadline=None, database=None)
settings.load_profile("mvc")

# --- Ctrl-C for the processes tests start ----------------------------------------------------------

# A suite started with SIGINT ignored (`pytest ... &` from a script: the shell ignores SIGINT in
# background jobs) would pass that on to every process it starts, and the Ctrl-C tests would
# wait for an exit that never comes. Python's own handler here gives children the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# --- S3 (moto server on loopback) -----------------------------------------------------------------

# Dummy credentials and no real AWS configuration, so nothing can reach a real account.
# AWS_ENDPOINT_URL_S3 points every S3 client (s3fs, boto3, a `mvc` subprocess) at moto.
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True)
class S3Remote:
    """A fresh bucket on the moto server: ``url`` plus the storage ``options`` to open it."""

    url: str
    bucket: str
    options: dict[str, str] = field(default_factory=dict)


def _atomic_conditional_writes(patch: pytest.MonkeyPatch) -> None:
    """Make moto's ``If-None-Match: *`` as atomic as S3's and RGW's.

    moto checks that the key is absent, then stores it, in whichever of its server's request
    threads runs the request, so two racing creates of one key can both succeed (seen in the
    racing-tag test: two pushes both landed the same tag). The tests race mvc, not moto: one
    lock around moto's writes of a key makes its check and its write one step, as S3 does.
    """
    import threading

    from moto.s3.responses import S3Response

    lock = threading.Lock()
    for name in ("put_object", "_key_response_post"):
        unlocked = getattr(S3Response, name)

        def locked(*args: Any, _unlocked: Any = unlocked, **kwargs: Any) -> Any:
            with lock:
                return _unlocked(*args, **kwargs)

        patch.setattr(S3Response, name, locked)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on 127.0.0.1, with dummy AWS credentials for the session."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        _atomic_conditional_writes(patch)
        for name, value in _AWS_ENV.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        patch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> Any:
    """A boto3 S3 client on the moto server, for setting up and inspecting buckets."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def s3_url(s3_endpoint: str, s3_client: Any) -> S3Remote:
    """A new, empty bucket; the store lives under ``s3://<bucket>/store``."""
    bucket = f"mvc-test-{secrets.token_hex(6)}"
    s3_client.create_bucket(Bucket=bucket)
    return S3Remote(f"s3://{bucket}/store", bucket, {"endpoint_url": s3_endpoint})


# --- S3 on Ceph RGW (a throwaway single-node cluster on loopback, tests/rgw.py) -------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


@pytest.fixture(scope="session")
def rgw_endpoint() -> Iterator[str]:
    """The URL of Ceph's radosgw on 127.0.0.1, over a one-OSD memstore cluster started for the
    session; its S3 user has the suite's dummy AWS credentials. Where Ceph is not installed or
    does not start, the test is skipped with the reason, except under CI=true (.ci/run
    installs it), where that fails the test."""
    from rgw import RgwCluster, RgwUnavailable

    try:
        cluster = RgwCluster.start(_AWS_ENV["AWS_ACCESS_KEY_ID"], _AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    except RgwUnavailable as exc:
        if _in_ci():
            pytest.fail(f"Ceph RGW did not start: {exc}", pytrace=False)
        pytest.skip(f"Ceph RGW unavailable: {str(exc).splitlines()[0]}")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in _AWS_ENV.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        try:
            yield cluster.endpoint
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def rgw_client(rgw_endpoint: str) -> Any:
    """A boto3 S3 client on RGW, for setting up and inspecting buckets."""
    import boto3

    return boto3.client("s3", endpoint_url=rgw_endpoint)


@pytest.fixture
def rgw_url(rgw_endpoint: str, rgw_client: Any) -> S3Remote:
    """A new, empty bucket on RGW; the store lives under ``s3://<bucket>/store``."""
    bucket = f"mvc-test-{secrets.token_hex(6)}"
    rgw_client.create_bucket(Bucket=bucket)
    return S3Remote(f"s3://{bucket}/store", bucket, {"endpoint_url": rgw_endpoint})


# --- local stores, model folders and the CLI ------------------------------------------------------


@pytest.fixture
def mvc_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Keep the user's real configuration out of the test: fresh HOME and XDG_CONFIG_HOME, no
    MVC_*/GIT_* variables, no progress bars. Returns the environment for subprocesses."""
    isolate_environment(monkeypatch, tmp_path_factory.mktemp("home"))
    return dict(os.environ)


@pytest.fixture
def store(tmp_path, mvc_env, monkeypatch: pytest.MonkeyPatch):
    """A fresh store at ``tmp_path/"work"`` with ``user.name`` set; the current folder is its root."""
    from mvc.repo import Repo

    root = tmp_path / "work"
    root.mkdir()
    repo = Repo.init(str(root))
    with repo.editing_config() as values:
        values["user.name"] = "Test User"
        values["core.fsync"] = False  # tests do not need durability against power loss
    monkeypatch.chdir(root)
    return Repo(str(root))


def _model_tensors(seed: int, scale: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    width = 64 * scale
    return {
        "embed.weight": rng.standard_normal((256, width)).astype(np.float32),
        "layer.0.weight": rng.standard_normal((width, width)).astype(np.float32),
        "layer.0.bias": rng.standard_normal(width).astype(np.float16),
        "head.weight": rng.standard_normal((width, 32)).astype(np.float32),
        "position_ids": np.arange(128, dtype=np.int64),
    }


def _write_model(path, seed: int = 0, *, scale: int = 1, extra: dict | None = None):
    """A small model folder (~150 KB at scale 1): weights, config.json and tokenizer.json."""
    import json
    import pathlib

    from safetensors.numpy import save_file

    folder = pathlib.Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        _model_tensors(seed, scale), str(folder / "model.safetensors"), metadata={"seed": str(seed)}
    )
    (folder / "config.json").write_text(
        json.dumps({"hidden_size": 64 * scale, "seed": seed}, indent=2) + "\n"
    )
    vocab = {f"tok{i}": i for i in range(200)}
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}}) + "\n")
    for rel, content in (extra or {}).items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


@pytest.fixture
def make_model():
    """``make_model(path, seed=0, scale=1, extra={rel: bytes|str})`` writes a model folder."""
    return _write_model


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes = b""

    def json(self):
        import json

        return json.loads(self.stdout)


class CliRunnerHelper:
    """Runs the real Typer app in-process; restores the current folder (``-C`` changes it).

    Like the ``mvc`` entry point, each run gets the app holding only the invoked command
    (``mvc.cli.main._narrowed``). Converting it to a click command (Typer inspects every
    signature and annotation) is the same for every run of that command, so it is done once
    per command and process, not on each of the suite's thousands of in-process runs.
    """

    _commands: ClassVar[dict[tuple[str | None, bool], Any]] = {}

    def __init__(self) -> None:
        from typer.testing import CliRunner

        self.runner = CliRunner()

    def _command(self, argv: list[str]) -> Any:
        import typer.main

        from mvc.cli.main import _invoked, _narrowed

        key = _invoked(argv)
        found = self._commands.get(key)
        if found is None:
            found = self._commands[key] = typer.main.get_command(_narrowed(argv))
        return found

    def _invoke(self, argv: list[str], env: dict | None, input: Any) -> Any:
        """``CliRunner.invoke`` on an already converted command: the same isolation, exit code
        and exception handling."""
        import sys

        from typer.testing import Result

        command = self._command(argv)
        exception: BaseException | None = None
        exit_code = 0
        with self.runner.isolation(input=input, env=env) as streams:
            try:
                command.main(args=argv, prog_name="mvc")
            except SystemExit as exc:
                code = 0 if exc.code is None else exc.code
                if code != 0:
                    exception = exc
                if not isinstance(code, int):
                    sys.stdout.write(f"{code}\n")
                    code = 1
                exit_code = code
            except Exception as exc:
                exception, exit_code = exc, 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                out, err, both = (stream.getvalue() for stream in streams)
        return Result(self.runner, out, err, both, None, exit_code, exception)

    def __call__(self, *args: str, expect: int | None = 0, env: dict | None = None, input=None):
        argv = [str(a) for a in args]
        cwd = os.getcwd()
        try:
            result = self._invoke(argv, env, input)
        finally:
            os.chdir(cwd)
        out = CliResult(result.exit_code, result.stdout, result.stderr, result.stdout_bytes)
        if expect is not None and result.exit_code != expect:
            detail = f"\nexception: {result.exception!r}" if result.exception else ""
            raise AssertionError(
                f"mvc {' '.join(map(str, args))} exited {result.exit_code}, expected {expect}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}{detail}"
            )
        return out


@pytest.fixture
def cli(mvc_env) -> CliRunnerHelper:
    """``cli("commit", "models/bert", "-m", "x")`` -> CliResult; asserts exit 0 unless ``expect``."""
    return CliRunnerHelper()


@pytest.fixture
def run_mvc(mvc_env):
    """Run ``python -m mvc ARGS`` as a subprocess (the installed entry point, a fresh process)."""
    import subprocess
    import sys

    def run(*args: str, cwd=None, env: dict | None = None, timeout: float = 60, **kwargs):
        return subprocess.run(
            [sys.executable, "-m", "mvc", *map(str, args)],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    return run


# --- deployment stores (tests/deployfix.py) -------------------------------------------------------


@pytest.fixture(scope="session")
def deploy_template(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A store with three tagged BERT versions and LoRA adapters, built once; never changed."""
    from deployfix import build_store

    return build_store(str(tmp_path_factory.mktemp("template") / "store"), adapters=True)


@pytest.fixture
def st(deploy_template: Any, tmp_path) -> Any:
    """A private copy of the template store (building one per test would be slower)."""
    import shutil

    from deployfix import ENV, Store

    from mvc.repo import Repo

    root = str(tmp_path / "store")
    shutil.copytree(deploy_template.root, root, symlinks=True)
    clock = type(deploy_template.clock)(deploy_template.clock.now)
    return Store(Repo(root, env=ENV, clock=clock), clock, root, dict(deploy_template.ids))


# --- a frozen clock for every store a test opens ---------------------------------------------------


class FrozenClock:
    """The time stands still until a test moves it (``advance``); every ``Repo`` a test opens
    reads it, so ages, cutoffs and last uses are exact."""

    def __init__(self, start: Any = None) -> None:
        from datetime import UTC, datetime

        self.now = start or datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> Any:
        return self.now

    def advance(self, days: float) -> None:
        from datetime import timedelta

        self.now += timedelta(days=days)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """A ``FrozenClock`` (2026-01-01 12:00 UTC) that every ``Repo`` opened in the test uses."""
    from mvc.repo import Repo

    frozen = FrozenClock()
    monkeypatch.setitem(Repo.__init__.__kwdefaults__, "clock", frozen)
    return frozen
