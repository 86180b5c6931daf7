"""Moving images between clouds: ``migrate`` one, ``plan`` it first, ``sync`` many.

This module knows backends only through ``ImageManager``: it never imports one.

Paths
    ``native:<kind>``
        A server-side copy a backend offers (optional methods, below); no image byte
        passes through this process. Used by default when available.
    ``stream``
        ``export`` → a bounded queue (``streams.overlap``) → ``create``: the reader and
        the writer run at once, so a migration costs about its slower side, and memory
        stays flat whatever the size.

Optional methods a backend may provide for the native path (duck-typed, all optional):
    ``src.copy_to(image, dst, *, aliases=True) -> Image | None``
        a server-to-server copy, tried when ``dst`` is the same kind of manager;
        ``src.plan_copy(dst) -> str`` may name the mode it would use (for the plan).
    ``dst.native_copy_from(src, image, *, name, properties) -> Image | None``
        the destination fetches the image itself (e.g. Glance web-download from a URL
        the source serves); ``dst.native_copy_kind`` names it.
    Either may return None (or raise UnsupportedOperation) when it does not apply; the
    stream path is then taken.

Identity and idempotency
    An image's identity is the sha256 of its content: for an image of several parts
    (an LXD split image) the parts' bytes in order, which is also the LXD fingerprint.
    Every image migrate makes records it in the property ``imagehub.sha256``, with the
    source (``imagehub.source``) and the source's own checksum; ``sync`` skips a source
    image whose identity the destination already holds, whatever its name.

Split images on single-file stores
    A destination that takes one file per image (Glance) gets the last part (the rootfs
    or the qcow2 disk, usable as such there); the leading parts (an LXD metadata
    tarball, a few KiB) travel base64-encoded in ``imagehub.part.*`` properties, so the
    image comes back part for part, to the same fingerprint.

Failure
    Everything is verified in the stream: the source's own promise (LXD fingerprint,
    Glance ``os_hash_value``, local sha256) and the content sha256 are checked before
    the last byte reaches the destination, so the destination never commits a bad
    image; what the destination reports after the upload is compared too. Any failure,
    KeyboardInterrupt included, deletes what the attempt made: the image ``create``
    returned, and any record tagged with the attempt's ``imagehub.transfer`` token that a
    dying server left behind. Transient errors are retried with backoff, a bounded
    number of times.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import itertools
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, Literal, overload

import tenacity

from .errors import (
    BackendError,
    ChecksumMismatch,
    ImageHubError,
    IncompatibleFormat,
    InvalidImageData,
    MigrationError,
    RateLimited,
    ServerUnreachable,
    TransferError,
    UnsupportedOperation,
)
from .manager import Capability, ImageManager
from .models import Image
from .operations import Operation
from .streams import Hasher, ImageStream, hashing, overlap, parse_checksum

__all__ = [
    "PROP_SHA256",
    "PROP_SOURCE",
    "PROP_SOURCE_CHECKSUM",
    "PROP_TRANSFER",
    "Plan",
    "Progress",
    "SyncSummary",
    "Transfer",
    "content_checksum",
    "migrate",
    "plan",
    "sync",
]

log = logging.getLogger(__name__)

PROP_SHA256 = "imagehub.sha256"
PROP_SOURCE = "imagehub.source"
PROP_SOURCE_CHECKSUM = "imagehub.source_checksum"
PROP_TRANSFER = "imagehub.transfer"
PROP_PARTS = "imagehub.parts"
PROP_PART = "imagehub.part."
PROP_DISK_FORMAT = "imagehub.disk_format"
PROP_CONTAINER_FORMAT = "imagehub.container_format"
PROP_FORMAT_BACKEND = "imagehub.format_backend"

#: The leading parts of a split image carried in properties may not exceed this.
MAX_PACKED = 64 * 1024
# Property values stay well under what any store takes (Glance on MySQL: 64 KiB TEXT).
_PACK_CHUNK = 16 * 1024
# Leading parts bigger than this wait on disk, not in memory, until the upload.
_SPOOL_MEMORY = 8 * 1024 * 1024
# Queue depth between the reader and the writer: 4 x 1 MiB chunks.
QUEUE_DEPTH = 4

# Formats most clouds understand (Glance's lists); anything else is a backend's own word.
PORTABLE_DISK_FORMATS = frozenset(
    {"raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "iso", "ploop", "ami", "ari", "aki"})
PORTABLE_CONTAINER_FORMATS = frozenset(
    {"bare", "ovf", "ova", "ami", "ari", "aki", "docker", "compressed"})
# Disk formats only a virtual machine boots: a container rootfs is never one of them.
VM_DISK_FORMATS = frozenset({"qcow2", "vmdk", "vhd", "vhdx", "vdi", "iso", "ploop"})
# Keys that are record fields somewhere (Glance's schema, imagehub's Image): carried as
# properties they would clash with the field on the destination.
_RECORD_KEYS = frozenset({
    "id", "name", "status", "visibility", "owner", "size", "virtual_size", "checksum",
    "os_hash_algo", "os_hash_value", "os_hidden", "protected", "min_disk", "min_ram",
    "tags", "disk_format", "container_format", "stores", "created_at", "updated_at",
    "self", "file", "schema", "locations", "direct_url",
})

# Properties each migration writes afresh rather than carries over.
_REDONE = frozenset({PROP_PARTS, PROP_TRANSFER, PROP_SOURCE, PROP_SOURCE_CHECKSUM,
                     PROP_DISK_FORMAT, PROP_CONTAINER_FORMAT, PROP_FORMAT_BACKEND})

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"QFI\xfb", "qcow2"),
    (0, b"hsqs", "squashfs"),
    (0, b"KDMV", "vmdk"),
    (0, b"vhdxfile", "vhdx"),
    (0, b"\x1f\x8b", "gzip"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"(\xb5/\xfd", "zstd"),
    (0, b"BZh", "bzip2"),
    (257, b"ustar", "tar"),
)

# Statuses of records on their way out (Glance lists some for a while): nothing to delete.
_GONE = frozenset({"deleted", "pending_delete"})
# Formats whose files always start with their magic: a mismatch means a mislabelled image.
_SELF_DESCRIBING = frozenset({"qcow2", "vhdx"})

Path_ = str  # "native:<kind>" | "stream" | "none"
ProgressCallback = Callable[["Progress"], None]


# -- records ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Progress:
    """Where one transfer stands, handed to the ``progress`` callback after every chunk."""

    image: str
    done: int
    total: int | None
    delta: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None when the size or rate is unknown)."""
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(self.done / self.total, 1.0)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What migrating one image would do, decided before any byte moves.

    ``action`` is ``copy`` or ``present`` (the destination already holds this content:
    ``existing``); ``path`` is ``native:<kind>``, ``stream`` or ``none``.
    """

    source: Image
    destination: str
    name: str
    action: Literal["copy", "present"]
    path: Path_
    bytes: int | None
    checksum: str | None
    existing: Image | None = None
    format: str | None = None
    src: ImageManager | None = dataclasses.field(default=None, repr=False, compare=False)
    dst: ImageManager | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": _label(self.source),
            "source_id": self.source.id,
            "destination": self.destination,
            "name": self.name,
            "action": self.action,
            "path": self.path,
            "bytes": self.bytes,
            "checksum": self.checksum,
            "existing": self.existing.id if self.existing is not None else None,
            "format": self.format,
        }

    def execute(self, *, verify: bool = True, progress: ProgressCallback | None = None,
                retries: int = 3, backoff: float = 1.0,
                cleanup_timeout: float = 60.0) -> Transfer:
        """Carry the plan out; raises on failure after cleaning up (see the module doc)."""
        options = _Options(verify=verify, progress=progress, retries=retries,
                           backoff=backoff, cleanup_timeout=cleanup_timeout)
        return _execute(self, options)


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

    @property
    def rate(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": _label(self.source),
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
        }


@dataclasses.dataclass(frozen=True)
class SyncSummary:
    """The outcome of ``sync``: one Transfer per source image considered."""

    source: str
    destination: str
    dry_run: bool
    items: tuple[Transfer, ...]
    seconds: float = 0.0

    def _count(self, action: str) -> int:
        return sum(1 for t in self.items if t.action == action)

    @property
    def copied(self) -> int:
        return self._count("copied")

    @property
    def present(self) -> int:
        return self._count("present")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def planned(self) -> int:
        return self._count("planned")

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.items)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "copied": self.copied,
            "present": self.present,
            "failed": self.failed,
            "planned": self.planned,
            "bytes": self.bytes if not self.dry_run else sum(
                t.planned_bytes or 0 for t in self.items if t.action == "planned"),
            "seconds": round(self.seconds, 3),
            "items": [t.to_dict() for t in self.items],
        }


@dataclasses.dataclass
class _Options:
    verify: bool = True
    progress: ProgressCallback | None = None
    retries: int = 3
    backoff: float = 1.0
    cleanup_timeout: float = 60.0
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)


# -- identity -----------------------------------------------------------------------------
def _norm(checksum: str | None) -> str | None:
    if not checksum:
        return None
    try:
        algo, digest = parse_checksum(checksum)
    except ValueError:
        return None
    return f"{algo}:{digest}"


def _is_packed(image: Image) -> bool:
    return PROP_PARTS in image.properties


def content_checksum(image: Image) -> str | None:
    """``sha256:<hex>`` of the image's content, when the image promises one without a read.

    The recorded ``imagehub.sha256`` first; else the image's own checksum when it is a
    sha256 of the whole content (local, an LXD fingerprint).
    """
    recorded = image.properties.get(PROP_SHA256)
    if recorded:
        return f"sha256:{recorded.lower()}"
    own = _norm(image.checksum)
    if own and own.startswith("sha256:") and not _is_packed(image):
        return own
    return None


def _identities(image: Image) -> set[str]:
    keys = {k for k in (content_checksum(image),
                        _norm(image.properties.get(PROP_SOURCE_CHECKSUM))) if k}
    own = _norm(image.checksum)
    if own and not _is_packed(image):
        # A packed image's own checksum covers the last part only: not an identity.
        keys.add(own)
    return keys


class _Index:
    """The destination's images by identity, so sync asks the destination once."""

    def __init__(self, dst: ImageManager) -> None:
        self.by_key: dict[str, Image] = {}
        self.stale: list[Image] = []
        if Capability.LIST not in type(dst).capabilities:
            return
        for image in dst.all():
            if image.status != "active":
                if PROP_TRANSFER in image.properties and image.status not in _GONE:
                    self.stale.append(image)
                continue
            for key in _identities(image):
                self.by_key.setdefault(key, image)

    def find(self, image: Image) -> Image | None:
        for key in sorted(_identities(image)):
            if key in self.by_key:
                return self.by_key[key]
        return None

    def add(self, image: Image, keys: Iterable[str]) -> None:
        for key in keys:
            self.by_key.setdefault(key, image)


