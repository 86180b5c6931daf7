"""migrate / plan / sync: verified, idempotent, nothing half-made left behind.

Most cases run local -> local (two stores in temp dirs); the real-server cases (LXD and
Glance, faults through the loopback proxy) are at the end and use the session fixtures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import imagehub
from imagehub import (
    Capability,
    ChecksumMismatch,
    IncompatibleFormat,
    InvalidImageData,
    Plan,
    Progress,
)
from imagehub.backends.local import LocalManager
from imagehub.manager import CreateSpec
from imagehub.streams import DataSource, open_source
from tests.cli_runner import CLIRun
from tests.servers.faultproxy import FaultProxy
from tests.servers.openstack_fixtures import alpha_glance

if TYPE_CHECKING:
    from imagehub.backends.glance import GlanceManager
    from imagehub.backends.lxd import LXDManager
    from tests.servers.lxd import LXDDaemon
    from tests.servers.openstack import OpenStackCloud

MiB = 1024 * 1024


def _store(tmp_path: Path, name: str) -> LocalManager:
    return LocalManager(path=tmp_path / name, cloud=name)


def _leftovers(store: LocalManager) -> list[Path]:
    """Files a failed create could leave: staged uploads, or blobs no image points at."""
    # sqlite3's own context manager commits but does not close (3.13 warns).
    with contextlib.closing(sqlite3.connect(store.root / "catalog.sqlite")) as db:
        used = {r[0] for r in db.execute("SELECT digest FROM parts")}
    blobs = [p for p in (store.root / "blobs" / "sha256").iterdir() if p.name not in used]
    return list((store.root / "tmp").iterdir()) + blobs


@pytest.fixture
def src(tmp_path: Path) -> LocalManager:
    return _store(tmp_path, "src")


@pytest.fixture
def dst(tmp_path: Path) -> LocalManager:
    return _store(tmp_path, "dst")


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt here, as it does in a terminal.

    A process started as a background job by a shell without job control (a CI script's
    ``cmd &``) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt;
    the Ctrl-C tests would only find that out.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class OneFileStore(LocalManager):
    """A store that keeps one file per image, as Glance does: it refuses split images
    before reading a byte, so migrate must carry the metadata part in properties."""

    name = "onefile"
    max_parts = 1

    def _create(self, parts: list[DataSource], spec: CreateSpec) -> imagehub.Image:
        if len(parts) != 1:
            raise InvalidImageData("one file per image")
        return super()._create(parts, spec)


class LeakyStore(LocalManager):
    """A backend that fails *after* its record exists and leaves it behind (as a server
    that dies before the client can delete the record does): migrate must find the
    record by its transfer tag and delete it."""

    name = "leaky"

    def _create(self, parts: list[DataSource], spec: CreateSpec) -> imagehub.Image:
        super()._create(parts, spec)
        raise imagehub.ServerUnreachable("connection lost after the upload")


class ReadOnlyStore(LocalManager):
    """A catalogue that cannot take new images (as Lambda Cloud cannot)."""

    name = "readonly"
    capabilities = Capability.READ | Capability.EXPORT
    unsupported_reason = "this catalogue is read-only"


# -- round trips ----------------------------------------------------------------------------
def test_round_trip_keeps_checksum_and_metadata(src: LocalManager, dst: LocalManager,
                                                tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 17)
    original = src.create(
        data, name="web", description="web server", architecture="amd64",
        properties={"os": "debian", "release": "12", "version": "20240101",
                    "family": "debian-12", "role": "web"})
    there = imagehub.migrate(src, original.id, dst)
    back = imagehub.migrate(dst, there, _store(tmp_path, "back"))
    for image in (there, back):
        assert image.checksum == original.checksum == "sha256:" + hashlib.sha256(
            data).hexdigest()
        assert (image.name, image.description, image.architecture) == (
            "web", "web server", "x86_64")
        assert (image.os, image.release, image.version, image.family) == (
            "debian", "12", "20240101", "debian-12")
        assert image.properties["role"] == "web"
        assert image.properties["imagehub.sha256"] == original.checksum.split(":")[1]
    assert there.properties["imagehub.source"] == f"src:{original.id}"
    assert back.properties["imagehub.source"] == f"dst:{there.id}"
    assert b"".join(back.export()) == data


def test_split_image_keeps_its_parts(src: LocalManager, dst: LocalManager) -> None:
    meta, rootfs = os.urandom(3000), os.urandom(2 * MiB)
    original = src.create(rootfs, metadata=meta, name="split")
    copy = imagehub.migrate(src, original, dst, name="renamed")
    assert copy.checksum == original.checksum == "sha256:" + hashlib.sha256(
        meta + rootfs).hexdigest()
    assert copy.name == "renamed"
    with dst.export(copy) as stream:
        assert [p.name for p in stream.parts] == ["metadata", "rootfs"]
        assert [b"".join(c) for _, c in stream.iter_parts()] == [meta, rootfs]


def test_split_image_through_a_one_file_store_comes_back_whole(
        src: LocalManager, tmp_path: Path) -> None:
    meta, rootfs = os.urandom(5000), b"QFI\xfb" + os.urandom(MiB)
    original = src.create(rootfs, metadata=meta, name="vm")
    onefile = OneFileStore(path=tmp_path / "one", cloud="one")
    packed = imagehub.migrate(src, original, onefile)
    # The one-file store holds the last part (a qcow2 disk, usable as one) ...
    assert packed.checksum == "sha256:" + hashlib.sha256(rootfs).hexdigest()
    assert packed.disk_format == "qcow2"
    assert packed.properties["imagehub.parts"] == "metadata,rootfs"
    # ... its identity stays the whole image's, so sync finds it ...
    assert imagehub.sync(src, onefile).present == 1
    # ... and it comes back part for part, to the same checksum.
    back = imagehub.migrate(onefile, packed, _store(tmp_path, "back"))
    assert back.checksum == original.checksum
    assert back.disk_format == original.disk_format == "split"
    assert not any(k.startswith("imagehub.part") for k in back.properties)
    with back.export() as stream:
        assert [b"".join(c) for _, c in stream.iter_parts()] == [meta, rootfs]


def test_migrate_by_cloud_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path)
    monkeypatch.setenv("IMAGEHUB_CONFIG", str(config))
    image = imagehub.connect("a").create(os.urandom(1000), name="named")
    copy = imagehub.migrate("a", "named", "b")
    assert copy.cloud == "b" and copy.checksum == image.checksum


# -- plans and dry runs ---------------------------------------------------------------------
def test_dry_run_moves_nothing(src: LocalManager, dst: LocalManager) -> None:
    image = src.create(os.urandom(MiB), name="big")
    planned = imagehub.migrate(src, image.id, dst, dry_run=True)
    assert isinstance(planned, Plan)
    assert (planned.action, planned.path, planned.bytes) == ("copy", "stream", MiB)
    assert planned.checksum == image.checksum
    summary = imagehub.sync(src, dst, dry_run=True)
    assert (summary.planned, summary.copied) == (1, 0)
    assert summary.to_dict()["bytes"] == MiB
    assert list(dst.all()) == [] and _leftovers(dst) == []


def test_present_content_is_not_copied_again(src: LocalManager, dst: LocalManager) -> None:
    image = src.create(os.urandom(1000), name="once")
    first = imagehub.migrate(src, image, dst)
    dst.update(first, name="renamed-on-destination")
    again = imagehub.plan(src, image, dst)
    assert (again.action, again.path) == ("present", "none")
    assert again.existing is not None and again.existing.id == first.id
    assert imagehub.migrate(src, image, dst).id == first.id
    assert len(list(dst.all())) == 1


# -- sync -----------------------------------------------------------------------------------
def test_sync_is_idempotent_and_keyed_on_content(src: LocalManager, dst: LocalManager) -> None:
    payloads = [os.urandom(200_000 + i) for i in range(4)]
    for i, data in enumerate(payloads):
        src.create(data, name=f"img-{i}", properties={"tier": "a" if i < 3 else "b"})
    src.create(payloads[0], name="same-bytes-other-name")
    first = imagehub.sync(src, dst, filters={"tier": "a"})
    assert (first.copied, first.present, first.failed) == (3, 0, 0)
    assert all("destination:sha256" in t.checks for t in first.items)
    second = imagehub.sync(src, dst)
    # img-0's twin and the three copied are present; only img-3 is new.
    assert (second.copied, second.present) == (1, 4)
    for image in dst.all():
        dst.update(image, name="renamed")
    third = imagehub.sync(src, dst)
    assert (third.copied, third.present) == (0, 5)
    assert sorted(str(i.checksum) for i in dst.all()) == sorted(
        "sha256:" + hashlib.sha256(d).hexdigest() for d in payloads)


def test_sync_filters_on_the_source_cloud(src: LocalManager, dst: LocalManager) -> None:
    src.create(os.urandom(1000), name="one")
    assert imagehub.sync(src, dst, filters={"cloud": "elsewhere"}).copied == 0
    assert list(dst.all()) == []
    done = imagehub.sync(src, dst, filters={"cloud": src.cloud, "backend": "local"})
    assert (done.copied, done.failed) == (1, 0)


def test_sync_jobs_run_in_parallel_and_each_is_verified(src: LocalManager,
                                                        dst: LocalManager) -> None:
    made = [src.create(os.urandom(2 * MiB), name=f"p{i}") for i in range(8)]
    active: set[str] = set()
    peak = 0
    lock = threading.Lock()
    overlapping = threading.Event()
    gave_up = threading.Event()

    def progress(p: Progress) -> None:
        nonlocal peak
        with lock:
            if p.done < (p.total or 0):
                active.add(p.image)
            else:
                active.discard(p.image)
            peak = max(peak, len(active))
            if peak > 1:
                overlapping.set()
        # Hold a job mid-transfer until another one is mid-transfer too: overlap is what
        # is tested, and a loaded machine may otherwise schedule the jobs one after the
        # other. Jobs that run one at a time never get there: give up once, after a
        # deadline no loaded machine reaches, and let the assert below say so.
        if p.done < (p.total or 0) and not gave_up.is_set() and not overlapping.wait(60):
            gave_up.set()

    summary = imagehub.sync(src, dst, jobs=4, progress=progress)
    assert (summary.copied, summary.failed) == (8, 0)
    assert peak > 1
    assert {t.checksum for t in summary.items} == {i.checksum for i in made}
    for t in summary.items:
        assert t.image is not None and t.image.checksum == t.checksum
        assert {"source:sha256", "source:content-sha256", "destination:sha256"} <= set(t.checks)


def test_sync_resumes_after_an_interruption(src: LocalManager, dst: LocalManager,
                                             ctrl_c: None) -> None:
    for i in range(4):
        src.create(os.urandom(3 * MiB), name=f"r{i}")
    calls = 0

    def ctrl_c_in_the_second_image(p: Progress) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:  # second chunk of the second image (1 MiB chunks)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)

    with pytest.raises(KeyboardInterrupt):
        imagehub.sync(src, dst, progress=ctrl_c_in_the_second_image)
    partial = list(dst.all())
    assert 0 < len(partial) < 4
    assert _leftovers(dst) == []
    for image in partial:  # what is there is whole
        assert b"".join(image.export()) and image.properties["imagehub.sha256"]
    done = imagehub.sync(src, dst)
    assert done.ok and done.copied == 4 - len(partial) and done.present == len(partial)
    assert sorted(str(i.checksum) for i in dst.all()) == sorted(str(i.checksum) for i in src.all())


# -- refusals before any byte ---------------------------------------------------------------
def test_incompatible_destination_refused_before_any_byte(src: LocalManager,
                                                          tmp_path: Path) -> None:
    image = src.create(os.urandom(1000), name="x")
    moved: list[Progress] = []
    readonly = ReadOnlyStore(path=tmp_path / "ro", cloud="ro")
    with pytest.raises(IncompatibleFormat, match="read-only"):
        imagehub.migrate(src, image, readonly, progress=moved.append)
    with pytest.raises(IncompatibleFormat):
        imagehub.sync(src, readonly)
    assert moved == [] and list(readonly.all()) == []


def test_container_rootfs_never_becomes_a_vm_disk(src: LocalManager, dst: LocalManager) -> None:
    rootfs = src.create(b"hsqs" + os.urandom(5000), metadata=os.urandom(300),
                        name="ct", container_format="container")
    moved: list[Progress] = []
    with pytest.raises(IncompatibleFormat, match="container rootfs"):
        imagehub.migrate(src, rootfs, dst, disk_format="qcow2", progress=moved.append)
    iso = src.create(os.urandom(0x8001) + b"CD001" + os.urandom(4000), name="cd")
    assert iso.disk_format == "iso"
    with pytest.raises(IncompatibleFormat, match="converts between"):
        imagehub.migrate(src, iso, dst, disk_format="qcow2", progress=moved.append)
    # A label the bytes contradict is refused before anything is stored ...
    with pytest.raises(InvalidImageData, match="labelled qcow2, but its bytes are raw"):
        src.create(os.urandom(5000), name="lying", disk_format="qcow2")
    # ... and one that got past (made before that check) is not carried elsewhere.
    lying = src.get(src._create([open_source(os.urandom(5000))],
                                CreateSpec(name="lying", disk_format="qcow2")).id)
    with pytest.raises(IncompatibleFormat, match="says it is qcow2"):
        imagehub.migrate(src, lying, OneFileStore(path=dst.root.parent / "one"),
                         progress=moved.append)
    assert moved == [] and list(dst.all()) == [] and _leftovers(dst) == []


def _split_labelled(store: LocalManager, label: str, name: str = "split1") -> imagehub.Image:
    """A split image stored with a disk format label, as create allowed before it checked."""
    parts = [open_source(os.urandom(300), "metadata"),
             open_source(b"QFI\xfb" + os.urandom(5000), "rootfs")]
    return store.get(store._create(parts, CreateSpec(name=name, disk_format=label)).id)


@pytest.mark.parametrize("label", [None, "qcow2"])
def test_a_split_image_is_never_given_a_disk_format(src: LocalManager, dst: LocalManager,
                                                   label: str | None) -> None:
    if label is None:
        split = src.create(b"QFI\xfb" + os.urandom(5000), metadata=os.urandom(300),
                           name="split1")
    else:
        split = _split_labelled(src, label)
    moved: list[Progress] = []
    for fmt in ("qcow2", "raw"):
        with pytest.raises(IncompatibleFormat, match="split image .*its parts are not a "
                           f"disk, so it cannot become a {fmt} disk"):
            imagehub.migrate(src, split, dst, disk_format=fmt, progress=moved.append)
    summary = imagehub.sync(src, dst, disk_format="qcow2", dry_run=True)
    assert summary.failed == 1 and "split image" in str(summary.items[0].error)
    assert moved == [] and list(dst.all()) == [] and _leftovers(dst) == []
    # Without one it keeps its parts, labelled as the store labels split images.
    copy = imagehub.migrate(src, split, dst)
    assert copy.disk_format == "split"
    with dst.export(copy) as stream:
        assert [p.name for p in stream.parts] == ["metadata", "rootfs"]


def test_a_label_create_no_longer_takes_still_migrates(src: LocalManager,
                                                       dst: LocalManager) -> None:
    # Stored before create checked labels: the copy is labelled by its bytes instead, and
    # the old word travels in the properties.
    old = src.get(src._create([open_source(os.urandom(5000))],
                              CreateSpec(name="old", disk_format="foo")).id)
    copy = imagehub.migrate(src, old, dst)
    assert copy.disk_format == "raw" and copy.properties["imagehub.disk_format"] == "foo"


def test_a_disk_format_is_never_a_relabel(src: LocalManager, dst: LocalManager) -> None:
    ami = src.create(os.urandom(5000), name="kernel", disk_format="ami")
    moved: list[Progress] = []
    with pytest.raises(IncompatibleFormat, match="labelled ami, which imagehub does not "
                       "convert; a disk format of vmdk would only relabel it"):
        imagehub.migrate(src, ami, dst, disk_format="vmdk", progress=moved.append)
    assert moved == [] and list(dst.all()) == []
    assert imagehub.migrate(src, ami, dst, disk_format="ami").disk_format == "ami"


# -- failures clean up ----------------------------------------------------------------------
def test_checksum_mismatch_deletes_the_destination_image(src: LocalManager,
                                                         dst: LocalManager) -> None:
    data = os.urandom(2 * MiB)
    image = src.create(data, name="rotten")
    blob = src.root / "blobs" / "sha256" / str(image.checksum).split(":")[1]
    with blob.open("r+b") as fh:  # bit rot at rest: the source no longer keeps its promise
        fh.seek(MiB)
        byte = fh.read(1)
        fh.seek(MiB)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumMismatch) as caught:
        imagehub.migrate(src, image, dst)
    assert caught.value.expected == image.checksum
    assert list(dst.all()) == [] and _leftovers(dst) == []


def test_records_a_failing_backend_leaves_behind_are_deleted(
        src: LocalManager, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = src.create(os.urandom(MiB), name="leak")
    leaky = LeakyStore(path=tmp_path / "leaky", cloud="leaky")
    caplog.set_level("INFO", logger="imagehub.migration")
    with pytest.raises(imagehub.ServerUnreachable):
        imagehub.plan(src, image, leaky).execute(retries=2, backoff=0.01)
    # three attempts, each left a record, each record deleted by its own cleanup
    assert len([r for r in caplog.records if r.msg.startswith("deleted half-made")]) == 3
    assert list(leaky.all()) == [] and _leftovers(leaky) == []


def test_ctrl_c_mid_stream_deletes_the_destination_image(src: LocalManager,
                                                         dst: LocalManager,
                                                         ctrl_c: None) -> None:
    image = src.create(os.urandom(8 * MiB), name="interrupted")
    seen: list[int] = []

    def interrupt(p: Progress) -> None:
        seen.append(p.done)
        if len(seen) == 4:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to main
            time.sleep(0.5)

    with pytest.raises(KeyboardInterrupt):
        imagehub.migrate(src, image, dst, progress=interrupt)
    assert 0 < max(seen) < 8 * MiB
    assert list(dst.all()) == [] and _leftovers(dst) == []


def test_progress_reports_bytes_rate_and_eta(src: LocalManager, dst: LocalManager) -> None:
    image = src.create(os.urandom(4 * MiB), name="measured")
    seen: list[Progress] = []
    imagehub.migrate(src, image, dst, progress=seen.append)
    assert seen[-1].done == seen[-1].total == 4 * MiB
    assert sum(p.delta for p in seen) == 4 * MiB
    assert all(p.rate > 0 and p.eta is not None for p in seen)
    assert seen[-1].fraction == 1.0 and seen[-1].eta == 0


# -- CLI ------------------------------------------------------------------------------------
def _config(tmp_path: Path) -> Path:
    config = tmp_path / "clouds.yaml"
    config.write_text(
        "clouds:\n"
        f"  a: {{backend: local, path: {tmp_path / 'a'}}}\n"
        f"  b: {{backend: local, path: {tmp_path / 'b'}}}\n")
    return config


class CLI(CLIRun):
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(_config(tmp_path), capsys)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(tmp_path, capsys)


def test_cli_migrate_refuses_a_disk_format_for_a_split_image(cli: CLI, tmp_path: Path
                                                              ) -> None:
    a = LocalManager(path=tmp_path / "a")
    a.create(os.urandom(5000), metadata=os.urandom(300), name="split1")
    code, _, err = cli("migrate", "a:split1", "b", "--disk-format", "qcow2")
    assert code == 1 and "split image" in err and "without --disk-format" in err
    assert list(LocalManager(path=tmp_path / "b").all()) == []


def test_cli_migrate_and_dry_run(cli: CLI, tmp_path: Path) -> None:
    a, b = LocalManager(path=tmp_path / "a"), LocalManager(path=tmp_path / "b")
    image = a.create(os.urandom(100_000), name="cli-img")
    code, out, err = cli("--format", "json", "migrate", "a:cli-img", "b", "--dry-run")
    assert code == 0, err
    planned = json.loads(out)
    assert (planned["action"], planned["path"], planned["bytes"]) == ("copy", "stream", 100_000)
    assert list(b.all()) == []
    code, out, err = cli("--format", "json", "migrate", "a:cli-img", "b", "--name", "copy")
    assert code == 0, err
    done = json.loads(out)
    assert (done["action"], done["path"], done["name"]) == ("copied", "stream", "copy")
    assert done["checksum"] == image.checksum and done["bytes"] == 100_000
    assert [i.checksum for i in b.all()] == [image.checksum]
    code, out, _ = cli("migrate", "a:cli-img", "b")  # table output, already present
    assert code == 0 and "present" in out


def test_cli_sync_json_summary_and_rerun(cli: CLI, tmp_path: Path) -> None:
    a = LocalManager(path=tmp_path / "a")
    for i in range(3):
        a.create(os.urandom(10_000), name=f"s{i}", properties={"keep": str(i < 2)})
    code, out, err = cli("--format", "json", "sync", "a", "b", "--filter", "keep=True",
                         "--jobs", "2")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["copied"], summary["present"], summary["failed"]) == (2, 0, 0)
    assert {i["path"] for i in summary["items"]} == {"stream"}
    code, out, err = cli("sync", "a", "b", "--dry-run")
    assert code == 0 and "1 to copy, 2 present" in err
    code, out, err = cli("--format", "json", "sync", "a", "b")
    assert code == 0 and json.loads(out)["copied"] == 1


def test_cli_errors_are_one_line_and_non_zero(cli: CLI, tmp_path: Path) -> None:
    a = LocalManager(path=tmp_path / "a")
    a.create(b"hsqs" + os.urandom(100), name="ct", container_format="container")
    cases = [
        (("migrate", "a:missing", "b"), "no image matches 'missing'"),
        (("migrate", "a:ct", "nowhere"), "no cloud named 'nowhere'"),
        (("migrate", "a:ct", "b", "--disk-format", "qcow2"), "container rootfs"),
    ]
    for args, words in cases:
        code, out, err = cli(*args)
        assert code == 1, (args, out, err)
        assert err.startswith("imagehub: error:") and words in err
        assert len(err.strip().splitlines()) == 1


def test_cli_sync_failure_prints_the_summary_then_one_line(cli: CLI, tmp_path: Path) -> None:
    a = LocalManager(path=tmp_path / "a")
    good = a.create(os.urandom(10_000), name="good")
    bad = a.create(os.urandom(10_000), name="bad")
    blob = a.root / "blobs" / "sha256" / str(bad.checksum).split(":")[1]
    blob.write_bytes(b"rot" + blob.read_bytes()[3:])
    code, out, err = cli("--format", "json", "sync", "a", "b")
    assert code == 1
    summary = json.loads(out)
    assert (summary["copied"], summary["failed"]) == (1, 1)
    failed = next(i for i in summary["items"] if i["action"] == "failed")
    assert failed["source_id"] == bad.id and "checksum mismatch" in failed["error"]
    assert err.startswith("imagehub: error: 1 of 2 images failed")
    assert len(err.strip().splitlines()) == 1
    b = LocalManager(path=tmp_path / "b")
    assert [i.checksum for i in b.all()] == [good.checksum] and _leftovers(b) == []


def test_cli_draws_a_bar_with_rate_only_on_a_terminal(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    config = _config(tmp_path)
    LocalManager(path=tmp_path / "a").create(os.urandom(32 * MiB), name="bar")
    run = [sys.executable, "-m", "imagehub", "--config", str(config), "migrate", "a:bar"]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.run([*run, "b"], stdout=subprocess.DEVNULL, stderr=slave,
                          env={**os.environ, "COLUMNS": "100"})
    os.close(slave)
    shown = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(master, 65536):
            shown += chunk
    os.close(master)
    assert proc.returncode == 0
    assert b"bar" in shown and b"B/s" in shown
    LocalManager(path=tmp_path / "b").delete("bar")
    piped = subprocess.run([*run, "b"], capture_output=True, text=True)
    assert piped.returncode == 0 and "B/s" not in piped.stderr


def test_cli_ctrl_c_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path)
    a, b = LocalManager(path=tmp_path / "a"), LocalManager(path=tmp_path / "b")
    a.create(os.urandom(4 * MiB), name="slow")
    # A real subprocess gets a real SIGINT while the copy is in flight; a tiny queue
    # and a slow progress callback keep the copy in flight long enough to catch it:
    # the 4 chunks take 4 x 2 s, so this side has seconds, not a fraction of one, to
    # send the signal after the first "moving" even on a loaded machine.
    script = (
        "import importlib, signal, sys, time\n"
        # A user's terminal delivers Ctrl-C; an inherited 'ignore' (see ctrl_c) would not.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "m = importlib.import_module('imagehub.migration._stream')\n"
        "m.QUEUE_DEPTH = 1\n"
        "from imagehub.cli import main\n"
        "import imagehub.cli.migrate as c\n"
        "c._bar = lambda *a: (lambda p: (print('moving', flush=True), time.sleep(2)))\n"
        "main(sys.argv[1:])\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "--config", str(config), "migrate", "a:slow", "b"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "moving"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "imagehub: interrupted"
    assert list(b.all()) == [] and _leftovers(b) == []



# == real servers: LXD daemons, Keystone + Glance =========================================
# Each test below uses the session fixtures of tests/servers/*_fixtures.py; they skip
# (or fail under CI=true) with the exact reason when a server cannot run here.


# Seconds per socket operation through the fault proxy. It applies to every request
# there (and to Keystone logins), not only to the stalled one, so it must outlast what
# a loaded machine makes a healthy Glance or Keystone take; a stall still ends in it.
FAULT_TIMEOUT = 10.0


@pytest.fixture
def faulty_glance(openstack_cloud: OpenStackCloud, glance_tidy: GlanceManager
                  ) -> Iterator[tuple[FaultProxy, GlanceManager]]:
    """The same Glance reached through the fault proxy, with a bounded socket timeout
    and no backend-level retries, so each injected fault surfaces as an error."""
    with FaultProxy(openstack_cloud.glance_server.port) as proxy:
        manager = alpha_glance(openstack_cloud, endpoint_override=proxy.url,
                                  timeout=FAULT_TIMEOUT, retries=0)
        yield proxy, manager
        manager.close()


@pytest.fixture(scope="module")
def lxd_one(lxd_daemon: LXDDaemon) -> Iterator[LXDManager]:
    from imagehub.backends.lxd import LXDManager

    manager = LXDManager(endpoint=str(lxd_daemon.socket_path), cloud="lxd-one")
    yield manager
    manager.close()


@pytest.fixture(scope="module")
def lxd_two(lxd_daemon2: LXDDaemon) -> Iterator[LXDManager]:
    from imagehub.backends.lxd import LXDManager

    manager = LXDManager(endpoint=str(lxd_daemon2.socket_path), cloud="lxd-two")
    yield manager
    manager.close()


def _lxd_image(lxd: LXDManager, tmp_path: Path, kind: str) -> tuple[imagehub.Image, Any]:
    from tests.servers import lxd_images

    builders = {"unified": lxd_images.unified_image,
                "container": lxd_images.split_container_image,
                "virtual-machine": lxd_images.split_vm_image}
    built = builders[kind](tmp_path, properties={"os": "debian", "release": "bookworm"})
    if len(built.paths) == 1:
        image = lxd.create(built.paths[0], name=f"mig-{kind}")
    else:
        image = lxd.create(built.rootfs, metadata=built.metadata, name=f"mig-{kind}")
    assert image.id == built.fingerprint
    return image, built


def _tagged(manager: imagehub.ImageManager) -> list[imagehub.Image]:
    return [i for i in manager.all() if "imagehub.transfer" in i.properties]


@pytest.mark.parametrize("kind", ["unified", "container", "virtual-machine"])
def test_lxd_to_glance_to_lxd_keeps_the_fingerprint(
        kind: str, lxd_one: LXDManager, lxd_two: LXDManager, glance_tidy: GlanceManager,
        tmp_path: Path) -> None:
    original, built = _lxd_image(lxd_one, tmp_path, kind)
    try:
        stored = imagehub.migrate(lxd_one, original, glance_tidy)
        assert stored.status == "active"
        assert stored.properties["imagehub.sha256"] == original.id
        assert (stored.os, stored.release) == ("debian", "bookworm")
        if kind == "virtual-machine":
            # Glance holds the VM's disk itself, as a qcow2 image it can boot.
            assert (stored.disk_format, stored.container_format) == ("qcow2", "bare")
            assert stored.size == built.rootfs.stat().st_size
            disk = tmp_path / "from-glance.qcow2"
            glance_tidy.export(stored).save(disk)
            info = json.loads(subprocess.run(
                ["qemu-img", "info", "--output=json", str(disk)], check=True,
                capture_output=True, text=True).stdout)
            assert info["format"] == "qcow2"
        back = imagehub.migrate(glance_tidy, stored, lxd_two)
        assert back.id == original.id  # the identical LXD fingerprint
        assert back.container_format == original.container_format
        assert back.name == f"mig-{kind}" and back.os == "debian"
    finally:
        for manager in (lxd_one, lxd_two):
            with contextlib.suppress(imagehub.ImageNotFound):
                manager.delete(original.id)


def test_local_to_glance_to_local_keeps_the_checksum(
        src: LocalManager, dst: LocalManager, glance_tidy: GlanceManager) -> None:
    data = os.urandom(5 * MiB + 3)
    original = src.create(data, name="loc", properties={"os": "debian"})
    stored = imagehub.migrate(src, original, glance_tidy)
    assert stored.checksum == "sha512:" + hashlib.sha512(data).hexdigest()
    assert (stored.disk_format, stored.os) == ("raw", "debian")
    done = imagehub.plan(glance_tidy, stored, dst).execute()
    assert {"source:sha512", "source:md5", "source:content-sha256",
            "destination:sha256"} <= set(done.checks)
    assert done.image is not None and done.image.checksum == original.checksum
    assert done.image.properties["imagehub.source_checksum"] == stored.checksum
    assert imagehub.sync(glance_tidy, dst).present >= 1  # keyed on content, both ways
    assert imagehub.sync(src, glance_tidy).present == 1


def test_lxd_to_lxd_takes_the_native_path_unless_told(
        lxd_one: LXDManager, lxd_two: LXDManager, tmp_path: Path) -> None:
    original, _ = _lxd_image(lxd_one, tmp_path, "unified")
    try:
        native = imagehub.plan(lxd_one, original, lxd_two)
        assert native.path.startswith("native:lxd-copy")
        done = native.execute()
        assert done.path == native.path and done.bytes == 0
        assert done.image is not None and done.image.id == original.id
        lxd_two.delete(original.id)
        renamed = imagehub.migrate(lxd_one, original, lxd_two, name="renamed")
        assert (renamed.id, renamed.name) == (original.id, "renamed")
        assert renamed.properties["imagehub.sha256"] == original.id
        lxd_two.delete(original.id)
        streamed = imagehub.plan(lxd_one, original, lxd_two, stream=True).execute()
        assert streamed.path == "stream" and streamed.bytes == original.size
        assert streamed.image is not None and streamed.image.id == original.id
    finally:
        for manager in (lxd_one, lxd_two):
            with contextlib.suppress(imagehub.ImageNotFound):
                manager.delete(original.id)


def test_sync_lxd_to_glance_in_parallel_then_nothing_left_to_do(
        lxd_one: LXDManager, glance_tidy: GlanceManager, tmp_path: Path) -> None:
    made = [_lxd_image(lxd_one, tmp_path, kind)[0]
            for kind in ("unified", "container", "virtual-machine", "unified")]
    try:
        ids = {i.id for i in made}
        first = imagehub.sync(lxd_one, glance_tidy, jobs=4)
        mine = [t for t in first.items if t.source.id in ids]
        assert [t.action for t in mine] == ["copied"] * 4 and first.failed == 0
        assert all("destination:sha512" in t.checks for t in mine)
        again = imagehub.sync(lxd_one, glance_tidy, jobs=4)
        assert {t.action for t in again.items if t.source.id in ids} == {"present"}
    finally:
        for image in made:
            lxd_one.delete(image.id)


def test_sync_removes_records_an_interrupted_run_left(
        src: LocalManager, glance_tidy: GlanceManager, openstack_cloud: OpenStackCloud
        ) -> None:
    from tests.servers.openstack import password_session

    # What a SIGKILLed imagehub leaves: a queued record tagged with its transfer token.
    session = password_session(openstack_cloud, openstack_cloud.project("alpha"))
    left = session.post(f"{openstack_cloud.glance_url}/v2/images", json={
        "name": "half", "disk_format": "raw", "container_format": "bare",
        "imagehub.transfer": "0" * 32}).json()
    src.create(os.urandom(1000), name="fresh")
    summary = imagehub.sync(src, glance_tidy, stale_after=0)
    assert summary.copied == 1
    assert left["id"] not in {i.id for i in glance_tidy.all()}


# -- faults through the proxy, against real Glance -----------------------------------------
FAULT_SIZE = 6 * MiB


@pytest.mark.parametrize("fraction", [0.10, 0.50, 0.99])
def test_upload_cut_leaves_nothing_and_a_retry_finishes(
        fraction: float, src: LocalManager, faulty_glance: tuple[FaultProxy, GlanceManager],
        glance_tidy: GlanceManager) -> None:
    proxy, glance = faulty_glance
    image = src.create(os.urandom(FAULT_SIZE), name=f"cut-up-{fraction}")
    before = {i.id for i in glance_tidy.all()}
    proxy.cut("up", int(FAULT_SIZE * fraction))
    with pytest.raises((imagehub.TransferError, imagehub.BackendError)):
        imagehub.migrate(src, image, glance, retries=0)
    assert {i.id for i in glance_tidy.all()} == before
    proxy.cut("up", int(FAULT_SIZE * fraction))  # once more: the retry must recover
    done = imagehub.plan(src, image, glance).execute(retries=2, backoff=0.1)
    assert done.attempts == 2
    assert done.image is not None and done.image.properties["imagehub.sha256"] == \
        str(image.checksum).split(":")[1]
    assert [i.id for i in glance_tidy.all() if i.id not in before] == [done.image.id]


@pytest.mark.parametrize("fraction", [0.10, 0.50, 0.99])
def test_download_cut_leaves_nothing(
        fraction: float, src: LocalManager, dst: LocalManager,
        faulty_glance: tuple[FaultProxy, GlanceManager]) -> None:
    proxy, glance = faulty_glance
    stored = imagehub.migrate(src, src.create(os.urandom(FAULT_SIZE), name="dl"), glance)
    proxy.cut("down", int(FAULT_SIZE * fraction))
    with pytest.raises(imagehub.TransferError):
        imagehub.migrate(glance, stored, dst, retries=0)
    assert list(dst.all()) == [] and _leftovers(dst) == []


def test_flipped_byte_on_the_way_up_is_caught_and_removed(
        src: LocalManager, faulty_glance: tuple[FaultProxy, GlanceManager],
        glance_tidy: GlanceManager) -> None:
    proxy, glance = faulty_glance
    image = src.create(os.urandom(FAULT_SIZE), name="flip-up")
    before = {i.id for i in glance_tidy.all()}
    proxy.flip("up", FAULT_SIZE // 2)
    with pytest.raises(ChecksumMismatch, match="sha512"):
        imagehub.migrate(src, image, glance)
    assert {i.id for i in glance_tidy.all()} == before


def test_flipped_byte_on_the_way_down_is_caught_and_removed(
        src: LocalManager, dst: LocalManager,
        faulty_glance: tuple[FaultProxy, GlanceManager]) -> None:
    proxy, glance = faulty_glance
    stored = imagehub.migrate(src, src.create(os.urandom(FAULT_SIZE), name="flip"), glance)
    proxy.flip("down", FAULT_SIZE // 2)
    with pytest.raises(ChecksumMismatch):
        imagehub.migrate(glance, stored, dst)
    assert list(dst.all()) == [] and _leftovers(dst) == []


@pytest.mark.parametrize("direction", ["up", "down"])
def test_stall_times_out_and_leaves_nothing(
        direction: str, src: LocalManager, dst: LocalManager,
        faulty_glance: tuple[FaultProxy, GlanceManager], glance_tidy: GlanceManager) -> None:
    proxy, glance = faulty_glance
    image = src.create(os.urandom(FAULT_SIZE), name=f"stall-{direction}")
    before = {i.id for i in glance_tidy.all()}
    started = time.monotonic()
    if direction == "up":
        proxy.stall("up", FAULT_SIZE // 2)
        with pytest.raises((imagehub.TransferError, imagehub.BackendError)):
            imagehub.migrate(src, image, glance, retries=0)
        proxy.release()
        assert {i.id for i in glance_tidy.all()} == before
    else:
        stored = imagehub.migrate(src, image, glance)
        proxy.stall("down", FAULT_SIZE // 2)
        with pytest.raises((imagehub.TransferError, imagehub.BackendError)):
            imagehub.migrate(glance, stored, dst, retries=0)
        proxy.release()
        assert list(dst.all()) == [] and _leftovers(dst) == []
    # The stall ended in an error bounded by the socket timeout, not in a hang (the
    # stalled connection stays open until release(), so only the timeout ends it).
    assert time.monotonic() - started < 6 * FAULT_TIMEOUT


def test_glance_killed_mid_upload_leaves_no_orphan(
        src: LocalManager, openstack_cloud: OpenStackCloud, glance_alive: OpenStackCloud,
        glance_tidy: GlanceManager) -> None:
    image = src.create(os.urandom(48 * MiB), name="killed")
    before = {i.id for i in glance_tidy.all()}
    store = openstack_cloud.glance_server.data_dir / "images"
    files_before = set(store.iterdir())
    killed = threading.Event()

    def restart_later() -> None:
        time.sleep(2)  # down for a while, as a crashed server under a supervisor is
        openstack_cloud.restart_glance()

    restarter = threading.Thread(target=restart_later, daemon=True)

    def kill_at_a_third(p: Progress) -> None:
        if p.done >= 16 * MiB and not killed.is_set():
            killed.set()
            openstack_cloud.kill_glance()
            restarter.start()

    glance = alpha_glance(openstack_cloud, timeout=10.0, retries=0)
    with pytest.raises((imagehub.TransferError, imagehub.BackendError)):
        imagehub.migrate(src, image, glance, retries=0, progress=kill_at_a_third)
    assert killed.is_set()
    # wait_ready() alone would race the restart: it gives up at once on a daemon that
    # is not running yet, and the migrate's cleanup is all that delayed it so far.
    restarter.join(timeout=180)
    assert not restarter.is_alive(), "Glance did not come back within 180 s"
    openstack_cloud.glance_server.wait_ready(60)
    assert {i.id for i in glance_tidy.all()} == before
    assert _leftovers(src) == []
    # What Glance itself had written before SIGKILL stays in its file store: the record
    # had no location yet, so deleting it cannot reach the file (docs/migrate.md).
    listed = {i.id for i in glance_tidy.all()}
    assert all(f.name not in listed for f in set(store.iterdir()) - files_before)
