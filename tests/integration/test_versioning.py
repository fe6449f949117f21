"""Semantic versions: npm-style ranges, bump arithmetic, auto bumps on real-shaped models, and
the tag command (validation, immutability, --bump/--pre/--explain)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import semver
from safetensors.numpy import save_file

from mvc.errors import EXIT_CONFLICT, EXIT_ERROR, EXIT_USAGE, InvalidName, UsageError
from mvc.versioning import next_version, normalize_tag, parse_range

# --- ranges: a table of node-semver's own cases ------------------------------------------------

INCLUDED = [
    ("1.0.0 - 2.0.0", "1.2.3"),
    ("^1.2.3+build", "1.2.3"),
    ("^1.2.3+build", "1.3.0"),
    ("1.2.3-pre+asdf - 2.4.3-pre+asdf", "1.2.3"),
    ("*", "1.2.3"),
    (">=1.0.0", "1.0.0"),
    (">=1.0.0", "1.1.0"),
    (">1.0.0", "1.0.1"),
    ("<=2.0.0", "2.0.0"),
    ("<=2.0.0", "1.9999.9999"),
    ("<2.0.0", "0.2.9"),
    (">= 1.0.0", "1.0.0"),
    (">=0.1.97", "0.1.97"),
    ("0.1.20 || 1.2.4", "1.2.4"),
    (">=0.2.3 || <0.0.1", "0.0.0"),
    (">=0.2.3 || <0.0.1", "0.2.4"),
    ("2.x.x", "2.1.3"),
    ("1.2.x", "1.2.3"),
    ("1.2.x || 2.x", "2.1.3"),
    ("x", "1.2.3"),
    ("2.*.*", "2.1.3"),
    ("2", "2.1.2"),
    ("2.3", "2.3.1"),
    ("~0.0.1", "0.0.2"),
    ("~x", "0.0.9"),
    ("~2", "2.0.9"),
    ("~2.4", "2.4.5"),
    ("~>3.2.1", "3.2.2"),
    ("~1", "1.2.3"),
    ("~> 1", "1.2.3"),
    ("~ 1.0", "1.0.2"),
    (">=1", "1.0.0"),
    ("<1.2", "1.1.1"),
    ("=0.7.x", "0.7.2"),
    ("<=0.7.x", "0.7.2"),
    (">=0.7.x", "0.7.2"),
    ("~1.2.1 >=1.2.3", "1.2.3"),
    ("~1.2.1 =1.2.3", "1.2.3"),
    ("~1.2.1 1.2.3", "1.2.3"),
    (">=1.2.3 >=1.2.1", "1.2.3"),
    (">=1.2", "1.2.8"),
    ("^1.2.3", "1.8.1"),
    ("^0.1.2", "0.1.2"),
    ("^0.1", "0.1.2"),
    ("^0.0.1", "0.0.1"),
    ("^1.2", "1.4.2"),
    ("^1.2 ^1", "1.4.2"),
    ("^1.2.3-alpha", "1.2.3-pre"),
    ("^1.2.0-alpha", "1.2.0-pre"),
    ("^0.0.1-alpha", "0.0.1-beta"),
    ("^0.0.1-alpha", "0.0.1"),
    ("^0.1.1-alpha", "0.1.1-beta"),
    ("^x", "1.2.3"),
    ("x - 1.0.0", "0.9.7"),
    ("x - 1.x", "0.9.7"),
    ("1.0.0 - x", "1.9.7"),
    ("1.x - x", "1.9.7"),
    ("<=7.x", "7.9.9"),
    (">=1,<2", "1.9.0"),  # mvc: a comma is AND, as in DESIGN.md's example
    ("v1.2.3", "1.2.3"),
]

EXCLUDED = [
    ("1.0.0 - 2.0.0", "2.2.3"),
    ("1.2.3+asdf - 2.4.3+asdf", "1.2.3-pre.2"),
    ("^1.2.3+build", "2.0.0"),
    ("^1.2.3+build", "1.2.0"),
    ("^1.2.3", "1.2.3-pre"),
    ("^1.2", "1.2.0-pre"),
    (">1.2", "1.3.0-beta"),
    ("<=1.2.3", "1.2.3-beta"),
    ("^1.2.3", "1.2.3-beta"),
    ("1.0.0", "1.0.1"),
    (">=1.0.0", "0.0.0"),
    (">1.0.0", "0.1.0"),
    ("<=2.0.0", "3.0.0"),
    ("<=2.0.0", "2.2.9"),
    ("<2.0.0", "2.9999.9999"),
    (">=0.1.97", "0.1.93"),
    ("0.1.20 || 1.2.4", "1.2.3"),
    (">=0.2.3 || <0.0.1", "0.0.3"),
    ("2.x.x", "1.1.3"),
    ("2.x.x", "3.1.3"),
    ("1.2.x", "1.3.3"),
    ("1.2.x || 2.x", "3.1.3"),
    ("2.*.*", "1.1.3"),
    ("2", "1.1.2"),
    ("2.3", "2.4.1"),
    ("~0.0.1", "0.1.0-alpha"),
    ("~0.0.1", "0.1.0"),
    ("~2.4", "2.5.0"),
    ("~2.4", "2.3.9"),
    ("~>3.2.1", "3.3.2"),
    ("~>3.2.1", "3.2.0"),
    ("~1", "0.2.3"),
    ("~>1", "2.2.3"),
    ("~1.0", "1.1.0"),
    ("<1", "1.0.0"),
    (">=1.2", "1.1.1"),
    ("=0.7.x", "0.8.2"),
    (">=0.7.x", "0.6.2"),
    ("<0.7.x", "0.7.2"),
    ("<1.2.3", "1.2.3-beta"),
    ("=1.2.3", "1.2.3-beta"),
    (">1.2", "1.2.8"),
    ("^0.0.1", "0.0.2-alpha"),
    ("^0.0.1", "0.0.2"),
    ("^1.2.3", "2.0.0-alpha"),
    ("^1.2.3", "1.2.2"),
    ("^1.2", "1.1.9"),
    ("*", "1.2.3-foo"),
    ("^1.0.0", "2.0.0-rc1"),
    ("^1.2.3-rc2", "2.0.0"),
    ("^1.2.3-alpha", "1.2.4-alpha"),
    ("1 - 2", "3.0.0-pre"),
    ("1 - 2", "2.0.0-pre"),
    (">=1.0.0 <1.1.0", "1.1.0"),
    (">=1.0.0 <1.1.0", "1.1.0-pre"),
    (">=1,<2", "2.0.0"),
]


@pytest.mark.parametrize(("text", "version"), INCLUDED)
def test_range_includes(text: str, version: str) -> None:
    assert parse_range(text).matches(semver.Version.parse(version))


@pytest.mark.parametrize(("text", "version"), EXCLUDED)
def test_range_excludes(text: str, version: str) -> None:
    assert not parse_range(text).matches(semver.Version.parse(version))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("^1.2.3", ">=1.2.3 <2.0.0-0"),
        ("^0.2.3", ">=0.2.3 <0.3.0-0"),
        ("^0.0.3", ">=0.0.3 <0.0.4-0"),
        ("^1.2.x", ">=1.2.0 <2.0.0-0"),
        ("^0.0.x", ">=0.0.0 <0.1.0-0"),
        ("^0.0", ">=0.0.0 <0.1.0-0"),
        ("^1.x", ">=1.0.0 <2.0.0-0"),
        ("^0.x", ">=0.0.0 <1.0.0-0"),
        ("^1.2.3-beta.2", ">=1.2.3-beta.2 <2.0.0-0"),
        ("~1.2.3", ">=1.2.3 <1.3.0-0"),
        ("~1.2", ">=1.2.0 <1.3.0-0"),
        ("~1", ">=1.0.0 <2.0.0-0"),
        ("~0.2.3", ">=0.2.3 <0.3.0-0"),
        ("~0", ">=0.0.0 <1.0.0-0"),
        ("~1.2.3-beta.2", ">=1.2.3-beta.2 <1.3.0-0"),
        ("1.2.3 - 2.3.4", ">=1.2.3 <=2.3.4"),
        ("1.2 - 2.3.4", ">=1.2.0 <=2.3.4"),
        ("1.2.3 - 2.3", ">=1.2.3 <2.4.0-0"),
        ("1.2.3 - 2", ">=1.2.3 <3.0.0-0"),
        (">1.2", ">=1.3.0"),
        ("<=1.2", "<1.3.0-0"),
        (">=1,<2", ">=1.0.0 <2.0.0-0"),
        ("1.2.3 || ^2", "=1.2.3 || >=2.0.0 <3.0.0-0"),
        ("*", "*"),
    ],
)
def test_range_desugars_like_npm(text: str, canonical: str) -> None:
    assert parse_range(text).canonical() == canonical


def test_prerelease_only_when_asked() -> None:
    rng = parse_range("^1.5")
    assert not rng.matches(semver.Version.parse("1.6.0-rc.1"))
    assert rng.matches(semver.Version.parse("1.6.0-rc.1"), include_prerelease=True)


@pytest.mark.parametrize("text", ["", "^", "^1.2.3.4", "~01.2", ">=abc", "1.2.3-01", "1.x.3-rc"])
def test_bad_ranges_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="semver range|range"):
        parse_range(text)


# --- tag names and bumps ----------------------------------------------------------------------


def test_normalize_tag() -> None:
    assert normalize_tag("1.4.0") == "v1.4.0"
    assert normalize_tag("v1.4.0") == "v1.4.0"
    assert normalize_tag("1.5.0-rc.1+build.7") == "v1.5.0-rc.1+build.7"
    assert normalize_tag("baseline") == "baseline"
    for bad in ("v1.4", "1.4.0.1", "v01.2.3", "1.2.3-rc.01"):
        with pytest.raises(InvalidName, match="SemVer"):
            normalize_tag(bad)


def V(text: str) -> semver.Version:
    return semver.Version.parse(text)


@pytest.mark.parametrize(
    ("existing", "bump", "pre", "expected"),
    [
        ([], "major", None, "1.0.0"),
        ([], "minor", None, "0.1.0"),
        ([], "patch", None, "0.0.1"),
        (["1.4.0", "1.3.9"], "minor", None, "1.5.0"),
        (["1.4.0", "1.3.9"], "patch", None, "1.4.1"),
        (["1.4.0", "0.9.0"], "major", None, "2.0.0"),
        (["1.4.0"], "minor", "rc", "1.5.0-rc.1"),
        (["1.4.0", "1.5.0-rc.1"], "minor", "rc", "1.5.0-rc.2"),
        (["1.4.0", "1.5.0-rc.2", "1.5.0-beta.7"], "minor", "rc", "1.5.0-rc.3"),
        (["1.4.0", "1.5.0-rc.2"], "minor", None, "1.5.0"),
        (["1.5.0", "1.5.0-rc.2"], "minor", "rc", "1.6.0-rc.1"),
        (["1.4.0", "2.0.0-rc.4"], "major", "rc", "2.0.0-rc.5"),
    ],
)
def test_next_version(existing: list[str], bump: str, pre: str | None, expected: str) -> None:
    assert str(next_version([V(v) for v in existing], bump, pre)) == expected


def test_prereleases_sort_below_their_release() -> None:
    versions = sorted([V("1.5.0"), V("1.5.0-rc.2"), V("1.5.0-rc.1"), V("1.4.0")])
    assert [str(v) for v in versions] == ["1.4.0", "1.5.0-rc.1", "1.5.0-rc.2", "1.5.0"]


# --- auto bumps on a real-shaped model -------------------------------------------------------


def write_bert(
    folder: Path,
    *,
    seed: int = 0,
    vocab: int = 64,
    hidden: int = 16,
    labels: int = 3,
    dropout: float = 0.1,
    dtype: type = np.float32,
    extra_tensor: bool = False,
    tokens: int = 64,
) -> Path:
    """A tiny BERT-shaped classifier: weights, config, tokenizer, README."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "bert.embeddings.word_embeddings.weight": rng.standard_normal((vocab, hidden)),
        "bert.encoder.layer.0.attention.self.query.weight": rng.standard_normal((hidden, hidden)),
        "bert.encoder.layer.0.attention.self.query.bias": np.zeros(hidden),
        "classifier.weight": rng.standard_normal((labels, hidden)),
        "classifier.bias": np.zeros(labels),
    }
    if extra_tensor:
        tensors["bert.pooler.dense.weight"] = rng.standard_normal((hidden, hidden))
    save_file({k: v.astype(dtype) for k, v in tensors.items()}, str(folder / "model.safetensors"))
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "hidden_dropout_prob": dropout,
        "id2label": {str(i): f"L{i}" for i in range(labels)},
        "label2id": {f"L{i}": i for i in range(labels)},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "tokenizer.json").write_text(
        json.dumps({"model": {"vocab": {f"t{i}": i for i in range(tokens)}}})
    )
    (folder / "README.md").write_text("# bert\n")
    return folder


