"""The ``lxd`` backend against real LXD daemons (started by tests/servers/lxd_fixtures.py).

Nothing here is mocked: images are real LXD images built on the fly, the daemons are
real, the simplestreams and URL pulls really download from a loopback HTTPS server.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pylxd import exceptions as pylxd_exceptions  # type: ignore[import-untyped]

from imagehub.backends.lxd import LXDManager
from imagehub.backends.lxd.multipart import MultipartReader, boundary, encode
from imagehub.backends.lxd.operations import LXDOperation
from imagehub.config import parse_config
from imagehub.errors import (
    AmbiguousImage,
    AuthenticationError,
    BackendError,
    ChecksumMismatch,
    ConfigError,
    ImageConflict,
    ImageNotFound,
    InvalidImageData,
    OperationTimeout,
    PermissionDenied,
    ServerUnreachable,
    UnsupportedOperation,
)
from imagehub.models import Image, Visibility
from imagehub.testing import FilterCase, ImageManagerConformance, ImagePayload, ShareTarget
from tests.failing_sources import SOURCE_ERRORS, failing_past
from tests.servers.lxd import LXDDaemon
from tests.servers.lxd_images import (
    BuiltImage,
    iter_incompressible_unified,
    split_container_image,
    split_vm_image,
    unified_image,
)
from tests.servers.simplestreams import ImageServer, TLSFiles, self_signed_cert

MiB = 1024 * 1024


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lxd(lxd_daemon: LXDDaemon) -> Iterator[LXDManager]:
    """The first daemon over its unix socket (the usual local setup)."""
    manager = LXDManager(endpoint=str(lxd_daemon.socket_path), cloud="lxd-test")
    yield manager
    manager.close()


@pytest.fixture(scope="module")
def lxd2(lxd_daemon2: LXDDaemon) -> Iterator[LXDManager]:
    manager = LXDManager(endpoint=str(lxd_daemon2.socket_path), cloud="lxd-two")
    yield manager
    manager.close()


@pytest.fixture(scope="module")
def trusted_tls(lxd_daemon: LXDDaemon, lxd_client_tls: TLSFiles) -> TLSFiles:
    """A client certificate the first daemon trusts (via its trust password)."""
    LXDManager(endpoint=lxd_daemon.url, client_cert=str(lxd_client_tls.cert),
               client_key=str(lxd_client_tls.key), server_cert=str(lxd_daemon.server_cert),
               trust_password=lxd_daemon.trust_password).close()
    return lxd_client_tls


@pytest.fixture(scope="module")
def lxd_https(lxd_daemon: LXDDaemon, trusted_tls: TLSFiles) -> Iterator[LXDManager]:
    manager = LXDManager(endpoint=lxd_daemon.url, client_cert=str(trusted_tls.cert),
                         client_key=str(trusted_tls.key),
                         server_cert=str(lxd_daemon.server_cert), timeout=30)
    yield manager
    manager.close()


@pytest.fixture
def built(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def cleanup(lxd: LXDManager, lxd2: LXDManager) -> Iterator[list[str]]:
    """Fingerprints to delete from both daemons after the test."""
    fingerprints: list[str] = []
    yield fingerprints
    for manager in (lxd, lxd2):
        for fp in fingerprints:
            try:
                manager.delete(fp)
            except ImageNotFound:
                pass


def create(manager: LXDManager, image: BuiltImage, cleanup: list[str], **kw: Any) -> Image:
    kw.setdefault("name", f"t-{image.fingerprint[:8]}")
    made: Image
    if image.kind == "unified":
        made = manager.create(image.paths[0], **kw)
    else:
        made = manager.create(image.rootfs, metadata=image.metadata, **kw)
    cleanup.append(made.id)
    return made


def daemon_leftovers(daemon: LXDDaemon) -> set[str]:
    """What sits in the daemon's image directory (temp build dirs included)."""
    return set(os.listdir(daemon.lxd_dir / "images"))


# LXD tidies up after a failed import, and forgets finished operations, on its own
# schedule; on a loaded machine that takes far longer than on an idle one. Tests poll
# up to this long for what must happen eventually, then assert it, so a real leftover
# still fails them and a slow machine does not.
SETTLE_SECONDS = 120.0


