"""Mixin test classes and fixtures of the conformance kit (see the package docstring)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import pickle
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagehub.errors import (
    AmbiguousImage,
    ChecksumMismatch,
    ImageConflict,
    ImageHubError,
    ImageNotFound,
    UnsupportedOperation,
)
from imagehub.manager import Capability, ImageManager, declared_hooks, overridden_hooks
from imagehub.models import Image, MemberStatus, UnboundImageError, Visibility
from imagehub.streams import Source

__all__ = [
    "AliasConformance",
    "BoundImageConformance",
    "CapabilityConformance",
    "CreateExportConformance",
    "ImageManagerConformance",
    "ImagePayload",
    "ListingConformance",
    "ShareTarget",
    "SharingConformance",
    "UpdateConformance",
    "requires",
]


@dataclasses.dataclass
class ImagePayload:
    """Bytes a backend accepts for ``create``. ``parts`` are written in order; two parts
    mean a split image (metadata first). ``kwargs`` go to ``create`` as they are."""

    parts: list[bytes]
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def content(self) -> bytes:
        return b"".join(self.parts)

    def create_args(self, as_kind: str = "bytes", tmp: Path | None = None
                    ) -> tuple[Source, dict[str, Any]]:
        """The payload as the given kind of source: bytes, path, file or iterable."""
        sources = [self._as(p, as_kind, tmp, i) for i, p in enumerate(self.parts)]
        if len(sources) == 2:
            return sources[1], {"metadata": sources[0], **self.kwargs}
        return sources[0], dict(self.kwargs)

    @staticmethod
    def _as(blob: bytes, kind: str, tmp: Path | None, i: int) -> Source:
        if kind == "path":
            assert tmp is not None
            path = tmp / f"payload-{i}.bin"
            path.write_bytes(blob)
            return path
        if kind == "file":
            return io.BytesIO(blob)
        if kind == "iterable":
            return (blob[j:j + 4096] for j in range(0, len(blob), 4096))
        return blob


@dataclasses.dataclass
class ShareTarget:
    """A project to share with; ``manager`` acts as that project (to accept or reject)."""

    project: str
    manager: ImageManager | None = None


def requires(manager: ImageManager, capability: Capability) -> None:
    """Skip the calling test, with a reason, unless ``manager`` declares ``capability``."""
    if capability not in type(manager).capabilities:
        pytest.skip(f"backend {manager.name!r} does not declare {capability.name}")


class _Fixtures:
    """Fixtures an implementer overrides, and the tracking that cleans up after tests."""

    #: set False where the backend cannot hold two images with one name
    duplicate_names_allowed: bool = True

    @pytest.fixture
    def manager(self) -> ImageManager:
        raise NotImplementedError("override the 'manager' fixture to return your backend")

    @pytest.fixture
    def image_payload(self) -> ImagePayload:
        # Unique bytes per test so content-addressed backends never see a duplicate.
        return ImagePayload([os.urandom(16) + b"imagehub conformance payload\n" * 2048])

    @pytest.fixture
    def share_target(self) -> ShareTarget:
        pytest.skip("override the 'share_target' fixture to run sharing tests")

    @pytest.fixture
    def created(self, manager: ImageManager) -> Iterator[list[Image]]:
        images: list[Image] = []
        yield images
        for image in images:
            with contextlib.suppress(ImageNotFound, UnsupportedOperation):
                manager.delete(image.id)

    @pytest.fixture
    def make_image(self, manager: ImageManager, created: list[Image],
                   image_payload: ImagePayload) -> Callable[..., Image]:
        def make(name: str | None = None, payload: ImagePayload | None = None,
                 as_kind: str = "bytes", tmp: Path | None = None, **kwargs: Any) -> Image:
            requires(manager, Capability.CREATE)
            data, args = (payload or image_payload).create_args(as_kind, tmp)
            args.update(kwargs)
            image: Image = manager.create(data, name=name or _unique("kit"), **args)
            created.append(image)
            return image
        return make

    @pytest.fixture
    def existing_image(self, make_image: Callable[..., Image]) -> Image:
        """An image the tests may read; read-only backends override it."""
        return make_image()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


class CapabilityConformance(_Fixtures):
    def test_declared_capabilities_match_hooks(self, manager: ImageManager) -> None:
        cls = type(manager)
        assert overridden_hooks(cls) == declared_hooks(cls.capabilities), (
            "Capability flags must match the hooks the backend overrides")

    def test_name_is_set(self, manager: ImageManager) -> None:
        assert manager.name and isinstance(manager.name, str)

    def test_unsupported_operations_raise_before_io(self, manager: ImageManager) -> None:
        caps = type(manager).capabilities
        calls: list[tuple[Capability, Callable[[], Any]]] = [
            (Capability.CREATE, lambda: manager.create(b"x", name="never")),
            (Capability.EXPORT, lambda: manager.export("no-such-image")),
            (Capability.DELETE, lambda: manager.delete("no-such-image")),
            (Capability.UPDATE, lambda: manager.update("no-such-image", name="x")),
            (Capability.ALIASES, lambda: manager.remove_alias("no-such-alias")),
            (Capability.SHARE, lambda: manager.share("no-such-image", "p")),
            (Capability.MEMBERS, lambda: manager.members("no-such-image")),
        ]
        missing = [(cap, call) for cap, call in calls if cap not in caps]
        if not missing:
            pytest.skip(f"backend {manager.name!r} declares every image capability")
        for _cap, call in missing:
            with pytest.raises(UnsupportedOperation) as info:
                call()
            assert manager.name in str(info.value)


class ListingConformance(_Fixtures):
    def test_all_includes_image(self, manager: ImageManager, existing_image: Image) -> None:
        requires(manager, Capability.LIST)
        ids = [i.id for i in manager.all()]
        assert existing_image.id in ids
        assert len(ids) == len(set(ids)), "all() must not repeat an image"

    def test_list_pages_cover_all(self, manager: ImageManager, existing_image: Image) -> None:
        requires(manager, Capability.LIST)
        everything = [i.id for i in manager.all()]
        seen: list[str] = []
        marker = None
        for _ in range(len(everything) + 2):
            page = manager.list(limit=1, marker=marker)
            assert len(page) <= 1
            seen.extend(i.id for i in page)
            if page.next_marker is None:
                break
            marker = page.next_marker
        assert sorted(seen) == sorted(everything)

    def test_get_by_id(self, manager: ImageManager, existing_image: Image) -> None:
        requires(manager, Capability.GET)
        got = manager.get(existing_image.id)
        assert got.id == existing_image.id
        assert got == existing_image.reload()

    def test_get_unknown_raises_not_found(self, manager: ImageManager) -> None:
        requires(manager, Capability.GET)
        with pytest.raises(ImageNotFound):
            manager.get("imagehub-no-such-image-" + uuid.uuid4().hex)

    def test_fields_are_normalised(self, manager: ImageManager, existing_image: Image) -> None:
        image = manager.get(existing_image.id)
        assert image.backend == manager.name
        assert image.cloud == manager.cloud
        assert isinstance(image.visibility, Visibility)
        for stamp in (image.created_at, image.updated_at):
            assert stamp is None or stamp.tzinfo is not None
        if image.checksum is not None:
            algo, _, digest = image.checksum.partition(":")
            assert algo in {"sha256", "sha512", "md5"} and digest
        assert image.architecture in {None, "x86_64", "aarch64", "armv7l", "i686", "ppc64le",
                                      "s390x", "riscv64"}
        assert image.to_dict()["id"] == image.id

    def test_filter_by_name(self, manager: ImageManager, existing_image: Image) -> None:
        requires(manager, Capability.LIST)
        if not existing_image.name:
            pytest.skip("the image has no name to filter on")
        found = [i.id for i in manager.all(name=existing_image.name)]
        assert existing_image.id in found
        assert all(i.name == existing_image.name for i in manager.all(name=existing_image.name))


class CreateExportConformance(_Fixtures):
    @pytest.mark.parametrize("as_kind", ["bytes", "path", "file", "iterable"])
    def test_round_trip_identical_bytes(self, manager: ImageManager, image_payload: ImagePayload,
                                        make_image: Callable[..., Image], tmp_path: Path,
                                        as_kind: str) -> None:
        requires(manager, Capability.EXPORT)
        image = make_image(as_kind=as_kind, tmp=tmp_path)
        with manager.export(image) as stream:
            data = b"".join(stream)
            assert len(stream.parts) == len(image_payload.parts)
        assert _sha256(data) == _sha256(image_payload.content)
        assert stream.sha256 == "sha256:" + _sha256(image_payload.content)

    def test_created_image_is_listed(self, manager: ImageManager,
                                     make_image: Callable[..., Image]) -> None:
        image = make_image()
        assert manager.get(image.id).id == image.id
        assert image.status in {"active", "ready"}

    def test_export_save_to_path(self, manager: ImageManager, image_payload: ImagePayload,
                                 make_image: Callable[..., Image], tmp_path: Path) -> None:
        requires(manager, Capability.EXPORT)
        image = make_image()
        target = tmp_path / ("out" if len(image_payload.parts) > 1 else "out.img")
        written = manager.export(image).save(target)
        assert b"".join(p.read_bytes() for p in written) == image_payload.content
        if len(image_payload.parts) == 1:
            with pytest.raises(ImageHubError, match="already exists"):
                manager.export(image).save(target)

    def test_checksum_mismatch_leaves_nothing(self, manager: ImageManager,
                                              image_payload: ImagePayload) -> None:
        requires(manager, Capability.CREATE)
        before = {i.id for i in manager.all()}
        data, args = image_payload.create_args()
        name = _unique("mismatch")
        with pytest.raises(ChecksumMismatch):
            manager.create(data, name=name, checksum="sha256:" + "0" * 64, **args)
        after = {i.id for i in manager.all()}
        assert after == before, "a failed create must leave no image behind"

    def test_bad_source_is_a_clear_error(self, manager: ImageManager, tmp_path: Path) -> None:
        requires(manager, Capability.CREATE)
        with pytest.raises(ImageHubError, match="cannot read"):
            manager.create(tmp_path / "missing.img", name="never")

    def test_duplicate_name_is_ambiguous(self, manager: ImageManager,
                                         make_image: Callable[..., Image],
                                         image_payload: ImagePayload) -> None:
        if not self.duplicate_names_allowed:
            pytest.skip("this backend cannot hold two images with one name")
        name = _unique("twin")
        make_image(name=name)
        payload = dataclasses.replace(
            image_payload, parts=[*image_payload.parts[:-1], image_payload.parts[-1] + b"\0"])
        try:
            make_image(name=name, payload=payload)
        except (ImageConflict, ImageHubError) as exc:
            pytest.skip(f"backend refused the second image's bytes: {exc}")
        with pytest.raises(AmbiguousImage):
            manager.get(name)

    def test_delete(self, manager: ImageManager, make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.DELETE)
        image = make_image()
        manager.delete(image)
        with pytest.raises(ImageNotFound):
            manager.get(image.id)


class UpdateConformance(_Fixtures):
    def test_update_properties_merge(self, manager: ImageManager,
                                     make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.UPDATE)
        image = make_image(properties={"os": "ubuntu", "keep": "yes"})
        updated = manager.update(image, properties={"os": "debian", "extra": "1"})
        assert updated.properties.get("extra") == "1"
        assert updated.properties.get("keep") == "yes"
        assert manager.get(image.id).properties.get("extra") == "1"


class AliasConformance(_Fixtures):
    def test_alias_add_get_remove(self, manager: ImageManager,
                                  make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.ALIASES)
        image = make_image()
        alias = _unique("alias")
        assert alias in manager.add_alias(image, alias, description="kit").aliases
        assert manager.get(alias).id == image.id
        manager.remove_alias(alias)
        assert alias not in manager.get(image.id).aliases
        with pytest.raises(ImageNotFound):
            manager.get(alias)

    def test_duplicate_alias_conflicts(self, manager: ImageManager,
                                       make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.ALIASES)
        image = make_image()
        alias = _unique("alias")
        manager.add_alias(image, alias)
        try:
            with pytest.raises(ImageConflict):
                manager.add_alias(image, alias)
        finally:
            manager.remove_alias(alias)

    def test_alias_cannot_be_a_path(self, manager: ImageManager,
                                    make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.ALIASES)
        image = make_image()
        for bad in ("../escape", "a/../b", "..", "/abs", "a//b", "a\\b"):
            with pytest.raises(ImageHubError):
                manager.add_alias(image, bad)

    def test_alias_with_slash(self, manager: ImageManager,
                              make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.ALIASES)
        image = make_image()
        alias = f"{_unique('distro')}/24.04"  # the LXD naming habit
        manager.add_alias(image, alias)
        try:
            assert manager.get(alias).id == image.id
        finally:
            manager.remove_alias(alias)


class SharingConformance(_Fixtures):
    def test_share_accept_unshare(self, manager: ImageManager, share_target: ShareTarget,
                                  make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.SHARE)
        image = make_image()
        member = manager.share(image, share_target.project)
        assert member.member_id == share_target.project
        if Capability.MEMBERS in type(manager).capabilities:
            listed = {m.member_id: m.status for m in manager.members(image)}
            assert listed.get(share_target.project) == MemberStatus.PENDING
            if share_target.manager is not None:
                accepted = share_target.manager.accept(image.id)
                assert accepted.status == MemberStatus.ACCEPTED
                assert image.id in {i.id for i in share_target.manager.all()}
                share_target.manager.reject(image.id)
                assert image.id not in {i.id for i in share_target.manager.all()}
        manager.unshare(image, share_target.project)
        if Capability.MEMBERS in type(manager).capabilities:
            assert share_target.project not in {m.member_id for m in manager.members(image)}


class BoundImageConformance(_Fixtures):
    def test_images_are_bound(self, manager: ImageManager, existing_image: Image) -> None:
        image = manager.get(existing_image.id)
        assert image.bound
        assert image.reload().id == image.id

    def test_binding_is_not_data(self, manager: ImageManager, existing_image: Image) -> None:
        image = manager.get(existing_image.id)
        clone = Image.from_dict(image.to_dict())
        assert not clone.bound
        assert clone == image and hash(clone) == hash(image)
        assert "manager" not in repr(image)
        assert pickle.loads(pickle.dumps(image)) == image
        with pytest.raises(UnboundImageError):
            clone.reload()

    def test_bound_delete(self, manager: ImageManager, make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.DELETE)
        image = make_image()
        image.delete()
        with pytest.raises(ImageNotFound):
            manager.get(image.id)


class ImageManagerConformance(
    CapabilityConformance,
    ListingConformance,
    CreateExportConformance,
    UpdateConformance,
    AliasConformance,
    SharingConformance,
    BoundImageConformance,
):
    """Every conformance test; subclass it as ``Test<YourBackend>``."""
