"""A new user's first hour (issue 12), through the installed ``mvc`` in a subprocess.

Each test is one rough edge a newcomer met: a typo'd path, a command run twice, a usage slip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mvc.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- clone and remote add never write into a folder that is not a store -------------------------


def test_clone_of_a_mistyped_path_fails_and_writes_nothing(store, run_mvc, tmp_path) -> None:
    done = run_mvc("clone", tmp_path / "typo" / "path", tmp_path / "dest")
    assert done.returncode == EXIT_ERROR, done.stderr
    assert done.stderr.startswith("error: no mvc store at ") and "Traceback" not in done.stderr
    assert not (tmp_path / "typo").exists() and not (tmp_path / "dest").exists()


def test_clone_and_remote_add_refuse_a_folder_that_is_not_a_store(store, run_mvc, tmp_path) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    before = _tree(foreign)
    done = run_mvc("clone", foreign, tmp_path / "dest")
    assert done.returncode == EXIT_USAGE
    assert "neither an mvc store nor empty (it holds cat.jpg)" in done.stderr
    assert not (tmp_path / "dest").exists()
    done = run_mvc("remote", "add", "x", foreign, cwd=store.root)
    assert done.returncode == EXIT_USAGE and "neither an mvc store nor empty" in done.stderr
    assert _tree(foreign) == before  # no probe/ written there
    assert run_mvc("remote", "list", cwd=store.root).stdout == ""


def test_cloning_an_empty_store_is_an_explicit_choice(store, run_mvc, tmp_path) -> None:
    empty = tmp_path / "empty"
    assert run_mvc("init", empty).returncode == EXIT_OK
    done = run_mvc("clone", empty, tmp_path / "dest")
    assert done.returncode == EXIT_USAGE
    assert "is an empty store: there is nothing to clone" in done.stderr
    assert "--allow-empty" in done.stderr and not (tmp_path / "dest").exists()
    done = run_mvc("clone", empty, tmp_path / "dest", "--allow-empty")
    assert done.returncode == EXIT_OK, done.stderr
    assert "the remote is empty" in done.stderr
    assert (tmp_path / "dest" / ".mvc").is_dir()
    assert os.listdir(tmp_path / "dest") == [".mvc"]


# --- auto-bump on a real retrain -----------------------------------------------------------------


def test_a_retrain_saved_by_a_newer_framework_bumps_minor(store, run_mvc, make_model) -> None:
    """Newer transformers drop the position_ids buffer and save bos_token_id: null."""
    import json

    from safetensors.numpy import load_file, save_file

    folder = make_model("models/bert", seed=0)
    assert run_mvc("commit", "models/bert", "-m", "v1", cwd=store.root).returncode == 0
    assert run_mvc("tag", "bert", "v1.0.0", cwd=store.root).returncode == 0
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["position_ids"]
    tensors["layer.0.weight"] = tensors["layer.0.weight"] * 1.01  # retrained
    save_file(tensors, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "bos_token_id": None}))
    assert run_mvc("commit", "models/bert", "-m", "retrain", cwd=store.root).returncode == 0
    done = run_mvc("tag", "bert", "--bump", "auto", "--explain", cwd=store.root)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("bert@v1.1.0 ") and lines[1].startswith("minor since v1.0.0")
    assert "  patch  framework buffer removed: model.safetensors: position_ids" in lines
    assert "  patch  config key with its default value: config.json: bos_token_id added (null)" in (
        lines
    )
    assert not any(line.startswith("  major") for line in lines)


# --- a path inside another model's working folder; mvc rm; unbind --------------------------------


def test_a_path_inside_another_models_folder_is_refused(store, run_mvc, make_model) -> None:
    folder = make_model("models/bert", extra={"1_Pooling/config.json": "{}"})
    assert run_mvc("commit", "models/bert", "-m", "v1", cwd=store.root).returncode == 0
    for path, cwd in (("models/bert/config.json", store.root), ("1_Pooling", folder)):
        done = run_mvc("commit", path, "-m", "oops", cwd=cwd)
        assert done.returncode == EXIT_USAGE, done.stderr
        assert "the working folder of model 'bert'" in done.stderr
        assert "--model bert" in done.stderr
    other = run_mvc("commit", "models/bert", "--model", "gpt", "-m", "x", cwd=store.root)
    assert other.returncode == EXIT_USAGE and "is models/bert, the working folder" in other.stderr
    models = run_mvc("models", "--json", cwd=store.root)
    assert [m["model"] for m in __import__("json").loads(models.stdout)] == ["bert"]
    # naming the model that owns the folder is the explicit way to commit part of it
    (folder / "1_Pooling" / "config.json").write_text('{"pooling": "mean"}')
    done = run_mvc("commit", "1_Pooling", "--model", "bert", "-m", "pooling only", cwd=folder)
    assert done.returncode == EXIT_OK, done.stderr


def test_rm_refuses_a_model_with_tags_unless_forced_and_unbind_forgets_a_folder(
    store, run_mvc, make_model
) -> None:
    import json

    make_model("models/bert")
    make_model("models/bert/nested", seed=2)
    make_model("scratch", seed=3)
    for args in (("models/bert", "-m", "v1"), ("scratch", "-m", "s")):
        assert run_mvc("commit", *args, cwd=store.root).returncode == 0
    assert run_mvc("tag", "bert", "v1.0.0", cwd=store.root).returncode == 0
    done = run_mvc("rm", "bert", cwd=store.root)
    assert done.returncode == EXIT_USAGE and "still has tag v1.0.0" in done.stderr
    assert "mvc rm bert --force" in done.stderr
    done = run_mvc("rm", "scratch", cwd=store.root)  # branches only: no need to force
    assert done.returncode == EXIT_OK, done.stderr
    assert "removed model scratch: branch main" in done.stderr
    assert "scratch is no longer its working folder" in done.stderr
    assert Path(store.root, "scratch", "model.safetensors").exists()
    removed = json.loads(run_mvc("rm", "bert", "--force", "--json", cwd=store.root).stdout)
    assert removed == {
        "model": "bert",
        "branches": ["main"],
        "tags": ["v1.0.0"],
        "channels": [],
        "unbound": "models/bert",
    }
    assert json.loads(run_mvc("models", "--json", cwd=store.root).stdout) == []
    assert run_mvc("rm", "bert", cwd=store.root).returncode == EXIT_ERROR  # no such model
    # the tag name stays reserved for a model of the same name
    assert run_mvc("commit", "models/bert", "-m", "again", cwd=store.root).returncode == 0
    retag = run_mvc("tag", "bert", "v1.0.0", cwd=store.root)
    assert retag.returncode != EXIT_OK and "already named" in retag.stderr
    # a nested folder committed as its own model by mistake: unbind, then commit it right
    done = run_mvc("unbind", "bert", cwd=store.root)
    assert done.returncode == EXIT_OK and "models/bert is no longer" in done.stderr
    done = run_mvc("commit", "models/bert/nested", "-m", "n", cwd=store.root)
    assert done.returncode == EXIT_OK, done.stderr
    assert run_mvc("unbind", "nosuch", cwd=store.root).returncode == EXIT_USAGE


# --- did you mean --------------------------------------------------------------------------------


def test_mistyped_model_branch_tag_and_channel_names_get_a_suggestion(st, run_mvc) -> None:
    from mvc.ops.deploy import set_channel

    set_channel(st.repo, "bert", "prod", "v1.4.0")
    cases = [
        (("show", "bret"), "hint: did you mean 'bert'?"),
        (("log", "bert@v1.4.1"), "did you mean 'v1.4.0'"),
        (("show", "bert@prdo"), "did you mean 'prod'?"),
        (("branch", "bert", "-d", "mian"), "hint: did you mean 'main'?"),
        (("channel", "show", "bert", "prd"), "hint: did you mean 'prod'?"),
        (("tag", "bret"), "hint: did you mean 'bert'?"),
    ]
    for args, hint in cases:
        done = run_mvc(*args, cwd=st.root)
        assert done.returncode == EXIT_ERROR, (args, done.stderr)
        assert hint in done.stderr, (args, done.stderr)


# --- commit asks for a message on a terminal; an empty folder is no version; status --exit-code ---


def _controlling_terminal() -> None:
    """In the child: a session of its own, with its stdin (the pty) as controlling terminal, so
    that a typed Ctrl-C is a SIGINT as in a real shell."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _on_a_terminal(args: list[str], cwd: str, answer: bytes) -> tuple[int, bytes]:
    """Run ``mvc ARGS`` on a pseudo-terminal, type ``answer`` when it asks; (exit code, output)."""
    import pty
    import select
    import sys
    import time

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "mvc", *args],
        cwd=cwd,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
        preexec_fn=_controlling_terminal,
    )
    os.close(follower)
    seen = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"Commit message" in seen:
            os.write(leader, answer)
            answered = True
        if process.poll() is not None and not ready:
            break
    code = process.wait(timeout=60)
    os.close(leader)
    return code, seen


