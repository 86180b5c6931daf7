"""A server that is reached but answers something that is not HTTP (a header line past
64 KiB, endless headers) or hangs up before answering is not "cannot connect ... is the
service up?": Glance and Keystone say what happened. Loopback raw-socket servers."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagehub.config import parse_config
from imagehub.errors import BackendError
from imagehub.manager import ImageManager
from tests.cli_runner import CLIRun
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


# -- a Glance answering well-formed JSON of the wrong shape, call by call ------------------

IMAGE_ID = "11111111-2222-3333-4444-555555555555"
IMAGE = {"id": IMAGE_ID, "name": "img", "status": "active", "visibility": "private",
         "owner": "p", "size": 512, "disk_format": "raw", "container_format": "bare",
         "tags": [], "created_at": "2024-01-01T00:00:00Z",
         "updated_at": "2024-01-01T00:00:00Z", "protected": False}
GOOD_TASK = {"id": "t1", "status": "pending", "type": "import"}


class ShapedGlance:
    """A loopback Glance answering each (method, path prefix) with the JSON it is given;
    the longest matching prefix wins, anything else is 404."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers = answers
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                found = [(prefix, said) for (method, prefix), said in owner.answers.items()
                         if method == self.command and path.startswith(prefix)]
                status, doc = max(found, key=lambda f: len(f[0]))[1] if found else (
                    404, {"message": "no such thing"})
                body = b"" if doc is None else json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _glance(answers: dict[tuple[str, str], tuple[int, Any]]) -> dict[tuple[str, str],
                                                                      tuple[int, Any]]:
    """A Glance that knows IMAGE, with ``answers`` put over its usual ones."""
    return {("GET", "/v2/images"): (200, {"images": [IMAGE]}),
            ("GET", f"/v2/images/{IMAGE_ID}"): (200, IMAGE),
            ("GET", f"/v2/images/{IMAGE_ID}/members"): (200, {"members": []}),
            ("GET", f"/v2/images/{IMAGE_ID}/tasks"): (200, {"tasks": []}),
            ("GET", "/v2/tasks/"): (200, GOOD_TASK),
            ("POST", "/v2/tasks"): (201, GOOD_TASK),
            ("POST", "/v2/images"): (201, dict(IMAGE, status="queued")),
            ("POST", f"/v2/images/{IMAGE_ID}/import"): (202, None),
            ("DELETE", "/v2/images/"): (204, None),
            ("GET", "/v2/info/stores"): (200, {"stores": []}),
            **answers}


@pytest.fixture
def shaped() -> Iterator[Callable[[dict[tuple[str, str], tuple[int, Any]]], ShapedGlance]]:
    made: list[ShapedGlance] = []

    def make(answers: dict[tuple[str, str], tuple[int, Any]]) -> ShapedGlance:
        made.append(ShapedGlance(_glance(answers)))
        return made[-1]

    yield make
    for server in made:
        server.close()


def _one_line_naming(text: str, call: str) -> None:
    assert text.count("\n") <= 1 and "unexpected" not in text, text
    assert call in text, text
    assert "check the endpoint" in text, text


@pytest.mark.parametrize(("args", "answers", "call"), [
    (["members", IMAGE_ID], {("GET", f"/v2/images/{IMAGE_ID}/members"): (200, {"members": 5})},
     f"list members of image {IMAGE_ID}"),
    (["members", IMAGE_ID], {("GET", f"/v2/images/{IMAGE_ID}/members"): (200, {"members": [{}]})},
     f"list members of image {IMAGE_ID}"),
    (["task", "show", "t1"], {("GET", "/v2/tasks/"): (200, {"status": "pending"})},
     "get task t1"),
    (["task", "show", "t1"], {("GET", "/v2/tasks/"): (200, {"id": {"x": 1}, "status": "pending"})},
     "get task t1"),
    (["task", "show", "t1"], {("GET", "/v2/tasks/"): (200, {"id": "t1", "status": ["x"]})},
     "get task t1"),
    (["list"], {("GET", "/v2/images"): (200, {"images": [IMAGE], "next": 5})}, "list images"),
    (["list"], {("GET", "/v2/images"): (200, {"images": [IMAGE], "next": {"a": 1}})},
     "list images"),
    (["list"], {("GET", "/v2/images"): (200, {"images": [dict(IMAGE, tags="abc")]})},
     "list images"),
    (["show", IMAGE_ID], {("GET", f"/v2/images/{IMAGE_ID}"): (200, dict(IMAGE, size="big"))},
     f"get image {IMAGE_ID}"),
    (["create", "{file}", "--name", "x"], {("POST", "/v2/images"): (201, {"name": "x"})},
     "create image 'x'"),
    (["create", "{file}", "--name", "x"], {("POST", "/v2/images"): (201, {"id": ["a"]})},
     "create image 'x'"),
    (["task", "import", "http://example.invalid/x.img", "--name", "x", "--no-wait"],
     {("POST", "/v2/tasks"): (201, {"status": "pending"})}, "import task for 'x'"),
    (["task", "import", "http://example.invalid/x.img", "--name", "x", "--no-wait"],
     {("POST", "/v2/tasks"): (201, {"id": {}, "status": "pending"})}, "import task for 'x'"),
], ids=["members-5", "member-without-ids", "task-without-id", "task-id-dict",
        "task-status-list", "next-5", "next-dict", "tags-string", "size-string",
        "created-without-id", "created-id-list", "import-task-without-id",
        "import-task-id-dict"])
