"""Providers' timestamps parse the same on every supported Python (3.10's fromisoformat
takes far less than 3.11's)."""

from __future__ import annotations

import datetime as dt

import pytest

from imagehub.models import parse_datetime

UTC = dt.timezone.utc


@pytest.mark.parametrize(("text", "expected"), [
    # LXD: nanoseconds and Z
    ("2024-05-01T12:00:00.123456789Z", dt.datetime(2024, 5, 1, 12, 0, 0, 123456, UTC)),
    ("2024-05-01T12:00:00.1Z", dt.datetime(2024, 5, 1, 12, 0, 0, 100000, UTC)),
    ("2024-05-01T12:00:00+0000", dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T12:00:00.5-0530", dt.datetime(
        2024, 5, 1, 12, 0, 0, 500000, dt.timezone(-dt.timedelta(hours=5, minutes=30)))),
    # Glance / Lambda
    ("2024-05-01T12:00:00Z", dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T12:00:00.123+00:00", dt.datetime(2024, 5, 1, 12, 0, 0, 123000, UTC)),
    ("2024-05-01 12:00:00", dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01", dt.datetime(2024, 5, 1, tzinfo=UTC)),
])
def test_provider_timestamps(text: str, expected: dt.datetime) -> None:
    assert parse_datetime(text) == expected