def test_commit_without_a_message_asks_on_a_terminal(store, make_model) -> None:
    make_model("models/bert")
    code, seen = _on_a_terminal(["commit", "models/bert"], store.root, b"first version\n")
    assert code == 0, seen
    assert b"Commit message (what changed and why):" in seen
    from mvc.repo import Repo

    repo = Repo(store.root)
    tip = repo.refs.get(repo.refs.list_refs("heads", "bert")[0])
    assert tip is not None and repo.objects.get_version(tip).message == "first version"


def test_commit_without_a_message_on_a_terminal_asks_again_and_stops_at_end_of_input(
    store, make_model
) -> None:
    make_model("models/bert")
    code, seen = _on_a_terminal(["commit", "models/bert"], store.root, b"\n  \nsecond try\n")
    assert code == 0, seen
    assert seen.count(b"Commit message (what changed and why):") == 3  # a blank answer is no answer
    make_model("models/gpt")
    code, seen = _on_a_terminal(["commit", "models/gpt"], store.root, b"\x04")  # Ctrl-D
    assert code == EXIT_USAGE, seen
    assert b"no commit message given; nothing committed" in seen
    code, seen = _on_a_terminal(["commit", "models/gpt"], store.root, b"\x03")  # Ctrl-C
    assert code == 130 and b"interrupted" in seen, seen
    from mvc.repo import Repo

    assert not Repo(store.root).refs.list_refs("heads", "gpt")


