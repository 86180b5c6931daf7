"""How migrate recognises an image: by its content, whatever its name or cloud."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..manager import Capability, ImageManager
from ..models import Image
from ..streams import parse_checksum
from ._cleanup import GONE
from ._properties import PROP_PARTS, PROP_SHA256, PROP_SOURCE_CHECKSUM, PROP_TRANSFER


def label(image: Image) -> str:
    return f"{image.cloud}:{image.id}" if image.cloud else image.id


def display(image: Image) -> str:
    """How a person knows the image: its name (or alias) and cloud; the id only when
    it has neither, since a fingerprint tells a reader nothing."""
    name = image.name or (image.aliases[0] if image.aliases else None)
    if not name:
        return label(image)
    return f"{name!r} on {image.cloud}" if image.cloud else repr(name)


def default_name(image: Image) -> str:
    return image.name or (image.aliases[0] if image.aliases else image.id)


def norm(checksum: str | None) -> str | None:
    if not checksum:
        return None
    try:
        algo, digest = parse_checksum(checksum)
    except ValueError:
        return None
    return f"{algo}:{digest}"


def is_packed(image: Image) -> bool:
    return PROP_PARTS in image.properties


def content_checksum(image: Image) -> str | None:
    """``sha256:<hex>`` of the image's content, when the image promises one without a read.

    The recorded ``imagehub.sha256`` first; else the image's own checksum when it is a
    sha256 of the whole content (local, an LXD fingerprint).
    """
    recorded = image.properties.get(PROP_SHA256)
    if recorded:
        return f"sha256:{recorded.lower()}"
    own = norm(image.checksum)
    if own and own.startswith("sha256:") and not is_packed(image):
        return own
    return None


def identities(image: Image) -> set[str]:
    keys = {k for k in (content_checksum(image),
                        norm(image.properties.get(PROP_SOURCE_CHECKSUM))) if k}
    own = norm(image.checksum)
    if own and not is_packed(image):
        # A packed image's own checksum covers the last part only: not an identity.
        keys.add(own)
    return keys


class Index:
    """The destination's images by identity, so sync asks the destination once."""

    def __init__(self, dst: ImageManager | None, images: Iterable[Image] | None = None
                 ) -> None:
        self.by_key: dict[str, list[Image]] = {}
        self.stale: list[Image] = []
        if images is None:
            if dst is None or Capability.LIST not in type(dst).capabilities:
                return
            images = dst.all()
        for image in images:
            if image.status != "active":
                if PROP_TRANSFER in image.properties and image.status not in GONE:
                    self.stale.append(image)
                continue
            for key in identities(image):
                self.by_key.setdefault(key, []).append(image)

    def find(self, image: Image) -> Image | None:
        found = self.find_all(image)
        return found[0] if found else None

    def find_all(self, image: Image) -> list[Image]:
        """Every copy of ``image``'s content (as is, or converted from it)."""
        out: dict[str, Image] = {}
        for key in sorted(identities(image)):
            for held in self.by_key.get(key, ()):
                out.setdefault(held.id, held)
        return list(out.values())


def copies_by_record(dst: ImageManager, image: Image) -> Index:
    """The destination's copies of ``image`` that migrate made (found by the identity
    they record), asked for by property instead of listing every image: what a worker
    checks before it copies, after the client's full index said the copy was missing."""
    if Capability.LIST not in type(dst).capabilities:
        return Index(None, ())
    wanted: list[tuple[str, str]] = []
    content = content_checksum(image)
    if content:
        wanted.append((PROP_SHA256, content.split(":", 1)[1]))
    wanted += [(PROP_SOURCE_CHECKSUM, key) for key in sorted(identities(image))]
    found: dict[str, Image] = {}
    for prop, value in wanted:
        filters: dict[str, Any] = {"status": "active", f"properties.{prop}": value}
        for held in dst.all(**filters):
            found.setdefault(held.id, held)
    return Index(None, found.values())


def recorded_identity(source: Image, content: str | None) -> dict[str, str]:
    """What a copy records so sync finds it by content later, whichever path made it."""
    props: dict[str, str] = {}
    if content:
        props[PROP_SHA256] = content.split(":", 1)[1]
    own = norm(source.checksum)
    if own and own != content and not is_packed(source):
        # Sync also matches on the source's own checksum (Glance's sha512, say); a packed
        # image's covers its last part only, so it says nothing about the content.
        props[PROP_SOURCE_CHECKSUM] = own
    return props
