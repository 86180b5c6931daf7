"""The normalised records every backend returns: Image, Member and their enums."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .compat import ImageSpellings, bind_image_class
from .errors import InvalidArgument, InvalidArgumentType, UnboundImageError

if TYPE_CHECKING:
    from .manager import ImageManager
    from .streams import ImageStream

__all__ = [
    "Image",
    "Member",
    "MemberStatus",
    "UnboundImageError",
    "Visibility",
    "normalize_architecture",
    "parse_datetime",
]


class Visibility(str, enum.Enum):
    PUBLIC = "public"
    PRIVATE = "private"
    SHARED = "shared"
    COMMUNITY = "community"

    def __str__(self) -> str:
        return self.value


class MemberStatus(str, enum.Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"

    def __str__(self) -> str:
        return self.value


# Providers spell one CPU many ways; users filter on one spelling.
_ARCH_ALIASES = {
    "x86_64": "x86_64", "amd64": "x86_64", "x86-64": "x86_64", "x64": "x86_64",
    "aarch64": "aarch64", "arm64": "aarch64", "armv8": "aarch64", "armv8l": "aarch64",
    "armv7l": "armv7l", "armhf": "armv7l", "armv7": "armv7l",
    "i686": "i686", "i386": "i686", "x86": "i686",
    "ppc64le": "ppc64le", "ppc64el": "ppc64le",
    "s390x": "s390x", "riscv64": "riscv64",
}


def normalize_architecture(value: str | None) -> str | None:
    """Map a provider's architecture name to the kernel's (``uname -m``) spelling."""
    if value is None or value == "":
        return None
    key = value.strip().lower()
    return _ARCH_ALIASES.get(key, key)


# Python 3.10's fromisoformat takes only what isoformat() writes: no "Z", no "+0000", and
# a fraction of exactly 3 or 6 digits. LXD writes nanoseconds, so rewrite those forms.
_ISO_FRACTION = re.compile(r"(T\d{2}:\d{2}:\d{2})\.(\d+)")
_ISO_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


def _iso_for_fromisoformat(text: str) -> str:
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = _ISO_OFFSET.sub(r"\1:\2", text) if "T" in text or " " in text else text
    return _ISO_FRACTION.sub(lambda m: f"{m[1]}.{m[2][:6].ljust(6, '0')}", text, count=1)


def parse_datetime(value: str | int | float | _dt.datetime | None) -> _dt.datetime | None:
    """Parse ISO 8601 text or a Unix time into an aware datetime (naive means UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, _dt.datetime):
        parsed = value
    elif isinstance(value, int | float):
        return _dt.datetime.fromtimestamp(value, tz=_dt.timezone.utc)
    else:
        parsed = _dt.datetime.fromisoformat(_iso_for_fromisoformat(value.strip()))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return parsed


