"""Secrets that ride inside URLs, masked wherever imagehub shows a URL.

A clouds.yaml may carry ``https://user:password@keystone/v3`` or a signed URL with
``?token=...``; the URL then reaches errors (a server that cannot be reached is named by
its URL), log lines and ``imagehub clouds``. The user part stays (it says which account),
the password and secret-looking query values become ``***``.
"""

from __future__ import annotations

import re

__all__ = ["redact_urls"]

MASK = "***"
# scheme://user:password@  (the password may hold anything but '@', '/' and spaces)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*:)[^@/\s]+@")
_SECRET_QUERY = re.compile(
    r"(?P<head>[?&;](?!sort_key=)(?:[A-Za-z0-9_.-]*(?:token|pass(?:word)?|secret|key"
    r"|sig(?:nature)?|credential|auth)[A-Za-z0-9_.-]*)=)[^&;#\s'\")]+", re.IGNORECASE)


def redact_urls(text: str) -> str:
    """``text`` with URL passwords and secret-looking query values masked."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m['head']}{MASK}", text)