def test_commit_without_a_message_in_a_script_is_refused_without_waiting(
    store, run_mvc, make_model
) -> None:
    make_model("models/bert")
    done = run_mvc("commit", "models/bert", cwd=store.root, stdin=subprocess.DEVNULL)
    assert done.returncode == EXIT_USAGE, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "error: no commit message: give one with -m MESSAGE; nothing committed"
    assert lines[1].startswith('hint: mvc commit models/bert -m "what changed and why"')
    assert len(lines) == 2 and done.stdout == ""
    assert run_mvc("models", "--json", cwd=store.root).stdout.strip() == "[]"
    empty = run_mvc("commit", "models/bert", "-m", " ", cwd=store.root, stdin=subprocess.DEVNULL)
    assert empty.returncode == EXIT_USAGE and "the commit message is empty" in empty.stderr
    # git's --allow-empty-message: a script that really has nothing to say
    done = run_mvc(
        "commit", "models/bert", "--allow-empty-message", cwd=store.root, stdin=subprocess.DEVNULL
    )
    assert done.returncode == EXIT_OK, done.stderr
    shown = run_mvc("show", "bert", "--json", cwd=store.root)
    assert __import__("json").loads(shown.stdout)["message"] == ""


def test_an_empty_folder_is_no_version(store, run_mvc) -> None:
    (Path(store.root) / "models" / "empty").mkdir(parents=True)
    done = run_mvc("commit", "models/empty", "-m", "x", cwd=store.root)
    assert done.returncode == EXIT_ERROR
    assert "models/empty holds no files: an empty folder is no version" in done.stderr
    assert run_mvc("models", "--json", cwd=store.root).stdout.strip() == "[]"