@pytest.fixture
def released(store, cli):
    """``bert`` at models/bert, tagged v1.0.0."""
    write_bert(Path("models/bert"))
    cli("commit", "models/bert", "-m", "baseline")
    cli("tag", "bert", "v1.0.0")
    return Path("models/bert")


def auto_bump(cli) -> dict:
    return cli("tag", "bert", "--bump", "auto", "--dry-run", "--json").json()


@pytest.mark.parametrize(
    ("change", "level", "reason"),
    [
        (lambda f: write_bert(f, seed=1), "minor", "weights changed"),
        (lambda f: write_bert(f, dropout=0.2), "patch", "config changed"),
        (
            lambda f: (f / "README.md").write_text("# bert\n\nbetter docs\n"),
            "patch",
            "docs changed",
        ),
        (lambda f: write_bert(f, vocab=65), "major", "interface config changed"),
        (lambda f: write_bert(f, labels=4), "major", "tensor reshaped"),
        (lambda f: write_bert(f, dtype=np.float16), "major", "tensor retyped"),
        (lambda f: write_bert(f, extra_tensor=True), "major", "tensor added"),
        (lambda f: write_bert(f, tokens=65), "major", "tokenizer changed"),
    ],
    ids=["retrain", "dropout", "docs", "vocab", "labels", "dtype", "added", "tokenizer"],
)
def test_auto_bump_decides_from_the_change(released, cli, change, level, reason) -> None:
    change(released)
    cli("commit", "models/bert", "-m", "change")
    plan = auto_bump(cli)
    assert plan["level"] == level
    assert plan["tag"] == {"major": "v2.0.0", "minor": "v1.1.0", "patch": "v1.0.1"}[level]
    assert reason in {e["reason"] for e in plan["evidence"] if e["level"] == level}
    assert plan["created"] is False


