"""The keystoneauth1 Session every Glance cloud uses: TLS checked, secrets registered,
a timeout always set.

Tokens are registered for redaction the moment keystoneauth1 hands them out, so a server
that echoes one back (in an error body, or in its answer to ``--debug`` logging) never
gets it printed.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from typing import Any

import requests
from keystoneauth1 import plugin, session

from imagehub import _http_deadline, _redact, _tls
from imagehub.errors import ConfigError

# Seconds to wait for a connection, and for each read of an answer. A read waiting this
# long is a stalled server; data transfers use the same value as an inactivity limit, so
# large images are never cut for being large.
CONNECT_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 60.0

SECRET_AUTH_KEYS = frozenset({"password", "token", "application_credential_secret",
                              "secret", "client_secret", "passcode", "access_token"})


class RedactingSession(session.Session):
    """A Session whose auth headers (tokens fetched at run time) are secrets."""

    def get_auth_headers(self, auth: plugin.BaseAuthPlugin | None = None,
                         **kwargs: Any) -> dict[str, str] | None:
        headers: dict[str, str] | None = super().get_auth_headers(auth, **kwargs)
        if headers:
            _redact.register(*headers.values())
        return headers


def build(auth: plugin.BaseAuthPlugin, *, options: Mapping[str, Any], verify: Any,
          cert: Any, timeout: float | None, where: str,
          endpoint: str | None = None) -> session.Session:
    """A session for ``auth``; ``options`` are the plugin's options (secrets registered)."""
    _redact.register(*(v for k, v in options.items() if k in SECRET_AUTH_KEYS))
    for url in (options.get("auth_url"), options.get("endpoint"), endpoint):
        if isinstance(url, str):
            parts = urllib.parse.urlsplit(url)
            _redact.register(parts.password, parts.username)
            _tls.warn_cleartext(url, "passwords and tokens")
    checked = _tls.check_verify(verify)
    if checked is False:
        _tls.warn_insecure(where)
    made = RedactingSession(auth=auth, verify=_tls.effective_verify(checked), cert=cert,
                            user_agent="imagehub",
                            session=_http_deadline.mount(requests.Session()))
    read = float(timeout) if timeout is not None else DEFAULT_TIMEOUT
    if not math.isfinite(read) or read <= 0:
        raise ConfigError("must be a positive number of seconds", key="timeout")
    # requests takes (connect, read); keystoneauth1 passes the value through untouched.
    made.timeout = (min(CONNECT_TIMEOUT, read), read)  # type: ignore[assignment]
    return made
