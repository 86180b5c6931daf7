"""A total deadline for httpx requests, which only knows per-operation timeouts.

httpx's ``read`` timeout restarts at every socket read, so a server sending one byte
every few seconds is never timed out. The network backend here caps each connect, read
and write at what is left of the deadline set by :func:`deadline` for the current thread,
so the whole request (connect, headers, body) ends within it.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
import time
import typing
from collections.abc import Iterable, Iterator

import httpcore
import httpx

_local = threading.local()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every socket operation of this thread inside the block ends ``seconds`` from now."""
    previous: float | None = getattr(_local, "at", None)
    at = time.monotonic() + seconds
    _local.at = at if previous is None else min(previous, at)
    try:
        yield
    finally:
        _local.at = previous


def _cap(timeout: float | None, exc: type[Exception]) -> float | None:
    at: float | None = getattr(_local, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise exc("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: typing.Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self._stream.start_tls(ssl_context, server_hostname,
                                              _cap(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[typing.Any] | None = None
                    ) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_tcp(
            host, port, _cap(timeout, httpcore.ConnectTimeout), local_address,
            socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[typing.Any] | None = None
                            ) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_unix_socket(
            path, _cap(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def transport(*, verify: typing.Any) -> httpx.HTTPTransport:
    """httpx's own transport (its error mapping, pooling, TLS) over the deadline backend."""
    if isinstance(verify, str):
        verify = (ssl.create_default_context(capath=verify) if os.path.isdir(verify)
                  else ssl.create_default_context(cafile=verify))
    made = httpx.HTTPTransport(verify=verify)
    pool = getattr(made, "_pool", None)
    if isinstance(pool, httpcore.ConnectionPool):
        # httpx exposes no way to pass a network backend; the pool reads this attribute
        # each time it opens a connection.
        pool._network_backend = _Backend()
    return made


def read_capped(chunks: Iterable[bytes], limit: int) -> bytes | None:
    """The body joined, or None once it grows past ``limit`` bytes (memory stays bounded)."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)
