"""One image: ``plan`` how it would move, ``migrate`` it (plan, then carry the plan out).

Everything that can be known before a byte moves is decided here: the destination name,
whether the destination already holds the content, the path, and the format checks that
would otherwise fail halfway.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, overload

from ..compat import accepts_seed_keywords
from ..diskformat import DISK_FORMATS, HEAD_SIZE, sniff_disk
from ..errors import IncompatibleFormat, InvalidArgument, InvalidArgumentType, with_cli_hint
from ..manager import Capability, ImageManager, _check_text
from ..models import Image
from ..qemuimg import CONVERTIBLE
from ._formats import ARCHIVES, VM_DISK_FORMATS, kind, sniff
from ._identity import Index, content_checksum, default_name, is_packed, label
from ._native import has_native, native_route
from ._options import Options, ProgressCallback
from ._properties import PROP_DISK_FORMAT, PROP_SOURCE_DISK_FORMAT
from ._transfer import Path_, Transfer, carry_out
from ._vmmeta import vm_architecture


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
    #: the destination disk format asked for (None: keep the source's)
    disk_format: str | None = None
    #: (from, to) disk formats when the copy is converted with qemu-img
    convert: tuple[str, str] | None = None
    #: the copy becomes a split VM image whose metadata migrate writes (LXD)
    wrap: bool = False
    staging_dir: str | None = None
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
            "disk_format": self.disk_format,
            "convert": "->".join(self.convert) if self.convert else None,
            "vm_metadata": self.wrap,
        }

    def execute(self, *, verify: bool = True, progress: ProgressCallback | None = None,
                retries: int = 3, backoff: float = 1.0,
                cleanup_timeout: float = 60.0, staging_dir: str | None = None) -> Transfer:
        """Carry the plan out; raises on failure after cleaning up (see the module doc)."""
        options = Options(verify=verify, progress=progress, retries=retries,
                          backoff=backoff, cleanup_timeout=cleanup_timeout,
                          staging_dir=staging_dir or self.staging_dir)
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
    if kind(image) == "container" and fmt in VM_DISK_FORMATS | {"raw"}:
        raise IncompatibleFormat(
            f"image {image.id} is a container rootfs; it cannot become a {fmt} virtual "
            "machine disk", backend=dst.name, hint="migrate it without a disk format")


def _is_split(src: ImageManager, image: Image) -> bool:
    """Whether ``image`` is a split image (metadata + rootfs), known before a byte moves:
    its leading parts carried in properties, the source's own word for the layout, or
    (a store that holds split images) an export of more than one part."""
    cls = type(src)
    if is_packed(image) or (cls.split_disk_format is not None
                            and image.disk_format == cls.split_disk_format):
        return True
    if cls.max_parts < 2 or Capability.EXPORT not in cls.capabilities:
        return False
    with src.export(image) as stream:  # opened, not read: the parts are known
        return len(stream.parts) > 1


def _check_split(src: ImageManager, image: Image, dst: ImageManager, fmt: str | None
                 ) -> None:
    if fmt is not None and _is_split(src, image):
        raise with_cli_hint(IncompatibleFormat(
            f"image {image.id} is a split image (metadata + rootfs); its parts are not a "
            f"disk, so it cannot become a {fmt} disk", backend=dst.name,
            hint="migrate it without disk_format: it keeps its parts"),
            "migrate it without --disk-format: it keeps its parts")


def _peek(src: ImageManager, image: Image) -> bytes:
    """The source's first bytes, read before anything is sent anywhere."""
    with src.export(image) as stream:
        head = b""
        for chunk in stream.parts[-1].chunks:
            head += chunk
            if len(head) >= HEAD_SIZE:
                break
    return head[:HEAD_SIZE]


