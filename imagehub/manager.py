"""ImageManager, the one interface every backend implements, and its Capability flags.

Public methods live here and are the same on every backend: they check the capability
before any I/O, accept an ``Image`` or a ref string, normalise data sources, and bind the
images they return. Backends override the protected hooks (``_list``, ``_create`` …) and
declare what they can do in ``capabilities``; the conformance kit checks that the two agree.
"""

from __future__ import annotations

import abc
import builtins
import dataclasses
import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Literal, overload

from .compat import ManagerSpellings, accepts_seed_keywords
from .diskformat import known_label, label_by_bytes, split_label
from .errors import (
    AmbiguousImage,
    ImageLookupError,
    ImageNotFound,
    InvalidArgument,
    InvalidArgumentType,
    UnsupportedOperation,
)
from .filters import Filters, prepare, sort_images
from .models import Image, Member, MemberStatus, Visibility, latest, matches
from .operations import Operation, completed
from .refs import KNOWN_ALGORITHMS, prefix_matches
from .streams import (
    DataSource,
    ImageStream,
    ProgressCallback,
    Source,
    open_source,
    parse_checksum,
)

__all__ = [
    "Capability",
    "CreateSpec",
    "ImageManager",
    "Option",
    "Page",
    "UpdateSpec",
    "resolve_ref",
]


class Capability(enum.Flag):
    """What a backend can do. Calling anything else raises UnsupportedOperation first."""

    NONE = 0
    LIST = enum.auto()
    GET = enum.auto()
    CREATE = enum.auto()
    EXPORT = enum.auto()
    DELETE = enum.auto()
    UPDATE = enum.auto()
    ALIASES = enum.auto()
    SHARE = enum.auto()
    MEMBERS = enum.auto()
    LAUNCH = enum.auto()
    READ = LIST | GET
    ALL_IMAGE_OPS = LIST | GET | CREATE | EXPORT | DELETE | UPDATE | ALIASES | SHARE | MEMBERS


# Which protected hooks a capability needs; the conformance kit checks declared flags
# against the hooks a backend actually overrides.
HOOKS: dict[Capability, tuple[str, ...]] = {
    Capability.LIST: ("_list",),
    Capability.CREATE: ("_create",),
    Capability.EXPORT: ("_export",),
    Capability.DELETE: ("_delete",),
    Capability.UPDATE: ("_update",),
    Capability.ALIASES: ("_add_alias", "_remove_alias"),
    Capability.SHARE: ("_share", "_unshare"),
    Capability.MEMBERS: ("_members", "_update_member"),
    Capability.LAUNCH: ("_launch",),
}


@dataclasses.dataclass(frozen=True)
class Option:
    """One key a cloud's config may set for a backend (validated before connecting)."""

    type: type | tuple[type, ...] = str
    default: Any = None
    required: bool = False
    secret: bool = False  # may be given as KEY_env: VARNAME; never echoed
    help: str = ""
    choices: tuple[Any, ...] | None = None
    # A secret's conventional environment variable, read when neither KEY nor KEY_env is
    # set (Lambda's LAMBDA_API_KEY); unset there, the backend decides what is missing.
    env: str | None = None


class Page(list[Image]):
    """One page of a listing; ``next_marker`` is None on the last page."""

    def __init__(self, items: Iterable[Image] = (), next_marker: str | None = None) -> None:
        super().__init__(items)
        self.next_marker = next_marker


