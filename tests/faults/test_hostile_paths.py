"""Hostile paths: names that are harmless here but dangerous on another file system.

A version is checked out on Linux, macOS and Windows alike, so a path is refused on every
platform if it is dangerous on any (as git does since CVE-2014-9390): ``.git``/``.mvc`` in any
case or NTFS spelling anywhere, names that differ only in case (or Unicode normalisation),
Windows device names, trailing dots and spaces, invisible and bidi characters, NTFS streams,
over-long components. One pure rule (``mvc.paths``) is applied where paths enter: the commit
scan, every tree decoded (so pull, clone, checkout, export), and the export sink.
"""

from __future__ import annotations

import json
import os

import pytest
from _worktree_helpers import plant_local_branch, plant_remote_branch
from hypothesis import given, settings
from hypothesis import strategies as st

from mvc.errors import InvalidInput
from mvc.paths import validate_tree_paths, validate_version_path

DANGEROUS = {
    "dotgit-upper": ".Git/hooks/post-checkout",
    "dotgit-deep": "sub/.GIT/config",
    "dotgit-exact-deep": "sub/.git/config",
    "dotgit-trailing-dot": ".git./hooks/x",
    "dotgit-trailing-space": ".git /hooks/x",
    "dotgit-ntfs-short": "GIT~1/hooks/x",
    "dotgit-stream": ".git::$INDEX_ALLOCATION/hooks/x",
    "dotmvc-upper": ".MVC/format",
    "dotmvc-deep": "a/.Mvc/refs/x",
    "dotmvc-short": "mvc~1/x",
    "con": "CON",
    "aux-ext": "aux.txt",
    "nul-deep": "a/nul.tar.gz",
    "com1": "com1.json",
    "lpt9": "LPT9",
    "com-superscript": "COM\u00b9.txt",
    "conin": "CONIN$",
    "reserved-space": "aux .txt",
    "trailing-dot": "model.",
    "trailing-space": "config.json ",
    "trailing-dot-folder": "weights./a.bin",
    "zero-width-space": "con\u200bfig.json",
    "zero-width-joiner": ".g\u200dit/hooks/x",
    "bom": "\ufeffconfig.json",
    "bidi-override": "model\u202egnp.exe",
    "bidi-isolate": "a\u2066b",
    "line-separator": "a\u2028b",
    "nul": "a\x00b",
    "control": "a\x1bb",
    "backslash": "a\\b",
    "drive": "C:/x",
    "drive-relative": "c:x",
    "unc": "//server/share/x",
    "colon": "a:b",
    "windows-forbidden": "a?b",
    "pipe": "a|b",
    "lone-surrogate": "a\ud800b",
    "component-300-bytes": "a" * 300,
    "component-300-bytes-multibyte": "é" * 150,
    "parent": "../x",
    "absolute": "/etc/passwd",
}

SAFE = [
    "config.json",
    ".gitignore",
    ".gitattributes",
    ".github/workflows/ci.yml",
    ".mvcignore",
    "git/x",
    ".gitx",
    "mvc/x",
    "console.json",
    "auxiliary/x.bin",
    "com10.json",
    "lpt0",
    "null.txt",
    "1_Pooling/config.json",
    "model-00001-of-00002.safetensors",
    "é/ü.json",
    "中文/模型.bin",
    "..a",
    "a..b",
    "a" * 255,
]


@pytest.mark.parametrize("path", list(DANGEROUS.values()), ids=list(DANGEROUS))
def test_dangerous_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_version_path(path)
    assert "unsafe path" in caught.value.message


@pytest.mark.parametrize("path", SAFE)
def test_ordinary_paths_are_accepted(path: str) -> None:
    assert validate_version_path(path) == path


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=4).map("/".join))
def test_any_text_is_accepted_safely_or_refused_with_our_error(path: str) -> None:
    try:
        validate_version_path(path)
    except InvalidInput:
        return
    for part in path.split("/"):  # what was accepted is safe on every file system
        assert part not in ("", ".", "..") and not part.endswith((".", " "))
        assert part.rstrip(". ").casefold() not in (".git", ".mvc", "git~1", "mvc~1")
        assert len(part.encode("utf-8")) <= 255
    assert not set(path) & set('\\<>:"|?*\x00')


@pytest.mark.parametrize(
    "paths",
    [
        ["Config.json", "config.json"],
        ["A/x.bin", "a/y.bin"],
        ["weights/MODEL.safetensors", "weights/model.safetensors"],
        ["caf\u00e9.json", "cafe\u0301.json"],  # NFC and NFD: one name on macOS
        ["Stra\u00dfe.txt", "strasse.txt"],  # case folding, not just lower()
    ],
)
def test_twins_in_one_tree_are_refused(paths: list[str]) -> None:
    with pytest.raises(InvalidInput, match="differ only in case"):
        validate_tree_paths(paths)


def test_distinct_paths_in_one_tree_are_accepted() -> None:
    validate_tree_paths(["a/x.bin", "a/y.bin", "b/x.bin", "config.json", "config.yaml"])


# --- commit input -----------------------------------------------------------------------------

COMMIT_INPUT = {
    "reserved": ["aux.txt"],
    "dotgit-upper": [".Git/hooks/post-checkout"],
    "dotmvc-upper": ["sub/.MVC/format"],
    "trailing-dot": ["model."],
    "trailing-space": ["notes "],
    "zero-width": ["con\u200bfig.json"],
    "bidi": ["model\u202egnp.exe"],
    "twins": ["Tokenizer.json"],  # make_model writes tokenizer.json
}


