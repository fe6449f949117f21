"""Deprecations with dates: every consumer warned before the cutoff (checkout, load, pull,
export, resolve, the Router), refused after it (exit 23) unless allowed; deploys refused;
``mvc deprecations`` for CI; the webhook told once. Time is frozen (the store's clock, and
MVC_NOW for the command line)."""

from __future__ import annotations

import json
import textwrap
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from deployfix import Store

import mvc
from mvc.errors import Deprecated, UsageError, VersionDeprecationWarning
from mvc.ops import deploy as ops
from mvc.ops import deprecation, lifecycle
from mvc.ops.names import create_tag
from mvc.refnames import tag as tag_ref

M = "bert"
BEFORE = "2027-01-15T12:00:00Z"
AFTER = "2027-02-01T00:00:00Z"


def _deprecate(st: Store, spec: str = "bert@<1.5", **kw: str) -> lifecycle.DeprecateResult:
    return lifecycle.deprecate(
        st.repo, spec, on="2027-01-31", reason="leaks PII", replacement="bert@v1.6.0", **kw
    )


def _at(st: Store, when: str) -> None:
    st.clock.now = datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(UTC)


@pytest.fixture
def at_root(st: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.chdir(st.root)
    deprecation._WARNED.clear()  # "once per process": each test is its own process here
    return st


def test_a_range_is_deprecated_and_listed(at_root: Store, cli) -> None:
    st = at_root
    done = _deprecate(st)
    assert [d.name for d in done.deprecations] == ["bert@v1.4.0"]
    item = done.deprecations[0]
    assert item.message == (
        "bert@v1.4.0 is deprecated on 2027-01-31: leaks PII; use bert@v1.6.0 instead"
    )
    listed = cli("deprecations", "--json", env={"MVC_NOW": BEFORE}).json()
    assert [(d["name"], d["state"], d["days_left"]) for d in listed["deprecations"]] == [
        ("bert@v1.4.0", "announced", 16)
    ]
    after = cli("deprecations", env={"MVC_NOW": AFTER}).stdout
    assert "bert@v1.4.0  2027-01-31 (cutoff passed)  leaks PII  -> bert@v1.6.0" in after
    # The version id is unchanged; show lists the deprecation note.
    assert "deprecation: leaks PII" in cli("show", "bert@v1.4.0").stdout


def test_checkout_warns_before_and_refuses_after(at_root: Store, cli, tmp_path) -> None:
    _deprecate(at_root)
    before = cli("checkout", "bert@v1.4.0", "--to", tmp_path / "a", env={"MVC_NOW": BEFORE})
    assert "warning: bert@v1.4.0 is deprecated on 2027-01-31: leaks PII" in before.stderr
    data = cli(
        "checkout", "bert@v1.4.0", "--to", tmp_path / "b", "--json", env={"MVC_NOW": BEFORE}
    ).json()
    assert data["deprecation"]["on"] == "2027-01-31"
    assert data["deprecation"]["replacement"] == "bert@v1.6.0"
    late = cli("checkout", "bert@v1.4.0", "--to", tmp_path / "c", env={"MVC_NOW": AFTER}, expect=23)
    assert "cutoff passed" in late.stderr and "--allow-deprecated" in late.stderr
    assert not (tmp_path / "c").exists()
    cli(
        "checkout", "bert@v1.4.0", "--to", tmp_path / "c", "--allow-deprecated",
        env={"MVC_NOW": AFTER},
    )  # fmt: skip
    assert (tmp_path / "c" / "model.safetensors").exists()
    assert "warning" not in cli("checkout", "bert@v1.6.0", "--to", tmp_path / "d").stderr


def test_load_and_resolve_warn_once_then_refuse(at_root: Store, tmp_path) -> None:
    st = at_root
    _deprecate(st)
    _at(st, BEFORE)
    with pytest.warns(VersionDeprecationWarning, match=r"bert@v1.4.0 .* 2027-01-31.*bert@v1.6.0"):
        tensors = mvc.load("bert@v1.4.0", repo=st.repo, cache_dir=str(tmp_path / "cache"))
    assert "embeddings.weight" in tensors
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process per version: no second warning
        mvc.load("bert@v1.4.0", repo=st.repo, cache_dir=str(tmp_path / "cache"))
        mvc.resolve("bert@v1.4.0", repo=st.repo)
    _at(st, AFTER)
    with pytest.raises(Deprecated, match="cutoff passed"):
        mvc.load("bert@v1.4.0", repo=st.repo, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(Deprecated):
        mvc.resolve("bert@v1.4.0", repo=st.repo)
    assert mvc.resolve("bert@v1.4.0", repo=st.repo, allow_deprecated=True).version
    mvc.load("bert@v1.4.0", repo=st.repo, cache_dir=str(tmp_path / "c2"), allow_deprecated=True)


def test_the_router_warns_once_and_refuses_after(at_root: Store) -> None:
    st = at_root
    ops.set_channel(st.repo, M, "prod", "v1.4.0")
    _deprecate(st)
    _at(st, BEFORE)
    with pytest.warns(VersionDeprecationWarning, match="bert@v1.4.0 is deprecated"):
        router = mvc.Router(st.repo, M, "prod")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mvc.Router(st.repo, M, "prod")  # once per process
        assert router.route("user-1").version == st.ids["bert@v1.4.0"]
    _at(st, AFTER)
    with pytest.raises(Deprecated):
        mvc.Router(st.repo, M, "prod")
    assert mvc.Router(st.repo, M, "prod", allow_deprecated=True).record.id


def test_export_warns_before_and_refuses_after(at_root: Store, cli, tmp_path) -> None:
    st = at_root
    ops.set_channel(st.repo, M, "prod", "v1.4.0")
    _deprecate(st)
    out = cli(
        "export", M, "prod", "--format", "dir", "--to", tmp_path / "e", "--json",
        env={"MVC_NOW": BEFORE},
    )  # fmt: skip
    assert "warning: bert@v1.4.0 is deprecated" in out.stderr
    assert any("leaks PII" in w for w in out.json()["warnings"])
    late = cli(
        "export", M, "prod", "--format", "dir", "--to", tmp_path / "f", env={"MVC_NOW": AFTER},
        expect=23,
    )  # fmt: skip
    assert "cutoff passed" in late.stderr
    cli(
        "export", M, "prod", "--format", "dir", "--to", tmp_path / "f", "--allow-deprecated",
        env={"MVC_NOW": AFTER},
    )  # fmt: skip


def test_pull_warns_before_and_after(at_root: Store, cli, tmp_path) -> None:
    st = at_root
    _deprecate(st)
    cli("remote", "add", "origin", f"file://{tmp_path}/remote")
    cli("push", "origin", M)
    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{tmp_path}/remote")
    pulled = cli("-C", fresh, "pull", "origin", "bert@v1.4.0", "--json", env={"MVC_NOW": BEFORE})
    assert pulled.json()["warnings"] == [
        "bert@v1.4.0 is deprecated on 2027-01-31: leaks PII; use bert@v1.6.0 instead"
    ]
    again = cli("-C", fresh, "pull", "origin", M, env={"MVC_NOW": AFTER})
    assert "cutoff has passed: using it needs --allow-deprecated" in again.stderr
    cli("-C", fresh, "checkout", "bert@v1.4.0", "--to", tmp_path / "x", env={"MVC_NOW": AFTER},
        expect=23)  # fmt: skip


def test_deploying_is_refused_after_the_cutoff_even_forced(at_root: Store, cli) -> None:
    st = at_root
    _deprecate(st)
    moved = cli("channel", "set", M, "prod", "v1.4.0", "--json", env={"MVC_NOW": BEFORE}).json()
    assert any("leaks PII" in note for note in moved["notes"])
    cli("channel", "set", M, "prod", "v1.5.0", env={"MVC_NOW": BEFORE})
    for argv in (
        ("channel", "set", M, "prod", "v1.4.0"),
        ("channel", "set", M, "prod", "v1.4.0", "--force", "-m", "please"),
        ("deploy", M, "prod", "v1.4.0", "--canary", "5"),
    ):
        refused = cli(*argv, env={"MVC_NOW": AFTER}, expect=23)
        assert "cannot be deployed" in refused.stderr


def test_the_policy_file_deprecates_ranges_and_old_tags_still_count(at_root: Store) -> None:
    st = at_root
    with open(st.root + "/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write(
            textwrap.dedent(
                """
            deprecations:
              versions:
                - spec: "bert@<1.6"
                  cutoff: 2027-01-31
                  reason: "use 1.6"
                  replacement: bert@v1.6.0
            """
            )
        )
    names = {d.name: d.source for d in lifecycle.list_deprecations(st.repo)}
    assert names == {"bert@v1.4.0": "policy", "bert@v1.5.0": "policy"}
    # A release tagged later in the range is deprecated too (the rule is read at use).
    create_tag(st.repo, M, "v1.5.1", "v1.6.0")
    assert lifecycle.deprecation_of(st.repo, M, st.ids["bert@v1.6.0"]) is not None
    # The deprecated/* tag convention of older stores: a deprecation without a date.
    create_tag(st.repo, "sql-lora", "deprecated/v1.3.0", "v1.3.0", "bad fit")
    old = lifecycle.deprecation_of(st.repo, "sql-lora", st.ids["sql-lora@v1.3.0"])
    assert old is not None and old.on is None and old.source == "tag"
    assert (
        old.message
        == "sql-lora@v1.3.0 is deprecated with no cutoff date: tag deprecated/v1.3.0: bad fit"
    )
    _at(st, AFTER)
    assert lifecycle.check_use(st.repo, "sql-lora", st.ids["sql-lora@v1.3.0"]) == old  # warns only
    # An annotation wins over the policy file: lifting it ends the deprecation.
    lifecycle.deprecate(st.repo, "bert@v1.5.0", on=None, reason="", lift=True)
    assert lifecycle.deprecation_of(st.repo, M, st.ids["bert@v1.5.0"]) is None


def test_lifting_ends_an_old_deprecated_tag_for_deploys_too(at_root: Store) -> None:
    """A deprecated/* tag refuses deploys (as it always did) until `deprecate --lift`; then
    the version deploys again, and the tag still exists."""
    st = at_root
    create_tag(st.repo, M, "deprecated/v1.4.0", "v1.4.0", "bad fit")
    with pytest.raises(UsageError, match="is deprecated"):
        ops.set_channel(st.repo, M, "live", "v1.4.0")
    lifecycle.deprecate(st.repo, "bert@v1.4.0", on=None, reason="", lift=True)
    assert lifecycle.deprecation_of(st.repo, M, st.ids["bert@v1.4.0"]) is None
    ops.set_channel(st.repo, M, "live", "v1.4.0")
    assert st.repo.refs.get(tag_ref(M, "deprecated/v1.4.0")) == st.ids["bert@v1.4.0"]


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict]]]:
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.received
    finally:
        server.shutdown()
        server.server_close()


