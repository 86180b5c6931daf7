"""Seed spellings: the one place where second names for core API calls live.

The core API has one name per concept: ``all()`` (not ``list_all``), ``visibility=`` (not
``public=``) and ``disk_format=`` (not ``format=``). People arriving from pylxd, pyrax or
imagehub 0.1 typed the other spellings; they keep working, and this module is where each
is defined and documented (``docs/api.md``, "Seed spellings"). Nothing else in imagehub
may add a second name.

- :data:`SEED_KEYWORDS` - keyword arguments renamed on the way into a core call;
- :class:`ManagerSpellings` - method names on every ImageManager;
- :class:`ImageSpellings` - method names on every Image, read-only ``image["field"]``
  (the Lambda client's dicts) and the seed idiom ``image.public = True`` refused with
  what to write instead;
- :class:`StreamSpellings` - attribute names on every ImageStream.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .errors import InvalidArgument, InvalidArgumentType

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .models import Image, Member

__all__ = ["SEED_KEYWORDS", "ImageSpellings", "ManagerSpellings", "ReadOnlyImageError",
           "StreamSpellings", "accepts_seed_keywords", "bind_image_class"]

F = TypeVar("F", bound=Callable[..., Any])


def _public_to_visibility(public: Any) -> Any:
    from .models import Visibility

    if not isinstance(public, bool):
        raise InvalidArgumentType(f"public must be True or False, got {public!r}",
                            hint="or pass visibility='public' / 'private'")
    return Visibility.PUBLIC if public else Visibility.PRIVATE


#: seed keyword -> (core keyword, conversion), applied by :func:`accepts_seed_keywords`
SEED_KEYWORDS: Mapping[str, tuple[str, Callable[[Any], Any]]] = {
    "public": ("visibility", _public_to_visibility),   # pylxd, imagehub 0.1
    "format": ("disk_format", lambda value: value),    # imagehub 0.1
}


def translate_seed_keywords(kwargs: dict[str, Any], accepted: frozenset[str]) -> None:
    """Rename the seed keywords in ``kwargs`` in place; both spellings at once is an error."""
    for seed, (core, convert) in SEED_KEYWORDS.items():
        if seed not in kwargs or core not in accepted:
            continue
        value = kwargs.pop(seed)
        if kwargs.get(core) is not None:
            raise InvalidArgument(f"pass {core}= or its older spelling {seed}=, not both")
        if value is not None:
            kwargs[core] = convert(value)


def accepts_seed_keywords(*core: str) -> Callable[[F], F]:
    """Let a core function also take the seed spelling of each keyword in ``core``."""
    accepted = frozenset(core)

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            translate_seed_keywords(kwargs, accepted)
            return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


class ManagerSpellings:
    """Second names on every ImageManager (pyrax's image module, imagehub 0.1)."""

    if TYPE_CHECKING:
        def all(self, *, latest: bool = False, **filters: Any) -> Iterator[Image]: ...
        def share(self, image: Image | str, project: str) -> Member: ...
        def unshare(self, image: Image | str, project: str) -> None: ...
        def members(self, image: Image | str) -> list[Member]: ...
        def update(self, image: Image | str, spec: Any = None, /,
                   **changes: Any) -> Image: ...
        def update_member(self, image: Image | str, status: Any,
                          member: str | None = None) -> Member: ...
        def remove_alias(self, name: str, image: Image | str | None = None) -> None: ...

    def list_all(self, *, latest: bool = False, **filters: Any) -> Iterator[Image]:
        """``all()`` (pyrax: ``list_all``)."""
        return self.all(latest=latest, **filters)

    def change_image_name(self, image: Image | str, name: str) -> Image:
        """``update(image, name=...)`` (pyrax)."""
        return self.update(image, name=name)

    def add_image_member(self, image: Image | str, project_id: str) -> Member:
        """``share()`` (pyrax)."""
        return self.share(image, project_id)

    def update_image_member(self, image: Image | str, status: Any,
                            project_id: str | None = None) -> Member:
        """``update_member()`` (pyrax: ``update_image_member(img_id, status)``)."""
        return self.update_member(image, status, project_id)

    def delete_alias(self, name: str) -> None:
        """``remove_alias()`` (pylxd)."""
        self.remove_alias(name)

    def delete_image_member(self, image: Image | str, project_id: str) -> None:
        """``unshare()`` (pyrax)."""
        self.unshare(image, project_id)

    def list_image_members(self, image: Image | str) -> list[Member]:
        """``members()`` (pyrax)."""
        return self.members(image)


class ImageSpellings:
    """Second names on every Image (pyrax's and pylxd's image objects, the Lambda
    client's dicts)."""

    if TYPE_CHECKING:
        id: str
        @property
        def manager(self) -> Any: ...
        def share(self, project: str) -> Member: ...
        def unshare(self, project: str) -> None: ...
        def remove_alias(self, name: str) -> Image: ...
        def to_dict(self) -> dict[str, Any]: ...

    def add_member(self, project: str) -> Member:
        """``share()`` (pyrax)."""
        return self.share(project)

    def delete_member(self, project: str) -> None:
        """``unshare()`` (pyrax)."""
        self.unshare(project)

    def add_image_member(self, project: str) -> Member:
        """``share()`` (pyrax's manager spelling, on the image)."""
        return self.share(project)

    def delete_image_member(self, project: str) -> None:
        """``unshare()`` (pyrax's manager spelling, on the image)."""
        self.unshare(project)

    def update_image_member(self, status: Any, project: str | None = None) -> Member:
        """``manager.update_member(image, status)`` (pyrax)."""
        member: Member = self.manager.update_member(self, status, project)
        return member

    def delete_alias(self, name: str) -> Image:
        """``remove_alias()`` (pylxd)."""
        return self.remove_alias(name)

    def copy(self, target: Any, **options: Any) -> Image:
        """``imagehub.migrate(image.manager, image, target)`` (pylxd's
        ``image.copy(client)``): a verified copy on ``target``, a manager or cloud name.
        ``options`` are migrate's (``name``, ``disk_format``, ``progress`` ...)."""
        from .migration import migrate

        copied: Image = migrate(self.manager, cast("Image", self), target, **options)
        return copied

    def __getitem__(self, key: str) -> Any:
        """Read-only ``image["name"]``, as the Lambda client's dicts were read: a field or
        documented property, else a key of the provider's ``raw`` record."""
        if not isinstance(key, str):
            raise TypeError(f"Image keys are field names, got {key!r}")
        if key in _ITEM_FIELDS or key in _ITEM_PROPERTIES:
            return getattr(self, key)
        raw: Mapping[str, Any] = getattr(self, "raw", {})
        if key in raw:
            return raw[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``image[key]``, or ``default`` when there is no such key."""
        try:
            return self[key]
        except KeyError:
            return default

    # With __getitem__ defined, Python would otherwise iterate an Image as a sequence.
    __iter__ = None



#: fields ``image[...]`` reads (those of Image; filled in by bind_image_class)
_ITEM_FIELDS: set[str] = set()
#: documented properties ``image[...]`` also reads
_ITEM_PROPERTIES = {"fingerprint", "public"}
#: what to write instead of the seed idiom ``image.ATTR = value; image.update()``
_INSTEAD = {
    "aliases": "image.add_alias(NAME) / image.remove_alias(NAME)",
    "fingerprint": "nothing: the fingerprint is the image's content",
}


class ReadOnlyImageError(dataclasses.FrozenInstanceError, InvalidArgument):
    """``image.public = True`` (pylxd's idiom): Images are values; say what to write."""

    def __init__(self, name: str, value: Any) -> None:
        instead = _INSTEAD.get(name, f"image = image.update({name}={value!r})")
        # The whole advice in the message: AttributeError's str() shows only that.
        InvalidArgument.__init__(
            self, f"Image is read-only: cannot set image.{name}; instead of "
                  f"image.{name} = ... then image.update(), write {instead}")

    # AttributeError has its own __reduce__ from Python 3.13 on, ahead of ImageHubError's
    # in this class's MRO; it would rebuild the error from its message alone.
    __reduce__ = InvalidArgument.__reduce__


def bind_image_class(cls: type[Any]) -> None:
    """Give Image what this module defines for it: item access to its fields, and the
    read-only error that says what to write instead of the seed idiom."""
    _ITEM_FIELDS.update(f.name for f in dataclasses.fields(cls) if not f.name.startswith("_"))
    frozen: Callable[[Any, str, Any], None] = cls.__dict__["__setattr__"]

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if name in _ITEM_FIELDS or name in _ITEM_PROPERTIES:
            raise ReadOnlyImageError(name, value)
        frozen(self, name, value)

    setattr(cls, "__setattr__", __setattr__)  # noqa: B010 - replacing dataclass's own


class StreamSpellings:
    """Second names on every ImageStream (imagehub 0.1), and the read-only binary file
    object pylxd's ``image.export()`` returned: ``read()``, ``readinto()``, ``readable()``
    (``shutil.copyfileobj(stream, out)`` works). Reads are verified as iteration is; a
    stream is read once, by whichever of the two ways comes first.
    """

    disk_format: str | None
    if TYPE_CHECKING:
        def iter_bytes(self, progress: Any = None, *, sha256: bool = True
                       ) -> Iterator[bytes]: ...

    @property
    def format(self) -> str | None:
        """``disk_format``."""
        return self.disk_format

    def _file(self) -> Any:
        reader = self.__dict__.get("_file_reader")
        if reader is None:
            from .streams import as_file

            reader = self.__dict__["_file_reader"] = as_file(self.iter_bytes())
        return reader

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left with -1 or None: mind the memory)."""
        data: bytes = self._file().read(size)
        return data

    def read1(self, size: int = -1) -> bytes:
        data: bytes = self._file().read1(size)
        return data

    def readinto(self, buffer: Any) -> int:
        count: int = self._file().readinto(buffer)
        return count

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return bool(self.__dict__.get("_file_closed"))
