"""Native paths: a server-side copy a backend offers, no image byte through this process.

Backends offer them by duck typing (see the package docstring), so migrate never imports
one: ``src.copy_to`` between managers of one kind, else ``dst.native_copy_from``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ChecksumMismatch, ImageHubError, UnsupportedOperation
from ..manager import Capability, ImageManager
from ..models import Image
from ..operations import Operation
from ._identity import content_checksum, default_name, label, recorded_identity
from ._options import Options
from ._properties import PROP_SOURCE

if TYPE_CHECKING:
    from ._plan import Plan

# The package's logger under the name it had as one module, which logging setups name.
log = logging.getLogger("imagehub.migrate")


def native_route(src: ImageManager, image: Image | None, dst: ImageManager,
                 name: str | None) -> tuple[str, Callable[[], Any]] | None:
    """The native path's name and a call that takes it, or None if neither side offers
    one. ``image`` may be None to ask only whether a route exists."""
    copy_to = getattr(src, "copy_to", None)
    if callable(copy_to) and isinstance(dst, type(src)) and dst is not src:
        kind = f"{src.name}-copy"
        planner = getattr(src, "plan_copy", None)
        if callable(planner):
            # The mode only labels the plan; not knowing it must not stop the copy.
            with contextlib.suppress(Exception):
                kind = f"{kind}/{planner(dst)}"
        return f"native:{kind}", lambda: copy_to(image, dst, aliases=True)
    copy_from = getattr(dst, "native_copy_from", None)
    if callable(copy_from):
        kind = str(getattr(dst, "native_copy_kind", f"{dst.name}-import"))
        return f"native:{kind}", lambda: copy_from(src, image, name=name, properties={})
    return None


def has_native(src: ImageManager, dst: ImageManager) -> bool:
    return native_route(src, None, dst, None) is not None


def copy_native(p: Plan, options: Options, made: list[Image]
                ) -> tuple[Image, tuple[str, ...]] | None:
    """Take the plan's native path; None when it turns out not to apply, so the caller
    streams instead."""
    assert p.src is not None and p.dst is not None
    route = native_route(p.src, p.source, p.dst, p.name)
    if route is None:
        return None
    try:
        result = route[1]()
    except UnsupportedOperation as exc:
        log.info("native path %s does not apply (%s); streaming instead", route[0], exc)
        return None
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
            raise ChecksumMismatch(f"image {image.id} after {route[0]}", promised, got,
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