def test_status_exit_code_says_whether_a_folder_is_dirty(store, run_mvc, make_model) -> None:
    folder = make_model("models/bert")
    assert run_mvc("commit", "models/bert", "-m", "v1", cwd=store.root).returncode == 0
    assert run_mvc("status", "--exit-code", cwd=store.root).returncode == 0
    (folder / "config.json").write_text('{"changed": true}')
    assert run_mvc("status", cwd=store.root).returncode == 0
    done = run_mvc("status", "--exit-code", cwd=store.root)
    assert done.returncode == 1 and "modified  config.json" in done.stdout
    assert run_mvc("status", "--exit-code", "--json", cwd=store.root).returncode == 1


# --- init in a git work tree and inside a store ---------------------------------------------------


def test_init_in_git_ignores_the_store_and_then_each_bound_folder(mvc_env, run_mvc, tmp_path):
    import shutil

    from deployfix import write_model

    if shutil.which("git") is None:
        raise AssertionError("git is needed (the base image has it)")
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    assert run_mvc("init", cwd=project).returncode == EXIT_OK
    write_model(str(project / "models" / "bert"), seed=1)
    done = run_mvc("commit", "models/bert", "-m", "v1", cwd=project, env={"MVC_USER_NAME": "A"})
    assert done.returncode == EXIT_OK, done.stderr
    ignore = (project / ".gitignore").read_text()
    assert ".mvc/" in ignore.splitlines() and "/models/bert/" in ignore.splitlines()
    untracked = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "model.safetensors" not in untracked and ".mvc" not in untracked
    again = run_mvc("commit", "models/bert", "-m", "v2", "--allow-empty", cwd=project)
    assert again.returncode == EXIT_OK and (project / ".gitignore").read_text() == ignore  # once


def test_init_inside_an_existing_store_says_so(store, run_mvc) -> None:
    inner = Path(store.root) / "models"
    inner.mkdir()
    done = run_mvc("init", cwd=inner)
    assert done.returncode == EXIT_OK
    assert f"it is inside the store at {store.root}" in done.stderr
    outside = Path(store.root).parent / "elsewhere"
    outside.mkdir()
    done = run_mvc("init", cwd=outside)
    assert done.returncode == EXIT_OK and "inside the store" not in done.stderr
    done = run_mvc("init", cwd=store.root)
    assert done.returncode == EXIT_ERROR and "a store already exists" in done.stderr


# --- configuration: the user config and the identity in effect -----------------------------------


def test_a_commit_with_no_identity_configured_says_whom_it_recorded(
    mvc_env, run_mvc, tmp_path
) -> None:
    """As git does: with no user.name anywhere (not in mvc's config, not in git's), the OS user
    name is recorded and commit says so, with how to set one; once set, it says nothing."""
    import getpass

    root = tmp_path / "p"
    (root / "m").mkdir(parents=True)
    (root / "m" / "config.json").write_text("{}")
    assert run_mvc("init", cwd=root).returncode == EXIT_OK
    done = run_mvc("commit", "m", "-m", "one", cwd=root)
    assert done.returncode == EXIT_OK, done.stderr
    assert f"recorded as author: {getpass.getuser()}" in done.stderr
    assert "mvc config set --global user.name NAME" in done.stderr
    assert run_mvc("config", "set", "--global", "user.name", "Ada").returncode == EXIT_OK
    (root / "m" / "config.json").write_text('{"a": 1}')
    done = run_mvc("commit", "m", "-m", "two", cwd=root)
    assert done.returncode == EXIT_OK and "recorded as author" not in done.stderr


