"""Export writes under attack: a split image is placed whole or not at all, names from a
server never leave the chosen directory, and odd output paths fail as one clear line."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

import imagehub
from imagehub.backends.local import LocalManager
from imagehub.cli import main
from imagehub.streams import ImageStream, StreamPart

META = os.urandom(50_000)
ROOT = os.urandom(300_000)


@pytest.fixture
def store(tmp_path: Path) -> LocalManager:
    return LocalManager(path=tmp_path / "store")


@pytest.fixture
def split(store: LocalManager) -> imagehub.Image:
    return store.create(ROOT, metadata=META, name="split")


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


def test_a_split_part_name_taken_mid_download_places_no_part(
        tmp_path: Path, split: imagehub.Image) -> None:
    # The first part's name appears while the second part downloads. Parts used to be
    # placed last-first, so the rootfs stayed behind beside a stranger's metadata file.
    out = tmp_path / "out"
    out.mkdir()
    first = out / f"{split.id}.metadata"

    def intruder(_n: int) -> None:
        if not first.exists():
            first.write_bytes(b"someone else's")

    with pytest.raises(imagehub.OutputError, match="appeared while"):
        split.export().save(out, progress=intruder)
    assert sorted(p.name for p in out.iterdir()) == [first.name]
    assert first.read_bytes() == b"someone else's"


def test_a_failed_split_export_leaves_no_directory_it_made(
        tmp_path: Path, split: imagehub.Image) -> None:
    def bad_stream() -> ImageStream:
        return ImageStream([StreamPart("metadata", iter([META]), filename="m"),
                            StreamPart("rootfs", iter([ROOT]), filename="r")],
                           checksum="sha256:" + "0" * 64)

    target = tmp_path / "new" / "deeper"
    with pytest.raises(imagehub.ChecksumMismatch):
        bad_stream().save(target)
    assert list(tmp_path.iterdir()) == [tmp_path / "store"]
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(imagehub.ChecksumMismatch):
        bad_stream().save(existing)
    assert existing.is_dir() and list(existing.iterdir()) == []


@pytest.mark.parametrize("hostile_id", ["../escaped", "sub/../../escaped", "/tmp/escaped"])
def test_the_default_output_name_never_leaves_the_directory(
        tmp_path: Path, store: LocalManager, hostile_id: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The default file name is the image id, which a server chooses: give the catalog an
    # id that is a path, as a hostile server would, and export without -o.
    image = store.create(b"bytes", name="one")
    with sqlite3.connect(tmp_path / "store" / "catalog.sqlite") as db:
        for table, column in (("images", "id"), ("parts", "image_id")):
            db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?",
                       (hostile_id, image.id))
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    code, err = run(tmp_path, capsys, "export", "one")
    assert code == 0, err
    assert [p.name for p in work.iterdir()] == ["escaped"]
    assert not (tmp_path / "a" / "escaped").exists()
    assert not Path("/tmp/escaped").exists()


def test_a_trailing_slash_names_a_directory(tmp_path: Path, store: LocalManager) -> None:
    image = store.create(b"single", name="one")
    written = image.export().save(f"{tmp_path / 'dir'}/")
    assert (tmp_path / "dir").is_dir()
    assert [p.parent for p in written] == [tmp_path / "dir"]
    assert written[0].read_bytes() == b"single"


def test_an_empty_output_is_a_usage_error(tmp_path: Path, store: LocalManager,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store.create(b"single", name="one")
    monkeypatch.chdir(tmp_path)
    code, err = run(tmp_path, capsys, "export", "one", "-o", "")
    assert code == 2 and "empty" in err
    with pytest.raises(imagehub.InvalidArgument):
        store.export("one").save("")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clouds.yaml", "store"]


def test_a_nul_in_the_path_is_an_invalid_argument(tmp_path: Path, store: LocalManager) -> None:
    store.create(b"single", name="one")
    with pytest.raises(imagehub.InvalidArgument):
        store.export("one").save(str(tmp_path / "a\0b"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_a_longest_legal_file_name_can_be_written(tmp_path: Path, store: LocalManager,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # The temp name beside it used to be ".NAME.imagehub-XXXXXXXX.part": past 255 bytes.
    store.create(b"single", name="one")
    for name in ("x" * 255, "é" * 127):
        target = tmp_path / name
        code, err = run(tmp_path, capsys, "export", "one", "-o", str(target))
        assert code == 0, err
        assert target.read_bytes() == b"single"
    assert sorted(p.name for p in tmp_path.iterdir()
                  if p.name not in ("store", "clouds.yaml")) == sorted(["x" * 255, "é" * 127])


@pytest.mark.parametrize("promise", ["nonsense", "crc32:abcd", "shake_128:abcd", "sha256"])
def test_a_checksum_imagehub_cannot_check_refuses_the_export(tmp_path: Path,
                                                             promise: str) -> None:
    # A server (or a damaged record) promising what cannot be checked: one error, no file.
    for part_promise in (False, True):
        part = StreamPart("image", iter([b"bytes"]), filename="f",
                          checksum=promise if part_promise else None)
        stream = ImageStream([part], checksum=None if part_promise else promise)
        with pytest.raises(imagehub.BackendError, match="not one imagehub can check"):
            stream.save(tmp_path / "out")
        assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_concurrent_exports_to_one_target_all_succeed(tmp_path: Path,
                                                      store: LocalManager) -> None:
    # Each export clears stale temp files of its target: it must never take another
    # export's fresh (not yet locked) temp file for a stale one.
    import concurrent.futures

    data = os.urandom(64_000)
    image = store.create(data, name="shared")
    target = tmp_path / "out.img"

    def one(_n: int) -> None:
        store.export(image.id).save(target, force=True)

    for _round in range(10):
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one, range(8)))
        assert target.read_bytes() == data
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.img", "store"]
