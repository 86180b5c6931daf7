"""Native paths: a server-side copy a backend offers, no image byte through this process.

A backend declares one with ``native_copy`` and implements ``_native_copy`` (see
``ImageManager``), between managers of its own class; migrate never imports a backend.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import ChecksumMismatch, ImageHubError
from ..manager import Capability, ImageManager
from ..models import Image
from ..operations import Operation
from ._identity import content_checksum, default_name, label, recorded_identity
from ._options import Options
from ._properties import PROP_SOURCE

if TYPE_CHECKING:
    from ._plan import Plan

# The package's logger under the name it had as one module, which logging setups name.
log = logging.getLogger("imagehub.migration")


def native_route(src: ImageManager, dst: ImageManager) -> str | None:
    """The native path's name, or None if the source declares none to this destination."""
    if not type(src).native_copy or type(dst) is not type(src) or dst is src:
        return None
    kind = f"{src.name}-copy"
    # The mode only labels the plan; not knowing it must not stop the copy.
    with contextlib.suppress(ImageHubError):
        kind = f"{kind}/{src.native_copy_mode(dst)}"
    return f"native:{kind}"


def has_native(src: ImageManager, dst: ImageManager) -> bool:
    return native_route(src, dst) is not None


def copy_native(p: Plan, options: Options, made: list[Image]
                ) -> tuple[Image, tuple[str, ...]] | None:
    """Take the plan's native path; None when it turns out not to apply, so the caller
    streams instead."""
    assert p.src is not None and p.dst is not None
    route = native_route(p.src, p.dst)
    if route is None:
        return None
    result: Image | Operation[Image] = p.src._native_copy(p.source, p.dst)
    if isinstance(result, Operation):
        result = result.wait()
    if result is None:
        return None
    image: Image = result
    made.append(image)
    checks: list[str] = []
    promised, got = p.checksum, content_checksum(image)
    if options.verify and promised and got:
        if promised != got:
            raise ChecksumMismatch(f"image {image.id} after {route}", promised, got,
                                   backend=p.dst.name)
        checks.append("destination:" + got.split(":", 1)[0])
    if Capability.UPDATE in type(p.dst).capabilities:
        # Provenance, so sync finds it by content later, and the name asked for (a server
        # copy keeps the source's); a failure here is not fatal.
        changes: dict[str, Any] = {"properties": _provenance(p, promised)}
        if p.name != image.name and p.name != default_name(p.source):
            changes["name"] = p.name
        try:
            image = p.dst.update(image, **changes)
        except ImageHubError as exc:
            log.warning("could not record provenance on %s: %s", image.id, exc)
    made.clear()  # succeeded: nothing to clean up
    return image, tuple(checks)


def _provenance(p: Plan, content: str | None) -> dict[str, str]:
    return {PROP_SOURCE: label(p.source), **recorded_identity(p.source, content)}