def test_metadata_only_change_is_patch(released, cli) -> None:
    cli("commit", "models/bert", "-m", "eval", "--allow-empty", "--metric", "accuracy=0.9")
    plan = auto_bump(cli)
    assert plan["level"] == "patch"
    assert {e["reason"] for e in plan["evidence"]} >= {"metrics changed"}


def test_new_adapter_is_minor(released, cli) -> None:
    adapter = released / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["query"]})
    )
    save_file(
        {
            "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight": np.zeros(
                (2, 16), np.float32
            ),
            "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight": np.zeros(
                (16, 2), np.float32
            ),
        },
        str(adapter / "adapter_model.safetensors"),
    )
    cli("commit", "models/bert", "-m", "adapter")
    plan = auto_bump(cli)
    assert plan["level"] == "minor"
    assert "adapter added" in {e["reason"] for e in plan["evidence"]}


def test_flipping_fan_in_fan_out_alone_is_minor(released, cli) -> None:
    """``fan_in_fan_out`` changes how the adapter merges into the base: new merged weights."""
    adapter = released / "adapter"
    adapter.mkdir()
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["query"]}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    cli("commit", "models/bert", "-m", "adapter")
    cli("tag", "bert", "v1.1.0")
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "fan_in_fan_out": True}))
    cli("commit", "models/bert", "-m", "transposed")
    plan = auto_bump(cli)
    assert plan["level"] == "minor" and plan["tag"] == "v1.2.0"
    assert [e["detail"] for e in plan["evidence"] if e["level"] != "patch"] == [
        "adapter/adapter_config.json: fan_in_fan_out added (true)"
    ]