# -- planning -----------------------------------------------------------------------------
def _manager(value: ImageManager | str, config: Any) -> ImageManager:
    if isinstance(value, ImageManager):
        return value
    from .connect import connect

    return connect(value, config)


def _label(image: Image) -> str:
    return f"{image.cloud}:{image.id}" if image.cloud else image.id


def _kind(image: Image) -> str | None:
    """``container`` or ``virtual-machine`` where the image says so, else None."""
    for value in (image.properties.get(PROP_CONTAINER_FORMAT), image.container_format,
                  image.properties.get("type"), image.raw.get("type")):
        if value in ("container", "virtual-machine"):
            return str(value)
    disk = image.properties.get(PROP_DISK_FORMAT) or image.disk_format
    if disk in VM_DISK_FORMATS:
        return "virtual-machine"
    if disk == "squashfs":
        return "container"
    return None


def _check_pair(src: ImageManager, dst: ImageManager) -> None:
    if Capability.CREATE not in type(dst).capabilities:
        reason = type(dst).unsupported_reason
        raise IncompatibleFormat(
            f"cloud {dst.cloud!r} ({dst.name}) cannot hold new images"
            + (f": {reason}" if reason else ""), backend=dst.name,
            hint="pick a destination that can create images")
    if Capability.EXPORT not in type(src).capabilities and not _has_native(src, dst):
        raise IncompatibleFormat(
            f"cloud {src.cloud!r} ({src.name}) cannot hand out image data", backend=src.name,
            hint="images can only be copied out of clouds that can export them")


