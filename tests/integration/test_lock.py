"""``mvc lock`` and ``mvc install``: mvc.yaml's requires: pinned in mvc.lock, then materialised."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvc.errors import EXIT_STALE_LOCK, EXIT_USAGE
from mvc.lockfile import Locked, parse_lock, render_lock


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".mvc" not in p.parts
    }


@pytest.fixture
def released(store, cli, make_model) -> dict[str, str]:
    """bert at v2.0.0, v2.1.0, v2.1.3 and v3.0.0; v2.1.3 is also on the prod channel."""
    ids = {}
    for seed, tag in enumerate(("v2.0.0", "v2.1.0", "v2.1.3", "v3.0.0")):
        make_model("models/bert", seed=seed)
        ids[tag] = cli("commit", "models/bert", "-m", tag).stdout.strip()
        cli("tag", "bert", tag)
    cli("channel", "set", "bert", "prod", "v2.1.3")
    return ids


def write_policy(store, text: str) -> None:
    Path(store.root, "mvc.yaml").write_text(text)


def test_lock_pins_each_requirement_and_install_materialises_it(store, cli, released, tmp_path):
    write_policy(
        store,
        "requires:\n  bert: ^2.1\n  stable-bert:\n    model: bert\n    version: prod\n    path: serving/bert\n",
    )
    locked = cli("lock", "--json").json()
    assert locked["written"] is True
    by_name = {e["name"]: e for e in locked["entries"]}
    assert by_name["bert"]["version"] == released["v2.1.3"]
    assert by_name["stable-bert"]["version"] == released["v2.1.3"]
    text = Path(store.root, "mvc.lock").read_text()
    assert released["v2.1.3"] in text and 'spec: "bert@^2.1"' in text
    assert cli("lock", "--json").json()["written"] is False  # unchanged: not rewritten

    installed = cli("install", "--locked", "--json").json()
    assert [i["name"] for i in installed["installed"]] == ["bert", "stable-bert"]
    cli("checkout", "bert@v2.1.3", "--to", tmp_path / "expected")
    assert files_in(Path(store.root, "serving", "bert")) == files_in(tmp_path / "expected")
    assert files_in(Path(store.root, "models", "bert")) == files_in(tmp_path / "expected")
    again = cli("install", "--locked", "--json").json()
    assert all(i["written"] == 0 for i in again["installed"])


def test_a_new_release_does_not_move_the_lock_until_lock_runs(store, cli, released, make_model):
    write_policy(store, "requires:\n  bert: ^2.1\n")
    cli("lock")
    make_model("models/bert", seed=9)
    cli("commit", "models/bert", "-m", "2.2")
    cli("tag", "bert", "v2.2.0")
    cli("install", "--locked")
    from mvc.repo import Repo

    binding = Repo(store.root).binding("bert")
    assert binding is not None and binding.version == released["v2.1.3"]  # not v2.2.0
    assert parse_lock(Path(store.root, "mvc.lock").read_text())[0].version == released["v2.1.3"]
    relocked = cli("lock", "--json").json()
    assert relocked["entries"][0]["changed"] is True
    assert relocked["entries"][0]["resolved"] == "v2.2.0"


def test_install_locked_refuses_a_stale_lock(store, cli, released):
    write_policy(store, "requires:\n  bert: ^2.1\n")
    cli("lock")
    write_policy(store, "requires:\n  bert: ^3\n")
    refused = cli("install", "--locked", expect=EXIT_STALE_LOCK)
    assert "mvc.yaml asks for bert@^3, the lock was made for bert@^2.1" in refused.stderr
    assert "mvc lock" in refused.stderr
    check = cli("lock", "--check", expect=EXIT_STALE_LOCK)
    assert "bert@^3" in check.stderr
    # without --locked the lock is brought up to date first
    result = cli("install", "--json").json()
    assert result["locked_written"] is True
    assert result["installed"][0]["version"] == released["v3.0.0"]
    cli("lock", "--check")


def test_install_locked_fetches_from_a_remote(store, cli, released, tmp_path):
    write_policy(store, "requires:\n  bert: v2.1.0\n")
    cli("lock")
    remote = tmp_path / "remote-store"
    cli("remote", "add", "origin", str(remote))
    cli("push", "origin", "bert")
    serving = tmp_path / "serving"
    serving.mkdir()
    cli("-C", serving, "init")
    cli("-C", serving, "remote", "add", "origin", str(remote))
    for name in ("mvc.yaml", "mvc.lock"):
        (serving / name).write_bytes(Path(store.root, name).read_bytes())
    result = cli("-C", serving, "install", "--locked", "--json").json()
    assert result["installed"][0]["fetched_from"] == "origin"
    cli("checkout", "bert@v2.1.0", "--to", tmp_path / "expected")
    assert files_in(serving / "models" / "bert") == files_in(tmp_path / "expected")


def test_a_lock_naming_a_version_nowhere_to_be_had_is_stale(store, cli, released):
    write_policy(store, "requires:\n  bert: ^2.1\n")
    entry = Locked("bert", "bert@^2.1", "models/bert", "ab" * 32, "cd" * 32)
    Path(store.root, "mvc.lock").write_text(render_lock([entry]))
    refused = cli("install", "--locked", expect=EXIT_STALE_LOCK)
    assert "neither in this store nor on any remote" in refused.stderr
    assert cli("lock", "--check", expect=EXIT_STALE_LOCK).stderr.count("not in this store") == 1


def test_a_hand_edited_lock_is_refused(store, cli, released):
    write_policy(store, "requires:\n  bert: ^2.1\n")
    cli("lock")
    path = Path(store.root, "mvc.lock")
    path.write_text(path.read_text().replace("version: ", "version: x"))
    refused = cli("install", "--locked", expect=EXIT_STALE_LOCK)
    assert "mvc.lock:" in refused.stderr and "no version id" in refused.stderr


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            "requires:\n  bert:\n    version: ^2\n    path: ../outside\n",
            "mvc.yaml:4: requires.bert.path",
        ),
        ("requires:\n  bert:\n    versoin: ^2\n", "unknown key 'versoin'"),
        (
            "requires:\n  a: ^2\n  b:\n    model: bert\n    version: ^2\n    path: models/a\n",
            "also where 'a' goes",
        ),
    ],
)
def test_a_bad_requires_section_names_its_line(store, cli, released, policy, message):
    write_policy(store, policy)
    assert message in cli("lock", expect=EXIT_USAGE).stderr


def test_the_lock_text_round_trips_and_is_one_fact_per_line():
    entries = [
        Locked("bert", "bert@^2.1", "models/bert", "a" * 64, "b" * 64, "v2.1.3"),
        Locked("yes", "yes@1.0", "models/yes", "c" * 64, "d" * 64),
    ]
    text = render_lock(entries)
    assert parse_lock(text) == entries
    assert "  yes:" not in text  # YAML would read a bare yes as true: names are quoted then


def test_install_after_a_relock_replaces_what_it_installed_before(store, cli, released, tmp_path):
    """The folder install wrote for the old lock gets the new locked version (as a second
    `npm ci` does), with no file of the old version left over."""
    write_policy(
        store, "requires:\n  served:\n    model: bert\n    version: prod\n    path: serving/bert\n"
    )
    cli("lock")
    cli("install", "--locked")
    cli("channel", "set", "bert", "prod", "v3.0.0")
    cli("lock")
    cli("install", "--locked")
    cli("checkout", "bert@v3.0.0", "--to", tmp_path / "expected")
    assert files_in(Path(store.root, "serving", "bert")) == files_in(tmp_path / "expected")
    Path(store.root, "serving", "bert", "notes.txt").write_text("mine")  # the user's own file
    cli("channel", "set", "bert", "prod", "v2.0.0")
    cli("lock")
    assert "is not empty" in cli("install", "--locked", expect=1).stderr  # never lost
    assert Path(store.root, "serving", "bert", "notes.txt").read_text() == "mine"
