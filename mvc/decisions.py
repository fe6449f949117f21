"""Which version made this prediction: the decision log, and routing replayed at an instant.

- ``DecisionLog`` appends one JSON line per routing decision (time, model, channel, key,
  record, arm, version, adapter, pin, status, latency): what serving code and ``mvc serve``
  write for audit. Lines are flushed as they are written, so a crash loses at most the line
  being written; the log is append-only and never rewritten.
- ``route_at`` answers from the channel's history (the move in force at an instant,
  ``ops.channel_history.at``) which arm and version a key was served then: the same bucket
  function and arm order as the live ``Router``, so the answer is the one the Router gave.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, ClassVar

from mvc.deployment.records import SHADOW, Record
from mvc.instants import parse_instant
from mvc.jsonshape import JsonShaped, Shape
from mvc.ops.channel_history import at
from mvc.repo import Repo
from mvc.router import RouteDecision, bucket_of, pick


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decision_line(
    decision: RouteDecision,
    *,
    when: datetime,
    pin: str | None = None,
    status: int | None = None,
    latency_ms: float | None = None,
) -> dict[str, Any]:
    return {
        "time": _iso(when),
        "model": decision.model,
        "channel": decision.channel,
        "key": decision.key,
        "record": decision.record,
        "arm": decision.label,
        "version": decision.version,
        "adapter": decision.arm.adapter.to_json() if decision.arm.adapter else None,
        "pin": pin,
        "status": status,
        "latency_ms": None if latency_ms is None else round(latency_ms, 3),
    }


class DecisionLog:
    """JSON lines appended to a file; safe to share between threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self._lock = threading.Lock()
        # An append-only log, not a durable object: line-buffered appends, no rename.
        self._handle: IO[str] | None = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def write(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, separators=(",", ":"), sort_keys=True) + "\n"
        with self._lock:
            if self._handle is not None:
                self._handle.write(text)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


@dataclass(frozen=True)
class RouteAt(JsonShaped):
    """Where a key was routed at an instant, and the channel move that was in force then."""

    at: str
    decision: RouteDecision
    since: str  # when that move was made
    action: str  # the move (set, deploy, promote, rollback…)
    state: str  # the state it left the channel in (stable, canary…)

    json_shape: ClassVar[Shape] = Shape(flatten=("decision",))


def route_at(repo: Repo, model: str, channel: str, key: str, moment: datetime | str) -> RouteAt:
    """The arm and version ``key`` was routed to at ``moment`` (UTC unless a zone is given)."""
    item = at(repo, model, channel, moment)
    record: Record = item.record
    assert record.id is not None
    bucket = bucket_of(model, channel, key)
    decision = RouteDecision(
        model,
        channel,
        record.id,
        key,
        bucket,
        pick(record.arms, bucket),
        tuple(a for a in record.arms if a.role == SHADOW),
    )
    when = parse_instant(moment) if isinstance(moment, str) else moment
    asked = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return RouteAt(asked, decision, record.when, record.action, record.state)
