"""docs/from-*.md run: each seed SDK's page, every python block in order, against the
real servers (LXD for pylxd, Keystone + Glance for pyrax, the loopback Lambda API)."""

from __future__ import annotations

import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import imagehub
from tests.servers.lambda_api import LambdaAPIServer
from tests.servers.lxd import LXDDaemon
from tests.servers.lxd_images import unified_image
from tests.servers.openstack import OpenStackCloud
from tests.servers.simplestreams import ImageServer

DOCS = Path(__file__).resolve().parents[1] / "docs"


def run_page(page: str, namespace: dict[str, Any]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    assert blocks, page
    try:
        for number, block in enumerate(blocks, 1):
            try:
                exec(compile(block, f"{page} block {number}", "exec"), namespace)
            except Exception as exc:  # noqa: BLE001 - report which block broke
                pytest.fail(f"{page} block {number} failed: {type(exc).__name__}: {exc}\n"
                            f"{block}")
    finally:
        for value in namespace.values():
            if isinstance(value, imagehub.ImageManager):
                value.close()


def use_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               clouds: dict[str, Any]) -> None:
    config = tmp_path / "imagehub.yaml"
    config.write_text(yaml.safe_dump({"discovered": False, "clouds": clouds}))
    monkeypatch.setenv("IMAGEHUB_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)


def test_pylxd_page(lxd_daemon: LXDDaemon, lxd_image_server: ImageServer, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    use_config(tmp_path, monkeypatch, {
        "lab-lxd": {"backend": "lxd", "endpoint": str(lxd_daemon.socket_path)},
        "archive": {"backend": "local", "path": str(tmp_path / "archive")}})
    built = tmp_path / "built"
    built.mkdir()
    stream_url = lxd_image_server.publish_stream({"pylxd/stream": unified_image(built)})
    run_page("from-pylxd.md", {
        "tarball": str(unified_image(built).paths[0]),
        "image_url": lxd_image_server.add_direct(unified_image(built)),
        "stream_url": stream_url, "stream_cert": str(lxd_image_server.tls.cert)})


class _Files(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def file_url() -> Iterator[tuple[str, int]]:
    body = os.urandom(96 * 1024)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), type("One", (_Files,), {"body": body}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/disk.raw", len(body)
    server.shutdown()
    server.server_close()


def test_pyrax_page(openstack_cloud: OpenStackCloud, file_url: tuple[str, int],
                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cloud(project: str) -> dict[str, Any]:
        return {"backend": "glance", "auth_type": "password",
                "auth": openstack_cloud.project(project).auth(openstack_cloud.auth_url),
                "region_name": openstack_cloud.region_name}
    use_config(tmp_path, monkeypatch, {"os-alpha": cloud("alpha"), "os-beta": cloud("beta")})
    run_page("from-pyrax.md", {
        "beta_project": openstack_cloud.project("beta").project_id,
        "file_url": file_url[0], "file_size": file_url[1]})


def test_lambda_page(lambda_api_server: LambdaAPIServer, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDA_API_KEY", lambda_api_server.api_key)
    use_config(tmp_path, monkeypatch, {
        "lambda": {"backend": "lambda", "base_url": lambda_api_server.url}})
    run_page("from-lambda.md", {})
