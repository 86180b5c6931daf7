"""A loopback HTTPS image server a real LXD daemon can pull from.

It serves two things LXD downloads server-side:

* simplestreams streams (``streams/v1/index.json`` + ``streams/v1/images.json``
  + the image files), for "create from a simplestreams server + alias";
* the "direct URL" protocol for "create from a URL": LXD sends ``HEAD <url>``
  with ``LXD-Server-Architectures`` and ``LXD-Server-Version`` and expects
  ``LXD-Image-Hash`` (sha256 of the unified image) and ``LXD-Image-URL`` (where
  to GET it) back. Only unified images work that way.

How LXD 5.0 is made to trust the self-signed certificate generated here:

* simplestreams pulls honour the ``certificate`` field of the image source
  (``POST /1.0/images`` with ``source.certificate`` = this server's PEM): LXD adds
  it to the roots it trusts for that download (on top of its CA store, so it is
  not a strict pin), exactly as for another LXD server's certificate;
* URL pulls ignore ``source.certificate`` (LXD builds a plain HTTP client for
  them), so the daemon must trust the certificate through its CA bundle: start
  it with ``SSL_CERT_FILE`` pointing at a bundle that includes this certificate
  (``tests.servers.lxd.start_daemon(..., trust_ca=cert)`` does that). Go reads
  the bundle once, so the certificate has to exist before the daemon starts.

Streams are immutable once published, under a fresh path each: LXD caches a
server's ``index.json`` for an hour keyed by its URL, so adding products to an
already-fetched stream would go unseen.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
import shutil
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers.lxd_images import BuiltImage, sha256_files

# simplestreams names architectures the Debian way; LXD maps them back.
_DEBIAN_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
}


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path

    @property
    def pem(self) -> str:
        return self.cert.read_text()


def self_signed_cert(dest_dir: Path, common_name: str = "imagehub-test") -> TLSFiles:
    """A self-signed certificate for 127.0.0.1, generated now, never shipped."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        # A CA flag lets Go use the certificate as its own trust anchor.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    dest_dir.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(dest_dir / f"{common_name}.crt", dest_dir / f"{common_name}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key.chmod(0o600)
    return files


# The longest a held download waits for its release: a test that forgets to release
# still ends, long after any wait under test should have.
HOLD_LIMIT = 120.0


@dataclass(frozen=True)
class _FileRoute:
    path: Path
    # Set when the download may go on: keeps an LXD download running until the test
    # has seen what it waits for (an event, not a number of seconds).
    hold: threading.Event | None = None


@dataclass(frozen=True)
class _DirectRoute:
    image_hash: str
    image_url: str


@dataclass(frozen=True)
class _JSONRoute:
    body: bytes


_Route = _FileRoute | _DirectRoute | _JSONRoute


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    # Lower-cased names.
    headers: Mapping[str, str]