@pytest.mark.parametrize("files", list(COMMIT_INPUT.values()), ids=list(COMMIT_INPUT))
def test_commit_refuses_dangerous_names(store, cli, make_model, files) -> None:
    make_model("models/bert", extra=dict.fromkeys(files, "x"))
    failed = cli("commit", "models/bert", "-m", "x", expect=1)
    assert "unsafe path" in failed.stderr or "differ only in case" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert store.refs.list_refs() == []


def test_commit_leaves_out_nested_git_and_mvc_folders(store, cli, make_model) -> None:
    """A model folder that holds a clone (``sub/.git``) versions the files, not the clone."""
    make_model("models/bert", extra={"sub/.git/config": "[core]", "sub/readme.md": "hi"})
    cli("commit", "models/bert", "-m", "x")
    listed = cli("ls", "bert").stdout
    assert "sub/readme.md" in listed and ".git" not in listed


# --- trees from elsewhere: a remote, or planted in the store ---------------------------------

REMOTE_TREES = {
    "dotgit-upper": [".Git/hooks/post-checkout"],
    "dotmvc-upper": [".MVC/format"],
    "twins": ["Config.json", "config.json"],
    "reserved": ["aux.txt"],
    "trailing-dot": ["model."],
    "trailing-space": ["config.json "],
    "trailing-space-folder": ["weights /a.bin"],
    "zero-width": ["con\u200bfig.json"],
    "bidi": ["a\u202eb"],
    "bidi-extension": ["model\u202egnp.exe"],
    "drive": ["C:/x"],
    "unc": ["//server/share/x"],
    "component-300-bytes": ["w/" + "a" * 300],
}


@pytest.mark.parametrize("paths", list(REMOTE_TREES.values()), ids=list(REMOTE_TREES))
def test_pull_refuses_trees_with_dangerous_paths(store, cli, make_model, tmp_path, paths) -> None:
    root = tmp_path / "remote"
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "x")
    cli("remote", "add", "origin", f"file://{root}")
    cli("push", "origin", "bert")
    version = plant_remote_branch(root, paths)
    failed = cli("pull", "origin", "evil@main", expect=12)
    assert "unsafe path" in failed.stderr or "differ only in case" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert [str(r) for r in store.refs.list_refs()] == ["bert branch main"]
    assert not store.objects.has(version)


# Unsafe on this machine: a tree in the store that names them is damage, whoever put it there.
UNSAFE_HERE = {
    "drive": ["C:/x"],
    "unc": ["//server/share/x"],
    "dotdot": ["a/../../x"],
    "dotmvc": [".mvc/format"],
    "control": ["a\x1bb"],
}
# Unportable only: refused wherever they would enter a store (above), but a tree this store
# already holds with them (written by an older mvc) is the user's data, not corruption.
UNPORTABLE = [
    "dotgit-upper",
    "dotmvc-upper",
    "twins",
    "reserved",
    "trailing-dot",
    "zero-width",
    "bidi",
]


@pytest.mark.parametrize("paths", list(UNSAFE_HERE.values()), ids=list(UNSAFE_HERE))
def test_checkout_refuses_planted_trees_with_dangerous_paths(store, cli, tmp_path, paths) -> None:
    plant_local_branch(store, paths)
    target = tmp_path / "box" / "out"
    failed = cli("checkout", "evil", "--to", target, expect=12)
    assert "unsafe path" in failed.stderr or "differ only in case" in failed.stderr
    assert "Traceback" not in failed.stderr and "OSError" not in failed.stderr
    assert not target.exists() or not os.listdir(target)


@pytest.mark.parametrize("name", UNPORTABLE)
def test_an_unportable_tree_already_stored_stays_readable(store, cli, tmp_path, name) -> None:
    """Read, checked out and fsck-clean here: calling it corrupt would send it to quarantine
    and, through gc, delete a version nothing ever damaged."""
    plant_local_branch(store, REMOTE_TREES[name])
    cli("fsck")  # exit 0 (cli checks it)
    listed = cli("ls", "evil", "--json").stdout  # exact (people's output escapes bidi text)
    assert all(json.dumps(path) in listed for path in REMOTE_TREES[name])
    target = tmp_path / "out"
    cli("checkout", "evil", "--to", target)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == sorted(
        REMOTE_TREES[name]
    )


def test_a_path_too_long_for_the_file_system_is_a_clean_error(store, cli, make_model, tmp_path):
    make_model("models/bert")
    cli("commit", "models/bert", "-m", "x")
    target = tmp_path.joinpath(*["d" * 250] * 18)  # every part fits, the whole path does not
    failed = cli("checkout", "bert", "--to", target, expect=1)
    assert "too long" in failed.stderr and "Traceback" not in failed.stderr
    assert "internal error" not in failed.stderr


def test_a_too_long_name_given_to_any_command_is_named_with_the_right_advice(
    store, cli, make_model, tmp_path
):
    """A 300-byte component in a path the user gives (commit, init, remote add) is a clean
    error naming the path and saying to shorten it; the advice is not checkout's."""
    long = "y" * 300
    make_model("models/bert")
    for args in (
        ("commit", f"models/{long}", "--model", "bert", "-m", "x"),
        ("init", str(tmp_path / long)),
        ("remote", "add", "far", f"file://{tmp_path / long}"),
    ):
        failed = cli(*args, expect=1)
        assert "too long" in failed.stderr and long in failed.stderr, args
        assert "check out" not in failed.stderr and "shorter" in failed.stderr, args
        assert "Traceback" not in failed.stderr
