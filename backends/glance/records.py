"""Glance image and member records <-> imagehub's Image and Member, and JSON patches."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from imagehub._redact import excerpt
from imagehub.errors import BackendError, InvalidArgument
from imagehub.manager import UpdateSpec
from imagehub.models import Image, Member, MemberStatus, Visibility

from . import answers
from .errors import BACKEND

_T = TypeVar("_T")

# Fields of the v2 image schema; everything else on a record is a user property.
CORE_FIELDS = frozenset({
    "id", "name", "status", "visibility", "owner", "size", "virtual_size", "checksum",
    "os_hash_algo", "os_hash_value", "os_hidden", "protected", "min_disk", "min_ram",
    "tags", "disk_format", "container_format", "stores", "created_at", "updated_at",
    "self", "file", "schema", "locations", "direct_url",
})
# Glance writes these itself (import bookkeeping); they are not user properties.
INTERNAL_PREFIX = "os_glance_"

# Image fields that live in Glance as properties, first key preferred.
PROMOTED: dict[str, tuple[str, ...]] = {
    "description": ("description",),
    "architecture": ("architecture", "hw_architecture"),
    "os": ("os_distro", "os"),
    "release": ("os_version", "release"),
    "version": ("version",),
    "family": ("family",),
}
# Where imagehub writes a promoted field when asked to change it.
PROMOTED_KEY = {field: keys[0] for field, keys in PROMOTED.items()}

# Record fields a user may set through update()'s backend keys (Glance rejects the
# others with 403).
SETTABLE_FIELDS = frozenset({
    "protected", "min_disk", "min_ram", "os_hidden", "disk_format", "container_format",
})
# What GlanceManager.update() accepts: the UpdateSpec fields plus SETTABLE_FIELDS.
UPDATABLE = frozenset({
    "name", "description", "properties", "remove_properties", "visibility", "tags",
    *PROMOTED_KEY, *SETTABLE_FIELDS,
})


def properties_of(record: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(k): v if isinstance(v, str) else str(v)
        for k, v in record.items()
        if k not in CORE_FIELDS and not k.startswith(INTERNAL_PREFIX) and v is not None
    }


# What a record is called in errors ("the image record's 'size' is 'big', not ...").
IMAGE = "image record"
MEMBER = "image member record"


def checksum_of(record: Mapping[str, Any], what: str) -> str | None:
    algo = answers.optional_text(record, "os_hash_algo", what, IMAGE)
    value = answers.optional_text(record, "os_hash_value", what, IMAGE)
    if algo and value:
        return f"{algo.lower()}:{value}"
    md5 = answers.optional_text(record, "checksum", what, IMAGE)
    return f"md5:{md5}" if md5 else None


def _unreadable(what: str, kind: str, exc: Exception) -> BackendError:
    return answers.wrong_shape(what, f"Glance answered an {kind} imagehub cannot read "
                               f"({type(exc).__name__}: {excerpt(str(exc))})")


def _read(record: Any, what: str, kind: str,
          build: Callable[[Mapping[str, Any], str], _T]) -> _T:
    """``build`` applied to a Glance record; BackendError naming the call ``what`` when
    the record cannot be one (a server answering JSON of another shape is its fault,
    said in one line)."""
    checked = answers.record(record, what, kind)
    try:
        return build(checked, what)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise _unreadable(what, kind, exc) from exc


def to_image(record: Any, what: str) -> Image:
    """The Image a Glance record describes (see ``_read``)."""
    return _read(record, what, IMAGE, _to_image)


def _to_image(record: Mapping[str, Any], what: str) -> Image:
    props = properties_of(record)
    promoted: dict[str, Any] = {field: next((props[k] for k in keys if props.get(k)), None)
                                for field, keys in PROMOTED.items()}
    try:
        visibility = Visibility(record.get("visibility") or "shared")
    except ValueError:
        visibility = Visibility.PRIVATE

    def text(key: str) -> str | None:
        return answers.optional_text(record, key, what, IMAGE)

    return Image(
        id=answers.text(record, "id", what, IMAGE),
        name=text("name"),
        backend=BACKEND,
        created_at=record.get("created_at"),
        updated_at=record.get("updated_at"),
        size=answers.optional_int(record, "size", what, IMAGE),
        checksum=checksum_of(record, what),
        disk_format=text("disk_format"),
        container_format=text("container_format"),
        visibility=visibility,
        status=text("status") or "unknown",
        tags=tuple(answers.texts(record, "tags", what, IMAGE)),
        properties=props,
        owner=text("owner"),
        raw=dict(record),
        **promoted,
    )


def to_member(record: Any, what: str) -> Member:
    """The Member a Glance member record describes (see ``_read``)."""
    return _read(record, what, MEMBER, _to_member)


def _to_member(record: Mapping[str, Any], what: str) -> Member:
    return Member(
        image_id=answers.text(record, "image_id", what, MEMBER),
        member_id=answers.text(record, "member_id", what, MEMBER),
        status=MemberStatus(answers.optional_text(record, "status", what, MEMBER) or "pending"),
        created_at=record.get("created_at"),
        updated_at=record.get("updated_at"),
        raw=dict(record),
    )


def _pointer(key: str) -> str:
    # RFC 6901: "~" and "/" in a property name must be escaped in the path.
    return "/" + key.replace("~", "~0").replace("/", "~1")


def update_patch(current: Mapping[str, Any], spec: UpdateSpec) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) that applies an ``UpdateSpec`` to a Glance record.

    ``properties`` merge; ``remove_properties`` delete keys (a promoted field by every
    Glance key it is read from); ``tags`` replace the whole list (Glance answers
    ``/tags/-`` with 400); promoted fields (``description``, ``architecture`` ...) are
    properties in Glance, set by name or as a property under any of their keys, and the
    record's other keys for the field follow; ``extra`` holds record fields such as
    ``protected``.
    """
    target: dict[str, Any] = dict(spec.properties)
    # Removing a promoted field by its name clears it: every key it may be read from
    # (``os`` drops ``os_distro`` and ``os``), else the field would read the one left.
    removals = list(dict.fromkeys(key for k in spec.remove_properties
                                  for key in PROMOTED.get(k, (k,))))
    if spec.name is not None:
        target["name"] = spec.name
    if spec.visibility is not None:
        target["visibility"] = spec.visibility.value
    if spec.tags is not None:
        target["tags"] = sorted(spec.tags)
    for field, keys in PROMOTED.items():
        # A field set by name, or given as a property under any of its keys, is the
        # field's new value: the record's other keys for it follow, so the field (read
        # from the first key present) never keeps a value the properties contradict.
        value = getattr(spec, field)
        if value is not None:
            target[keys[0]] = value
        else:
            value = next((spec.properties[k] for k in keys if k in spec.properties), None)
        if value is None:
            continue
        for key in keys:
            if key in current and key not in spec.properties:
                target.setdefault(key, value)
    for key, value in spec.extra.items():
        if key not in SETTABLE_FIELDS:
            # update() checks keys against UPDATABLE first; this guards direct callers.
            raise InvalidArgument(f"cannot update {key!r} on a Glance image (updatable: "
                                f"{', '.join(sorted(UPDATABLE))})", backend=BACKEND)
        target[key] = value
    ops: list[dict[str, Any]] = []
    for key, value in target.items():
        if value is None:
            if key in current:
                ops.append({"op": "remove", "path": _pointer(key)})
            continue
        if key in current and current[key] == value:
            continue
        ops.append({"op": "replace" if key in current else "add", "path": _pointer(key),
                    "value": value})
    for key in removals:
        if key in current and key not in CORE_FIELDS:
            ops.append({"op": "remove", "path": _pointer(key)})
    return ops
