"""A loopback Lambda Cloud API that answers as OpenAPI 1.8.3 says.

The real service cannot be reached from tests, so this server stands in for it
on real sockets (127.0.0.1, a port chosen by the kernel, HTTP/1.1 keep-alive).
It serves the two endpoints the ``lambda`` backend calls:

- ``GET /api/v1/images``: ``{"data": [Image, ...]}`` from ``images``;
- ``POST /api/v1/instance-operations/launch``: validates the body against the
  spec's ``InstanceLaunchRequest`` and answers ``{"data": {"instance_ids": [...]}}``
  or the spec's error for what is wrong (unknown instance type, SSH key, image
  or file system, no capacity, quota, billing address).

Authentication follows the spec's security schemes (Bearer, or Basic with the
key), and errors use the spec's envelope ``{"error": {code, message,
suggestion}}`` with the spec's codes. Tests script what a real server only
does on a bad day through ``inject()`` (throttling with Cloudflare's non-JSON
"error code: 1015" body, provider 5xx errors, malformed JSON, truncated
bodies, stalls, dropped connections) and can switch on the spec's own rate
limits with ``throttle()``. Every request is recorded with its arrival time so
client-side pacing can be asserted on the wire.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hmac
import json
import math
import secrets
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import lambda_spec

IMAGES_PATH = "/api/v1/images"
LAUNCH_PATH = "/api/v1/instance-operations/launch"
LIST_IMAGES = "listImages"
LAUNCH_INSTANCE = "launchInstance"
_ROUTES = {
    ("GET", IMAGES_PATH): LIST_IMAGES,
    ("POST", LAUNCH_PATH): LAUNCH_INSTANCE,
}
_PATHS = {path for _, path in _ROUTES}

# Cloudflare answers a throttled call before the API sees it, with this exact
# plain-text body; it is not in the spec, which is why clients must not
# assume every error body is JSON.
RATE_LIMIT_BODY = b"error code: 1015"

# The spec's stated limits (info.description): 1 request/s in general, and
# one launch per 12 s.
GENERAL_INTERVAL = 1.0
LAUNCH_INTERVAL = 12.0


def new_api_key() -> str:
    # Shaped like Lambda's keys so a leak check searching for it is realistic.
    return f"secret_imagehub-tests_{secrets.token_hex(16)}.{secrets.token_hex(16)}"


def error_body(
    code: str, message: str, suggestion: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if suggestion is not None:
        error["suggestion"] = suggestion
    return {"error": error}


@dataclass
class RecordedRequest:
    at: float  # time.monotonic() on arrival, comparable with the test's clock
    method: str
    path: str
    operation: str | None
    headers: dict[str, str]
    body: bytes
    client_port: int
    status: int | None = None  # None when the connection was cut or stalled


class Fault(ABC):
    """One scripted answer, consumed by one request to its operation."""

    @abstractmethod
    def respond(self, handler: _Handler) -> bool:
        """Answer the request; return False to let normal handling go on."""


@dataclass(frozen=True)
class ApiError(Fault):
    """An error in the spec's envelope; see ``spec_error()`` for real codes."""

    status: int
    code: str
    message: str
    suggestion: str | None = None
    retry_after: str | None = None

    def respond(self, handler: _Handler) -> bool:
        headers = [("Retry-After", self.retry_after)] if self.retry_after else []
        handler.send_json(
            self.status, error_body(self.code, self.message, self.suggestion), headers
        )
        return True


