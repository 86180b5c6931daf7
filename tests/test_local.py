"""The embedded ``local`` backend: the conformance kit, concurrency and containment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import imagehub
from imagehub.backends.local import LocalManager
from imagehub.testing import ImageManagerConformance, ShareTarget


class TestLocalConformance(ImageManagerConformance):
    @pytest.fixture
    def manager(self, tmp_path: Path) -> LocalManager:
        return LocalManager(path=tmp_path / "store", project="alice", cloud="lab")

    @pytest.fixture
    def share_target(self, tmp_path: Path) -> ShareTarget:
        return ShareTarget("bob", LocalManager(path=tmp_path / "store", project="bob"))


def test_split_image_round_trip(tmp_path: Path) -> None:
    m = LocalManager(path=tmp_path / "s")
    meta, rootfs = os.urandom(1000), os.urandom(5000)
    image = m.create(rootfs, metadata=meta, name="split")
    assert image.checksum == "sha256:" + __import__("hashlib").sha256(meta + rootfs).hexdigest()
    written = m.export(image).save(tmp_path / "out")
    assert sorted(p.read_bytes() for p in written) == sorted([meta, rootfs])


def test_names_and_aliases_never_become_paths(tmp_path: Path) -> None:
    root = tmp_path / "store"
    m = LocalManager(path=root)
    before = set(tmp_path.rglob("*"))
    image = m.create(b"data", name="../../../escape")
    with pytest.raises(imagehub.ImageHubError):
        m.add_alias(image, "../../x")
    created = set(tmp_path.rglob("*")) - before
    assert all(root in p.parents or p == root for p in created)
    assert m.get("../../../escape").id == image.id


def test_concurrent_writers_do_not_corrupt(tmp_path: Path) -> None:
    store = tmp_path / "store"
    script = (
        "import sys, os\n"
        "from imagehub.backends.local import LocalManager\n"
        "m = LocalManager(path=sys.argv[1])\n"
        "for i in range(15):\n"
        "    img = m.create(os.urandom(20000), name=f'{sys.argv[2]}-{i}')\n"
        "    if i % 3 == 0: m.delete(img)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(store), f"w{n}"])
             for n in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    m = LocalManager(path=store)
    images = list(m.all())
    assert len(images) == 4 * 10
    for image in images:
        with m.export(image) as s:
            assert sum(len(c) for c in s) == 20000  # verified against its sha256 on the way
    blobs = list((store / "blobs" / "sha256").iterdir())
    assert len(blobs) == 40, "deleted images' blobs are collected, kept ones remain"
    assert not list((store / "tmp").iterdir())


def test_member_sees_pending_share_only_on_request(tmp_path: Path) -> None:
    alice = LocalManager(path=tmp_path / "s", project="alice")
    bob = LocalManager(path=tmp_path / "s", project="bob")
    image = alice.create(b"shared bytes", name="img")
    alice.share(image, "bob")
    assert image.id not in {i.id for i in bob.all()}
    assert image.id in {i.id for i in bob.all(member_status="pending")}
    with pytest.raises(imagehub.PermissionDenied):
        bob.delete(bob.get(image.id, member_status="all"))
    bob.accept(image.id)
    assert image.id in {i.id for i in bob.all()}


# Every change to an image or to what names it, tried by a project that does not own it.
_OTHERS_WRITES: dict[str, Callable[[LocalManager, str], object]] = {
    "update": lambda m, ref: m.update(ref, name="taken", properties={"k": "theirs"}),
    "update visibility": lambda m, ref: m.update(ref, visibility="private"),
    "update tags": lambda m, ref: m.update(ref, tags=["theirs"]),
    "remove property": lambda m, ref: m.update(ref, remove_properties=["k"]),
    "delete": lambda m, ref: m.delete(ref),
    "add alias": lambda m, ref: m.add_alias(ref, "theirs"),
    "remove alias": lambda m, ref: m.remove_alias("mine"),
    "remove alias of this image": lambda m, ref: m.remove_alias("mine", ref),
    "share": lambda m, ref: m.share(ref, "carol"),
    "unshare": lambda m, ref: m.unshare(ref, "bob"),
    "answer for another project": lambda m, ref: m.accept(ref, member="carol"),
}


def _owners_view(owner: LocalManager, image_id: str) -> tuple[object, ...]:
    image = owner.get(image_id)
    return (image.to_dict(), [(m.member_id, m.status) for m in owner.members(image_id)])


@pytest.mark.parametrize("write", sorted(_OTHERS_WRITES))
@pytest.mark.parametrize("seen_through", ["public", "accepted share"])
def test_another_project_cannot_change_an_image_it_sees(tmp_path: Path, write: str,
                                                        seen_through: str) -> None:
    alice = LocalManager(path=tmp_path / "s", project="alice")
    bob = LocalManager(path=tmp_path / "s", project="bob")
    image = alice.create(b"alice's bytes", name="img", aliases=["mine"],
                         properties={"k": "v"}, tags=["t"])
    alice.share(image, "carol")
    alice.share(image, "bob")
    if seen_through == "public":
        alice.update(image, visibility="public")
    else:
        bob.accept(image.id)
    assert bob.get(image.id).id == image.id
    before = _owners_view(alice, image.id)
    with pytest.raises(imagehub.PermissionDenied, match=r"alice|only project"):
        _OTHERS_WRITES[write](bob, image.id)
    assert _owners_view(alice, image.id) == before, "a refused change changed the image"


def test_another_project_cannot_remove_an_alias_of_an_image_it_cannot_see(
        tmp_path: Path) -> None:
    alice = LocalManager(path=tmp_path / "s", project="alice")
    bob = LocalManager(path=tmp_path / "s", project="bob")
    image = alice.create(b"private bytes", name="img", aliases=["mine"])
    with pytest.raises(imagehub.ImageNotFound):
        bob.get("mine")
    # For bob there is no such alias: saying whose image it names would tell what
    # alice keeps private.
    with pytest.raises(imagehub.ImageNotFound, match="no alias named 'mine'") as info:
        bob.remove_alias("mine")
    assert "alice" not in str(info.value) and image.id not in str(info.value)
    assert alice.get("mine").id == image.id
    alice.remove_alias("mine")  # its own project still can
    assert alice.get(image.id).aliases == ()


@pytest.mark.parametrize("key", ["description", "family", "version", "os", "release",
                                 "architecture"])
def test_update_promotes_a_property_to_its_field_as_create_does(tmp_path: Path,
                                                                key: str) -> None:
    m = LocalManager(path=tmp_path / "s")
    image = m.create(b"promoted", name="img", properties={key: "old"})
    assert getattr(image, key) == "old"
    updated = m.update(image, properties={key: "new"})
    for seen in (updated, m.get(image.id)):
        assert (getattr(seen, key), seen.properties[key]) == ("new", "new")
    assert [i.id for i in m.all(**_filters({key: "new"}))] == [image.id]
    assert not list(m.all(**_filters({key: "old"})))
    # The field set by name keeps the property it came from in step ...
    again = m.update(image, **{key: "newer"})
    assert (getattr(again, key), again.properties[key]) == ("newer", "newer")
    # ... and removing the property clears the field, as it always did.
    cleared = m.update(image, remove_properties=[key])
    assert getattr(cleared, key) is None and key not in cleared.properties


def _filters(given: dict[str, Any]) -> dict[str, Any]:
    """Filter keywords as the open mapping ``all(**filters)`` takes."""
    return given


@pytest.mark.parametrize(("key", "value"), [("cloud", "lab"), ("backend", "local")])
def test_cloud_and_backend_filters_match_what_images_show(tmp_path: Path, key: str,
                                                          value: str) -> None:
    m = LocalManager(path=tmp_path / "s", cloud="lab")
    made = [m.create(os.urandom(100), name=f"img{n}").id for n in range(5)]
    assert {getattr(i, key) for i in m.all()} == {value}
    assert [i.id for i in m.all(**_filters({key: value}))] == [i.id for i in m.all()]
    assert [i.id for i in m.all(**_filters({key: [value, "other"]}))] == [i.id for i in m.all()]
    assert list(m.all(**_filters({key: "other"}))) == []
    # Paging: each page full, every image once, in order; none for another value.
    seen: list[str] = []
    marker = None
    while True:
        page = m.list(limit=2, marker=marker, **{key: value})
        assert len(page) == 2 or page.next_marker is None
        seen += [i.id for i in page]
        if page.next_marker is None:
            break
        marker = page.next_marker
    assert seen == [i.id for i in m.all()] and sorted(seen) == sorted(made)
    assert list(m.list(limit=2, **{key: "other"})) == []
    assert m.get("img3", **{key: value}).name == "img3"


def test_a_split_image_takes_no_disk_format(tmp_path: Path) -> None:
    m = LocalManager(path=tmp_path / "s")
    meta, rootfs = os.urandom(300), b"QFI\xfb" + os.urandom(5000)  # even a qcow2 rootfs
    for label in ("qcow2", "raw", "foo"):
        with pytest.raises(imagehub.InvalidArgument, match="split image .* takes no disk "
                           f"format.* labelled '{label}'") as info:
            m.create(rootfs, metadata=meta, name="split", disk_format=label)
        assert info.value.cli_hint and "leave --disk-format out" in info.value.cli_hint
    assert list(m.all()) == [] and not list((tmp_path / "s" / "blobs" / "sha256").iterdir())
    # The store's own word for the layout is no disk format, and the default.
    assert m.create(rootfs, metadata=meta, name="a", disk_format="split").disk_format == "split"
    assert m.create(rootfs, metadata=meta, name="b").disk_format == "split"


def test_an_unknown_disk_format_is_refused_unless_the_backend_declares_it(
        tmp_path: Path) -> None:
    m = LocalManager(path=tmp_path / "s")
    with pytest.raises(imagehub.InvalidArgument, match="unknown disk format 'foo'; "
                       "imagehub knows aki, ami, ari, iso, ploop, qcow2, raw, vdi, vhd, "
                       "vhdx, vmdk"):
        m.create(b"some bytes", name="x", disk_format="foo")
    with pytest.raises(imagehub.InvalidArgument, match="unknown disk format 'split'"):
        m.create(b"one file", name="x", disk_format="split")  # a split image's word only
    assert list(m.all()) == []
    # Known ones in any case are recorded in their own spelling.
    assert m.create(b"QFI\xfb" + os.urandom(100), name="q",
                    disk_format="QCOW2").disk_format == "qcow2"
    assert m.create(os.urandom(100), name="a", disk_format="ami").disk_format == "ami"

    class Declaring(LocalManager):
        own_disk_formats = frozenset({"foo"})

    declared = Declaring(path=tmp_path / "d")
    assert declared.create(b"some bytes", name="x", disk_format="foo").disk_format == "foo"
