"""A data source that fails mid-upload: the request ends at once, nothing stays behind.

LXD's side is mostly in test_lxd.py. Here: the HTTP level
against a loopback server that records when the body ended, Glance for real (upload and
staging, sized and sizeless), the local store's temp files, and read errors on the
user's own files (an imagehub error naming the file, one line in the CLI).
"""

from __future__ import annotations

import errno
import io
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from imagehub.backends.glance import GlanceManager
from imagehub.backends.local import LocalManager
from imagehub.backends.lxd import LXDManager
from imagehub.errors import TransferError
from imagehub.manager import CreateSpec
from imagehub.source_errors import SourceFailed, guard_source, source_errors
from imagehub.streams import DataSource
from tests.failing_sources import SOURCE_ERRORS, failing_after
from tests.servers.lxd import LXDDaemon
from tests.servers.openstack import OpenStackCloud

# LXD logs this when an upload's body ends unfinished, right before it removes the
# upload's lxd_build_* directory (see test_lxd.py).
ABORTED_UPLOAD = "Store image POST data to disk"

# Generous for a loaded machine: only a request left waiting for the rest of its body
# (the defect) comes near it.
SETTLE_SECONDS = 120.0


def settle(check: Callable[[], bool], timeout: float = SETTLE_SECONDS) -> None:
    """Poll ``check`` until it holds or ``timeout`` passes; the caller asserts the end state."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


# -- the HTTP level: what the server sees --------------------------------------------------
class BodyWatcher:
    """A loopback HTTP server that reads request bodies to their end and records it.

    ``ended`` is set once a connection it reads from reaches EOF (or a reset): the
    event a server waits for before it can throw away a half-received upload.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.ended = threading.Event()
        self.received = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            try:
                while chunk := conn.recv(65536):
                    self.received += len(chunk)
            except OSError:
                pass
        self.ended.set()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("kind", sorted(SOURCE_ERRORS))
@pytest.mark.parametrize("chunked", [True, False])
def test_http_stack_drops_the_connection_and_keeps_the_source_error(
        kind: str, chunked: bool) -> None:
    watcher = BodyWatcher()
    error = SOURCE_ERRORS[kind]()
    # Never answers: only a dropped connection lets the request return before the
    # client's read timeout, which is kept far away.
    headers = {} if chunked else {"Content-Length": str(10 * 1024 * 1024)}
    try:
        with pytest.raises(type(error)) as info, source_errors(), requests.Session() as s:
            s.post(f"http://127.0.0.1:{watcher.port}/upload",
                   data=guard_source(failing_after(3, error)), headers=headers,
                   timeout=(10, SETTLE_SECONDS))
        assert info.value is error
        # The server saw the body end: no waiting for the rest of it.
        assert watcher.ended.wait(SETTLE_SECONDS)
        assert watcher.received > 0
    finally:
        watcher.close()


def test_source_errors_keeps_the_original_story() -> None:
    def source() -> Iterator[bytes]:
        yield b"x"
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise ValueError("outer") from exc

    with pytest.raises(ValueError, match="outer") as info, source_errors():
        for _ in guard_source(source()):
            pass
    assert isinstance(info.value.__cause__, KeyError)
    assert not isinstance(info.value.__context__, SourceFailed)


def test_a_source_fed_by_another_guarded_source_raises_the_first_error() -> None:
    error = OSError(5, "Input/output error")
    inner = guard_source(failing_after(2, error))
    with pytest.raises(OSError) as info, source_errors():
        for _ in guard_source(inner):
            pass
    assert info.value is error


def test_interrupts_are_not_wrapped() -> None:
    def source() -> Iterator[bytes]:
        yield b"x"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), source_errors():
        for _ in guard_source(source()):
            pass


# -- Glance ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def glance(openstack_cloud: OpenStackCloud) -> Iterator[GlanceManager]:
    user = openstack_cloud.project("alpha")
    manager = GlanceManager.from_options(
        {"auth_type": "password", "auth": user.auth(openstack_cloud.auth_url),
         "region_name": openstack_cloud.region_name, "timeout": SETTLE_SECONDS},
        cloud="test-source-failures")
    assert isinstance(manager, GlanceManager)
    yield manager
    manager.close()


def glance_files(cloud: OpenStackCloud) -> set[str]:
    """Every file Glance keeps image bytes in: both stores and the staging area."""
    root = cloud.glance_server.data_dir
    return {str(p.relative_to(root)) for sub in ("images", "images2", "staging")
            for p in (root / sub).glob("*")}