def test_config_set_global_and_the_identity_config_list_shows(store, run_mvc, tmp_path) -> None:
    elsewhere = tmp_path / "no-store-here"
    elsewhere.mkdir()
    done = run_mvc("config", "set", "--global", "user.email", "ada@example.com", cwd=elsewhere)
    assert done.returncode == EXIT_OK, done.stderr
    user_file = Path(os.environ["XDG_CONFIG_HOME"]) / "mvc" / "config.yaml"
    assert "ada@example.com" in user_file.read_text()
    listed = run_mvc("config", "list", cwd=store.root)
    lines = listed.stdout.splitlines()
    assert f"user.email=ada@example.com  # {user_file}" in lines
    assert f"user.name=Test User  # {store.root}/.mvc/config.yaml" in lines
    assert (
        "identity (recorded as author): Test User <ada@example.com>  "
        f"# user.name from {store.root}/.mvc/config.yaml"
    ) in listed.stderr
    env = {"MVC_USER_NAME": "Env Ada"}
    listed = run_mvc("config", "list", cwd=store.root, env=env)
    assert "user.name=Env Ada  # environment" in listed.stdout
    assert "Env Ada <ada@example.com>  # user.name from environment" in listed.stderr
    assert run_mvc("config", "set", "--global", "core.jobs", "zero").returncode == EXIT_USAGE
    assert run_mvc("config", "unset", "--global", "user.email").returncode == EXIT_OK
    assert "ada@example.com" not in user_file.read_text()


# --- readable output: diff summary first, --stat, --exit-code; colour; log ----------------------


def test_diff_of_thousands_of_tensors_is_summary_first(store, run_mvc) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    folder = Path(store.root) / "models" / "wide"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tensors = {f"layer.{i}.w": rng.standard_normal(4).astype(np.float32) for i in range(1500)}
    save_file(tensors, str(folder / "model.safetensors"))
    assert run_mvc("commit", "models/wide", "-m", "v1", cwd=store.root).returncode == 0
    save_file({k: v + 1 for k, v in tensors.items()}, str(folder / "model.safetensors"))
    assert run_mvc("commit", "models/wide", "-m", "v2", cwd=store.root).returncode == 0
    done = run_mvc("diff", "wide~1", "wide", cwd=store.root)
    lines = done.stdout.splitlines()
    assert lines[2].startswith("verdict: minor") and lines[-1] == lines[2]
    assert "tensors in .: 1500 changed, 0 unchanged" in done.stdout
    assert "  … 1460 more (mvc diff --json lists every one)" in lines
    assert len(lines) < 60
    stat = run_mvc("diff", "wide~1", "wide", "--stat", cwd=store.root).stdout.splitlines()
    assert not any(line.startswith("  ") for line in stat) and "rel-L2" not in "".join(stat)
    assert run_mvc("diff", "wide~1", "wide", "--exit-code", cwd=store.root).returncode == 1
    assert run_mvc("diff", "wide", "wide", "--exit-code", cwd=store.root).returncode == 0


