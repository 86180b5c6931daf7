"""Foreign VM disks: labelled by their bytes, converted with the real qemu-img, turned into
LXD virtual-machine images, and downloads resumed after a cut.

The first half runs local -> local with the real qemu-img; the second half uses the real
LXD, Glance and Keystone the suite starts (tests/servers/), and the fault proxy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import imagehub
import imagehub.registry
from imagehub import IncompatibleFormat, InvalidImageData, Progress
from imagehub.backends.local import LocalManager
from imagehub.qemuimg import QemuImgMissing
from tests.servers.faultproxy import FaultProxy
from tests.servers.openstack_fixtures import alpha_glance
from tests.test_migrate import FAULT_TIMEOUT

if TYPE_CHECKING:
    from imagehub.backends.glance import GlanceManager
    from imagehub.backends.lxd import LXDManager
    from tests.servers.lxd import LXDDaemon
    from tests.servers.openstack import OpenStackCloud

MiB = 1024 * 1024
QEMU_IMG = "/usr/bin/qemu-img"


def _qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True,
                          text=True).stdout


def _disk(tmp_path: Path, fmt: str, name: str = "disk", size: str = "64M") -> Path:
    """A disk of ``fmt`` with real data in it (qemu-io writes a pattern into a qcow2)."""
    base = tmp_path / f"{name}.qcow2"
    if not base.exists():
        _qemu_img("create", "-q", "-f", "qcow2", str(base), size)
        subprocess.run(["qemu-io", "-c", "write -P 0x5a 1M 3M", "-c",
                        "write -P 0xa5 20M 2M", str(base)], check=True, capture_output=True)
    if fmt == "qcow2":
        return base
    out = tmp_path / f"{name}.{fmt}"
    _qemu_img("convert", "-f", "qcow2", "-O", "vpc" if fmt == "vhd" else fmt, str(base),
              str(out))
    return out


def _same_disk(a: Path, b: Path) -> bool:
    return subprocess.run(["qemu-img", "compare", "-q", str(a), str(b)]).returncode == 0


def _store(tmp_path: Path, name: str) -> LocalManager:
    return LocalManager(path=tmp_path / name, cloud=name)


@pytest.fixture
def src(tmp_path: Path) -> LocalManager:
    return _store(tmp_path, "src")


@pytest.fixture
def dst(tmp_path: Path) -> LocalManager:
    return _store(tmp_path, "dst")


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    path = tmp_path / "staging"
    path.mkdir()
    return path


# -- create labels bytes by what they are ---------------------------------------------------
@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vhdx", "vdi", "vhd", "raw"])
def test_create_labels_a_disk_by_its_bytes(fmt: str, src: LocalManager,
                                           tmp_path: Path) -> None:
    disk = _disk(tmp_path, fmt)
    assert src.create(disk, name=fmt).disk_format == fmt
    with disk.open("rb") as fh:  # a stream is looked at too, and still sent whole
        made = src.create(fh, name=f"{fmt}-stream")
    assert made.disk_format == fmt
    assert made.checksum == "sha256:" + hashlib.sha256(disk.read_bytes()).hexdigest()


def test_create_labels_an_iso_and_an_iterable(src: LocalManager) -> None:
    iso = os.urandom(0x8001) + b"CD001" + os.urandom(5000)
    chunks = [iso[i:i + 1000] for i in range(0, len(iso), 1000)]
    made = src.create(iter(chunks), name="cd")
    assert made.disk_format == "iso" and made.size == len(iso)


@pytest.mark.parametrize(("fmt", "label"), [("qcow2", "raw"), ("raw", "qcow2"),
                                              ("vmdk", "vhdx"), ("qcow2", "vhd")])
def test_create_refuses_a_label_its_bytes_contradict(fmt: str, label: str, src: LocalManager,
                                                     tmp_path: Path) -> None:
    with pytest.raises(InvalidImageData, match=f"labelled {label}, but its bytes are {fmt}"):
        src.create(_disk(tmp_path, fmt), name="liar", format=label)
    assert list(src.all()) == [] and list((src.root / "tmp").iterdir()) == []


# -- declared abilities ---------------------------------------------------------------------
@pytest.mark.parametrize("info", [i for i in imagehub.registry.available_backends()
                                  if i.available], ids=lambda i: i.name)
def test_declared_abilities_match_the_hooks(info: imagehub.registry.BackendInfo) -> None:
    from imagehub.manager import ImageManager

    cls = imagehub.registry.get_backend(info.name)
    for flag, hook in (("ranged_export", "_export_from"), ("native_copy", "_native_copy")):
        overridden = getattr(cls, hook) is not getattr(ImageManager, hook)
        assert getattr(cls, flag) == overridden, f"{info.name}: {flag} vs {hook}"
    assert cls.max_parts >= 1
    if cls.vm_needs_metadata:
        assert cls.max_parts >= 2 and cls.vm_disk_formats


# -- conversion -----------------------------------------------------------------------------
def test_qcow2_to_raw_is_byte_identical_to_qemu_img_and_idempotent(
        src: LocalManager, dst: LocalManager, tmp_path: Path, staging: Path) -> None:
    disk = _disk(tmp_path, "qcow2")
    image = src.create(disk, name="vm")
    chosen = imagehub.plan(src, image, dst, disk_format="raw")
    assert (chosen.path, chosen.convert) == ("convert", ("qcow2", "raw"))
    done = chosen.execute(staging_dir=str(staging))
    assert done.image is not None and done.image.disk_format == "raw"
    reference = tmp_path / "reference.raw"
    _qemu_img("convert", "-f", "qcow2", "-O", "raw", str(disk), str(reference))
    copied = tmp_path / "copied.raw"
    dst.export(done.image).save(copied)
    assert copied.read_bytes() == reference.read_bytes()
    # Provenance: the source's checksum and format.
    props = done.image.properties
    assert props["imagehub.source_checksum"] == image.checksum
    assert props["imagehub.source_disk_format"] == "qcow2"
    # Re-running finds the converted copy; another format is another copy.
    again = imagehub.plan(src, image, dst, disk_format="raw")
    assert (again.action, again.existing) == ("present", done.image)
    assert imagehub.plan(src, image, dst, disk_format="vmdk").action == "copy"
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize(("have", "want"), [("qcow2", "vmdk"), ("qcow2", "vhdx"),
                                              ("raw", "vdi"), ("vmdk", "qcow2"),
                                              ("vhd", "raw"), ("vdi", "vhd")])
def test_conversions_keep_the_disk(have: str, want: str, src: LocalManager,
                                   dst: LocalManager, tmp_path: Path) -> None:
    disk = _disk(tmp_path, have)
    made = imagehub.migrate(src, src.create(disk, name=have), dst, disk_format=want)
    assert made.disk_format == want
    out = tmp_path / f"out.{want}"
    dst.export(made).save(out)
    qemu_name = {"vhd": "vpc"}.get(want, want)  # qemu-img's name for VHD
    assert _qemu_img("info", "--output=json", str(out)).count(f'"format": "{qemu_name}"') == 1
    assert _same_disk(disk, out)


def test_sync_converts_once(src: LocalManager, dst: LocalManager, tmp_path: Path) -> None:
    src.create(_disk(tmp_path, "qcow2"), name="a")
    src.create(_disk(tmp_path, "vmdk", name="other"), name="b")
    first = imagehub.sync(src, dst, disk_format="vdi")
    assert (first.copied, first.failed) == (2, 0)
    assert {i.disk_format for i in dst.all()} == {"vdi"}
    second = imagehub.sync(src, dst, disk_format="vdi")
    assert (second.copied, second.present) == (0, 2)


def test_cli_migrate_and_sync_take_disk_format(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from imagehub.cli import main

    config = tmp_path / "clouds.yaml"
    config.write_text(f"staging_dir: {tmp_path / 'stage'}\nclouds:\n"
                      f"  a: {{backend: local, path: {tmp_path / 'a'}}}\n"
                      f"  b: {{backend: local, path: {tmp_path / 'b'}}}\n")
    image = LocalManager(path=tmp_path / "a").create(_disk(tmp_path, "qcow2"), name="vm")
    for args in (["migrate", f"a:{image.id}", "b", "--disk-format", "raw"],
                 ["sync", "a", "b", "--disk-format", "raw"]):
        with contextlib.suppress(SystemExit):
            main(["--config", str(config), "--format", "json", *args])
    out = capsys.readouterr().out
    assert '"path": "convert"' in out and '"present": 1' in out
    assert [i.disk_format for i in LocalManager(path=tmp_path / "b").all()] == ["raw"]
    assert list((tmp_path / "stage").iterdir()) == []


# -- refusals before any byte ---------------------------------------------------------------
def test_impossible_conversions_are_refused_before_any_byte(
        src: LocalManager, dst: LocalManager, tmp_path: Path) -> None:
    moved: list[Progress] = []
    rootfs = src.create(b"hsqs" + os.urandom(5000), metadata=os.urandom(300), name="ct",
                        container_format="container")
    with pytest.raises(IncompatibleFormat, match="container rootfs"):
        imagehub.migrate(src, rootfs, dst, disk_format="raw", progress=moved.append)
    tarball = src.create(b"\x1f\x8b" + os.urandom(5000), name="unified")
    with pytest.raises(IncompatibleFormat, match="gzip archive, not a disk"):
        imagehub.migrate(src, tarball, dst, disk_format="qcow2", progress=moved.append)
    disk = src.create(_disk(tmp_path, "qcow2"), name="vm")
    with pytest.raises(IncompatibleFormat, match="converts between"):
        imagehub.migrate(src, disk, dst, disk_format="ploop", progress=moved.append)
    assert moved == [] and list(dst.all()) == []


def test_missing_qemu_img_names_the_package(src: LocalManager, dst: LocalManager,
                                            tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    image = src.create(_disk(tmp_path, "qcow2"), name="vm")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    moved: list[Progress] = []
    with pytest.raises(QemuImgMissing, match="qemu-utils"):
        imagehub.migrate(src, image, dst, disk_format="raw", progress=moved.append)
    assert moved == [] and list(dst.all()) == []


def test_free_space_is_checked_before_any_byte(src: LocalManager, dst: LocalManager,
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # A full disk cannot be made on demand here; disk_usage is what would report it.
    import shutil
    import types

    from imagehub.migration import _convert

    image = src.create(_disk(tmp_path, "qcow2"), name="vm")
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda _p: types.SimpleNamespace(total=10 * MiB, used=9 * MiB,
                                                         free=MiB))
    moved: list[Progress] = []
    with pytest.raises(_convert.StagingSpaceError, match=r"needs \d+ bytes of staging"):
        imagehub.migrate(src, image, dst, disk_format="raw", progress=moved.append)
    assert moved == [] and list(dst.all()) == []


# -- staging is removed on every way out ----------------------------------------------------
def _fake_qemu_img(tmp_path: Path, body: str) -> Path:
    """A qemu-img first in PATH that runs ``body`` for convert, the real one otherwise."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "qemu-img"
    script.write_text(f'#!/bin/sh\nif [ "$1" = convert ]; then {body}; fi\n'
                      f'exec {QEMU_IMG} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bindir


@pytest.mark.parametrize("way", ["killed", "failed", "ctrl-c"])
def test_no_staging_file_is_left_behind(way: str, src: LocalManager, dst: LocalManager,
                                        tmp_path: Path, staging: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    image = src.create(_disk(tmp_path, "qcow2"), name="vm")
    progress = None
    if way == "killed":
        # The child dies by SIGKILL mid-conversion, as under the OOM killer.
        monkeypatch.setenv("PATH", f"{_fake_qemu_img(tmp_path, 'kill -KILL $$')}:"
                                   f"{os.environ['PATH']}")
        expected: type[BaseException] = imagehub.MigrationError
    elif way == "failed":
        monkeypatch.setenv("PATH", f"{_fake_qemu_img(tmp_path, 'echo broken >&2; exit 1')}:"
                                   f"{os.environ['PATH']}")
        expected = imagehub.ImageHubError
    else:
        def progress(p: Progress) -> None:
            if p.done >= (p.total or 0) // 2:
                raise KeyboardInterrupt
        expected = KeyboardInterrupt
    with pytest.raises(expected):
        imagehub.plan(src, image, dst, disk_format="raw").execute(
            staging_dir=str(staging), progress=progress, retries=0)
    assert list(staging.iterdir()) == []
    assert list(dst.all()) == []


# -- real LXD, Glance and Keystone ----------------------------------------------------------


@pytest.fixture
def lxd(lxd_daemon: LXDDaemon) -> Iterator[LXDManager]:
    from imagehub.backends.lxd import LXDManager

    manager = LXDManager(endpoint=str(lxd_daemon.socket_path), cloud="lxd")
    before = {i.id for i in manager.all()}
    yield manager
    for image in manager.all():
        if image.id not in before:
            with contextlib.suppress(imagehub.ImageNotFound):
                manager.delete(image)
    manager.close()


def _root_disk(lxd: LXDManager, image: imagehub.Image, out: Path) -> Path:
    written = lxd.export(image).save(out)
    assert len(written) == 2  # a split image: metadata and the root disk
    meta, disk = (Path(p) for p in written)
    assert b"metadata.yaml" in meta.read_bytes()
    return disk


VM_PROPS = {"os_distro": "debian", "os_version": "12"}


def test_glance_qcow2_becomes_an_lxd_vm_image(glance_tidy: GlanceManager, lxd: LXDManager,
                                              tmp_path: Path) -> None:
    disk = _disk(tmp_path, "qcow2")
    stored = glance_tidy.create(disk, name="vm-qcow2", architecture="x86_64",
                                properties=VM_PROPS)
    assert stored.disk_format == "qcow2"  # labelled by its bytes
    chosen = imagehub.plan(glance_tidy, stored, lxd)
    assert (chosen.path, chosen.wrap, chosen.convert) == ("stream", True, None)
    made = imagehub.migrate(glance_tidy, stored, lxd)
    assert made.container_format == "virtual-machine"
    assert (made.architecture, made.os, made.release) == ("x86_64", "debian", "12")
    assert made.properties["imagehub.source_checksum"] == stored.checksum
    assert _same_disk(disk, _root_disk(lxd, made, tmp_path / "exported"))
    again = imagehub.plan(glance_tidy, stored, lxd)
    assert (again.action, again.existing) == ("present", made)


def test_glance_raw_becomes_an_lxd_vm_image(glance_tidy: GlanceManager, lxd: LXDManager,
                                            tmp_path: Path, staging: Path) -> None:
    disk = _disk(tmp_path, "raw")
    stored = glance_tidy.create(disk, name="vm-raw",
                                properties={"hw_architecture": "aarch64", **VM_PROPS})
    chosen = imagehub.plan(glance_tidy, stored, lxd)
    assert (chosen.path, chosen.convert) == ("convert", ("raw", "qcow2"))
    done = chosen.execute(staging_dir=str(staging))
    assert done.image is not None and done.image.container_format == "virtual-machine"
    assert done.image.architecture == "aarch64"
    root = _root_disk(lxd, done.image, tmp_path / "exported")
    assert '"format": "qcow2"' in _qemu_img("info", "--output=json", str(root))
    assert _same_disk(disk, root)
    assert list(staging.iterdir()) == []
    assert imagehub.plan(glance_tidy, stored, lxd).action == "present"


def test_refusals_leave_nothing_on_lxd(glance_tidy: GlanceManager, lxd: LXDManager,
                                       tmp_path: Path) -> None:
    before = {i.id for i in lxd.all()}
    nameless = glance_tidy.create(_disk(tmp_path, "qcow2"), name="no-arch")
    moved: list[Progress] = []
    with pytest.raises(IncompatibleFormat, match="architecture") as caught:
        imagehub.migrate(glance_tidy, nameless, lxd, progress=moved.append)
    assert "hw_architecture" in str(caught.value)  # the hint says what to set
    known = glance_tidy.update(nameless, properties={"hw_architecture": "x86_64"})
    with pytest.raises(IncompatibleFormat, match="never becomes a container rootfs"):
        imagehub.migrate(glance_tidy, known, lxd, disk_format="squashfs",
                         progress=moved.append)
    assert moved == [] and {i.id for i in lxd.all()} == before


def test_a_cut_download_resumes_from_the_last_byte(
        openstack_cloud: OpenStackCloud, glance_tidy: GlanceManager, dst: LocalManager,
        tmp_path: Path) -> None:
    # What the socket buffers held when the link was reset is lost and fetched again (a
    # few MiB, whatever the image size); at 128 MiB that stays well inside the 5 %.
    size = 128 * MiB + 5
    data = os.urandom(size)
    stored = glance_tidy.create(data, name="resume")
    with FaultProxy(openstack_cloud.glance_server.port) as proxy:
        glance = alpha_glance(openstack_cloud, endpoint_override=proxy.url,
                                 timeout=FAULT_TIMEOUT, retries=0)
        try:
            proxy.cut("down", size // 2)
            done = imagehub.plan(glance, stored, dst).execute(retries=1, backoff=0.1)
            fetched = proxy.forwarded("down")
        finally:
            glance.close()
    assert done.attempts == 1  # resumed inside the one attempt, not restarted
    assert done.image is not None and done.image.checksum == \
        "sha256:" + hashlib.sha256(data).hexdigest()
    assert size <= fetched < 1.05 * size, f"fetched {fetched / size:.3f}x the image size"


def _gone(pid: int) -> bool:
    # The machine's init may reap a dead child late: a zombie counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_cli_ctrl_c_during_conversion_kills_qemu_img_and_leaves_nothing(
        tmp_path: Path) -> None:
    staging = tmp_path / "stage"
    config = tmp_path / "clouds.yaml"
    config.write_text(f"staging_dir: {staging}\nclouds:\n"
                      f"  a: {{backend: local, path: {tmp_path / 'a'}}}\n"
                      f"  b: {{backend: local, path: {tmp_path / 'b'}}}\n")
    image = LocalManager(path=tmp_path / "a").create(_disk(tmp_path, "qcow2"), name="vm")
    mark = tmp_path / "converting"
    # qemu-img that says it started, then takes its time, as a large conversion does.
    bindir = _fake_qemu_img(tmp_path, f"echo $$ > {mark}; exec sleep 60")
    script = ("import signal, sys\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from imagehub.cli import main\n"
              "main(sys.argv[1:])\n")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "--config", str(config), "migrate",
         f"a:{image.id}", "b", "--disk-format", "raw"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (mark.exists() and mark.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
        time.sleep(0.05)
    child = int(mark.read_text())
    proc.send_signal(signal.SIGINT)  # to imagehub alone: it must stop qemu-img itself
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert _gone(child)
    assert list(staging.iterdir()) == []
    assert list(LocalManager(path=tmp_path / "b").all()) == []


def test_an_lxd_vm_image_stays_a_split_image_without_a_disk_format(
        src: LocalManager, dst: LocalManager, lxd: LXDManager, tmp_path: Path) -> None:
    disk = _disk(tmp_path, "qcow2")
    vm = imagehub.migrate(src, src.create(disk, name="vm", architecture="x86_64",
                                          properties=VM_PROPS), lxd)
    assert vm.container_format == "virtual-machine"  # metadata + a qcow2 root disk
    moved: list[Progress] = []
    with pytest.raises(IncompatibleFormat, match="split image"):
        imagehub.migrate(lxd, vm, dst, disk_format="raw", progress=moved.append)
    assert moved == [] and list(dst.all()) == []
    # Its parts are not a disk, even with a qcow2 rootfs: not labelled qcow2 elsewhere.
    copy = imagehub.migrate(lxd, vm, dst)
    assert copy.disk_format == "split"
    assert imagehub.migrate(dst, copy, lxd).id == vm.id  # and it comes back as it was
