"""Version specs: the grammar, every kind of REV, ~N, instants, ``latest`` and ambiguity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from mvc.errors import EXIT_ERROR, EXIT_USAGE, AmbiguousSpec, NotFound, UsageError
from mvc.ops.commit import commit
from mvc.ops.inspect import cat, show
from mvc.ops.names import create_branch, create_tag
from mvc.ops.worktrees import checkout
from mvc.refnames import channel
from mvc.repo import Repo
from mvc.specs import Spec, by_id, parse_spec, resolve, resolve_branch, resolve_model_rev

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("bert", Spec("bert")),
        ("team/bert", Spec("team/bert")),
        ("bert@v1.2.0", Spec("bert", "v1.2.0")),
        ("bert~2", Spec("bert", None, 2)),
        ("bert@main~3", Spec("bert", "main", 3)),
        ("bert@latest~1", Spec("bert", "latest", 1)),
        ("bert@^1.2", Spec("bert", "^1.2")),
        ("bert@~1.4", Spec("bert", "~1.4")),  # after '@', a leading ~ is a tilde range
        ("bert@~1.4~2", Spec("bert", "~1.4", 2)),
        ("bert@^1~1", Spec("bert", "^1", 1)),
        ("bert@>=1 ~2", Spec("bert", ">=1 ~2")),  # after a space, ~2 is a tilde comparator
        ("bert@>=1,<2", Spec("bert", ">=1,<2")),
        ("bert@=1.2.0", Spec("bert", "=1.2.0")),
        ("bert@2026-11-27T14:30", Spec("bert", "2026-11-27T14:30")),
        ("bert@prod:canary", Spec("bert", "prod:canary")),
        ("bert@tag=v1.0.0", Spec("bert", "tag=v1.0.0")),
        ("bert@3fa2c1d9", Spec("bert", "3fa2c1d9")),
    ],
)
def test_parse_spec(text: str, spec: Spec) -> None:
    assert parse_spec(text) == spec
    assert str(parse_spec(text)) == text


@pytest.mark.parametrize("text", ["", "@v1", "bert@", "be rt", "bert/@x", "~2"])
def test_parse_spec_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_spec(text)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def write(folder: Path, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_file({"w": rng.standard_normal((4, 4)).astype(np.float32)}, str(folder / "m.safetensors"))


@pytest.fixture
def history(store):
    """bert: v1 (T0) and v2 (T0+1h) on main; v3 (T0+2h) on branch exp from v1.

    Tags v1.0.0 -> v1, v1.1.0 -> v2, v2.0.0-rc.1 -> v3; channel prod: stable v1, canary v2.
    """
    clock = Clock()
    repo = Repo(store.root, clock=clock)
    folder = Path("models/bert")
    write(folder, 1)
    v1 = commit(repo, str(folder), message="one").version_id
    clock.now = T0 + timedelta(hours=1)
    write(folder, 2)
    v2 = commit(repo, str(folder), message="two").version_id
    clock.now = T0 + timedelta(hours=2)
    create_branch(repo, "bert", "exp", "main~1")
    write(Path("elsewhere"), 3)
    v3 = commit(repo, "elsewhere", message="three", model="bert", branch="exp").version_id
    create_tag(repo, "bert", "v1.0.0", f"id={v1}")
    create_tag(repo, "bert", "1.1.0", f"id={v2}")
    create_tag(repo, "bert", "v2.0.0-rc.1", "exp")
    record = {
        "type": "deployment",
        "format": 1,
        "model": "bert",
        "channel": "prod",
        **{"previous": None, "restores": None, "action": "deploy", "state": "canary"},
        **{"who": "Ada", "when": "2026-03-01T12:00:00Z", "why": "canary"},
        "arms": [
            {"role": "stable", "version": v1, "weight": 90},
            {"role": "canary", "version": v2, "weight": 10},
        ],
        "refs": [v1, v2],
    }
    repo.refs.set_if_equals(channel("bert", "prod"), None, repo.objects.put_meta(record), "deploy")
    return repo, v1, v2, v3


@pytest.mark.parametrize(
    ("rev", "expected", "kind", "name"),
    [
        (None, "v2", "branch", "main"),
        ("main", "v2", "branch", "main"),
        ("exp", "v3", "branch", "exp"),
        ("v1.0.0", "v1", "tag", "v1.0.0"),
        ("1.0.0", "v1", "tag", "v1.0.0"),
        ("^1", "v2", "range", "v1.1.0"),
        ("~1.0", "v1", "range", "v1.0.0"),
        (">=1,<2", "v2", "range", "v1.1.0"),
        (">=1 <1.1", "v1", "range", "v1.0.0"),
        ("=1.0.0", "v1", "range", "v1.0.0"),
        ("^2.0.0-rc.0", "v3", "range", "v2.0.0-rc.1"),
        # the x-ranges, partial versions, * and hyphen ranges docs/versioning.md promises
        ("1.x", "v2", "range", "v1.1.0"),
        ("1", "v2", "range", "v1.1.0"),
        ("v1", "v2", "range", "v1.1.0"),
        ("1.0.x", "v1", "range", "v1.0.0"),
        ("*", "v2", "range", "v1.1.0"),
        ("1.0 - 1.4", "v2", "range", "v1.1.0"),
        ("1.0.0 - 1.0.9", "v1", "range", "v1.0.0"),
        ("1.0.x || 3", "v1", "range", "v1.0.0"),
        ("prod", "v1", "channel", "prod"),
        ("prod:canary", "v2", "channel", "prod:canary"),
        ("latest", "v3", "latest", None),
        ("2026-03-01T12:30", "v1", "instant", None),
        ("2026-03-01T13:00:00Z", "v2", "instant", None),
        ("2026-03-01T15:00+02:00", "v2", "instant", None),  # 13:00 UTC
        ("2026-03-01T14:59:59+02:00", "v1", "instant", None),
        ("2026-03-02", "v2", "instant", None),
    ],
)
def test_resolve(history, rev, expected, kind, name) -> None:
    repo, *ids = history
    want = dict(zip(("v1", "v2", "v3"), ids, strict=True))[expected]
    resolved = resolve(repo, "bert" if rev is None else f"bert@{rev}")
    assert (resolved.version, resolved.kind, resolved.name) == (want, kind, name)


def test_a_loose_range_that_is_also_a_branch_name_is_refused(history) -> None:
    repo, v1, _v2, _v3 = history
    create_branch(repo, "bert", "1.x", f"id={v1}")
    with pytest.raises(AmbiguousSpec, match="a semver range, or branch 1.x"):
        resolve(repo, "bert@1.x")
    assert resolve(repo, "bert@branch=1.x").version == v1
    assert resolve(repo, "bert@=1.x").name == "v1.1.0"


def test_back_steps(history) -> None:
    repo, v1, v2, v3 = history
    assert resolve(repo, "bert~1").version == v1
    assert resolve(repo, "bert@main~1").version == v1
    assert resolve(repo, "bert@exp~1").version == v1
    assert resolve(repo, "bert@latest~1").version == v1
    assert resolve(repo, "bert@^1~1").version == v1  # ~N glued to a range: a back step
    with pytest.raises(NotFound, match="only 1 earlier"):
        resolve(repo, "bert~2")


def test_id_prefixes(history) -> None:
    repo, v1, _v2, _v3 = history
    resolved = resolve(repo, f"bert@{v1[:8]}")
    assert (resolved.version, resolved.kind) == (v1, "id")
    assert resolve(repo, f"bert@id={v1}").version == v1
    with pytest.raises(NotFound):
        resolve(repo, "bert@deadbeef")


def test_an_all_digit_id_prefix_resolves_when_no_release_matches_it(history) -> None:
    """`bert@95503364` reads as a range (major 95503364) too; with no such release only the
    id can be meant, so the short ids mvc prints paste back. A release in the range makes it
    ambiguous again."""
    repo, *_ = history
    folder = Path("models/digits")
    for step in range(2000):  # deterministic (a fixed clock): the first all-digit prefix
        (folder / "config.json").parent.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(f'{{"step": {step}}}')
        version = commit(repo, str(folder), message=f"step {step}", model="digits").version_id
        if version[:8].isdigit() and version[:8] != "0" * 8:
            break
    else:
        pytest.fail("no all-digit id prefix in 2000 versions")
    prefix = version[:8]
    assert resolve(repo, f"digits@{prefix}").version == version
    assert resolve(repo, f"digits@{version[:12]}").version == version
    create_tag(repo, "digits", f"v{int(prefix)}.0.0", f"id={version}")
    with pytest.raises(AmbiguousSpec, match="a semver range, or id"):
        resolve(repo, f"digits@{prefix}")


def test_use_cases_take_a_resolved_version_as_it_is(history, tmp_path) -> None:
    """Use cases pass each other resolved versions, never spec text to parse again."""
    repo, v1, _v2, v3 = history
    old = by_id("bert", v1)
    assert resolve(repo, old) is old
    assert str(old) == f"bert@{v1[:12]}" and resolve(repo, str(old)).version == v1
    assert show(repo, old).resolved is old
    assert b"".join(cat(repo, old, "m.safetensors")) == b"".join(
        cat(repo, f"bert@id={v1}", "m.safetensors")
    )
    done = checkout(repo, old, to=str(tmp_path / "v1"))
    assert (done.version, done.head, done.bound) == (v1, None, False)
    create_tag(repo, "bert", "v0.9.0", old)
    assert resolve(repo, "bert@v0.9.0").version == v1
    assert resolve_model_rev(repo, "bert", old) is old
    assert resolve_model_rev(repo, "bert", "exp").version == v3
    with pytest.raises(UsageError, match="not of 'gpt'"):
        resolve_model_rev(repo, "gpt", old)
    tip = resolve_branch(repo, "bert", "exp")
    assert (tip.version, tip.kind, tip.branch) == (v3, "branch", "exp")
    with pytest.raises(NotFound):
        resolve_branch(repo, "bert", "nope")


def test_no_match(history) -> None:
    repo, *_ = history
    with pytest.raises(NotFound, match="matches '\\^3'"):
        resolve(repo, "bert@^3")
    with pytest.raises(NotFound, match="at or before"):
        resolve(repo, "bert@2020-01-01")
    with pytest.raises(NotFound, match="gpt"):
        resolve(repo, "gpt@latest")


def test_ambiguity_lists_candidates(history) -> None:
    repo, v1, v2, v3 = history
    create_branch(repo, "bert", "v1.0.0", "exp")
    with pytest.raises(AmbiguousSpec) as caught:
        resolve(repo, "bert@v1.0.0")
    assert "branch v1.0.0" in caught.value.message and "tag v1.0.0" in caught.value.message
    assert resolve(repo, "bert@tag=v1.0.0").version == v1
    assert resolve(repo, "bert@branch=v1.0.0").version == v3
    create_branch(repo, "bert", "latest", "main")
    with pytest.raises(AmbiguousSpec, match="newest version"):
        resolve(repo, "bert@latest")
    assert resolve(repo, "bert@branch=latest").version == v2
    create_branch(repo, "bert", "2026-03-02", "main~1")
    with pytest.raises(AmbiguousSpec, match="an instant"):
        resolve(repo, "bert@2026-03-02")


def test_range_tie_on_build_metadata_is_refused_at_tag_time(history) -> None:
    repo, v1, v2, _v3 = history
    create_tag(repo, "bert", "v1.1.0+again", f"id={v2}")  # same version: fine
    from mvc.errors import ImmutableRef

    with pytest.raises(ImmutableRef, match="precedence"):
        create_tag(repo, "bert", "v1.1.0+other", f"id={v1}")
    assert resolve(repo, "bert@^1").version == v2


def test_cli_ambiguity_exit_code(history, cli) -> None:
    repo, *_ = history
    create_branch(repo, "bert", "prod", "main")
    result = cli("show", "bert@prod", expect=EXIT_USAGE)
    assert "ambiguous" in result.stderr and "channel prod" in result.stderr
    assert result.stdout == ""
    assert cli("show", "bert@^9", expect=EXIT_ERROR).stderr.startswith("error: no release")
    assert cli("log", "bert~1", "--json").json()[0]["message"] == "one"
