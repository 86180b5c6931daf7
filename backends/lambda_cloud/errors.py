"""The one place Lambda Cloud's HTTP outcomes become imagehub errors.

Errors come as ``{"error": {"code", "message", "suggestion"}}``. Only ``code`` is
mapped (Lambda says messages may change); message and suggestion travel in the error.
Each mapping also decides whether a retry is safe, so the client's retry loop never has
to look at an error's type.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import httpx

from imagehub import _redact
from imagehub._retry import parse_retry_after
from imagehub.errors import (
    AuthenticationError,
    BackendError,
    ImageHubError,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerUnreachable,
)

BACKEND = "lambda"


# -- errors only a launch can raise -------------------------------------------------------
class LaunchError(ImageHubError):
    """Lambda refused a launch. ``code`` is the API's error code; ``server_message`` and
    ``hint`` carry its message and suggestion."""

    def __init__(self, message: str, *, code: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.code = code


class InsufficientCapacity(LaunchError):
    """``instance-operations/launch/insufficient-capacity``"""


class FileSystemInWrongRegion(LaunchError):
    """``instance-operations/launch/file-system-in-wrong-region``"""


class InvalidLaunchRequest(LaunchError):
    """``global/invalid-parameters`` answered to a launch."""


class LaunchResourceNotFound(LaunchError):
    """``global/object-does-not-exist``: the instance type, SSH key, image or file
    system named in a launch does not exist (in that region)."""


class LaunchQuotaExceeded(LaunchError, QuotaExceeded):
    """``global/quota-exceeded`` answered to a launch."""


class InvalidBillingAddress(LaunchError, PermissionDenied):
    """``global/invalid-address``: launching needs a valid billing address."""


_LAUNCH_ERRORS: dict[str, type[LaunchError]] = {
    "instance-operations/launch/insufficient-capacity": InsufficientCapacity,
    "instance-operations/launch/file-system-in-wrong-region": FileSystemInWrongRegion,
    "global/invalid-parameters": InvalidLaunchRequest,
    "global/object-does-not-exist": LaunchResourceNotFound,
    "global/quota-exceeded": LaunchQuotaExceeded,
    "global/invalid-address": InvalidBillingAddress,
}
_GLOBAL_ERRORS: dict[str, type[ImageHubError]] = {
    "global/invalid-api-key": AuthenticationError,
    "global/account-inactive": PermissionDenied,
    "global/invalid-address": PermissionDenied,
    "global/quota-exceeded": QuotaExceeded,
}


class Failure(Exception):
    """An attempt failed: ``error`` is what the caller sees if no retry follows."""

    def __init__(self, error: ImageHubError, *, retry: bool, wait: float | None = None,
                 cause: BaseException | None = None) -> None:
        super().__init__(str(error))
        self.error, self.retry, self.wait, self.cause = error, retry, wait, cause


def _retry_after(response: httpx.Response) -> float | None:
    # Not clamped here: a wait past the client's max_retry_wait makes it give up at once,
    # saying so, instead of waiting less than the server asked.
    return parse_retry_after(response.headers.get("Retry-After"), cap=math.inf)


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """The envelope's code, message and suggestion; Nones when the body is not one."""
    try:
        doc = response.json()
    except ValueError:
        return None, None, None
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return None, None, None

    def text(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) and value else None

    return text("code"), text("message"), text("suggestion")


def snippet(response: httpx.Response) -> str:
    """The start of a body, on one line, for an error's ``server_message``."""
    body = response.text.strip().replace("\n", " ")
    # Redacted before it is cut: a cut through a secret would leave its start behind.
    body = _redact.redact(body)
    return body[:200] + ("…" if len(body) > 200 else "")


