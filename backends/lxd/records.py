"""LXD image records (``GET /1.0/images/<fp>``) as normalised imagehub Images.

LXD has no image name: imagehub keeps the name it was created with in the ``name``
property, and falls back to the first alias. The LXD type (``container`` or
``virtual-machine``) becomes ``container_format``; ``family`` groups one OS line
(``os/release/variant``) so ``--latest`` keeps the newest build of each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from imagehub.models import Image, Visibility, parse_datetime

from .errors import BACKEND

# LXD's zero time for "never expires" / "never used".
_ZERO_TIMES = ("0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z")


def _time(value: Any) -> dt.datetime | None:
    if not value or value in _ZERO_TIMES:
        return None
    return parse_datetime(str(value))


def alias_names(record: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(a.get("name")) for a in record.get("aliases") or () if a.get("name"))


def to_image(record: Mapping[str, Any], *, backend: str = BACKEND) -> Image:
    props = {str(k): str(v) for k, v in (record.get("properties") or {}).items()}
    aliases = alias_names(record)
    fingerprint = str(record["fingerprint"])
    family_parts = [props[k] for k in ("os", "release", "variant") if props.get(k)]
    return Image(
        id=fingerprint,
        name=props.get("name") or (aliases[0] if aliases else None),
        backend=backend,
        description=props.get("description"),
        family="/".join(family_parts) or None,
        version=props.get("version") or props.get("serial"),
        os=props.get("os"),
        release=props.get("release"),
        architecture=record.get("architecture") or None,
        created_at=_time(record.get("created_at")),
        updated_at=_time(record.get("uploaded_at")),
        size=int(record["size"]) if record.get("size") is not None else None,
        checksum=f"sha256:{fingerprint}",
        disk_format=None,
        container_format=record.get("type") or "container",
        visibility=Visibility.PUBLIC if record.get("public") else Visibility.PRIVATE,
        status="active",
        aliases=aliases,
        properties=props,
        uploaded_at=_time(record.get("uploaded_at")),
        expires_at=_time(record.get("expires_at")),
        last_used_at=_time(record.get("last_used_at")),
        auto_update=bool(record.get("auto_update")),
        cached=bool(record.get("cached")),
        raw=dict(record),
    )
