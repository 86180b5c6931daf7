"""The properties migrate writes on the images it makes, and which ones travel along."""

from __future__ import annotations

from ..models import Image

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

# Keys that are record fields somewhere (Glance's schema, imagehub's Image): carried as
# properties they would clash with the field on the destination.
RECORD_KEYS = frozenset({
    "id", "name", "status", "visibility", "owner", "size", "virtual_size", "checksum",
    "os_hash_algo", "os_hash_value", "os_hidden", "protected", "min_disk", "min_ram",
    "tags", "disk_format", "container_format", "stores", "created_at", "updated_at",
    "self", "file", "schema", "locations", "direct_url",
})

# Properties each migration writes afresh rather than carries over.
REDONE = frozenset({PROP_PARTS, PROP_TRANSFER, PROP_SOURCE, PROP_SOURCE_CHECKSUM,
                    PROP_DISK_FORMAT, PROP_CONTAINER_FORMAT, PROP_FORMAT_BACKEND,
                    PROP_SOURCE_DISK_FORMAT})


def carried(image: Image, private: tuple[str, ...] = ()) -> dict[str, str]:
    """The source's properties the copy keeps, plus the model fields a destination would
    otherwise lose. ``private``: the source backend's own bookkeeping prefixes."""
    props = {k: v for k, v in image.properties.items()
             if k not in RECORD_KEYS and not k.startswith((*private, PROP_PART))
             and k not in REDONE}
    for field in ("os", "family", "release", "version"):
        value = getattr(image, field)
        if value and field not in props:
            props[field] = str(value)
    return props
