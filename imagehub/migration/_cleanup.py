"""Nothing half-made left behind: deleting what a failed attempt or a killed run made."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from .._retry import backoff, retrying
from ..errors import BackendError, ImageHubError, ImageNotFound, TransferError
from ..manager import Capability, ImageManager
from ..models import Image
from ._options import Options
from ._properties import PROP_TRANSFER

if TYPE_CHECKING:
    from ._plan import Plan

# The package's logger under the name it had as one module, which logging setups name.
log = logging.getLogger("imagehub.migration")

# Statuses of records on their way out (Glance lists some for a while): nothing to delete.
GONE = frozenset({"deleted", "pending_delete"})


def cleanup(p: Plan, token: str, made: list[Image], options: Options,
            cause: BaseException) -> None:
    """Delete what this attempt made, waiting (bounded) for a server that went away."""
    dst = p.dst
    if dst is None:
        return

    def sweep_once() -> None:
        for image in list(made):
            delete_if_present(dst, image)
            made.remove(image)
        if Capability.LIST in type(dst).capabilities:
            for image in dst.all():
                if image.properties.get(PROP_TRANSFER) == token and image.status not in GONE:
                    delete_if_present(dst, image)

    try:
        # A server restarting answers 5xx or not at all for a while: keep asking.
        retrying(attempts=None, within=options.cleanup_timeout,
                 retry_if=lambda exc: isinstance(exc, BackendError | TransferError),
                 wait=backoff(0.2, 2.0))(sweep_once)
    except ImageHubError as exc:
        log.error("migrate: could not clean up after %s on %s (%s); look for "
                  "images with property %s=%s", type(cause).__name__,
                  dst.cloud, exc, PROP_TRANSFER, token)
        _note(cause, f"cleanup failed: images tagged {PROP_TRANSFER}={token} may "
                     f"remain on {dst.cloud!r}")


def delete_if_present(dst: ImageManager, image: Image) -> None:
    with contextlib.suppress(ImageNotFound):
        dst.delete(image.id)
        log.info("deleted half-made image %s on %s", image.id, dst.cloud)


def sweep(dst: ImageManager, stale: list[Image], older_than: float) -> None:
    """Delete the tagged, inactive records interrupted runs left, once they are old."""
    now = time.time()
    for image in stale:
        when = image.updated_at or image.created_at
        if when is not None and now - when.timestamp() < older_than:
            continue  # maybe another run's upload in flight
        log.warning("sync: deleting %s (%s) on %s, left half-made by an interrupted run",
                    image.name or "unnamed", image.id, dst.cloud)
        with contextlib.suppress(ImageHubError):
            delete_if_present(dst, image)


def _note(exc: BaseException, text: str) -> None:
    # add_note is Python 3.11+; on 3.10 the log line above is all there is.
    add = getattr(exc, "add_note", None)
    if callable(add):
        add(text)