def _check_image(image: Image, dst: ImageManager, fmt: str | None) -> None:
    if fmt is None:
        return
    kind = _kind(image)
    if kind == "container" and fmt in VM_DISK_FORMATS:
        raise IncompatibleFormat(
            f"image {image.id} is a container rootfs; it cannot become a {fmt} virtual "
            "machine disk", backend=dst.name, hint="migrate it without a disk format")
    current = image.properties.get(PROP_DISK_FORMAT) or image.disk_format
    if current in PORTABLE_DISK_FORMATS and current != fmt:
        raise IncompatibleFormat(
            f"image {image.id} is {current}; converting it to {fmt} is not supported",
            backend=dst.name, hint="convert it with qemu-img first, or keep its format")


def _has_native(src: ImageManager, dst: ImageManager) -> bool:
    return _native_route(src, None, dst, None) is not None


def _native_route(src: ImageManager, image: Image | None, dst: ImageManager,
                  name: str | None) -> tuple[str, Callable[[], Any]] | None:
    copy_to = getattr(src, "copy_to", None)
    if callable(copy_to) and isinstance(dst, type(src)) and dst is not src:
        kind = f"{src.name}-copy"
        planner = getattr(src, "plan_copy", None)
        if callable(planner):
            with contextlib.suppress(Exception):
                kind = f"{kind}/{planner(dst)}"
        return f"native:{kind}", lambda: copy_to(image, dst, aliases=True)
    copy_from = getattr(dst, "native_copy_from", None)
    if callable(copy_from):
        kind = str(getattr(dst, "native_copy_kind", f"{dst.name}-import"))
        return f"native:{kind}", lambda: copy_from(src, image, name=name, properties={})
    return None


def _default_name(image: Image) -> str:
    return image.name or (image.aliases[0] if image.aliases else image.id)


def _plan_one(src: ImageManager, image: Image, dst: ImageManager, *, name: str | None,
              stream: bool, fmt: str | None, index: _Index | None) -> Plan:
    _check_image(image, dst, fmt)
    existing = (index or _Index(dst)).find(image)
    route = None if stream or fmt else _native_route(src, image, dst, name)
    path = "none" if existing is not None else (route[0] if route else "stream")
    return Plan(source=image, destination=dst.cloud, name=name or _default_name(image),
                action="present" if existing is not None else "copy", path=path,
                bytes=image.size, checksum=content_checksum(image), existing=existing,
                format=fmt, src=src, dst=dst)


