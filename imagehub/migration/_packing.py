"""Split images on single-file stores: the leading parts ride in the image's properties.

A store that keeps one file per image (Glance) gets the last part; the leading ones (an
LXD metadata tarball, a few KiB) are base64 text in ``imagehub.part.*`` properties, so the
image comes back part for part, to the same fingerprint.
"""

from __future__ import annotations

import base64
import hashlib

from ..errors import ChecksumMismatch
from ..models import Image
from ._properties import PROP_PART, PROP_PARTS

#: The leading parts of a split image carried in properties may not exceed this.
MAX_PACKED = 64 * 1024
# Property values stay well under what any store takes (Glance on MySQL: 64 KiB TEXT).
_PACK_CHUNK = 16 * 1024


def unpack(image: Image) -> list[tuple[str, bytes]]:
    """The leading parts a packed image carries in its properties, verified."""
    names = [n for n in image.properties.get(PROP_PARTS, "").split(",") if n]
    out: list[tuple[str, bytes]] = []
    for name in names[:-1]:
        prefix = f"{PROP_PART}{name}."
        pieces = sorted(((int(k[len(prefix):]), v) for k, v in image.properties.items()
                         if k.startswith(prefix) and k[len(prefix):].isdigit()))
        data = base64.b64decode("".join(v for _, v in pieces).encode("ascii"))
        promised = image.properties.get(f"{PROP_PART}{name}.sha256", "")
        actual = hashlib.sha256(data).hexdigest()
        if promised != actual:
            raise ChecksumMismatch(f"part {name!r} carried in the properties of {image.id}",
                                   f"sha256:{promised}", f"sha256:{actual}",
                                   backend=image.backend)
        out.append((name, data))
    return out


def pack(parts: list[tuple[str, bytes]], last: str) -> dict[str, str]:
    props = {PROP_PARTS: ",".join([n for n, _ in parts] + [last])}
    for name, data in parts:
        text = base64.b64encode(data).decode("ascii")
        for i in range(0, max(len(text), 1), _PACK_CHUNK):
            props[f"{PROP_PART}{name}.{i // _PACK_CHUNK}"] = text[i:i + _PACK_CHUNK]
        props[f"{PROP_PART}{name}.sha256"] = hashlib.sha256(data).hexdigest()
        props[f"{PROP_PART}{name}.size"] = str(len(data))
    return props
