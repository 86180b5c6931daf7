"""A server that is reached but answers something that is not HTTP (a header line past
64 KiB, endless headers) or hangs up before answering is not "cannot connect ... is the
service up?": Glance and Keystone say what happened. Loopback raw-socket servers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_network_hygiene import (
    glance_direct,
    glance_keystone,
    lambda_cloud,
    run_cli,
    write_config,
)


class RawServer:
    """Reads a request head, then misbehaves as ``mode`` says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(30)
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
                if self.mode == "long-header":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Long: ")
                    for _ in range(64):
                        conn.sendall(b"a" * 4096)
                elif self.mode == "many-headers":
                    conn.sendall(b"HTTP/1.1 200 OK\r\n"
                                 + b"".join(b"X-%d: v\r\n" % i for i in range(500)))
                elif self.mode.startswith("body:"):
                    body = self.mode[len("body:"):].encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                                 % len(body) + body)
                # "hang-up": close without a byte
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture(params=["long-header", "many-headers", "hang-up"])
def raw(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("where", ["glance", "keystone", "lambda"])
def test_reached_but_no_valid_answer_is_not_cannot_connect(raw: RawServer, tmp_path: Path,
                                                           where: str) -> None:
    make = {"glance": glance_direct, "keystone": glance_keystone, "lambda": lambda_cloud}[where]
    config = write_config(tmp_path, {"c": make(raw, timeout=20)})  # type: ignore[arg-type]
    result, _, _ = run_cli(config, "-c", "c", "list")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "is the endpoint right and the service up?" not in result.stderr, result.stderr
    assert "cut short" not in result.stderr, result.stderr
    if raw.mode == "hang-up":
        assert "without answering" in result.stderr, result.stderr
    elif raw.mode == "long-header" or where != "lambda":
        assert "not valid HTTP" in result.stderr, result.stderr
    else:
        # h11 has no header count limit: it reads the endless head until the server
        # closes, which is then a hang-up before any complete answer.
        assert "not valid HTTP" in result.stderr or "without answering" in result.stderr


def test_keystone_refusing_discovery_with_401_fails_at_once(tmp_path: Path) -> None:
    """keystoneauth1 retries a discovery answered 401 with a token, whose login needs
    discovery under the plugin's lock it holds: a self-deadlock, not a slow server."""
    from tests.servers.hostile import HostileServer

    server = HostileServer()
    server.keystone_misbehaves = True  # every answer, discovery included, is a 401 echo
    try:
        config = write_config(tmp_path, {"c": glance_keystone(server, timeout=20)})
        result, elapsed, _ = run_cli(config, "-c", "c", "list")
    finally:
        server.close()
    assert result.returncode == 1
    assert "identity service refuses its version discovery" in result.stderr, result.stderr
    assert elapsed < 60  # the defect never ended


@pytest.mark.parametrize("body", ["", "[]", "null", "42", '"images"', '{"images": 7}',
                                  '{"images": [1]}', '{"images": [{"id": []}]}',
                                  '{"data": 7}', '{"data": [1]}', '{"data": [{"id": 5}]}'])
@pytest.mark.parametrize("backend", ["glance", "lambda"])
def test_answering_json_of_the_wrong_shape_is_one_line(tmp_path: Path, body: str,
                                                       backend: str) -> None:
    """A 200 whose JSON is empty, not an object, or holds the wrong types is the server's
    fault, said in one line: never an AttributeError from deep inside."""
    server = RawServer("body:" + body)
    make = glance_direct if backend == "glance" else lambda_cloud
    try:
        config = write_config(tmp_path, {"c": make(
            server, timeout=20)})  # type: ignore[arg-type]
        result, _, _ = run_cli(config, "-c", "c", "list")
    finally:
        server.close()
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("imagehub: error:"), result.stderr
    assert result.stderr.count("\n") == 1 and "unexpected" not in result.stderr, result.stderr