def plan(src: ImageManager | str, ref: Image | str, dst: ImageManager | str, *,
         name: str | None = None, stream: bool = False, format: str | None = None,
         config: Any = None) -> Plan:
    """Decide how ``ref`` would move from ``src`` to ``dst``, moving nothing.

    Raises IncompatibleFormat for a move that cannot work (a destination that cannot
    create images, a container rootfs asked to become a VM disk).
    """
    src_m, dst_m = _manager(src, config), _manager(dst, config)
    _check_pair(src_m, dst_m)
    image = src_m.resolve(ref)
    return _plan_one(src_m, image, dst_m, name=name, stream=stream, fmt=format, index=None)


@overload
def migrate(src: ImageManager | str, ref: Image | str, dst: ImageManager | str, *,
            name: str | None = ..., verify: bool = ..., progress: ProgressCallback | None = ...,
            dry_run: Literal[False] = ..., stream: bool = ..., format: str | None = ...,
            retries: int = ..., config: Any = ...) -> Image: ...


@overload
def migrate(src: ImageManager | str, ref: Image | str, dst: ImageManager | str, *,
            name: str | None = ..., verify: bool = ..., progress: ProgressCallback | None = ...,
            dry_run: Literal[True], stream: bool = ..., format: str | None = ...,
            retries: int = ..., config: Any = ...) -> Plan: ...


def migrate(src: ImageManager | str, ref: Image | str, dst: ImageManager | str, *,
            name: str | None = None, verify: bool = True,
            progress: ProgressCallback | None = None, dry_run: bool = False,
            stream: bool = False, format: str | None = None, retries: int = 3,
            config: Any = None) -> Image | Plan:
    """Copy image ``ref`` from ``src`` to ``dst`` and return the new (or already present)
    destination image. ``src``/``dst`` are managers or cloud names.

    ``stream`` forces the client-side path even where a native one exists; ``dry_run``
    returns the Plan instead, moving nothing; ``format`` asks for a destination disk
    format (no conversion is done: an impossible one raises IncompatibleFormat).
    """
    chosen = plan(src, ref, dst, name=name, stream=stream, format=format, config=config)
    if dry_run:
        return chosen
    done = chosen.execute(verify=verify, progress=progress, retries=retries)
    assert done.image is not None
    return done.image


# -- executing ----------------------------------------------------------------------------
def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ChecksumMismatch):
        return False  # bytes that fail their promise are not fixed by asking again
    if isinstance(exc, TransferError | ServerUnreachable | RateLimited):
        return True
    if isinstance(exc, BackendError):
        return exc.status_code is not None and exc.status_code >= 500
    return False


def _wait_for(options: _Options) -> Callable[[tenacity.RetryCallState], float]:
    exponential = tenacity.wait_exponential(multiplier=options.backoff, max=30)

    def wait(state: tenacity.RetryCallState) -> float:
        delay = float(exponential(state))
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RateLimited) and exc.retry_after:
            delay = max(delay, float(exc.retry_after))
        return delay

    return wait


def _interruptible_sleep(cancel: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        cancel.wait(seconds)  # a cancelled sync stops waiting to retry

    return sleep


def _execute(p: Plan, options: _Options) -> Transfer:
    if p.action == "present":
        return Transfer(source=p.source, action="present", path="none", image=p.existing,
                        checksum=p.checksum, planned_bytes=p.bytes)
    started = time.monotonic()
    attempts = 0

    def attempt() -> Transfer:
        nonlocal attempts
        attempts += 1
        token = uuid.uuid4().hex
        made: list[Image] = []
        try:
            return _attempt(p, options, token, made, started, attempts)
        except BaseException as exc:
            _cleanup(p, token, made, options, exc)
            raise

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_transient),
        stop=tenacity.stop_after_attempt(max(options.retries, 0) + 1)
        | tenacity.stop_when_event_set(options.cancel),
        wait=_wait_for(options),
        sleep=_interruptible_sleep(options.cancel),
        before_sleep=lambda s: log.warning(
            "migrate %s: attempt %d failed (%s); retrying", _label(p.source),
            s.attempt_number, s.outcome.exception() if s.outcome else "?"),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except ImageHubError:
        raise
    except Exception as exc:
        # Whatever a backend let through unmapped still ends as one readable line.
        raise MigrationError(f"migrating {_label(p.source)} failed: "
                             f"{type(exc).__name__}: {exc}") from exc