@dataclass(frozen=True)
class Raw(Fault):
    """Any status and body, for answers outside the spec (gateway pages,
    Cloudflare throttling, JSON of the wrong shape)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    def respond(self, handler: _Handler) -> bool:
        handler.send_bytes(
            self.status, self.body, self.content_type, list(self.headers)
        )
        return True


@dataclass(frozen=True)
class Truncated(Fault):
    """A 200 whose Content-Length promises more than is sent before the
    connection closes."""

    def respond(self, handler: _Handler) -> bool:
        body = json.dumps({"data": handler.api.images_snapshot()}).encode()
        part = body[: max(1, len(body) // 2)]
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(part)
        handler.wfile.flush()
        handler.hang_up()
        handler.record.status = 200
        return True


@dataclass(frozen=True)
class Disconnect(Fault):
    """Close the connection without answering, as a dying proxy does."""

    def respond(self, handler: _Handler) -> bool:
        handler.close_connection = True
        handler.hang_up()
        return True


@dataclass(frozen=True)
class Stall(Fault):
    """Sleep before answering normally, to outlast the client's timeout.
    Stopping the server cuts the sleep short."""

    seconds: float

    def respond(self, handler: _Handler) -> bool:
        handler.api.stopping.wait(self.seconds)
        return False


def rate_limited(retry_after: str | None = None) -> Raw:
    headers = (("Retry-After", retry_after),) if retry_after is not None else ()
    return Raw(429, RATE_LIMIT_BODY, "text/plain; charset=UTF-8", headers)


def malformed_json() -> Raw:
    # A body cut mid-object but with an honest Content-Length: the transport
    # succeeds and only the JSON parse fails.
    return Raw(
        200, b'{"data": [{"id": "0b834ff6-e283-41e6-a75b-b258ff124298", "name": '
    )


def spec_error(
    code: str, *, message: str | None = None, retry_after: str | None = None
) -> ApiError:
    """The error the real API sends for ``code``, with the status, message and
    suggestion kept in ``tests/data/lambda/errors.json``."""
    sample = lambda_spec.load_fixture("errors.json")[code]
    return ApiError(
        sample["status"],
        code,
        message if message is not None else sample["message"],
        sample.get("suggestion"),
        retry_after,
    )


@dataclass
class LaunchedInstance:
    id: str
    request: dict[str, Any]


@dataclass
class LambdaAPIServer:
    """The API's state plus the HTTP server thread. Mutate the public fields
    from tests to set the scene; they are read under ``lock`` per request."""

    api_key: str = field(default_factory=new_api_key)
    images: list[dict[str, Any]] = field(
        default_factory=lambda: lambda_spec.load_fixture("images.json")
    )
    account_active: bool = True
    billing_address_valid: bool = True
    instance_types: set[str] = field(
        default_factory=lambda: {
            "gpu_1x_a10",
            "gpu_1x_a100_sxm4",
            "gpu_8x_h100_sxm5",
            "gpu_1x_gh200",
        }
    )
    ssh_keys: set[str] = field(default_factory=lambda: {"imagehub-ci"})
    file_systems: dict[str, str] = field(
        default_factory=lambda: {"shared-data": "us-east-1"}
    )
    # (instance type, region) pairs with no capacity left.
    no_capacity: set[tuple[str, str]] = field(default_factory=set)
    quota: int | None = None
    instances: list[LaunchedInstance] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    stopping: threading.Event = field(default_factory=threading.Event)
    #: the server's clock for arrival times and rate limits; tests that check the
    #: limits replace it, so a slow machine cannot stretch the spacing they assert
    clock: Callable[[], float] = field(default_factory=lambda: time.monotonic)

    def __post_init__(self) -> None:
        self._faults: dict[str, collections.deque[Fault]] = collections.defaultdict(
            collections.deque
        )
        self._limits: dict[str, float] = {}
        self._last_accepted: dict[str, float] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> LambdaAPIServer:
        handler = type("BoundHandler", (_Handler,), {"api": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="lambda-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LambdaAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- scripting -----------------------------------------------------------
    def inject(self, operation: str, *faults: Fault) -> None:
        """Queue answers for the next requests to ``operation`` (an
        operationId such as ``listImages`` or ``launchInstance``)."""
        if operation not in _ROUTES.values():
            raise ValueError(f"unknown operation {operation!r}")
        with self.lock:
            self._faults[operation].extend(faults)

    def pending_faults(self, operation: str) -> int:
        with self.lock:
            return len(self._faults[operation])

    def throttle(
        self,
        general: float | None = GENERAL_INTERVAL,
        launch: float | None = LAUNCH_INTERVAL,
    ) -> None:
        """Enforce minimum spacing between accepted requests the way the
        real edge does: a request that comes too soon gets the 1015 page."""
        with self.lock:
            self._limits = {
                k: v for k, v in (("general", general), ("launch", launch)) if v
            }
            self._last_accepted.clear()

    def requests_for(self, operation: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.operation == operation]

    def images_snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return json.loads(json.dumps(self.images))  # type: ignore[no-any-return]

    # -- request handling (called from handler threads) ------------------------
    def _next_fault(self, operation: str) -> Fault | None:
        with self.lock:
            queue = self._faults[operation]
            return queue.popleft() if queue else None

    def _throttled(self, operation: str, now: float) -> Raw | None:
        buckets = ["general"] + (["launch"] if operation == LAUNCH_INSTANCE else [])
        with self.lock:
            waits = [
                self._limits[b] - (now - self._last_accepted[b])
                for b in buckets
                if b in self._limits and b in self._last_accepted
            ]
            wait = max(waits, default=0.0)
            if wait > 0:
                return rate_limited(str(max(1, math.ceil(wait))))
            for bucket in buckets:
                self._last_accepted[bucket] = now
        return None

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        key = self.api_key
        if scheme.lower() == "bearer":
            return hmac.compare_digest(credential, key)
        if scheme.lower() == "basic":
            # The spec allows the raw key, or base64 of "key:" (curl's -u key:).
            if hmac.compare_digest(credential, key):
                return True
            try:
                decoded = base64.b64decode(credential, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            return hmac.compare_digest(decoded.rstrip(":"), key)
        return False

    def list_images(self) -> tuple[int, dict[str, Any]]:
        return 200, {"data": self.images_snapshot()}

    def launch(self, raw_body: bytes) -> tuple[int, dict[str, Any]]:
        def fail(code: str, message: str | None = None) -> tuple[int, dict[str, Any]]:
            err = spec_error(code, message=message)
            return err.status, error_body(err.code, err.message, err.suggestion)

        try:
            body = json.loads(raw_body)
        except ValueError:
            return fail("global/invalid-parameters", "Request body is not valid JSON.")
        problems = sorted(
            lambda_spec.request_validator(LAUNCH_PATH, "post").iter_errors(body),
            key=lambda e: list(e.path),
        )
        if problems:
            where = "/".join(str(p) for p in problems[0].absolute_path) or "body"
            return fail(
                "global/invalid-parameters",
                f"Invalid request data at {where}: {problems[0].message}",
            )
        if len(body["ssh_key_names"]) != 1:
            return fail(
                "global/invalid-parameters", "Exactly one SSH key must be specified."
            )
        region = body["region_name"]
        with self.lock:
            if not self.billing_address_valid:
                return fail("global/invalid-address")
            if body["instance_type_name"] not in self.instance_types:
                return fail(
                    "global/object-does-not-exist", "Specified instance type not found."
                )
            if body["ssh_key_names"][0] not in self.ssh_keys:
                return fail(
                    "global/object-does-not-exist", "Specified SSH key not found."
                )
            for fs_name in body.get("file_system_names", []):
                if fs_name not in self.file_systems:
                    return fail(
                        "global/object-does-not-exist",
                        "Specified file system not found.",
                    )
                if self.file_systems[fs_name] != region:
                    return fail(
                        "instance-operations/launch/file-system-in-wrong-region"
                    )
            image = body.get("image")
            in_region = [i for i in self.images if i["region"]["name"] == region]
            if image is not None and not any(
                i["id"] == image["id"]
                if "id" in image
                else i["family"] == image["family"]
                for i in in_region
            ):
                return fail(
                    "global/object-does-not-exist", "Specified image not found."
                )
            if (body["instance_type_name"], region) in self.no_capacity:
                return fail("instance-operations/launch/insufficient-capacity")
            if self.quota is not None and len(self.instances) >= self.quota:
                return fail("global/quota-exceeded")
            launched = LaunchedInstance(uuid.uuid4().hex, body)
            self.instances.append(launched)
        return 200, {"data": {"instance_ids": [launched.id]}}


class _Handler(BaseHTTPRequestHandler):
    api: LambdaAPIServer  # bound per server in LambdaAPIServer.start()
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API offers
    server_version = "imagehub-lambda-loopback"
    timeout = 30  # idle keep-alive connections do not pin threads forever
    record: RecordedRequest

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are recorded in api.requests; stderr noise helps nobody.
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- writing -------------------------------------------------------------
    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.record.status = status
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout after a Stall); nothing to tell it.
            self.close_connection = True

    def send_json(
        self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.send_bytes(
            status, json.dumps(payload).encode(), "application/json", headers
        )

    def hang_up(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routing ---------------------------------------------------------------
    def _dispatch(self) -> None:
        now = self.api.clock()
        path = self.path.split("?", 1)[0]
        operation = _ROUTES.get((self.command, path))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.record = RecordedRequest(
            now,
            self.command,
            path,
            operation,
            dict(self.headers.items()),
            body,
            int(self.client_address[1]),
        )
        with self.api.lock:
            self.api.requests.append(self.record)

        if operation is None:
            self._unrouted(path)
            return
        throttled = self.api._throttled(operation, now)
        if throttled is not None:
            throttled.respond(self)
            return
        fault = self.api._next_fault(operation)
        if fault is not None and fault.respond(self):
            return
        if not self.api._authorized(self.headers.get("Authorization")):
            spec_error("global/invalid-api-key").respond(self)
            return
        if not self.api.account_active:
            spec_error("global/account-inactive").respond(self)
            return
        if operation == LIST_IMAGES:
            status, payload = self.api.list_images()
        else:
            status, payload = self.api.launch(body)
        self.send_json(status, payload)

    def _unrouted(self, path: str) -> None:
        if path in _PATHS:
            self.send_json(
                405,
                error_body(
                    "global/invalid-parameters", f"Method {self.command} not allowed."
                ),
            )
        else:
            self.send_json(
                404,
                error_body(
                    "global/object-does-not-exist",
                    f"No route for {path}.",
                    "Check the URL.",
                ),
            )