def test_auto_with_nothing_to_compare(store, cli) -> None:
    write_bert(Path("models/bert"))
    cli("commit", "models/bert", "-m", "baseline")
    result = cli("tag", "bert", "--bump", "auto", expect=EXIT_USAGE)
    assert "no release tag" in result.stderr
    assert result.stdout == ""


def test_auto_refuses_when_nothing_changed(released, cli) -> None:
    result = cli("tag", "bert", "--bump", "auto", expect=EXIT_USAGE)
    assert "does not differ" in result.stderr


def test_explain_prints_the_evidence(released, cli) -> None:
    write_bert(released, labels=4)
    cli("commit", "models/bert", "-m", "more labels")
    out = cli("tag", "bert", "--bump", "auto", "--explain").stdout
    lines = out.splitlines()
    assert lines[0].startswith("bert@v2.0.0 ")
    assert lines[1].startswith("major since v1.0.0")
    assert any("tensor reshaped" in line and "classifier.weight" in line for line in lines)
    assert any("id2label.3 added" in line for line in lines)
    assert cli("tag", "bert", "--json").json()[-1]["name"] == "v2.0.0"


# --- the tag command ----------------------------------------------------------------------------


def test_tag_validates_and_normalises(released, cli) -> None:
    cli("tag", "bert", "1.1.0")  # the same tag as v1.1.0
    assert [t["name"] for t in cli("tag", "bert", "--json").json()] == ["v1.0.0", "v1.1.0"]
    result = cli("tag", "bert", "v1.2", expect=EXIT_USAGE)
    assert "SemVer" in result.stderr
    cli("tag", "bert", "v1.2.0-rc.1+build.7")
    assert cli("show", "bert@v1.2.0-rc.1+build.7", "--json").json()["id"]


