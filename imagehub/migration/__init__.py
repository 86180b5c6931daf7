"""Moving images between clouds: ``migrate`` one, ``plan`` it first, ``sync`` many.

This module knows backends only through ``ImageManager``: it never imports one.

Paths
    ``native:<kind>``
        A server-side copy a backend declares (``native_copy``); no image byte
        passes through this process. Used by default when available.
    ``stream``
        ``export`` → a bounded queue (``streams.overlap``) → ``create``: the reader and
        the writer run at once, so a migration costs about its slower side, and memory
        stays flat whatever the size. A cut download from a source that can read a
        range resumes from its last byte (``_resume``).
    ``convert``
        ``--disk-format`` (or a VM disk LXD must hold as qcow2): the source is staged on
        disk, converted with qemu-img, and uploaded; the staging files go on every exit.

What a backend can do for these paths it declares on ``ImageManager`` (``native_copy``,
``ranged_export``, ``max_parts``, ``checksum_algorithms``, ``vm_disk_formats``,
``vm_needs_metadata``, ``split_disk_format``, ``own_disk_formats``,
``reserved_property_prefixes``); nothing is found out by trying.

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

from ._identity import content_checksum
from ._plan import Plan, migrate, plan
from ._progress import Progress
from ._properties import (
    PROP_SHA256,
    PROP_SOURCE,
    PROP_SOURCE_CHECKSUM,
    PROP_TRANSFER,
)
from ._sync import SyncSummary, sync
from ._transfer import Transfer

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

# Public objects name the module users import them from (in reprs, docs and pickles), as
# they did when this package was one module.
for _public in (Plan, Progress, SyncSummary, Transfer, content_checksum, migrate, plan, sync):
    _public.__module__ = __name__
del _public
