"""The fault-injecting proxy, checked against a tiny real HTTP server on loopback.

The migration fault tests trust it to break transfers exactly as asked (cut at an
offset, flip one byte, stall), so it is tested on its own first.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.servers.faultproxy import FaultProxy

SIZE = 4 * 1024 * 1024
BLOB = os.urandom(SIZE)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BLOB)))
        self.end_headers()
        view = memoryview(BLOB)
        for i in range(0, len(BLOB), 65536):
            self.wfile.write(view[i:i + 65536])

    def do_PUT(self) -> None:
        left = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        while left:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                return
            digest.update(chunk)
            left -= len(chunk)
        body = digest.hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the proxy resets connections on purpose


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def proxy(server: ThreadingHTTPServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.server_address[1]) as p:
        yield p


def _get(port: int, timeout: float = 10) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/blob")
        resp = conn.getresponse()
        return resp.read()
    finally:
        conn.close()


def _put(port: int, data: bytes, timeout: float = 10) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("PUT", "/upload", body=data,
                     headers={"Content-Length": str(len(data))})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_forwards_both_ways_unchanged(proxy: FaultProxy) -> None:
    assert _get(proxy.port) == BLOB
    assert _put(proxy.port, BLOB) == hashlib.sha256(BLOB).hexdigest()
    assert proxy.forwarded("down") >= SIZE and proxy.forwarded("up") >= SIZE


@pytest.mark.parametrize("fraction", [0.10, 0.50, 0.99])
def test_cut_download_at_fraction(proxy: FaultProxy, fraction: float) -> None:
    at = int(SIZE * fraction)
    proxy.cut("down", at)
    with pytest.raises((http.client.IncompleteRead, ConnectionError)) as caught:
        _get(proxy.port)
    if isinstance(caught.value, http.client.IncompleteRead):
        # Headers (~70 bytes) count too: the body stops just short of the offset.
        assert at - 200 <= len(caught.value.partial) <= at
    # One-shot: the next request goes through whole.
    assert _get(proxy.port) == BLOB


@pytest.mark.parametrize("fraction", [0.10, 0.50, 0.99])
def test_cut_upload_at_fraction(proxy: FaultProxy, fraction: float) -> None:
    proxy.cut("up", int(SIZE * fraction))
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        _put(proxy.port, BLOB)
    assert proxy.forwarded("up") <= int(SIZE * fraction)


def test_flip_one_byte_in_each_direction(proxy: FaultProxy) -> None:
    proxy.flip("down", SIZE // 2)
    got = _get(proxy.port)
    diffs = [i for i, (a, b) in enumerate(zip(got, BLOB, strict=True)) if a != b]
    assert len(diffs) == 1 and abs(diffs[0] - SIZE // 2) < 200
    proxy.flip("up", SIZE // 3)
    assert _put(proxy.port, BLOB) != hashlib.sha256(BLOB).hexdigest()


def test_stall_holds_until_the_client_gives_up_or_release(proxy: FaultProxy) -> None:
    proxy.stall("down", SIZE // 2)
    started = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout)):
        _get(proxy.port, timeout=0.5)
    assert time.monotonic() - started < 5
    # A stalled transfer resumes whole when released.
    proxy.stall("down", SIZE // 2)
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(_get(proxy.port)))
    reader.start()
    time.sleep(0.5)
    assert not result
    proxy.release()
    reader.join(10)
    assert result == [BLOB]


def test_repeat_breaks_every_attempt(proxy: FaultProxy) -> None:
    proxy.cut("down", SIZE // 10, repeat=True)
    for _ in range(3):
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            _get(proxy.port)
    proxy.disarm()
    assert _get(proxy.port) == BLOB


def test_refuses_non_loopback_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(80, "192.0.2.1")
