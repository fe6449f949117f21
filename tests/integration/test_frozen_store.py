"""Stores written by store formats 1 and 2 stay readable, and their files never change unnoticed.

tests/data/frozen-store-1/ and frozen-store-2/ were each written once by
tests/data/make_frozen_store.py (which says what they hold; format 1 by the script as it was
before format 2) and are committed. These tests read a copy of each back through the CLI and the
API. If one fails after a code change, the change broke reading existing stores: fix the code,
do not regenerate a store. A new store format gets a new frozen store beside these.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from dataclasses import dataclass

import pytest

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class Frozen:
    """One frozen store and what it is known to hold."""

    format: int
    sums_b3: str  # pinned, so rewriting the store (and its sums file) shows up in this diff too
    v1: str  # bert@v1.0.0
    v2: str  # bert@v1.1.0
    record_set: str
    record_canary: str
    delta_chunk: str
    objects: int  # all reachable

    @property
    def root(self) -> pathlib.Path:
        return DATA / f"frozen-store-{self.format}"

    @property
    def sums(self) -> pathlib.Path:
        return DATA / f"frozen-store-{self.format}.b3sums"


FORMAT_1 = Frozen(
    1,
    "d357eaeb613648135157a7512077d6478cb5d584c73ca178c9abe4b5be6afec3",
    "4a9d104565f106e631331a82c6a9e4fb3f4814b2eb79ba62396aea650caa9f7d",
    "a529957fd14fbd1113abb6bb547d5273c05314e64fca3992ac87ac84b09c8dca",
    "e76a41617adea922133532a97d5544985abbc2be67cb882b35ad547c77fa8c13",
    "91567da585a268bb355842984712b7bc3c5d5a72faf36d3eff202c73b38b8fed",
    "004ef4474fa205d74b98d30bc2cce0504871ee31a5c21f8e726fbb712234fe2a",
    26,
)
FORMAT_2 = Frozen(  # one-chunk files have no manifest; the small model.safetensors is one chunk
    2,
    "9bbe5202e04ec39f6af19be654917b895ed1c885683957ce7658cb19c406887e",
    "1e71e3eb201c41acfb8a0f75ada94c38bc59137f0996e4378c4943327d6b87ac",
    "4d4848034df8d2861ec2897b2f248c86107b45e3b8f3d9ae162e7f62483156d5",
    "e25a23551495116c698732dcde3f15ff11627b594971ff82508f4261782bd8fc",
    "a36d4f308e40681f4466967bd57a6d47c2430a74f0039eb5ae023eaeaeb10287",
    "929022dbf56ac5aa2d742f85bc96eb5775f601305acc4ee8f73145d1eea1db24",
    17,
)
STORES = [pytest.param(FORMAT_1, id="format-1"), pytest.param(FORMAT_2, id="format-2")]
WHO = "Frozen Writer <frozen@example.com>"
V1_FILES = {
    ".mvcignore": "f6b71def043f1fd92f2d34969a7272a9d134730551de8c9754c4be79fbc0aef3",
    "config.json": "2537b542df9ebc0be9d97edb2ea317379ec551e4f796e3d0e327948f96fd64f7",
    "model.safetensors": "75824b376b090b9d8f45103bcaefe705d30b00569c99985decc1642209926dd6",
    "tokenizer.json": "43f5b0fdae774a78e8599aa1abd91d1ee2dbd1e1a604233d64b01c3d15b59e99",
}
INT4_WEIGHTS = "21c13367fd45baac35c2521f5ea7b347ac0a00f9834143f3ae67ca5d48f952a7"


def _b3(data: bytes) -> str:
    import blake3

    return blake3.blake3(data).hexdigest()


def _files(root: pathlib.Path) -> dict[str, str]:
    found = {}
    for here, _dirs, names in os.walk(root):
        for name in names:
            path = pathlib.Path(here) / name
            found[path.relative_to(root).as_posix()] = _b3(path.read_bytes())
    return found


@pytest.fixture(params=STORES)
def known(request) -> Frozen:
    return request.param


@pytest.fixture
def frozen(known, tmp_path, mvc_env, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A private copy of a frozen store (reads must not depend on writing into tests/data)."""
    root = tmp_path / "frozen"
    shutil.copytree(known.root, root)
    monkeypatch.chdir(root)
    return root


