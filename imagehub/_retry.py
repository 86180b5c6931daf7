"""Bounded retries, one way for every backend and for migrate: tenacity, an injectable
sleep for tests, capped exponential backoff, and one ``Retry-After`` parser that clamps.

A server's ``Retry-After`` is a request, not an order: a hostile or broken one can ask for
a day, a negative time or NaN. :func:`parse_retry_after` turns it into seconds in
``[0, cap]`` (or None when absent or unreadable), and :func:`backoff` waits at least that
long, never longer than the cap.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tenacity

__all__ = ["MAX_RETRY_AFTER", "backoff", "parse_retry_after", "retrying"]

# Longer than any throttle worth waiting out in an interactive command.
MAX_RETRY_AFTER = 60.0

Sleep = Callable[[float], None]


def parse_retry_after(value: str | None, *, cap: float = MAX_RETRY_AFTER,
                      now: Callable[[], datetime] | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), clamped to
    ``[0, cap]``; None when there is none or it cannot be read."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now() if now else datetime.now(timezone.utc))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), cap)


def backoff(base: float, cap: float, *, retry_after_cap: float = MAX_RETRY_AFTER
            ) -> Callable[[tenacity.RetryCallState], float]:
    """``base * 2**(n-1)`` seconds, at most ``cap``; at least the failure's own
    ``retry_after`` (clamped to ``retry_after_cap``) when it carries one."""

    def wait(state: tenacity.RetryCallState) -> float:
        delay = min(base * 2 ** (state.attempt_number - 1), cap)
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        asked = getattr(exc, "retry_after", None)
        if isinstance(asked, (int, float)) and not math.isnan(asked):
            delay = max(delay, min(max(0.0, float(asked)), retry_after_cap))
        return float(delay)

    return wait


def retrying(*, attempts: int | None, retry_if: Callable[[BaseException], bool],
             wait: Callable[[tenacity.RetryCallState], float], sleep: Sleep = time.sleep,
             before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
             cancel: threading.Event | None = None,
             within: float | None = None) -> tenacity.Retrying:
    """A tenacity Retrying that re-raises the last failure when it gives up.

    ``attempts`` counts the first try (None: no limit but ``within``); ``cancel`` stops
    retrying (and waiting) once set; ``within`` stops before a wait that would end more
    than that many seconds after the first try.
    """
    # tenacity costs ~20 ms to import; only code that retries pays it.
    import tenacity

    stop: tenacity.stop.stop_base = (tenacity.stop_never if attempts is None
                                     else tenacity.stop_after_attempt(max(1, attempts)))
    if cancel is not None:
        stop = stop | tenacity.stop_when_event_set(cancel)
        if sleep is time.sleep:
            event = cancel

            def sleep(seconds: float) -> None:
                event.wait(seconds)  # a cancelled run stops waiting to retry
    if within is not None:
        # Stop before a wait that would end past it, not after.
        stop = stop | tenacity.stop_before_delay(within)
    return tenacity.Retrying(stop=stop, wait=wait, sleep=sleep, reraise=True,
                             retry=tenacity.retry_if_exception(retry_if),
                             before_sleep=before_sleep)
