"""A deadline on the head of every answer, for backends that talk through requests.

requests (urllib3, http.client) applies its read timeout to each socket read, so a server
that sends its answer one byte at a time is never timed out. The adapter here gives each
request a deadline of its read timeout, counted from when the request has been sent (an
upload may take any time): the head must arrive within it, and for a request that is not
streamed (keystoneauth1's own calls, small JSON) the whole body too. When it
passes, a watchdog shuts the socket down and the request fails as a read timeout.
Streamed bodies are the caller's to bound: JSON against a deadline, image data against
inactivity only, so large images are never cut. A JSON or text body can never be read
past ``MAX_TEXT_BODY``, by anyone.

Imported only by backends that depend on requests.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from .errors import BackendError

__all__ = ["MAX_TEXT_BODY", "DeadlineMixin", "budget", "cut_at", "mount", "with_deadline"]

# A backstop for any JSON or text answer; backends cap what they parse lower.
MAX_TEXT_BODY = 64 * 2**20


_local = threading.local()


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Every request of this thread inside the block shares one deadline, ``seconds``
    from now (keystoneauth1's discovery and token requests are one login to the user)."""
    outer: float | None = getattr(_local, "budget_at", None)
    at = time.monotonic() + seconds
    _local.budget_at = at if outer is None else min(outer, at)
    try:
        yield
    finally:
        _local.budget_at = outer


def _left() -> float | None:
    at: float | None = getattr(_local, "at", None)
    return None if at is None else at - time.monotonic()


class _Watchdog:
    """Shuts ``sock`` down if the block is still running after ``seconds``."""

    def __init__(self, sock: Any, seconds: float) -> None:
        self.expired = threading.Event()
        self._sock = sock
        self._timer = threading.Timer(max(0.0, seconds), self._cut)
        self._timer.daemon = True

    def _cut(self) -> None:
        self.expired.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


class _NoWatch:
    expired = threading.Event()  # never set

    def __enter__(self) -> _NoWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def cut_at(sock: Any, deadline: float) -> _Watchdog | _NoWatch:
    """A context manager that shuts ``sock`` down at ``deadline`` (a monotonic time) if
    the block is still running; its ``expired`` event says whether it did. Without a
    socket it watches nothing."""
    if sock is None:
        return _NoWatch()
    return _Watchdog(sock, deadline - time.monotonic())


class _Deadline:
    """Mixin: ``getresponse`` gives up once the request's deadline has passed."""

    sock: Any

    def getresponse(self) -> Any:
        limit: float | None = getattr(_local, "limit", None)
        if limit is None or self.sock is None:
            return super().getresponse()  # type: ignore[misc]
        # The clock starts once the request is sent: an upload may take any time.
        _local.at = time.monotonic() + limit
        with _Watchdog(self.sock, limit) as watchdog:
            try:
                response = super().getresponse()  # type: ignore[misc]
            except Exception as exc:
                if watchdog.expired.is_set():
                    raise urllib3.exceptions.ReadTimeoutError(
                        None, "", "no answer within the deadline"  # type: ignore[arg-type]
                    ) from exc
                raise
            if watchdog.expired.is_set():
                # http.client takes the end of the stream for the end of the headers: a
                # head cut by the watchdog would pass for a whole answer with no body.
                response.close()
                raise urllib3.exceptions.ReadTimeoutError(
                    None, "", "no answer within the deadline")  # type: ignore[arg-type]
            return response


def with_deadline(connection_cls: type[Any]) -> type[Any]:
    """``connection_cls`` (an urllib3 HTTPConnection subclass, such as a library's own
    unix-socket connection) whose answers keep the adapter's deadline."""
    return type(f"Deadline{connection_cls.__name__}", (_Deadline, connection_cls), {})


