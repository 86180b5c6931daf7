"""The local store after kill -9, a full disk and a damaged catalog: nothing is lost.

Crashes are real: a child process is stopped at a named step (blob staged, blob renamed,
committed) by a hook that announces the step and waits, then gets SIGKILL. Disk-full runs
on a small tmpfs (root only; elsewhere skipped, except on CI where it must run).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import imagehub
from imagehub.backends.local import LocalManager
from imagehub.cli import main
from tests.storecheck import assert_store_whole

CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import imagehub.backends.local as local
    root, step, flag, action = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]

    def pause():
        flag.write_text(step)
        time.sleep(600)

    def chunks():
        yield os.urandom(1 << 20)
        if step == "staged":
            pause()
        yield os.urandom(1 << 20)

    if step == "renamed":
        real = local._fsync_dir
        def hooked(path):
            real(path)
            pause()
        local._fsync_dir = hooked
    if step == "committed":
        local.LocalManager._get = lambda self, ref, filters: pause()
    if step == "deleted":
        local.LocalManager._drop_unreferenced = lambda self, digests, tmps=("",): pause()
    store = local.LocalManager(path=root)
    if action == "create":
        store.create(chunks(), name="victim")
    elif action == "export":
        stream = store.export(sys.argv[5])
        def slow(n):
            pause()
        stream.save(sys.argv[6], progress=slow)
    else:
        store.delete(sys.argv[5])
""")


def _run_until(tmp_path: Path, store: Path, step: str, action: str, *extra: str) -> None:
    flag = tmp_path / f"reached-{step}-{action}"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(store), step, str(flag), action,
                             *extra])
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert proc.poll() is None, f"child ended early with {proc.returncode}"
            assert time.monotonic() < deadline, f"child never reached {step}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "store"
    keep = LocalManager(path=root).create(os.urandom(300_000), name="keep", aliases=["k"])
    return root, keep.id


@pytest.mark.parametrize("step", ["staged", "renamed"])
def test_kill_mid_create_leaves_nothing(tmp_path: Path, store: tuple[Path, str],
                                        step: str) -> None:
    root, keep = store
    _run_until(tmp_path, root, step, "create")
    left = list((root / "tmp").iterdir()) + list((root / "blobs" / "sha256").iterdir())
    assert len(left) >= 2, "the crash left something to reclaim"
    opened = assert_store_whole(root, {keep})
    assert [i.name for i in opened.all()] == ["keep"]
    assert opened.recovered.removed


def test_kill_after_commit_keeps_the_image(tmp_path: Path, store: tuple[Path, str]) -> None:
    root, keep = store
    _run_until(tmp_path, root, "committed", "create")
    opened = assert_store_whole(root, {keep})
    assert sorted(str(i.name) for i in opened.all()) == ["keep", "victim"]


def test_kill_between_delete_commit_and_unlink(tmp_path: Path,
                                               store: tuple[Path, str]) -> None:
    root, keep = store
    other = LocalManager(path=root).create(os.urandom(1000), name="gone")
    _run_until(tmp_path, root, "deleted", "delete", other.id)
    assert len(list((root / "blobs" / "sha256").iterdir())) == 2, "orphan left by the crash"
    opened = assert_store_whole(root, {keep})
    assert [i.id for i in opened.all()] == [keep]
    assert len(list((root / "blobs" / "sha256").iterdir())) == 1


def test_open_never_touches_a_live_upload(tmp_path: Path, store: tuple[Path, str]) -> None:
    root, keep = store
    flag = tmp_path / "live"
    script = CHILD.replace("time.sleep(600)", "time.sleep(8)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(root), "staged", str(flag),
                             "create"])
    try:
        while not flag.exists():
            assert proc.poll() is None
            time.sleep(0.05)
        parts = list((root / "tmp").iterdir())
        assert parts
        LocalManager(path=root)  # a concurrent open recovers what is dead, only that
        assert all(p.exists() for p in parts)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    opened = assert_store_whole(root, {keep})
    assert sorted(str(i.name) for i in opened.all()) == ["keep", "victim"]


