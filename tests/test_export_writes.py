"""Export writes: what --force may replace, no-clobber against races, split part names,
the umask, stale temp files, and one-line errors for every OS failure."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import imagehub
from imagehub.backends.local import LocalManager
from imagehub.cli import main

DATA = os.urandom(200_000)


@pytest.fixture
def store(tmp_path: Path) -> LocalManager:
    return LocalManager(path=tmp_path / "store")


@pytest.fixture
def image(store: LocalManager) -> imagehub.Image:
    return store.create(DATA, name="img", aliases=["img-a"])


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  local: {{backend: local, path: {tmp_path / 'store'}}}\n")
    capsys.readouterr()
    try:
        main(["--config", str(config), "-q", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_force_refuses_fifo_and_devices(tmp_path: Path, image: imagehub.Image,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target, kind in ((fifo, "FIFO"), (Path("/dev/full"), "character device"),
                         (Path("/dev/null"), "character device"), (tmp_path, "directory")):
        before = os.stat(target)
        code, err = run(tmp_path, capsys, "export", "img", "-o", str(target), "--force")
        if target == tmp_path:  # a directory is where a single-file image goes
            continue
        assert code == 1 and kind in err and err.count("\n") == 1, err
        after = os.stat(target)
        assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode)
        assert after.st_ino == before.st_ino


def test_force_writes_through_a_symlink(tmp_path: Path, image: imagehub.Image) -> None:
    real = tmp_path / "real.img"
    real.write_bytes(b"old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.img"
    link.symlink_to(real)
    image.export().save(link, force=True)
    assert link.is_symlink() and real.read_bytes() == DATA
    assert stat.S_IMODE(real.stat().st_mode) == 0o640, "replacing keeps the file's mode"


def test_no_clobber_holds_against_a_file_created_during_the_download(
        tmp_path: Path, image: imagehub.Image) -> None:
    target = tmp_path / "out.img"

    def intruder(_n: int) -> None:
        if not target.exists():
            target.write_bytes(b"someone else's file")

    with pytest.raises(imagehub.OutputError, match="appeared while the image was downloading"):
        image.export().save(target, progress=intruder)
    assert target.read_bytes() == b"someone else's file"
    assert [p.name for p in tmp_path.iterdir() if "imagehub-" in p.name] == []


def test_split_parts_with_the_same_file_name_are_both_kept(tmp_path: Path,
                                                           store: LocalManager) -> None:
    meta, rootfs = os.urandom(1000), os.urandom(5000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "image").write_bytes(meta)
    (tmp_path / "b" / "image").write_bytes(rootfs)
    split = store.create(tmp_path / "b" / "image", metadata=tmp_path / "a" / "image",
                         name="split")
    written = split.export().save(tmp_path / "out")
    assert len(written) == len(set(written)) == 2
    assert sorted(p.read_bytes() for p in written) == sorted([meta, rootfs])


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_exported_files_get_the_umask(tmp_path: Path, image: imagehub.Image, mask: int) -> None:
    code = (f"import os, sys; os.umask({mask}); from imagehub.backends.local import "
            "LocalManager; LocalManager(path=sys.argv[1]).export('img').save(sys.argv[2])")
    target = tmp_path / f"out-{mask:o}"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "store"), str(target)],
                   check=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_stale_partials_of_the_same_target_are_removed(tmp_path: Path,
                                                       image: imagehub.Image) -> None:
    stale = tmp_path / ".out.img.imagehub-dead1234.part"
    stale.write_bytes(b"half")
    other = tmp_path / ".other.img.imagehub-dead1234.part"
    other.write_bytes(b"half")
    image.export().save(tmp_path / "out.img")
    assert not stale.exists() and other.exists()


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("a read-only mount needs root (root ignores directory modes)")
    path = tmp_path / "ro"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs, which needs root to mount")
    path = tmp_path / "tiny"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_os_errors_are_one_line_naming_the_path(
        tmp_path: Path, image: imagehub.Image, capsys: pytest.CaptureFixture[str],
        readonly_dir: Path, tiny_dir: Path) -> None:
    cases = {
        str(tmp_path / "missing" / "x.img"): "No such file or directory",
        str(readonly_dir / "x.img"): "Read-only file system",
        str(tiny_dir / "x.img"): "No space left on device",
        str(tmp_path / "store" / "catalog.sqlite" / "x"): "Not a directory",
    }
    for target, reason in cases.items():
        code, err = run(tmp_path, capsys, "export", "img", "-o", target)
        assert code == 1, err
        assert err.count("\n") == 1 and reason in err and target in err, err
        assert "Traceback" not in err
    assert os.listdir(tiny_dir) == [], "no partial file left on the full disk"


def test_full_or_closed_stdout_is_one_line(tmp_path: Path, store: LocalManager) -> None:
    store.create(os.urandom(8 << 20), name="img")  # more than any pipe buffer holds
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  local: {{backend: local, path: {tmp_path / 'store'}}}\n")
    cmd = [sys.executable, "-m", "imagehub", "--config", str(config), "export", "img", "-o", "-"]
    with open("/dev/full", "wb") as full:
        done = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "standard output" in done.stderr and "No space left" in done.stderr
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as reader:
        assert reader.stdout is not None and reader.stderr is not None
        os.read(reader.stdout.fileno(), 10)
        reader.stdout.close()
        err = reader.stderr.read().decode()
        assert reader.wait(timeout=60) == 1
    assert err.count("\n") == 1 and "standard output" in err and "Traceback" not in err, err


def test_dangling_symlink_needs_force(tmp_path: Path, image: imagehub.Image) -> None:
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "elsewhere.img")
    with pytest.raises(imagehub.OutputError, match="symlink to a missing file"):
        image.export().save(link)
    assert not (tmp_path / "elsewhere.img").exists()
    image.export().save(link, force=True)
    assert link.is_symlink() and (tmp_path / "elsewhere.img").read_bytes() == DATA


def test_split_export_refuses_before_moving_a_byte(tmp_path: Path, store: LocalManager) -> None:
    split = store.create(os.urandom(3000), metadata=os.urandom(300), name="split")
    out = tmp_path / "out"
    first = split.export().save(out)
    first[-1].unlink()  # one part gone, the other still there
    with pytest.raises(imagehub.OutputError, match="already exists"):
        split.export().save(out)
    assert sorted(os.listdir(out)) == [first[0].name], "nothing half-written beside it"
