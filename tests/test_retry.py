"""The one retry module: Retry-After parsed and clamped, backoff capped, sleep injectable."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from imagehub._retry import MAX_RETRY_AFTER, backoff, parse_retry_after, retrying
from imagehub.errors import BackendError, RateLimited

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("soon", None), ("nan", None),
    ("5", 5.0), ("0.5", 0.5), ("-3", 0.0),
    ("86400", MAX_RETRY_AFTER), ("inf", MAX_RETRY_AFTER), ("1e308", MAX_RETRY_AFTER),
    ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0), ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),
    ("Fri, 01 Jan 2100 00:00:00 GMT", MAX_RETRY_AFTER),
])
def test_retry_after_is_parsed_and_clamped(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=lambda: NOW) == expected


def test_retrying_sleeps_through_the_injected_sleep_within_bounds() -> None:
    slept: list[float] = []
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimited("slow down", retry_after=10_000)
        if calls < 4:
            raise BackendError("again")
        return "done"

    result = retrying(attempts=5, retry_if=lambda e: isinstance(e, BackendError | RateLimited),
                      wait=backoff(1.0, 4.0, retry_after_cap=20.0), sleep=slept.append)(flaky)
    assert result == "done"
    assert slept == [20.0, 2.0, 4.0]  # Retry-After clamped; backoff doubles up to its cap


def test_retrying_gives_up_with_the_last_error_and_stops_on_cancel() -> None:
    def broken() -> None:
        raise BackendError("still down")

    with pytest.raises(BackendError, match="still down"):
        retrying(attempts=3, retry_if=lambda e: True, wait=backoff(0, 0),
                 sleep=lambda s: None)(broken)
    cancel = threading.Event()
    cancel.set()
    calls: list[int] = []

    def count() -> None:
        calls.append(1)
        raise BackendError("down")

    with pytest.raises(BackendError):
        retrying(attempts=10, retry_if=lambda e: True, wait=backoff(5, 5),
                 cancel=cancel)(count)
    assert len(calls) == 1