def test_kill_mid_export_leaves_a_stale_part_the_next_export_removes(
        tmp_path: Path, store: tuple[Path, str]) -> None:
    root, keep = store
    target = tmp_path / "out.img"
    _run_until(tmp_path, root, "export", "export", keep, str(target))
    stale = [p for p in tmp_path.iterdir() if p.name.startswith(".out.img.imagehub-")]
    assert len(stale) == 1 and stale[0].name.endswith(".part") and not target.exists()
    LocalManager(path=root).export(keep).save(target)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.img.imagehub-")]
    assert target.stat().st_size == 300_000
    assert_store_whole(root, {keep})


# -- disk full ----------------------------------------------------------------------------
@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("disk-full tests need root to mount a tmpfs, and CI must run them")
        pytest.skip("disk-full tests mount a small tmpfs, which needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    filler = mount / "filler"
    with contextlib.suppress(OSError), open(filler, "ab") as fh:
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()
    return filler


def _full_store(mount: Path) -> tuple[Path, str]:
    root = mount / "store"
    keep = LocalManager(path=root).create(os.urandom(200_000), name="keep")
    return root, keep.id


def _create_fails_on_full_disk(root: Path, mount: Path,
                               hook: Callable[[pytest.MonkeyPatch], None] | None,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalManager(path=root)
    if hook is None:
        fill(mount)
    else:
        hook(monkeypatch)
    with pytest.raises(imagehub.ImageHubError, match="no space left") as exc:
        store.create(os.urandom(300_000), name="victim")
    assert isinstance(exc.value, imagehub.QuotaExceeded)
    monkeypatch.undo()


@pytest.mark.parametrize("step", ["staged", "renamed", "commit"])
def test_disk_full_at_each_create_step(small_fs: Path, step: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import imagehub.backends.local as local

    root, keep = _full_store(small_fs)

    def before_rename(mp: pytest.MonkeyPatch) -> None:
        real = os.replace

        def filled(src: str, dst: str) -> None:
            fill(small_fs)
            real(src, dst)
        mp.setattr(os, "replace", filled)  # the module the store calls it through

    def before_commit(mp: pytest.MonkeyPatch) -> None:
        mp.setattr(local, "_fsync_dir", lambda path: fill(small_fs))

    hooks = {"staged": None, "renamed": before_rename, "commit": before_commit}
    _create_fails_on_full_disk(root, small_fs, hooks[step], monkeypatch)
    blobs = {p.name for p in (root / "blobs" / "sha256").iterdir()}
    assert len(blobs) == 1, "a create whose commit failed left no blob"
    (small_fs / "filler").unlink()
    opened = assert_store_whole(root, {keep})
    assert [i.name for i in opened.all()] == ["keep"]


def test_disk_full_delete_keeps_the_image_whole(small_fs: Path) -> None:
    root, keep = _full_store(small_fs)
    store = LocalManager(path=root)
    for _ in range(3):  # fill the WAL's slack too, until a commit cannot be written
        fill(small_fs)
        try:
            store.update(keep, description="x" * 200_000)
        except imagehub.QuotaExceeded:
            break
    with pytest.raises(imagehub.QuotaExceeded, match="no space left"):
        store.delete(keep)
    (small_fs / "filler").unlink()
    opened = assert_store_whole(root, {keep})
    assert [i.id for i in opened.all()] == [keep]


# -- damaged catalog ----------------------------------------------------------------------
def _cli(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
         *args: str) -> tuple[int, str]:
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  local: {{backend: local, path: {root}}}\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(config), *args])
    return int(exc.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("damage", [
    "UPDATE images SET properties = '{not json'",
    "UPDATE images SET tags = '\"a string\"'",
    "UPDATE images SET visibility = 'everyone'",
    "UPDATE images SET created_at = 'yesterday'",
    # A checksum the stream cannot check made export a ValueError traceback; a text size
    # was shown as the size.
    "UPDATE images SET checksum = 'nonsense'",
    "UPDATE images SET checksum = 'crc32:abcd'",
    "UPDATE images SET size = 'huge'",
    "UPDATE images SET size = -1",
])
def test_bad_rows_are_one_line(tmp_path: Path, store: tuple[Path, str],
                               capsys: pytest.CaptureFixture[str], damage: str) -> None:
    root, keep = store
    with sqlite3.connect(root / "catalog.sqlite") as db:
        db.execute(damage)
    for args in (("list",), ("show", keep), ("export", keep, "-o", str(tmp_path / "x"))):
        code, err = _cli(root, tmp_path, capsys, *args)
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
        assert str(root) in err and "damaged" in err and "backup" in err


def test_damaged_page_is_one_line(tmp_path: Path, store: tuple[Path, str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    root, _keep = store
    LocalManager(path=root).create(os.urandom(1000), name="more", properties={
        f"k{i}": "v" * 200 for i in range(40)})
    with sqlite3.connect(root / "catalog.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    catalog = root / "catalog.sqlite"
    data = bytearray(catalog.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):  # every page but the header
        data[offset + 100: offset + 400] = os.urandom(300)
    catalog.write_bytes(bytes(data))
    code, err = _cli(root, tmp_path, capsys, "list")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(root) in err


def test_delete_whose_commit_fails_keeps_the_blob(store: tuple[Path, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The full disk above may strike before the delete reaches COMMIT; this pins the
    # order itself: the commit fails after every statement ran, the blob must remain.
    root, keep = store
    manager = LocalManager(path=root)
    real = LocalManager._db

    @contextlib.contextmanager
    def failing_commit(self: LocalManager, write: bool = False) -> Iterator[sqlite3.Connection]:
        with real(self, write) as db:
            yield db
            if write:
                db.execute("ROLLBACK")
                db.execute("BEGIN IMMEDIATE")  # so that the real COMMIT has one to end
                raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(LocalManager, "_db", failing_commit)
    with pytest.raises(imagehub.QuotaExceeded):
        manager.delete(keep)
    monkeypatch.undo()
    assert_store_whole(root, {keep})


@pytest.mark.parametrize("damage", [
    "UPDATE parts SET digest = '../../etc/passwd'",
    "UPDATE parts SET digest = 'ABC'",
    "UPDATE parts SET size = 'x'",
])
def test_a_damaged_part_row_is_one_line_and_never_blocks_the_scrub(
        tmp_path: Path, store: tuple[Path, str], capsys: pytest.CaptureFixture[str],
        damage: str) -> None:
    root, keep = store
    other = LocalManager(path=root).create(os.urandom(2000), name="other").id
    with sqlite3.connect(root / "catalog.sqlite") as db:
        db.execute(damage + " WHERE image_id = ?", (keep,))
    code, err = _cli(root, tmp_path, capsys, "export", keep, "-o", str(tmp_path / "x"))
    assert code == 1 and err.count("\n") == 1 and str(root) in err and "damaged" in err, err
    assert not (tmp_path / "x").exists()
    # Deleting the damaged image used to leave a note naming no file, which then failed
    # every later verify with 'damaged catalog'.
    code, err = _cli(root, tmp_path, capsys, "-q", "delete", keep)
    assert code == 0, err
    code, err = _cli(root, tmp_path, capsys, "verify", "--all", "--repair")
    assert code == 0, err
    assert_store_whole(root, {other})


@pytest.mark.parametrize("rot", ["truncated", "flipped"])
def test_a_new_image_never_shares_a_rotten_blob(tmp_path: Path, rot: str) -> None:
    # Same bytes as an existing image: the blob used to be reused as it was on disk, so
    # the new image was broken from its first day if the old file had rotted.
    root = tmp_path / "store"
    store = LocalManager(path=root)
    data = os.urandom(300_000)
    old = store.create(data, name="old")
    blob = root / "blobs" / "sha256" / (old.checksum or "").partition(":")[2]
    damaged = bytearray(blob.read_bytes())
    if rot == "truncated":
        del damaged[1000:]
    else:
        damaged[5000] ^= 0xFF
    blob.write_bytes(bytes(damaged))
    new = store.create(data, name="new")
    assert b"".join(store.export(new)) == data
    # The shared bytes are whole again, for the old image too.
    assert_store_whole(root, {old.id, new.id})


def test_ctrl_c_while_a_temp_file_is_being_made_leaves_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C lands between any two bytecodes: here, after the temp file exists and
    before anything else ran (the window mkstemp left open; seen once in CI)."""
    import fcntl

    store = LocalManager(path=tmp_path / "store")
    real_flock = fcntl.flock

    def interrupted(fd: int, op: int) -> None:
        if op == fcntl.LOCK_EX:
            raise KeyboardInterrupt
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.create(os.urandom(4096), name="cut")
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert list((tmp_path / "store" / "tmp").iterdir()) == []
    assert list(store.all()) == []
