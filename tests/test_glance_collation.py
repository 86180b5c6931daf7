"""A Glance whose database compares names loosely (MySQL's default collation: any case,
trailing spaces ignored) must not widen the exact-name rule of refs."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import imagehub
from imagehub.backends.glance import GlanceManager

RECORD: dict[str, Any] = {
    "id": "6f1c2a34-0000-4000-8000-000000000001", "name": "Ubuntu", "status": "active",
    "visibility": "private", "disk_format": "raw", "container_format": "bare",
    "size": 3, "checksum": None, "os_hash_algo": None, "os_hash_value": None,
    "owner": "p", "tags": [], "created_at": "2024-01-01T00:00:00Z",
    "updated_at": "2024-01-01T00:00:00Z", "protected": False, "min_disk": 0, "min_ram": 0,
}


class _LooseGlance(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path.rstrip("/").endswith("/v2/images"):
            names = query.get("name")
            wanted = names[0] if names else None
            loose = wanted is None or wanted.rstrip().lower() == RECORD["name"].lower()
            body = json.dumps({"images": [RECORD] if loose else []}).encode()
            self.send_response(200)
        else:
            body = b'{"message": "not found"}'
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def glance() -> Iterator[GlanceManager]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LooseGlance)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    manager = GlanceManager.from_options(
        {"auth_type": "none",
         "endpoint_override": f"http://127.0.0.1:{server.server_address[1]}"},
        cloud="loose")
    assert isinstance(manager, GlanceManager)
    yield manager
    manager.close()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("ref", ["ubuntu", "UBUNTU", "Ubuntu ", "ubuntu  "])
def test_a_loosely_matching_name_selects_nothing(glance: GlanceManager, ref: str) -> None:
    with pytest.raises(imagehub.ImageNotFound):
        glance.get(ref)
    with pytest.raises(imagehub.ImageNotFound):
        glance.delete(ref)


def test_the_exact_name_still_selects(glance: GlanceManager) -> None:
    assert glance.get("Ubuntu").id == RECORD["id"]
