"""The keystoneauth1 Session every Glance cloud uses: TLS checked, secrets registered,
a timeout always set.

Tokens are registered for redaction the moment keystoneauth1 hands them out, so a server
that echoes one back (in an error body, or in its answer to ``--debug`` logging) never
gets it printed.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import requests
from keystoneauth1 import plugin, session

from imagehub import _http_deadline, _redact, _tls
from imagehub._limits import check_timeout
from imagehub.errors import AuthenticationError

# Seconds to wait for a connection, and for each read of an answer. A read waiting this
# long is a stalled server; data transfers use the same value as an inactivity limit, so
# large images are never cut for being large.
CONNECT_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 60.0

SECRET_AUTH_KEYS = frozenset({"password", "token", "application_credential_secret",
                              "secret", "client_secret", "passcode", "access_token"})


# Belt and braces beside the token check below: logins never nest this deep.
MAX_LOGIN_NESTING = 4
_nesting = threading.local()


class RedactingSession(session.Session):
    """A Session whose auth headers (tokens fetched at run time) are secrets, and whose
    logins (discovery, then the token request) share one timeout between them."""

    @contextlib.contextmanager
    def _login(self, *, token_needed: bool = False) -> Iterator[None]:
        timeout = self.timeout
        seconds = timeout[-1] if isinstance(timeout, tuple) else timeout
        # keystoneauth1 retries a discovery answered 401 with a token, and getting that
        # token needs discovery first, under the auth plugin's lock it already holds: a
        # self-deadlock no deadline can end. A login never needs a token inside itself
        # otherwise (discovery and the token request go unauthenticated).
        depth = getattr(_nesting, "depth", 0)
        if depth >= MAX_LOGIN_NESTING or (token_needed and depth):
            raise AuthenticationError(
                "the identity service refuses its version discovery without a token, and a "
                "token needs discovery first", backend="glance",
                hint="check auth_url: it should be Keystone's public address, e.g. "
                "https://host:5000/v3")
        _nesting.depth = depth + 1
        try:
            with _http_deadline.budget(float(seconds or DEFAULT_TIMEOUT)):
                yield
        finally:
            _nesting.depth = depth

    def get_auth_headers(self, auth: plugin.BaseAuthPlugin | None = None,
                         **kwargs: Any) -> dict[str, str] | None:
        with self._login(token_needed=True):
            headers: dict[str, str] | None = super().get_auth_headers(auth, **kwargs)
        if headers:
            _redact.register(*headers.values())
        return headers

    def get_endpoint(self, auth: plugin.BaseAuthPlugin | None = None,
                     **kwargs: Any) -> str | None:
        with self._login():
            endpoint: str | None = super().get_endpoint(auth, **kwargs)
        return endpoint

    def get_project_id(self, auth: plugin.BaseAuthPlugin | None = None) -> str | None:
        with self._login():
            project: str | None = super().get_project_id(auth)
        return project


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
    read = check_timeout(timeout if timeout is not None else DEFAULT_TIMEOUT)
    # requests takes (connect, read); keystoneauth1 passes the value through untouched.
    made.timeout = (min(CONNECT_TIMEOUT, read), read)  # type: ignore[assignment]
    return made