@dataclass
class ImageServer:
    """Serves simplestreams and direct-URL images over HTTPS on 127.0.0.1."""

    root: Path
    tls: TLSFiles
    requests: list[Request] = field(default_factory=list)
    _routes: dict[str, _Route] = field(default_factory=dict)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("image server not started")
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def _answer(self, *, send_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append(
                    Request(
                        self.command,
                        path,
                        {k.lower(): v for k, v in self.headers.items()},
                    )
                )
                route = server._routes.get(path)
                if route is None:
                    self.send_error(404)
                    return
                if isinstance(route, _DirectRoute):
                    self.send_response(200)
                    self.send_header("LXD-Image-Hash", route.image_hash)
                    self.send_header("LXD-Image-URL", route.image_url)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(route, _JSONRoute):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    if send_body:
                        self.wfile.write(route.body)
                    return
                size = route.path.stat().st_size
                if send_body and route.hold is not None:
                    route.hold.wait(HOLD_LIMIT)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.send_header(
                    "Content-Disposition", f'attachment; filename="{route.path.name}"'
                )
                self.end_headers()
                if send_body:
                    with route.path.open("rb") as fh:
                        shutil.copyfileobj(fh, self.wfile, 1024 * 1024)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="lxd-image-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ImageServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve_file(self, url_path: str, source: Path,
                    hold: threading.Event | None = None) -> str:
        # Link rather than copy: test images are small, benchmark ones are not.
        target = self.root / url_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.hardlink_to(source)
        except OSError:
            shutil.copyfile(source, target)
        self._routes[url_path] = _FileRoute(target, hold)
        return url_path

    def add_direct(self, image: BuiltImage, *, hold: threading.Event | None = None) -> str:
        """Publish a unified image for ``create from URL``; returns the URL to give LXD.

        With ``hold``, the download stalls until the event is set (at most
        ``HOLD_LIMIT`` seconds), for tests of waiting.
        """
        if image.kind != "unified":
            raise ValueError("LXD's URL protocol only carries unified images")
        token = secrets.token_hex(6)
        file_path = self._serve_file(
            f"/files/{token}/{image.paths[0].name}", image.paths[0], hold
        )
        head_path = f"/direct/{token}"
        self._routes[head_path] = _DirectRoute(image.fingerprint, self.url + file_path)
        return self.url + head_path

    def publish_stream(
        self,
        images: Mapping[str, BuiltImage],
        *,
        os_name: str = "imagehub",
        release: str = "test",
        variant: str = "default",
    ) -> str:
        """Publish a new simplestreams stream with one product per alias; returns its base URL."""
        prefix = f"/streams-{secrets.token_hex(6)}"
        version = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d_%H%M")
        products: dict[str, Any] = {}
        for alias, image in images.items():
            arch = _DEBIAN_ARCH.get(image.architecture, image.architecture)
            product_id = f"{os_name}:{alias.replace('/', ':')}:{arch}:{variant}"
            base = f"images/{alias}/{arch}/{variant}/{version}"
            products[product_id] = {
                "aliases": alias,
                "arch": arch,
                "os": os_name,
                "release": release,
                "release_title": release,
                "variant": variant,
                "versions": {version: {"items": self._items(prefix, base, image)}},
            }
        catalog = {
            "content_id": "images",
            "datatype": "image-downloads",
            "format": "products:1.0",
            "products": products,
        }
        index = {
            "format": "index:1.0",
            "index": {
                "images": {
                    "datatype": "image-downloads",
                    "path": "streams/v1/images.json",
                    "format": "products:1.0",
                    "products": sorted(products),
                }
            },
        }
        self._routes[f"{prefix}/streams/v1/index.json"] = _JSONRoute(
            json.dumps(index).encode()
        )
        self._routes[f"{prefix}/streams/v1/images.json"] = _JSONRoute(
            json.dumps(catalog).encode()
        )
        return self.url + prefix

    def _items(self, prefix: str, base: str, image: BuiltImage) -> dict[str, Any]:
        def item(ftype: str, source: Path, name: str) -> dict[str, Any]:
            self._serve_file(f"{prefix}/{base}/{name}", source)
            return {
                "ftype": ftype,
                "path": f"{base}/{name}",
                "sha256": sha256_files([source]),
                "size": source.stat().st_size,
            }

        if image.kind == "unified":
            return {
                "lxd_combined.tar.gz": item(
                    "lxd_combined.tar.gz", image.paths[0], "lxd_combined.tar.gz"
                )
            }
        meta = item("lxd.tar.xz", image.metadata, "lxd.tar.xz")
        if image.kind == "container":
            meta["combined_squashfs_sha256"] = image.fingerprint
            return {
                "lxd.tar.xz": meta,
                "root.squashfs": item("squashfs", image.rootfs, "root.squashfs"),
            }
        meta["combined_disk-kvm-img_sha256"] = image.fingerprint
        return {
            "lxd.tar.xz": meta,
            "disk-kvm.img": item("disk-kvm.img", image.rootfs, "disk.qcow2"),
        }

    def requested(self, method: str | None = None) -> Iterator[Request]:
        return (r for r in list(self.requests) if method is None or r.method == method)