def test_the_frozen_files_are_exactly_the_recorded_ones(known) -> None:
    listed = {}
    for line in known.sums.read_text(encoding="utf-8").splitlines():
        digest, path = line.split("  ", 1)
        listed[path] = digest
    assert _b3(known.sums.read_bytes()) == known.sums_b3
    assert _files(known.root) == listed
    assert (known.root / ".mvc" / "format").read_text() == f"mvc store format {known.format}\n"


def test_every_envelope_codec_is_in_the_frozen_store(known) -> None:
    from mvc import codec

    codecs: dict[str, set[str]] = {}
    for here, _dirs, names in os.walk(known.root / ".mvc" / "objects"):
        for name in names:
            header, _ = codec.read_header((pathlib.Path(here) / name).read_bytes())
            codecs.setdefault(header["c"], set()).add(os.path.basename(here) + name)
    assert set(codecs) == {"raw", "zstd", "group", "delta"}
    assert codecs["delta"] == {known.delta_chunk}


def test_fsck_finds_the_frozen_store_clean(frozen, known, cli) -> None:
    report = cli("fsck", "--json").json()
    assert report["ok"] is True and report["problems"] == []
    assert report["objects_checked"] == report["reachable"] == known.objects
    assert report["dangling"] == 0


def test_history_refs_and_the_binding_read_back(frozen, known, cli) -> None:
    v1, v2 = known.v1, known.v2
    log = cli("log", "bert", "--json").json()
    assert [entry["id"] for entry in log] == [v2, v1]
    assert [entry["time"] for entry in log] == ["2026-01-02T03:08:00Z", "2026-01-02T03:05:00Z"]
    assert {entry["author"] for entry in log} == {WHO}
    assert log[0]["parents"] == [v1] and log[1]["parents"] == []
    assert log[0]["params"] == {"epochs": 3, "lr": 2e-05}
    assert log[0]["metrics"] == {"accuracy": 0.913}
    branches = {b["name"]: b["version"] for b in cli("branch", "bert", "--json").json()}
    assert branches == {"experiment": v1, "main": v2}
    tags = {t["name"]: t["version"] for t in cli("tag", "bert", "--json").json()}
    assert tags == {"v1.0.0": v1, "v1.1.0": v2}
    (status,) = cli("status", "--json").json()
    assert (status["path"], status["branch"], status["version"]) == ("models/bert", "main", v2)
    assert status["clean"] is True and status["behind"] is False
    tracked = cli("log", "bert@origin/main", "--json").json()  # the remote-tracking ref
    assert [entry["id"] for entry in tracked] == [v2, v1]


def test_files_read_back_byte_for_byte(frozen, cli) -> None:
    shown = cli("show", "bert@v1.0.0", "--json").json()
    assert {f["path"]: f["blake3"] for f in shown["files"]} == V1_FILES  # scratch.tmp ignored
    old = cli("cat", "bert@v1.0.0", "model.safetensors").stdout_bytes
    assert _b3(old) == V1_FILES["model.safetensors"]
    working = frozen / "models" / "bert"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):  # delta, zstd, raw
        assert cli("cat", "bert@v1.1.0", name).stdout_bytes == (working / name).read_bytes()
    grouped = cli("cat", "bert-int4", "model.safetensors").stdout_bytes  # byte-grouped
    assert len(grouped) > 256 * 1024 and _b3(grouped) == INT4_WEIGHTS


