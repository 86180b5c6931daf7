"""The properties migrate writes on the images it makes, and which ones travel along."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..models import Image

if TYPE_CHECKING:
    from ..manager import ImageManager

PROP_SHA256 = "imagehub.sha256"
PROP_SOURCE = "imagehub.source"
PROP_SOURCE_CHECKSUM = "imagehub.source_checksum"
PROP_TRANSFER = "imagehub.transfer"
PROP_PARTS = "imagehub.parts"
PROP_PART = "imagehub.part."
PROP_DISK_FORMAT = "imagehub.disk_format"
PROP_CONTAINER_FORMAT = "imagehub.container_format"
PROP_FORMAT_BACKEND = "imagehub.format_backend"

# imagehub's own record fields: carried as properties they would clash with the field.
# A backend's own record fields and bookkeeping are its declaration (reserved_properties,
# reserved_property_prefixes), never listed here.
RECORD_KEYS = frozenset({
    "id", "name", "status", "visibility", "owner", "size", "checksum", "tags",
    "disk_format", "container_format", "created_at", "updated_at",
})

# Properties each migration writes afresh rather than carries over.
REDONE = frozenset({PROP_PARTS, PROP_TRANSFER, PROP_SOURCE, PROP_SOURCE_CHECKSUM,
                    PROP_DISK_FORMAT, PROP_CONTAINER_FORMAT, PROP_FORMAT_BACKEND})


def carried(image: Image, dst: ImageManager) -> dict[str, str]:
    """The source's properties the copy to ``dst`` keeps, plus the model fields a
    destination would otherwise lose."""
    reserved = RECORD_KEYS | REDONE | type(dst).reserved_properties
    prefixes = (PROP_PART, *type(dst).reserved_property_prefixes)
    props = {k: v for k, v in image.properties.items()
             if k not in reserved and not k.startswith(prefixes)}
    for field in ("os", "family", "release", "version"):
        value = getattr(image, field)
        if value and field not in props:
            props[field] = str(value)
    return props
