"""What a disk image's first bytes say it is: qcow2, vmdk, vhdx, vhd, vdi, iso, else raw.

``create`` labels an upload by its bytes when no disk format is given, and refuses a
label the bytes contradict before anything is sent: a qcow2 stored as ``raw`` boots
garbage, and a destination that inspects uploads (Glance) fails only after the whole
transfer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from .errors import InvalidArgument, InvalidImageData, with_cli_hint
from .streams import DataSource, read_failed

__all__ = ["DISK_FORMATS", "HEAD_SIZE", "KNOWN_DISK_FORMATS", "check_label", "known_label",
           "label_by_bytes", "sniff_disk", "split_head", "split_label"]

#: Formats a first-bytes look can tell apart, plus ``raw`` for anything else.
DISK_FORMATS = ("qcow2", "vmdk", "vhdx", "vhd", "vdi", "iso", "raw")
#: Every disk format imagehub knows: those, and the ones most clouds take besides (Glance's
#: default list). Any other label is a backend's own word, which it must declare.
KNOWN_DISK_FORMATS = frozenset({*DISK_FORMATS, "ploop", "ami", "ari", "aki"})

# ISO 9660 puts its volume descriptor at 32 KiB + 1: the head must reach past it.
HEAD_SIZE = 64 * 1024

_VDI_MAGIC = b"\x7f\x10\xda\xbe"  # 0xbeda107f little-endian, at offset 0x40


def sniff_disk(head: bytes) -> str:
    """The disk format ``head`` (the first ``HEAD_SIZE`` bytes or fewer) starts like."""
    if head.startswith(b"QFI\xfb"):
        return "qcow2"
    if head.startswith(b"KDMV") or head.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if head.startswith(b"vhdxfile"):
        return "vhdx"
    if head.startswith(b"conectix"):
        # A dynamic VHD copies its footer to the front; a fixed one has it only at the
        # end, and reads as raw here (which is what its data is).
        return "vhd"
    if head[0x40:0x44] == _VDI_MAGIC:
        return "vdi"
    if head[0x8001:0x8006] == b"CD001":
        return "iso"
    return "raw"


# Labels a look at the head can disprove: each of these formats always starts with its
# magic. ``vhd`` is not one (a fixed VHD's only footer is at the end).
_PROVABLE = frozenset({"qcow2", "vmdk", "vhdx", "vdi", "iso"})


def check_label(label: str | None, head: bytes, *, backend: str | None = None) -> str:
    """The disk format to record: ``label`` if the bytes agree, the sniffed one if there
    is no label; InvalidImageData if they disagree."""
    found = sniff_disk(head)
    if label is None:
        return found
    wanted = label.lower()
    contradicts = (wanted in _PROVABLE and found != wanted) or (
        wanted == "raw" and found != "raw") or (
        wanted == "vhd" and found not in ("vhd", "raw"))
    if contradicts:
        raise with_cli_hint(InvalidImageData(
            f"the image is labelled {label}, but its bytes are {found}", backend=backend,
            hint=f"pass disk_format={found!r}, or leave it out to label the image by its "
                 "bytes"),
            f"pass --disk-format {found}, or leave it out to label the image by its bytes")
    return label


def known_label(label: str, own: frozenset[str] | None, *, backend: str | None = None
                ) -> str:
    """``label`` as recorded: a known disk format (any case) in its own spelling, a word
    the backend declares (``own``; None: any, its provider checks them); else
    InvalidArgument listing what is known, before a byte is read."""
    wanted = label.lower()
    if wanted in KNOWN_DISK_FORMATS:
        return wanted
    if own is None or label in own:
        return label
    words = sorted(KNOWN_DISK_FORMATS | own)
    raise with_cli_hint(InvalidArgument(
        f"unknown disk format {label!r}; imagehub knows {', '.join(words)}", backend=backend,
        hint="leave disk_format out to label the image by its bytes"),
        "leave --disk-format out to label the image by its bytes")


def split_label(label: str | None, own: str | None, *, backend: str | None = None
                ) -> str | None:
    """The disk format to record for a split image (metadata + rootfs): none, or the
    backend's own word for its layout (``own``). Its parts are not a disk: any other
    label would say they were (a migrate would then "convert" them), so it is refused."""
    if label is None or (own is not None and label == own):
        return label
    itself = f"; {backend} labels split images {own!r} itself" if own else ""
    raise with_cli_hint(InvalidArgument(
        f"a split image (metadata + rootfs) takes no disk format: its parts are not a "
        f"disk, so it cannot be labelled {label!r}", backend=backend,
        hint="leave disk_format out" + itself), "leave --disk-format out" + itself)


def split_head(chunks: Iterator[bytes], size: int = HEAD_SIZE) -> tuple[bytes, list[bytes]]:
    """Read chunks until ``size`` bytes are seen (or the end): the head, and the chunks
    read, to be sent again in front of the rest."""
    taken: list[bytes] = []
    seen = 0
    while seen < size:
        chunk = next(chunks, None)
        if chunk is None:
            break
        taken.append(chunk)
        seen += len(chunk)
    return b"".join(taken)[:size], taken


def label_by_bytes(part: DataSource, label: str | None, backend: str | None
                   ) -> tuple[str, DataSource]:
    """The disk format to record for a one-file upload (see ``check_label``), and the
    source to send: a stream's first chunks, read for the look, go out in front again."""
    if part.path is not None:
        try:
            with part.path.open("rb") as fh:
                head = fh.read(HEAD_SIZE)
        except OSError as exc:
            raise read_failed(repr(str(part.path)), 0, exc) from exc
        return check_label(label, head, backend=backend), part
    # A stream can be read once: what the look took is sent again in front of the rest.
    chunks = part.chunks()
    head, taken = split_head(chunks)
    try:
        fmt = check_label(label, head, backend=backend)
    except InvalidImageData:
        closer = getattr(chunks, "close", None)
        if callable(closer):
            closer()
        raise
    fresh = [True]

    def reopen() -> Iterator[bytes]:
        if fresh[0]:
            fresh[0] = False
            return itertools.chain(taken, chunks)
        return part.chunks()  # bytes re-read; a one-shot stream says it cannot

    return fmt, DataSource(name=part.name, size=part.size, _open=reopen)
