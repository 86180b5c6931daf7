"""One image: ``plan`` how it would move, ``migrate`` it (plan, then carry the plan out).

Everything that can be known before a byte moves is decided here: the destination name,
whether the destination already holds the content, the path, and the format checks that
would otherwise fail halfway.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, overload

from ..errors import IncompatibleFormat, InvalidArgument, InvalidArgumentType
from ..manager import Capability, ImageManager, _check_text
from ..models import Image
from ._formats import PORTABLE_DISK_FORMATS, VM_DISK_FORMATS, kind
from ._identity import Index, content_checksum, default_name, label
from ._native import has_native, native_route
from ._options import Options, ProgressCallback
from ._properties import PROP_DISK_FORMAT
from ._transfer import Path_, Transfer, carry_out


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
            "source": label(self.source),
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
        options = Options(verify=verify, progress=progress, retries=retries,
                          backoff=backoff, cleanup_timeout=cleanup_timeout)
        return carry_out(self, options)


def manager(value: ImageManager | str, config: Any) -> ImageManager:
    if isinstance(value, ImageManager):
        return value
    if not isinstance(value, str):
        raise InvalidArgumentType(f"a source or destination is an ImageManager or a cloud "
                                  f"name, got {type(value).__name__}")
    from ..connect import connect

    return connect(value, config)


def check_pair(src: ImageManager, dst: ImageManager) -> None:
    if Capability.CREATE not in type(dst).capabilities:
        reason = type(dst).unsupported_reason
        raise IncompatibleFormat(
            f"cloud {dst.cloud!r} ({dst.name}) cannot hold new images"
            + (f": {reason}" if reason else ""), backend=dst.name,
            hint="pick a destination that can create images")
    if Capability.EXPORT not in type(src).capabilities and not has_native(src, dst):
        raise IncompatibleFormat(
            f"cloud {src.cloud!r} ({src.name}) cannot hand out image data", backend=src.name,
            hint="images can only be copied out of clouds that can export them")


def _check_image(image: Image, dst: ImageManager, fmt: str | None) -> None:
    if fmt is None:
        return
    if kind(image) == "container" and fmt in VM_DISK_FORMATS:
        raise IncompatibleFormat(
            f"image {image.id} is a container rootfs; it cannot become a {fmt} virtual "
            "machine disk", backend=dst.name, hint="migrate it without a disk format")
    current = image.properties.get(PROP_DISK_FORMAT) or image.disk_format
    if current in PORTABLE_DISK_FORMATS and current != fmt:
        raise IncompatibleFormat(
            f"image {image.id} is {current}; converting it to {fmt} is not supported",
            backend=dst.name, hint="convert it with qemu-img first, or keep its format")


def plan_one(src: ImageManager, image: Image, dst: ImageManager, *, name: str | None,
             stream: bool, fmt: str | None, index: Index | None) -> Plan:
    _check_image(image, dst, fmt)
    existing = (index or Index(dst)).find(image)
    route = None if stream or fmt else native_route(src, image, dst, name)
    path = "none" if existing is not None else (route[0] if route else "stream")
    return Plan(source=image, destination=dst.cloud, name=name or default_name(image),
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
    src_m, dst_m = manager(src, config), manager(dst, config)
    check_pair(src_m, dst_m)
    image = src_m.resolve(ref)
    return plan_one(src_m, image, dst_m, name=name, stream=stream, fmt=format, index=None)


def check_transfer_options(*, name: Any = None, verify: Any = True, progress: Any = None,
                           dry_run: Any = False, stream: Any = False, format: Any = None,
                           retries: Any = 3) -> None:
    """migrate/sync options of the wrong type are InvalidArgument (TypeError/ValueError):
    retries='3' or progress=5 used to fail midway, after the transfer had begun."""
    if name is not None:
        _check_text("image name", name)
    if format is not None:
        _check_text("format", format)
    for what, flag in (("verify", verify), ("dry_run", dry_run), ("stream", stream)):
        if not isinstance(flag, bool):
            raise InvalidArgumentType(f"{what} must be True or False, got {flag!r}")
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise InvalidArgumentType(f"retries must be a whole number, got {retries!r}")
    if retries < 0:
        raise InvalidArgument(f"retries must not be negative, got {retries}")
    if progress is not None and not callable(progress):
        raise InvalidArgumentType(f"progress must be callable, got {type(progress).__name__}")


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
    check_transfer_options(name=name, verify=verify, progress=progress, dry_run=dry_run,
                           stream=stream, format=format, retries=retries)
    chosen = plan(src, ref, dst, name=name, stream=stream, format=format, config=config)
    if dry_run:
        return chosen
    done = chosen.execute(verify=verify, progress=progress, retries=retries)
    assert done.image is not None
    return done.image
