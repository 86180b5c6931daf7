"""The one place Glance and Keystone failures become imagehub errors.

Modelled on httpx's ``map_httpcore_exceptions``: transport failures from
keystoneauth1 are translated in :func:`mapped`, HTTP answers in
:func:`raise_for_status`. Glance's own words are kept in ``server_message``;
they come as JSON when we ask for it and as an HTML page otherwise (uploads,
downloads, 5xx from the WSGI layer), so both are reduced to text.
"""

from __future__ import annotations

import contextlib
import html
import http.client
import json
import re
from collections.abc import Iterator
from typing import Any

import requests
from keystoneauth1 import exceptions as ks_exc

from imagehub._redact import redact
from imagehub._retry import parse_retry_after
from imagehub.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ImageConflict,
    ImageHubError,
    ImageNotFound,
    InvalidImageData,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerUnreachable,
)

BACKEND = "glance"

_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def server_text(body: bytes | str, content_type: str | None = None) -> str:
    """Glance's message from an error body, JSON or HTML, as one line of text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if (content_type and "json" in content_type) or text.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            # Glance's JSON messages still carry the HTML page's "<br /><br />".
            text = _json_message(json.loads(text)) or text
    if "<" in text:
        # webob's error pages: "<html><head><title>404 Not Found</title>...<h1>..." -
        # the title repeats the h1, so keep the body only when there is one.
        body_part = re.search(r"<body>(.*)</body>", text, re.S | re.I)
        text = body_part.group(1) if body_part else text
        text = html.unescape(_TAGS.sub(" ", text))
    # Redacted before it is cut: a cut through a secret would leave its start behind.
    return redact(_SPACES.sub(" ", text).strip())[:2000]


def _json_message(data: Any) -> str | None:
    if isinstance(data, dict):
        for key in ("message", "detail", "explanation", "title"):
            if isinstance(data.get(key), str):
                return str(data[key])
        # Keystone nests it: {"error": {"message": ..., "code": ...}}
        for value in data.values():
            found = _json_message(value)
            if found:
                return found
    return None


def error_for_status(
    status: int,
    message: str,
    server_message: str | None,
    *,
    retry_after: float | None = None,
    not_found: type[ImageHubError] = ImageNotFound,
) -> ImageHubError:
    kw: dict[str, Any] = {"backend": BACKEND, "server_message": server_message,
                          "status_code": status}
    if status == 401:
        return AuthenticationError(
            message, hint="check the credentials; a token may have expired", **kw)
    if status == 403:
        return PermissionDenied(message, **kw)
    if status == 404:
        return not_found(message, **kw)
    if status == 409:
        return ImageConflict(message, **kw)
    if status == 413:
        return QuotaExceeded(message, **kw)
    if status == 429:
        return RateLimited(message, retry_after=retry_after, **kw)
    if status in (400, 415):
        return InvalidImageData(message, **kw)
    return BackendError(message, **kw)


def retry_after_seconds(value: str | None) -> float | None:
    return parse_retry_after(value)


def _http_trouble(exc: BaseException) -> http.client.HTTPException | None:
    """The http.client error (an over-long header line, too many headers, a bad status
    line, a hang-up before answering) somewhere under ``exc``, if there is one."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen or len(seen) > 50:
            continue
        seen.add(id(current))
        if isinstance(current, http.client.HTTPException):
            return current
        # urllib3 nests it as ProtocolError("Connection aborted.", LineTooLong(...)).
        todo.extend([current.__cause__, current.__context__, *current.args])
    return None


class TimedOut(ServerUnreachable):
    """No connection, or no whole answer, within the cloud's timeout. Never retried: a
    slow server then fails within the timeout (plus a margin), not retries+1 times it."""


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Translate keystoneauth1's transport and auth failures raised inside the block."""
    try:
        yield
    except ImageHubError:
        raise
    except ks_exc.ConnectTimeout as exc:
        # keystoneauth1 reports every requests Timeout as ConnectTimeout; the one it
        # wraps says whether the server was reached at all.
        if isinstance(exc.__context__, requests.exceptions.ReadTimeout):
            raise TimedOut(f"{what}: the server accepted the connection but did "
                           "not answer in time", backend=BACKEND,
                           server_message=_safe(exc),
                           hint="raise the cloud's 'timeout', or try later") from exc
        raise TimedOut(f"{what}: timed out connecting", backend=BACKEND,
                       server_message=_safe(exc)) from exc
    except ks_exc.ConnectFailure as exc:
        # keystoneauth1 calls every requests ConnectionError a connect failure, also when
        # the server was reached and then hung up or answered something that is not HTTP.
        answered = _http_trouble(exc)
        if isinstance(answered, http.client.RemoteDisconnected):
            raise ServerUnreachable(f"{what}: the server closed the connection without "
                                    "answering", backend=BACKEND, server_message=_safe(exc),
                                    hint="try again; if it persists, check the endpoint"
                                    ) from exc
        if answered is not None:
            raise BackendError(f"{what}: the server's answer is not valid HTTP "
                               f"({type(answered).__name__})", backend=BACKEND,
                               server_message=_safe(exc),
                               hint="check the endpoint (or auth_url): is it the API's address?"
                               ) from exc
        raise ServerUnreachable(f"{what}: cannot connect", backend=BACKEND,
                                server_message=_safe(exc),
                                hint="is the endpoint right and the service up?") from exc
    except ks_exc.SSLError as exc:
        raise ServerUnreachable(f"{what}: TLS failed", backend=BACKEND,
                                server_message=_safe(exc),
                                hint="set 'cacert' or 'verify' for this cloud") from exc
    except ks_exc.ConnectionError as exc:  # anything else on the wire
        raise ServerUnreachable(f"{what}: connection failed", backend=BACKEND,
                                server_message=_safe(exc)) from exc
    except ks_exc.EndpointNotFound as exc:
        raise ConfigError(f"{what}: no 'image' endpoint in the service catalog "
                          f"({_safe(exc)})",
                          hint="check region_name/interface, or set endpoint_override") from exc
    except ks_exc.MissingRequiredOptions as exc:
        names = ", ".join(sorted(o.dest for o in exc.options))
        raise ConfigError(f"authentication options missing: {names}") from exc
    except (ks_exc.MissingAuthPlugin, ks_exc.NoMatchingPlugin) as exc:
        raise ConfigError(f"{what}: {_safe(exc)}",
                          hint="set auth_type and auth, a clouds.yaml cloud, or OS_* variables"
                          ) from exc
    except ks_exc.DiscoveryFailure as exc:
        raise ServerUnreachable(f"{what}: identity discovery failed", backend=BACKEND,
                                server_message=_safe(exc),
                                hint="check auth_url") from exc
    except ks_exc.HttpError as exc:
        # Raised by keystoneauth1 itself while authenticating (Keystone's answer).
        raise error_for_status(
            exc.http_status or 500, f"{what}: identity service refused ({exc.http_status})",
            _safe(exc), not_found=AuthenticationError) from exc
    except ks_exc.AuthorizationFailure as exc:
        raise AuthenticationError(f"{what}: authentication failed", backend=BACKEND,
                                  server_message=_safe(exc)) from exc
    except ks_exc.ClientException as exc:
        raise BackendError(f"{what}: {type(exc).__name__}", backend=BACKEND,
                           server_message=_safe(exc)) from exc


def _safe(exc: BaseException) -> str:
    # keystoneauth1 messages carry URLs and server text, never the request body, so
    # they hold no password; tokens appear only as headers, which it never prints.
    return redact(str(exc))[:2000]
