"""imagehub verify: a scrub that reads images back, and the local store's blob check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagehub.backends.local import LocalManager
from imagehub.verify import verify_image
from tests.cli_runner import run_on_local_store

run = run_on_local_store


@pytest.fixture
def store(tmp_path: Path) -> LocalManager:
    m = LocalManager(path=tmp_path / "store")
    m.create(os.urandom(50_000), name="one")
    m.create(os.urandom(2000), metadata=os.urandom(500), name="split")
    return m


def blob(store: LocalManager, name: str, part: int = 0) -> Path:
    image = store.get(name)
    with store.export(image) as stream:
        digest = (stream.parts[part].checksum or "").split(":")[1]
    return store.root / "blobs" / "sha256" / digest


def test_a_whole_store_verifies(store: LocalManager, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(tmp_path, capsys, "verify", "--all")
    assert code == 0, err
    assert out.count(" ok") == 2 and err == ""
    code, out, _ = run(tmp_path, capsys, "verify", "one", "local:split")
    assert code == 0 and out.count(" ok") == 2


def test_flipped_byte_is_found(store: LocalManager, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    path = blob(store, "split", 1)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not verify_image(store, "split").ok
    assert verify_image(store, "one").ok
    code, out, _ = run(tmp_path, capsys, "verify", "--all")
    assert code == 1 and "FAILED" in out and "checksum mismatch" in out


def test_orphans_reported_then_repaired_missing_reported(
        store: LocalManager, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orphan = store.root / "blobs" / "sha256" / ("ab" * 32)
    orphan.write_bytes(b"nobody's")
    code, _, err = run(tmp_path, capsys, "verify", "--all")
    assert code == 1 and f"orphan blob {'ab' * 32}" in err
    assert orphan.exists(), "an orphan is removed only on request"
    code, _, err = run(tmp_path, capsys, "verify", "--all", "--repair")
    assert not orphan.exists() and "removed blobs/sha256/" in err
    assert run(tmp_path, capsys, "verify", "--all")[0] == 0
    blob(store, "one").unlink()
    code, out, err = run(tmp_path, capsys, "verify", "--all")
    assert code == 1 and "is missing blob(s)" in err and "FAILED" in out


def test_usage(store: LocalManager, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, capsys, "verify")[0] == 2
    assert run(tmp_path, capsys, "verify", "one", "--all")[0] == 2
