"""A channel's history: every move, oldest first, and the move in force at an instant.

The record chain is the history: it travels with the channel to remotes and clones, and each
record says who made the move, when and why. This store's ref-log entries add their numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mvc.deployment.records import Record
from mvc.errors import CorruptObject, NotFound, UsageError
from mvc.instants import parse_instant
from mvc.ops.channels import chain, channel_ref, current
from mvc.refs import RefEntry
from mvc.repo import Repo


@dataclass
class HistoryItem:
    """One move of a channel: the record it made current, and this store's ref-log entry for
    that move when this store made it or pulled it (a clone knows the records, not the entries)."""

    record: Record
    entry: RefEntry | None

    def to_json(self) -> dict[str, Any]:
        # Hand-written: the move's keys come from the record and the ref-log entry, not fields.
        return {
            "seq": self.entry.seq if self.entry else None,
            "old": self.record.previous,
            "new": self.record.id,
            "who": self.record.who,
            "when": self.record.when,
            "why": self.record.why,
            "record": self.record.to_json(),
        }


def _record_time(record: Record) -> datetime:
    try:
        return parse_instant(record.when)
    except UsageError as exc:
        raise CorruptObject(
            f"deployment record {(record.id or '')[:12]} has a bad time {record.when!r}"
        ) from exc


def history(repo: Repo, model: str, name: str) -> list[HistoryItem]:
    """Every move of the channel, oldest first.

    The record chain is the history: it travels with the channel to remotes and clones, and
    each record says who made the move, when and why. Local ref-log entries add their numbers.
    """
    record = current(repo, model, name)
    if record is None:
        raise NotFound(
            f"channel {name!r} of model {model!r} does not exist",
            hint=f"list channels with `mvc channel list {model}`",
        )
    entries = {e.new: e for e in repo.refs.entries(channel_ref(model, name)) if e.new}
    return [
        HistoryItem(r, entries.get(r.id) if r.id else None)
        for r in reversed(list(chain(repo, record)))
    ]


def at(repo: Repo, model: str, name: str, moment: datetime | str) -> HistoryItem:
    """The channel's state at an instant: the last move at or before it."""
    if isinstance(moment, str):
        moment = parse_instant(moment)
    items = history(repo, model, name)
    chosen = None
    for item in items:
        if _record_time(item.record) <= moment:
            chosen = item
    if chosen is None:
        raise NotFound(
            f"channel {name!r} of {model!r} did not exist yet at "
            f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')} (it was first set at "
            f"{items[0].record.when})"
        )
    return chosen
