"""The stream path: the source's export fed to the destination's create as it is read.

The reader and the writer run at once (``streams.overlap``), so a migration costs about
its slower side and memory stays flat whatever the size. Every promise is checked inside
the body the destination reads, so a bad image fails the upload and is never committed.

``copy_stream`` is a sequence of named steps: open the source (resumable where the
source can read a range), take the leading part (LXD metadata: the source's own, one
carried in properties, or one written for a foreign VM disk), peek at the last part,
build the verifying body, send it (split, or packed for a one-file store), check what
the destination reports, record the identity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import tempfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from ..errors import ChecksumMismatch, IncompatibleFormat, TransferError
from ..manager import ImageManager
from ..models import Image
from ..streams import Hasher, ImageStream, StreamPart, hashing, overlap, parse_checksum
from ._destination import Sized, record
from ._formats import formats, sniff
from ._identity import is_packed, label, norm, recorded_identity
from ._options import Options
from ._packing import MAX_PACKED, pack, unpack
from ._progress import Meter
from ._properties import PROP_SHA256, PROP_SOURCE, PROP_TRANSFER, carried
from ._resume import make_resumable
from ._vmmeta import metadata_tarball

if TYPE_CHECKING:
    from ._plan import Plan

# Leading parts bigger than this wait on disk, not in memory, until the upload.
_SPOOL_MEMORY = 8 * 1024 * 1024
# Queue depth between the reader and the writer: 4 x 1 MiB chunks.
QUEUE_DEPTH = 4


@dataclasses.dataclass
class _Lead:
    """The leading part of a split image (LXD metadata), held before the upload."""

    name: str
    file: IO[bytes]
    size: int
    #: not part of the source stream (carried in properties, or written by migrate), so
    #: the copy's content hash must add it itself
    outside: bool


@dataclasses.dataclass
class _Run:
    """What the steps share for one transfer."""

    p: Plan
    options: Options
    stream: ImageStream
    parts: Iterator[tuple[StreamPart, Iterator[bytes]]]
    meter: Meter
    lead: _Lead | None = None
    content_hasher: Hasher | None = None
    blob_hasher: Hasher = dataclasses.field(default_factory=lambda: Hasher([]))
    started: bool = False

    @property
    def src(self) -> ImageManager:
        assert self.p.src is not None
        return self.p.src

    @property
    def dst(self) -> ImageManager:
        assert self.p.dst is not None
        return self.p.dst

    def content(self, image: Image | None = None) -> str:
        """sha256 of everything the destination received (its identity)."""
        if self.content_hasher is not None:
            return self.content_hasher.checksum("sha256")
        reported = norm(image.checksum) if image is not None and self.p.wrap else None
        if reported and reported.startswith("sha256:"):
            return reported  # see _hashers: the destination hashed the whole itself
        if self.stream.sha256 is None:
            raise TransferError("the source stream ended before it was fully read",
                                backend=self.stream.backend)
        return self.stream.sha256


def _close_quietly(stream: ImageStream) -> None:
    # A reader thread stuck on a dead socket may still hold a part's generator; closing
    # the response is what unblocks it, and a close error must not hide the real one.
    with contextlib.suppress(Exception):
        stream.close()


def copy_stream(p: Plan, options: Options, token: str, made: list[Image]
                ) -> tuple[Image, int, str, tuple[str, ...]]:
    """Export → a bounded queue → create, verified before the last byte is sent; returns
    the image, the bytes moved, the content checksum and the checks made."""
    with contextlib.ExitStack() as stack:
        run = _open(p, options, stack)
        run.lead = _leading_part(run, stack)
        last, blob, sniffed = _last_part(run)
        _hashers(run)
        image, packed = _send(run, token, last, blob, sniffed)
        made.append(image)
        content = run.content(image)
        checks = _source_checks(run) + _destination_checks(run, image, content, packed)
        # Record the content identity (and finish: the token marks no half-made image now).
        image = record(run.dst, image, recorded_identity(p.source, content))
        made.clear()
        return image, run.meter.done, content, tuple(checks)
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


def _open(p: Plan, options: Options, stack: contextlib.ExitStack) -> _Run:
    """Export the source; a one-file export of a ranged source survives cuts."""
    assert p.src is not None
    stream = p.src.export(p.source)
    stack.callback(_close_quietly, stream)
    if len(stream.parts) > 2:
        raise IncompatibleFormat(
            f"image {p.source.id} has {len(stream.parts)} parts; imagehub moves images of "
            "one or two parts", backend=p.src.name)
    make_resumable(p.src, p.source, stream, options.retries)
    meter = Meter(label(p.source), None, options)
    # The stream's own sha256 is the copy's identity, unless a leading part travels
    # outside it (then the content hasher is); as a check it is needed only against a
    # promised content checksum. Hashing is the CPU cost of a transfer: skip it if unused.
    outside = is_packed(p.source) or p.wrap
    sha256 = not outside or bool(p.wrap and p.checksum and options.verify)
    return _Run(p=p, options=options, stream=stream, parts=stream.iter_parts(sha256=sha256),
                meter=meter)


def _leading_part(run: _Run, stack: contextlib.ExitStack) -> _Lead | None:
    """The source's metadata part, or one carried in its properties, or one written for
    a foreign VM disk; small, and held before anything is sent."""
    p, stream = run.p, run.stream
    lead: _Lead | None = None
    if is_packed(p.source):
        name, data = unpack(p.source)[0]
        lead = _Lead(name, io.BytesIO(data), len(data), outside=True)
    elif p.wrap:
        data = metadata_tarball(p.source, run.dst.cloud)
        lead = _Lead("metadata", io.BytesIO(data), len(data), outside=True)
    outside = lead.size if lead is not None else 0
    run.meter.total = (stream.size or p.bytes or 0) + outside or None
    if lead is not None:
        run.meter(lead.size)
        return lead
    if len(stream.parts) < 2:
        return None
    part, chunks = next(run.parts)
    spool = stack.enter_context(tempfile.SpooledTemporaryFile(_SPOOL_MEMORY))
    size = 0
    for chunk in chunks:
        spool.write(chunk)
        size += len(chunk)
        run.meter(len(chunk))
    return _Lead(part.name, spool, size, outside=False)


def _last_part(run: _Run) -> tuple[StreamPart, Iterator[bytes], str | None]:
    """The last part and its chunks, with its first bytes looked at for its format."""
    last, blob = next(run.parts)
    first = next(blob, b"")
    return last, (itertools.chain([first], blob) if first else blob), sniff(first)


def _hashers(run: _Run) -> None:
    # What the destination will report is hashed as the bytes go, so it can be compared
    # without a second read; a lead outside the stream joins the content's sha256.
    run.blob_hasher = Hasher(sorted(type(run.dst).checksum_algorithms - {"sha256"}))
    if run.p.wrap and "sha256" in type(run.dst).checksum_algorithms:
        # The written metadata plus the disk: a destination that hashes what it stores
        # (LXD's fingerprint, which its backend checks against the bytes it sent) already
        # gives this sha256; a second pass here would only cost CPU.
        return
    if run.lead is not None and run.lead.outside:
        run.content_hasher = Hasher(["sha256"])
        run.lead.file.seek(0)
        run.content_hasher.update(run.lead.file.read())
        run.lead.file.seek(0)


def _body(run: _Run, blob: Iterator[bytes]) -> Iterator[bytes]:
    """What the destination reads. Every check runs before its last read returns, so a
    bad image fails inside create and never becomes visible."""
    run.started = True

    def read_ahead() -> Iterator[bytes]:
        # Runs in the reader thread: the source's verification, our hashes, progress.
        chunks = hashing(blob, run.blob_hasher, run.meter)
        if run.content_hasher is not None:
            chunks = hashing(chunks, run.content_hasher)
        yield from chunks

    with overlap(read_ahead(), QUEUE_DEPTH) as queued:
        yield from queued
    for _ in run.parts:  # the source's own promises: ChecksumMismatch if broken
        pass
    p = run.p
    if run.options.verify and p.checksum:
        # A written VM metadata part is not the source's: the source is the disk alone.
        got = run.stream.sha256 if p.wrap else run.content()
        if got != p.checksum:
            raise ChecksumMismatch(f"image {label(p.source)}", p.checksum, str(got),
                                   backend=run.src.name)


def _blob_size(run: _Run, last: StreamPart) -> int | None:
    if last.size is not None:
        return last.size
    if run.stream.size is None:
        return None
    if run.lead is None or run.lead.outside:
        return run.stream.size
    # A split export's size is its parts' total (LXD reports it so).
    rest = run.stream.size - run.lead.size
    return rest if rest >= 0 else None


def _send(run: _Run, token: str, last: StreamPart, blob: Iterator[bytes],
          sniffed: str | None) -> tuple[Image, bool]:
    """Create the image: one file, two parts, or (a one-file store) the lead packed into
    properties. Which one is known from what the destination declares, before a byte."""
    p, source, lead = run.p, run.p.source, run.lead
    props = carried(source, run.src, run.dst)
    props[PROP_TRANSFER] = token
    props[PROP_SOURCE] = label(source)
    if run.options.verify and p.checksum and not p.wrap:
        # Safe to state up front: the content is checked against it before the
        # destination commits, so the property can never describe other bytes.
        props[PROP_SHA256] = p.checksum.split(":", 1)[1]
    body = Sized(_body(run, blob), _blob_size(run, last))
    if lead is None:
        return _create(run, body, props, sniffed, packed=False,
                       promise=p.checksum or norm(source.checksum)), False
    if type(run.dst).max_parts >= 2:
        lead.file.seek(0)
        return _create(run, body, props, sniffed, packed=False,
                       promise=None if p.wrap else p.checksum, metadata=lead.file), False
    if lead.size > MAX_PACKED:
        raise IncompatibleFormat(
            f"cloud {run.dst.cloud!r} keeps one file per image, and the {lead.name} part "
            f"of {source.id} ({lead.size} bytes) is too large to travel in its properties "
            f"(limit {MAX_PACKED})", backend=run.dst.name)
    lead.file.seek(0)
    lead_props = pack([(lead.name, lead.file.read())], last.name)
    # Only a packed source's own checksum describes the blob alone.
    promise = norm(source.checksum) if is_packed(source) else None
    return _create(run, body, {**props, **lead_props}, sniffed, packed=True,
                   promise=promise), True


def _create(run: _Run, body: Sized, properties: dict[str, str], sniffed: str | None, *,
            packed: bool, promise: str | None, metadata: IO[bytes] | None = None) -> Image:
    p, source = run.p, run.p.source
    disk, container, memo = formats(p, sniffed=sniffed, packed=packed,
                                    split=metadata is not None)
    if promise and parse_checksum(promise)[0] not in type(run.dst).checksum_algorithms:
        # body() already holds the bytes to the source's promise before the last one is
        # sent; a promise the destination would only re-hash on this side adds a hash
        # pass and no safety. One it hashes itself (LXD's fingerprint, Glance's sha512)
        # also covers the wire, so it goes along.
        promise = None
    return run.dst.create(
        body, metadata=metadata, name=p.name, description=source.description,
        architecture=source.architecture, properties={**properties, **memo},
        format=None if p.wrap else disk, container_format=None if p.wrap else container,
        checksum=promise if run.options.verify else None)


def _source_checks(run: _Run) -> list[str]:
    checks = ["source:" + a for a in sorted({parse_checksum(c)[0]
                                              for c in run.stream.expected})]
    if run.options.verify and run.p.checksum:
        checks.append("source:content-sha256")
    return checks


def _destination_checks(run: _Run, image: Image, content: str, packed: bool) -> list[str]:
    """What the destination reports must match what was sent."""
    reported = norm(image.checksum)
    if not reported:
        return []
    algo, digest = reported.split(":", 1)
    blob = run.blob_hasher
    if packed:
        ours = blob.hexdigest(algo) if algo in blob.algos else None
    elif algo == "sha256":
        ours = content.split(":", 1)[1]
    else:
        ours = blob.hexdigest(algo) if algo in blob.algos and run.lead is None else None
    if ours is None or not run.options.verify or (run.p.wrap and run.content_hasher is None):
        return []
    if ours != digest:
        raise ChecksumMismatch(f"image {image.id} as {run.dst.cloud!r} stored it",
                               f"{algo}:{ours}", reported, backend=run.dst.name)
    return [f"destination:{algo}"]