@pytest.mark.parametrize("kind", sorted(SOURCE_ERRORS))
@pytest.mark.parametrize("how", ["upload-sized", "upload-chunked", "stage"])
def test_glance_source_failing_midway_ends_the_upload_and_leaves_nothing(
        glance: GlanceManager, openstack_cloud: OpenStackCloud, kind: str, how: str) -> None:
    name = f"half-{uuid.uuid4().hex[:10]}"
    before = glance_files(openstack_cloud)
    error = SOURCE_ERRORS[kind]()
    chunks = failing_after(3, error)
    with pytest.raises(type(error)) as info:
        if how == "upload-sized":
            source = DataSource(name="image", size=8 * 1024 * 1024, _open=lambda: chunks)
            glance._create([source], CreateSpec(name=name))
        elif how == "upload-chunked":
            glance.create(chunks, name=name)
        else:
            glance.glance_direct(chunks, name=name)
    assert info.value is error
    assert list(glance.all(name=name)) == []
    # Glance drops a cut upload's bytes when it sees the body end; poll for that.
    settle(lambda: glance_files(openstack_cloud) == before)
    assert glance_files(openstack_cloud) == before


# -- the local store -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(SOURCE_ERRORS))
def test_local_source_failing_midway_leaves_no_temp_file(tmp_path: Path, kind: str) -> None:
    store = LocalManager(path=tmp_path / "store")
    error = SOURCE_ERRORS[kind]()
    with pytest.raises(type(error)) as info:
        store.create(failing_after(3, error), name="half")
    assert info.value is error
    meta: Any = b"metadata"
    with pytest.raises(type(error)):
        store.create(failing_after(3, SOURCE_ERRORS[kind]()), metadata=meta, name="half")
    assert list(store.all()) == []
    assert not list((tmp_path / "store" / "tmp").iterdir())
    assert not list((tmp_path / "store" / "blobs" / "sha256").iterdir())


# -- read errors on the user's own files -------------------------------------------------------
class FailingFile(io.RawIOBase):
    """A binary file that reads ``good`` bytes, then fails as a dying disk does.

    A stand-in, because a real disk cannot be made to fail on demand.
    """

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise OSError(errno.EIO, "Input/output error")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def test_read_error_on_a_file_is_a_transfer_error_naming_it(tmp_path: Path) -> None:
    store = LocalManager(path=tmp_path / "store")
    with pytest.raises(TransferError, match=r"cannot read the image file object after "
                                            r"3145728 bytes: Input/output error"):
        store.create(io.BufferedReader(FailingFile(3 * 1024 * 1024)), name="half")
    assert list(store.all()) == []
    assert not list((tmp_path / "store" / "tmp").iterdir())


def test_lxd_upload_of_a_failing_file_is_dropped(lxd_daemon: LXDDaemon) -> None:
    images = lxd_daemon.lxd_dir / "images"
    before = set(os.listdir(images))
    logged = lxd_daemon.log_path.read_text(errors="replace").count(ABORTED_UPLOAD)
    with LXDManager(endpoint=str(lxd_daemon.socket_path), timeout=SETTLE_SECONDS) as lxd, \
            pytest.raises(TransferError, match="cannot read the image file object"):
        lxd.create(io.BufferedReader(FailingFile(3 * 1024 * 1024)), name="half")

    def aborted() -> bool:
        text = lxd_daemon.log_path.read_text(errors="replace")
        return text.count(ABORTED_UPLOAD) > logged

    settle(aborted)  # LXD saw the body end...
    assert aborted()
    settle(lambda: set(os.listdir(images)) == before)  # ...and dropped its build dir
    assert set(os.listdir(images)) == before


def test_cli_read_error_is_one_line(tmp_path: Path) -> None:
    # Reading /proc/self/mem from its start fails with EIO: a real read error.
    env = {**os.environ, "IMAGEHUB_CONFIG": str(tmp_path / "c.yaml")}
    (tmp_path / "c.yaml").write_text(
        f"clouds: {{local: {{backend: local, path: {tmp_path / 's'}}}}}\n")
    done = subprocess.run([sys.executable, "-m", "imagehub", "--quiet", "create",
                           "/proc/self/mem", "--name", "mem"], env=env, capture_output=True,
                          text=True, timeout=SETTLE_SECONDS)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "imagehub: error: cannot read '/proc/self/mem' after 0 bytes: Input/output error; "
        "check the disk or the program that feeds the data"]
