"""Glance's HTTP surface over a keystoneauth1 Adapter, with bounded retries.

Every request goes through :meth:`GlanceHTTP.request`: it builds the URL under
``/v2``, lets keystoneauth1 add the token (re-authenticating when it expires),
maps failures through :mod:`.errors`, and retries idempotent requests on
transient failures (connection refused, 502/503/504, 429) with capped
exponential backoff. Uploads are never retried: their body is a stream.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
import urllib3.exceptions
from keystoneauth1 import adapter as ks_adapter

from imagehub import _http_deadline
from imagehub._retry import backoff, retrying
from imagehub.errors import (
    BackendError,
    ImageHubError,
    ImageNotFound,
    RateLimited,
    ServerUnreachable,
    TransferError,
)

from .errors import (
    BACKEND,
    TimedOut,
    error_for_status,
    mapped,
    retry_after_seconds,
    server_text,
)
from .session import DEFAULT_TIMEOUT

# A page of 1000 image records is a few MiB; a body past this is not a listing, and
# parsing it would cost many times its size in memory.
MAX_BODY = 32 * 2**20
ERROR_BODY = 64 * 1024

JSON_PATCH = "application/openstack-images-v2.1-json-patch"
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
TRANSIENT_STATUS = frozenset({502, 503, 504})
_VERSION_SUFFIX = re.compile(r"/v\d+(\.\d+)?/?$")


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, TimedOut):
        return False  # the timeout was the whole budget; a retry would multiply it
    if isinstance(exc, ServerUnreachable | RateLimited):
        return True
    return isinstance(exc, BackendError) and exc.status_code in TRANSIENT_STATUS


class GlanceHTTP:
    """Thin, typed access to Image API v2 (no resource layer: the manager owns semantics)."""

    def __init__(
        self,
        adapter: ks_adapter.Adapter,
        *,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        self.adapter = adapter
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep: Callable[[float], None] = time.sleep  # tests swap in a fake
        self.max_body = MAX_BODY
        self._root: str | None = None

    @property
    def root(self) -> str:
        """The endpoint without a version suffix (catalogs list either form)."""
        if self._root is None:
            with mapped("finding the image endpoint"):
                endpoint = self.adapter.get_endpoint()
            if not endpoint:
                raise ImageHubError("no image endpoint: the catalog has none for this "
                                    "region/interface and no endpoint_override is set",
                                    backend=BACKEND)
            self._root = _VERSION_SUFFIX.sub("", endpoint.rstrip("/"))
        return self._root

    def url(self, path: str) -> str:
        return f"{self.root}/v2/{path.lstrip('/')}"

    def project_id(self) -> str | None:
        with mapped("reading the project from the token"):
            pid = self.adapter.get_project_id()
        return str(pid) if pid else None

    def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        data: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        retry: bool | None = None,
        not_found: type[ImageHubError] = ImageNotFound,
    ) -> requests.Response:
        """One call; ``what`` names it in errors ("delete image <id>")."""
        url = path if path.startswith("http") else self.url(path)
        sent = {"Accept": "application/json", **(headers or {})}
        may_retry = (method in IDEMPOTENT and data is None) if retry is None else retry

        def once() -> requests.Response:
            try:
                with mapped(what):
                    resp: requests.Response = self.adapter.request(
                        url, method, json=json, data=data, params=params, headers=sent,
                        stream=True, raise_exc=False)
            except ServerUnreachable as exc:
                moved = getattr(data, "sent", 0)
                if not moved:
                    raise
                # Bytes went out, so the server was reached: the connection was lost.
                total = getattr(data, "size", None)
                of = f" of {total}" if total else ""
                raise TransferError(f"{what}: the connection was lost after {moved}{of} "
                                    f"bytes had been sent", backend=BACKEND,
                                    server_message=exc.server_message,
                                    hint="try again; nothing half-made is kept") from exc
            if resp.status_code >= 400:
                self._raise(resp, what, not_found)
            if not stream:
                # Read here, bounded: requests would read any size, for any time.
                resp._content = self._read_bounded(resp, what)
            return resp

        if not may_retry or self.retries == 0:
            return once()
        result: requests.Response = retrying(
            attempts=self.retries + 1, retry_if=_transient, sleep=self.sleep,
            wait=backoff(self.backoff, self.max_backoff, retry_after_cap=self.max_backoff * 4),
        )(once)
        return result

    def _raise(self, resp: requests.Response, what: str,
               not_found: type[ImageHubError]) -> None:
        try:
            # Only the start of an error body is kept: the rest is not worth waiting for.
            body = self._read_bounded(resp, what, limit=ERROR_BODY, truncate=True)
        except ImageHubError:
            body = b""
        message = server_text(body or b"", resp.headers.get("Content-Type"))
        raise error_for_status(
            resp.status_code, f"{what}: HTTP {resp.status_code} {resp.reason or ''}".rstrip(),
            message or None, retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
            not_found=not_found)

    def _timeout(self) -> float:
        timeout = getattr(self.adapter.session, "timeout", None)
        return float((timeout[-1] if isinstance(timeout, tuple) else timeout)
                     or DEFAULT_TIMEOUT)

    def json(self, method: str, path: str, what: str, **kw: Any) -> dict[str, Any]:
        """The JSON object a call answers. Every caller reads fields out of it, so an
        empty answer or one that is not an object is the server's fault, said here."""
        resp = self.request(method, path, what, stream=True, **kw)
        content = self._read_bounded(resp, what)
        if not content and resp.status_code in (202, 204):
            raise BackendError(f"{what}: the server answered {resp.status_code} with "
                               "nothing where Glance answers a JSON object", backend=BACKEND,
                               hint="check the endpoint: is it the Image API's address?")
        try:
            body = json.loads(content)
        except ValueError as exc:
            raise BackendError(f"{what}: the server answered with something that is not "
                               "JSON", backend=BACKEND,
                               server_message=server_text(content[:4000])) from exc
        if not isinstance(body, dict):
            # Every Image API answer is an object; anything else is not Glance talking.
            raise BackendError(f"{what}: the server answered JSON that is not an object "
                               f"({type(body).__name__})", backend=BACKEND,
                               hint="check the endpoint: is it the Image API's address?")
        return body

    def _read_bounded(self, resp: requests.Response, what: str, *,
                      limit: int | None = None, truncate: bool = False) -> bytes:
        """A JSON answer's body: at most ``max_body`` bytes, read within the timeout.

        ``read1`` returns what has arrived, so a server dripping bytes is caught by the
        deadline check between reads instead of holding one read open forever.
        """
        if getattr(resp, "_content_consumed", False):
            # keystoneauth1's debug logging read it already, to log it.
            content = resp.content or b""
            if not truncate and len(content) > (limit or self.max_body):
                raise BackendError(f"{what}: the answer is larger than "
                                   f"{(limit or self.max_body) // 2**20} MiB",
                                   backend=BACKEND)
            return content[:limit or self.max_body]
        seconds = self._timeout()
        # The deadline the transport set when the request had been sent (a login before
        # it, or the upload of its body, does not count against the answer).
        deadline = getattr(resp, "imagehub_deadline", None) or time.monotonic() + seconds
        parts: list[bytes] = []
        size = 0
        # One read may block for a whole socket timeout: the watchdog ends it at the
        # deadline instead, so the answer takes the timeout at most, not twice that.
        sock = getattr(getattr(resp.raw, "connection", None), "sock", None)
        watch = _http_deadline.cut_at(sock, deadline)
        try:
            with mapped(what), watch:
                while True:
                    try:
                        chunk = resp.raw.read1(65536, decode_content=True)
                    except (urllib3.exceptions.HTTPError, OSError) as exc:
                        if watch.expired.is_set():
                            raise TimedOut(
                                f"{what}: the answer took longer than {seconds:g}s to "
                                "arrive", backend=BACKEND,
                                hint="raise the cloud's 'timeout', or try later") from exc
                        raise TransferError(f"{what}: the answer was cut after {size} "
                                            f"bytes: {exc}", backend=BACKEND) from exc
                    if not chunk:
                        return b"".join(parts)
                    size += len(chunk)
                    if truncate and size > (limit or self.max_body):
                        parts.append(chunk)
                        return b"".join(parts)[:limit or self.max_body]
                    if size > (limit or self.max_body):
                        raise BackendError(
                            f"{what}: the answer is larger than "
                            f"{self.max_body // 2**20} MiB; not reading it",
                            backend=BACKEND, hint="ask for smaller pages (page_size)")
                    if time.monotonic() > deadline:
                        raise TimedOut(
                            f"{what}: the answer took longer than {seconds:g}s to arrive",
                            backend=BACKEND, hint="raise the cloud's 'timeout', or try later")
                    parts.append(chunk)
        finally:
            resp.close()

