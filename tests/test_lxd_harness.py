"""The LXD test harness itself works: real daemons, real images, real pulls.

These tests use raw pylxd/requests on purpose, so a failure here points at the
harness, not at imagehub's LXD backend.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pylxd  # type: ignore[import-untyped]
import pytest

from tests.servers.lxd import LXDDaemon
from tests.servers.lxd_images import (
    iter_incompressible_unified,
    sha256_files,
    split_container_image,
    split_vm_image,
    unified_image,
)
from tests.servers.simplestreams import ImageServer, TLSFiles


def socket_client(daemon: LXDDaemon) -> Any:
    return pylxd.Client(endpoint=str(daemon.socket_path))


def pinned_session(daemon: LXDDaemon, cert: tuple[str, str] | None = None) -> Any:
    # REQUESTS_CA_BUNDLE in the environment would override verify= otherwise.
    session = pylxd.client.get_session_for_url(
        daemon.url, verify=str(daemon.server_cert), cert=cert
    )
    session.trust_env = False
    return session


def wait_op(daemon: LXDDaemon, response: Any) -> dict[str, Any]:
    op = response.json()["operation"]
    client = socket_client(daemon)
    result = client.api.operations[op.split("/")[-1]].wait.get(params={"timeout": 60})
    metadata: dict[str, Any] = result.json()["metadata"]
    return metadata


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def cleanup(lxd_daemon: LXDDaemon) -> Iterator[list[str]]:
    fingerprints: list[str] = []
    yield fingerprints
    client = socket_client(lxd_daemon)
    for fp in fingerprints:
        client.api.images[fp].delete()


def test_daemon_answers_on_socket_and_pinned_https(lxd_daemon: LXDDaemon) -> None:
    info = socket_client(lxd_daemon).host_info
    assert info["auth"] == "trusted"
    assert info["environment"]["server_version"].startswith("5.")
    response = pinned_session(lxd_daemon).get(lxd_daemon.url + "/1.0", timeout=10)
    assert response.status_code == 200
    assert response.json()["metadata"]["auth"] == "untrusted"


def test_trust_password_trusts_a_client_certificate(
    lxd_daemon: LXDDaemon, lxd_client_tls: TLSFiles
) -> None:
    cert = (str(lxd_client_tls.cert), str(lxd_client_tls.key))
    client = pylxd.Client(
        endpoint=lxd_daemon.url, session=pinned_session(lxd_daemon, cert)
    )
    client.authenticate(lxd_daemon.trust_password)
    assert client.trusted


@pytest.mark.parametrize("compression", ["gz", "xz", ""])
def test_unified_import_via_pylxd(
    lxd_daemon: LXDDaemon, image_dir: Path, cleanup: list[str], compression: Any
) -> None:
    image = unified_image(image_dir, compression=compression)
    with image.paths[0].open("rb") as fh:
        created = socket_client(lxd_daemon).images.create(fh)
    cleanup.append(created.fingerprint)
    assert created.fingerprint == image.fingerprint


def test_split_imports_via_pylxd(
    lxd_daemon: LXDDaemon, image_dir: Path, cleanup: list[str]
) -> None:
    client = socket_client(lxd_daemon)
    container = split_container_image(image_dir)
    vm = split_vm_image(image_dir)
    for image, is_vm in ((container, False), (vm, True)):
        with image.metadata.open("rb") as meta, image.rootfs.open("rb") as rootfs:
            created = client.images.create(rootfs, metadata=meta, vm=is_vm)
        cleanup.append(created.fingerprint)
        assert created.fingerprint == image.fingerprint
        assert created.type == image.kind


def test_incompressible_stream_is_a_valid_image(
    lxd_daemon: LXDDaemon, image_dir: Path, cleanup: list[str]
) -> None:
    path = image_dir / "big.tar"
    with path.open("wb") as fh:
        for chunk in iter_incompressible_unified(2):
            fh.write(chunk)
    with tarfile.open(path) as tar:
        assert tar.getmember("rootfs/random.bin").size == 2 * 1024 * 1024
    # The fingerprint is the sha256 of exactly the bytes sent, hashed as they go (a
    # second generation would differ: the tar headers carry the current second).
    sent = hashlib.sha256()

    def tee() -> Iterator[bytes]:
        for chunk in iter_incompressible_unified(2, seed=7):
            sent.update(chunk)
            yield chunk

    created = socket_client(lxd_daemon).images.create(tee())
    cleanup.append(created.fingerprint)
    assert created.fingerprint == sent.hexdigest()
    assert sha256_files([path]) != created.fingerprint


def test_daemon_pulls_from_loopback_simplestreams(
    lxd_daemon: LXDDaemon,
    lxd_image_server: ImageServer,
    image_dir: Path,
    cleanup: list[str],
) -> None:
    unified = unified_image(image_dir)
    container = split_container_image(image_dir)
    stream = lxd_image_server.publish_stream(
        {"harness/unified": unified, "harness/split": container}
    )
    client = socket_client(lxd_daemon)
    for alias, image in (("harness/unified", unified), ("harness/split", container)):
        response = client.api.images.post(
            json={
                "source": {
                    "type": "image",
                    "mode": "pull",
                    "protocol": "simplestreams",
                    "server": stream,
                    "alias": alias,
                    "certificate": lxd_image_server.tls.pem,
                }
            }
        )
        op = wait_op(lxd_daemon, response)
        assert op["status"] == "Success", op["err"]
        assert op["metadata"]["fingerprint"] == image.fingerprint
        cleanup.append(image.fingerprint)


def test_daemon_pulls_from_loopback_url(
    lxd_daemon: LXDDaemon,
    lxd_image_server: ImageServer,
    image_dir: Path,
    cleanup: list[str],
) -> None:
    image = unified_image(image_dir)
    url = lxd_image_server.add_direct(image)
    response = socket_client(lxd_daemon).api.images.post(
        json={"source": {"type": "url", "mode": "pull", "url": url}}
    )
    op = wait_op(lxd_daemon, response)
    assert op["status"] == "Success", op["err"]
    cleanup.append(image.fingerprint)
    heads = [
        r
        for r in lxd_image_server.requested("HEAD")
        if r.path == url.split(lxd_image_server.url)[1]
    ]
    assert heads and "lxd-server-architectures" in heads[0].headers


def test_second_daemon_pulls_from_the_first(
    lxd_daemon: LXDDaemon, lxd_daemon2: LXDDaemon, image_dir: Path, cleanup: list[str]
) -> None:
    image = unified_image(image_dir)
    source = socket_client(lxd_daemon)
    with image.paths[0].open("rb") as fh:
        source.images.create(fh, public=True)
    cleanup.append(image.fingerprint)
    target = socket_client(lxd_daemon2)
    response = target.api.images.post(
        json={
            "source": {
                "type": "image",
                "mode": "pull",
                "protocol": "lxd",
                "server": lxd_daemon.url,
                "fingerprint": image.fingerprint,
                "certificate": lxd_daemon.server_cert.read_text(),
            }
        }
    )
    op = wait_op(lxd_daemon2, response)
    assert op["status"] == "Success", op["err"]
    target.api.images[image.fingerprint].delete()
