"""Lambda Cloud image records (OpenAPI 1.8.3's ``Image``) -> imagehub's Image.

A record that breaks the spec is refused with a BackendError naming the record and the
field, rather than becoming an Image with holes in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from imagehub.errors import BackendError
from imagehub.models import Image, Visibility, parse_datetime

# Image fields the spec marks required, in the spec's order.
_REQUIRED = ("id", "created_time", "updated_time", "name", "description", "family",
             "version", "architecture", "region")
_TEXT_FIELDS = ("id", "name", "description", "family", "version", "architecture")


def image_from_record(record: Any, index: int, *, backend: str) -> Image:
    """The Image for the ``index``-th record of ``GET /api/v1/images``."""
    if not isinstance(record, dict):
        raise BackendError(f"Lambda Cloud image record #{index} is not an object",
                           backend=backend)
    label = record["id"] if isinstance(record.get("id"), str) else f"#{index}"

    def bad(what: str) -> BackendError:
        return BackendError(f"Lambda Cloud image record {label} {what}", backend=backend,
                            hint="the API's answer does not match its spec (1.8.3)")

    for field in _REQUIRED:
        if record.get(field) is None:
            raise bad(f"is missing required field {field!r}")
    for field in _TEXT_FIELDS:
        if not isinstance(record[field], str):
            raise bad(f"has a non-string {field!r}: {record[field]!r}")
    region = record["region"]
    if not isinstance(region, dict):
        raise bad("has a 'region' that is not an object")
    for field in ("name", "description"):
        if not isinstance(region.get(field), str):
            raise bad(f"is missing required field 'region.{field}'")
    stamps: dict[str, datetime | None] = {}
    for field in ("created_time", "updated_time"):
        try:
            # The spec's date-time is text; a number would mean the API changed.
            if not isinstance(record[field], str):
                raise TypeError(field)
            stamps[field] = parse_datetime(record[field])
        except (TypeError, ValueError):
            raise bad(f"has {field!r} that is not an ISO 8601 date-time: "
                      f"{record[field]!r}") from None
    return Image(
        id=record["id"], name=record["name"], backend=backend,
        description=record["description"], family=record["family"],
        version=record["version"], architecture=record["architecture"],
        region=region["name"], created_at=stamps["created_time"],
        updated_at=stamps["updated_time"],
        # Lambda's images are offered to every account.
        visibility=Visibility.PUBLIC, status="active",
        properties={"region_description": region["description"]},
        raw=dict(record),
    )
