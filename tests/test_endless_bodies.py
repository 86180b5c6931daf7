"""Endless answers sent with chunked transfer encoding, as successes and as errors, on
every HTTP backend and on Keystone itself: memory and time stay bounded and the error
is one short line. (A chunked body is read by urllib3's read_chunked, not read: a cap on
read alone let keystoneauth1 read gigabytes before its deadline, and redacting a long run
of base64-like characters once took minutes.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagehub import _redact
from tests.servers.hostile import HostileServer
from tests.test_network_hygiene import (
    glance_direct,
    glance_keystone,
    lambda_cloud,
    run_cli,
    write_config,
)

TIMEOUT = 20


@pytest.fixture
def server() -> Iterator[HostileServer]:
    made = HostileServer()
    yield made
    made.close()


@pytest.mark.parametrize("mode,status", [("endless-chunked", 200), ("endless-error", 401),
                                         ("endless-error", 500)])
@pytest.mark.parametrize("backend", ["lambda", "glance", "keystone-itself"])
def test_endless_chunked_answers_are_bounded(server: HostileServer, tmp_path: Path,
                                             mode: str, status: int, backend: str) -> None:
    server.mode = mode
    server.status = status
    server.keystone_misbehaves = backend == "keystone-itself"
    make = {"lambda": lambda_cloud, "glance": glance_direct,
            "keystone-itself": glance_keystone}[backend]
    config = write_config(tmp_path, {"c": make(server, timeout=TIMEOUT)})
    result, elapsed, rss_kib = run_cli(config, "-c", "c", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("imagehub: error:"), result.stderr[-2000:]
    assert result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert len(result.stderr) < 4000, "the error line quotes the endless body at length"
    # Generous bounds: the defects took gigabytes, and minutes.
    assert rss_kib < 600 * 1024, rss_kib
    assert elapsed < TIMEOUT + 60, elapsed


def test_redacting_long_runs_of_base64_characters_is_linear() -> None:
    _redact.register("linear-secret-0f3c", "second-secret-77aa")
    started = time.monotonic()
    for text in ("x" * 2**20, "ab+/" * 2**18, "word " * 2**18):
        assert _redact.redact(text) == text
    # Quadratic backtracking took minutes for 64 KiB; linear is far under a second.
    assert time.monotonic() - started < 30
