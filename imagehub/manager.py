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

from .errors import (
    AmbiguousImage,
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


class ImageManager(abc.ABC):
    """Base class of every backend. Subclass it, set ``name``/``capabilities``, fill hooks."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[Capability] = Capability.NONE
    options: ClassVar[Mapping[str, Option]] = {}
    #: filters the backend applies itself in ``_list``; the rest are applied client-side
    server_filters: ClassVar[frozenset[str]] = frozenset()
    #: why an operation is missing, shown in UnsupportedOperation
    unsupported_reason: ClassVar[str | None] = None
    page_size: int = 200

    def __init__(self, *, cloud: str | None = None) -> None:
        self.cloud = cloud or self.name

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, cloud: str) -> ImageManager:
        """Build from validated config options (secrets already resolved)."""
        return cls(cloud=cloud, **options)

    def __repr__(self) -> str:
        # Never options: they may hold secrets.
        return f"<{type(self).__name__} cloud={self.cloud!r}>"

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections. Safe to call twice."""

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
        kept = [self.bind(i) for i in page if matches(i, plan.client)]
        plan.check_shorthand({k for i in page for k in i.properties})
        if plan.sort_key:
            kept = sort_images(kept, plan.sort_key, plan.reverse)
        return Page(kept, page.next_marker)

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

    list_all = all

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
                if matches(image, plan.client):
                    yield self.bind(image)
            if not page.next_marker or page.next_marker == marker:
                break
            marker = page.next_marker
        plan.check_shorthand(props_seen)

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

    def create(
        self,
        data: Source,
        *,
        name: str,
        metadata: Source | None = None,
        description: str | None = None,
        properties: Mapping[str, Any] | None = None,
        public: bool = False,
        visibility: Visibility | str | None = None,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        format: str | None = None,
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
        _check_text("image name", name)
        aliases = _strings("aliases", aliases)
        tags = _strings("tags", tags)
        for alias in aliases:
            _check_alias(alias)
        for kind, value in (("description", description), ("format", format),
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
        if not isinstance(public, bool):
            raise InvalidArgumentType(f"public must be True or False, got {public!r}")
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float)):
            raise InvalidArgumentType(f"timeout must be a number, got {timeout!r}")
        if checksum is not None:
            _check_checksum(checksum)
        vis = _visibility(visibility, public)
        parts: builtins.list[DataSource] = []
        if metadata is not None:
            parts.append(open_source(metadata, "metadata"))
            parts.append(open_source(data, "rootfs"))
        else:
            parts.append(open_source(data, "image"))
        spec = CreateSpec(
            name=name, description=description,
            properties={str(k): str(v) for k, v in (properties or {}).items()},
            visibility=vis, aliases=aliases, tags=tags, disk_format=format,
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

    def export(self, image: Image | str) -> ImageStream:
        """A streamed export; use it as a context manager, iterate it or ``save()`` it."""
        self.require(Capability.EXPORT, "export")
        target = self.resolve(image)
        stream = self._export(target)
        stream.image = stream.image or target
        return stream

    # -- changes --------------------------------------------------------------------------
    def delete(self, image: Image | str) -> None:
        self.require(Capability.DELETE, "delete")
        self._delete(self.resolve(image))

    def update(self, image: Image | str, **changes: Any) -> Image:
        """Change name, description, properties (merged), visibility, tags, or backend keys."""
        self.require(Capability.UPDATE, "update")
        changes = _check_changes(changes)
        return self.bind(self._update(self.resolve(image), changes))

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
        return self._launch(image, region, instance_type, ssh_key, name, extra)

    # -- hooks for backends ---------------------------------------------------------------
    @abc.abstractmethod
    def _list(self, limit: int | None, marker: str | None,
              filters: Mapping[str, Any]) -> Page:
        """One page of images after ``marker``; filters are those in ``server_filters``."""

    def _get(self, ref: str, filters: Mapping[str, Any]) -> Image:
        # Correct everywhere, if slow: backends with a direct lookup override this but
        # should keep resolve_ref's rules.
        return resolve_ref(self.all(**filters), ref, backend=self.name)

    def _create(self, parts: builtins.list[DataSource], spec: CreateSpec
                ) -> Image | Operation[Image]:
        raise UnsupportedOperation(self.name, "create", self.unsupported_reason)

    def _export(self, image: Image) -> ImageStream:
        raise UnsupportedOperation(self.name, "export", self.unsupported_reason)

    def _delete(self, image: Image) -> None:
        raise UnsupportedOperation(self.name, "delete", self.unsupported_reason)

    def _update(self, image: Image, changes: Mapping[str, Any]) -> Image:
        raise UnsupportedOperation(self.name, "update", self.unsupported_reason)

    def _add_alias(self, image: Image, name: str, description: str | None) -> None:
        raise UnsupportedOperation(self.name, "add_alias", self.unsupported_reason)

    def _remove_alias(self, name: str) -> None:
        raise UnsupportedOperation(self.name, "remove_alias", self.unsupported_reason)

    def _share(self, image: Image, project: str) -> Member:
        raise UnsupportedOperation(self.name, "share", self.unsupported_reason)

    def _unshare(self, image: Image, project: str) -> None:
        raise UnsupportedOperation(self.name, "unshare", self.unsupported_reason)

    def _members(self, image: Image) -> Iterable[Member]:
        raise UnsupportedOperation(self.name, "members", self.unsupported_reason)

    def _update_member(self, image: Image, status: MemberStatus,
                       member: str | None) -> Member:
        raise UnsupportedOperation(self.name, "update_member", self.unsupported_reason)

    def _launch(self, image: Image | str, region: str, instance_type: str, ssh_key: str,
                name: str | None, extra: Mapping[str, Any]) -> builtins.list[str]:
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


#: update keys every backend reads the same way; a backend may accept more of its own
_TEXT_CHANGES = ("description", "family", "version", "os", "release", "architecture")


def _check_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The common ``update`` keys checked and normalised before any backend sees them.

    Backends read ``tags`` with ``list()`` and ``public`` with ``bool()``: unchecked, a lone
    string became one tag per character and ``public="no"`` published the image.
    """
    checked = dict(changes)
    if "name" in checked:
        _check_text("image name", checked["name"])
    for key in _TEXT_CHANGES:
        value = checked.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidArgumentType(f"{key} must be a string or None, got "
                                      f"{type(value).__name__}")
    if "tags" in checked:
        checked["tags"] = _strings("tags", checked["tags"])
    if "remove_properties" in checked:
        value = checked["remove_properties"]
        checked["remove_properties"] = () if value is None else _strings(
            "remove_properties", value, kind_one="property name")
    if checked.get("properties") is not None:
        props = checked["properties"]
        if not isinstance(props, Mapping):
            raise InvalidArgumentType(
                f"properties must be a mapping, got {type(props).__name__}")
        for key in props:
            _check_text("property name", key)
    if "public" in checked and not isinstance(checked["public"], bool):
        raise InvalidArgumentType(f"public must be True or False, got {checked['public']!r}")
    if "visibility" in checked:
        if checked["visibility"] is None:
            raise InvalidArgumentType("visibility must be a string, got NoneType")
        checked["visibility"] = _visibility(checked["visibility"], False).value
    return checked


def _visibility(value: Any, public: bool) -> Visibility:
    if value is None:
        return Visibility.PUBLIC if public else Visibility.PRIVATE
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
