"""pytest fixtures: two real LXD daemons and a loopback HTTPS image server.

Registered as a pytest plugin (``pytest_plugins``). Daemons are session-scoped
(cold start is ~0.7 s, but tests share them); every test image gets a unique
fingerprint, so tests don't step on each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers._gate import unavailable
from tests.servers.lxd import LXDDaemon, LXDUnavailable, start_daemon, stop_daemon
from tests.servers.simplestreams import ImageServer, TLSFiles, self_signed_cert


@pytest.fixture(scope="session")
def lxd_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lxd")


@pytest.fixture(scope="session")
def lxd_image_server_tls(lxd_base_dir: Path) -> TLSFiles:
    # Made before any daemon starts: the daemons read their CA bundle once.
    return self_signed_cert(lxd_base_dir / "image-server-tls", "imagehub-image-server")


@pytest.fixture(scope="session")
def lxd_client_tls(lxd_base_dir: Path) -> TLSFiles:
    """A client certificate/key pair, not yet trusted by any daemon."""
    return self_signed_cert(lxd_base_dir / "client-tls", "imagehub-client")


def _start(lxd_base_dir: Path, name: str, trust_ca: Path | None) -> LXDDaemon:
    if os.geteuid() != 0:
        unavailable(
            "LXD test daemons need root (lxd --group root, bind mounts); run the suite as root"
        )
    try:
        return start_daemon(lxd_base_dir, name, trust_ca=trust_ca)
    except LXDUnavailable as exc:
        unavailable(f"LXD daemon {name} unavailable: {exc}")
    except OSError as exc:
        unavailable(f"LXD daemon {name} could not start: {exc}")


@pytest.fixture(scope="session")
def lxd_daemon(
    lxd_base_dir: Path, lxd_image_server_tls: TLSFiles
) -> Iterator[LXDDaemon]:
    daemon = _start(lxd_base_dir, "lxd1", lxd_image_server_tls.cert)
    yield daemon
    stop_daemon(daemon)


@pytest.fixture(scope="session")
def lxd_daemon2(lxd_base_dir: Path) -> Iterator[LXDDaemon]:
    """A second daemon, the target of server-to-server copies.

    Its CA store does not know the loopback image server, so it pulls from there only
    when given that server's certificate (``source.certificate``).
    """
    daemon = _start(lxd_base_dir, "lxd2", None)
    yield daemon
    stop_daemon(daemon)


@pytest.fixture(scope="session")
def lxd_image_server(
    lxd_base_dir: Path, lxd_image_server_tls: TLSFiles
) -> Iterator[ImageServer]:
    with ImageServer(lxd_base_dir / "image-server", lxd_image_server_tls) as server:
        yield server
