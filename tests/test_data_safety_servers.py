"""Data-safety rules on real LXD and Glance: refs, verify, filters, export writes."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import imagehub
from imagehub import Image, ImageManager
from imagehub.backends.glance import GlanceManager
from imagehub.backends.lxd import LXDManager
from imagehub.verify import verify_image
from tests.servers.lxd import LXDDaemon
from tests.servers.lxd_images import split_container_image, unified_image
from tests.servers.openstack import OpenStackCloud


@pytest.fixture(scope="module")
def lxd(lxd_daemon: LXDDaemon) -> Iterator[LXDManager]:
    manager = LXDManager(endpoint=str(lxd_daemon.socket_path), cloud="lxd-safety")
    yield manager
    manager.close()


@pytest.fixture(scope="module")
def glance(openstack_cloud: OpenStackCloud) -> Iterator[GlanceManager]:
    user = openstack_cloud.project("alpha")
    manager = GlanceManager.from_options(
        {"auth_type": "password", "auth": user.auth(openstack_cloud.auth_url),
         "region_name": openstack_cloud.region_name}, cloud="glance-safety")
    assert isinstance(manager, GlanceManager)
    yield manager
    manager.close()


@pytest.fixture
def made(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ImageManager, Image]]:
    """One image on the backend named by the test's parameter, deleted afterwards."""
    manager: ImageManager = request.getfixturevalue(request.param)
    tag = uuid.uuid4().hex[:10]
    if isinstance(manager, LXDManager):
        built = unified_image(tmp_path, properties={"os": "safety"})
        image = manager.create(built.paths[0], name=f"safety-{tag}", aliases=[f"s-{tag}"])
    else:
        image = manager.create(os.urandom(200_000), name=f"safety-{tag}", tags=[tag])
    yield manager, image
    with contextlib.suppress(imagehub.ImageNotFound):
        manager.delete(image.id)


BACKENDS = pytest.mark.parametrize("made", ["lxd", "glance"], indirect=True)


@BACKENDS
def test_hostile_refs_select_nothing(made: tuple[ImageManager, Image]) -> None:
    manager, image = made
    digest = (image.checksum or "").partition(":")[2]
    assert digest
    for ref in ("nosuchimage:", "sha256:", "typo:" + digest[:8], "md5:" + digest[:8],
                "sha1:" + digest[:8], digest[:3], image.id[:3],
                f"{manager.cloud}:nosuchimage:"):
        with pytest.raises(imagehub.ImageNotFound):
            manager.get(ref)
    with pytest.raises(imagehub.InvalidArgument):
        manager.get(f"{manager.cloud}:")
    algo = (image.checksum or "").partition(":")[0]
    assert manager.get(f"{algo}:{digest[:12]}").id == image.id
    assert manager.get(image.id).id == image.id


@BACKENDS
def test_verify_reads_back_whole(made: tuple[ImageManager, Image]) -> None:
    manager, image = made
    result = verify_image(manager, image)
    assert result.ok and result.bytes == image.size, result


@BACKENDS
def test_filter_vocabulary(made: tuple[ImageManager, Image]) -> None:
    manager, image = made
    with pytest.raises(imagehub.InvalidArgument, match="did you mean"):
        list(manager.all(famly="x"))
    with pytest.raises(imagehub.InvalidArgument):
        list(manager.all(latest=True, sort_key="properties"))
    assert image.size is not None
    mine = {i.id for i in manager.all(name=[image.name, "no-such-name"])}
    assert mine == {image.id}
    assert image.id in {i.id for i in manager.all(size_min=image.size, size_max=image.size)}
    assert image.id not in {i.id for i in manager.all(size_min=image.size + 1)}
    names = [i.name for i in manager.all(sort_key="name", sort_dir="desc")]
    present = [n for n in names if n is not None]
    assert present == sorted(present, reverse=True)
    assert names[len(present):] == [None] * (len(names) - len(present))  # unnamed last


