"""A loopback TCP proxy that breaks transfers on purpose.

It sits between imagehub and a real server (Glance, LXD, a test HTTP server) and
forwards bytes both ways unchanged until a fault is armed. A fault watches one
direction (``"up"``: client to server, as in an upload; ``"down"``: server to client,
as in a download), counts the bytes that pass in that direction on all connections
since it was armed, and when the count reaches ``at`` it

- ``cut``s: resets both sides of that connection (the peer sees a dropped link);
- ``flip``s: XORs the byte at that offset and keeps forwarding;
- ``stall``s: stops forwarding that connection (keeping it open) until ``release()``
  or the proxy stops, so only the client's timeouts can end the transfer.

A fault fires once unless ``repeat=True``, in which case every later connection
counts afresh from zero and faults again at the same offset. The byte offsets are
the caller's to choose, usually a fraction of the image size; request and response
headers add a few hundred bytes, negligible against image payloads.

Only loopback: it listens on 127.0.0.1 and refuses targets that are not loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

__all__ = ["Fault", "FaultProxy"]

Direction = Literal["up", "down"]
Kind = Literal["cut", "flip", "stall"]
_BUF = 256 * 1024


@dataclass
class Fault:
    kind: Kind
    direction: Direction
    at: int
    repeat: bool = False
    fired: int = 0


@dataclass
class _Conn:
    client: socket.socket
    upstream: socket.socket
    counted: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    stalled: bool = False
    closed: bool = False


class FaultProxy:
    """``with FaultProxy(port) as proxy: ... proxy.url ...``; arm faults with ``cut`` etc."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        if not ipaddress.ip_address(socket.gethostbyname(target_host)).is_loopback:
            raise ValueError(f"faultproxy forwards to loopback only, not {target_host!r}")
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._total = {"up": 0, "down": 0}
        self._sent = {"up": 0, "down": 0}
        self._conns: list[_Conn] = []
        self._release = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy",
                                        daemon=True)
        self.connections = 0

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._release.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            self._close(conn)
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------
    def arm(self, kind: Kind, direction: Direction, at: int, *, repeat: bool = False) -> Fault:
        """Arm one fault; byte counting in ``direction`` restarts from zero."""
        if at < 0:
            raise ValueError("at must be >= 0")
        fault = Fault(kind, direction, at, repeat)
        with self._lock:
            self._fault = fault
            self._total = {"up": 0, "down": 0}
            self._sent = {"up": 0, "down": 0}
            for conn in self._conns:
                conn.counted = {"up": 0, "down": 0}
            self._release.clear()
        return fault

    def cut(self, direction: Direction, at: int, *, repeat: bool = False) -> Fault:
        return self.arm("cut", direction, at, repeat=repeat)

    def flip(self, direction: Direction, at: int, *, repeat: bool = False) -> Fault:
        return self.arm("flip", direction, at, repeat=repeat)

    def stall(self, direction: Direction, at: int, *, repeat: bool = False) -> Fault:
        return self.arm("stall", direction, at, repeat=repeat)

    def disarm(self) -> None:
        with self._lock:
            self._fault = None
        self.release()

    def release(self) -> None:
        """Let stalled connections flow again."""
        self._release.set()

    def forwarded(self, direction: Direction) -> int:
        """Bytes passed on in ``direction`` since the last ``arm`` (or start)."""
        with self._lock:
            return self._sent[direction]

    # -- plumbing -------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, upstream)
            with self._lock:
                self._conns.append(conn)
                self.connections += 1
            for direction in ("up", "down"):
                threading.Thread(target=self._pump, args=(conn, direction),
                                 name=f"faultproxy-{direction}", daemon=True).start()

    def _pump(self, conn: _Conn, direction: Direction) -> None:
        src, dst = (conn.client, conn.upstream) if direction == "up" else (
            conn.upstream, conn.client)
        try:
            while True:
                data = src.recv(_BUF)
                if not data:
                    if not conn.closed:
                        # Half-close: pass the end of this direction on, keep the other.
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)
                    return
                action, data = self._apply(conn, direction, data)
                if action == "stall":
                    conn.stalled = True
                    while not self._release.wait(0.1):
                        if conn.closed or self._stopping.is_set():
                            return
                    conn.stalled = False
                if data:
                    dst.sendall(data)
                    with self._lock:
                        self._sent[direction] += len(data)
                if action == "cut":
                    self._close(conn, reset=True)
                    return
        except OSError:
            self._close(conn)

    def _apply(self, conn: _Conn, direction: Direction, data: bytes
               ) -> tuple[str, bytes]:
        # Decide under the lock so two connections cannot both take a one-shot fault.
        with self._lock:
            fault = self._fault
            before = conn.counted[direction]
            conn.counted[direction] += len(data)
            self._total[direction] += len(data)
            if fault is None or fault.direction != direction:
                return "", data
            if not fault.repeat and fault.fired:
                return "", data
            # One-shot faults count across connections (a retry continues the count);
            # repeating ones count per connection so every attempt breaks.
            start = before if fault.repeat else self._total[direction] - len(data)
            offset = fault.at - start
            if not 0 <= offset < len(data):
                return "", data
            fault.fired += 1
        if fault.kind == "flip":
            flipped = bytearray(data)
            flipped[offset] ^= 0xFF
            return "", bytes(flipped)
        if fault.kind == "cut":
            return "cut", data[:offset]
        # stall: forward what came before the offset, then hold the rest
        head, tail = data[:offset], data[offset:]
        if head:
            conn_dst = conn.upstream if direction == "up" else conn.client
            conn_dst.sendall(head)
            with self._lock:
                self._sent[direction] += len(head)
        return "stall", tail

    def _close(self, conn: _Conn, *, reset: bool = False) -> None:
        with self._lock:
            if conn.closed:
                return
            conn.closed = True
            with contextlib.suppress(ValueError):
                self._conns.remove(conn)
        for s in (conn.client, conn.upstream):
            if reset:
                _reset(s)
            else:
                # shutdown wakes the other pump thread blocked in recv on this socket;
                # close alone would wait for it.
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0 makes close() send RST: the peer sees "connection reset", as when a
    # link or a server dies, rather than a clean end of stream. SHUT_RD first wakes the
    # other pump thread blocked in recv here without sending a FIN.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()