def test_the_api_reads_the_frozen_store(frozen, known) -> None:
    import mvc

    config = mvc.read_file("bert@v1.0.0", "config.json", repo=str(frozen))
    assert _b3(config) == V1_FILES["config.json"]
    assert [entry.id for entry in mvc.log("bert", repo=str(frozen))] == [known.v2, known.v1]


def test_the_channel_and_its_records_read_back(frozen, known, cli) -> None:
    record = cli("channel", "show", "bert", "prod", "--json").json()
    assert (record["id"], record["previous"], record["state"]) == (
        known.record_canary,
        known.record_set,
        "canary",
    )
    assert [(a["role"], a["version"], a["weight"]) for a in record["arms"]] == [
        ("stable", known.v1, 90),
        ("canary", known.v2, 10),
    ]
    history = cli("channel", "history", "bert", "prod", "--json").json()
    assert [(h["seq"], h["old"], h["new"]) for h in history] == [
        (2, known.record_set, known.record_canary),
        (1, None, known.record_set),
    ]
    assert [h["why"] for h in history] == ["try the fine-tune", "first release"]
    routed = cli("route", "bert", "prod", "--key", "user-42", "--json").json()
    assert (routed["record"], routed["arm"]["role"], routed["arm"]["version"]) == (
        known.record_canary,
        "stable",
        known.v1,
    )


def test_a_format_1_store_is_upgraded_only_when_it_first_needs_format_2(
    tmp_path, mvc_env, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    """Reading, and a commit that changes nothing (the files touched), leave format 1 as it is,
    so an older mvc still opens it; a commit of new content writes format 2 before its tree."""
    root = tmp_path / "frozen"
    shutil.copytree(FORMAT_1.root, root)
    monkeypatch.chdir(root)
    fmt = root / ".mvc" / "format"
    cli("status")
    cli("log", "bert")
    for path in (root / "models" / "bert").iterdir():
        os.utime(path)  # re-hashed: the one-chunk files now make entries without a manifest
    done = cli("commit", "models/bert", "-m", "touched", "--json").json()
    assert (done["created"], done["hashed_files"]) == (False, 4)
    assert fmt.read_text() == "mvc store format 1\n"
    (root / "models" / "bert" / "config.json").write_text('{"hidden_size": 8}\n')
    done = cli("commit", "models/bert", "-m", "new config", "--json").json()
    assert done["created"] is True and done["modified"] == ["config.json"]
    assert fmt.read_text() == "mvc store format 2\n"
    assert cli("fsck", "--json").json()["ok"] is True
    assert cli("cat", "bert@v1.0.0", "config.json").stdout_bytes != b""


def test_todays_writer_still_writes_the_frozen_format(
    tmp_path, mvc_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regenerating the store today gives the same files: same names, same refs, bindings and
    config byte for byte, and objects of the same codec (compressed payloads may differ with
    the zstd library, their decoded bytes cannot: they hash to the object's name)."""
    import importlib.util

    from mvc import codec

    spec = importlib.util.spec_from_file_location(
        "make_frozen_store", DATA / "make_frozen_store.py"
    )
    assert spec and spec.loader
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # build() sets it; undone after
    fresh = maker.build(tmp_path / "frozen-store-2")
    assert fresh == maker.build(tmp_path / "frozen-store-2")  # deterministic, even in one process
    frozen = _files(FORMAT_2.root)
    assert sorted(fresh) == sorted(frozen)

    def shape(path: str) -> dict:
        header, _ = codec.read_header((tmp_path / "frozen-store-2" / path).read_bytes())
        return {key: header.get(key) for key in ("c", "n", "w", "m", "base", "d")}

    for path, digest in frozen.items():
        if path.startswith(".mvc/objects/"):
            expected, _ = codec.read_header((FORMAT_2.root / path).read_bytes())
            assert shape(path) == {k: expected.get(k) for k in ("c", "n", "w", "m", "base", "d")}
        else:
            assert fresh[path] == digest, f"{path} is written differently today"
