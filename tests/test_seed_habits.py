"""Habits from pylxd, pyrax and the Lambda client that keep working, or say what to write."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagehub.backends.local import LocalManager
from imagehub.compat import ReadOnlyImageError
from imagehub.errors import ImageNotFound, InvalidArgument
from imagehub.models import Image, MemberStatus


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalManager]:
    manager = LocalManager(path=str(tmp_path / "store"), project="alice", cloud="a")
    yield manager
    manager.close()


@pytest.fixture
def other(tmp_path: Path) -> Iterator[LocalManager]:
    manager = LocalManager(path=str(tmp_path / "other"), project="alice", cloud="b")
    yield manager
    manager.close()


def test_read_only_item_access(store: LocalManager) -> None:
    image: Image = store.create(b"x" * 1000, name="web", properties={"os": "debian"})
    assert image["name"] == "web" and image["id"] == image.id
    assert image["properties"] == {"os": "debian"}
    assert image["public"] is False
    assert image.get("no-such-key", "dflt") == "dflt"
    with pytest.raises(KeyError):
        image["no-such-key"]
    with pytest.raises(TypeError):
        image["name"] = "other"  # type: ignore[index]
    with pytest.raises(TypeError):
        iter(image)  # type: ignore[call-overload]
    raw = Image(id="abc", raw={"created_time": "2024-01-01T00:00:00Z"})
    assert raw["created_time"] == "2024-01-01T00:00:00Z"  # the Lambda client's key


@pytest.mark.parametrize(("attribute", "value", "advice"), [
    ("public", True, "image.update(public=True)"),
    ("name", "n", "image.update(name='n')"),
    ("description", "d", "image.update(description='d')"),
    ("aliases", ("a",), "add_alias"),
])
def test_seed_assignment_says_what_to_write(store: LocalManager, attribute: str,
                                            value: object, advice: str) -> None:
    image = store.create(b"y" * 100, name="img")
    with pytest.raises(ReadOnlyImageError) as info:
        setattr(image, attribute, value)
    assert advice in str(info.value)
    # Code that catches the dataclass error, or imagehub's argument errors, still does.
    assert isinstance(info.value, dataclasses.FrozenInstanceError)
    assert isinstance(info.value, InvalidArgument)
    if attribute == "public":
        assert image.update(public=True).public is True


def test_pylxd_attributes_are_fields(store: LocalManager) -> None:
    image = store.create(b"z" * 100, name="img")
    assert image.fingerprint is not None and len(image.fingerprint) == 64
    assert image.checksum == f"sha256:{image.fingerprint}"
    for name in ("uploaded_at", "expires_at", "last_used_at", "auto_update", "cached"):
        assert name in image.to_dict()
    assert Image(id="x", checksum="md5:abcd").fingerprint is None


def test_seed_method_spellings(store: LocalManager, tmp_path: Path) -> None:
    image = store.create(b"q" * 100, name="img", aliases=["one", "two"])
    store.delete_alias("one")
    assert store.get(image.id).aliases == ("two",)
    assert image.delete_alias("two").aliases == ()
    member = image.add_image_member("bob")
    assert member.member_id == "bob"
    bob = LocalManager(path=str(tmp_path / "store"), project="bob", cloud="a")
    try:
        assert bob.update_image_member(image.id, "accepted").status is MemberStatus.ACCEPTED
        assert bob.get(image.id).update_image_member("pending").status is \
            MemberStatus.PENDING
    finally:
        bob.close()
    image.delete_image_member("bob")
    assert store.members(image) == []
    with pytest.raises(ImageNotFound):
        store.delete_alias("never-was")


def test_image_copy_goes_through_migrate(store: LocalManager, other: LocalManager) -> None:
    data = os.urandom(50_000)
    image = store.create(data, name="cp")
    copied = image.copy(other)
    assert copied.manager is not store and copied.name == "cp"
    assert b"".join(other.export(copied)) == data


def test_export_is_a_read_only_file_object(store: LocalManager) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    image = store.create(data, name="big")
    with store.export(image) as stream:
        assert stream.readable() and not stream.writable() and not stream.seekable()
        head = stream.read(10)
        out = io.BytesIO()
        shutil.copyfileobj(stream, out)
        assert head + out.getvalue() == data
        assert stream.read(10) == b""
    assert stream.closed
