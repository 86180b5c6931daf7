"""The properties migrate writes on the images it makes, and which ones travel along."""

from __future__ import annotations

import dataclasses
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
#: the disk format a converted copy was made from (its checksum is PROP_SOURCE_CHECKSUM)
PROP_SOURCE_DISK_FORMAT = "imagehub.source_disk_format"

# imagehub's own record fields: as properties they would clash with the field. A backend
# adds its own (Glance's schema) in ``reserved_properties``.
# The descriptive ones (os, release, description ...) are properties on some backends
# (LXD, local) and travel as such.
_DESCRIPTIVE = frozenset({"description", "family", "version", "os", "release", "region",
                          "architecture"})
RECORD_KEYS = frozenset(f.name for f in dataclasses.fields(Image)
                        if not f.name.startswith("_")) - _DESCRIPTIVE

# Properties each migration writes afresh rather than carries over.
REDONE = frozenset({PROP_PARTS, PROP_TRANSFER, PROP_SOURCE, PROP_SOURCE_CHECKSUM,
                    PROP_DISK_FORMAT, PROP_CONTAINER_FORMAT, PROP_FORMAT_BACKEND,
                    PROP_SOURCE_DISK_FORMAT})


def carried(image: Image, src: ImageManager, dst: ImageManager) -> dict[str, str]:
    """The source's properties the copy keeps, plus the model fields a destination would
    otherwise lose. Each backend names its own keys: the bookkeeping prefixes of either
    side stay behind, and the destination's record fields are never sent as properties."""
    reserved = RECORD_KEYS | REDONE | type(dst).reserved_properties
    prefixes = (PROP_PART, *type(src).reserved_property_prefixes,
                *type(dst).reserved_property_prefixes)
    props = {k: v for k, v in image.properties.items()
             if k not in reserved and not k.startswith(prefixes)}
    for field in ("os", "family", "release", "version"):
        value = getattr(image, field)
        if value and field not in props:
            props[field] = str(value)
    return props
