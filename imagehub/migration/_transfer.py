"""Carrying a Plan out: the path it names, retries with backoff, and the Transfer record.

Each attempt gets a fresh token (``imagehub.transfer``) on what it makes, and any failure,
KeyboardInterrupt included, deletes what that attempt made before the error goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from .._retry import backoff, retrying
from ..errors import (
    BackendError,
    ChecksumMismatch,
    ImageHubError,
    MigrationError,
    RateLimited,
    ServerUnreachable,
    TransferError,
)
from ..models import Image
from ._cleanup import cleanup
from ._convert import copy_converted
from ._identity import display, label
from ._native import copy_native
from ._options import Options
from ._stream import copy_stream

if TYPE_CHECKING:
    from ._plan import Plan

# The package's logger under the name it had as one module, which logging setups name.
log = logging.getLogger("imagehub.migration")

Path_ = str  # "native:<kind>" | "stream" | "convert" | "none"


@dataclasses.dataclass(frozen=True)
class Transfer:
    """What happened to one image: ``copied``, ``present``, ``failed`` or ``planned``."""

    source: Image
    action: Literal["copied", "present", "failed", "planned"]
    path: Path_
    image: Image | None = None
    bytes: int = 0
    seconds: float = 0.0
    checksum: str | None = None
    checks: tuple[str, ...] = ()
    attempts: int = 0
    error: str | None = None
    planned_bytes: int | None = None
    #: which worker carried the transfer out (a Dask worker's address, else host:pid);
    #: None when it ran in the calling process
    worker: str | None = None

    @property
    def rate(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": label(self.source),
            "source_id": self.source.id,
            "action": self.action,
            "path": self.path,
            "image_id": self.image.id if self.image is not None else None,
            "name": self.image.name if self.image is not None else None,
            "cloud": self.image.cloud if self.image is not None else None,
            "bytes": self.bytes or self.planned_bytes,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate),
            "checksum": self.checksum,
            "checks": list(self.checks),
            "attempts": self.attempts,
            "error": self.error,
            "worker": self.worker,
        }


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ChecksumMismatch):
        return False  # bytes that fail their promise are not fixed by asking again
    if isinstance(exc, TransferError | ServerUnreachable | RateLimited):
        return True
    if isinstance(exc, BackendError):
        return exc.status_code is not None and exc.status_code >= 500
    return False


def carry_out(p: Plan, options: Options) -> Transfer:
    if p.action == "present":
        return Transfer(source=p.source, action="present", path="none", image=p.existing,
                        checksum=p.checksum, planned_bytes=p.bytes)
    started = time.monotonic()
    attempts = 0

    def attempt() -> Transfer:
        nonlocal attempts
        attempts += 1
        token = (f"{options.run}.{uuid.uuid4().hex}" if options.run
                 else uuid.uuid4().hex)
        made: list[Image] = []
        try:
            return _attempt(p, options, token, made, started, attempts)
        except BaseException as exc:
            cleanup(p, token, made, options, exc)
            raise

    retry = retrying(
        attempts=max(options.retries, 0) + 1, retry_if=_transient,
        wait=backoff(options.backoff, 30.0), cancel=options.cancel,
        before_sleep=lambda s: log.warning(
            "migrate %s: attempt %d failed (%s); retrying", display(p.source),
            s.attempt_number, s.outcome.exception() if s.outcome else "?"),
    )
    try:
        return retry(attempt)
    except ImageHubError:
        raise
    except Exception as exc:
        # Whatever a backend let through unmapped still ends as one readable line.
        raise MigrationError(f"migrating {label(p.source)} failed: "
                             f"{type(exc).__name__}: {exc}") from exc


def _attempt(p: Plan, options: Options, token: str, made: list[Image], started: float,
             attempts: int) -> Transfer:
    assert p.src is not None and p.dst is not None
    if p.path.startswith("native:"):
        result = copy_native(p, options, made)
        if result is not None:
            image, checks = result
            return Transfer(source=p.source, action="copied", path=p.path, image=image,
                            bytes=0, seconds=time.monotonic() - started,
                            checksum=p.checksum, checks=checks, attempts=attempts)
    if p.convert is not None:
        image, moved, checksum, checks = copy_converted(p, options, token, made)
    else:
        image, moved, checksum, checks = copy_stream(p, options, token, made)
    return Transfer(source=p.source, action="copied", path=p.path if p.convert else "stream",
                    image=image,
                    bytes=moved, seconds=time.monotonic() - started, checksum=checksum,
                    checks=checks, attempts=attempts)


