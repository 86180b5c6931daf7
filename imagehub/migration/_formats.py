"""Disk and container formats: what an image is, and what it may become elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..diskformat import KNOWN_DISK_FORMATS
from ..errors import IncompatibleFormat
from ..models import Image
from ._properties import PROP_CONTAINER_FORMAT, PROP_DISK_FORMAT, PROP_FORMAT_BACKEND

if TYPE_CHECKING:
    from ._plan import Plan

# Formats most clouds understand (Glance's lists); anything else is a backend's own word.
PORTABLE_DISK_FORMATS = KNOWN_DISK_FORMATS
PORTABLE_CONTAINER_FORMATS = frozenset(
    {"bare", "ovf", "ova", "ami", "ari", "aki", "docker", "compressed"})
# Disk formats only a virtual machine boots: a container rootfs is never one of them.
VM_DISK_FORMATS = frozenset({"qcow2", "vmdk", "vhd", "vhdx", "vdi", "iso", "ploop"})

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

# What a one-file container image (LXD unified tarball, squashfs) starts as: not a disk.
ARCHIVES = frozenset({"squashfs", "gzip", "xz", "zstd", "bzip2", "tar"})

# Formats whose files always start with their magic: a mismatch means a mislabelled image.
_SELF_DESCRIBING = frozenset({"qcow2", "vhdx"})


def sniff(head: bytes) -> str | None:
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None


def kind(image: Image) -> str | None:
    """``container`` or ``virtual-machine`` where the image says so, else None."""
    own = type(image.manager).image_kind(image) if image.bound else None
    for value in (image.properties.get(PROP_CONTAINER_FORMAT), image.container_format, own):
        if value in ("container", "virtual-machine"):
            return str(value)
    disk = image.properties.get(PROP_DISK_FORMAT) or image.disk_format
    if disk in VM_DISK_FORMATS:
        return "virtual-machine"
    if disk == "squashfs":
        return "container"
    return None


def _takes(p: Plan, disk: str | None) -> bool:
    """Whether the destination's create takes ``disk`` for a one-file image (a label
    stored before create checked them may not be one it knows)."""
    assert p.dst is not None
    own = type(p.dst).own_disk_formats
    return disk is None or disk.lower() in PORTABLE_DISK_FORMATS or own is None or disk in own


def formats(p: Plan, *, sniffed: str | None, packed: bool, split: bool = False) -> tuple[
        str | None, str | None, dict[str, str]]:
    """Disk and container format for the destination, and properties that remember the
    source's own words when they cannot travel as formats.

    A ``split`` copy (metadata + rootfs, as two parts) gets no disk format: its parts are
    not a disk (a qcow2 rootfs included), and the destination labels its own layout."""
    assert p.src is not None and p.dst is not None
    image = p.source
    recorded = PROP_DISK_FORMAT in image.properties or PROP_CONTAINER_FORMAT in image.properties
    disk = image.properties.get(PROP_DISK_FORMAT) if recorded else image.disk_format
    container = image.properties.get(PROP_CONTAINER_FORMAT) if recorded \
        else image.container_format
    origin = image.properties.get(PROP_FORMAT_BACKEND, p.src.name) if recorded else p.src.name
    if p.disk_format:
        return p.disk_format, container if container in PORTABLE_CONTAINER_FORMATS else None, {}
    if not packed and p.dst.name == origin and (split or _takes(p, disk)):
        # The backend's own vocabulary, back home (a split image's label: its own default).
        return None if split else disk, container, {}
    portable_sniff = sniffed if sniffed in PORTABLE_DISK_FORMATS else None
    out_disk: str | None
    out_container: str | None
    if packed:
        out_disk, out_container = portable_sniff or "raw", "bare"
    else:
        out_disk = None if split else (
            disk if disk in PORTABLE_DISK_FORMATS else portable_sniff)
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