def _attempt(p: Plan, options: _Options, token: str, made: list[Image], started: float,
             attempts: int) -> Transfer:
    assert p.src is not None and p.dst is not None
    if p.path.startswith("native:"):
        result = _native(p, options, token, made)
        if result is not None:
            image, checks = result
            return Transfer(source=p.source, action="copied", path=p.path, image=image,
                            bytes=0, seconds=time.monotonic() - started,
                            checksum=p.checksum, checks=checks, attempts=attempts)
    image, moved, checksum, checks = _stream(p, options, token, made)
    return Transfer(source=p.source, action="copied", path="stream", image=image,
                    bytes=moved, seconds=time.monotonic() - started, checksum=checksum,
                    checks=checks, attempts=attempts)


def _native(p: Plan, options: _Options, token: str, made: list[Image]
            ) -> tuple[Image, tuple[str, ...]] | None:
    assert p.src is not None and p.dst is not None
    route = _native_route(p.src, p.source, p.dst, p.name)
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
        if p.name != image.name and p.name != _default_name(p.source):
            changes["name"] = p.name
        try:
            image = p.dst.update(image, **changes)
        except ImageHubError as exc:
            log.warning("could not record provenance on %s: %s", image.id, exc)
    made.clear()  # succeeded: nothing to clean up
    return image, tuple(checks)


def _provenance(p: Plan, content: str | None) -> dict[str, str]:
    props = {PROP_SOURCE: _label(p.source)}
    if content:
        props[PROP_SHA256] = content.split(":", 1)[1]
    own = _norm(p.source.checksum)
    if own and own != content and not _is_packed(p.source):
        props[PROP_SOURCE_CHECKSUM] = own
    return props


class _Meter:
    """Counts bytes for one transfer, calls the progress callback, honours cancel."""

    def __init__(self, label: str, total: int | None, options: _Options) -> None:
        self.label, self.total, self.options = label, total, options
        self.done = 0
        self.start = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        if self.options.cancel.is_set():
            raise MigrationError(f"migration of {self.label} was cancelled")
        with self._lock:
            self.done += n
            done = self.done
        if self.options.progress is not None:
            self.options.progress(Progress(self.label, done, self.total, n,
                                           time.monotonic() - self.start))


def _sniff(head: bytes) -> str | None:
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None


def _unpack(image: Image) -> list[tuple[str, bytes]]:
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


def _pack(parts: list[tuple[str, bytes]], last: str) -> dict[str, str]:
    props = {PROP_PARTS: ",".join([n for n, _ in parts] + [last])}
    for name, data in parts:
        text = base64.b64encode(data).decode("ascii")
        for i in range(0, max(len(text), 1), _PACK_CHUNK):
            props[f"{PROP_PART}{name}.{i // _PACK_CHUNK}"] = text[i:i + _PACK_CHUNK]
        props[f"{PROP_PART}{name}.sha256"] = hashlib.sha256(data).hexdigest()
        props[f"{PROP_PART}{name}.size"] = str(len(data))
    return props


def _carried(p: Plan) -> dict[str, str]:
    image = p.source
    props = {k: v for k, v in image.properties.items()
             if k not in _RECORD_KEYS and not k.startswith(("os_glance_", PROP_PART))
             and k not in _REDONE}
    for field in ("os", "family", "release", "version"):
        value = getattr(image, field)
        if value and field not in props:
            props[field] = str(value)
    return props


_reported_algos: dict[type[ImageManager], set[str]] = {}


def _algos_reported_by(dst: ImageManager) -> set[str]:
    """Which checksum the destination will report, so the stream hashes that one too."""
    declared = getattr(dst, "checksum_algos", None)
    if declared:
        return {str(a) for a in declared}
    known = _reported_algos.get(type(dst))
    if known is not None:
        return known
    guess: set[str] = set()
    with contextlib.suppress(ImageHubError):
        for image in dst.list(limit=1):
            own = _norm(image.checksum)
            if own:
                guess.add(own.split(":", 1)[0])
    # An empty destination tells nothing: sha512 is the usual other answer (Glance).
    return guess or {"sha512"}


