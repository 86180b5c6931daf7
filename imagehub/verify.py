"""Scrub: read images back and check them against their checksums, on any backend.

``verify_image`` exports an image and lets ``ImageStream`` check every promise the backend
made (per-part and whole-image checksums, sizes). A backend may add a store check of its
own (``check(repair=...)``, as ``local`` does for orphan and missing blobs); the CLI's
``imagehub verify`` reports both.
"""

from __future__ import annotations

import dataclasses

from .errors import ImageHubError
from .manager import ImageManager
from .models import Image

__all__ = ["VerifyResult", "verify_image"]


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    image: Image
    ok: bool
    bytes: int = 0
    sha256: str | None = None
    problem: str | None = None


def verify_image(manager: ImageManager, image: Image | str) -> VerifyResult:
    """Read every byte of ``image`` and compare with what the backend promised."""
    target = manager.resolve(image)
    seen = 0
    try:
        with manager.export(target) as stream:
            for chunk in stream.iter_bytes(sha256=True):
                seen += len(chunk)
            promised = bool(stream.expected)
            sha256 = stream.sha256
    except ImageHubError as exc:
        return VerifyResult(target, False, seen, None, " ".join(str(exc).split()))
    if target.size is not None and target.size != seen:
        return VerifyResult(target, False, seen, sha256,
                            f"read {seen} bytes, the record says {target.size}")
    if not promised:
        return VerifyResult(target, True, seen, sha256,
                            "read back whole, but the backend promised no checksum")
    return VerifyResult(target, True, seen, sha256)