def settle(check: Callable[[], bool], timeout: float = SETTLE_SECONDS) -> None:
    """Poll ``check`` until it holds or ``timeout`` passes; the caller asserts the end state."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.1)


def _aborted_at_least(daemon: LXDDaemon, count: int) -> bool:
    return aborted_uploads(daemon) >= count


# -- the conformance kit, for both image formats ----------------------------------------------
def _type_is(image: Image, value: Any) -> bool:
    return bool(image.container_format == value)


class _LXDKit(ImageManagerConformance):
    # LXD's own filter: the image type, which imagehub reports as container_format.
    filter_cases = {"type": FilterCase(lambda _: ["container", "virtual-machine"], _type_is)}

    @pytest.fixture
    def manager(self, lxd: LXDManager) -> LXDManager:
        return lxd

    @pytest.fixture
    def share_target(self) -> ShareTarget:
        # LXD shares with everyone or no one: the public flag.
        return ShareTarget("*")


class TestLXDConformanceUnified(_LXDKit):
    @pytest.fixture
    def image_payload(self, tmp_path: Path) -> ImagePayload:
        # Uncompressed tar: the kit's "same name, other bytes" case appends a byte, which
        # a tar reader ignores and a gzip reader would not.
        image = unified_image(tmp_path, compression="")
        return ImagePayload([image.paths[0].read_bytes()])


class TestLXDConformanceSplit(_LXDKit):
    @pytest.fixture
    def image_payload(self, tmp_path: Path) -> ImagePayload:
        image = split_container_image(tmp_path)
        return ImagePayload([image.metadata.read_bytes(), image.rootfs.read_bytes()])


# -- formats and round trips ----------------------------------------------------------------
@pytest.mark.parametrize("compression", ["gz", "xz", "bz2", ""])
def test_unified_round_trip_keeps_fingerprint(lxd: LXDManager, built: Path,
                                              cleanup: list[str], compression: Any) -> None:
    image = unified_image(built, compression=compression)
    made = create(lxd, image, cleanup)
    assert made.id == image.fingerprint
    assert made.checksum == f"sha256:{image.fingerprint}"
    written = lxd.export(made).save(built / "export")
    assert [p.read_bytes() for p in written] == [image.paths[0].read_bytes()]
    lxd.delete(made)
    again = lxd.create(written[0], name="again")
    assert again.id == image.fingerprint


@pytest.mark.parametrize("builder", [split_container_image, split_vm_image])
def test_split_round_trip_parses_multipart(lxd: LXDManager, built: Path, cleanup: list[str],
                                           builder: Callable[..., BuiltImage]) -> None:
    image = builder(built)
    made = create(lxd, image, cleanup)
    assert made.id == image.fingerprint  # sha256(metadata || rootfs)
    assert made.container_format == image.kind
    with lxd.export(made) as stream:
        assert stream.disk_format == "lxd-split"
        got = {part.name: b"".join(chunks) for part, chunks in stream.iter_parts()}
        rootfs_name = "rootfs.img" if image.kind == "virtual-machine" else "rootfs"
        assert got == {"metadata": image.metadata.read_bytes(),
                       rootfs_name: image.rootfs.read_bytes()}
        assert stream.parts[0].filename == f"meta-{image.fingerprint}.tar.xz"
        assert stream.parts[1].filename is not None
        assert stream.parts[1].filename.startswith(image.fingerprint)
    out = lxd.export(made).save(built / "out")
    lxd.delete(made)
    again = lxd.create(out[1], metadata=out[0], name="again")
    assert again.id == image.fingerprint
    assert again.container_format == image.kind


def test_split_export_skipping_metadata_still_yields_rootfs(lxd: LXDManager, built: Path,
                                                            cleanup: list[str]) -> None:
    image = split_container_image(built)
    made = create(lxd, image, cleanup)
    with lxd.export(made) as stream:
        assert b"".join(stream.parts[1].chunks) == image.rootfs.read_bytes()


def test_vm_type_can_be_forced(lxd: LXDManager, built: Path, cleanup: list[str]) -> None:
    image = split_container_image(built)
    made = create(lxd, image, cleanup, type="virtual-machine")
    assert made.container_format == "virtual-machine"


def test_multipart_codec_survives_any_chunking() -> None:
    import random

    rng = random.Random(5)
    for _ in range(50):
        first, second = os.urandom(rng.randint(0, 3000)), os.urandom(rng.randint(0, 3000))
        mark = boundary()
        body = b"".join(encode([("metadata", "m", [first]), ("rootfs", "r", [second])], mark))
        cuts = sorted(rng.sample(range(1, len(body)), 20))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        reader = MultipartReader(pieces, mark)
        head = reader.next_part()
        assert head is not None and head.name == "metadata"
        assert b"".join(reader.body()) == first
        head = reader.next_part()
        assert head is not None and (head.name, head.filename) == ("rootfs", "r")
        assert b"".join(reader.body()) == second
        assert reader.next_part() is None


# -- streaming in bounded memory ------------------------------------------------------------
@pytest.mark.parametrize("split", [False, True])
def test_create_and_export_stream_in_bounded_memory(lxd: LXDManager, built: Path,
                                                    cleanup: list[str], split: bool) -> None:
    size = 48
    # Built before tracing starts: the xz encoder alone allocates ~90 MiB.
    meta = unified_image(built, compression="xz").paths[0]  # any tarball with metadata.yaml
    tracemalloc.start()
    try:
        if split:
            rootfs = iter_incompressible_unified(size)
            made = lxd.create(rootfs, metadata=meta, name="big-split", type="container")
        else:
            made = lxd.create(iter_incompressible_unified(size), name="big")
        cleanup.append(made.id)
        _, create_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        total = 0
        digest = hashlib.sha256()
        with lxd.export(made) as stream:
            for chunk in stream:
                total += len(chunk)
                digest.update(chunk)
        _, export_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total >= size * MiB
    assert digest.hexdigest() == made.id
    # A few 1 MiB chunks in flight, never the image.
    assert create_peak < 12 * MiB, create_peak
    assert export_peak < 12 * MiB, export_peak


# -- listing, filters, lookup ---------------------------------------------------------------
def _count_image_listings(manager: LXDManager) -> list[str]:
    calls: list[str] = []

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.request.method == "GET" and response.request.path_url.split("?")[0] \
                .endswith("/1.0/images"):
            calls.append(response.request.path_url)

    manager.api.session.hooks["response"].append(hook)
    return calls


def test_listing_is_one_recursive_request(lxd: LXDManager, built: Path,
                                          cleanup: list[str]) -> None:
    for _ in range(3):
        create(lxd, unified_image(built), cleanup)
    calls = _count_image_listings(lxd)
    try:
        found = list(lxd.all())
    finally:
        lxd.api.session.hooks["response"].clear()
    assert {fp for fp in cleanup} <= {i.id for i in found}
    assert len(calls) == 1 and "recursion=1" in calls[0]


def test_filters(lxd: LXDManager, built: Path, cleanup: list[str]) -> None:
    alpha = create(lxd, unified_image(built, properties={"os": "alpha", "release": "1"}),
                   cleanup, aliases=["filters-alpha"])
    beta = create(lxd, split_container_image(built, properties={"os": "beta"}), cleanup,
                  visibility="public")
    vm = create(lxd, split_vm_image(built, properties={"os": "beta"}), cleanup)
    mine = set(cleanup)

    def ids(**filters: Any) -> set[str]:
        return {i.id for i in lxd.all(**filters)} & mine

    assert ids(**{"properties.os": "alpha"}) == {alpha.id}
    assert ids(os="beta") == {beta.id, vm.id}
    assert ids(type="virtual-machine") == {vm.id}
    assert ids(type="container") == {alpha.id, beta.id}
    assert ids(public=True) == {beta.id}
    assert ids(public=False) == {alpha.id, vm.id}
    assert ids(alias="filters-alpha") == {alpha.id}
    assert ids(architecture="amd64" if alpha.architecture == "x86_64" else "arm64") == mine
    assert ids(architecture="s390x") == set()
    with pytest.raises(Exception, match="type must be one of"):
        list(lxd.all(type="vm"))


def test_latest_keeps_newest_of_each_family(lxd: LXDManager, built: Path,
                                            cleanup: list[str]) -> None:
    # LXD 5.0 reports created_at as the import time, so builds imported within one
    # second tie on it; the serial (as simplestreams images carry it) then decides.
    family = {"os": "latestos", "release": "9", "variant": "cloud"}
    old = create(lxd, unified_image(built, properties={**family, "serial": "20240101_0000"}),
                 cleanup)
    new = create(lxd, unified_image(built, properties={**family, "serial": "20250101_0000"}),
                 cleanup)
    other = create(lxd, unified_image(built, properties={**family, "release": "10",
                                                         "serial": "20200101_0000"}), cleanup)
    latest = {i.id for i in lxd.all(latest=True, os="latestos")}
    assert latest == {new.id, other.id}
    assert old.family == "latestos/9/cloud" and old.version == "20240101_0000"


def test_get_by_fingerprint_prefix_alias_and_name(lxd: LXDManager, built: Path,
                                                  cleanup: list[str]) -> None:
    made = create(lxd, unified_image(built), cleanup, name="lookup-name",
                  aliases=["lookup-alias"])
    assert lxd.get(made.id).id == made.id
    assert lxd.get(made.id[:12]).id == made.id
    assert lxd.get("lookup-alias").id == made.id
    assert lxd.get("lookup-name").id == made.id
    with pytest.raises(ImageNotFound):
        lxd.get("no-such-alias-or-name")
    with pytest.raises(ImageNotFound):
        lxd.get("f" * 64)


def test_ambiguous_prefix(lxd: LXDManager, built: Path, cleanup: list[str]) -> None:
    # Prefixes shorter than 4 characters never select an image (a typo must not pick
    # one to delete); a shared name is ambiguous, listing both.
    first = create(lxd, unified_image(built), cleanup, name="ambiguous-twin")
    second = create(lxd, unified_image(built), cleanup, name="ambiguous-twin")
    with pytest.raises(ImageNotFound):
        lxd.get(first.id[:3])
    with pytest.raises(AmbiguousImage) as exc:
        lxd.get("ambiguous-twin")
    assert {c.id for c in exc.value.candidates} == {first.id, second.id}


# -- creates from URL and simplestreams (LXD downloads from the loopback server) ------------
def test_create_from_url(lxd: LXDManager, lxd_image_server: ImageServer, built: Path,
                         cleanup: list[str]) -> None:
    image = unified_image(built)
    url = lxd_image_server.add_direct(image)
    made = lxd.create_from_url(url, name="from-url", aliases=["url-alias"], public=True,
                               properties={"origin": "url"})
    assert isinstance(made, Image)
    cleanup.append(made.id)
    assert made.id == image.fingerprint
    assert made.name == "from-url" and made.aliases == ("url-alias",)
    assert made.visibility is Visibility.PUBLIC and made.properties["origin"] == "url"
    fetched = [r.path for r in lxd_image_server.requested("GET")]
    assert any(image.paths[0].name in p for p in fetched), "LXD must download it itself"


@pytest.mark.parametrize("kind", ["unified", "container", "virtual-machine"])
def test_create_from_simplestreams(lxd: LXDManager, lxd_image_server: ImageServer,
                                   built: Path, cleanup: list[str], kind: str) -> None:
    image = {"unified": unified_image, "container": split_container_image,
             "virtual-machine": split_vm_image}[kind](built)
    stream = lxd_image_server.publish_stream({f"ss/{kind}": image})
    made = lxd.create_from_simplestreams(
        stream, f"ss/{kind}", certificate=str(lxd_image_server.tls.cert),
        image_type="virtual-machine" if kind == "virtual-machine" else None,
        name=f"ss-{kind}", aliases=[f"ss-{kind}-local"])
    assert isinstance(made, Image)
    cleanup.append(made.id)
    assert made.id == image.fingerprint
    assert made.aliases == (f"ss-{kind}-local",)
    assert made.container_format == ("virtual-machine" if kind == "virtual-machine"
                                     else "container")


def test_simplestreams_certificate_makes_lxd_trust_the_server(
        lxd2: LXDManager, lxd_image_server: ImageServer, built: Path,
        cleanup: list[str]) -> None:
    # The second daemon's CA store does not know the image server.
    image = unified_image(built)
    stream = lxd_image_server.publish_stream({"ss/pinned": image})
    before = {i.id for i in lxd2.all()}
    with pytest.raises(BackendError) as info:
        lxd2.create_from_simplestreams(stream, "ss/pinned")
    assert "certificate signed by unknown authority" in (info.value.server_message or "")
    assert {i.id for i in lxd2.all()} == before
    made = lxd2.create_from_simplestreams(stream, "ss/pinned",
                                          certificate=lxd_image_server.tls.pem)
    assert isinstance(made, Image)
    cleanup.append(made.id)
    assert made.id == image.fingerprint


def test_operation_wait_honours_its_timeout(lxd: LXDManager, lxd_image_server: ImageServer,
                                            built: Path, cleanup: list[str]) -> None:
    image = unified_image(built)
    # The download is held until released below: a wait that ignored its timeout
    # would still be blocked on it (or, past the server's hold limit, return the image
    # instead of raising), however slow the machine.
    release = threading.Event()
    url = lxd_image_server.add_direct(image, hold=release)
    op = lxd.create_from_url(url, wait=False)
    assert isinstance(op, LXDOperation)
    try:
        with pytest.raises(OperationTimeout):
            op.wait(timeout=0.5)
        assert not op.reload().status.done
    finally:
        release.set()
    result = op.wait(timeout=120)
    cleanup.append(result.id)
    assert result.id == image.fingerprint


def test_operation_result_survives_lxd_forgetting_it(lxd: LXDManager, built: Path,
                                                     cleanup: list[str]) -> None:
    image = unified_image(built)
    op = lxd.create(image.paths[0], name="late", wait=False)

    def forgotten() -> bool:
        try:
            lxd.api.operations[op.id].get()
        except pylxd_exceptions.NotFound:
            return True
        return False

    # LXD drops an operation about 5 s after it ends; when it ends depends on the load.
    settle(forgotten)
    with pytest.raises(pylxd_exceptions.NotFound):
        lxd.api.operations[op.id].get()
    result = op.wait(timeout=60)
    cleanup.append(result.id)
    assert result.id == image.fingerprint


# -- checksums and failed imports ---------------------------------------------------------------
def test_promised_checksums_are_checked(lxd: LXDManager, built: Path,
                                        cleanup: list[str]) -> None:
    image = unified_image(built)
    md5 = hashlib.md5(image.paths[0].read_bytes()).hexdigest()
    before = {i.id for i in lxd.all()}
    with pytest.raises(ChecksumMismatch):
        lxd.create(image.paths[0], name="bad-md5", checksum="md5:" + "0" * 32)
    with pytest.raises(ChecksumMismatch) as info:
        lxd.create(image.paths[0], name="bad-sha", checksum="sha256:" + "1" * 64)
    assert "fingerprints don't match" in (info.value.server_message or "")
    assert {i.id for i in lxd.all()} == before
    made = create(lxd, image, cleanup, checksum=f"md5:{md5}")
    assert made.id == image.fingerprint


def _broken_images(built: Path) -> list[tuple[str, bytes, str]]:
    return [
        ("random bytes", os.urandom(4096), "Unsupported compression"),
        ("no metadata.yaml",
         unified_image(built, include_metadata=False).paths[0].read_bytes(),
         "Metadata tarball is missing metadata.yaml"),
        ("no creation date",
         unified_image(built, omit_metadata_keys=["creation_date"]).paths[0].read_bytes(),
         "Missing creation date"),
        ("bad architecture",
         unified_image(built, architecture="pdp11").paths[0].read_bytes(),
         "Architecture isn't supported"),
    ]


def test_invalid_images_map_to_invalid_image_data_and_leave_nothing(
        lxd: LXDManager, lxd_daemon: LXDDaemon, built: Path) -> None:
    before = ({i.id for i in lxd.all()}, daemon_leftovers(lxd_daemon))
    for what, data, words in _broken_images(built):
        with pytest.raises(InvalidImageData) as info:
            lxd.create(data, name=what)
        assert words in str(info.value), what
        assert info.value.server_message and words in info.value.server_message
    settle(lambda: daemon_leftovers(lxd_daemon) == before[1])
    assert ({i.id for i in lxd.all()}, daemon_leftovers(lxd_daemon)) == before


# LXD logs this (at error level, so always) when an upload's body ends before it is
# whole, right before it removes that upload's lxd_build_* directory. It is the event
# to wait for: "no build dir" alone also holds before LXD has even started on the
# request, which a loaded machine delays.
ABORTED_UPLOAD = "Store image POST data to disk"


def aborted_uploads(daemon: LXDDaemon) -> int:
    return daemon.log_path.read_text(errors="replace").count(ABORTED_UPLOAD)


@pytest.mark.parametrize("transport", ["socket", "https"])
@pytest.mark.parametrize("kind", sorted(SOURCE_ERRORS))
def test_source_failing_midway_ends_the_upload_and_leaves_nothing(
        lxd_daemon: LXDDaemon, trusted_tls: TLSFiles, built: Path, kind: str,
        transport: str) -> None:
    # A request timeout, generous for a loaded machine, so that an upload left waiting
    # for the rest of its body fails this test instead of hanging it.
    if transport == "socket":
        manager = LXDManager(endpoint=str(lxd_daemon.socket_path), timeout=120)
    else:
        manager = LXDManager(endpoint=lxd_daemon.url, client_cert=str(trusted_tls.cert),
                             client_key=str(trusted_tls.key),
                             server_cert=str(lxd_daemon.server_cert), timeout=120)
    meta = unified_image(built).paths[0]
    with manager:
        before = ({i.id for i in manager.all()}, daemon_leftovers(lxd_daemon))
        logged = aborted_uploads(lxd_daemon)
        for split in (False, True):
            error = SOURCE_ERRORS[kind]()
            # Past the head create reads to label the bytes: the upload has begun.
            source = failing_past(2 * MiB, error, iter_incompressible_unified(8))
            with pytest.raises(type(error)) as info:
                if split:
                    manager.create(source, metadata=meta, name="half-split",
                                   type="container")
                else:
                    manager.create(source, name="half")
            # The caller sees what the source raised, not a transport error.
            assert info.value is error
            logged += 1
            # LXD saw the body end (not a read timeout: there is none on its side)...
            settle(functools.partial(_aborted_at_least, lxd_daemon, logged))
            assert aborted_uploads(lxd_daemon) >= logged
            # ...and removes its build directory right after saying so.
            settle(lambda: daemon_leftovers(lxd_daemon) == before[1])
            assert ({i.id for i in manager.all()}, daemon_leftovers(lxd_daemon)) == before


def test_conflicts(lxd: LXDManager, built: Path, cleanup: list[str]) -> None:
    image = unified_image(built)
    made = create(lxd, image, cleanup, aliases=["conflict-alias"])
    with pytest.raises(ImageConflict, match="Image with same fingerprint already exists"):
        lxd.create(image.paths[0], name="twice")
    with pytest.raises(ImageConflict, match="already exists"):
        lxd.add_alias(made, "conflict-alias")
    other = unified_image(built)
    before = {i.id for i in lxd.all()}
    with pytest.raises(ImageConflict, match="conflict-alias"):
        lxd.create(other.paths[0], name="alias-taken", aliases=["conflict-alias"])
    assert {i.id for i in lxd.all()} == before


def test_not_found(lxd: LXDManager) -> None:
    with pytest.raises(ImageNotFound):
        lxd.delete("0" * 64)
    with pytest.raises(ImageNotFound):
        lxd.remove_alias("no-such-alias")
    with pytest.raises(ImageNotFound):
        lxd.export("e" * 64)


# -- aliases, properties, flags ------------------------------------------------------------
def test_aliases_keep_descriptions(lxd: LXDManager, built: Path, cleanup: list[str]) -> None:
    made = create(lxd, unified_image(built), cleanup)
    updated = lxd.add_alias(made, "described", description="the stable one")
    assert "described" in updated.aliases
    assert lxd.alias_description("described") == "the stable one"
    assert updated.raw["aliases"] == [{"name": "described", "description": "the stable one"}]
    lxd.remove_alias("described")
    assert lxd.get(made.id).aliases == ()


def test_update_properties_name_and_auto_update(lxd: LXDManager, built: Path,
                                                cleanup: list[str]) -> None:
    made = create(lxd, unified_image(built, properties={"os": "ubuntu"}), cleanup,
                  properties={"drop": "me"})
    assert made.properties["drop"] == "me" and made.raw["auto_update"] is False
    updated = lxd.update(made, name="renamed", description="new words",
                         properties={"release": "24.04"}, remove_properties=["drop"],
                         auto_update=True)
    assert updated.name == "renamed" and updated.description == "new words"
    assert updated.properties["release"] == "24.04" and "drop" not in updated.properties
    assert updated.properties["os"] == "ubuntu"
    assert updated.raw["auto_update"] is True
    assert lxd.get(made.id).raw["profiles"] == ["default"]
    with pytest.raises(Exception, match="cannot update"):
        lxd.update(made, tags=["x"])


def test_public_flag_is_sharing(lxd: LXDManager, lxd_daemon: LXDDaemon, built: Path,
                                cleanup: list[str], tmp_path: Path) -> None:
    made = create(lxd, unified_image(built), cleanup)
    stranger = self_signed_cert(tmp_path / "stranger", "stranger")
    untrusted = LXDManager(endpoint=lxd_daemon.url, client_cert=str(stranger.cert),
                           client_key=str(stranger.key), server_cert=str(lxd_daemon.server_cert))
    assert not untrusted.trusted
    with pytest.raises(ImageNotFound):
        untrusted.get(made.id)
    member = lxd.share(made, "*")
    assert member.member_id == "*" and member.status.value == "accepted"
    assert lxd.get(made.id).visibility is Visibility.PUBLIC
    assert untrusted.get(made.id).id == made.id
    with untrusted.export(made.id) as stream:
        assert hashlib.sha256(b"".join(stream)).hexdigest() == made.id
    lxd.unshare(made, "*")
    with pytest.raises(ImageNotFound):
        untrusted.get(made.id)
    with pytest.raises(UnsupportedOperation, match="private or public"):
        lxd.share(made, "some-project")
    with pytest.raises(UnsupportedOperation, match="private or public"):
        lxd.members(made)


# -- connection ------------------------------------------------------------------------------
def test_https_with_pinned_cert_ignores_ca_bundle_variables(
        lxd_daemon: LXDDaemon, trusted_tls: TLSFiles, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # A bundle that trusts nothing: with requests' defaults it would override the pin.
    bogus = tmp_path / "bundle.pem"
    bogus.write_text(self_signed_cert(tmp_path / "ca", "nobody").pem)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bogus))
    manager = LXDManager(endpoint=lxd_daemon.url, client_cert=str(trusted_tls.cert),
                         client_key=str(trusted_tls.key),
                         server_cert=str(lxd_daemon.server_cert))
    assert manager.trusted
    assert isinstance(list(manager.all()), list)


def test_https_wrong_pin_is_refused(lxd_daemon: LXDDaemon, lxd_daemon2: LXDDaemon,
                                    trusted_tls: TLSFiles) -> None:
    with pytest.raises(ServerUnreachable, match="does not match the pinned"):
        LXDManager(endpoint=lxd_daemon.url, client_cert=str(trusted_tls.cert),
                   client_key=str(trusted_tls.key), server_cert=str(lxd_daemon2.server_cert))


def test_trust_password_creates_and_trusts_a_client_cert(lxd_daemon: LXDDaemon,
                                                         tmp_path: Path) -> None:
    cert, key = tmp_path / "new" / "client.crt", tmp_path / "new" / "client.key"
    with pytest.raises(AuthenticationError, match="refused the trust password"):
        LXDManager(endpoint=lxd_daemon.url, client_cert=str(cert), client_key=str(key),
                   server_cert=str(lxd_daemon.server_cert), trust_password="wrong")
    assert cert.exists() and key.exists() and (key.stat().st_mode & 0o777) == 0o600
    manager = LXDManager(endpoint=lxd_daemon.url, client_cert=str(cert), client_key=str(key),
                         server_cert=str(lxd_daemon.server_cert),
                         trust_password=lxd_daemon.trust_password)
    assert manager.trusted


def test_untrusted_client_gets_authentication_error(lxd_daemon: LXDDaemon, built: Path,
                                                    tmp_path: Path) -> None:
    stranger = self_signed_cert(tmp_path / "s", "stranger")
    manager = LXDManager(endpoint=lxd_daemon.url, client_cert=str(stranger.cert),
                         client_key=str(stranger.key), server_cert=str(lxd_daemon.server_cert))
    with pytest.raises(AuthenticationError) as info:
        manager.create(unified_image(built).paths[0], name="nope")
    assert "lxc config trust add" in str(info.value)
    assert info.value.server_message == "not authorized"


def test_restricted_certificate_gets_permission_denied(lxd: LXDManager,
                                                       lxd_daemon: LXDDaemon, built: Path,
                                                       tmp_path: Path) -> None:
    project = "restricted-" + os.urandom(3).hex()
    lxd.api.projects.post(json={"name": project, "config": {"features.images": "true"}})
    tls = self_signed_cert(tmp_path / "r", "restricted")
    der = x509.load_pem_x509_certificate(tls.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    lxd.api.certificates.post(json={"type": "client", "name": project, "restricted": True,
                                    "projects": [project],
                                    "certificate": base64.b64encode(der).decode()})
    manager = LXDManager(endpoint=lxd_daemon.url, client_cert=str(tls.cert),
                         client_key=str(tls.key), server_cert=str(lxd_daemon.server_cert))
    with pytest.raises(PermissionDenied, match="not authorized"):
        manager.create(unified_image(built).paths[0], name="nope")
    # In its own project the same certificate may create, and the image stays there.
    scoped = LXDManager(endpoint=lxd_daemon.url, client_cert=str(tls.cert),
                        client_key=str(tls.key), server_cert=str(lxd_daemon.server_cert),
                        project=project)
    made = scoped.create(unified_image(built).paths[0], name="scoped")
    assert made.id in {i.id for i in scoped.all()}
    assert made.id not in {i.id for i in lxd.all()}
    scoped.delete(made)


def test_lxc_remote_configuration(lxd_daemon: LXDDaemon, trusted_tls: TLSFiles,
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "lxc"
    (conf / "servercerts").mkdir(parents=True)
    (conf / "client.crt").write_bytes(trusted_tls.cert.read_bytes())
    (conf / "client.key").write_bytes(trusted_tls.key.read_bytes())
    (conf / "servercerts" / "lab.crt").write_bytes(lxd_daemon.server_cert.read_bytes())
    (conf / "config.yml").write_text(yaml.safe_dump({"default-remote": "lab", "remotes": {
        "lab": {"addr": lxd_daemon.url, "protocol": "lxd", "auth_type": "tls",
                "public": False},
        "images": {"addr": "https://images.example", "protocol": "simplestreams",
                   "public": True},
    }}))
    monkeypatch.setenv("LXD_CONF", str(conf))
    manager = LXDManager(remote="lab")
    assert manager.trusted and manager.https_url() == lxd_daemon.url
    with pytest.raises(ConfigError, match="simplestreams image server"):
        LXDManager(remote="images")
    with pytest.raises(ConfigError, match="no remote named"):
        LXDManager(remote="missing")


def test_lxc_without_config_has_its_builtin_local_remote(
        lxd_daemon: LXDDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before anything wrote lxc's config.yml, lxc still has 'local' (the daemon's socket),
    and so has imagehub: as the discovered cloud 'lxc-local' and as remote='local'."""
    conf = tmp_path / "fresh-lxc"
    conf.mkdir()
    monkeypatch.setenv("LXD_CONF", str(conf))
    monkeypatch.setenv("LXD_DIR", str(lxd_daemon.lxd_dir))
    made = LXDManager(endpoint=str(lxd_daemon.socket_path))
    ids = {i.id for i in made.all()}
    assert {i.id for i in LXDManager(remote="local").all()} == ids
    config = parse_config({"clouds": {}})
    assert {i.id for i in config.connect("lxc-local").all()} == ids
    with pytest.raises(ConfigError, match=r"no lxc client configuration.*remotes: images, "
                                          r"local, ubuntu, ubuntu-daily"):  # and more
        LXDManager(remote="lab")
    assert not (conf / "config.yml").exists() and list(conf.iterdir()) == []