def _formats(p: Plan, *, sniffed: str | None, packed: bool) -> tuple[
        str | None, str | None, dict[str, str]]:
    """Disk and container format for the destination, and properties that remember the
    source's own words when they cannot travel as formats."""
    assert p.src is not None and p.dst is not None
    image = p.source
    recorded = PROP_DISK_FORMAT in image.properties or PROP_CONTAINER_FORMAT in image.properties
    disk = image.properties.get(PROP_DISK_FORMAT) if recorded else image.disk_format
    container = image.properties.get(PROP_CONTAINER_FORMAT) if recorded \
        else image.container_format
    origin = image.properties.get(PROP_FORMAT_BACKEND, p.src.name) if recorded else p.src.name
    if p.format:
        return p.format, container if container in PORTABLE_CONTAINER_FORMATS else None, {}
    if not packed and p.dst.name == origin:
        return disk, container, {}  # the backend's own vocabulary, back home
    portable_sniff = sniffed if sniffed in PORTABLE_DISK_FORMATS else None
    out_disk: str | None
    out_container: str | None
    if packed:
        out_disk, out_container = portable_sniff or "raw", "bare"
    else:
        out_disk = disk if disk in PORTABLE_DISK_FORMATS else portable_sniff
        out_container = container if container in PORTABLE_CONTAINER_FORMATS else None
    if out_disk in _SELF_DESCRIBING and sniffed != out_disk:
        # Caught before a byte moves; the destination would refuse it mid-upload (Glance
        # inspects the bytes) or, worse, store a disk that cannot boot.
        raise IncompatibleFormat(
            f"image {image.id} says it is {out_disk}, but its bytes are "
            f"{sniffed or 'not a format imagehub recognises'}", backend=p.dst.name,
            hint="fix the source image's disk format")
    memo: dict[str, str] = {}
    if (out_disk, out_container) != (disk, container) and (disk or container):
        memo[PROP_FORMAT_BACKEND] = origin
        if disk:
            memo[PROP_DISK_FORMAT] = disk
        if container:
            memo[PROP_CONTAINER_FORMAT] = container
    return out_disk, out_container, memo


def _close_quietly(stream: ImageStream) -> None:
    # A reader thread stuck on a dead socket may still hold a part's generator; closing
    # the response is what unblocks it, and a close error must not hide the real one.
    with contextlib.suppress(Exception):
        stream.close()


def _stream(p: Plan, options: _Options, token: str, made: list[Image]
            ) -> tuple[Image, int, str, tuple[str, ...]]:
    assert p.src is not None and p.dst is not None
    src, dst, source = p.src, p.dst, p.source
    label = _label(source)
    with contextlib.ExitStack() as stack:
        stream = src.export(source)
        stack.callback(_close_quietly, stream)
        if len(stream.parts) > 2:
            raise IncompatibleFormat(
                f"image {source.id} has {len(stream.parts)} parts; imagehub moves images of "
                "one or two parts", backend=src.name)
        carried_lead = _unpack(source) if _is_packed(source) else []
        lead_size = sum(len(d) for _, d in carried_lead)
        meter = _Meter(label, (stream.size or p.bytes or 0) + lead_size or None, options)
        parts = stream.iter_parts()

        # 1. The leading part (LXD metadata), if any: small, read before anything is sent.
        lead: tuple[str, IO[bytes], int] | None = None
        if carried_lead:
            name, data = carried_lead[0]
            lead = (name, io.BytesIO(data), len(data))
            meter(len(data))
        elif len(stream.parts) == 2:
            part, chunks = next(parts)
            spool = stack.enter_context(tempfile.SpooledTemporaryFile(_SPOOL_MEMORY))
            size = 0
            for chunk in chunks:
                spool.write(chunk)
                size += len(chunk)
                meter(len(chunk))
            lead = (part.name, spool, size)

        # 2. The last part: peek at its first chunk to learn its format.
        last, blob = next(parts)
        first = next(blob, b"")
        sniffed = _sniff(first)
        blob = itertools.chain([first], blob) if first else blob

        blob_size = _blob_size(stream, last.size, lead[2] if lead and not carried_lead
                               else None)
        reported_algos = _algos_reported_by(dst)
        blob_hasher = Hasher(sorted(reported_algos - {"sha256"}))
        # A packed source's content is lead + blob: only the stream sees the blob, so
        # that sha256 is computed here; otherwise the stream's own sha256 is the content's.
        content_hasher = Hasher(["sha256"]) if carried_lead else None
        if content_hasher is not None:
            for _, data in carried_lead:
                content_hasher.update(data)
        started = [False]

        def read_ahead() -> Iterator[bytes]:
            # Runs in the reader thread: the source's verification, our hashes, progress.
            chunks = hashing(blob, blob_hasher, meter)
            if content_hasher is not None:
                chunks = hashing(chunks, content_hasher)
            yield from chunks

        def body() -> Iterator[bytes]:
            # What the destination reads. Every check runs before its last read returns,
            # so a bad image fails inside create and never becomes visible.
            started[0] = True
            with overlap(read_ahead(), QUEUE_DEPTH) as queued:
                yield from queued
            for _ in parts:  # the source's own promises: ChecksumMismatch if broken
                pass
            content = _content(stream, content_hasher)
            if options.verify and p.checksum and content != p.checksum:
                raise ChecksumMismatch(f"image {label}", p.checksum, content,
                                       backend=src.name)

        props = _carried(p)
        props[PROP_TRANSFER] = token
        props[PROP_SOURCE] = label
        if options.verify and p.checksum:
            # Safe to state up front: the content is checked against it before the
            # destination commits, so the property can never describe other bytes.
            props[PROP_SHA256] = p.checksum.split(":", 1)[1]

        def send(properties: dict[str, str], *, packed: bool, promise: str | None,
                 metadata: IO[bytes] | None = None) -> Image:
            disk, container, memo = _formats(p, sniffed=sniffed, packed=packed)
            if promise and parse_checksum(promise)[0] not in reported_algos:
                # body() already holds the bytes to the source's promise before the last
                # one is sent; a promise the destination would only re-hash on this side
                # adds a hash pass and no safety. One it hashes itself (LXD's fingerprint,
                # Glance's sha512) also covers the wire, so it goes along.
                promise = None
            return dst.create(
                _Sized(body(), blob_size), metadata=metadata, name=p.name,
                description=source.description, architecture=source.architecture,
                properties={**properties, **memo}, format=disk, container_format=container,
                checksum=promise if options.verify else None)

        packed = False
        image: Image | None = None
        if lead is None:
            image = send(props, packed=False, promise=p.checksum or _norm(source.checksum))
        else:
            lead_name, lead_file, lead_len = lead
            try:
                lead_file.seek(0)
                image = send(props, packed=False, promise=p.checksum, metadata=lead_file)
            except InvalidImageData:
                # A one-file store refuses two parts before reading any: pack the lead
                # into properties instead. If it had read, the error is real.
                if started[0] or lead_file.tell() != 0:
                    raise
                if lead_len > MAX_PACKED:
                    raise IncompatibleFormat(
                        f"cloud {dst.cloud!r} keeps one file per image, and the "
                        f"{lead_name} part of {source.id} ({lead_len} bytes) is too large "
                        f"to travel in its properties (limit {MAX_PACKED})",
                        backend=dst.name) from None
                packed = True
            if packed:
                lead_file.seek(0)
                carried = _pack([(lead_name, lead_file.read())], last.name)
                # Only a packed source's own checksum describes the blob alone.
                image = send({**props, **carried}, packed=True,
                             promise=_norm(source.checksum) if carried_lead else None)
        assert image is not None
        made.append(image)

        content = _content(stream, content_hasher)
        checks = ["source:" + a for a in sorted({parse_checksum(c)[0]
                                                  for c in stream.expected})]
        if options.verify and p.checksum:
            checks.append("source:content-sha256")
        # What the destination reports must match what was sent.
        reported = _norm(image.checksum)
        if reported:
            algo, digest = reported.split(":", 1)
            _reported_algos[type(dst)] = {algo}
            if packed:
                ours = blob_hasher.hexdigest(algo) if algo in blob_hasher.algos else None
            elif algo == "sha256":
                ours = content.split(":", 1)[1]
            else:
                ours = blob_hasher.hexdigest(algo) if (
                    algo in blob_hasher.algos and lead is None) else None
            if ours is not None and options.verify:
                if ours != digest:
                    raise ChecksumMismatch(f"image {image.id} as {dst.cloud!r} stored it",
                                           f"{algo}:{ours}", reported, backend=dst.name)
                checks.append(f"destination:{algo}")
        # Record the content identity (and finish: the token marks no half-made image now).
        final = {PROP_SHA256: content.split(":", 1)[1]}
        own = _norm(source.checksum)
        if own and own != content and not _is_packed(source):
            final[PROP_SOURCE_CHECKSUM] = own
        image = _record(dst, image, final)
        made.clear()
        moved = meter.done
    return image, moved, content, tuple(checks)