def test_tags_are_immutable_and_reserved(released, cli) -> None:
    write_bert(released, seed=5)
    cli("commit", "models/bert", "-m", "two")
    result = cli("tag", "bert", "v1.0.0", expect=EXIT_CONFLICT)
    assert "tags never move" in result.stderr
    cli("tag", "bert", "-d", "v1.0.0", expect=EXIT_USAGE)  # needs --force
    cli("tag", "bert", "-d", "1.0.0", "--force")
    result = cli("tag", "bert", "v1.0.0", expect=EXIT_CONFLICT)  # the name stays reserved
    assert "already named" in result.stderr
    result = cli("tag", "bert", "v1.0.0+rebuild", expect=EXIT_CONFLICT)  # same precedence
    assert "precedence" in result.stderr


def test_bump_counts_prereleases(released, cli) -> None:
    write_bert(released, seed=2)
    rc1 = cli("commit", "models/bert", "-m", "two").stdout.strip()
    first = cli("tag", "bert", "--bump", "minor", "--pre", "rc").stdout.split()
    write_bert(released, seed=3)
    rc2 = cli("commit", "models/bert", "-m", "three").stdout.strip()
    second = cli("tag", "bert", "--bump", "minor", "--pre", "rc").stdout.split()
    assert first == ["bert@v1.1.0-rc.1", rc1]
    assert second == ["bert@v1.1.0-rc.2", rc2]
    # a range skips pre-releases unless it names one
    result = cli("show", "bert@^1.1", expect=EXIT_ERROR)
    assert "no release of 'bert' matches '^1.1'" in result.stderr
    assert cli("show", "bert@^1.1.0-rc.1", "--json").json()["id"] == rc2
    assert cli("show", "bert@^1", "--json").json()["names"]["tags"] == ["v1.0.0"]
    write_bert(released, seed=4)
    final_id = cli("commit", "models/bert", "-m", "four").stdout.strip()
    assert cli("tag", "bert", "--bump", "minor").stdout.split() == ["bert@v1.1.0", final_id]
    assert cli("show", "bert@^1.1.0-rc.1", "--json").json()["id"] == final_id


def test_bump_skips_deleted_release_names(released, cli) -> None:
    write_bert(released, seed=2)
    cli("commit", "models/bert", "-m", "two")
    cli("tag", "bert", "v1.1.0")
    cli("tag", "bert", "-d", "v1.1.0", "--force")
    assert cli("tag", "bert", "--bump", "minor").stdout.startswith("bert@v1.2.0 ")


def test_bump_flag_errors(released, cli) -> None:
    cli("tag", "bert", "--bump", "sideways", expect=EXIT_USAGE)
    cli("tag", "bert", "--pre", "rc", expect=EXIT_USAGE)
    cli("tag", "bert", "--bump", "minor", "--pre", "r.c!", expect=EXIT_USAGE)
