"""The conformance kit's mixin test classes and the fixtures they share (see the package
docstring)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import os
import pickle
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from imagehub.errors import (
    AmbiguousImage,
    ChecksumMismatch,
    ImageConflict,
    ImageHubError,
    ImageNotFound,
    InvalidArgument,
    PermissionDenied,
    UnsupportedOperation,
)
from imagehub.manager import (
    Capability,
    ImageManager,
    UpdateSpec,
    declared_hooks,
    overridden_hooks,
)
from imagehub.models import Image, MemberStatus, UnboundImageError, Visibility

from .filters import FILTER_CASES, FilterCase, case_for
from .payloads import (
    ImagePayload,
    ShareTarget,
    assert_same_bytes,
    check_recorded_content,
    read_export,
)

__all__ = [
    "FILTER_CASES",
    "AliasConformance",
    "BoundImageConformance",
    "CapabilityConformance",
    "ConcurrencyConformance",
    "CreateExportConformance",
    "FilterCase",
    "ImageManagerConformance",
    "ImagePayload",
    "ListingConformance",
    "ShareTarget",
    "SharingConformance",
    "UpdateConformance",
    "assert_same_bytes",
    "read_export",
    "requires",
]

#: how many images the listing tests seed (distinct names, properties and sizes)
SEED_COUNT = 5
#: default size of the large round-trip payload: several MiB, not a multiple of a chunk
LARGE_PAYLOAD_SIZE = 5 * (1 << 20) + 4099
#: the UpdateSpec fields (not backend keys) a backend may list in ``updatable``
SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(UpdateSpec) if f.name != "extra")


def requires(manager: ImageManager, *capabilities: Capability) -> None:
    """Skip the calling test, with a reason, unless ``manager`` declares each capability."""
    for capability in capabilities:
        if capability not in type(manager).capabilities:
            pytest.skip(f"backend {manager.name!r} does not declare {capability.name}")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


class _Fixtures:
    """Fixtures an implementer overrides, and the tracking that cleans up after tests."""

    #: set False where the backend cannot hold two images with one name
    duplicate_names_allowed: ClassVar[bool] = True
    #: extra or replacement FilterCases for filter keys only this backend knows
    filter_cases: ClassVar[Mapping[str, FilterCase]] = {}
    #: why the deployment under test cannot take two creates at once (e.g. a test server
    #: on SQLite); set it and the concurrent-create check skips with this reason
    serial_writes_reason: ClassVar[str | None] = None
    #: size of the default ``large_payload``
    large_payload_size: ClassVar[int] = LARGE_PAYLOAD_SIZE

    @pytest.fixture
    def manager(self) -> ImageManager:
        raise NotImplementedError("override the 'manager' fixture to return your backend")

    @pytest.fixture
    def image_payload(self) -> ImagePayload:
        # Unique bytes per test so content-addressed backends never see a duplicate.
        return ImagePayload([os.urandom(16) + b"imagehub conformance payload\n" * 2048])

    @pytest.fixture
    def large_payload(self, image_payload: ImagePayload) -> ImagePayload:
        """Several MiB crossing chunk boundaries; by default ``image_payload`` padded
        with random bytes (override it where padding makes an image your backend refuses)."""
        return image_payload.padded(os.urandom(self.large_payload_size))

    @pytest.fixture
    def seed_payloads(self, image_payload: ImagePayload) -> list[ImagePayload]:
        """Payloads of distinct sizes for the seeded listing tests."""
        return [image_payload.padded(os.urandom(64) * n) for n in range(SEED_COUNT)]

    @pytest.fixture
    def share_target(self, manager: ImageManager) -> ShareTarget:
        requires(manager, Capability.SHARE)
        pytest.fail("the backend declares SHARE: override the 'share_target' fixture")

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

    @pytest.fixture
    def seeded(self, manager: ImageManager, make_image: Callable[..., Image],
               seed_payloads: list[ImagePayload]) -> list[Image]:
        """Several images with distinct names, properties and sizes (for a backend that
        cannot create: every image it lists)."""
        requires(manager, Capability.LIST)
        if Capability.CREATE not in type(manager).capabilities:
            return list(manager.all())
        run = uuid.uuid4().hex[:8]
        cls = type(manager)
        images = []
        for n, payload in enumerate(seed_payloads):
            extra: dict[str, Any] = {}
            if "tag" in cls.server_filters:
                extra["tags"] = [f"kit-{run}-{n % 2}"]
            images.append(make_image(
                # Each name is a prefix of the next: a prefix or substring match shows.
                name=f"kit-seed-{run}-" + "x" * (n + 1), payload=payload,
                properties={"kit_run": run, "kit_rank": str(n), "kit_parity": str(n % 2)},
                **extra))
        # Re-read: what the backend stores (sizes, owner, status) is what filters see.
        return [manager.get(i.id) for i in images] if Capability.GET in cls.capabilities \
            else images


class CapabilityConformance(_Fixtures):
    def test_declared_capabilities_match_hooks(self, manager: ImageManager) -> None:
        cls = type(manager)
        assert overridden_hooks(cls) == declared_hooks(cls.capabilities), (
            "Capability flags must match the hooks the backend overrides")

    def test_name_is_set(self, manager: ImageManager) -> None:
        assert manager.name and isinstance(manager.name, str)

    def test_updatable_is_declared(self, manager: ImageManager) -> None:
        requires(manager, Capability.UPDATE)
        updatable = type(manager).updatable
        assert updatable, "a backend declaring UPDATE lists the keys it honours in 'updatable'"
        assert "public" not in updatable, "'public' is an alias: declare 'visibility'"

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

    def test_list_pages_with_limit_and_marker(self, manager: ImageManager,
                                              seeded: list[Image]) -> None:
        requires(manager, Capability.LIST)
        everything = [i.id for i in manager.all()]
        assert {i.id for i in seeded} <= set(everything)
        assert len(everything) >= 3, "page over at least three images: seed more"
        limit = max(1, len(everything) // 3)  # three pages or more
        pages: list[list[str]] = []
        marker = None
        for _ in range(len(everything) + 2):
            page = manager.list(limit=limit, marker=marker)
            assert len(page) <= limit, f"list(limit={limit}) returned {len(page)} images"
            pages.append([i.id for i in page])
            if page.next_marker is None:
                break
            assert page, "a page with a next_marker must not be empty"
            assert page.next_marker != marker, "next_marker must move on"
            marker = page.next_marker
        else:
            pytest.fail("paging never ended: next_marker was never None")
        seen = [i for page in pages for i in page]
        assert len(pages) >= 3, f"expected 3 pages or more of {limit}, got {len(pages)}"
        assert len(seen) == len(set(seen)), "an image appeared on two pages"
        assert seen == everything, "pages, joined, must be all() in the same order"

    def test_list_with_a_deleted_marker_raises_not_found(
            self, manager: ImageManager, make_image: Callable[..., Image]) -> None:
        """The hook contract: ``ImageNotFound`` when ``marker`` names no image, never a
        first page again (a pager would then loop) or an empty last page (it would stop)."""
        requires(manager, Capability.LIST, Capability.CREATE, Capability.DELETE)
        gone = make_image()
        manager.delete(gone.id)
        with pytest.raises(ImageNotFound):
            manager.list(limit=1, marker=gone.id)

    def test_filters_narrow(self, manager: ImageManager, seeded: list[Image]) -> None:
        """Every declared server filter, plus name and properties, among the seeds."""
        requires(manager, Capability.LIST)
        keys = {*type(manager).server_filters, "name"}
        if Capability.CREATE in type(manager).capabilities:
            keys.add("properties.kit_parity")  # the seeds differ in it
        seed_ids = {i.id for i in seeded}
        checked_narrowing = False
        for key in sorted(keys):
            case = case_for(key, self.filter_cases)
            values = list(case.values(seeded))
            assert values, (
                f"the backend declares filter {key!r} but no listed image has a value for "
                "it: give the kit a FilterCase for it in 'filter_cases'")
            for value in values:
                got = {i.id: i for i in manager.all(**{key: value})}
                want = {i.id for i in seeded if case.keeps(i, value)}
                assert set(got) & seed_ids == want, (
                    f"filter {key}={value!r} kept {sorted(set(got) & seed_ids)} of the "
                    f"seeded images, expected {sorted(want)}")
                if not case.seeds_only:
                    wrong = [i for i in got.values() if not case.keeps(i, value)]
                    assert not wrong, f"filter {key}={value!r} kept {wrong[0]!r}"
                checked_narrowing |= bool(want) and want != seed_ids
        assert checked_narrowing, "no filter narrowed the seeded images: seed distinct images"

    @pytest.mark.parametrize("key", ["cloud", "backend"])
    def test_cloud_and_backend_filters_keep_what_images_show(
            self, manager: ImageManager, seeded: list[Image], key: str) -> None:
        """``cloud`` (and ``backend``) is filled in when an image is bound; a filter on it
        keeps exactly the images that show it, in ``all()``, paged ``list()`` and ``get``."""
        requires(manager, Capability.LIST)
        everything = [i.id for i in manager.all()]
        value = getattr(next(manager.all()), key)
        assert value, f"listed images show no {key}"
        same: dict[str, Any] = {key: value}
        other: dict[str, Any] = {key: "imagehub-kit-no-such"}
        assert [i.id for i in manager.all(**same)] == everything, (
            f"filter {key}={value!r} did not keep every image of this cloud")
        assert list(manager.all(**other)) == []
        assert [i.id for i in manager.list(limit=1, **same)] == everything[:1]
        nothing = manager.list(limit=1, **other)
        assert list(nothing) == [] and nothing.next_marker is None
        if Capability.GET in type(manager).capabilities:
            # By name where the kit made the images (names are unique), else by id.
            ref = seeded[0].name if Capability.CREATE in type(manager).capabilities \
                else seeded[0].id
            assert ref is not None
            assert manager.get(ref, **same).id == seeded[0].id

    def test_get_by_id(self, manager: ImageManager, existing_image: Image) -> None:
        requires(manager, Capability.GET)
        got = manager.get(existing_image.id)
        assert got.id == existing_image.id
        assert got == existing_image.reload()

    def test_get_by_name_and_id_prefix(self, manager: ImageManager,
                                       existing_image: Image) -> None:
        requires(manager, Capability.GET, Capability.LIST)
        everything = list(manager.all())
        if existing_image.name and sum(i.name == existing_image.name for i in everything) == 1:
            assert manager.get(existing_image.name).id == existing_image.id
        others = [i.id.lower() for i in everything if i.id != existing_image.id]
        own = existing_image.id.lower()
        length = next((n for n in range(8, len(own))
                       if not any(o.startswith(own[:n]) for o in others)), None)
        if length is not None:
            assert manager.get(existing_image.id[:length]).id == existing_image.id

    def test_get_unknown_raises_not_found(self, manager: ImageManager) -> None:
        requires(manager, Capability.GET)
        for ref in ("imagehub-no-such-image-" + uuid.uuid4().hex, str(uuid.uuid4()),
                    hashlib.sha256(os.urandom(8)).hexdigest()):
            with pytest.raises(ImageNotFound):
                manager.get(ref)

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


class CreateExportConformance(_Fixtures):
    @pytest.mark.parametrize("as_kind", ["bytes", "path", "file", "iterable"])
    def test_round_trip_identical_bytes(self, manager: ImageManager, image_payload: ImagePayload,
                                        make_image: Callable[..., Image], tmp_path: Path,
                                        as_kind: str) -> None:
        requires(manager, Capability.CREATE, Capability.EXPORT)
        image = make_image(as_kind=as_kind, tmp=tmp_path)
        check_recorded_content(image, image_payload)
        read_export(manager, image, image_payload)

    @pytest.mark.parametrize("as_kind", ["path", "iterable"])
    def test_large_round_trip_read_from_another_thread(
            self, manager: ImageManager, large_payload: ImagePayload,
            make_image: Callable[..., Image], tmp_path: Path, as_kind: str) -> None:
        requires(manager, Capability.CREATE, Capability.EXPORT)
        assert len(large_payload.content) > 2 * (1 << 20), "the large payload must be MiBs"
        image = make_image(payload=large_payload, as_kind=as_kind, tmp=tmp_path)
        check_recorded_content(image, large_payload)
        read_export(manager, image.id, large_payload, other_thread=True)

    def test_promised_checksum_that_holds_is_accepted(
            self, manager: ImageManager, image_payload: ImagePayload,
            make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.CREATE)
        promise = "sha256:" + _sha256(image_payload.content)
        image = make_image(checksum=promise)
        check_recorded_content(image, image_payload)

    def test_create_reports_progress(self, manager: ImageManager,
                                     image_payload: ImagePayload,
                                     make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.CREATE)
        seen: list[int] = []
        make_image(progress=seen.append)
        assert sum(seen) == len(image_payload.content), (
            f"progress reported {sum(seen)} of {len(image_payload.content)} bytes")

    def test_create_refuses_an_option_it_does_not_know(
            self, manager: ImageManager, make_image: Callable[..., Image]) -> None:
        """A misspelt keyword (``descripton=``) is an error, never dropped in silence, and
        the refused create leaves nothing behind."""
        requires(manager, Capability.CREATE, Capability.LIST)
        name = _unique("unknown-option")
        with pytest.raises(InvalidArgument, match="kit_no_such_option"):
            make_image(name=name, kit_no_such_option="x")
        assert [i.id for i in manager.all() if i.name == name] == []

    def test_created_image_is_listed(self, manager: ImageManager,
                                     make_image: Callable[..., Image]) -> None:
        image = make_image()
        requires(manager, Capability.GET)
        assert manager.get(image.id).id == image.id
        assert image.status in {"active", "ready"}

    def test_create_keeps_what_it_was_given(self, manager: ImageManager,
                                            make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.CREATE, Capability.GET)
        name = _unique("kept")
        # Keys and values exactly as given: case, spaces and non-ASCII are the user's.
        given = {"kit_a": "1", "kit_b": "two", "Kit_Case": "Mixed Value é"}
        made = make_image(name=name, description="kit words", properties=given)
        for image in (made, manager.get(made.id)):
            assert image.name == name
            assert image.description == "kit words"
            assert {k: image.properties.get(k) for k in given} == given

    def test_create_keeps_its_visibility(self, manager: ImageManager,
                                         make_image: Callable[..., Image]) -> None:
        """A backend that stores visibility (declares it updatable) keeps the one given at
        create, or refuses it with a specific error (a member may not publish)."""
        requires(manager, Capability.CREATE, Capability.GET)
        if "visibility" not in type(manager).updatable:
            pytest.skip(f"backend {manager.name!r} does not declare 'visibility' updatable")
        took = []
        for wanted in (Visibility.PUBLIC, Visibility.SHARED, Visibility.COMMUNITY):
            try:
                made = make_image(visibility=wanted)
            except (PermissionDenied, UnsupportedOperation, InvalidArgument):
                continue
            for image in (made, manager.get(made.id)):
                assert image.visibility is wanted, (
                    f"created with visibility {wanted.value}, the image is "
                    f"{image.visibility.value}")
            took.append(wanted)
        assert took, "visibility is declared updatable but create refused every value"

    def test_create_keeps_its_tags(self, manager: ImageManager,
                                   make_image: Callable[..., Image]) -> None:
        """A backend that stores tags (declares them updatable) keeps those given at
        create, as ``imagehub create --tag`` and migrate pass them."""
        requires(manager, Capability.CREATE, Capability.GET)
        if "tags" not in type(manager).updatable:
            pytest.skip(f"backend {manager.name!r} does not declare 'tags' updatable")
        tags = [_unique("kit-tag"), _unique("kit-tag")]
        made = make_image(tags=tags)
        for image in (made, manager.get(made.id)):
            assert sorted(image.tags) == sorted(tags), (
                f"created with tags {tags}, the image has {image.tags}")

    def test_export_save_to_path(self, manager: ImageManager, image_payload: ImagePayload,
                                 make_image: Callable[..., Image], tmp_path: Path) -> None:
        requires(manager, Capability.CREATE, Capability.EXPORT)
        image = make_image()
        target = tmp_path / ("out" if len(image_payload.parts) > 1 else "out.img")
        written = manager.export(image).save(target)
        assert b"".join(p.read_bytes() for p in written) == image_payload.content
        if len(image_payload.parts) == 1:
            with pytest.raises(ImageHubError, match="already exists"):
                manager.export(image).save(target)

    def test_checksum_mismatch_leaves_nothing(self, manager: ImageManager,
                                              image_payload: ImagePayload) -> None:
        requires(manager, Capability.CREATE, Capability.LIST)
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
        requires(manager, Capability.CREATE, Capability.GET)
        if not self.duplicate_names_allowed:
            pytest.skip("declared: this backend cannot hold two images with one name")
        name = _unique("twin")
        make_image(name=name, properties={"kit_twin": "a"})
        second = make_image(name=name, payload=image_payload.padded(b"\0"),
                            properties={"kit_twin": "b"})
        with pytest.raises(AmbiguousImage):
            manager.get(name)
        # Filters narrow a lookup as they narrow a listing.
        assert manager.get(name, kit_twin="b").id == second.id

    def test_delete(self, manager: ImageManager, make_image: Callable[..., Image],
                    image_payload: ImagePayload) -> None:
        requires(manager, Capability.DELETE, Capability.GET)
        image = make_image()
        other = make_image(payload=image_payload.padded(b"\0"))
        manager.delete(image)
        with pytest.raises(ImageNotFound):
            manager.get(image.id)
        assert manager.get(other.id).id == other.id, "delete took another image with it"
        with pytest.raises(ImageNotFound):
            manager.delete(image.id)


def _settable_value(key: str) -> Any:
    if key == "architecture":
        return "aarch64"
    if key == "tags":
        return ("kit-a", _unique("kit"))
    return _unique(f"kit-{key}")


def _has_visibility(wanted: Visibility) -> Callable[[Image], bool]:
    def check(image: Image) -> bool:
        return image.visibility is wanted
    return check


class UpdateConformance(_Fixtures):
    @pytest.fixture
    def updatable_image(self, manager: ImageManager,
                        make_image: Callable[..., Image]) -> Image:
        requires(manager, Capability.UPDATE)
        return make_image(properties={"keep": "yes", "drop": "me"}, description="before")

    def _check(self, manager: ImageManager, image: Image, updated: Image,
               check: Callable[[Image], bool], what: str) -> None:
        assert updated.id == image.id
        assert check(updated), f"update {what}: the returned image does not show it"
        if Capability.GET in type(manager).capabilities:
            stored = manager.get(image.id)
            assert check(stored), f"update {what}: the stored image does not show it"
            assert stored.properties.get("keep") == "yes" or what.startswith("properties"), (
                f"update {what} lost an unrelated property")

    @pytest.mark.parametrize("key", SPEC_FIELDS)
    def test_update_each_declared_key(self, manager: ImageManager, updatable_image: Image,
                                      key: str) -> None:
        if key not in type(manager).updatable:
            pytest.skip(f"backend {manager.name!r} does not declare {key!r} updatable")
        image = updatable_image
        if key == "properties":
            updated = manager.update(image, properties={"drop": "changed", "new": "1",
                                                        "New_Case": "Mixed é"})
            self._check(manager, image, updated, lambda i: (
                i.properties.get("new") == "1" and i.properties.get("drop") == "changed"
                and i.properties.get("New_Case") == "Mixed é"
                and i.properties.get("keep") == "yes"), "properties (merged)")
        elif key == "remove_properties":
            updated = manager.update(image, remove_properties=["drop"])
            self._check(manager, image, updated, lambda i: "drop" not in i.properties,
                        "remove_properties")
        elif key == "visibility":
            self._check_visibility(manager, image)
        elif key == "tags":
            first = _settable_value("tags")
            updated = manager.update(image, tags=first)
            self._check(manager, image, updated, lambda i: set(i.tags) == set(first), "tags")
            updated = manager.update(image, tags=["kit-only"])
            self._check(manager, image, updated, lambda i: set(i.tags) == {"kit-only"},
                        "tags (replaced)")
            updated = manager.update(image, tags=[])
            self._check(manager, image, updated, lambda i: not i.tags, "tags (cleared)")
        else:
            value = _settable_value(key)
            updated = manager.update(image, **{key: value})
            self._check(manager, image, updated, lambda i: getattr(i, key) == value, key)
            if key != "name":
                assert updated.name == image.name, f"update {key} changed the name"
            else:
                requires(manager, Capability.GET)
                assert manager.get(value).id == image.id

    def _check_visibility(self, manager: ImageManager, image: Image,
                          set_it: Callable[[Visibility], Image] | None = None) -> None:
        # A backend may refuse a visibility it lacks or the caller may not set (a Glance
        # member cannot publish): that must be a specific error that changes nothing.
        def default_set(v: Visibility) -> Image:
            return manager.update(image, visibility=v)
        apply = set_it or default_set
        took = []
        for wanted in (Visibility.PUBLIC, Visibility.SHARED, Visibility.COMMUNITY):
            try:
                updated = apply(wanted)
            except (PermissionDenied, UnsupportedOperation):
                if Capability.GET in type(manager).capabilities:
                    assert manager.get(image.id).visibility is Visibility.PRIVATE
                continue
            self._check(manager, image, updated, _has_visibility(wanted),
                        f"visibility={wanted.value}")
            took.append(wanted)
            back = apply(Visibility.PRIVATE)
            self._check(manager, image, back, lambda i: i.visibility is Visibility.PRIVATE,
                        "visibility=private")
        assert took, "visibility is declared updatable but every value was refused"

    def test_update_public_alias(self, manager: ImageManager, updatable_image: Image) -> None:
        """``public=True/False`` is the CLI's spelling of visibility public/private."""
        if "visibility" not in type(manager).updatable:
            pytest.skip(f"backend {manager.name!r} does not declare 'visibility' updatable")
        try:
            updated = manager.update(updatable_image, public=True)
        except PermissionDenied:
            pass
        else:
            assert updated.visibility is Visibility.PUBLIC
        back = manager.update(updatable_image, public=False)
        assert back.visibility is Visibility.PRIVATE
        assert manager.get(updatable_image.id).visibility is Visibility.PRIVATE

    def test_update_with_a_spec_as_the_cli_sends_it(self, manager: ImageManager,
                                                    updatable_image: Image) -> None:
        updatable = type(manager).updatable
        if not {"properties", "remove_properties"} <= updatable:
            pytest.skip(f"backend {manager.name!r} does not declare properties and "
                        "remove_properties updatable")
        spec = UpdateSpec(properties={"cli": "yes"}, remove_properties=("drop",))
        updated = manager.update(updatable_image, spec)
        self._check(manager, updatable_image, updated, lambda i: (
            i.properties.get("cli") == "yes" and "drop" not in i.properties),
            "properties+remove_properties")

    def test_undeclared_keys_are_refused_before_io(self, manager: ImageManager) -> None:
        requires(manager, Capability.UPDATE)
        refused = [k for k in SPEC_FIELDS if k not in type(manager).updatable]
        refused.append("imagehub_kit_no_such_key")
        for key in refused:
            value: Any = ["x"] if key in ("tags", "remove_properties") else (
                {"k": "v"} if key == "properties" else (
                    Visibility.PUBLIC if key == "visibility" else "kit"))
            # A ref that names nothing: the refusal must come before any lookup.
            with pytest.raises(ImageHubError, match="cannot update") as info:
                manager.update("imagehub-no-such-image", **{key: value})
            assert not isinstance(info.value, ImageNotFound)


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
        with pytest.raises(ImageNotFound):
            manager.remove_alias(alias)

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
    def test_share_unshare(self, manager: ImageManager, share_target: ShareTarget,
                           make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.SHARE)
        image = make_image()
        member = manager.share(image, share_target.project)
        assert member.member_id == share_target.project
        assert member.image_id == image.id
        if Capability.MEMBERS in type(manager).capabilities:
            assert member.status is MemberStatus.PENDING
            listed = {m.member_id: m.status for m in manager.members(image)}
            assert listed.get(share_target.project) is MemberStatus.PENDING
            with pytest.raises(ImageConflict):
                manager.share(image, share_target.project)
        manager.unshare(image, share_target.project)
        if Capability.MEMBERS in type(manager).capabilities:
            assert share_target.project not in {m.member_id for m in manager.members(image)}
        with pytest.raises(ImageNotFound):
            manager.unshare(image, share_target.project)

    def test_member_view_through_accept_reject_and_back_to_pending(
            self, manager: ImageManager, share_target: ShareTarget,
            make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.SHARE, Capability.MEMBERS)
        member = share_target.manager
        if member is None:
            pytest.fail("the backend declares MEMBERS: give share_target a manager acting "
                        "as the member project")
        image = make_image()

        def view(**filters: Any) -> set[str]:
            assert member is not None
            return {i.id for i in member.all(**filters)}

        def status_seen_by_owner() -> MemberStatus | None:
            return {m.member_id: m.status
                    for m in manager.members(image)}.get(share_target.project)

        assert image.id not in view(member_status="all"), "visible before any share"
        manager.share(image, share_target.project)
        # Pending: hidden by default, shown by the member_status filter.
        assert image.id not in view(), "a pending share is in the member's default listing"
        assert image.id in view(member_status="pending")
        assert image.id in view(member_status="all")
        steps = [(MemberStatus.ACCEPTED, True), (MemberStatus.REJECTED, False),
                 (MemberStatus.PENDING, False), (MemberStatus.ACCEPTED, True)]
        for status, listed in steps:
            answered = member.update_member(image.id, status)
            assert answered.status is status and answered.member_id == share_target.project
            assert status_seen_by_owner() is status
            assert (image.id in view()) is listed, (
                f"after {status.value}, the member's default listing "
                f"{'lacks' if listed else 'shows'} the image")
            assert image.id in view(member_status=status.value)
            others = {s for s in MemberStatus if s is not status}
            for other in others:
                assert image.id not in view(member_status=other.value), (
                    f"member_status={other.value} shows a share that is {status.value}")
            assert image.id in view(member_status="all")
        assert member.get(image.id).id == image.id  # accepted: the member can use it
        manager.unshare(image, share_target.project)
        assert image.id not in view(member_status="all"), "visible after unshare"


    def test_another_project_cannot_change_my_image(
            self, manager: ImageManager, share_target: ShareTarget,
            make_image: Callable[..., Image]) -> None:
        """Seeing an image (a share it accepted) never lets another project change it:
        each write the backend declares, tried as the member, is ``PermissionDenied`` and
        leaves the owner's image as it was."""
        requires(manager, Capability.SHARE, Capability.MEMBERS)
        member = share_target.manager
        if member is None:
            pytest.fail("the backend declares MEMBERS: give share_target a manager acting "
                        "as the member project")
        cls = type(manager)
        image = make_image(properties={"kit_owner": "mine"})
        alias = _unique("kit-mine")
        if Capability.ALIASES in cls.capabilities:
            manager.add_alias(image, alias)
        manager.share(image, share_target.project)
        member.accept(image.id)
        assert member.get(image.id).id == image.id  # the member sees it

        def owners_view() -> tuple[Any, ...]:
            now = manager.get(image.id)
            return (now.name, now.description, now.visibility, set(now.tags),
                    set(now.aliases), dict(now.properties), now.checksum, now.size,
                    sorted((m.member_id, m.status.value) for m in manager.members(image)))

        before = owners_view()
        writes: dict[str, Callable[[], Any]] = {}
        if Capability.UPDATE in cls.capabilities:
            if "name" in cls.updatable:
                writes["update name"] = lambda: member.update(image.id, name=_unique("theirs"))
            if "properties" in cls.updatable:
                writes["update properties"] = lambda: member.update(
                    image.id, properties={"kit_owner": "theirs"})
            if "remove_properties" in cls.updatable:
                writes["remove a property"] = lambda: member.update(
                    image.id, remove_properties=["kit_owner"])
        if Capability.DELETE in cls.capabilities:
            writes["delete"] = lambda: member.delete(image.id)
        if Capability.ALIASES in cls.capabilities:
            writes["add an alias"] = lambda: member.add_alias(image.id, _unique("kit-theirs"))
            writes["remove the owner's alias"] = lambda: member.remove_alias(alias)
        writes["share with a third project"] = lambda: member.share(
            image.id, _unique("kit-third"))
        writes["unshare"] = lambda: member.unshare(image.id, share_target.project)
        for what, write in writes.items():
            with pytest.raises(PermissionDenied):
                write()
                pytest.fail(f"another project could {what!r} on an image it does not own")
            assert owners_view() == before, f"a refused '{what}' changed the image"
        manager.unshare(image, share_target.project)


