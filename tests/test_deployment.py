"""Deployment records and the rollout state machine as pure values: no store, no I/O.

The golden values pin the on-disk bytes and ids of deployment records: if one of these fails,
ids of existing records would change (see docs/storage-format.md).
"""

from __future__ import annotations

from mvc.ids import hash_bytes
from mvc.objects import encode_object
from mvc.ops.deploy import AdapterRef, Arm, Record, decode_record

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
