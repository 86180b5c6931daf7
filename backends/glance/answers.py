"""Fields read out of Glance's answers, by type.

Whatever answers at the image endpoint may send JSON of another shape: a proxy's
status page, another API, a broken deployment. A field of the wrong type is then the
server's fault, said in one line that names the call ("list members of image X: the
answer's 'members' is 5, not a list"), never a TypeError or KeyError from deep inside
imagehub. Every read of a server answer in this backend goes through these accessors;
``what`` is the call's name, as :meth:`GlanceHTTP.request` takes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagehub._redact import excerpt
from imagehub.errors import BackendError

from .errors import BACKEND

HINT = "check the endpoint: is it the Image API's address?"


def wrong_shape(what: str, detail: str) -> BackendError:
    """The one-line error for an answer imagehub cannot read."""
    return BackendError(f"{what}: {detail}", backend=BACKEND, hint=HINT)


def _shown(value: Any) -> str:
    return "null" if value is None else excerpt(value)


def _field(of: str, key: str) -> str:
    return f"the {of}'s {key!r}"


def record(value: Any, what: str, of: str = "answer") -> Mapping[str, Any]:
    """``value`` as a JSON object."""
    if not isinstance(value, Mapping):
        raise wrong_shape(what, f"the {of} is {_shown(value)}, not an object")
    return value


def optional(rec: Mapping[str, Any], key: str, kind: type, expected: str,
             what: str, of: str = "answer") -> Any:
    """``rec[key]`` when it is a ``kind``, None when it is absent or null."""
    value = rec.get(key)
    if value is None:
        return None
    # JSON's true and false are not numbers, whatever Python's bool says.
    if isinstance(value, kind) and not (isinstance(value, bool) and kind is int):
        return value
    raise wrong_shape(what, f"{_field(of, key)} is {_shown(value)}, not {expected}")


def optional_text(rec: Mapping[str, Any], key: str, what: str, of: str = "answer"
                  ) -> str | None:
    value: str | None = optional(rec, key, str, "a string", what, of)
    return value


def text(rec: Mapping[str, Any], key: str, what: str, of: str = "answer") -> str:
    """A string that must be there and not empty (an id)."""
    value = optional_text(rec, key, what, of)
    if not value:
        raise wrong_shape(what, f"{_field(of, key)} is "
                          f"{'missing' if value is None else 'empty'}")
    return value


def optional_int(rec: Mapping[str, Any], key: str, what: str, of: str = "answer"
                 ) -> int | None:
    value: int | None = optional(rec, key, int, "an integer", what, of)
    return value


def optional_record(rec: Mapping[str, Any], key: str, what: str, of: str = "answer"
                    ) -> Mapping[str, Any] | None:
    value: Mapping[str, Any] | None = optional(rec, key, Mapping, "an object", what, of)
    return value


def _items(rec: Mapping[str, Any], key: str, what: str, of: str, required: bool) -> list[Any]:
    value = rec.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise wrong_shape(what, f"{_field(of, key)} is "
                          f"{'missing' if value is None else _shown(value) + ', not a list'}")
    return value


def records(rec: Mapping[str, Any], key: str, what: str, of: str = "answer", *,
            required: bool = False) -> list[Mapping[str, Any]]:
    """A list of JSON objects; absent or null is an empty list unless ``required``."""
    items = _items(rec, key, what, of, required)
    for item in items:
        if not isinstance(item, Mapping):
            raise wrong_shape(what, f"{_field(of, key)} holds {_shown(item)}, not an object")
    return items


def texts(rec: Mapping[str, Any], key: str, what: str, of: str = "answer") -> list[str]:
    """A list of strings; absent or null is an empty list."""
    items = _items(rec, key, what, of, False)
    for item in items:
        if not isinstance(item, str):
            raise wrong_shape(what, f"{_field(of, key)} holds {_shown(item)}, not a string")
    return items
