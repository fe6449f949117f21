"""ISO-8601 instants: the one parser every spec, query, rollout and reflog time goes through.

An instant without a zone is UTC; ``Z`` and ``±HH:MM`` name a zone; a space may stand for the
``T``. Pure: no clock, no store.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mvc.errors import UsageError


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant as an aware UTC datetime; UTC unless it names a zone."""
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T").replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"{text!r} is not an ISO-8601 instant", hint="e.g. 2026-03-03T14:00 (UTC) or …+01:00"
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
