"""``dir``: one plain folder per arm and ``routing.json``, for any server or a custom router.

``LABEL/`` holds the arm's base version, ``LABEL-adapter/`` its adapter. ``routing.json`` says
which folder serves which share and how mvc's sticky hashing assigns keys, so a router in any
language can reproduce ``mvc route``. Folders of arms the record no longer has are removed
(only files an earlier export wrote), and ``routing.json`` is written last.
"""

from __future__ import annotations

import json
from typing import Any

from mvc.exports.context import ExportContext
from mvc.router import serving_order


def write_dir(ctx: ExportContext) -> None:
    record = ctx.record
    arms: list[dict[str, Any]] = []
    prefixes: list[str] = []
    for arm in record.arms:
        ctx.sink.put_version(ctx.repo, arm.version, arm.label)
        entry: dict[str, Any] = {
            "label": arm.label,
            "role": arm.role,
            "version": arm.version,
            "weight": arm.weight,
            "path": arm.label,
            "adapter": None,
        }
        if arm.adapter:
            folder = f"{arm.label}-adapter"
            ctx.sink.put_version(ctx.repo, arm.adapter.version, folder)
            entry["adapter"] = {**arm.adapter.to_json(), "path": folder}
        arms.append(entry)
    for key in ctx.sink.previous:
        top = key.split("/", 1)[0]
        if "/" in key and top not in prefixes:
            prefixes.append(top)
    ctx.sink.prune(prefixes)
    document = {
        "format": 1,
        "model": record.model,
        "channel": record.channel,
        "record": record.id,
        "state": record.state,
        "arms": arms,
        "order": [a.label for a in serving_order(record.arms)],
        "shadows": [a.label for a in record.arms if a.role == "shadow"],
        "hashing": {
            "algorithm": "blake3",
            "input": "MODEL + '\\0' + CHANNEL + '\\0' + KEY (UTF-8)",
            "bucket": "first 8 digest bytes, big-endian, * 100 / 2**64",
            "rule": "walk 'order' adding weights; the first arm whose running total exceeds "
            "the bucket serves the key",
        },
    }
    ctx.config("routing.json", json.dumps(document, indent=2) + "\n")
    ctx.result.details = {"arms": {a["label"]: a["path"] for a in arms}}
