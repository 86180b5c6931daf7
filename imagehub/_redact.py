"""The one place secrets are taken out of text before it leaves the process.

Backends :func:`register` every secret they are configured with (API keys, passwords,
application-credential secrets) and every token they receive at run time. :func:`redact`
then replaces each of them, in the spellings a server or library might echo (verbatim,
JSON-escaped, percent-encoded), plus any URL userinfo, credential-looking URL query
values and the values of credential headers, whatever their origin.

It is applied by :class:`imagehub.errors.ImageHubError` (message, hint, server_message,
``str``) and by a log-record factory installed at import, so log records of imagehub and
of the libraries under it (keystoneauth, httpx, urllib3, requests) are redacted before any
handler, the user's own included, formats them. The CLI also redacts whole formatted
lines and tracebacks with :func:`redact`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import traceback
import urllib.parse
from typing import Any

__all__ = ["MASK", "excerpt", "redact", "register", "registered"]

MASK = "<redacted>"
# A shorter "secret" would blank out ordinary words; no real key, token or password is
# this short, and one that is would still be kept out of reprs by the option's secret flag.
_MIN_LEN = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()

# scheme://user:pass@host and scheme://token@host: the userinfo is a credential.
_USERINFO = re.compile(r"(?<=://)[^/\s@?#'\"<>]+@")
# Query parameters that carry credentials in signed or token URLs (?token=, ;Password=,
# X-Amz-Signature=): the value goes, the parameter's name stays to say what was there.
_SECRET_QUERY = re.compile(
    r"(?P<head>[?&;](?!sort_key=)(?:[A-Za-z0-9_.-]*(?:token|pass(?:word)?|secret|key"
    r"|sig(?:nature)?|credential|auth)[A-Za-z0-9_.-]*)=)[^&;#\s'\")]+", re.IGNORECASE)
# Header values that are credentials, as libraries and echoing servers print them:
# "Authorization: Bearer x", "'X-Auth-Token': 'x'", "x-subject-token=x".
_HEADER = re.compile(
    r"(?i)((?:proxy-)?authorization|x-auth-token|x-subject-token|x-service-token|api[-_]key)"
    r"(['\"]?\s*[:=]\s*['\"]?)((?:bearer|basic|token)\s+)?(?!\{SHA)([^\s'\",;}]+)")


def _variants(secret: str) -> set[str]:
    raw = secret.encode()
    # Verbatim, JSON-escaped, percent-encoded, and base64 as HTTP Basic carries it
    # ("key:" or "user:key" encoded): whole 3-byte groups encode the same whatever follows.
    whole = raw[:len(raw) - len(raw) % 3]
    out = {secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe=""),
           urllib.parse.quote_plus(secret), base64.b64encode(whole).decode()}
    return {v for v in out if len(v) >= _MIN_LEN}


def register(*values: object) -> None:
    """Treat each non-empty string value as a secret from now on (thread-safe)."""
    global _ordered
    fresh = {v for v in values if isinstance(v, str) and len(v) >= _MIN_LEN}
    if not fresh or fresh <= _secrets:
        return
    with _lock:
        for value in fresh:
            _secrets.update(_variants(value))
        # Longest first, so a secret containing another is replaced whole.
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def registered(value: str) -> bool:
    return value in _secrets


def redact(text: str) -> str:
    """``text`` without any registered secret, URL userinfo or credential header value."""
    if not text:
        return text
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text and "@" in text:
        text = _USERINFO.sub(MASK + "@", text)
    if "=" in text:
        text = _SECRET_QUERY.sub(lambda m: f"{m['head']}{MASK}", text)
    return _HEADER.sub(_header_mask, text)


def _header_mask(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}{match.group(3) or ''}{MASK}"


def excerpt(value: Any, limit: int = 60) -> str:
    """A short, redacted ``repr`` of a value for an error message, whatever its size.

    Containers are summarised by type and length instead of repr'd, since their repr can
    be unbounded (or exponential, for a YAML alias bomb).
    """
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    if isinstance(value, str) and len(value) > limit:
        # Redacted whole, then cut: a cut through a secret would leave its start behind.
        return f"{redact(value)[:limit]!r}… ({len(value)} characters)"
    if isinstance(value, bytes) and len(value) > limit:
        return f"<{len(value)} bytes>"
    text = redact(repr(value))
    return text if len(text) <= limit + 20 else f"{text[:limit]}…"


# -- log records ------------------------------------------------------------------------
_previous_factory = logging.getLogRecordFactory()


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    # Loggers build records only for levels that are enabled, so formatting eagerly here
    # costs nothing for records no handler would see.
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the logging module's to report
        return record
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info))
                                 .rstrip("\n"))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


if getattr(_previous_factory, "__name__", "") != "_redacting_factory":
    logging.setLogRecordFactory(_redacting_factory)