def test_the_webhook_is_called_once_per_deprecation(at_root: Store, cli, hook) -> None:
    st = at_root
    url, received = hook
    with open(st.root + "/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write(f"deprecations:\n  webhook: {url}\n")
    done = cli("deprecate", "bert@v1.4.0", "--on", "2027-01-31", "-m", "leaks PII", "--json")
    assert done.json()["notified"] == ["bert@v1.4.0"]
    assert len(received) == 1
    body = received[0]
    assert body["event"] == "deprecation" and body["version"] == st.ids["bert@v1.4.0"]
    assert body["on"] == "2027-01-31" and body["reason"] == "leaks PII"
    for _ in range(2):  # re-runs (CI every hour) never repeat a delivery
        assert cli("deprecations", "--json").json()["notified"] == []
    assert len(received) == 1
    cli("deprecate", "bert@v1.5.0", "--on", "2027-03-01", "-m", "old")
    assert cli("deprecations", "--json").json()["notified"] == []
    assert [r["name"] for r in received] == ["bert@v1.4.0", "bert@v1.5.0"]


def test_an_unreachable_webhook_is_retried_next_run(at_root: Store, cli, hook) -> None:
    st = at_root
    url, received = hook
    with open(st.root + "/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write("deprecations:\n  webhook: http://127.0.0.1:9/nothing-listens\n")
    failed = cli("deprecate", "bert@v1.4.0", "--on", "2027-01-31", "-m", "x", expect=1)
    assert "webhook http://127.0.0.1:9/nothing-listens is unreachable" in failed.stderr
    with open(st.root + "/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write(f"deprecations:\n  webhook: {url}\n")
    assert cli("deprecations", "--json").json()["notified"] == ["bert@v1.4.0"]
    assert len(received) == 1


def test_a_bare_on_key_is_explained(at_root: Store) -> None:
    from mvc.errors import PolicyError

    with open(at_root.root + "/mvc.yaml", "w", encoding="utf-8") as handle:
        handle.write(
            "deprecations:\n  versions:\n    - {spec: bert@<1.5, on: 2027-01-31, reason: x}\n"
        )
    with pytest.raises(PolicyError, match=r"mvc.yaml:\d+: .*write the date as `cutoff:`"):
        lifecycle.list_deprecations(at_root.repo)


def test_a_router_pin_outside_the_channel_is_checked_too(at_root: Store) -> None:
    """A pin to a version the channel does not serve is a use of that version: warned before
    its cutoff, refused after it (as load and checkout are), unless allowed."""
    st = at_root
    ops.set_channel(st.repo, M, "prod", "v1.6.0")
    _deprecate(st)
    router = mvc.Router(st.repo, M, "prod")
    _at(st, BEFORE)
    with pytest.warns(VersionDeprecationWarning, match="bert@v1.4.0 is deprecated"):
        assert router.route("k", version="v1.4.0").version == st.ids["bert@v1.4.0"]
    _at(st, AFTER)
    with pytest.raises(Deprecated):
        router.route("k", version="~1.4")  # another pin of it: not the one resolved before
    lenient = mvc.Router(st.repo, M, "prod", allow_deprecated=True)
    assert lenient.route("k", version="~1.4").version == st.ids["bert@v1.4.0"]
