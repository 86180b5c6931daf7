"""What a configured timeout or retry count may be, checked the same way for every backend.

A timeout must be a positive, finite number of seconds, and at most ``MAX_TIMEOUT``: the
socket and threading layers refuse waits past about 2**33 seconds with an OverflowError
from deep inside a request (a worker thread's traceback included), so a huge value has to
be refused here, naming the key, before any request is made. A retry count is bounded
for the same reason a timeout is: ``max_retries: 10**400`` against an unreachable server
is a hang, not a configuration.
"""

from __future__ import annotations

import math
from typing import Any

from ._redact import excerpt
from .errors import ConfigError

__all__ = ["MAX_RETRIES", "MAX_TIMEOUT", "check_retries", "check_timeout"]

# A week: longer than any single request or wait imagehub makes should ever be allowed,
# far below where the platform's timers overflow.
MAX_TIMEOUT = 7 * 24 * 3600.0
# Each retry backs off longer; a hundred is already hours of waiting.
MAX_RETRIES = 100


def check_timeout(value: Any, *, key: str = "timeout", cloud: str | None = None) -> float:
    """``value`` as float seconds, or a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"must be a number of seconds, got {excerpt(value)}",
                          cloud=cloud, key=key)
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError("must be a positive number of seconds", cloud=cloud, key=key)
    if seconds > MAX_TIMEOUT:
        raise ConfigError(f"must be at most {MAX_TIMEOUT:g} seconds (a week), got "
                          f"{excerpt(value)}", cloud=cloud, key=key)
    return seconds


def check_retries(value: Any, *, key: str, cloud: str | None = None) -> int:
    """``value`` as a retry count in ``[0, MAX_RETRIES]``, or a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"must be a whole number, got {excerpt(value)}", cloud=cloud, key=key)
    if not 0 <= value <= MAX_RETRIES:
        raise ConfigError(f"must be between 0 and {MAX_RETRIES}, got {excerpt(value)}",
                          cloud=cloud, key=key)
    return value
