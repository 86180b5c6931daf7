"""The one filter vocabulary every backend takes, checked before any request.

Keys:

- an Image field: ``name``, ``family``, ``os``, ``architecture`` (any spelling),
  ``visibility``, ``status``, ``owner``, ``region`` ...;
- ``properties.K`` for a property, or ``K`` alone when K is no other key (the shorthand:
  a listing where no image has property K is refused rather than silently empty, and a
  K that looks like a misspelt key is refused at once);
- ``alias``, ``tag``, ``public`` (true/false);
- pyrax's ``size_min``, ``size_max`` (bytes), ``sort_key`` (a field) and ``sort_dir``
  (``asc``/``desc``), and ``member_status``;
- the backend's own server keys (``server_filters``: Glance's ``protected``, LXD's
  ``type`` ...).

A list of values means "any of these". A backend applies what its server can filter and
the manager applies the rest on the client, so results are the same everywhere. Anything
else raises InvalidArgument listing the valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import InvalidArgument
from .models import Image, Visibility, parse_datetime

__all__ = ["FIELD_KEYS", "SORT_KEYS", "SPECIAL_KEYS", "Filters", "prepare", "sort_images"]

FIELD_KEYS = frozenset({
    "id", "name", "backend", "cloud", "description", "family", "version", "os", "release",
    "region", "architecture", "checksum", "disk_format", "container_format", "visibility",
    "status", "owner", "size",
})
SPECIAL_KEYS = frozenset({"alias", "tag", "public", "member_status", "size_min", "size_max",
                          "sort_key", "sort_dir", "created_at", "updated_at"})
#: Glance's comparison syntax for times (``created_at=gte:2024-01-01``), applied on the
#: client where a server cannot; a bare time means ``eq:``
TIME_KEYS = frozenset({"created_at", "updated_at"})
TIME_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
MEMBER_STATUSES = ("accepted", "rejected", "pending", "all")
SORT_KEYS = FIELD_KEYS | {"created_at", "updated_at"}
# Sort keys a server that takes ``sort_key`` (Glance) can apply itself, so that pages of
# list(limit, marker) follow the asked-for order; others are sorted here.
SERVER_SORT_KEYS = frozenset({"name", "status", "container_format", "disk_format", "size",
                              "id", "created_at", "updated_at"})
_NOT_FILTERS = {
    "latest": "'latest' is not a filter: use all(latest=True), or --latest",
    "limit": "'limit' is not a filter: use list(limit=N), or --limit",
    "marker": "'marker' is not a filter: use list(marker=ID)",
}


@dataclasses.dataclass
class Filters:
    """Filters split for one backend: ``server`` for ``_list``, ``client`` for ``matches``."""

    server: dict[str, Any]
    client: dict[str, Any]
    #: bare keys taken as properties (the K=V shorthand)
    shorthand: frozenset[str] = frozenset()
    sort_key: str | None = None
    reverse: bool = False

    def check_shorthand(self, seen: set[str]) -> None:
        """Refuse shorthand keys that no listed image has as a property."""
        unknown = sorted(self.shorthand - seen)
        if unknown:
            raise InvalidArgument(
                f"unknown filter key(s) {', '.join(map(repr, unknown))}: no image has such a "
                f"property, and it is no other key; valid keys: {vocabulary_text()}",
                hint="write properties.KEY to filter on a property that may be absent")


def vocabulary_text(extra: Iterable[str] = ()) -> str:
    return ", ".join(sorted(FIELD_KEYS | SPECIAL_KEYS | set(extra))) + ", properties.KEY"


def _values(key: str, value: Any) -> Any:
    if isinstance(value, list | tuple | set | frozenset):
        items = [v for v in value if v is not None]
        if not items:
            raise InvalidArgument(f"filter {key!r} got an empty list of values")
        return items[0] if len(items) == 1 else tuple(items)
    return value


def _int(key: str, value: Any) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"filter {key!r} takes a number of bytes, got {value!r}") from None
    if number < 0:
        raise InvalidArgument(f"filter {key!r} must not be negative, got {number}")
    return number


def _one_value(key: str, value: Any) -> Any:
    """A filter value checked against what its key can hold, in one spelling.

    A value no image can have (``visibility=everyone``, ``public=maybe``, ``size=big``)
    used to list nothing, or everything, without a word.
    """
    if key == "visibility":
        text = str(value.value if isinstance(value, Visibility) else value).lower()
        if text not in {v.value for v in Visibility}:
            raise InvalidArgument(f"filter 'visibility' must be one of "
                                  f"{', '.join(v.value for v in Visibility)}, got {value!r}")
        return text
    if key == "public":
        text = str(value).lower()
        if text not in (*_TRUE, *_FALSE):
            raise InvalidArgument(f"filter 'public' must be true or false, got {value!r}")
        return "true" if text in _TRUE else "false"
    if key == "member_status":
        text = str(value.value if hasattr(value, "value") else value).lower()
        if text not in MEMBER_STATUSES:
            raise InvalidArgument(f"filter 'member_status' must be one of "
                                  f"{', '.join(MEMBER_STATUSES)}, got {value!r}")
        return text
    if key == "size":
        return str(_int(key, value))
    if key in TIME_KEYS:
        return _time_filter(key, value)
    return value


def _time_filter(key: str, value: Any) -> str:
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    op, sep, when = text.partition(":")
    if not sep or op not in TIME_OPERATORS:
        op, when = "eq", text
    try:
        parsed = parse_datetime(when)
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidArgument(f"filter {key!r} takes [OP:]TIME (OP one of "
                              f"{', '.join(TIME_OPERATORS)}; TIME in ISO 8601), got {value!r}",
                              hint=f"e.g. {key}=gte:2024-01-01T00:00:00Z")
    return f"{op}:{when}"


def prepare(filters: Mapping[str, Any], server_keys: frozenset[str],
            server_ok: Callable[[str, Any], bool] | None = None) -> Filters:
    """Check ``filters`` against the vocabulary and split them for a backend.

    ``server_ok(key, value)`` may keep a value the server would misread on the client.
    """
    server: dict[str, Any] = {}
    client: dict[str, Any] = {}
    shorthand: set[str] = set()
    sort_key: str | None = None
    reverse = False
    known = FIELD_KEYS | SPECIAL_KEYS | server_keys
    for key, raw in filters.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"filter key {key!r} is not a name")
        if key in _NOT_FILTERS:
            raise InvalidArgument(_NOT_FILTERS[key])
        if raw is None:
            continue
        value = _values(key, raw)
        if key == "sort_key":
            if not isinstance(value, str) or value not in SORT_KEYS:
                raise InvalidArgument(f"cannot sort on {value!r}; sort keys: "
                                      f"{', '.join(sorted(SORT_KEYS))}")
            sort_key = value
            if "sort_key" in server_keys and value in SERVER_SORT_KEYS:
                server["sort_key"] = value
            continue
        if key == "sort_dir":
            if value not in ("asc", "desc"):
                raise InvalidArgument(f"sort_dir must be asc or desc, got {value!r}")
            reverse = value == "desc"
            continue
        if key in ("size_min", "size_max"):
            value = _int(key, value)
        value = tuple(_one_value(key, v) for v in value) if isinstance(value, tuple) \
            else _one_value(key, value)
        if key.startswith("properties."):
            if not key[len("properties."):]:
                raise InvalidArgument("filter 'properties.' needs a property name")
        elif key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
            if close:
                raise InvalidArgument(f"unknown filter key {key!r} (did you mean "
                                      f"{close[0]!r}?); valid keys: "
                                      f"{vocabulary_text(server_keys)}")
            shorthand.add(key)
        if key in server_keys and not isinstance(value, tuple) and (
                server_ok is None or server_ok(key, value)):
            server[key] = value
        else:
            client[key] = value
    if "sort_key" in server:
        server["sort_dir"] = "desc" if reverse else "asc"
    return Filters(server, client, frozenset(shorthand), sort_key, reverse)


def sort_images(images: Iterable[Image], key: str, reverse: bool = False) -> list[Image]:
    """Sort on a field or ``properties.K``; images without a value come last."""
    if key.startswith("properties.") and len(key) > len("properties."):
        prop = key[len("properties."):]

        def value(i: Image) -> Any:
            return i.properties.get(prop)
    elif key in SORT_KEYS:
        def value(i: Image) -> Any:
            v = getattr(i, key)
            return v.value if hasattr(v, "value") else v
    else:
        raise InvalidArgument(f"cannot sort on {key!r}; sort keys: "
                              f"{', '.join(sorted(SORT_KEYS))}, properties.KEY")
    pool = list(images)
    present = [i for i in pool if value(i) is not None]
    missing = [i for i in pool if value(i) is None]
    try:
        present.sort(key=value, reverse=reverse)
    except TypeError:
        present.sort(key=lambda i: str(value(i)), reverse=reverse)
    return present + missing