class ConcurrencyConformance(_Fixtures):
    def test_two_writers_at_once(self, manager: ImageManager,
                                 make_image: Callable[..., Image],
                                 seed_payloads: list[ImagePayload]) -> None:
        requires(manager, Capability.CREATE, Capability.LIST)
        if self.serial_writes_reason:
            pytest.skip(f"declared: {self.serial_writes_reason}")
        start = threading.Barrier(2)
        payloads = seed_payloads[:2]

        def write(n: int) -> Image:
            start.wait(timeout=60)
            return make_image(name=_unique(f"writer{n}"), payload=payloads[n])

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            made = list(pool.map(write, range(2)))
        listed = {i.id for i in manager.all()}
        assert {i.id for i in made} <= listed, "a concurrent create was lost"
        if Capability.EXPORT in type(manager).capabilities:
            for image, payload in zip(made, payloads, strict=True):
                read_export(manager, image.id, payload)

    def test_two_updates_of_one_image_at_once(self, manager: ImageManager,
                                              make_image: Callable[..., Image]) -> None:
        requires(manager, Capability.UPDATE, Capability.GET)
        if "properties" not in type(manager).updatable:
            pytest.skip(f"backend {manager.name!r} does not declare 'properties' updatable")
        image = make_image()
        for round_ in range(3):
            start = threading.Barrier(2)

            def change(n: int, round_: int = round_,
                       start: threading.Barrier = start) -> None:
                start.wait(timeout=60)
                try:
                    manager.update(image.id, properties={f"writer{n}": str(round_)})
                except ImageConflict:
                    # An honest refusal of the loser; it retries once the winner is done.
                    manager.update(image.id, properties={f"writer{n}": str(round_)})

            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                list(pool.map(change, range(2)))
            props = manager.get(image.id).properties
            assert props.get("writer0") == str(round_) and props.get("writer1") == str(round_), (
                f"one of two concurrent updates was lost: {dict(props)}")

    def test_delete_while_export_is_read(self, manager: ImageManager,
                                         make_image: Callable[..., Image],
                                         large_payload: ImagePayload) -> None:
        requires(manager, Capability.CREATE, Capability.EXPORT, Capability.DELETE)
        image = make_image(payload=large_payload)
        stream = manager.export(image.id)
        deleted = False
        try:
            parts = stream.iter_parts()
            _part, chunks = next(parts)
            first = next(chunks)
            assert_same_bytes([first], large_payload.parts[0][:len(first)], "first chunk")

            def delete() -> bool:
                try:
                    manager.delete(image.id)
                except ImageNotFound:
                    raise
                except ImageHubError:
                    return False  # refused while in use: allowed, and retried below
                return True

            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                deleted = pool.submit(delete).result(timeout=600)

            def rest() -> None:
                offset = len(first)
                assert_same_bytes(chunks, large_payload.parts[0][offset:], "export part 0")
                for n, (_p, more) in enumerate(parts, start=1):
                    assert_same_bytes(more, large_payload.parts[n], f"export part {n}")

            try:
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    pool.submit(rest).result(timeout=600)
            except ImageHubError:
                pass  # the reader may be told, with an imagehub error, that it is gone
        finally:
            stream.close()
        if not deleted:
            manager.delete(image.id)
        with pytest.raises(ImageNotFound):
            manager.get(image.id)


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
        requires(manager, Capability.DELETE, Capability.GET)
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
    ConcurrencyConformance,
    BoundImageConformance,
):
    """Every conformance test; subclass it as ``Test<YourBackend>``."""
