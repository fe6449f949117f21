"""mvc.Router: sticky, weighted, shadow-aware routing that follows channel moves."""

from __future__ import annotations

import os
import threading
from collections import Counter

import pytest
from deployfix import Store

import mvc
from mvc.errors import NotFound
from mvc.ids import new_hasher
from mvc.ops import deploy as ops
from mvc.router import Router, bucket_of

M, C = "bert", "prod"
KEYS = [f"user-{i}" for i in range(100_000)]


def shares(router: Router, keys: list[str]) -> dict[str, float]:
    counts = Counter(router.route(k).label for k in keys)
    return {label: n / len(keys) for label, n in counts.items()}


def test_bucket_hash_is_pinned() -> None:
    """routing.json documents this function; other languages must be able to reproduce it."""
    import blake3

    digest = blake3.blake3(b"bert\0prod\0user-42").digest(length=8)
    assert bucket_of("bert", "prod", "user-42") == int.from_bytes(digest, "big") * 100 / 2**64
    assert bucket_of("bert", "prod", "user-42") == pytest.approx(21.253414625)
    assert bucket_of("bert", "prod", b"user-42") == bucket_of("bert", "prod", "user-42")
    assert bucket_of("bert", "staging", "user-42") != bucket_of("bert", "prod", "user-42")


def test_same_key_same_arm_across_routers(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 30)
    first, second = Router(st.repo, M, C), Router(st.root, M, C)
    for key in KEYS[:2000]:
        decision = first.route(key)
        assert decision == first.route(key)
        assert decision.arm == second.route(key).arm


