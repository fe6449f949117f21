"""Deployment records and the rollout state machine as pure values: no store, no I/O.

The golden values pin the on-disk bytes and ids of deployment records: if one of these fails,
ids of existing records would change (see docs/storage-format.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace

import pytest
from deployfix import TABLE
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as hs

from mvc.deployment.names import ModelTags, Names
from mvc.deployment.planners import (
    Context,
    Planned,
    Promote,
    Request,
    Rollback,
    SetTo,
    StageGreen,
    StartAB,
    StartCanary,
    StartShadow,
    StepCanary,
    Switch,
    plan,
)
from mvc.deployment.records import (
    STATES,
    AdapterRef,
    Arm,
    Record,
    Target,
    arm_rev,
    decode_record,
    record_id,
    serving_arm,
    state_of,
)
from mvc.errors import AmbiguousSpec, CorruptObject, MvcError, NotFound, NothingToDo, UsageError
from mvc.ids import ObjectId, hash_bytes
from mvc.objects import encode_object

A, B, L, P = "a" * 64, "b" * 64, "c" * 64, "d" * 64

GOLDEN_CANARY = Record(
    "bert",
    "prod",
    (Arm("stable", A, 90), Arm("canary", B, 10, adapter=AdapterRef("sql-lora", L))),  # type: ignore[arg-type]
    P,  # type: ignore[arg-type]
    "Ada <ada@example.com>",
    "2026-03-03T12:00:00Z",
    "p99 flat",
    "deploy",
)
GOLDEN_CANARY_BYTES = (
    b'{"action":"deploy","arms":[{"role":"stable","version":"' + A.encode() + b'","weight":90},'
    b'{"adapter":{"model":"sql-lora","version":"' + L.encode() + b'"},"role":"canary",'
    b'"version":"' + B.encode() + b'","weight":10}],"channel":"prod","format":1,"model":"bert",'
    b'"previous":"'
    + P.encode()
    + b'","refs":["'
    + A.encode()
    + b'","'
    + B.encode()
    + b'","'
    + L.encode()
    + b'"],"restores":null,"state":"canary","type":"deployment",'
    b'"when":"2026-03-03T12:00:00Z","who":"Ada <ada@example.com>","why":"p99 flat"}'
)
GOLDEN_CANARY_ID = "9a833e16e46c3c5e7c3d0759fcf38d102a723d25ff9c1e2ab85049aaeb9e984b"

GOLDEN_AB_ROLLBACK = Record(
    "bert",
    "prod",
    (Arm("ab", A, 40, name="a"), Arm("ab", B, 60, name="b")),  # type: ignore[arg-type]
    P,  # type: ignore[arg-type]
    "Ada",
    "2026-03-03T12:00:00Z",
    "x",
    "rollback",
    P,  # type: ignore[arg-type]
)
GOLDEN_AB_ROLLBACK_ID = "3539ca59fab16e60aec98d6734c25e54dcc1779e1201bedbd842e5a609567588"


def test_record_golden_bytes_and_ids() -> None:
    data = encode_object(GOLDEN_CANARY.value())
    assert data == GOLDEN_CANARY_BYTES
    assert hash_bytes(data) == GOLDEN_CANARY_ID
    assert hash_bytes(encode_object(GOLDEN_AB_ROLLBACK.value())) == GOLDEN_AB_ROLLBACK_ID


def test_golden_records_decode_back() -> None:
    for record, oid in (
        (GOLDEN_CANARY, GOLDEN_CANARY_ID),
        (GOLDEN_AB_ROLLBACK, GOLDEN_AB_ROLLBACK_ID),
    ):
        decoded = decode_record(record.value(), oid)
        assert decoded.arms == record.arms and decoded.id == oid
        assert decoded.value() == record.value()


# --- the transition table, on pure planners -------------------------------------------------------

M, C = "bert", "prod"
V = {tag: ObjectId(str(i) * 64) for i, tag in enumerate(("v1.4.0", "v1.5.0", "v1.6.0"), start=1)}
LORA = {tag: ObjectId(c * 64) for c, tag in (("7", "v1.3.0"), ("8", "v1.4.0"))}
NAMES = Names(
    {
        M: ModelTags.from_tags((tag, oid, "") for tag, oid in V.items()),
        "sql-lora": ModelTags.from_tags((tag, oid, "") for tag, oid in LORA.items()),
    }
)


def t(tag: str, adapter: str | None = None) -> Target:
    return Target(V[tag], AdapterRef("sql-lora", LORA[adapter]) if adapter else None)


class Channel:
    """A channel as the planners see it: the current record and the ones behind it."""

    def __init__(self, names: Names = NAMES) -> None:
        self.records: list[Record] = []  # oldest first, stored (with ids)
        self.names = names
        self.minute = 0

    @property
    def current(self) -> Record | None:
        return self.records[-1] if self.records else None

    def earlier(self) -> tuple[Record, ...]:
        return tuple(reversed(self.records[:-1]))

    def plan(self, request: Request | Callable[[Channel], Request], message: str = "") -> Planned:
        if callable(request):
            request = request(self)
        self.minute += 1
        ctx = Context(M, C, "Ada", f"2026-03-03T12:{self.minute:02}:00Z", message, self.names)
        return plan(self.current, request, ctx)

    def move(self, request: Request | Callable[[Channel], Request], message: str = "") -> Record:
        planned = self.plan(request, message)
        record = replace(planned.record, id=record_id(planned.record))
        self.records.append(record)
        return record


def rollback(
    to: str | None = None, to_target: Target | None = None
) -> Callable[[Channel], Request]:
    return lambda ch: Rollback(ch.earlier(), to, to_target)


SETUPS: dict[str, list[Request]] = {
    "none": [],
    "stable": [SetTo(t("v1.4.0"))],
    "canary": [SetTo(t("v1.4.0")), StartCanary(t("v1.5.0"), 10)],
    "staged": [SetTo(t("v1.4.0")), StageGreen(t("v1.6.0"))],
    "switched": [SetTo(t("v1.4.0")), StageGreen(t("v1.6.0")), Switch()],
    "shadow": [SetTo(t("v1.4.0")), StartShadow(t("v1.6.0"))],
    "ab": [SetTo(t("v1.4.0")), StartAB(((t("v1.5.0"), 50), (t("v1.6.0"), 50)))],
}
ACTIONS: dict[str, Request | Callable[[Channel], Request]] = {
    "set": SetTo(t("v1.6.0")),
    "canary": StartCanary(t("v1.5.0"), 20),
    "step": StepCanary(30),
    "blue-green": StageGreen(t("v1.5.0")),
    "shadow": StartShadow(t("v1.5.0")),
    "ab": StartAB(((t("v1.5.0"), 30), (t("v1.6.0"), 70))),
    "promote": Promote(),
    "promote-arm": Promote("b"),
    "switch": Switch(),
    "rollback": rollback(),
}
U, N = UsageError, NotFound
CASES = [(s, a, outcome) for s, row in TABLE.items() for a, outcome in row.items()]


def channel_in(state: str) -> Channel:
    ch = Channel()
    for request in SETUPS[state]:
        ch.move(request)
    assert (ch.current.state if ch.current else "none") == state
    return ch


def test_table_covers_every_state_and_action() -> None:
    assert set(TABLE) == {"none", *STATES}
    assert all(set(row) == set(ACTIONS) for row in TABLE.values())


@pytest.mark.parametrize(
    ("state", "action", "outcome"), CASES, ids=[f"{s}-{a}" for s, a, _ in CASES]
)
def test_transition(state: str, action: str, outcome: object) -> None:
    ch = channel_in(state)
    before = ch.current
    if isinstance(outcome, str):
        record = ch.move(ACTIONS[action])
        assert record.state == outcome
        assert record.previous == (before.id if before else None)
        assert decode_record(record.value(), record.id or "") == record  # what the store keeps
        assert sum(a.weight for a in record.arms) == 100
    else:
        assert isinstance(outcome, type)
        with pytest.raises(outcome) as caught:
            ch.plan(ACTIONS[action])
        assert caught.value.message


# --- every refusal, with its message ---------------------------------------------------------------

AB_56 = StartAB(((t("v1.5.0"), 50), (t("v1.6.0"), 50)))
REFUSALS: list[tuple[str, Request | Callable[[Channel], Request], type[MvcError], str]] = [
    ("stable", StartCanary(t("v1.5.0"), 0), U, r"--canary 0: .* from 1 to 99"),
    ("canary", StepCanary(100), U, r"--step 100: .* from 1 to 99"),
    ("stable", StartCanary(t("v1.5.0"), True), U, "from 1 to 99"),  # type: ignore[arg-type]
    ("stable", StartAB(((t("v1.5.0"), 100),)), U, "between 2 and 26 arms"),
    ("stable", StartAB(((t("v1.5.0"), 50), (t("v1.6.0"), 40))), U, r"sum to 100 \(they sum to 90"),
    ("stable", StartAB(((t("v1.5.0"), 100), (t("v1.6.0"), 0))), U, "at least 1"),
    ("stable", StartAB(((t("v1.5.0"), 50), (t("v1.5.0"), 50))), U, "same target appears in two"),
    ("stable", SetTo(t("v1.4.0")), NothingToDo, "already serves v1.4.0 alone; nothing changed"),
    ("none", StartCanary(t("v1.5.0"), 10), N, "cannot start a canary: channel 'prod' of 'bert' "),
    ("canary", StageGreen(t("v1.6.0")), U, r"in state 'canary' \(stable v1.4.0 90%, canary v1.5.0"),
    ("staged", StartShadow(t("v1.5.0")), U, "cannot start a shadow: .* in state 'staged'"),
    ("ab", StartCanary(t("v1.5.0"), 10), U, "cannot start a canary: .* in state 'ab'"),
    ("stable", StartCanary(t("v1.4.0"), 10), U, "v1.4.0 already serves as the stable version"),
    ("stable", StageGreen(t("v1.4.0")), U, "cannot stage a blue-green deployment: v1.4.0 already"),
    ("stable", StartShadow(t("v1.4.0")), U, "cannot shadow: v1.4.0 already serves as the stable"),
    ("shadow", StartShadow(t("v1.6.0")), U, "v1.6.0 is already the shadow"),
    ("ab", AB_56, U, "already runs with exactly these arms"),
    ("none", StepCanary(10), N, "channel 'prod' of model 'bert' does not exist"),
    ("stable", StepCanary(10), U, r"cannot --step: .* has no canary \(it is in state 'stable'\)"),
    ("canary", StepCanary(10), U, "the canary already receives 10%"),
    ("canary", Promote("a"), U, "--arm is for A/B tests; channel 'prod' is in state 'canary'"),
    ("ab", Promote(), U, r"promote an A/B test with --arm NAME \(arms: a, b\)"),
    ("ab", Promote("c"), U, "no A/B arm 'c'; arms: a, b"),
    ("stable", Promote(), U, "cannot promote: channel 'prod' of 'bert' is in state 'stable'"),
    ("staged", Promote(), U, "is in state 'staged'"),
    ("shadow", Promote(), U, "is in state 'shadow'"),
    ("none", Promote(), N, "does not exist"),
    ("canary", Switch(), U, "cannot switch: .* in state 'canary'; switch needs a staged green"),
    ("none", Switch(), N, "does not exist"),
    ("none", rollback(), N, "does not exist"),
    ("stable", rollback(), N, "no earlier state to roll back to: no other version served it"),
]
HINTS = {
    ("canary", StageGreen(t("v1.6.0"))): "a canary is in progress; `mvc promote bert prod`",
    ("staged", StartShadow(t("v1.5.0"))): "a green version is staged; `mvc switch bert prod`",
    ("ab", StartCanary(t("v1.5.0"), 10)): "an A/B test is running; `mvc promote bert prod --arm",
    ("stable", Promote()): "nothing is being rolled out",
    ("staged", Promote()): "`mvc switch bert prod` sends traffic to it",
    ("shadow", Promote()): "a shadow serves no users; canary it first",
    ("stable", StepCanary(10)): "start one with `mvc deploy bert prod REV --canary N`",
    ("canary", Switch()): "stage one with `mvc deploy bert prod REV --blue-green`",
    ("none", StartCanary(t("v1.5.0"), 10)): "give it a stable version first: `mvc channel set",
    ("none", StepCanary(10)): "create it with `mvc channel set bert prod REV`",
}


@pytest.mark.parametrize(("state", "request_", "error", "match"), REFUSALS)
def test_refusal(state: str, request_: Request, error: type[MvcError], match: str) -> None:
    ch = channel_in(state)
    with pytest.raises(error, match=match) as caught:
        ch.plan(request_)
    hint = HINTS.get((state, request_)) if not callable(request_) else None
    if hint:
        assert caught.value.hint and hint in caught.value.hint


def test_deprecated_targets_are_refused_when_a_move_introduces_them() -> None:
    tags = [(tag, oid, "") for tag, oid in V.items()] + [("deprecated/v1.5.0", V["v1.5.0"], "PII")]
    lora = [("v1.3.0", LORA["v1.3.0"], ""), ("deprecated/old", LORA["v1.3.0"], "")]
    names = Names({M: ModelTags.from_tags(tags), "sql-lora": ModelTags.from_tags(lora)})
    ch = Channel(names)
    ch.move(SetTo(t("v1.4.0")))
    with pytest.raises(UsageError, match=r"bert@222222222222 is deprecated \(tag .*: PII\)"):
        ch.plan(StartCanary(t("v1.5.0"), 10))
    with pytest.raises(
        UsageError, match=r"sql-lora@777777777777 is deprecated \(tag deprecated/old\)"
    ):
        ch.plan(StartCanary(t("v1.6.0", "v1.3.0"), 10))
    assert ch.move(StartCanary(t("v1.6.0"), 10)).state == "canary"  # other versions still deploy
    assert names.version(M, V["v1.5.0"]) == "v1.5.0"  # a deprecated tag never names a version


def test_notes_say_what_a_new_rollout_releases() -> None:
    ch = channel_in("shadow")
    assert (
        "the shadow 333333333333 stops receiving traffic"
        in ch.plan(StartCanary(t("v1.5.0"), 5)).notes
    )
    ch = channel_in("switched")
    assert ch.plan(SetTo(t("v1.5.0"))).notes == ()
    assert "the warm blue 111111111111 is released" in ch.plan(StageGreen(t("v1.5.0"))).notes[0]


def test_messages_name_versions_by_their_best_tag() -> None:
    names = Names(
        {
            M: ModelTags.from_tags(
                [
                    ("1.4.0-rc.1", V["v1.4.0"], ""),
                    ("v1.4.0", V["v1.4.0"], ""),
                    ("x", V["v1.5.0"], ""),
                    ("b", V["v1.5.0"], ""),
                ]
            )
        }
    )
    ch = Channel(names)
    assert ch.move(SetTo(t("v1.4.0"))).why == "set v1.4.0 as the only version"
    assert ch.move(SetTo(t("v1.5.0")), " shipped ").why == "shipped"
    assert ch.plan(SetTo(t("v1.6.0"))).record.why == "set 333333333333 as the only version"
    assert names.version(M, V["v1.5.0"]) == "b"
    assert names.target(M, t("v1.4.0", "v1.3.0")) == "v1.4.0 + sql-lora@777777777777"


# --- rollback ---------------------------------------------------------------------------------------


def test_rollback_during_a_canary_restores_the_stable_alone() -> None:
    ch = Channel()
    first = ch.move(SetTo(t("v1.4.0")))
    ch.move(StartCanary(t("v1.5.0"), 10))
    step = ch.move(StepCanary(50))
    back = ch.move(rollback(), "p99 doubled")
    assert back.arms == first.arms and back.restores == first.id
    assert back.previous == step.id and back.action == "rollback" and back.why == "p99 doubled"
    with pytest.raises(NotFound, match="no earlier state"):
        ch.plan(rollback())


def test_rollback_skips_undone_rollouts() -> None:
    ch = Channel()
    ch.move(SetTo(t("v1.4.0")))
    ch.move(SetTo(t("v1.5.0")))
    ch.move(StartCanary(t("v1.6.0"), 10))
    ch.move(Promote())
    once = ch.move(rollback())
    assert once.arms[0].version == V["v1.5.0"]
    assert "roll back to record" in once.why and "(stable v1.5.0 100%)" in once.why
    twice = ch.move(rollback())  # the undone rollout is skipped, never redone
    assert twice.arms[0].version == V["v1.4.0"]
    with pytest.raises(NotFound, match="this record restores record .* no other version"):
        ch.plan(rollback())


def test_rollback_during_a_rollout_with_no_stable_before() -> None:
    ch = Channel()
    ch.move(SetTo(t("v1.4.0")))
    ch.move(StartCanary(t("v1.5.0"), 10))
    ch.records = ch.records[1:]  # a partial pull: the first record is not here
    ch.move(StepCanary(20))
    with pytest.raises(NotFound, match="is not in this store"):
        ch.plan(rollback())
    ch = Channel()
    ch.move(SetTo(t("v1.4.0")))
    canary = replace(ch.plan(StartCanary(t("v1.5.0"), 10)).record, previous=None)
    ch.records = [replace(canary, id=record_id(canary))]  # a channel that began as a canary
    with pytest.raises(NotFound, match="no stable version served it alone before this rollout"):
        ch.plan(rollback())


def test_rollback_to_a_chosen_record_or_version() -> None:
    ch = Channel()
    first = ch.move(SetTo(t("v1.4.0")))
    canary = ch.move(StartCanary(t("v1.5.0"), 10))
    ch.move(Promote())
    ch.move(SetTo(t("v1.6.0")))
    to_record = ch.move(rollback((canary.id or "")[:10]))
    assert to_record.state == "canary" and to_record.restores == canary.id
    to_version = ch.move(rollback("v1.4.0", t("v1.4.0")))
    assert to_version.restores == first.id
    with pytest.raises(UsageError, match="current record"):
        ch.plan(rollback((to_version.id or "")[:12]))
    with pytest.raises(NotFound, match="neither an earlier record"):
        ch.plan(rollback("v9.0.0"))
    with pytest.raises(UsageError, match="serves exactly what the channel serves now"):
        ch.plan(rollback((first.id or "")[:12]))


def test_rollback_to_an_ambiguous_prefix_is_refused() -> None:
    ch = Channel()
    a = ch.move(SetTo(t("v1.4.0")))
    fake = replace(ch.plan(SetTo(t("v1.5.0"))).record, id=ObjectId((a.id or "")[:4] + "f" * 60))
    ch.records.append(fake)
    ch.move(SetTo(t("v1.6.0")))
    with pytest.raises(AmbiguousSpec, match="matches 2 records"):
        ch.plan(rollback((a.id or "")[:4]))
    with pytest.raises(AmbiguousSpec, match="is both record"):
        ch.plan(rollback((fake.id or "")[:8], t("v1.4.0")))


# --- properties: any sequence of moves keeps the invariants ---------------------------------------

TARGETS = [t(tag) for tag in V] + [t("v1.4.0", "v1.3.0"), t("v1.5.0", "v1.4.0")]
targets = hs.sampled_from(TARGETS)
shares = hs.integers(min_value=-5, max_value=105)


@hs.composite
def ab_requests(draw: hs.DrawFn) -> StartAB:
    chosen = draw(hs.lists(targets, min_size=1, max_size=4))
    cuts = sorted(
        draw(hs.lists(hs.integers(0, 100), min_size=len(chosen) - 1, max_size=len(chosen) - 1))
    )
    weights = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    return StartAB(tuple(zip(chosen, weights, strict=True)))


requests = hs.one_of(
    hs.builds(SetTo, targets),
    hs.builds(StartCanary, targets, shares),
    hs.builds(StepCanary, shares),
    hs.builds(StageGreen, targets),
    hs.builds(StartShadow, targets),
    ab_requests(),
    hs.builds(Promote, hs.sampled_from([None, "a", "b", "c"])),
    hs.just(Switch()),
    hs.builds(lambda to: rollback(to), hs.none()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.lists(requests, min_size=1, max_size=25))
def test_every_planned_record_keeps_the_invariants(moves: list[Request]) -> None:
    ch = Channel()
    for request in [SetTo(t("v1.4.0")), *moves]:
        old = ch.current
        try:
            record = ch.move(request)
        except MvcError as refused:  # a refusal is one of ours, with a message, and moves nothing
            assert refused.message and ch.current is old
            continue
        assert sum(a.weight for a in record.arms) == 100
        labels = [a.label for a in record.arms]
        assert len(set(labels)) == len(labels)
        if record.state != "ab":
            roles = [a.role for a in record.arms]
            assert len(set(roles)) == len(roles) and roles[0] == "stable"
        assert record.previous == (old.id if old else None)
        assert decode_record(record.value(), record.id or "") == record
        assert set(record.refs()) == {oid for a in record.arms for oid in a.target.ids()}
        if record.action == "rollback":
            restored = next(r for r in ch.records if r.id == record.restores)
            assert record.arms == restored.arms and restored.state == "stable"
            assert restored is not old


@settings(max_examples=200, deadline=None)
@given(hs.lists(requests, min_size=1, max_size=12), hs.integers(0, 11))
def test_rollback_to_a_record_returns_its_arms(moves: list[Request], pick: int) -> None:
    ch = Channel()
    for request in [SetTo(t("v1.4.0")), *moves]:
        with contextlib.suppress(MvcError):
            ch.move(request)
    if len(ch.records) < 2:
        return
    chosen = ch.earlier()[pick % (len(ch.records) - 1)]
    try:
        back = ch.move(rollback(chosen.id))
    except UsageError as refused:
        assert chosen.arms == ch.records[-1].arms and "serves exactly" in refused.message
        return
    assert back.arms == chosen.arms and back.restores == chosen.id


def test_the_deployment_package_does_no_io() -> None:
    """The domain layer imports nothing that reads or writes (the layer test bans the store)."""
    import ast
    import pathlib

    import mvc.deployment

    io_modules = {"os", "io", "pathlib", "shutil", "tempfile", "socket", "subprocess", "fsspec"}
    for path in pathlib.Path(mvc.deployment.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & io_modules, path
            elif isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in io_modules, path
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", path


ROLLOUTS = hs.one_of(
    hs.builds(StartCanary, targets, hs.integers(1, 99)),
    hs.builds(StageGreen, targets),
    hs.builds(StartShadow, targets),
    ab_requests(),
)
FOLLOW_UPS = hs.lists(hs.one_of(hs.builds(StepCanary, hs.integers(1, 99)), hs.just(Switch())))


@settings(max_examples=200, deadline=None)
@given(targets, ROLLOUTS, FOLLOW_UPS)
def test_rollback_returns_the_arms_the_rollout_replaced(
    first: Target, rollout: Request, follow_ups: list[Request]
) -> None:
    ch = Channel()
    settled = ch.move(SetTo(first))
    try:
        ch.move(rollout)
    except UsageError:
        return  # e.g. the target already serves as the stable
    for request in follow_ups:
        with contextlib.suppress(UsageError):
            ch.move(request)
    back = ch.move(rollback())
    assert back.arms == settled.arms and back.restores == settled.id


def test_serving_arm_is_what_a_spec_names() -> None:
    ch = channel_in("canary")
    record = ch.current
    assert record is not None
    assert serving_arm(record).version == V["v1.4.0"]
    assert serving_arm(record, "canary").version == V["v1.5.0"]
    with pytest.raises(NotFound, match="channel 'prod' of 'bert' has no 'green' arm right now"):
        serving_arm(record, "green")
    ab = channel_in("ab").current
    assert ab is not None
    assert serving_arm(ab).version == V["v1.5.0"]  # an A/B test means its first arm
    assert serving_arm(ab, "b").version == V["v1.6.0"]
    with pytest.raises(NotFound):
        serving_arm(ab, "ab")  # arms go by label: the name of an A/B arm, else the role
    assert [arm_rev(record, a) for a in record.arms] == ["prod", "prod:canary"]
    assert [arm_rev(ab, a) for a in ab.arms] == ["prod:a", "prod:b"]
    for rec in (record, ab):  # each name resolves back to its arm
        assert all(
            serving_arm(rec, arm_rev(rec, a).partition(":")[2] or "stable") == a for a in rec.arms
        )


JSON = hs.recursive(
    hs.none()
    | hs.booleans()
    | hs.integers(-5, 105)
    | hs.text(max_size=8)
    | hs.sampled_from([A, B]),
    lambda inner: (
        hs.lists(inner, max_size=3) | hs.dictionaries(hs.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(hs.sampled_from(list(GOLDEN_CANARY.value())), JSON, hs.integers(0, 1), JSON)
@example("model", "", 0, None)  # a bad model name is a malformed record, not a usage error
@example("refs", [[A]], 0, None)  # refs that are not ids
def test_decoding_hostile_records_raises_only_our_errors(
    key: str, value: object, arm: int, item: object
) -> None:
    good = GOLDEN_CANARY.value()
    for bad in ({**good, key: value}, {**good, "arms": [*good["arms"][:arm], item]}):
        try:
            decoded = decode_record(bad, GOLDEN_CANARY_ID)
        except (CorruptObject, NotFound):
            continue
        assert (
            decoded.state == state_of(decoded.arms) and sum(a.weight for a in decoded.arms) == 100
        )