def _shape(src: ImageManager, image: Image, dst: ImageManager, fmt: str | None
           ) -> tuple[tuple[str, str] | None, bool]:
    """Whether the copy converts (from, to) and whether it becomes a split VM image whose
    metadata migrate writes; IncompatibleFormat for what cannot be done."""
    needs_meta = type(dst).vm_needs_metadata
    label_fmt = image.properties.get(PROP_DISK_FORMAT) or image.disk_format
    candidate = (label_fmt in DISK_FORMATS and kind(image) != "container"
                 and not is_packed(image) and Capability.EXPORT in type(src).capabilities)
    if not candidate and fmt is not None and fmt != label_fmt and kind(image) != "container":
        # Nothing to convert from (a format imagehub cannot read, or none recorded): the
        # copy would only be relabelled, its bytes unchanged.
        raise with_cli_hint(IncompatibleFormat(
            f"image {image.id} is "
            + (f"labelled {label_fmt}" if label_fmt else "of no recorded disk format")
            + f", which imagehub does not convert; a disk format of {fmt} would only "
            "relabel it", backend=dst.name, hint="migrate it without disk_format"),
            "migrate it without --disk-format")
    if not candidate or not (needs_meta or fmt):
        return None, False
    head = _peek(src, image)
    if sniff(head) in ARCHIVES:
        # An archive labelled raw (a container image kept as one file): not a disk.
        if fmt is not None:
            raise IncompatibleFormat(
                f"image {image.id} is a {sniff(head)} archive, not a disk; it cannot "
                f"become a {fmt} disk", backend=dst.name,
                hint="migrate it without a disk format")
        return None, False
    have = sniff_disk(head)
    allowed = type(dst).vm_disk_formats
    if needs_meta:
        vm_architecture(image, dst.cloud)  # refused here, before a byte, when unknown
        if fmt is not None and allowed is not None and fmt not in allowed:
            raise IncompatibleFormat(
                f"image {image.id} is a virtual-machine disk; {dst.cloud!r} ({dst.name}) "
                f"keeps VM disks as {', '.join(sorted(allowed))}, not {fmt}",
                backend=dst.name, hint="leave --disk-format out, or pick one of those "
                                       "(a VM disk never becomes a container rootfs)")
    want = fmt or (have if allowed is None or have in allowed else sorted(allowed)[0])
    if want == have:
        return None, needs_meta
    for end in (have, want):
        if end not in CONVERTIBLE:
            raise IncompatibleFormat(
                f"image {image.id} is {have}; imagehub converts between "
                f"{', '.join(sorted(CONVERTIBLE))} only, so it cannot become {want}",
                backend=dst.name, hint="pick another --disk-format, or convert it first")
    return (have, want), needs_meta


def plan_one(src: ImageManager, image: Image, dst: ImageManager, *, name: str | None,
             stream: bool, fmt: str | None, index: Index | None,
             staging_dir: str | None = None) -> Plan:
    _check_image(image, dst, fmt)
    _check_split(src, image, dst, fmt)
    copies = (index or Index(dst)).find_all(image)
    as_is = [c for c in copies if PROP_SOURCE_DISK_FORMAT not in c.properties]
    convert: tuple[str, str] | None = None
    wrap = False
    if fmt is None and as_is:
        existing: Image | None = as_is[0]
    else:
        # Knowing what this copy would become tells which held copy (if any) it is.
        convert, wrap = _shape(src, image, dst, fmt)
        existing = _same_copy(copies, as_is, convert[1] if convert else fmt)
    route = None if stream or fmt or wrap else native_route(src, dst)
    path = "none" if existing is not None else (
        "convert" if convert else route or "stream")
    # A copy already there keeps the name it has: the plan says so, rather than a name
    # that the run would not give it.
    planned = (existing.name or name or default_name(image)) if existing is not None \
        else name or default_name(image)
    return Plan(source=image, destination=dst.cloud, name=planned,
                action="present" if existing is not None else "copy", path=path,
                bytes=image.size, checksum=content_checksum(image), existing=existing,
                disk_format=convert[1] if convert else fmt, convert=convert, wrap=wrap,
                staging_dir=staging_dir, src=src, dst=dst)


