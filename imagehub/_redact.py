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
# base64 spellings (see _base64_variants); the whole base64 word holding one is masked.
_b64: tuple[str, ...] = ()
# A base64 word. No pattern with the variants inside it: a run of such characters
# would make it backtrack quadratically (a 64 KiB error body took minutes).
_B64_WORD = re.compile(r"[A-Za-z0-9+/_-]+=*")

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
    # Verbatim, JSON-escaped, percent-encoded; base64 is _base64_variants'.
    out = {secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe=""),
           urllib.parse.quote_plus(secret)}
    return {v for v in out if len(v) >= _MIN_LEN}


def _base64_variants(secret: str) -> set[str]:
    """The base64 characters that encode ``secret`` whatever precedes it in the encoded
    text: HTTP Basic puts ``user:`` (any length) before a password, so the secret can
    start at any of the three byte offsets of a base64 group. For each offset, only the
    groups made of the secret's own bytes are kept (standard and URL-safe alphabets)."""
    raw = secret.encode()
    out: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        first = 1 if offset else 0  # the group that mixes padding bytes with the secret
        last = (offset + len(raw)) // 3  # groups past it hold bytes of what follows
        core = encoded[first * 4:last * 4]
        # One whole group (3 bytes of the secret, 4 characters) already gives it away;
        # 24 bits of the secret's own do not occur in ordinary text by chance.
        if len(core) >= _MIN_LEN:
            out.update({core, core.replace("+", "-").replace("/", "_")})
    return out


def register(*values: object) -> None:
    """Treat each non-empty string value as a secret from now on (thread-safe)."""
    global _ordered
    given = {v for v in values if isinstance(v, str)}
    # URL userinfo is registered as written, percent-encoded; HTTP clients decode it
    # before they send it (Basic auth), so a server echoes the decoded form.
    given |= {urllib.parse.unquote(v) for v in given if "%" in v}
    fresh = {v for v in given if len(v) >= _MIN_LEN}
    if not fresh or fresh <= _secrets:
        return
    global _b64
    with _lock:
        b64 = set(_b64)
        for value in fresh:
            _secrets.update(_variants(value))
            b64.update(_base64_variants(value))
        # Longest first, so a secret containing another is replaced whole.
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))
        _b64 = tuple(sorted(b64, key=len, reverse=True))


def registered(value: str) -> bool:
    return value in _secrets


def redact(text: str) -> str:
    """``text`` without any registered secret, URL userinfo or credential header value."""
    if not text:
        return text
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    present = [v for v in _b64 if v in text]
    if present:
        # The whole base64 word goes: the groups next to the secret's own encode parts
        # of it too (and a user name before it is no loss).
        text = _B64_WORD.sub(
            lambda m: MASK if any(v in m.group() for v in present) else m.group(), text)
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