class _HTTPConnection(_Deadline, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Deadline, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineMixin:
    """For an HTTPAdapter (requests' own or a library's subclass): a request that is not
    streamed must be answered whole within its read timeout, one that is streamed must
    get its head within it."""

    poolmanager: Any

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[misc]
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, *args: Any, **kwargs: Any) -> requests.Response:
        limit = timeout[-1] if isinstance(timeout, tuple) else timeout
        budget_at: float | None = getattr(_local, "budget_at", None)
        if budget_at is not None:
            left = budget_at - time.monotonic()
            if left <= 0:
                raise requests.exceptions.ReadTimeout(
                    "no time left for this request", request=request)
            limit = left if not isinstance(limit, (int, float)) else min(limit, left)
        if not isinstance(limit, (int, float)) or limit <= 0:
            plain: requests.Response = super().send(  # type: ignore[misc]
                request, stream, timeout, *args, **kwargs)
            return plain
        _local.limit, _local.at = float(limit), None
        try:
            response: requests.Response = super().send(  # type: ignore[misc]
                request, stream, timeout, *args, **kwargs)
            # The answer's deadline, counted from when the request was sent (after its
            # body, before any login a caller did first): a streamed answer's reader
            # holds its body to it.
            response.imagehub_deadline = getattr(_local, "at", None)  # type: ignore[attr-defined]
            _cap_text_body(response)
            if not stream:
                self._read_within(response, limit)
            return response
        finally:
            _local.limit = _local.at = None

    @staticmethod
    def _read_within(response: requests.Response, limit: float) -> None:
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        left = _left()
        if sock is None or left is None:
            return
        with _Watchdog(sock, left) as watchdog:
            try:
                response.content  # noqa: B018 - read now, while the watchdog runs
            except Exception as exc:
                if watchdog.expired.is_set():
                    raise requests.exceptions.ReadTimeout(
                        f"the answer took longer than {limit:g}s", request=response.request
                    ) from exc
                raise


def _cap_text_body(response: requests.Response) -> None:
    """Make reading a JSON or text answer past ``MAX_TEXT_BODY`` fail, whoever reads it
    (keystoneauth1 reads whole bodies to log them under --debug, streamed or not)."""
    kind = response.headers.get("Content-Type") or ""
    if "json" not in kind and not kind.startswith("text/"):
        return  # image data: any size
    raw = response.raw
    seen = [0]
    for name in ("read", "read1"):
        original = getattr(raw, name, None)
        if original is None:
            continue

        def capped(*args: Any, _read: Any = original, **kwargs: Any) -> Any:
            data = _read(*args, **kwargs)
            seen[0] += len(data or b"")
            if seen[0] > MAX_TEXT_BODY:
                raise BackendError(f"the answer from {response.url} is larger than "
                                   f"{MAX_TEXT_BODY // 2**20} MiB; not reading it",
                                   hint="check the endpoint: no API answer is that big")
            return data

        setattr(raw, name, capped)
    # A chunked answer is read by read_chunked (requests' iter_content, so .content and
    # .json(), go through stream() to it), never by read: without this a chunked endless
    # body bypassed the cap and keystoneauth1 read gigabytes before its deadline.
    original_chunked = getattr(raw, "read_chunked", None)
    if original_chunked is not None:
        def capped_chunked(*args: Any, **kwargs: Any) -> Iterator[bytes]:
            for data in original_chunked(*args, **kwargs):
                seen[0] += len(data or b"")
                if seen[0] > MAX_TEXT_BODY:
                    raise BackendError(f"the answer from {response.url} is larger than "
                                       f"{MAX_TEXT_BODY // 2**20} MiB; not reading it",
                                       hint="check the endpoint: no API answer is that big")
                yield data

        raw.read_chunked = capped_chunked  # type: ignore[method-assign]


class DeadlineAdapter(DeadlineMixin, requests.adapters.HTTPAdapter):
    """requests' own adapter, with deadlines."""


def mount(session: requests.Session) -> requests.Session:
    """Give ``session`` deadlines for http and https: its adapters for those schemes
    (a library's own subclass included) are replaced by deadline-keeping subclasses."""
    adapters = dict(session.adapters)
    for prefix in ("http://", "https://"):
        adapters.setdefault(prefix, requests.adapters.HTTPAdapter())
    for prefix, adapter in adapters.items():
        if not prefix.startswith(("http://", "https://")) \
                or isinstance(adapter, DeadlineMixin) \
                or not isinstance(adapter, requests.adapters.HTTPAdapter):
            continue
        cls = type(adapter)
        if cls is requests.adapters.HTTPAdapter:
            session.mount(prefix, DeadlineAdapter())
        else:
            kept = type(f"Deadline{cls.__name__}", (DeadlineMixin, cls), {})
            session.mount(prefix, kept())
    return session
