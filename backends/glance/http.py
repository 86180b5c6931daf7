"""Glance's HTTP surface over a keystoneauth1 Adapter, with bounded retries.

Every request goes through :meth:`GlanceHTTP.request`: it builds the URL under
``/v2``, lets keystoneauth1 add the token (re-authenticating when it expires),
maps failures through :mod:`.errors`, and retries idempotent requests on
transient failures (connection refused, 502/503/504, 429) with capped
exponential backoff. Uploads are never retried: their body is a stream.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import requests
import tenacity
from keystoneauth1 import adapter as ks_adapter

from imagehub.errors import (
    BackendError,
    ImageHubError,
    ImageNotFound,
    RateLimited,
    ServerUnreachable,
)

from .errors import BACKEND, error_for_status, mapped, retry_after_seconds, server_text

JSON_PATCH = "application/openstack-images-v2.1-json-patch"
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
TRANSIENT_STATUS = frozenset({502, 503, 504})
_VERSION_SUFFIX = re.compile(r"/v\d+(\.\d+)?/?$")


def _transient(exc: BaseException) -> bool:
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
            with mapped(what):
                resp: requests.Response = self.adapter.request(
                    url, method, json=json, data=data, params=params, headers=sent,
                    stream=stream, raise_exc=False)
            if resp.status_code >= 400:
                self._raise(resp, what, not_found)
            return resp

        if not may_retry or self.retries == 0:
            return once()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception(_transient),
            reraise=True,
        )
        result: requests.Response = retrying(once)
        return result

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_backoff * 4)
        return float(min(self.backoff * (2 ** (state.attempt_number - 1)), self.max_backoff))

    @staticmethod
    def _raise(resp: requests.Response, what: str,
               not_found: type[ImageHubError]) -> None:
        try:
            body = resp.content  # error bodies are small, even on streamed requests
        except (requests.RequestException, OSError, ValueError):
            body = b""
        finally:
            resp.close()
        message = server_text(body or b"", resp.headers.get("Content-Type"))
        raise error_for_status(
            resp.status_code, f"{what}: HTTP {resp.status_code} {resp.reason or ''}".rstrip(),
            message or None, retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
            not_found=not_found)

    def json(self, method: str, path: str, what: str, **kw: Any) -> Any:
        resp = self.request(method, path, what, **kw)
        try:
            return resp.json() if resp.content else None
        except ValueError as exc:
            raise BackendError(f"{what}: the server answered with something that is not "
                               "JSON", backend=BACKEND,
                               server_message=server_text(resp.content[:2000])) from exc