class _Sized:
    """An iterable of chunks that says how many bytes it will yield (``open_source``
    reads ``size``), so a destination can send it with a Content-Length."""

    def __init__(self, chunks: Iterator[bytes], size: int | None) -> None:
        self._chunks, self.size = chunks, size

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks


def _blob_size(stream: ImageStream, last_size: int | None, lead_from_stream: int | None
               ) -> int | None:
    if last_size is not None:
        return last_size
    if stream.size is None:
        return None
    if lead_from_stream is None:
        return stream.size
    # A split export's size is its parts' total (LXD reports it so).
    rest = stream.size - lead_from_stream
    return rest if rest >= 0 else None


def _content(stream: ImageStream, content_hasher: Hasher | None) -> str:
    if content_hasher is not None:
        return content_hasher.checksum("sha256")
    if stream.sha256 is None:
        raise TransferError("the source stream ended before it was fully read",
                            backend=stream.backend)
    return stream.sha256


def _record(dst: ImageManager, image: Image, props: Mapping[str, str]) -> Image:
    if all(image.properties.get(k) == v for k, v in props.items()):
        return image
    if Capability.UPDATE not in type(dst).capabilities:
        return image
    return dst.update(image, properties=dict(props))


def _cleanup(p: Plan, token: str, made: list[Image], options: _Options,
             cause: BaseException) -> None:
    """Delete what this attempt made, waiting (bounded) for a server that went away."""
    dst = p.dst
    if dst is None:
        return
    deadline = time.monotonic() + options.cleanup_timeout
    delay = 0.2
    while True:
        try:
            for image in list(made):
                _delete_if_present(dst, image)
                made.remove(image)
            if Capability.LIST in type(dst).capabilities:
                for image in dst.all():
                    if image.properties.get(PROP_TRANSFER) == token and \
                            image.status not in _GONE:
                        _delete_if_present(dst, image)
            return
        except ImageHubError as exc:
            # A server restarting answers 5xx or not at all for a while: keep asking.
            if not isinstance(exc, BackendError | TransferError) \
                    or time.monotonic() + delay > deadline:
                log.error("migrate: could not clean up after %s on %s (%s); look for "
                          "images with property %s=%s", type(cause).__name__,
                          dst.cloud, exc, PROP_TRANSFER, token)
                _note(cause, f"cleanup failed: images tagged {PROP_TRANSFER}={token} may "
                             f"remain on {dst.cloud!r}")
                return
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _delete_if_present(dst: ImageManager, image: Image) -> None:
    from .errors import ImageNotFound

    with contextlib.suppress(ImageNotFound):
        dst.delete(image.id)
        log.info("deleted half-made image %s on %s", image.id, dst.cloud)


