"""Every capability a backend has is reachable from the CLI: server-side pulls and
imports, tasks, tags, member status, Glance's create options, deactivation."""

from __future__ import annotations

import http.server
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli_runner import CLIRun
from tests.servers.lxd import LXDDaemon
from tests.servers.lxd_images import unified_image
from tests.servers.openstack import OpenStackCloud
from tests.servers.simplestreams import ImageServer


class Run(CLIRun):
    def __init__(self, clouds: dict[str, Any], tmp_path: Path,
                 capsys: pytest.CaptureFixture[str]) -> None:
        config = tmp_path / "imagehub.yaml"
        config.write_text(yaml.safe_dump({"discovered": False, "clouds": clouds}))
        super().__init__(config, capsys)


@pytest.fixture
def local_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    store = str(tmp_path / "store")
    return Run({"local": {"backend": "local", "path": store, "project": "alice"},
                "bob": {"backend": "local", "path": store, "project": "bob"}},
               tmp_path, capsys)


def test_tags_member_status_and_unsupported_operations(local_run: Run,
                                                       tmp_path: Path) -> None:
    disk = tmp_path / "d.img"
    disk.write_bytes(os.urandom(4000))
    made = local_run.json("create", str(disk), "--name", "t", "--tag", "a")
    assert local_run.json("tag", "add", "t", "b", "c")["tags"] == ["a", "b", "c"]
    assert local_run.json("tag", "remove", "t", "a", "c")["tags"] == ["b"]
    local_run.json("share", "t", "bob")
    assert local_run.json("-c", "bob", "accept", made["id"])["status"] == "accepted"
    assert local_run.json("-c", "bob", "pending", made["id"])["status"] == "pending"
    assert local_run.json("-c", "bob", "reject", made["id"])["status"] == "rejected"
    code, _, err = local_run("deactivate", "t")
    assert code == 1 and "does not support deactivate" in err and "Traceback" not in err
    code, _, err = local_run("create", "--from-remote", "images:debian/12", "--name", "x")
    assert code == 1 and "does not support create from an image server" in err
    code, _, err = local_run("create", str(disk), "--from-url", "https://example.invalid/x")
    assert code == 2 and "--from-url" in err


# -- LXD: pulls from a URL and from an lxc-style image-server remote -------------------------
def test_lxd_create_from_url_and_from_remote(
        lxd_daemon: LXDDaemon, lxd_image_server: ImageServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run({"lab": {"backend": "lxd", "endpoint": str(lxd_daemon.socket_path)}},
              tmp_path, capsys)
    made: list[str] = []
    try:
        image = unified_image(tmp_path)
        url = lxd_image_server.add_direct(image)
        got = run.json("-c", "lab", "create", "--from-url", url, "--name", "cli-url")
        made.append(got["id"])
        assert got["id"] == image.fingerprint and got["name"] == "cli-url"
        run("-c", "lab", "delete", got["id"])
        made.pop()
        # An lxc remote of protocol simplestreams, as 'lxc remote add' writes it.
        stream = lxd_image_server.publish_stream({"ss/cli": image})
        lxc = tmp_path / "lxc"
        lxc.mkdir()
        (lxc / "config.yml").write_text(yaml.safe_dump({"remotes": {
            "mine": {"addr": stream, "protocol": "simplestreams", "public": True}}}))
        monkeypatch.setenv("LXD_CONF", str(lxc))
        code, out, err = run("-c", "lab", "create", "--from-remote", "mine:ss/cli",
                             "--server-cert", str(lxd_image_server.tls.cert),
                             "--alias", "pulled-cli", "-f", "json")
        assert code == 0, err
        pulled = json.loads(out)
        made.append(pulled["id"])
        assert pulled["aliases"] == ["pulled-cli"]
        assert "imagehub: pull " in err  # the progress line
        code, _, err = run("-c", "lab", "create", "--from-remote", "nosuch:x")
        assert code == 2 and "mine" in err
    finally:
        for fingerprint in made:
            run("-c", "lab", "delete", fingerprint)


# -- Glance: tasks, create options, deactivation -------------------------------------------------
class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}
    handler = type("Files", (_Files,), {"files": files})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()


def test_glance_tasks_create_options_and_deactivation(
        openstack_cloud: OpenStackCloud, file_server: tuple[str, dict[str, bytes]],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def cloud(user: Any) -> dict[str, Any]:
        return {"backend": "glance", "auth_type": "password",
                "auth": user.auth(openstack_cloud.auth_url),
                "region_name": openstack_cloud.region_name}
    run = Run({"os": cloud(openstack_cloud.project("alpha")),
               "osadmin": cloud(openstack_cloud.admin)}, tmp_path, capsys)
    base, files = file_server
    files["/cli.raw"] = os.urandom(64 * 1024)
    name = f"cli-task-{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    try:
        code, out, err = run("-c", "os", "task", "import", f"{base}/cli.raw", "--name", name,
                             "--disk-format", "raw", "-f", "json")
        assert code == 0, err
        imported = json.loads(out)
        made.append(imported["id"])
        assert imported["size"] == 64 * 1024
        assert "imagehub: task " in err and "success" in err  # a line per status change
        exported = run.json("-c", "os", "task", "export", imported["id"], "-o",
                            str(tmp_path / "task.out"))
        assert (tmp_path / "task.out").read_bytes() == files["/cli.raw"]
        assert exported["files"] == [str(tmp_path / "task.out")]

        disk = tmp_path / "g.img"
        disk.write_bytes(os.urandom(8000))
        created = run.json("-c", "os", "create", str(disk), "--name", name + "-opts",
                           "--disk-format", "raw", "--container-format", "ovf",
                           "--min-ram", "512", "--min-disk", "2", "--protected")
        made.append(created["id"])
        assert created["container_format"] == "ovf"
        assert created["raw"]["min_ram"] == 512 and created["raw"]["min_disk"] == 2
        assert created["raw"]["protected"] is True
        code, _, err = run("-c", "os", "delete", created["id"])
        assert code == 1 and f"imagehub update {created['id']} --unprotected" in err
        assert "protected=False" not in err
        assert run.json("-c", "os", "update", created["id"], "--unprotected",
                        "--min-ram", "256")["raw"]["min_ram"] == 256
        assert run.json("-c", "os", "deactivate", created["id"])["status"] == "deactivated"
        assert run.json("-c", "os", "reactivate", created["id"])["status"] == "active"
    finally:
        for image_id in made:
            run("-c", "osadmin", "update", image_id, "--unprotected")
            run("-c", "osadmin", "delete", image_id)