def test_clouds_file_builds_the_manager(lxd_daemon: LXDDaemon, trusted_tls: TLSFiles) -> None:
    config = parse_config({"clouds": {
        "sock": {"backend": "lxd", "endpoint": str(lxd_daemon.socket_path), "timeout": 10},
        "tls": {"backend": "lxd", "endpoint": lxd_daemon.url,
                "client_cert": str(trusted_tls.cert), "client_key": str(trusted_tls.key),
                "server_cert": str(lxd_daemon.server_cert)},
    }})
    for cloud in ("sock", "tls"):
        manager = config.connect(cloud)
        assert isinstance(manager, LXDManager) and manager.cloud == cloud
        assert isinstance(list(manager.all()), list)


def test_paths_in_the_clouds_file_may_start_with_a_tilde(
        lxd_daemon: LXDDaemon, trusted_tls: TLSFiles, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, source in (("client.crt", trusted_tls.cert), ("client.key", trusted_tls.key),
                         ("server.crt", lxd_daemon.server_cert)):
        (tmp_path / name).write_bytes(source.read_bytes())
    config = parse_config({"clouds": {"lab": {
        "backend": "lxd", "endpoint": lxd_daemon.url, "client_cert": "~/client.crt",
        "client_key": "~/client.key", "server_cert": "~/server.crt"}}})
    manager = config.connect("lab")
    assert isinstance(manager, LXDManager) and manager.trusted


def test_missing_socket_is_server_unreachable(tmp_path: Path) -> None:
    with pytest.raises(ServerUnreachable, match="cannot reach"):
        LXDManager(endpoint=str(tmp_path / "no.socket"))


# -- native copy -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "pull", "push", "relay"])
def test_copy_from_a_socket_source(lxd: LXDManager, lxd2: LXDManager, built: Path,
                                   cleanup: list[str], mode: str) -> None:
    made = create(lxd, split_container_image(built), cleanup, aliases=[f"copy-{mode}"])
    lxd.add_alias(made, f"copy-{mode}-described", description="kept")
    copied = lxd.copy_to(made, lxd2, mode=mode)
    assert copied.id == made.id
    assert set(copied.aliases) == {f"copy-{mode}", f"copy-{mode}-described"}
    assert lxd2.alias_description(f"copy-{mode}-described") == "kept"
    assert copied.properties == lxd.get(made.id).properties
    assert copied.visibility is Visibility.PRIVATE


@pytest.mark.parametrize("mode", ["pull", "push", "relay"])
def test_copy_public_image(lxd: LXDManager, lxd2: LXDManager, built: Path,
                           cleanup: list[str], mode: str) -> None:
    made = create(lxd, unified_image(built), cleanup, visibility="public")
    copied = lxd.copy_to(made, lxd2, mode=mode)
    assert copied.id == made.id and copied.visibility is Visibility.PUBLIC


def test_copy_vm_image_by_relay_and_https_source(lxd_https: LXDManager, lxd2: LXDManager,
                                                 built: Path, cleanup: list[str]) -> None:
    made = create(lxd_https, split_vm_image(built), cleanup)
    assert lxd_https.plan_copy(lxd2) == "pull"
    copied = lxd_https.copy_to(made.id, lxd2, aliases=False)
    assert copied.container_format == "virtual-machine"
    lxd2.delete(copied)
    copied = lxd_https.copy_to(made.id, lxd2, mode="relay")
    assert copied.id == made.id and copied.container_format == "virtual-machine"


def test_copy_conflicts_before_moving_bytes(lxd: LXDManager, lxd2: LXDManager, built: Path,
                                            cleanup: list[str]) -> None:
    made = create(lxd, unified_image(built), cleanup, aliases=["copy-taken"])
    other = create(lxd2, unified_image(built), cleanup, aliases=["copy-taken"])
    with pytest.raises(ImageConflict, match="copy-taken"):
        lxd.copy_to(made, lxd2)
    assert made.id not in {i.id for i in lxd2.all()}
    copied = lxd.copy_to(made, lxd2, aliases=False)
    with pytest.raises(ImageConflict, match="already exists on the target"):
        lxd.copy_to(made, lxd2, aliases=False)
    assert copied.aliases == () and lxd2.get("copy-taken").id == other.id
