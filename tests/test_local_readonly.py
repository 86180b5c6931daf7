"""A local store on read-only media is listed, exported and verified; writes are refused
as read-only, and nothing calls the healthy catalog damaged (whose advice, restore a
backup, would lose every image stored since)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import imagehub
from imagehub.backends.local import LocalManager
from imagehub.cli import main
from imagehub.verify import verify_image

DATA = os.urandom(100_000)


@pytest.fixture
def ro_store(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("read-only mounts need root, and CI must run them")
        pytest.skip("a read-only bind mount needs root")
    real = tmp_path / "real"
    image = LocalManager(path=real).create(DATA, name="kept", aliases=["k"])
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "--bind", str(real), str(mount)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        yield mount, image.id
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_reading_works(ro_store: tuple[Path, str], tmp_path: Path) -> None:
    root, image_id = ro_store
    store = LocalManager(path=root)
    assert [i.id for i in store.all()] == [image_id]
    assert store.get("k").id == image_id
    assert b"".join(store.export(image_id)) == DATA
    assert verify_image(store, image_id).ok
    assert store.check().ok


@pytest.mark.parametrize("change", [
    lambda s, i: s.delete(i), lambda s, i: s.update(i, name="x"),
    lambda s, i: s.add_alias(i, "new"), lambda s, i: s.check(repair=True),
])
def test_writes_are_refused_as_read_only(ro_store: tuple[Path, str], change: object) -> None:
    root, image_id = ro_store
    store = LocalManager(path=root)
    with pytest.raises(imagehub.PermissionDenied, match="read-only"):
        change(store, image_id)  # type: ignore[operator]
    assert [i.id for i in store.all()] == [image_id]


def test_create_fails_in_one_line_without_calling_it_damage(
        ro_store: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = ro_store
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  local: {{backend: local, path: {root}}}\n")
    source = tmp_path / "new.img"
    source.write_bytes(b"new")
    for args in (["create", str(source), "--name", "new"], ["delete", "kept"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(["--config", str(config), *args])
        err = capsys.readouterr().err
        assert exc.value.code == 1 and err.count("\n") == 1, err
        assert "damaged" not in err and "backup" not in err


def test_unmerged_changes_are_not_hidden(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    real = tmp_path / "real"
    store = LocalManager(path=real)
    store.create(b"one", name="one")
    (real / "catalog.sqlite-wal").write_bytes(b"\0" * 100)  # stands for unmerged pages
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "--bind", str(real), str(mount)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        with pytest.raises(imagehub.BackendError, match="not yet merged"):
            list(LocalManager(path=mount).all())
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_an_unreadable_read_only_catalog_is_not_called_damaged(tmp_path: Path) -> None:
    # Read without locks, a read-only catalog may be mid-change by a writer elsewhere:
    # advising to restore a backup would lose what that writer stored.
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    real = tmp_path / "real"
    LocalManager(path=real).create(b"one", name="one", properties={
        f"k{i}": "v" * 200 for i in range(40)})
    catalog = real / "catalog.sqlite"
    data = bytearray(catalog.read_bytes())
    for offset in range(4096, len(data), 4096):
        data[offset + 100: offset + 400] = os.urandom(300)
    catalog.write_bytes(bytes(data))
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "--bind", str(real), str(mount)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        with pytest.raises(imagehub.BackendError) as exc:
            list(LocalManager(path=mount).all())
        assert "read-only" in str(exc.value) and "backup" not in str(exc.value)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