def test_colour_only_on_a_terminal_and_never_with_no_color(store, run_mvc, make_model) -> None:
    folder = make_model("models/bert")
    env = {"MVC_USER_NAME": "Ada", "MVC_USER_EMAIL": "ada.lovelace@analytical-engines.example"}
    assert run_mvc("commit", "models/bert", "-m", "v1", cwd=store.root, env=env).returncode == 0
    (folder / "config.json").write_text("{}")
    plain = os.environ.copy()
    plain.pop("NO_COLOR", None)
    for args in (("status",), ("log", "bert"), ("diff", "bert")):
        piped = run_mvc(*args, cwd=store.root, env={**plain, "NO_COLOR": ""})
        assert "\x1b[" not in piped.stdout  # not a terminal
        forced = run_mvc(*args, cwd=store.root, env={"FORCE_COLOR": "1", "NO_COLOR": ""})
        assert "\x1b[" in forced.stdout, args
        never = run_mvc(*args, cwd=store.root, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
        assert "\x1b[" not in never.stdout
    log = run_mvc("log", "bert", cwd=store.root).stdout
    assert "  Ada  v1" in log and "analytical-engines" not in log  # no wrapping on e-mails


def test_show_formats_adapter_facts_not_python_reprs(st, run_mvc) -> None:
    from deployfix import ENV, write_adapter

    write_adapter(str(Path(st.root) / "out" / "lora"), seed=3)
    done = run_mvc(
        "commit", "out/lora", "--model", "my-lora", "--base", "bert@v1.4.0", "-m", "l",
        cwd=st.root, env=ENV,
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    shown = run_mvc("show", "my-lora", cwd=st.root).stdout
    adapter = next(line for line in shown.splitlines() if line.startswith("adapter "))
    assert (
        "type=LORA" in adapter and "rank=2" in adapter and "target_modules=query, value" in adapter
    )
    base = next(line for line in shown.splitlines() if line.startswith("base "))
    assert base.startswith("base     bert@v1.4.0 (")
    assert "{'" not in shown and "['" not in shown


def test_gc_and_fsck_count_the_same_things(store, cli, make_model) -> None:
    make_model("models/bert", seed=0)
    cli("commit", "models/bert", "-m", "v1")
    cli("branch", "bert", "tmp")
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "on tmp", "--branch", "tmp")
    cli("checkout", "bert@main", "--force")
    cli("branch", "bert", "-D", "tmp")  # its version is now reached only by the ref log
    fsck = cli("fsck", "--json").json()
    gc = cli("gc", "--dry-run", "--json").json()
    assert fsck["dangling"] > 0
    assert gc["reachable"] == fsck["reachable"] and gc["kept_by_log"] == fsck["dangling"]
    assert gc["deleted"] == 0
    gone = cli("gc", "--grace", "0s", "--dry-run", "--json").json()
    assert gone["reachable"] == fsck["reachable"] and gone["deleted"] == fsck["dangling"]
    text = cli("gc", "--dry-run").stderr
    assert f"kept {fsck['reachable']} reachable, {fsck['dangling']} reached only by recent" in text


# --- a path where a version spec is expected -----------------------------------------------------


def test_a_missing_path_given_for_a_version_is_a_missing_file_not_a_bad_spec(
    store, cli, make_model
) -> None:
    """docs/exit-codes.md: a file or folder that is not there is 1 everywhere, and says so."""
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "v1")
    missing = [
        ("diff", "./nope"),
        ("diff", "bert", "../nope"),
        ("diff", "bert", "models/nope/"),
        ("check-compat", "bert", "./out/lora"),
        ("check-compat", "./nope", "bert"),
        ("show", "/no/such/folder"),
        ("log", "./nope"),
        ("lineage", "./nope"),
        ("checkout", "./nope"),
        ("merge-adapter", "bert", "./nope", "--model", "merged"),
    ]
    for args in missing:
        path = next(a for a in args[1:] if "nope" in a or "/" in a)
        result = cli(*args, expect=EXIT_ERROR)
        first, hint = result.stderr.splitlines()
        assert first == f"error: no such file or folder: {path}", args
        assert hint.startswith("hint: check the path"), args
    # there, but a path names no version: a usage error that says which model it belongs to
    result = cli("diff", "bert", "./models/bert", expect=EXIT_USAGE)
    assert "./models/bert is the working folder of model 'bert', not a version spec" in (
        result.stderr
    )
    assert "hint: name the model: bert (its HEAD) or bert@REV" in result.stderr
    result = cli("diff", ".", expect=EXIT_USAGE)
    assert result.stderr.startswith("error: . is a folder, not a version spec")
    result = cli("diff", "bert", "./models/bert/config.json", expect=EXIT_USAGE)
    assert "is a file, not a version spec" in result.stderr
    # models/bert could be a model's name (team/sql-lora is): none, and the hint says what it is
    result = cli("diff", "bert", "models/bert", expect=EXIT_ERROR)
    assert "no model named 'models/bert'" in result.stderr
    assert "it is the working folder of model 'bert': name the model, bert" in result.stderr
    # other path arguments: a points file, a signing key
    result = cli("metrics", "log", "bert", "--file", "nope.jsonl", expect=EXIT_ERROR)
    assert "no such file or folder: nope.jsonl" in result.stderr
    result = cli("sign", "bert", "--key", "nope.pem", expect=EXIT_ERROR)
    assert "cannot read key nope.pem: No such file or directory" in result.stderr


def test_lock_install_and_apply_without_an_mvc_yaml_say_there_is_none(store, cli) -> None:
    for args in (("lock",), ("install",), ("apply", "--plan")):
        result = cli(*args, expect=EXIT_ERROR)
        assert result.stderr.startswith(f"error: no mvc.yaml in {store.root}\n"), args
    Path(store.root, "mvc.yaml").write_text("slo: {}\n")
    assert "mvc.yaml has no requires: section" in cli("lock", expect=EXIT_ERROR).stderr
