"""A threaded Hasher: the same digests as hashlib, and no thread left behind."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from imagehub.streams import Hasher


def _hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("hash-") and t.is_alive()]


@pytest.mark.parametrize("algos", [["sha256"], ["sha256", "md5"], ["sha512", "md5"]])
def test_threaded_digests_equal_hashlibs(algos: list[str]) -> None:
    chunks = [os.urandom(1 << 20) for _ in range(5)] + [b"tail"]
    hasher = Hasher(algos, threads=True)
    for chunk in chunks:
        hasher.update(chunk)
    for algo in algos:
        assert hasher.hexdigest(algo) == hashlib.new(algo, b"".join(chunks)).hexdigest()
    assert hasher.bytes == sum(map(len, chunks))


def test_a_hasher_never_fed_starts_no_thread() -> None:
    before = len(_hash_threads())
    hasher = Hasher(["sha256"], threads=True)
    assert len(_hash_threads()) == before
    hasher.close()
    assert hasher.hexdigest("sha256") == hashlib.sha256().hexdigest()


def test_closing_an_abandoned_hasher_ends_its_threads_and_later_chunks_never_block() -> None:
    before = set(_hash_threads())
    with Hasher(["sha256", "md5"], threads=True) as hasher:
        hasher.update(b"x" * 1000)
        assert len(set(_hash_threads()) - before) == 2
    assert set(_hash_threads()) - before == set()
    # A reader thread still running after the upload gave up must not wait on dead
    # threads: far more chunks than a worker's inbox holds return at once.
    done = threading.Event()

    def late() -> None:
        for _ in range(50):
            hasher.update(b"y" * 1000)
        done.set()

    threading.Thread(target=late, daemon=True).start()
    assert done.wait(30)