def test_canary_share_within_tolerance_over_100000_keys(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    got = shares(Router(st.repo, M, C), KEYS)
    assert got["canary"] == pytest.approx(0.10, abs=0.005)  # > 5 standard deviations
    assert got["stable"] == pytest.approx(0.90, abs=0.005)


def test_ab_shares_within_tolerance(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_ab(st.repo, M, C, [("v1.4.0", 20), ("v1.5.0", 30), ("v1.6.0", 50)])
    got = shares(Router(st.repo, M, C), KEYS)
    assert got == pytest.approx({"a": 0.2, "b": 0.3, "c": 0.5}, abs=0.006)


def test_growing_canary_only_moves_stable_keys(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    router = Router(st.repo, M, C)
    before = {k: router.route(k).label for k in KEYS[:20_000]}
    ops.step_canary(st.repo, M, C, 50)
    assert router.refresh()
    after = {k: router.route(k).label for k in KEYS[:20_000]}
    assert all(after[k] == "canary" for k, label in before.items() if label == "canary")
    assert all(before[k] == "stable" for k, label in after.items() if label == "stable")


def test_shadows_are_reported_separately(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_shadow(st.repo, M, C, "v1.6.0")
    router = Router(st.repo, M, C)
    decisions = [router.route(k) for k in KEYS[:5000]]
    assert {d.label for d in decisions} == {"stable"}
    assert all([s.version for s in d.shadows] == [st.ids["bert@v1.6.0"]] for d in decisions[:10])
    assert decisions[0].to_json()["shadows"][0]["role"] == "shadow"


def test_staged_green_and_warm_blue_get_no_traffic(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_blue_green(st.repo, M, C, "v1.6.0")
    router = Router(st.repo, M, C)
    assert {router.route(k).label for k in KEYS[:5000]} == {"stable"}
    ops.switch(st.repo, M, C)
    router.refresh()
    assert {router.route(k).version for k in KEYS[:5000]} == {st.ids["bert@v1.6.0"]}


def test_refresh_and_polling_notice_a_move(st: Store) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    now = [0.0]
    router = Router(st.repo, M, C, poll_interval=5, clock=lambda: now[0])
    assert router.route("k").version == st.ids["bert@v1.4.0"]
    assert router.refresh() is False
    ops.set_channel(st.repo, M, C, "v1.5.0")
    now[0] = 4.9
    assert router.route("k").version == st.ids["bert@v1.4.0"]  # not polled yet
    now[0] = 10.0
    decision = router.route("k")
    assert decision.version == st.ids["bert@v1.5.0"]
    assert decision.record == st.repo.refs.get(ops.channel_ref(M, C))
    explicit = Router(st.repo, M, C)
    ops.set_channel(st.repo, M, C, "v1.6.0")
    assert explicit.route("k").version == st.ids["bert@v1.5.0"]
    assert explicit.refresh() is True and explicit.route("k").version == st.ids["bert@v1.6.0"]


def test_missing_channel_is_an_error(st: Store) -> None:
    with pytest.raises(NotFound, match="does not exist") as caught:
        Router(st.repo, M, "nowhere")
    assert caught.value.hint and "mvc channel set" in caught.value.hint


def _b3(path: str) -> str:
    hasher = new_hasher()
    with open(path, "rb") as handle:
        hasher.update(handle.read())
    return str(hasher.hexdigest())


def test_paths_are_materialised_on_demand_once(st: Store, tmp_path) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
    router = Router(st.repo, M, C, cache_dir=str(tmp_path / "cache"))
    decision = router.route("user-1")
    folder = router.path(decision)
    assert folder.startswith(str(tmp_path / "cache"))
    tree = st.repo.objects.get_tree(st.repo.objects.get_version(decision.version).tree)
    assert sorted(os.listdir(folder)) == sorted(tree.files)
    weights = os.path.join(folder, "model.safetensors")
    assert _b3(weights) == tree.files["model.safetensors"].b3
    stamp = os.stat(weights).st_mtime_ns
    assert router.path(decision.arm) == folder and os.stat(weights).st_mtime_ns == stamp
    adapter = router.adapter_path(decision)
    assert adapter and os.path.isfile(os.path.join(adapter, "adapter_config.json"))
    leftovers = [n for n in os.listdir(os.path.dirname(folder)) if n.startswith(".tmp")]
    assert leftovers == []


def test_concurrent_materialisation_gives_one_complete_folder(st: Store, tmp_path) -> None:
    ops.set_channel(st.repo, M, C, "v1.5.0")
    router = Router(st.repo, M, C, cache_dir=str(tmp_path / "cache"))
    arm = router.arms[0]
    found: list[str] = []
    threads = [threading.Thread(target=lambda: found.append(router.path(arm))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1
    assert os.path.isfile(os.path.join(found[0], "model.safetensors"))
    assert os.listdir(os.path.dirname(found[0])) == [st.ids["bert@v1.5.0"]]


def test_router_is_exported_lazily_from_mvc() -> None:
    assert mvc.Router is Router


def test_cli_route(st: Store, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(st.root)
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 50)
    out = cli("route", "bert", "prod", "--key", "user-42", "-k", "user-7")
    lines = [line.split() for line in out.stdout.splitlines()]
    router = Router(st.repo, M, C)
    assert lines == [
        ["user-42", router.route("user-42").label, router.route("user-42").version],
        ["user-7", router.route("user-7").label, router.route("user-7").version],
    ]
    data = cli("route", "bert", "prod", "--key", "user-42", "--json", "--path").json()
    assert data["arm"]["version"] == router.route("user-42").version
    assert os.path.isfile(os.path.join(data["path"], "config.json"))
    cli("route", "bert", "nowhere", "--key", "x", expect=1)


# --- version pins (the gateway's X-Model-Version) -------------------------------------------------


def test_route_with_a_version_pin(st: Store) -> None:
    from mvc.router import PINNED

    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    router = Router(st.repo, M, C)
    keys = KEYS[:500]
    by_channel = {router.route(k).label for k in keys}
    assert by_channel == {"stable", "canary"}
    for pin in (
        "v1.5.0",
        "1.5.0",
        "~1.5",
        st.ids["bert@v1.5.0"][:10],
        "bert@v1.5.0",
        "prod:canary",
    ):
        decisions = [router.route(k, version=pin) for k in keys]
        assert {d.label for d in decisions} == {"canary"}, pin
        assert {d.version for d in decisions} == {st.ids["bert@v1.5.0"]}
        assert {d.arm.role for d in decisions} == {PINNED} and decisions[0].pinned == pin
    pinned = router.route("user-1", version="~1.4")
    assert pinned.label == "stable" and pinned.arm.role == PINNED
    assert router.route("user-1", version="^1.4").version == st.ids["bert@v1.6.0"]  # highest 1.x
    # a version the channel does not serve: still honoured, as an arm of weight 0
    outside = router.route("user-1", version="v1.6.0")
    assert outside.version == st.ids["bert@v1.6.0"] and outside.label == PINNED
    assert outside.arm.weight == 0 and outside.to_json()["pinned"] == "v1.6.0"
    # no pin: the channel decides, and the decision says nothing was pinned
    plain = router.route("user-1")
    assert plain.pinned is None and plain.arm.role in ("stable", "canary")
    assert router.route("user-1", version=None) == plain


def test_route_pins_follow_channel_moves_and_refuse_other_models(st: Store) -> None:
    from mvc.errors import UsageError

    ops.set_channel(st.repo, M, C, "v1.4.0")
    router = Router(st.repo, M, C)
    assert router.route("k", version="v1.5.0").label == "pinned"
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    assert router.refresh()
    assert router.route("k", version="v1.5.0").label == "canary"
    with pytest.raises(NotFound):
        router.route("k", version="v9.9.9")
    with pytest.raises(UsageError, match="names model 'gpt'"):
        router.route("k", version="gpt@v1.0.0")
    with pytest.raises(UsageError, match="empty version pin"):
        router.route("k", version=" ")
