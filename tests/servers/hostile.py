"""A loopback HTTP server that misbehaves on purpose, for the network-hygiene tests.

One server plays whichever API a backend talks to: Lambda Cloud (``/api/v1/...``),
Glance (``/v2/...``) and Keystone (``/v3``, ``/v3/auth/tokens``). ``mode`` says how it
misbehaves:

- ``echo``: refuse (``status``, 401 by default) with every request header and the request
  body quoted back, in the error message, the suggestion and a response header; the
  credential header's value is also quoted base64-encoded as HTTP Basic would carry it. Keystone
  in this mode echoes the password it was sent.
- ``silent``: accept the connection and never answer.
- ``drip``: answer 200 and send the body one byte every ``drip_every`` seconds.
- ``drip-head``: send the status line and headers themselves one byte at a time.
- ``endless``: answer 200 with a JSON body that never ends.
- ``endless-chunked``: the same endless body, sent with chunked transfer encoding.
- ``endless-error``: answer ``status`` with an endless chunked JSON error body.
- ``huge``: answer 200 with a valid JSON listing of ``huge_bytes`` bytes.
- ``sink``: read an upload whole, however slowly it comes, then answer 204.
- ``cut``: serve image creation, then cut the connection after ``cut_after`` bytes of
  an upload.

With ``keystone_ok`` Keystone issues a real-looking token (``issued_token``) whose catalog
points at this server, so Glance requests carry a token received at run time; in
``echo`` mode Glance then quotes that token back. ``tls=True`` serves HTTPS with a fresh
self-signed certificate (``cert_path``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import socket
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["HostileServer"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.owner.handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HostileServer


class HostileServer:
    def __init__(self, *, tls: bool = False, workdir: Path | None = None) -> None:
        self.mode = "echo"
        self.status = 401
        self.drip_every = 0.5
        self.huge_bytes = 60 * 2**20
        self.cut_after = 256 * 1024
        self.keystone_ok = False
        self.keystone_misbehaves = False  # Keystone's own answers follow ``mode`` too
        self.issued_token = "tok-" + secrets.token_hex(16)
        self.requests: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._http = _Server(("127.0.0.1", 0), _Handler)
        self._http.owner = self
        self.cert_path: Path | None = None
        if tls:
            if workdir is None:
                raise ValueError("tls needs a workdir for the certificate")
            self.cert_path, key_path = _self_signed(workdir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert_path, key_path)
            self._http.socket = context.wrap_socket(self._http.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._http.server_address[1]}"

    def close(self) -> None:
        self._stop.set()
        self._http.shutdown()
        self._http.server_close()

    # -- dispatch -------------------------------------------------------------------------
    def handle(self, h: _Handler) -> None:
        self.requests.append((h.command, h.path))
        body = self._read_body(h)
        if (h.path.startswith("/v3") or h.path in ("/", "")) and not self.keystone_misbehaves:
            self._keystone(h, body)
            return
        if self.mode == "silent":
            self._stop.wait(120)
            h.close_connection = True
            return
        if self.mode == "drip":
            self._drip(h)
        elif self.mode == "drip-head":
            self._drip_head(h)
        elif self.mode == "endless":
            self._endless(h)
        elif self.mode in ("endless-chunked", "endless-error"):
            self._endless_chunked(h, 200 if self.mode == "endless-chunked" else self.status)
        elif self.mode == "huge":
            self._huge(h)
        elif self.mode == "cut":
            self._cut(h, body)
        elif self.mode == "sink":
            self._sink(h)
        else:
            self._echo(h, body)

    @staticmethod
    def _read_body(h: _Handler) -> bytes:
        length = int(h.headers.get("Content-Length") or 0)
        if length and h.command != "PUT":
            return h.rfile.read(length)
        return b""

    def _send(self, h: _Handler, status: int, doc: Any, headers: dict[str, str] | None = None
              ) -> None:
        data = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    # -- behaviours -----------------------------------------------------------------------
    def _echo(self, h: _Handler, body: bytes) -> None:
        quoted = " ".join(f"{k}: {v}" for k, v in h.headers.items())
        quoted += " body: " + body.decode("utf-8", "replace")
        auth = h.headers.get("Authorization") or h.headers.get("X-Auth-Token") or ""
        # The credential re-encoded as HTTP Basic would carry it, behind user names of
        # different lengths so it starts at each byte offset of a base64 group, and with
        # no header name next to it.
        credential = auth.split(" ", 1)[-1]
        quoted += " as basic: " + " ".join(
            base64.b64encode(f"{user}{credential}".encode()).decode()
            for user in ("", "u:", "user:", "apikey:"))
        doc = {"error": {"code": "global/invalid-api-key" if self.status == 401 else
                         "provider/internal-error",
                         "message": f"rejected request {quoted}",
                         "suggestion": f"check {auth}"},
               "message": f"rejected request {quoted}"}
        self._send(h, self.status, doc, {"X-Echo": auth[:200] or "none"})

    def _keystone(self, h: _Handler, body: bytes) -> None:
        if h.command == "GET":
            self._send(h, 200, {"version": {
                "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{self.url}/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}})
            return
        if not self.keystone_ok:
            self._send(h, 401, {"error": {"code": 401, "title": "Unauthorized",
                                          "message": "could not authenticate: "
                                          + body.decode("utf-8", "replace")}})
            return
        expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime(
            "%Y-%m-%dT%H:%M:%S.000000Z")
        domain = {"id": "default", "name": "Default"}
        endpoints = [{"id": f"e-{i}", "interface": i, "region_id": "RegionOne",
                      "region": "RegionOne", "url": self.url}
                     for i in ("public", "internal", "admin")]
        self._send(h, 201, {"token": {
            "methods": ["password"], "expires_at": expires, "issued_at": expires,
            "user": {"id": "u1", "name": "user", "domain": domain},
            "project": {"id": "p1", "name": "project", "domain": domain},
            "roles": [{"id": "r1", "name": "member"}],
            "catalog": [{"type": "image", "name": "glance", "id": "s1",
                         "endpoints": endpoints}]}},
            {"X-Subject-Token": self.issued_token})

    def _drip(self, h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            while not self._stop.wait(self.drip_every):
                h.wfile.write(b" ")
                h.wfile.flush()
        except OSError:
            pass
        h.close_connection = True

    def _drip_head(self, h: _Handler) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: x\r\n" * 1000
        try:
            for byte in head:
                if self._stop.wait(self.drip_every):
                    break
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
        except OSError:
            pass
        h.close_connection = True

    def _endless(self, h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Connection", "close")
        h.end_headers()
        item = b'"' + b"x" * 1000 + b'",'
        try:
            h.wfile.write(b'{"data": [' if h.path.startswith("/api/") else b'{"images": [')
            while not self._stop.is_set():
                h.wfile.write(item * 64)
        except OSError:
            pass
        h.close_connection = True

    def _endless_chunked(self, h: _Handler, status: int) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        head = b'{"data": [' if h.path.startswith("/api/") else b'{"images": ['
        if status >= 400:
            head = b'{"error": {"message": "'
        block = (b'"' + b"x" * 1000 + b'",') * 64 if status < 400 else b"x" * 64000

        def chunk(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data)

        try:
            h.wfile.write(chunk(head))
            while not self._stop.is_set():
                h.wfile.write(chunk(block))
        except OSError:
            pass
        h.close_connection = True

    def _huge(self, h: _Handler) -> None:
        head = b'{"data": [' if h.path.startswith("/api/") else b'{"images": ['
        item = b'{"id": "' + b"i" * 200 + b'", "name": "n"},'
        count = self.huge_bytes // len(item)
        tail = b'{"id": "last", "name": "n"}]}'
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(head) + count * len(item) + len(tail)))
        h.end_headers()
        try:
            h.wfile.write(head)
            for start in range(0, count, 1024):
                h.wfile.write(item * min(1024, count - start))
            h.wfile.write(tail)
        except OSError:
            h.close_connection = True

    def _sink(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        while length > 0:
            length -= len(h.rfile.read(min(length, 65536)))
        h.send_response(204)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _cut(self, h: _Handler, body: bytes) -> None:
        if h.command == "POST" and h.path == "/v2/images":
            doc = json.loads(body or b"{}")
            self._send(h, 201, {"id": str(uuid.uuid4()), "name": doc.get("name"),
                                "status": "queued", "visibility": "private", "tags": [],
                                "disk_format": doc.get("disk_format"),
                                "container_format": doc.get("container_format")})
        elif h.command == "PUT":
            got = 0
            while got < self.cut_after:
                chunk = h.rfile.read1(65536)
                if not chunk:
                    break
                got += len(chunk)
            # Cut mid-upload, as a dying proxy would: no answer, just a reset.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
            h.close_connection = True
            h.connection.close()
        elif h.command == "DELETE":
            h.send_response(204)
            h.send_header("Content-Length", "0")
            h.end_headers()
        else:
            self._send(h, 404, {"message": "not here"})


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = workdir / "hostile.crt", workdir / "hostile.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    time.sleep(0)
    return cert_path, key_path
