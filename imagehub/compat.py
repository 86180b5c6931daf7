"""Seed spellings: the one place where second names for core API calls live.

The core API has one name per concept: ``all()`` (not ``list_all``), ``visibility=`` (not
``public=``) and ``disk_format=`` (not ``format=``). People arriving from pylxd, pyrax or
imagehub 0.1 typed the other spellings; they keep working, and this module is where each
is defined and documented (``docs/api.md``, "Seed spellings"). Nothing else in imagehub
may add a second name.

- :data:`SEED_KEYWORDS` - keyword arguments renamed on the way into a core call;
- :class:`ManagerSpellings` - method names on every ImageManager;
- :class:`ImageSpellings` - method names on every Image;
- :class:`StreamSpellings` - attribute names on every ImageStream.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .errors import InvalidArgument, InvalidArgumentType

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .models import Image, Member

__all__ = ["SEED_KEYWORDS", "ImageSpellings", "ManagerSpellings", "StreamSpellings",
           "accepts_seed_keywords"]

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

    def list_all(self, *, latest: bool = False, **filters: Any) -> Iterator[Image]:
        """``all()`` (pyrax: ``list_all``)."""
        return self.all(latest=latest, **filters)

    def change_image_name(self, image: Image | str, name: str) -> Image:
        """``update(image, name=...)`` (pyrax)."""
        return self.update(image, name=name)

    def add_image_member(self, image: Image | str, project_id: str) -> Member:
        """``share()`` (pyrax)."""
        return self.share(image, project_id)

    def delete_image_member(self, image: Image | str, project_id: str) -> None:
        """``unshare()`` (pyrax)."""
        self.unshare(image, project_id)

    def list_image_members(self, image: Image | str) -> list[Member]:
        """``members()`` (pyrax)."""
        return self.members(image)


class ImageSpellings:
    """Second names on every Image (pyrax's image objects)."""

    if TYPE_CHECKING:
        def share(self, project: str) -> Member: ...
        def unshare(self, project: str) -> None: ...

    def add_member(self, project: str) -> Member:
        """``share()`` (pyrax)."""
        return self.share(project)

    def delete_member(self, project: str) -> None:
        """``unshare()`` (pyrax)."""
        self.unshare(project)


class StreamSpellings:
    """Second names on every ImageStream (imagehub 0.1)."""

    disk_format: str | None

    @property
    def format(self) -> str | None:
        """``disk_format``."""
        return self.disk_format