@contextlib.contextmanager
def map_transport_errors(method: str, path: str, base_url: str, timeout: float,
                         idempotent: bool) -> Iterator[None]:
    """httpx's failures to talk at all, as imagehub errors (cf. httpx's own
    ``map_httpcore_exceptions``)."""
    where = f"{method} {base_url}{path}"
    try:
        yield
    except httpx.ConnectError as exc:
        # Nothing reached the server, so even a launch may be tried again.
        raise Failure(ServerUnreachable(f"cannot connect to Lambda Cloud for {where}: {exc}",
                                        backend=BACKEND, hint="check base_url and network"),
                      retry=True, cause=exc) from exc
    except httpx.TimeoutException as exc:
        raise Failure(ServerUnreachable(
            f"Lambda Cloud did not answer {where} within {timeout:g}s ({type(exc).__name__})",
            backend=BACKEND, hint="raise the cloud's 'timeout' option, or try again later"),
            retry=idempotent, cause=exc) from exc
    except httpx.RemoteProtocolError as exc:
        # h11 says which: a hang-up before any answer, a body cut short, or an answer
        # that is not HTTP at all (an over-long or malformed head).
        said = str(exc)
        if "without sending a response" in said:
            error = BackendError(f"Lambda Cloud closed the connection for {where} without "
                                 "answering", backend=BACKEND,
                                 hint="try again; if it persists, check base_url")
        elif "complete message body" in said:
            error = BackendError(f"Lambda Cloud's response to {where} was cut short: {exc}",
                                 backend=BACKEND,
                                 hint="the connection dropped mid-response; try again")
        else:
            error = BackendError(f"Lambda Cloud's answer to {where} is not valid HTTP "
                                 f"({exc})", backend=BACKEND,
                                 hint="check base_url: is it the API's address?")
        raise Failure(error, retry=idempotent, cause=exc) from exc
    except httpx.HTTPError as exc:
        raise Failure(BackendError(f"talking to Lambda Cloud for {where} failed: "
                                   f"{type(exc).__name__}: {exc}", backend=BACKEND),
                      retry=idempotent, cause=exc) from exc


def status_failure(response: httpx.Response, method: str, path: str, *,
                   idempotent: bool, launch: bool) -> Failure:
    """An unsuccessful HTTP answer, mapped on the envelope's ``code``, never ``message``."""
    status = response.status_code
    where = f"{method} {path}"
    common: dict[str, Any] = {"backend": BACKEND, "status_code": status}
    if status == 429:
        # Cloudflare's plain-text page: the API never saw the request, so a retry is safe
        # even for a launch.
        after = _retry_after(response)
        return Failure(RateLimited(f"Lambda Cloud throttled {where} (HTTP 429: "
                                   f"{snippet(response)!r})", retry_after=after, **common),
                       retry=True, wait=after)
    code, message, suggestion = _error_fields(response)
    common.update(server_message=message, hint=suggestion)
    label = f" [{code}]" if code else ""
    if launch and code in _LAUNCH_ERRORS:
        return Failure(_LAUNCH_ERRORS[code](f"Lambda Cloud refused the launch{label}",
                                            code=code or "", **common), retry=False)
    if code in _GLOBAL_ERRORS:
        cls = _GLOBAL_ERRORS[code or ""]
        return Failure(cls(f"Lambda Cloud refused {where}{label}", **common), retry=False)
    if (code or "").startswith("provider/") or status >= 500:
        if message is None and code is None:
            common["server_message"] = snippet(response) or None
        kind = "an upstream provider failed" if code and code.startswith("provider/") \
            else "server error"
        return Failure(BackendError(f"Lambda Cloud {kind} on {where} (HTTP {status}){label}",
                                    **common), retry=idempotent)
    # The spec's own error codes are handled above; these fallbacks cover gateways and
    # future codes, still keyed on status rather than any message text.
    if status == 401:
        return Failure(AuthenticationError(f"Lambda Cloud refused {where} (HTTP 401){label}",
                                           **common), retry=False)
    if status == 403:
        return Failure(PermissionDenied(f"Lambda Cloud refused {where} (HTTP 403){label}",
                                        **common), retry=False)
    if message is None:
        common["server_message"] = snippet(response) or None
    if status == 404 and code is None:
        common["hint"] = "check the cloud's base_url (the API lives under /api/v1/)"
    return Failure(BackendError(f"Lambda Cloud answered {where} with HTTP {status}{label}",
                                **common), retry=False)