@dataclasses.dataclass(frozen=True)
class CreateSpec:
    """Everything ``create`` was asked for, normalised, handed to a backend's ``_create``."""

    name: str
    description: str | None = None
    properties: Mapping[str, str] = dataclasses.field(default_factory=dict)
    visibility: Visibility = Visibility.PRIVATE
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    disk_format: str | None = None
    container_format: str | None = None
    architecture: str | None = None
    #: what the caller promises the bytes hash to; a backend verifies it before the image
    #: becomes visible, else ChecksumMismatch and nothing is left behind
    checksum: str | None = None
    timeout: float | None = None
    progress: ProgressCallback | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class UpdateSpec:
    """Every change ``update`` was asked for, normalised, handed to a backend's ``_update``.

    A field left at its default asks for no change. ``properties`` are merged into the
    image's (a value of None in the caller's mapping lands in ``remove_properties``);
    ``remove_properties`` deletes keys, and names a promoted field (``description``,
    ``family`` ...) to clear it; ``tags`` replace the whole list; ``extra`` carries keys
    only some backends know (LXD's ``auto_update``, Glance's ``protected`` ...).

    >>> sorted(UpdateSpec.from_changes({"public": True, "properties": {"os": "debian"}}).keys())
    ['properties', 'visibility']
    """

    name: str | None = None
    description: str | None = None
    properties: Mapping[str, str] = dataclasses.field(default_factory=dict)
    remove_properties: tuple[str, ...] = ()
    visibility: Visibility | None = None
    tags: tuple[str, ...] | None = None
    family: str | None = None
    version: str | None = None
    os: str | None = None
    release: str | None = None
    architecture: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def keys(self) -> frozenset[str]:
        """The names of the changes asked for: fields set, plus the ``extra`` keys."""
        # tags=() asks to clear the tags; empty properties or removals ask for nothing.
        asked = {f.name for f in dataclasses.fields(self)
                 if f.name not in ("extra", "properties", "remove_properties")
                 and getattr(self, f.name) is not None}
        asked |= {k for k in ("properties", "remove_properties") if getattr(self, k)}
        return frozenset(asked | set(self.extra))

    #: promoted image fields a spec can set (and ``remove_properties`` can clear)
    FIELDS: ClassVar[tuple[str, ...]] = ("description", "family", "version", "os", "release",
                                         "architecture")

    @classmethod
    def from_changes(cls, changes: Mapping[str, Any]) -> UpdateSpec:
        """Build a spec from ``update()``'s keywords, checking each value's type.

        ``public=True/False`` is accepted as an alias of ``visibility`` public/private;
        keys that are not fields of the spec go to ``extra`` unchanged.
        """
        given = dict(changes)
        core = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        fields: dict[str, Any] = {}
        if "public" in given:
            public = given.pop("public")
            if not isinstance(public, bool):
                raise InvalidArgumentType(f"public must be true or false, got {public!r}")
            alias = Visibility.PUBLIC if public else Visibility.PRIVATE
            if given.get("visibility") not in (None, alias, alias.value):
                raise InvalidArgument(f"public={public} contradicts visibility="
                                    f"{given['visibility']!r}; give one of them")
            given["visibility"] = alias
        if "name" in given:
            fields["name"] = _check_text("image name", given.pop("name"))
        for key in ("description", *cls.FIELDS):
            value = given.pop(key, None)
            if value is None:
                continue
            if key == "description":  # free text, newlines included, as create takes it
                if not isinstance(value, str):
                    raise InvalidArgumentType(
                        f"description must be a string, got {type(value).__name__}")
                fields[key] = value
            else:
                fields[key] = _check_text(key, value)
        removed_in = given.pop("remove_properties", None)
        removed = () if removed_in is None else _strings(
            "remove_properties", removed_in, kind_one="property name")
        props_in = given.pop("properties", None)
        if props_in is not None and not isinstance(props_in, Mapping):
            raise InvalidArgumentType(
                f"properties must be a mapping, got {type(props_in).__name__}")
        properties: dict[str, str] = {}
        for k, v in (props_in or {}).items():
            _check_text("property name", k)
            if v is None:
                removed = (*removed, k)
            else:
                properties[k] = str(v)
        fields["properties"] = properties
        fields["remove_properties"] = tuple(dict.fromkeys(removed))
        if "visibility" in given:
            # An explicit None is a mistake, not "no change": that is leaving it out.
            fields["visibility"] = _visibility(given.pop("visibility"), required=True)
        tags = given.pop("tags", None)
        if tags is not None:
            if isinstance(tags, str | bytes) or not isinstance(tags, Iterable):
                raise InvalidArgumentType(f"tags must be a list of strings, got "
                                          f"{type(tags).__name__}", hint=f"use tags=[{tags!r}]")
            fields["tags"] = tuple(dict.fromkeys(_check_text("tag", t) for t in tags))
        assert not set(given) & core
        return cls(**fields, extra=given)


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _check_text(kind: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentType(f"{kind} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidArgument(f"{kind} must be a non-empty string, got {value!r}")
    if _CONTROL_CHARS.search(value):
        raise InvalidArgument(f"{kind} {value!r} contains control characters")
    return value


def resolve_ref(candidates: Iterable[Image], ref: str, *, backend: str = "") -> Image:
    """Pick the one image ``ref`` names, with the same rules on every backend.

    In order: exact id; exact alias; exact name; then a prefix of an id or checksum (see
    ``imagehub.refs.prefix_matches``: at least 4 characters, ``ALGO:`` only for known
    algorithms and against that algorithm's checksum). Several matches at the first rule
    that matches raise AmbiguousImage.
    """
    _check_text("image reference", ref)
    pool = list(candidates)
    rules: tuple[Callable[[Image], bool], ...] = (
        lambda i: i.id == ref,
        lambda i: ref in i.aliases,
        lambda i: i.name == ref,
        lambda i: prefix_matches(ref, i.id, i.checksum) or any(
            prefix_matches(ref, "", c) for c in _other_checksums(i)),
    )
    for rule in rules:
        found = {i.id: i for i in pool if rule(i)}
        if len(found) == 1:
            return next(iter(found.values()))
        if found:
            raise AmbiguousImage(ref, list(found.values()), backend=backend)
    raise ImageNotFound(f"no image matches {ref!r}", backend=backend,
                        hint="run 'imagehub list' to see what exists")


class ImageManager(ManagerSpellings, abc.ABC):
    """Base class of every backend. Subclass it, set ``name``/``capabilities``, fill hooks."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[Capability] = Capability.NONE
    options: ClassVar[Mapping[str, Option]] = {}
    #: filters the backend applies itself in ``_list``; the rest are applied client-side
    server_filters: ClassVar[frozenset[str]] = frozenset()
    #: the ``UpdateSpec`` fields (and backend keys in its ``extra``) ``_update`` honours;
    #: ``update`` refuses any other key before I/O; the conformance kit exercises each
    #: ``UpdateSpec`` field listed (a backend's own keys are its own tests' to cover)
    updatable: ClassVar[frozenset[str]] = frozenset()
    #: keyword arguments of ``create`` beyond the common ones that ``_create`` honours (in
    #: ``spec.extra``); ``create`` refuses any other before reading a byte, so a misspelt
    #: keyword is an error, never dropped in silence
    create_options: ClassVar[frozenset[str]] = frozenset()
    #: property keys this backend cannot store as properties (its own record fields) ...
    reserved_properties: ClassVar[frozenset[str]] = frozenset()
    #: ... and prefixes of the ones it writes itself (its bookkeeping); migrate drops both
    #: from what it carries to an image of this backend, and never carries the prefixed
    #: ones away from it
    reserved_property_prefixes: ClassVar[tuple[str, ...]] = ()
    #: ref prefixes ``launch`` hands to ``_launch`` as written, because the provider
    #: resolves them itself, each with a line of help (Lambda: ``family:NAME``)
    launch_refs: ClassVar[Mapping[str, str]] = {}
    #: why an operation is missing, shown in UnsupportedOperation
    unsupported_reason: ClassVar[str | None] = None
    page_size: int = 200

    # -- abilities migrate uses: declared here, never discovered by trying ----------------
    #: ``_native_copy`` copies server-side to another manager of the same class
    native_copy: ClassVar[bool] = False
    #: ``_export_from(image, offset)`` starts at a byte (resuming a cut download)
    ranged_export: ClassVar[bool] = False
    #: how many files one image may have (an LXD split image: metadata + rootfs)
    max_parts: ClassVar[int] = 1
    #: the algorithms of the checksum the backend reports on an image it stored
    checksum_algorithms: ClassVar[frozenset[str]] = frozenset()
    #: disk formats a virtual-machine image from elsewhere may arrive in; None means
    #: any (kept as it is)
    vm_disk_formats: ClassVar[frozenset[str] | None] = None
    #: a virtual-machine image here is a split image whose metadata imagehub must write
    #: (LXD); migrate then builds it from the source image's fields
    vm_needs_metadata: ClassVar[bool] = False
    #: the backend's own word for the layout of a split image (metadata + rootfs), the one
    #: disk format ``create`` accepts for one; None: a split image has no disk format
    split_disk_format: ClassVar[str | None] = None
    #: disk format labels ``create`` accepts beyond the ones imagehub knows
    #: (``imagehub.diskformat.KNOWN_DISK_FORMATS``); None: any, for a provider that checks
    #: them itself (Glance answers one it is not configured for with an error)
    own_disk_formats: ClassVar[frozenset[str] | None] = frozenset()

    def __init__(self, *, cloud: str | None = None) -> None:
        self.cloud = cloud or self.name

    @classmethod
    def image_kind(cls, image: Image) -> str | None:
        """``container`` or ``virtual-machine`` where this backend's record says so in its
        own words (beyond ``container_format``); None when it cannot tell."""
        return None

    @classmethod
    def not_viable(cls) -> str | None:
        """Why this backend cannot work on this machine, or None when it can.

        keyring's ``viable``, with the reason kept: ``imagehub backends`` shows it. Called
        without an instance, so it must be cheap and must not touch the network.
        """
        return None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, cloud: str) -> ImageManager:
        """Build from validated config options (secrets already resolved)."""
        return cls(cloud=cloud, **options)

    def __repr__(self) -> str:
        # Never options: they may hold secrets.
        return f"<{type(self).__name__} cloud={self.cloud!r}>"

    def close(self) -> None:
        """Release connections. Safe to call twice. (Most backends hold none.)"""

    def __enter__(self) -> ImageManager:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- guards and helpers ---------------------------------------------------------------
    def require(self, capability: Capability, operation: str) -> None:
        if capability not in type(self).capabilities:
            raise UnsupportedOperation(self.name or type(self).__name__, operation,
                                       self.unsupported_reason)

    def bind(self, image: Image) -> Image:
        """Attach this manager (and its cloud's name) to an image the backend built."""
        return dataclasses.replace(image, backend=image.backend or self.name,
                                   cloud=self.cloud, _manager=self)

    def resolve(self, image: Image | str) -> Image:
        """An Image of this backend for ``image`` (looked up when given a ref string)."""
        if isinstance(image, Image):
            if image.backend in ("", self.name) and (image.cloud in (None, self.cloud)):
                return image
            return self.get(image.id)
        return self.get(image)

    # -- listing --------------------------------------------------------------------------
    def list(self, limit: int | None = None, marker: str | None = None,
             **filters: Any) -> Page:
        """One page, pyrax style: up to ``limit`` images after the image ``marker``."""
        self.require(Capability.LIST, "list")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidArgumentType(f"limit must be a whole number, got {limit!r}")
        if limit is not None and limit < 1:
            raise InvalidArgument(f"limit must be at least 1, got {limit}")
        if marker is not None:
            _check_text("marker", marker)
        plan = prepare(filters, self._server_keys(), self._server_filter_ok)
        page = self._list(limit, marker, plan.server)
        props = {k for i in page for k in i.properties}
        kept = self._client_matches(page, plan.client)
        next_marker = page.next_marker
        # Filters matched here can thin a server page out, even to nothing; read on until
        # the page is full or the listing ends, so an empty page always means the end.
        want = limit or 1
        topped_up = False
        while plan.client and len(kept) < want and next_marker and next_marker != marker:
            marker = next_marker
            page = self._list(limit, marker, plan.server)
            props.update(k for i in page for k in i.properties)
            kept += self._client_matches(page, plan.client)
            next_marker = page.next_marker
            topped_up = True
        # Trim only what topping up added: a backend's own page is passed on as it came,
        # so one that ignores limit is still seen to (the conformance kit checks it).
        if topped_up and limit is not None and len(kept) > limit:
            kept, next_marker = kept[:limit], kept[limit - 1].id
        plan.check_shorthand(props)
        if plan.sort_key:
            kept = sort_images(kept, plan.sort_key, plan.reverse)
        return Page(kept, next_marker if kept else None)

    def all(self, *, latest: bool = False, **filters: Any) -> Iterator[Image]:
        """Every image, lazily, following pagination. ``latest`` keeps the newest per
        family x region x architecture."""
        self.require(Capability.LIST, "list")
        if not isinstance(latest, bool):
            raise InvalidArgumentType(f"latest must be True or False, got {latest!r}")
        # Refuses bad keys here, before any request.
        plan = prepare(filters, self._server_keys(), self._server_filter_ok)
        images = self._iter_all(filters, plan)
        if latest:
            images = iter(_latest(images))
        if plan.sort_key:
            return iter(sort_images(images, plan.sort_key, plan.reverse))
        return images

    def _iter_all(self, filters: Mapping[str, Any], plan: Filters | None = None
                  ) -> Iterator[Image]:
        plan = plan or prepare(filters, self._server_keys(), self._server_filter_ok)
        marker: str | None = None
        seen: set[str] = set()
        props_seen: set[str] = set()
        while True:
            page = self._list(self.page_size, marker, plan.server)
            for image in page:
                # A backend whose marker is off by one must not yield an image twice.
                if image.id in seen:
                    continue
                seen.add(image.id)
                if plan.shorthand:
                    props_seen.update(image.properties)
                bound = self.bind(image)
                if matches(bound, plan.client):
                    yield bound
            if not page.next_marker or page.next_marker == marker:
                break
            marker = page.next_marker
        plan.check_shorthand(props_seen)

    def _client_matches(self, images: Iterable[Image], client: Mapping[str, Any]
                        ) -> builtins.list[Image]:
        """The images, bound, that the client-side filters keep. Bound first: ``cloud``
        (and a ``backend`` the hook left out) is only known once bound, and a filter must
        judge the image as the caller sees it."""
        bound = [self.bind(i) for i in images]
        return [i for i in bound if matches(i, client)] if client else bound

    def _server_keys(self) -> frozenset[str]:
        return frozenset(self.server_filters)

    def _server_filter_ok(self, key: str, value: Any) -> bool:
        """Whether the server can take this value for a key in ``server_filters``; a value
        it would misread (Glance reads ``a:b`` as an operator) is matched on the client."""
        return True

    def _split_filters(self, filters: Mapping[str, Any]
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
        plan = prepare(filters, self._server_keys(), self._server_filter_ok)
        return plan.server, plan.client

    def get(self, ref: str, **filters: Any) -> Image:
        """Id, fingerprint or unique prefix, name, or alias; ``filters`` narrow the search.

        ``CLOUD:REF`` naming this manager's own cloud works too (see imagehub.refs); a ref
        that merely looks like one is tried as written when the short form finds nothing.
        """
        self.require(Capability.GET, "get")
        _check_text("image reference", ref)
        own = f"{self.cloud}:"
        if ref == own:
            raise InvalidArgument(f"{ref!r} names cloud {self.cloud!r} but no image",
                                  hint=f"write {own}REF, e.g. {own}my-image")
        if ref.startswith(own):
            try:
                return self.bind(self._get(ref[len(own):], filters))
            except ImageNotFound:
                pass
        return self.bind(self._get(ref, filters))

    # -- create / export ------------------------------------------------------------------
    @overload
    def create(self, data: Source, *, name: str, wait: Literal[True] = ...,
               **kwargs: Any) -> Image: ...

    @overload
    def create(self, data: Source, *, name: str, wait: Literal[False],
               **kwargs: Any) -> Operation[Image]: ...

    @accepts_seed_keywords("visibility", "disk_format")
    def create(
        self,
        data: Source,
        *,
        name: str,
        metadata: Source | None = None,
        description: str | None = None,
        properties: Mapping[str, Any] | None = None,
        visibility: Visibility | str | None = None,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        disk_format: str | None = None,
        container_format: str | None = None,
        architecture: str | None = None,
        checksum: str | None = None,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        **extra: Any,
    ) -> Image | Operation[Image]:
        """Upload an image from a path, binary file object or iterable of bytes.

        ``metadata`` makes a split image (LXD: metadata tarball + rootfs ``data``). With
        ``wait=False`` an Operation is returned whose ``result`` is the Image.
        """
        self.require(Capability.CREATE, "create")
        # None means "not given", for a backend's own options as for the common ones.
        extra = {k: v for k, v in extra.items() if v is not None}
        unknown = set(extra) - type(self).create_options
        if unknown:
            known = ", ".join(sorted(type(self).create_options)) or "none beyond the common ones"
            raise InvalidArgument(
                f"unknown create option(s) for a {self.name} image: "
                f"{', '.join(sorted(unknown))} (backend options: {known})", backend=self.name,
                hint="family, version, os and release go in properties={...}"
                if unknown & {"family", "version", "os", "release"} else None)
        _check_text("image name", name)
        aliases = _strings("aliases", aliases)
        tags = _strings("tags", tags)
        # What the backend cannot keep is refused before a byte moves, not dropped.
        if aliases and Capability.ALIASES not in type(self).capabilities:
            raise UnsupportedOperation(self.name, "aliases", self.unsupported_reason)
        if tags and "tags" not in type(self).updatable:
            raise UnsupportedOperation(self.name, "tags", "it keeps no tags on its images")
        for alias in aliases:
            _check_alias(alias)
        for kind, value in (("description", description), ("disk_format", disk_format),
                            ("container_format", container_format),
                            ("architecture", architecture), ("checksum", checksum)):
            if value is not None and not isinstance(value, str):
                raise InvalidArgumentType(f"{kind} must be a string, got "
                                          f"{type(value).__name__}")
        if properties is not None and not isinstance(properties, Mapping):
            raise InvalidArgumentType(
                f"properties must be a mapping, got {type(properties).__name__}")
        for key in properties or {}:
            _check_text("property name", key)
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float)):
            raise InvalidArgumentType(f"timeout must be a number, got {timeout!r}")
        if checksum is not None:
            _check_checksum(checksum)
        # Before a byte is read: a split image takes no disk format (its parts are not a
        # disk), and a one-file image none imagehub or the backend does not know.
        if metadata is not None:
            disk_format = split_label(disk_format, type(self).split_disk_format,
                                      backend=self.name)
        elif disk_format is not None:
            disk_format = known_label(disk_format, type(self).own_disk_formats,
                                      backend=self.name)
        vis = _visibility(visibility)
        parts: builtins.list[DataSource] = []
        if metadata is not None:
            parts.append(open_source(metadata, "metadata"))
            parts.append(open_source(data, "rootfs"))
        else:
            # One file is a disk image somewhere: label it by its bytes, or refuse a
            # label they contradict, before anything is sent. (A split image's rootfs
            # is the backend's own format, not a disk.)
            disk_format, whole = label_by_bytes(open_source(data, "image"), disk_format,
                                                self.name)
            parts.append(whole)
        spec = CreateSpec(
            name=name, description=description,
            properties={str(k): str(v) for k, v in (properties or {}).items()},
            visibility=vis, aliases=aliases, tags=tags, disk_format=disk_format,
            container_format=container_format, architecture=architecture,
            checksum=checksum, timeout=timeout, progress=progress, extra=dict(extra),
        )
        made = self._create(parts, spec)
        if isinstance(made, Image):
            return self.bind(made) if wait else completed(self.bind(made), backend=self.name)
        op = made
        if not wait:
            return op
        return self.bind(op.wait(timeout))

    def export(self, image: Image | str, *, offset: int = 0) -> ImageStream:
        """A streamed export; use it as a context manager, iterate it or ``save()`` it.

        ``offset`` starts at that byte, where the backend declares ``ranged_export``; the
        stream's checksums then cannot be verified (they cover the whole image).
        """
        self.require(Capability.EXPORT, "export")
        if offset < 0:
            raise InvalidArgument(f"export offset must be 0 or more, got {offset}")
        target = self.resolve(image)
        if offset:
            if not type(self).ranged_export:
                raise UnsupportedOperation(self.name or type(self).__name__,
                                           "export from an offset", "it cannot read a range")
            stream = self._export_from(target, offset)
        else:
            stream = self._export(target)
        stream.image = stream.image or target
        return stream

    # -- changes --------------------------------------------------------------------------
    def delete(self, image: Image | str) -> None:
        self.require(Capability.DELETE, "delete")
        self._delete(self.resolve(image))

    def update(self, image: Image | str, spec: UpdateSpec | None = None, /,
               **changes: Any) -> Image:
        """Change an image: give an ``UpdateSpec`` or its fields as keywords.

        ``name``, ``description``, ``properties`` (merged), ``remove_properties``,
        ``visibility``, ``tags`` (replaced), ``family``, ``version``, ``os``, ``release``,
        ``architecture``, and the backend's own keys. ``public=True`` is kept as an alias of
        ``visibility="public"``. A key the backend does not list in ``updatable`` raises
        ImageHubError before any request. For example
        ``manager.update("web", properties={"os": "debian"}, public=True)``.
        """
        self.require(Capability.UPDATE, "update")
        if spec is None:
            spec = UpdateSpec.from_changes(changes)
        elif changes:
            raise InvalidArgument("give update() an UpdateSpec or keywords, not both")
        asked = spec.keys()
        unknown = asked - type(self).updatable
        if unknown:
            raise InvalidArgument(
                f"cannot update {', '.join(repr(k) for k in sorted(unknown))} on a "
                f"{self.name} image (updatable: {', '.join(sorted(type(self).updatable))})",
                backend=self.name)
        target = self.resolve(image)
        if not asked:
            return self.get(target.id)
        return self.bind(self._update(target, spec))

    def add_alias(self, image: Image | str, name: str,
                  description: str | None = None) -> Image:
        self.require(Capability.ALIASES, "add_alias")
        _check_alias(name)
        if description is not None and not isinstance(description, str):
            raise InvalidArgumentType(f"alias description must be a string, got "
                                      f"{type(description).__name__}")
        target = self.resolve(image)
        self._add_alias(target, name, description)
        return self.get(target.id)

    def remove_alias(self, name: str, image: Image | str | None = None) -> None:
        """Remove alias ``name``; with ``image``, only if the alias points at that image."""
        self.require(Capability.ALIASES, "remove_alias")
        _check_alias(name)
        if image is not None:
            target = self.resolve(image)
            current = self.get(target.id)
            if name not in current.aliases:
                raise ImageNotFound(f"image {target.id} has no alias {name!r}",
                                    backend=self.name,
                                    hint="the alias may belong to another image; "
                                         "call remove_alias without an image to remove it")
        self._remove_alias(name)

    # -- sharing --------------------------------------------------------------------------
    def share(self, image: Image | str, project: str) -> Member:
        self.require(Capability.SHARE, "share")
        _check_text("project", project)
        return self._share(self.resolve(image), project)

    def unshare(self, image: Image | str, project: str) -> None:
        self.require(Capability.SHARE, "unshare")
        _check_text("project", project)
        self._unshare(self.resolve(image), project)

    def members(self, image: Image | str) -> builtins.list[Member]:
        self.require(Capability.MEMBERS, "members")
        return list(self._members(self.resolve(image)))

    def update_member(self, image: Image | str, status: MemberStatus | str,
                      member: str | None = None) -> Member:
        """As the member project: accept, reject, or return a share to pending."""
        self.require(Capability.MEMBERS, "update_member")
        try:
            wanted = MemberStatus(status)
        except ValueError:
            raise InvalidArgument(f"member status must be accepted, rejected or pending, "
                                  f"got {status!r}") from None
        return self._update_member(self._resolve_shared(image), wanted, member)

    def accept(self, image: Image | str, member: str | None = None) -> Member:
        return self.update_member(image, MemberStatus.ACCEPTED, member)

    def reject(self, image: Image | str, member: str | None = None) -> Member:
        return self.update_member(image, MemberStatus.REJECTED, member)

    def _resolve_shared(self, image: Image | str) -> Image:
        # A pending share is hidden from a member's default listing (Glance does this), so a
        # ref is first looked up as usual, then among every membership state.
        try:
            return self.resolve(image)
        except ImageNotFound:
            if isinstance(image, Image):
                raise
            return self.get(image, member_status="all")

    def launch(self, image: Image | str, region: str, instance_type: str, ssh_key: str,
               name: str | None = None, **extra: Any) -> builtins.list[str]:
        """Start instances from an image where the provider can; returns instance ids."""
        self.require(Capability.LAUNCH, "launch")
        _check_text("region", region)
        target: Image | str
        if isinstance(image, str) and image.startswith(tuple(type(self).launch_refs)):
            target = image  # the provider resolves this kind of ref itself
        else:
            target = self._resolve_in_region(image, region)
        return self._launch(target, region, instance_type, ssh_key, name, extra)

    def _resolve_in_region(self, image: Image | str, region: str) -> Image:
        # Like resolve(), but a name that exists in several regions means the one in
        # ``region``; an image that has no region at all is valid in any.
        if isinstance(image, Image):
            return self.resolve(image)
        try:
            return self.get(image, region=region)
        except ImageNotFound as exc:
            try:
                found = self.get(image)
            except ImageLookupError:
                found = None
            if found is not None and found.region is None:
                return found
            helps = list(type(self).launch_refs.values())
            exc.hint = "; ".join([f"no image {image!r} in {region}", *helps]) if helps else (
                exc.hint)
            raise

    # -- hooks for backends ---------------------------------------------------------------
    # Each docstring keeps the fields "Returns:", "Raises:" and "Threads:"; the hook table
    # in docs/writing-backends.md is generated from them, and a test keeps the two equal.
    # Common to every hook: the public method has already checked the capability and
    # resolved refs, so a hook receives an ``Image`` of this backend (never a ref string),
    # and any error it raises should be an ``imagehub.errors`` error mapped in one place.
    @abc.abstractmethod
    def _list(self, limit: int | None, marker: str | None,
              filters: Mapping[str, Any]) -> Page:
        """One page of images, in a stable order, after the image whose id is ``marker``.

        ``limit`` is the most images to return (None: no limit); ``filters`` holds only
        the keys named in ``server_filters`` (never None values); the base applies every
        other filter on the client with ``imagehub.models.matches``.

        Returns: ``Page(images, next_marker)``: at most ``limit`` unbound ``Image``s;
        ``next_marker`` is the id to pass as ``marker`` for the next page, None on the last.
        Raises: ``ImageNotFound`` when ``marker`` names no image.
        Threads: may be called from several threads at once.
        """

    def _get(self, ref: str, filters: Mapping[str, Any]) -> Image:
        """The one image ``ref`` names: id, alias, name, then a unique id prefix.

        Optional: the default resolves over ``all(**filters)`` with ``resolve_ref``;
        override it for a direct lookup but keep those rules. ``filters`` are every
        filter the caller gave (server and client keys alike).

        Returns: an unbound ``Image``.
        Raises: ``ImageNotFound`` when nothing matches (never a provider error such as a
        404), ``AmbiguousImage`` when several images match at the same rule.
        Threads: may be called from several threads at once.
        """
        return resolve_ref(self.all(**filters), ref, backend=self.name)

    def _create(self, parts: builtins.list[DataSource], spec: CreateSpec
                ) -> Image | Operation[Image]:
        """Store a new image from ``parts`` as ``spec`` describes.

        ``parts`` is a list of ``imagehub.streams.DataSource``: one part (``name``
        "image"), or two for a split image ("metadata" then "rootfs"). Read each once,
        with ``part.chunks()`` (bytes of at most ``CHUNK_SIZE``); ``part.size`` is the
        length when known, else None. Never read a part whole into memory.
        ``spec.disk_format`` is already checked: a disk format imagehub knows or one in
        ``own_disk_formats``; for a split image None or ``split_disk_format``.

        Returns: the new unbound ``Image``, or an ``Operation[Image]`` still running.
        Raises: ``ChecksumMismatch`` when ``spec.checksum`` is given and the bytes differ,
        before the image becomes visible; ``ImageConflict`` when the provider already
        holds these bytes or names; ``InvalidImageData`` for bytes it refuses. After any
        failure no image, record or temporary file is left behind.
        Threads: two creates may run at once (from threads or processes); neither may
        lose or corrupt the other's image.
        """
        raise UnsupportedOperation(self.name, "create", self.unsupported_reason)

    def _export(self, image: Image) -> ImageStream:
        """The bytes of ``image``, as an ``ImageStream`` of one ``StreamPart`` per part.

        Open what you need here and read lazily in the parts' ``chunks``; pass
        ``checksum`` when the provider knows one (the stream then verifies it at the end)
        and ``on_close`` to release what you opened.

        Returns: an ``ImageStream`` whose parts, joined, are exactly the stored bytes.
        Raises: ``ImageNotFound`` when the image is gone; while streaming, a
        ``TransferError`` (or another ``ImageHubError``) rather than a bare OS or HTTP
        error, and never wrong bytes.
        Threads: the stream is read from another thread than the one that called
        ``_export`` (migrate and ``save`` overlap reading and writing), and the image may
        be deleted while it is read: keep no thread-bound handle (e.g. an sqlite
        connection) open across chunks; the reader gets the whole image or an
        ``ImageHubError``.
        """
        raise UnsupportedOperation(self.name, "export", self.unsupported_reason)

    def _export_from(self, image: Image, offset: int) -> ImageStream:
        """The image's bytes from ``offset`` on (one part); see ``ranged_export``."""
        raise UnsupportedOperation(self.name, "export from an offset", self.unsupported_reason)

    def _native_copy(self, image: Image, target: ImageManager
                     ) -> Image | Operation[Image]:
        """A server-side copy of ``image`` to ``target`` (same class); see native_copy."""
        raise UnsupportedOperation(self.name, "native copy", self.unsupported_reason)

    def native_copy_mode(self, target: ImageManager) -> str:
        """How ``_native_copy`` would copy to ``target`` (a label for plans)."""
        return "copy"

    def _delete(self, image: Image) -> None:
        """Remove ``image`` and everything stored for it.

        Returns: None.
        Raises: ``ImageNotFound`` when it is already gone; ``PermissionDenied`` when the
        provider protects it or another project owns it.
        Threads: may run while an export of the same image is being read; the export then
        completes or raises an ``ImageHubError``.
        """
        raise UnsupportedOperation(self.name, "delete", self.unsupported_reason)

    def _update(self, image: Image, spec: UpdateSpec) -> Image:
        """Apply every change in ``spec`` (see ``UpdateSpec``) to ``image``.

        ``spec.keys()`` is never empty and only holds names listed in ``updatable``.
        ``properties`` merge into the existing ones, ``remove_properties`` delete keys or
        clear promoted fields, ``tags`` replace the list, ``visibility`` is a
        ``Visibility``; anything in ``spec.extra`` is a backend key you declared.

        Returns: the image as stored after the change (unbound).
        Raises: ``ImageNotFound`` when the image is gone; ``UnsupportedOperation`` for a
        value the provider cannot hold (e.g. a visibility it lacks); ``PermissionDenied``
        when the provider refuses. A refused change leaves the image unchanged.
        Threads: two updates of one image may run at once; both must take effect, or the
        loser raises ``ImageConflict``; neither may silently undo the other.
        """
        raise UnsupportedOperation(self.name, "update", self.unsupported_reason)

    def _add_alias(self, image: Image, name: str, description: str | None) -> None:
        """Point the alias ``name`` (already checked: no path-like segments) at ``image``.

        Returns: None (``add_alias`` re-reads the image).
        Raises: ``ImageConflict`` when the alias exists; ``PermissionDenied`` when another
        project owns the image.
        Threads: may be called from several threads at once.
        """
        raise UnsupportedOperation(self.name, "add_alias", self.unsupported_reason)

    def _remove_alias(self, name: str) -> None:
        """Delete the alias ``name``; the image it named stays.

        Returns: None.
        Raises: ``ImageNotFound`` when no such alias exists; ``PermissionDenied`` when
        another project owns the image it names (the same right as adding it).
        Threads: may be called from several threads at once.
        """
        raise UnsupportedOperation(self.name, "remove_alias", self.unsupported_reason)

    def _share(self, image: Image, project: str) -> Member:
        """Offer ``image`` to ``project``; the share starts pending where the provider has
        membership states.

        Returns: the new ``Member``.
        Raises: ``ImageConflict`` when already shared with ``project``;
        ``PermissionDenied`` when another project owns ``image``.
        Threads: may be called from several threads at once.
        """
        raise UnsupportedOperation(self.name, "share", self.unsupported_reason)

    def _unshare(self, image: Image, project: str) -> None:
        """Withdraw the share of ``image`` with ``project``.

        Returns: None.
        Raises: ``ImageNotFound`` when ``image`` is not shared with ``project``;
        ``PermissionDenied`` when another project owns ``image``.
        Threads: may be called from several threads at once.
        """
        raise UnsupportedOperation(self.name, "unshare", self.unsupported_reason)

    def _members(self, image: Image) -> Iterable[Member]:
        """The projects ``image`` is shared with, each with its ``MemberStatus``.

        Returns: an iterable of ``Member``.
        Raises: ``ImageNotFound`` when the image is gone.
        Threads: may be called from several threads at once.
        """
        raise UnsupportedOperation(self.name, "members", self.unsupported_reason)

    def _update_member(self, image: Image, status: MemberStatus,
                       member: str | None) -> Member:
        """As the member project (``member``, or this manager's own when None), set the
        share's status: accepted, rejected, or back to pending.

        A member's default listing shows shares it accepted, not pending or rejected
        ones; the ``member_status`` filter (``"all"`` or a status) shows those.
        ``image`` was found with ``member_status="all"``.

        Returns: the ``Member`` with its new status.
        Raises: ``ImageNotFound`` when the image is not shared with the member;
        ``PermissionDenied`` when answering for another project.
        Threads: may be called from several threads at once.
        """
        raise UnsupportedOperation(self.name, "update_member", self.unsupported_reason)

    def _launch(self, image: Image | str, region: str, instance_type: str, ssh_key: str,
                name: str | None, extra: Mapping[str, Any]) -> builtins.list[str]:
        """Start instances from ``image`` (an ``Image`` or ref) in ``region``.

        Returns: the new instance ids.
        Raises: ``ImageNotFound`` for an unknown image; ``QuotaExceeded`` or
        ``BackendError`` when the provider refuses.
        Threads: may be called from several threads at once.
        """
        raise UnsupportedOperation(self.name, "launch", self.unsupported_reason)


def _other_checksums(image: Image) -> list[str]:
    # Glance keeps an md5 ``checksum`` beside its os_hash (sha512), which becomes
    # Image.checksum; "md5:<what openstack image show prints>" must find the image too.
    raw = image.raw if isinstance(image.raw, Mapping) else {}
    md5 = raw.get("checksum")
    if isinstance(md5, str) and len(md5) == 32 and image.checksum != f"md5:{md5}" \
            and all(c in "0123456789abcdefABCDEF" for c in md5):
        return [f"md5:{md5}"]
    return []


def _check_alias(alias: str) -> None:
    _check_text("alias", alias)
    # "ubuntu/22.04" is a normal LXD alias, but no alias may read as a path that climbs
    # out of wherever a backend keeps it: no empty, "." or ".." segment, no backslash.
    segments = alias.split("/")
    if "\\" in alias or alias != alias.strip() or any(s in ("", ".", "..") for s in segments):
        raise InvalidArgument(f"alias {alias!r} is not allowed: no surrounding spaces, "
                              "backslashes, or empty, '.' or '..' path segments")


def _strings(kind: str, values: Any, *, kind_one: str | None = None) -> tuple[str, ...]:
    # A lone string is iterable too: "abc" must not become the aliases a, b and c.
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidArgumentType(f"{kind} must be a list of strings, got "
                                  f"{type(values).__name__} {values!r}",
                                  hint=f"pass {kind}=[{values!r}] for a single one")
    items = tuple(values)
    for item in items:
        _check_text(kind_one or kind[:-1], item)
    repeated = sorted({i for i in items if items.count(i) > 1})
    if repeated:
        raise InvalidArgument(f"{kind} repeat {', '.join(map(repr, repeated))}")
    return items


def _visibility(value: Any, *, required: bool = False) -> Visibility:
    if value is None and not required:
        return Visibility.PRIVATE
    if not isinstance(value, str):
        raise InvalidArgumentType(f"visibility must be a string, got {type(value).__name__}")
    try:
        return Visibility(value.lower())
    except ValueError:
        raise InvalidArgument(f"visibility must be one of "
                              f"{', '.join(v.value for v in Visibility)}, got {value!r}"
                              ) from None


def _check_checksum(value: str) -> None:
    try:
        algo, digest = parse_checksum(value)
    except ValueError as exc:
        raise InvalidArgument(str(exc), hint="write ALGO:HEX, e.g. sha256:...") from None
    if algo not in KNOWN_ALGORITHMS or not digest or any(
            c not in "0123456789abcdef" for c in digest):
        raise InvalidArgument(f"checksum {value!r} is not ALGO:HEX with a known algorithm "
                              f"({', '.join(sorted(KNOWN_ALGORITHMS))})")


def _latest(images: Iterable[Image]) -> list[Image]:
    return latest(images)


def overridden_hooks(cls: type[ImageManager]) -> set[str]:
    """Hook names a backend class overrides (for the capability/hook agreement check)."""
    names = {h for hooks in HOOKS.values() for h in hooks}
    return {n for n in names if getattr(cls, n) is not getattr(ImageManager, n)}


def declared_hooks(capabilities: Capability) -> set[str]:
    return {h for cap, hooks in HOOKS.items() if cap in capabilities for h in hooks}
