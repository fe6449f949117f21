"""Commands whose cost must not grow with a model's history (issue 14, "Scale").

``benchmarks/bench_scale.py`` times them at 10 to 1,000 versions; here the same property is
pinned by counting which version objects each command reads: ``log -n K`` reads K, ``status``,
``commit`` and a repeated ``find`` read the same few whether the history is short or long.
"""

from __future__ import annotations

import json

import pytest

from mvc.ops.commit import commit
from mvc.store import ObjectStore


@pytest.fixture
def versions_read(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The ids of the version objects read through any object store while the test runs."""
    seen: set[str] = set()
    real = ObjectStore.get_meta

    def spy(self: ObjectStore, oid: str) -> dict:
        value = real(self, oid)
        if value.get("type") == "version":
            seen.add(oid)
        return value

    monkeypatch.setattr(ObjectStore, "get_meta", spy)
    return seen


def grow(store, folder, count: int, start: int = 0) -> list[str]:
    """``count`` real commits of ``folder``, each changing its config.json."""
    made = []
    for step in range(start, start + count):
        (folder / "config.json").write_text(json.dumps({"step": step}))
        result = commit(store, str(folder), message=f"step {step}", model="bert")
        assert result.version_id
        made.append(result.version_id)
    return made


@pytest.fixture
def history(store, tmp_path, make_model):
    folder = tmp_path / "work" / "models" / "bert"
    make_model("models/bert", seed=0)
    return folder, grow(store, folder, 40)


def test_log_reads_only_the_versions_it_shows(store, cli, history, versions_read) -> None:
    _, made = history
    versions_read.clear()
    lines = cli("log", "bert", "-n", "3").stdout.splitlines()
    assert [line[:12] for line in lines] == [v[:12] for v in reversed(made[-3:])]
    assert versions_read == set(made[-3:])


def test_log_is_read_as_it_is_consumed(store, history, versions_read) -> None:
    from mvc.ops.inspect import log

    _, made = history
    versions_read.clear()
    entries = log(store, "bert")
    assert next(entries).id == made[-1]
    assert versions_read == {made[-1]}
    assert next(entries).id == made[-2]
    assert versions_read == set(made[-2:])


def test_status_commit_and_find_read_as_much_at_40_versions_as_at_80(
    store, cli, history, versions_read
) -> None:
    folder, _ = history

    def reads() -> dict[str, int]:
        counts = {}
        for name, args in (
            ("status", ("status",)),
            ("find", ("find", "--model", "bert", "-n", "1", "--json")),
        ):
            versions_read.clear()
            cli(*args)
            counts[name] = len(versions_read)
        (folder / "config.json").write_text(json.dumps({"step": "cli"}))
        versions_read.clear()
        cli("commit", "models/bert", "-m", "one more")
        counts["commit"] = len(versions_read)
        cli("find", "--model", "bert", "-n", "1")  # the catalog learns the new version
        versions_read.clear()
        cli("find", "--model", "bert", "-n", "1", "--json")
        counts["find, warm"] = len(versions_read)
        return counts

    cli("find", "--model", "bert", "-n", "1")  # the catalog is built once
    short = reads()
    grow(store, folder, 40, start=100)
    cli("find", "--model", "bert", "-n", "1")
    long = reads()
    assert short == long, (short, long)
    assert long["status"] <= 2 and long["commit"] <= 2 and long["find, warm"] == 0, long
