"""The one ISO-8601 instant parser (mvc.instants): zones, UTC by default, clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mvc.errors import UsageError
from mvc.instants import parse_instant

NOON = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-03T12:00:00Z",
        "2026-03-03T12:00Z",
        "2026-03-03T12:00:00+00:00",
        "2026-03-03T13:00:00+01:00",
        "2026-03-03T12:00",  # no zone: UTC
        "2026-03-03 12:00",
        " 2026-03-03T12:00:00.000Z ",
    ],
)
def test_every_spelling_of_one_instant_is_the_same_utc_moment(text: str) -> None:
    moment = parse_instant(text)
    assert moment == NOON and moment.tzinfo == UTC


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "", "12:00"])
def test_a_non_instant_is_a_usage_error_with_an_example(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_instant(text)
    assert "is not an ISO-8601 instant" in caught.value.message and caught.value.hint
