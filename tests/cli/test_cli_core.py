"""The everyday commands through the real entry point: exit codes, stdout vs stderr, --json shapes.

``--json`` shapes are checked as "at least these keys, with these values": adding a field is
compatible, removing or renaming one is not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import blake3
import pytest

from mvc.errors import (
    EXIT_CONFLICT,
    EXIT_CORRUPT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NO_STORE,
    EXIT_OK,
    EXIT_USAGE,
)

FULL_ID = re.compile(r"^[0-9a-f]{64}$")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ANSI = re.compile(r"\x1b\[")


@pytest.fixture
def bert(store, cli, make_model):
    """A store with model ``bert`` at ``models/bert``: two versions on main."""
    make_model("models/bert", seed=0)
    v1 = cli("commit", "models/bert", "-m", "baseline").stdout.strip()
    make_model("models/bert", seed=1)
    v2 = cli(
        "commit",
        "models/bert",
        "-m",
        "retrained\n\nlonger text",
        "--param",
        "lr=2e-5",
        "--param",
        "epochs=3",
        "--param",
        "opt=adam",
        "--metric",
        "accuracy=0.913",
    ).stdout.strip()
    return v1, v2


def b3_of(path) -> str:
    return blake3.blake3(Path(path).read_bytes()).hexdigest()


# --- help, version, start-up imports ----------------------------------------------------------


def test_help_and_version(cli) -> None:
    result = cli("--help")
    for command in (
        "init",
        "commit",
        "status",
        "log",
        "show",
        "ls",
        "cat",
        "checkout",
        "branch",
        "tag",
        "models",
        "config",
        "fsck",
        "gc",
        "shell-init",
    ):
        assert command in result.stdout
    assert cli("--version").stdout.strip() == "mvc 0.1.0"
    assert cli("commit", "--help").stdout.count("--message") == 1
    assert cli("no-such-command", expect=EXIT_USAGE).stdout == ""
    assert cli("status", "--no-such-flag", expect=EXIT_USAGE).stdout == ""


IMPORT_PROBE = textwrap.dedent(
    """
    import json, sys
    from mvc.cli.main import app

    HEAVY = ("numpy", "fsspec", "safetensors")
    found = {}
    for args in json.loads(sys.argv[1]):
        try:
            app(args, prog_name="mvc")
        except SystemExit as exc:
            assert exc.code in (0, None), (args, exc.code)
        found[" ".join(args)] = sorted(m for m in HEAVY if m in sys.modules)
    print(json.dumps(found), file=sys.stderr)
    """
)


def test_help_version_and_status_import_nothing_heavy(store, cli, make_model, tmp_path) -> None:
    folder = make_model("models/bert")
    cli("commit", "models/bert", "-m", "v1")
    probe = tmp_path / "probe.py"
    probe.write_text(IMPORT_PROBE)

    def run(*commands: list[str]) -> dict:
        done = subprocess.run(
            [sys.executable, str(probe), json.dumps(commands)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stderr.strip().splitlines()[-1])

    assert run(["--help"]) == {"--help": []}
    assert run(["--version"]) == {"--version": []}
    assert run(["status"]) == {"status": []}
    # a changed safetensors file has to be hashed: still no numpy or safetensors
    (folder / "model.safetensors").write_bytes(
        (folder / "model.safetensors").read_bytes()[:-4] + b"abcd"
    )
    (folder / "new.bin").write_bytes(b"x" * 1000)
    assert run(["status", "--json"]) == {"status --json": []}


def test_checkout_loads_no_gate_or_metric_code(store, cli, make_model, tmp_path) -> None:
    """A checkout checks deprecations (``ops.deprecation``) without loading the gates, facts
    and metric recorder of ``ops.lifecycle`` (~30 ms of every checkout's start-up) or the
    policy file's parsers."""
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "v1")
    probe = textwrap.dedent(
        """
        import sys
        from mvc.cli.main import app

        try:
            app(["checkout", "bert", "--to", sys.argv[1]], prog_name="mvc")
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        unwanted = (
            "mvc.ops.lifecycle",
            "mvc.ops.metrics",
            "mvc.metrics.recorder",
            "mvc.policy.gates",  # the policy file's parsers: none without an mvc.yaml
            "secrets",  # it loads OpenSSL
        )
        print(sorted(m for m in unwanted if m in sys.modules), file=sys.stderr)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_python_dash_m_and_console_script(store, run_mvc) -> None:
    done = run_mvc("--version")
    assert done.returncode == 0 and done.stdout == "mvc 0.1.0\n" and done.stderr == ""
    done = run_mvc("status", cwd="/")
    assert done.returncode == EXIT_NO_STORE and done.stdout == ""
    assert "mvc init" in done.stderr and "Traceback" not in done.stderr


# --- init --------------------------------------------------------------------------------------


def test_init(tmp_path, cli, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("init")
    assert result.stdout == "" and "Initialised" in result.stderr
    assert Path(".mvc/format").read_text() == "mvc store format 1\n"
    again = cli("init", expect=EXIT_ERROR)
    assert "already exists" in again.stderr and again.stdout == ""
    made = cli("init", "sub", "--json").json()
    assert made == {"store": str(tmp_path / "sub" / ".mvc"), "gitignore": None}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_init_in_a_git_work_tree_ignores_the_store(tmp_path, cli, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q", "."], check=True)
    Path(".gitignore").write_text("*.pyc")  # no trailing newline
    made = cli("init", "proj", "--json").json()
    assert made["gitignore"] == str(tmp_path / ".gitignore")
    lines = Path(".gitignore").read_text().splitlines()
    assert lines[0] == "*.pyc" and "/proj/.mvc/" in lines
    cli("init", "other")
    assert Path(".gitignore").read_text().count("/proj/.mvc/") == 1


# --- commit ------------------------------------------------------------------------------------


def test_commit_prints_only_the_version_id(store, cli, make_model) -> None:
    make_model("models/bert")
    result = cli("commit", "models/bert", "-m", "baseline")
    assert FULL_ID.match(result.stdout.strip()) and result.stdout.count("\n") == 1
    assert "bert@main" in result.stderr and not ANSI.search(result.stderr)
    binding = json.loads(Path(".mvc/worktrees/bert.json").read_text())
    assert binding == {
        "model": "bert",
        "path": "models/bert",
        "branch": "main",
        "version": result.stdout.strip(),  # what the folder holds now
    }


def test_commit_with_nothing_changed(store, cli, bert) -> None:
    result = cli("commit", "models/bert", "-m", "again")
    assert result.stdout == "" and "nothing changed" in result.stderr
    data = cli("commit", "models/bert", "-m", "again", "--json").json()
    assert data["created"] is False and data["version"] is None and data["parent"] == bert[1]
    assert len(cli("log", "bert", "--json").json()) == 2
    forced = cli("commit", "models/bert", "-m", "marker", "--allow-empty").stdout.strip()
    assert FULL_ID.match(forced)


def test_commit_json_shape(store, cli, make_model) -> None:
    make_model("models/bert")
    data = cli("commit", "models/bert", "-m", "v1", "--json").json()
    assert {
        "model",
        "branch",
        "created",
        "version",
        "parent",
        "added",
        "modified",
        "removed",
        "hashed_files",
        "hashed_bytes",
        "new_chunks",
        "new_bytes",
        "bound",
    } <= set(data)
    assert data["model"] == "bert" and data["branch"] == "main" and data["created"] is True
    assert FULL_ID.match(data["version"]) and data["parent"] is None and data["bound"] is True
    assert data["added"] == ["config.json", "model.safetensors", "tokenizer.json"]
    assert data["hashed_files"] == 3 and data["new_chunks"] >= 7  # header + 5 tensors + 2 files


def test_commit_records_metadata(store, cli, bert, tmp_path) -> None:
    v1, v2 = bert
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text('{"loss": 0.25, "accuracy": 0.5}')
    shown = cli("show", "bert", "--json").json()
    assert shown["id"] == v2 and shown["parents"] == [v1]
    assert shown["params"] == {"lr": 2e-05, "epochs": 3, "opt": "adam"}
    assert shown["metrics"] == {"accuracy": 0.913}
    assert shown["author"] == "Test User" and TIME.match(shown["time"])
    assert shown["message"] == "retrained\n\nlonger text"
    assert shown["git"] is None  # not inside a git work tree
    Path("models/bert/config.json").write_text("{}")
    cli("commit", "models/bert", "-m", "m", "--metrics", str(metrics_file), "--metric", "loss=0.5")
    assert cli("show", "bert", "--json").json()["metrics"] == {"loss": 0.5, "accuracy": 0.5}


@pytest.mark.parametrize(
    "args",
    [
        ["--metric", "accuracy=high"],
        ["--metric", "accuracy"],
        ["--param", "=3"],
        ["--branch", "bad..name"],
        ["--model", "bad name"],
    ],
)
def test_commit_usage_errors(store, cli, make_model, args) -> None:
    make_model("models/bert")
    result = cli("commit", "models/bert", "-m", "v1", *args, expect=EXIT_USAGE)
    assert result.stdout == "" and result.stderr.startswith("error: ")
    assert not Path(".mvc/refs/heads/bert").exists()


@pytest.mark.parametrize(
    "args",
    [["--metrics", "missing.json"], ["--dataset", "squad=no/such/folder"], ["--base", "./nope"]],
)
def test_a_missing_file_is_exit_1_like_everywhere(store, cli, make_model, args) -> None:
    """docs/exit-codes.md: a file or folder that is not there is an error (1), not a usage one."""
    make_model("models/bert")
    result = cli("commit", "models/bert", "-m", "v1", *args, expect=EXIT_ERROR)
    assert result.stdout == "" and result.stderr.startswith("error: ")
    assert not Path(".mvc/refs/heads/bert").exists()
    assert cli("diff", "./no-such-folder", expect=EXIT_ERROR).stderr.startswith("error: ")


def test_commit_names_the_model_after_the_folder_or_asks(store, cli, make_model) -> None:
    make_model("models/my model")
    result = cli("commit", "models/my model", "-m", "v1", expect=EXIT_USAGE)
    assert "--model" in result.stderr
    cli("commit", "models/my model", "--model", "team/mine", "-m", "v1")
    assert cli("models", "--json").json()[0]["model"] == "team/mine"
    assert cli("log", "team/mine", "--json").json()[0]["message"] == "v1"


def test_commit_of_a_single_file(store, cli, make_model) -> None:
    folder = make_model("models/bert")
    cli("commit", str(folder / "model.safetensors"), "-m", "weights only")
    assert cli("ls", "model").stdout.split() == ["model.safetensors"]
    assert cli("models", "--json").json()[0]["path"] is None  # a file is never a working folder


def test_commit_from_another_folder_builds_on_the_branch_without_moving_the_binding(
    store, cli, bert, make_model
) -> None:
    _v1, v2 = bert
    make_model("out/run-17", seed=7)
    run = cli("commit", "out/run-17", "--model", "bert", "-m", "nightly", "--json").json()
    assert run["parent"] == v2 and run["bound"] is False
    state = cli("status", "--json").json()[0]
    # The folder still holds v2 and is clean; the branch moved on without it.
    assert state["path"] == "models/bert" and state["version"] == v2 and state["clean"]
    assert state["behind"] and state["branch_tip"] == run["version"]
    make_model("out/run-18", seed=8)
    bound = cli("commit", "out/run-18", "--model", "bert", "-m", "n2", "--bind", "--json").json()
    assert bound["bound"] is True
    assert cli("status", "--json").json()[0]["path"] == "out/run-18"


def test_detached_head_needs_a_branch_to_commit(store, cli, bert) -> None:
    v1, v2 = bert
    checkout = cli("checkout", "bert@main~1", "--json").json()
    assert checkout["branch"] is None and checkout["version"] == v1 and checkout["bound"] is True
    status = cli("status", "--json").json()[0]
    assert status["branch"] is None and status["version"] == v1 and status["clean"]
    assert "detached at" in cli("status").stdout
    Path("models/bert/config.json").write_text('{"fix": true}\n')
    refused = cli("commit", "models/bert", "-m", "fix", expect=EXIT_USAGE)
    assert "--branch" in refused.stderr and refused.stdout == ""
    taken = cli("commit", "models/bert", "-m", "fix", "--branch", "main", expect=EXIT_CONFLICT)
    assert "main" in taken.stderr
    fix = cli("commit", "models/bert", "-m", "fix", "--branch", "hotfix").stdout.strip()
    assert cli("log", "bert@hotfix", "--json").json()[1]["id"] == v1
    assert cli("status", "--json").json()[0]["branch"] == "hotfix"
    assert cli("log", "bert@main", "--json").json()[0]["id"] == v2
    assert fix != v2


# --- status --------------------------------------------------------------------------------------


def test_status(store, cli, bert) -> None:
    assert cli("status").stdout == "bert (models/bert, on main): clean\n"
    Path("models/bert/config.json").write_text("{}")
    Path("models/bert/new.txt").write_text("new")
    os.unlink("models/bert/tokenizer.json")
    text = cli("status").stdout
    assert text.splitlines() == [
        "bert (models/bert, on main):",
        "  modified  config.json",
        "  added     new.txt",
        "  removed   tokenizer.json",
    ]
    data = cli("status", "bert", "--json").json()
    assert data == [
        {
            "model": "bert",
            "path": "models/bert",
            "branch": "main",
            "version": bert[1],
            "exists": True,
            "clean": False,
            "added": ["new.txt"],
            "modified": ["config.json"],
            "removed": ["tokenizer.json"],
            "hashed_files": data[0]["hashed_files"],
            "branch_tip": bert[1],
            "behind": False,
        }
    ]
    shutil.rmtree("models/bert")
    assert "folder is missing" in cli("status").stdout
    assert cli("status", "--json").json()[0]["exists"] is False
    assert cli("status", "nobody", expect=EXIT_ERROR).stdout == ""


def test_status_of_an_empty_store(store, cli) -> None:
    result = cli("status")
    assert result.stdout == "" and "no working folders" in result.stderr
    assert cli("status", "--json").json() == []


def test_no_store_is_exit_10_everywhere(tmp_path, cli, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["status"], ["log", "bert"], ["models"], ["fsck"], ["config", "list"]):
        result = cli(*args, expect=EXIT_NO_STORE)
        assert result.stdout == ""
        assert "no mvc store" in result.stderr and "mvc init" in result.stderr


# --- log, show, ls, cat ----------------------------------------------------------------------


def test_log(store, cli, bert) -> None:
    v1, v2 = bert
    lines = cli("log", "bert").stdout.splitlines()
    assert [line[:12] for line in lines] == [v2[:12], v1[:12]]
    assert "retrained" in lines[0] and "longer text" not in lines[0]
    assert "[accuracy=0.913]" in lines[0] and "Test User" in lines[0]
    data = cli("log", "bert", "--json").json()
    assert [e["id"] for e in data] == [v2, v1]
    assert {
        "id",
        "model",
        "tree",
        "parents",
        "author",
        "time",
        "message",
        "params",
        "metrics",
        "git",
        "lineage",
    } <= set(data[0])
    assert [e["id"] for e in cli("log", "bert", "-n", "1", "--json").json()] == [v2]
    assert [e["id"] for e in cli("log", f"bert@{v1[:8]}", "--json").json()] == [v1]
    assert cli("log", "bert@main~1", "--json").json()[0]["id"] == v1
    assert "only 1 earlier" in cli("log", "bert@main~2", expect=EXIT_ERROR).stderr


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ("nobody", EXIT_ERROR),
        ("bert@nothing", EXIT_ERROR),
        ("bad name!", EXIT_USAGE),
        ("bert@", EXIT_USAGE),
        ("", EXIT_USAGE),
        ("bert@zz", EXIT_ERROR),
    ],
)
def test_bad_specs(store, cli, bert, spec: str, code: int) -> None:
    result = cli("log", spec, expect=code)
    assert result.stdout == "" and result.stderr.startswith("error: ")
    assert "hint: " in result.stderr or code == EXIT_USAGE


def test_an_ambiguous_spec_is_refused(store, cli, bert) -> None:
    v1, v2 = bert
    cli("branch", "bert", "gold", "main~1")
    cli("tag", "bert", "gold", "main")
    result = cli("show", "bert@gold", expect=EXIT_USAGE)
    assert "ambiguous" in result.stderr and "bert@tag=gold" in result.stderr
    assert cli("show", "bert@branch=gold", "--json").json()["id"] == v1
    assert cli("show", "bert@tag=gold", "--json").json()["id"] == v2


def test_show(store, cli, bert) -> None:
    v1, v2 = bert
    cli("tag", "bert", "v1.0.0")
    data = cli("show", "bert", "--json").json()
    assert {
        "id",
        "model",
        "tree",
        "parents",
        "author",
        "time",
        "message",
        "params",
        "metrics",
        "git",
        "lineage",
        "files",
        "size",
        "names",
    } <= set(data)
    assert data["names"] == {"branches": ["main"], "tags": ["v1.0.0"], "channels": []}
    files = {f["path"]: f for f in data["files"]}
    assert list(files) == ["config.json", "model.safetensors", "tokenizer.json"]
    for path, info in files.items():
        assert {
            "path",
            "size",
            "blake3",
            "kind",
            "executable",
            "manifest",
            "note",
            "tensors",
        } <= set(info)
        assert info["blake3"] == b3_of(Path("models/bert", path))  # agrees with b3sum
        assert info["size"] == Path("models/bert", path).stat().st_size
    assert data["size"] == sum(f["size"] for f in files.values())
    tensors = files["model.safetensors"]["tensors"]
    assert tensors == {
        "tensors": 5,
        "parameters": 256 * 64 + 64 * 64 + 64 + 64 * 32 + 128,
        "dtypes": {"F32": 256 * 64 + 64 * 64 + 64 * 32, "F16": 64, "I64": 128},
        "metadata": {"seed": "1"},
    }
    assert files["config.json"]["kind"] == "blob" and files["config.json"]["tensors"] is None
    text = cli("show", "bert@main~1").stdout
    assert text.startswith(f"version  {v1}\nmodel    bert\n")
    assert "5 tensors, 22,720 parameters" in text
    assert b3_of("models/bert/tokenizer.json") in text


def test_ls(store, cli, bert) -> None:
    v1, _v2 = bert
    assert cli("ls", "bert").stdout == "config.json\nmodel.safetensors\ntokenizer.json\n"
    long = cli("ls", f"bert@{v1[:10]}", "-l").stdout.splitlines()
    assert len(long) == 3 and long[1].endswith("model.safetensors")
    data = cli("ls", "bert", "--json").json()
    assert [set(e) for e in data] == [{"path", "size", "blake3", "kind", "executable"}] * 3
    assert data[1]["kind"] == "safetensors"


def test_cat(store, cli, bert, make_model, tmp_path) -> None:
    result = cli("cat", "bert", "model.safetensors")
    assert result.stdout_bytes == Path("models/bert/model.safetensors").read_bytes()
    assert result.stderr == ""
    make_model(tmp_path / "v1", seed=0)
    old = cli("cat", "bert@main~1", "config.json").stdout_bytes
    assert old == (tmp_path / "v1" / "config.json").read_bytes()
    missing = cli("cat", "bert", "nope.json", expect=EXIT_ERROR)
    assert missing.stdout == "" and "mvc ls bert" in missing.stderr


# --- checkout --------------------------------------------------------------------------------------


def test_checkout(store, cli, bert, tmp_path) -> None:
    v1, v2 = bert
    data = cli("checkout", "bert@main~1", "--json").json()
    assert {
        "model",
        "version",
        "path",
        "written",
        "removed",
        "unchanged",
        "bytes_written",
        "branch",
        "bound",
    } <= set(data)
    assert data["written"] == ["config.json", "model.safetensors"] and data["unchanged"] == 1
    assert (
        b3_of("models/bert/model.safetensors")
        == cli("show", f"bert@{v1}", "--json").json()["files"][1]["blake3"]
    )
    back = cli("checkout", "bert@main")
    assert back.stdout == "" and "on branch main" in back.stderr
    assert cli("status", "--json").json()[0] == {
        **cli("status", "--json").json()[0],
        "branch": "main",
        "version": v2,
        "clean": True,
    }
    other = cli("checkout", "bert@main~1", "--to", str(tmp_path / "b1"), "--json").json()
    assert other["bound"] is False and other["path"] == str(tmp_path / "b1")
    assert cli("status", "--json").json()[0]["path"] == "models/bert"  # binding unchanged


def test_checkout_without_a_working_folder(store, cli, make_model, tmp_path) -> None:
    make_model("models/bert")
    cli("commit", str(Path("models/bert/model.safetensors")), "--model", "bert", "-m", "file")
    result = cli("checkout", "bert", expect=EXIT_USAGE)
    assert "--to" in result.stderr
    cli("checkout", "bert", "--to", str(tmp_path / "w"), "--bind")
    assert cli("status", "--json").json()[0]["path"] == os.path.relpath(tmp_path / "w", store.root)


# --- branches, tags, models --------------------------------------------------------------------


def test_branches(store, cli, bert) -> None:
    v1, v2 = bert
    created = cli("branch", "bert", "exp", "main~1", "--json").json()
    assert created["new"] == v1 and created["old"] is None and created["seq"] == 1
    assert created["who"] == "Test User" and TIME.match(created["when"])
    assert cli("branch", "bert", "exp", expect=EXIT_CONFLICT).stdout == ""
    listed = cli("branch", "bert", "--json").json()
    assert listed == [
        {"model": "bert", "name": "exp", "version": v1, "current": False},
        {"model": "bert", "name": "main", "version": v2, "current": True},
    ]
    assert cli("branch", "bert").stdout.splitlines()[1].startswith("* main")
    assert "checked out" in cli("branch", "bert", "-d", "main", expect=EXIT_USAGE).stderr
    cli("branch", "bert", "-d", "exp")
    assert [b["name"] for b in cli("branch", "bert", "--json").json()] == ["main"]
    assert cli("branch", "bert", "-d", "exp", expect=EXIT_ERROR).exit_code == EXIT_ERROR
    assert cli("branch", "nobody", expect=EXIT_ERROR).exit_code == EXIT_ERROR
    assert cli("branch", "bert", "bad..name", expect=EXIT_USAGE).exit_code == EXIT_USAGE


def test_tags(store, cli, bert) -> None:
    v1, v2 = bert
    assert (
        cli("tag", "bert", "1.2.0", "main~1", "-m", "first release").stdout.strip()
        == f"bert@1.2.0 {v1}"
    )
    created = cli("tag", "bert", "v2.0.0-rc.1", "--json").json()
    assert created["new"] == v2
    listed = cli("tag", "bert", "--json").json()
    assert [(t["name"], t["version"]) for t in listed] == [("v1.2.0", v1), ("v2.0.0-rc.1", v2)]
    assert cli("show", "bert@v1.2.0", "--json").json()["id"] == v1
    assert cli("show", "bert@1.2.0", "--json").json()["id"] == v1
    assert cli("tag", "bert", "v1.2.0", "main", expect=EXIT_CONFLICT).stdout == ""


def test_tagging_the_version_a_tag_already_names_is_a_success(store, cli, bert) -> None:
    """A CI job that runs `mvc tag bert v1.1.0` twice succeeds twice; nothing moves."""
    v1, v2 = bert
    first = cli("tag", "bert", "v1.1.0", "--json").json()
    again = cli("tag", "bert", "1.1.0", "main", "--json").json()  # same version, other spelling
    assert again == first and again["new"] == v2
    assert cli("tag", "bert", "v1.1.0").stdout.strip() == f"bert@v1.1.0 {v2}"
    assert len(store.refs.entries(store.refs.list_refs("tags", "bert")[0])) == 1
    assert cli("tag", "bert", "v1.1.0", "main~1", expect=EXIT_CONFLICT).stdout == ""


def test_models(store, cli, bert, make_model) -> None:
    make_model("models/gpt", seed=3)
    cli("commit", "models/gpt", "-m", "g")
    cli("tag", "bert", "v1.0.0")
    data = cli("models", "--json").json()
    assert [m["model"] for m in data] == ["bert", "gpt"]
    assert data[0] == {
        "model": "bert",
        "latest": bert[1],
        "latest_time": data[0]["latest_time"],
        "branches": ["main"],
        "tags": ["v1.0.0"],
        "channels": [],
        "path": "models/bert",
    }
    assert TIME.match(data[0]["latest_time"])
    text = cli("models").stdout.splitlines()
    assert text[0].startswith("bert") and "tags: v1.0.0" in text[0]


def test_models_of_an_empty_store(store, cli) -> None:
    result = cli("models")
    assert result.stdout == "" and "no models yet" in result.stderr
    assert cli("models", "--json").json() == []


# --- fsck, gc, shell-init ------------------------------------------------------------------------


def test_fsck_and_gc_json_shapes(store, cli, bert) -> None:
    report = cli("fsck", "--json").json()
    assert {
        "ok",
        "objects_checked",
        "refs_checked",
        "reachable",
        "dangling",
        "problems",
    } <= set(report)
    assert report["ok"] and report["problems"] == [] and report["dangling"] == 0
    assert report["reachable"] == report["objects_checked"] and report["refs_checked"] == 1
    text = cli("fsck")
    assert text.stdout == "" and "0 problems" in text.stderr
    gc = cli("gc", "--json").json()
    assert {
        "dry_run",
        "reachable",
        "deleted",
        "deleted_bytes",
        "kept_young",
        "temp_files_removed",
        "repack",
    } <= set(gc)
    assert gc["deleted"] == 0 and gc["reachable"] == report["reachable"]
    assert cli("gc", "--grace", "soon", expect=EXIT_USAGE).exit_code == EXIT_USAGE
    assert cli("fsck", "--json").json()["ok"]  # repack changed envelopes, never contents


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_init_prints_a_function(cli, shell: str) -> None:
    text = cli("shell-init", shell).stdout
    assert "mv" in text and "command mvc" in text and "command mv" in text
    assert "commit" in text and "checkout" in text


def test_shell_init_unknown_shell(cli) -> None:
    assert cli("shell-init", "tcsh", expect=EXIT_USAGE).stdout == ""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_mv_function_forwards_only_mvc_subcommands(store, cli, bert, tmp_path) -> None:
    function = cli("shell-init", "bash").stdout
    script = textwrap.dedent(
        """
        eval "$FUNC"
        mv status > status.out          # no file called "status" here: mvc status
        echo data > a.txt
        mv a.txt b.txt                  # a plain move
        mkdir -p log && mv log logs     # a folder named like a subcommand: the real mv
        """
    )
    env = {
        **os.environ,
        "FUNC": function,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "-c", script], cwd=store.root, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert Path(store.root, "status.out").read_text() == "bert (models/bert, on main): clean\n"
    assert (
        Path(store.root, "b.txt").read_text() == "data\n" and not Path(store.root, "a.txt").exists()
    )
    assert Path(store.root, "logs").is_dir() and not Path(store.root, "log").exists()


# --- -C, MVC_DIR, errors and exit codes ---------------------------------------------------------


def test_dash_C_and_MVC_DIR(store, cli, bert, tmp_path, monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cli("status", expect=EXIT_NO_STORE)
    assert "clean" in cli("-C", store.root, "status").stdout
    assert os.getcwd() == str(elsewhere)
    assert "clean" in cli("-C", "../work/models", "status").stdout  # any folder inside the store
    assert cli("-C", "no/such/dir", "status", expect=EXIT_USAGE).stdout == ""
    env = {"MVC_DIR": store.root}
    assert cli("models", "--json", env=env).json()[0]["model"] == "bert"
    assert cli("models", "--json", env={"MVC_DIR": store.store_dir}).json()[0]["model"] == "bert"
    assert cli("models", env={"MVC_DIR": str(elsewhere)}, expect=EXIT_NO_STORE).stdout == ""


def test_errors_go_to_stderr_with_a_hint(store, cli, bert) -> None:
    result = cli("show", "bert@nothing", expect=EXIT_ERROR)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: bert@nothing") and lines[1].startswith("hint: ")
    assert not ANSI.search(result.stderr) and "Traceback" not in result.stderr


def test_exit_codes_of_the_published_table(store, cli, bert, monkeypatch) -> None:
    from mvc.ops import inspect

    assert cli("models").exit_code == EXIT_OK
    assert cli("log", "nobody", expect=EXIT_ERROR).exit_code == EXIT_ERROR
    assert cli("log", "bad name!", expect=EXIT_USAGE).exit_code == EXIT_USAGE
    assert cli("tag", "bert", "v1.0.0", "main~1").exit_code == EXIT_OK
    assert cli("tag", "bert", "v1.0.0", "main", expect=EXIT_CONFLICT).exit_code == EXIT_CONFLICT

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inspect, "models", interrupted)
    result = cli("models", expect=EXIT_INTERRUPTED)
    assert "interrupted" in result.stderr and result.stdout == ""

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(inspect, "models", broken)
    result = cli("models", expect=EXIT_ERROR)
    assert (
        "internal error: RuntimeError: boom" in result.stderr and "Traceback" not in result.stderr
    )
    debug = cli("models", env={"MVC_DEBUG": "1"}, expect=EXIT_ERROR)
    assert "Traceback" in debug.stderr

    known = Path(".mvc/format").read_text()
    Path(".mvc/format").write_text("mvc store format 9\n")
    assert cli("models", expect=EXIT_NO_STORE).exit_code == EXIT_NO_STORE
    Path(".mvc/format").write_text(known)
    objects = sorted(Path(".mvc/objects").rglob("*"))
    victim = next(p for p in objects if p.is_file())
    victim.write_bytes(b"MVC\x01garbage")
    assert cli("fsck", expect=EXIT_CORRUPT).exit_code == EXIT_CORRUPT


# --- provenance: author and git state ----------------------------------------------------------


def test_author_falls_back_to_git_config_then_the_os_user(store, cli, make_model, mvc_env) -> None:
    import getpass

    cli("config", "unset", "user.name")
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "v1")
    assert cli("show", "bert", "--json").json()["author"] == getpass.getuser()
    if shutil.which("git") is None:
        return
    Path(os.environ["HOME"], ".gitconfig").write_text(
        "[user]\n\tname = Git Person\n\temail = git@example.com\n"
    )
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "v2")
    assert cli("show", "bert", "--json").json()["author"] == "Git Person <git@example.com>"
    cli("config", "set", "user.name", "Ada")
    cli("config", "set", "user.email", "ada@example.com")
    make_model("models/bert", seed=2)
    cli("commit", "models/bert", "-m", "v3")
    assert cli("show", "bert", "--json").json()["author"] == "Ada <ada@example.com>"
    assert cli("branch", "bert", "x", "--json").json()["who"] == "Ada <ada@example.com>"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_commit_records_the_git_commit_and_dirtiness(store, cli, make_model) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "g",
        "GIT_AUTHOR_EMAIL": "g@example.com",
        "GIT_COMMITTER_NAME": "g",
        "GIT_COMMITTER_EMAIL": "g@example.com",
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=store.root, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q", ".")
    Path(store.root, "train.py").write_text("print('train')\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "code")
    head = git("rev-parse", "HEAD")
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "v1")  # the model folder is untracked: not dirty
    assert cli("show", "bert", "--json").json()["git"] == {"commit": head, "dirty": False}
    Path(store.root, "train.py").write_text("print('changed')\n")
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "v2")
    assert cli("show", "bert", "--json").json()["git"] == {"commit": head, "dirty": True}
    assert f"git      {head[:12]} (dirty)" in cli("show", "bert").stdout


def test_the_program_ends_with_its_status_its_whole_output_and_its_exit_hooks(
    store, cli, make_model, tmp_path
) -> None:
    """``mvc`` skips the interpreter's teardown (``cli.main.exit_now``), never what it is for:
    the exit status, everything written to a pipe, the atexit handlers."""
    make_model("models/bert")
    for n in range(40):
        (Path(store.root) / "models/bert/notes.md").write_text(f"take {n}")
        cli("commit", "models/bert", "-m", f"take {n} " + "x" * 200)
    probe = textwrap.dedent(
        """
        import atexit, sys
        marker = sys.argv[1]
        atexit.register(lambda: open(marker, "w").write("hook ran"))
        from mvc.cli.main import run
        sys.argv = ["mvc", *sys.argv[2:]]
        run()
        raise AssertionError("run() returned")
        """
    )

    def program(*args: str) -> subprocess.CompletedProcess[str]:
        marker = tmp_path / "hook"
        marker.unlink(missing_ok=True)
        done = subprocess.run(
            [sys.executable, "-c", probe, str(marker), *args],
            cwd=store.root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert marker.exists(), done.stderr
        assert marker.read_text() == "hook ran"
        return done

    listed = program("log", "bert", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 40  # the pipe got all of it
    missing = program("show", "nobody@main")
    assert missing.returncode == EXIT_ERROR and "nobody" in missing.stderr
    usage = program("log", "--no-such-flag")
    assert usage.returncode == EXIT_USAGE
    for closing in (">&-", "2>&-", ">&- 2>&-"):  # started with stdout or stderr closed
        shell = ["/bin/sh", "-c", f'exec "$@" {closing}', "sh"]
        done = subprocess.run(
            [*shell, sys.executable, "-m", "mvc", "log", "bert"],
            cwd=store.root,
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, (closing, done.stderr)