@dataclasses.dataclass(frozen=True, kw_only=True)
class Image(ImageSpellings):
    """One machine image, as any backend describes it.

    An Image returned by a manager is *bound* to it: ``image.delete()`` and friends
    delegate there. The binding is not data: equality, hashing, repr, JSON and pickling
    ignore it.
    """

    id: str
    name: str | None = None
    backend: str = ""
    cloud: str | None = None
    description: str | None = None
    family: str | None = None
    version: str | None = None
    os: str | None = None
    release: str | None = None
    region: str | None = None
    architecture: str | None = None
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None
    size: int | None = None
    checksum: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    visibility: Visibility = Visibility.PRIVATE
    status: str = "active"
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    properties: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
    owner: str | None = None
    #: when the data was uploaded, when a cached copy expires, when it was last used
    #: (pylxd's attributes; None where a backend does not say)
    uploaded_at: _dt.datetime | None = None
    # These two move whenever the server uses the image: not part of its identity.
    expires_at: _dt.datetime | None = dataclasses.field(default=None, compare=False)
    last_used_at: _dt.datetime | None = dataclasses.field(default=None, compare=False)
    #: LXD: refreshed from its source automatically; a cached copy of a remote image
    auto_update: bool | None = None
    cached: bool | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False, compare=False,
                                               repr=False)
    _manager: ImageManager | None = dataclasses.field(
        default=None, hash=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        # Normalise here so every backend gets the same spellings for free.
        if not isinstance(self.id, str) or not self.id:
            raise InvalidArgumentType(f"Image id must be a non-empty string, got {self.id!r}")
        for name in ("aliases", "tags"):
            if isinstance(getattr(self, name), str | bytes):
                # tuple("abc") would make three one-letter aliases.
                raise InvalidArgumentType(f"Image {name} must be a list of strings, got "
                                          f"{getattr(self, name)!r}")
        if self.architecture is not None and not isinstance(self.architecture, str):
            raise InvalidArgumentType(f"Image architecture must be a string, got "
                                      f"{self.architecture!r}")
        object.__setattr__(self, "architecture", normalize_architecture(self.architecture))
        object.__setattr__(self, "visibility", _enum(Visibility, "visibility", self.visibility))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "tags", tuple(self.tags))
        for name in ("created_at", "updated_at", "uploaded_at", "expires_at", "last_used_at"):
            object.__setattr__(self, name, _datetime(name, getattr(self, name)))

    # -- pylxd's attribute names ------------------------------------------------------------
    @property
    def public(self) -> bool:
        """``visibility is Visibility.PUBLIC`` (pylxd's ``image.public``)."""
        return self.visibility is Visibility.PUBLIC

    @property
    def fingerprint(self) -> str | None:
        """The sha256 hex digest of the image (LXD's fingerprint is its id), else None."""
        algo, sep, digest = (self.checksum or "").partition(":")
        return digest if sep and algo == "sha256" else None

    # -- data ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the data fields (the stable ``--format json`` shape)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, _dt.datetime):
                value = value.isoformat()
            elif isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = _jsonable(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Image:
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        return cls(**{k: v for k, v in data.items() if k in known})

    def __getstate__(self) -> dict[str, Any]:
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state["_manager"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def with_manager(self, manager: ImageManager | None) -> Image:
        return dataclasses.replace(self, _manager=manager)

    @property
    def bound(self) -> bool:
        return self._manager is not None

    @property
    def manager(self) -> ImageManager:
        if self._manager is None:
            raise UnboundImageError(
                f"image {self.id!r} is not bound to a manager (it was built from data)",
                hint="fetch it again with imagehub.connect(cloud).get(id)",
            )
        return self._manager

    # -- bound actions (pylxd / pyrax style) ----------------------------------------------
    def reload(self) -> Image:
        return self.manager.get(self.id)

    def export(self) -> ImageStream:
        return self.manager.export(self)

    def delete(self) -> None:
        self.manager.delete(self)

    def update(self, **changes: Any) -> Image:
        return self.manager.update(self, **changes)

    def add_alias(self, name: str, description: str | None = None) -> Image:
        return self.manager.add_alias(self, name, description=description)

    def remove_alias(self, name: str) -> Image:
        # Only this image's alias: the same name on another image is not ours to remove.
        self.manager.remove_alias(name, self)
        return self.reload()

    def share(self, project: str) -> Member:
        return self.manager.share(self, project)

    def unshare(self, project: str) -> None:
        self.manager.unshare(self, project)

    def members(self) -> list[Member]:
        return self.manager.members(self)



bind_image_class(Image)

_E = TypeVar("_E", bound=enum.Enum)


def _enum(cls: type[_E], name: str, value: Any) -> _E:
    try:
        return cls(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be one of {', '.join(str(m.value) for m in cls)}, "
                              f"got {value!r}") from None


def _datetime(name: str, value: Any) -> _dt.datetime | None:
    if value is not None and not isinstance(value, str | int | float | _dt.datetime):
        raise InvalidArgumentType(f"{name} must be a date and time, got {value!r}")
    try:
        return parse_datetime(value)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidArgument(f"{name} is not a date and time: {value!r} ({exc})") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Member:
    """A project an image is shared with, and whether it took the share."""

    image_id: str
    member_id: str
    status: MemberStatus = MemberStatus.PENDING
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", _enum(MemberStatus, "status", self.status))
        for name in ("created_at", "updated_at"):
            object.__setattr__(self, name, _datetime(name, getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "member_id": self.member_id,
            "status": self.status.value,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


_LATEST_KEYS = ("family", "region", "architecture")


def latest(images: Iterable[Image], keys: tuple[str, ...] = _LATEST_KEYS) -> list[Image]:
    """The newest image of each group (default: family x region x architecture).

    An image without a family is grouped by its name (with its region and architecture)
    instead, and one without a name stands alone: images that share no family and no
    name are never merged. Newest means the latest ``created_at``, ties broken by
    ``version`` then ``id`` so the answer never depends on listing order.
    """
    best: dict[tuple[Any, ...], Image] = {}
    for image in images:
        group = _group(image, keys)
        current = best.get(group)
        if current is None or _recency(image) > _recency(current):
            best[group] = image
    return sorted(best.values(), key=lambda i: tuple(str(x) for x in _group_key(i, keys)))


def _group(image: Image, keys: tuple[str, ...]) -> tuple[Any, ...]:
    values = tuple(getattr(image, k, None) or image.properties.get(k) for k in keys)
    if keys != _LATEST_KEYS or values[0]:
        return ("family", *values)
    return ("name", image.name or image.id, *values[1:]) if image.name else ("id", image.id)


def _group_key(image: Image, keys: tuple[str, ...]) -> tuple[Any, ...]:
    values = tuple(getattr(image, k, None) or "" for k in keys)
    if keys == _LATEST_KEYS and not values[0]:
        return (image.name or image.id, *values[1:])
    return values


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _recency(image: Image) -> tuple[_dt.datetime, tuple[Any, ...], str]:
    return (image.created_at or _EPOCH, _version_key(image.version), image.id)


def _version_key(version: str | None) -> tuple[Any, ...]:
    # "22.04" < "24.04" and "1.10" > "1.9": compare numeric runs as numbers.
    if not version:
        return ()
    parts: list[Any] = []
    for chunk in version.replace("-", ".").split("."):
        parts.append((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk))
    return tuple(parts)


def matches(image: Image, filters: Mapping[str, Any]) -> bool:
    """Client-side filter: every key must match (same rules on every backend).

    A tuple or list of values matches any of them. ``alias`` and ``tag`` test membership;
    ``properties.K`` or an unknown key tests ``properties[K]``; ``architecture`` compares
    normalised names; ``public`` accepts true/false; ``size_min``/``size_max`` bound the
    size. The vocabulary is checked beforehand (``imagehub.filters.prepare``).
    """
    for key, wanted in filters.items():
        if wanted is None or key in ("sort_key", "sort_dir", "member_status"):
            continue  # ordering, and a share state only a sharing server can apply
        if key in ("size_min", "size_max"):
            if image.size is None:
                return False
            if (image.size < int(wanted)) if key == "size_min" else (image.size > int(wanted)):
                return False
            continue
        options = wanted if isinstance(wanted, list | tuple | set | frozenset) else (wanted,)
        if not any(_matches_one(image, key, str(w.value if isinstance(w, enum.Enum) else w))
                   for w in options):
            return False
    return True


def _matches_one(image: Image, key: str, want: str) -> bool:
    if key in ("created_at", "updated_at"):
        return _time_matches(getattr(image, key), want)
    if key == "alias":
        return want in image.aliases
    if key == "tag":
        return want in image.tags
    if key == "architecture":
        return image.architecture == normalize_architecture(want)
    if key == "public":
        return (image.visibility is Visibility.PUBLIC) == (want.lower() in ("1", "true", "yes"))
    if key.startswith("properties."):
        return image.properties.get(key[len("properties."):]) == want
    if key in _FIELD_NAMES:
        value = getattr(image, key)
        value = value.value if isinstance(value, enum.Enum) else value
        return value is not None and str(value) == want
    return image.properties.get(key) == want


def _time_matches(have: _dt.datetime | None, wanted: str) -> bool:
    # ``OP:TIME`` as imagehub.filters.prepare normalised it (Glance's syntax).
    op, sep, when = wanted.partition(":")
    if not sep or op not in ("gt", "gte", "lt", "lte", "eq", "neq"):
        op, when = "eq", wanted
    try:
        limit = parse_datetime(when)
    except ValueError:
        return False
    if have is None or limit is None:
        return False
    return {"gt": have > limit, "gte": have >= limit, "lt": have < limit,
            "lte": have <= limit, "eq": have == limit, "neq": have != limit}[op]


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Image) if not f.name.startswith("_"))