@BACKENDS
def test_export_force_never_replaces_a_fifo(made: tuple[ImageManager, Image],
                                            tmp_path: Path) -> None:
    manager, image = made
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(imagehub.OutputError, match="FIFO"):
        manager.export(image).save(fifo, force=True)
    assert fifo.is_fifo()


def test_lxd_bound_remove_alias_leaves_other_images_alone(
        lxd: LXDManager, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    a = lxd.create(unified_image(tmp_path).paths[0], name=f"a-{tag}", aliases=[f"a-{tag}"])
    b = lxd.create(unified_image(tmp_path).paths[0], name=f"b-{tag}", aliases=[f"b-{tag}"])
    try:
        with pytest.raises(imagehub.ImageNotFound):
            a.remove_alias(f"b-{tag}")
        assert lxd.get(b.id).aliases == (f"b-{tag}",)
    finally:
        lxd.delete(a.id)
        lxd.delete(b.id)


def test_lxd_split_parts_with_one_file_name_both_export(lxd: LXDManager,
                                                        tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    built = split_container_image(tmp_path / "build")
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    meta = shutil.copy(built.paths[0], tmp_path / "m" / "image")
    rootfs = shutil.copy(built.paths[1], tmp_path / "r" / "image")
    image = lxd.create(rootfs, metadata=meta, name=f"split-{uuid.uuid4().hex[:8]}")
    try:
        written = lxd.export(image).save(tmp_path / "out")
        assert len(set(written)) == 2
        assert sorted(p.read_bytes() for p in written) == sorted(
            [Path(meta).read_bytes(), Path(rootfs).read_bytes()])
    finally:
        lxd.delete(image.id)


def test_glance_filter_value_with_a_colon_is_matched_exactly(glance: GlanceManager) -> None:
    name = f"odd:{uuid.uuid4().hex[:8]}"
    image = glance.create(os.urandom(1000), name=name)
    try:
        assert [i.id for i in glance.all(name=name)] == [image.id]
        assert list(glance.all(name=f"in:{name}")) == []
        assert glance.get(name).id == image.id
    finally:
        glance.delete(image.id)


@BACKENDS
def test_time_and_value_filters_agree_with_the_records(made: tuple[ImageManager, Image]) -> None:
    # created_at=OP:TIME is Glance's own syntax (sent to the server there) and is applied
    # on the client elsewhere: the answers must be the same rule.
    manager, image = made
    assert image.created_at is not None
    stamp = image.created_at.isoformat()
    mine: dict[str, Any] = {"name": image.name}
    assert [i.id for i in manager.all(created_at=f"gte:{stamp}", **mine)] == [image.id]
    assert [i.id for i in manager.all(created_at=f"lt:{stamp}", **mine)] == []
    assert [i.id for i in manager.all(created_at=f"lte:{stamp}", **mine)] == [image.id]
    assert [i.id for i in manager.all(visibility=image.visibility.value.upper(), **mine)] \
        == [image.id]
    wrong: list[dict[str, Any]] = [{"created_at": "soon"}, {"visibility": "everyone"},
                                   {"public": "maybe"}]
    for bad in wrong:
        with pytest.raises(imagehub.InvalidArgument):
            list(manager.all(**bad))


def test_glance_md5_checksum_prefix_finds_the_image(glance: GlanceManager) -> None:
    # Glance shows an md5 'checksum' beside its sha512 os_hash_value; "md5:<prefix>" of
    # what 'openstack image show' prints must find the image, and only with md5.
    image = glance.create(os.urandom(50_000), name=f"md5-{uuid.uuid4().hex[:8]}")
    try:
        md5 = str(glance.get(image.id).raw.get("checksum") or "")
        assert len(md5) == 32 and (image.checksum or "").startswith("sha512:")
        assert glance.get(f"md5:{md5[:10]}").id == image.id
        assert glance.get(f"MD5:{md5[:10].upper()}").id == image.id
        for ref in (f"sha512:{md5[:10]}", f"sha256:{md5[:10]}", f"md5:{md5[:3]}", "md5:"):
            with pytest.raises(imagehub.ImageNotFound):
                glance.get(ref)
    finally:
        glance.delete(image.id)
