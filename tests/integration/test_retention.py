"""What gc keeps, each case proven on its own: a version only a tag, only a branch, only a
channel, only a channel's earlier deployment record, only an archive record, or only the
``retention:`` rules (recently used) still need survives ``gc --grace 0s``; a version nothing
needs is collected."""

from __future__ import annotations

import pathlib

from mvc.lastuse import flush_all
from mvc.ops.commit import commit
from mvc.refnames import branch
from mvc.repo import Repo


def side_version(repo: Repo, make_model, root: pathlib.Path, name: str, seed: int) -> str:
    """A version committed on its own branch ``name``, which is then deleted: only what the
    test adds keeps it."""
    folder = make_model(root / "out" / name, seed=seed)
    result = commit(repo, str(folder), message=name, model="bert", branch=name)
    assert result.version_id is not None
    return result.version_id


def drop_branch(repo: Repo, name: str) -> None:
    ref = branch("bert", name)
    repo.refs.set_if_equals(ref, repo.refs.get(ref), None, "test: drop")


def intact(repo: Repo, version: str) -> bool:
    if not repo.objects.has(version):
        return False
    tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
    return all(repo.objects.has_file(e) for e in tree.files.values())


def test_gc_keeps_whatever_a_tag_branch_channel_record_or_archive_needs(
    store, cli, make_model, clock, tmp_path
) -> None:
    root = pathlib.Path(store.root)
    repo = Repo(store.root)
    make_model(root / "models/bert", seed=0)
    cli("commit", "models/bert", "-m", "main")
    ids = {n: side_version(repo, make_model, root, n, s) for s, n in enumerate("abcdef", 1)}
    cli("tag", "bert", "v1.0.0", ids["a"])  # a: a tag
    cli("branch", "bert", "keep", ids["b"])  # b: another branch
    cli("channel", "set", "bert", "prod", ids["e"])  # e: the record prod replaced
    cli("channel", "set", "bert", "prod", ids["c"])  # c: prod now
    cli("remote", "add", "cold", str(tmp_path / "cold"))
    cli("archive", f"bert@{ids['d']}", "--remote", "cold")  # d: an archive record
    for name in "abcdef":
        drop_branch(repo, name)

    result = cli("gc", "--grace", "0s", "--json").json()
    assert result["deleted"] > 0
    for name in "abce":
        assert intact(repo, ids[name]), name
    assert repo.objects.has(ids["d"])  # archived: metadata here, data on the cold remote
    assert not repo.objects.has(ids["f"])  # nothing needed it
    cli("restore", f"bert@{ids['d']}")
    assert intact(repo, ids["d"])
    assert cli("fsck", "--json").json()["ok"]


def test_retention_rules_keep_a_recently_used_unreachable_version(
    store, cli, make_model, clock, tmp_path
) -> None:
    root = pathlib.Path(store.root)
    repo = Repo(store.root)
    make_model(root / "models/bert", seed=0)
    cli("commit", "models/bert", "-m", "main")
    lost = side_version(repo, make_model, root, "old", 5)
    clock.advance(20)
    cli("checkout", f"bert@{lost}", "--to", str(tmp_path / "use"))  # used on day 20
    flush_all()
    drop_branch(repo, "old")
    (root / "mvc.yaml").write_text("retention:\n  rules:\n    - unused_for: 30d\n")

    clock.advance(10)  # idle 10 days: not yet
    kept = cli("gc", "--grace", "0s", "--json").json()
    assert kept["kept_by_retention"] == 1 and intact(repo, lost)
    clock.advance(25)  # idle 35 days: collectable
    gone = cli("gc", "--grace", "0s", "--json").json()
    assert gone["kept_by_retention"] == 0 and not repo.objects.has(lost)


def test_without_a_retention_section_gc_collects_as_before(
    store, cli, make_model, clock, tmp_path
) -> None:
    root = pathlib.Path(store.root)
    repo = Repo(store.root)
    make_model(root / "models/bert", seed=0)
    cli("commit", "models/bert", "-m", "main")
    lost = side_version(repo, make_model, root, "old", 5)
    cli("checkout", f"bert@{lost}", "--to", str(tmp_path / "use"))
    flush_all()
    drop_branch(repo, "old")
    assert cli("gc", "--grace", "0s", "--json").json()["kept_by_retention"] == 0
    assert not repo.objects.has(lost)