def _same_copy(copies: list[Image], as_is: list[Image], target: str | None) -> Image | None:
    if target is None:
        return as_is[0] if as_is else None
    # A backend that does not label disk formats (LXD) holds one kind of VM disk.
    return next((c for c in copies if c.disk_format in (None, target)), None)


def _staging_dir(config: Any) -> str | None:
    value = getattr(config, "staging_dir", None)
    return str(value) if value else None


@accepts_seed_keywords("disk_format")
def plan(src: ImageManager | str, ref: Image | str, dst: ImageManager | str, *,
         name: str | None = None, stream: bool = False, disk_format: str | None = None,
         config: Any = None) -> Plan:
    """Decide how ``ref`` would move from ``src`` to ``dst``, moving nothing.

    Raises IncompatibleFormat for a move that cannot work (a destination that cannot
    create images, a container rootfs asked to become a VM disk).
    """
    src_m, dst_m = manager(src, config), manager(dst, config)
    check_pair(src_m, dst_m)
    image = src_m.resolve(ref)
    return plan_one(src_m, image, dst_m, name=name, stream=stream,
                    fmt=disk_format, index=None, staging_dir=_staging_dir(config))


def check_transfer_options(*, name: Any = None, verify: Any = True, progress: Any = None,
                           dry_run: Any = False, stream: Any = False, disk_format: Any = None,
                           retries: Any = 3) -> None:
    """migrate/sync options of the wrong type are InvalidArgument (TypeError/ValueError):
    retries='3' or progress=5 used to fail midway, after the transfer had begun."""
    if name is not None:
        _check_text("image name", name)
    if disk_format is not None:
        _check_text("disk_format", disk_format)
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
            dry_run: Literal[False] = ..., stream: bool = ..., disk_format: str | None = ...,
            retries: int = ..., config: Any = ...,
            staging_dir: str | None = ...) -> Image: ...


@overload
def migrate(src: ImageManager | str, ref: Image | str, dst: ImageManager | str, *,
            name: str | None = ..., verify: bool = ..., progress: ProgressCallback | None = ...,
            dry_run: Literal[True], stream: bool = ..., disk_format: str | None = ...,
            retries: int = ..., config: Any = ...,
            staging_dir: str | None = ...) -> Plan: ...


@accepts_seed_keywords("disk_format")
def migrate(src: ImageManager | str, ref: Image | str, dst: ImageManager | str, *,
            name: str | None = None, verify: bool = True,
            progress: ProgressCallback | None = None, dry_run: bool = False,
            stream: bool = False, disk_format: str | None = None, retries: int = 3,
            config: Any = None,
            staging_dir: str | None = None) -> Image | Plan:
    """Copy image ``ref`` from ``src`` to ``dst`` and return the new (or already present)
    destination image. ``src``/``dst`` are managers or cloud names.

    ``stream`` forces the client-side path even where a native one exists; ``dry_run``
    returns the Plan instead, moving nothing; ``disk_format`` asks for a destination disk
    format: raw, qcow2, vmdk, vhdx and vdi are converted with qemu-img, staged in
    ``staging_dir`` (the config's, else TMPDIR); an impossible one raises
    IncompatibleFormat before any byte moves. A VM disk going to
    LXD becomes a split virtual-machine image with a qcow2 root disk.
    """
    check_transfer_options(name=name, verify=verify, progress=progress, dry_run=dry_run,
                           stream=stream, disk_format=disk_format, retries=retries)
    chosen = plan(src, ref, dst, name=name, stream=stream, disk_format=disk_format,
                  config=config)
    if dry_run:
        return chosen
    done = chosen.execute(verify=verify, progress=progress, retries=retries,
                          staging_dir=staging_dir)
    assert done.image is not None
    return done.image