def test_a_field_of_the_wrong_shape_is_one_line_naming_the_call(
        shaped: Callable[[dict[tuple[str, str], tuple[int, Any]]], ShapedGlance],
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        answers: dict[tuple[str, str], tuple[int, Any]], call: str) -> None:
    """Glance's answers are read field by field: a field of the wrong type (or an id
    missing) is the server's fault, said in one line naming the call, never an
    'unexpected TypeError' (nor a dict printed as a task id)."""
    server = shaped(answers)
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * 512)
    config = write_config(tmp_path, {"c": glance_direct(server)})  # type: ignore[arg-type]
    code, out, err = CLIRun(config, capsys)(
        "-c", "c", *[a.replace("{file}", str(image)) for a in args])
    assert code == 1, out
    assert err.startswith("imagehub: error:"), err
    _one_line_naming(err, call)


def _manager(server: ShapedGlance) -> ImageManager:
    return parse_config({"clouds": {"c": glance_direct(server)}}).connect(  # type: ignore[arg-type]
        "c")


def _web_download_then_killed(server: ShapedGlance, tasks: Any) -> None:
    manager = _manager(server)
    try:
        op = manager.web_download(  # type: ignore[attr-defined]
            "http://example.invalid/x.raw", name="x", disk_format="raw",
            container_format="bare")
        server.answers[("GET", f"/v2/images/{IMAGE_ID}")] = (200, dict(IMAGE, status="killed"))
        server.answers[("GET", f"/v2/images/{IMAGE_ID}/tasks")] = (200, tasks)
        op.wait(10)
    finally:
        manager.close()


@pytest.mark.parametrize(("call", "answers", "run"), [
    (f"list tasks of {IMAGE_ID}",
     {("GET", f"/v2/images/{IMAGE_ID}/tasks"): (200, {"tasks": 5})},
     lambda m, s: m.image_tasks(IMAGE_ID)),
    (f"list tasks of {IMAGE_ID}",
     {("GET", f"/v2/images/{IMAGE_ID}/tasks"): (200, {"tasks": "ab"})},
     lambda m, s: m.image_tasks(IMAGE_ID)),
    ("list stores", {("GET", "/v2/info/stores"): (200, {"stores": [5]})},
     lambda m, s: m.stores()),
    ("list stores", {("GET", "/v2/info/stores"): (200, {"stores": [{}]})},
     lambda m, s: m.stores()),
    ("get task t1", {("GET", "/v2/tasks/"): (200, {"status": "pending"})},
     lambda m, s: m.get_task("t1")),
    ("import task for 'x'", {("POST", "/v2/tasks"): (201, {"status": "pending"})},
     lambda m, s: m.import_task("http://example.invalid/x.img", name="x")),
    ("create image 'x'", {("POST", "/v2/images"): (201, {"name": "x"})},
     lambda m, s: m.create(b"\0" * 512, name="x", disk_format="raw")),
    (f"list tasks of image {IMAGE_ID}", {},
     lambda m, s: _web_download_then_killed(s, {"tasks": 5})),
    (f"list tasks of image {IMAGE_ID}", {},
     lambda m, s: _web_download_then_killed(s, {"tasks": [1]})),
    (f"list tasks of image {IMAGE_ID}", {},
     lambda m, s: _web_download_then_killed(s, {"tasks": [{"id": {}}]})),
], ids=["image-tasks-5", "image-tasks-string", "stores-5", "store-without-id",
        "get-task-without-id", "import-task-without-id", "create-without-id",
        "killed-import-tasks-5", "killed-import-tasks-int", "killed-import-task-id-dict"])
def test_library_calls_without_a_command_say_so_too(
        shaped: Callable[[dict[tuple[str, str], tuple[int, Any]]], ShapedGlance],
        call: str, answers: dict[tuple[str, str], tuple[int, Any]],
        run: Callable[[Any, ShapedGlance], Any]) -> None:
    server = shaped(answers)
    manager = _manager(server)
    try:
        with pytest.raises(BackendError) as caught:
            run(manager, server)
    finally:
        manager.close()
    _one_line_naming(str(caught.value), call)