def _note(exc: BaseException, text: str) -> None:
    add = getattr(exc, "add_note", None)
    if callable(add):
        add(text)


# -- sync ---------------------------------------------------------------------------------
def sync(src: ImageManager | str, dst: ImageManager | str, *,
         filters: Mapping[str, Any] | None = None, latest: bool = False, jobs: int = 1,
         dry_run: bool = False, progress: ProgressCallback | None = None,
         stream: bool = False, verify: bool = True, retries: int = 3,
         stale_after: float = 3600.0, config: Any = None) -> SyncSummary:
    """Copy every image of ``src`` (matching ``filters``) that ``dst`` lacks.

    Keyed on content: an image whose content the destination already holds is
    ``present``, whatever its name. Failures are reported per image, not raised; check
    ``summary.ok``. Half-made images a killed run left behind (tagged, not active, older
    than ``stale_after`` seconds) are deleted. Ctrl-C cancels the running transfers,
    cleans them up, and re-raises.
    """
    started = time.monotonic()
    src_m, dst_m = _manager(src, config), _manager(dst, config)
    _check_pair(src_m, dst_m)
    # Only images with data to copy: not Glance's queued, importing or deactivated ones.
    images = [i for i in src_m.all(latest=latest, **dict(filters or {}))
              if i.status == "active"]
    index = _Index(dst_m)
    if not dry_run:
        _sweep(dst_m, index.stale, stale_after)

    items: list[Transfer | None] = [None] * len(images)
    todo: list[tuple[int, Plan]] = []
    claimed: dict[str, Image] = {}
    for i, image in enumerate(images):
        try:
            p = _plan_one(src_m, image, dst_m, name=None, stream=stream, fmt=None, index=index)
        except ImageHubError as exc:
            items[i] = Transfer(source=image, action="failed", path="none", error=str(exc))
            continue
        twin = next((claimed[k] for k in sorted(_identities(image)) if k in claimed), None)
        if p.action == "present" or twin is not None:
            items[i] = Transfer(source=image, action="present", path="none",
                                image=p.existing, checksum=p.checksum, planned_bytes=p.bytes)
            continue
        claimed.update({k: image for k in _identities(image)})
        if dry_run:
            items[i] = Transfer(source=image, action="planned", path=p.path,
                                checksum=p.checksum, planned_bytes=p.bytes)
        else:
            todo.append((i, p))

    options = _Options(verify=verify, progress=progress, retries=retries)
    if todo:
        _run_all(todo, items, options, max(1, jobs))
    return SyncSummary(source=src_m.cloud, destination=dst_m.cloud, dry_run=dry_run,
                       items=tuple(t for t in items if t is not None),
                       seconds=time.monotonic() - started)


def _run_all(todo: list[tuple[int, Plan]], items: list[Transfer | None], options: _Options,
             jobs: int) -> None:
    def one(p: Plan) -> Transfer:
        try:
            return _execute(p, options)
        except Exception as exc:  # noqa: BLE001 - reported per image in the summary
            return Transfer(source=p.source, action="failed", path=p.path, error=str(exc),
                            planned_bytes=p.bytes)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs,
                                                 thread_name_prefix="imagehub-sync")
    futures = {pool.submit(one, p): i for i, p in todo}
    try:
        for future in concurrent.futures.as_completed(futures):
            items[futures[future]] = future.result()
    except BaseException:
        # Ctrl-C: stop the transfers in flight (each cleans up after itself), then go.
        options.cancel.set()
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)


def _sweep(dst: ImageManager, stale: list[Image], older_than: float) -> None:
    now = time.time()
    for image in stale:
        when = image.updated_at or image.created_at
        if when is not None and now - when.timestamp() < older_than:
            continue  # maybe another run's upload in flight
        log.warning("sync: deleting %s on %s, left half-made by an interrupted run",
                    image.id, dst.cloud)
        with contextlib.suppress(ImageHubError):
            _delete_if_present(dst, image)

