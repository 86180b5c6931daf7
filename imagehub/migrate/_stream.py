"""The stream path: the source's export fed to the destination's create as it is read.

The reader and the writer run at once (``streams.overlap``), so a migration costs about
its slower side and memory stays flat whatever the size. Every promise is checked inside
the body the destination reads, so a bad image fails the upload and is never committed.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import tempfile
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING

from ..errors import (
    ChecksumMismatch,
    ImageHubError,
    IncompatibleFormat,
    InvalidImageData,
    TransferError,
)
from ..manager import Capability, ImageManager
from ..models import Image
from ..streams import Hasher, ImageStream, hashing, overlap, parse_checksum
from ._formats import formats, sniff
from ._identity import is_packed, label, norm, recorded_identity
from ._options import Options
from ._packing import MAX_PACKED, pack, unpack
from ._progress import Meter
from ._properties import PROP_SHA256, PROP_SOURCE, PROP_TRANSFER, carried

if TYPE_CHECKING:
    from ._plan import Plan

# Leading parts bigger than this wait on disk, not in memory, until the upload.
_SPOOL_MEMORY = 8 * 1024 * 1024
# Queue depth between the reader and the writer: 4 x 1 MiB chunks.
QUEUE_DEPTH = 4

# The algorithm each kind of destination reported on its last upload, so later transfers
# hash that one without asking.
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
            own = norm(image.checksum)
            if own:
                guess.add(own.split(":", 1)[0])
    # An empty destination tells nothing: sha512 is the usual other answer (Glance).
    return guess or {"sha512"}


def _close_quietly(stream: ImageStream) -> None:
    # A reader thread stuck on a dead socket may still hold a part's generator; closing
    # the response is what unblocks it, and a close error must not hide the real one.
    with contextlib.suppress(Exception):
        stream.close()


def copy_stream(p: Plan, options: Options, token: str, made: list[Image]
                ) -> tuple[Image, int, str, tuple[str, ...]]:
    """Export → a bounded queue → create, verified before the last byte is sent; returns
    the image, the bytes moved, the content checksum and the checks made."""
    assert p.src is not None and p.dst is not None
    src, dst, source = p.src, p.dst, p.source
    source_label = label(source)
    with contextlib.ExitStack() as stack:
        stream = src.export(source)
        stack.callback(_close_quietly, stream)
        if len(stream.parts) > 2:
            raise IncompatibleFormat(
                f"image {source.id} has {len(stream.parts)} parts; imagehub moves images of "
                "one or two parts", backend=src.name)
        carried_lead = unpack(source) if is_packed(source) else []
        lead_size = sum(len(d) for _, d in carried_lead)
        meter = Meter(source_label, (stream.size or p.bytes or 0) + lead_size or None, options)
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
        sniffed = sniff(first)
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
                raise ChecksumMismatch(f"image {source_label}", p.checksum, content,
                                       backend=src.name)

        props = carried(source, dst)
        props[PROP_TRANSFER] = token
        props[PROP_SOURCE] = source_label
        if options.verify and p.checksum:
            # Safe to state up front: the content is checked against it before the
            # destination commits, so the property can never describe other bytes.
            props[PROP_SHA256] = p.checksum.split(":", 1)[1]

        def send(properties: dict[str, str], *, packed: bool, promise: str | None,
                 metadata: IO[bytes] | None = None) -> Image:
            disk, container, memo = formats(p, sniffed=sniffed, packed=packed)
            if promise and parse_checksum(promise)[0] not in reported_algos:
                # body() already holds the bytes to the source's promise before the last
                # one is sent; a promise the destination would only re-hash on this side
                # adds a hash pass and no safety. One it hashes itself (LXD's fingerprint,
                # Glance's sha512) also covers the wire, so it goes along.
                promise = None
            return dst.create(
                _Sized(body(), blob_size), metadata=metadata, name=p.name,
                description=source.description, architecture=source.architecture,
                properties={**properties, **memo}, disk_format=disk, container_format=container,
                checksum=promise if options.verify else None)

        packed = False
        image: Image | None = None
        if lead is None:
            image = send(props, packed=False, promise=p.checksum or norm(source.checksum))
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
                lead_props = pack([(lead_name, lead_file.read())], last.name)
                # Only a packed source's own checksum describes the blob alone.
                image = send({**props, **lead_props}, packed=True,
                             promise=norm(source.checksum) if carried_lead else None)
        assert image is not None
        made.append(image)

        content = _content(stream, content_hasher)
        checks = ["source:" + a for a in sorted({parse_checksum(c)[0]
                                                  for c in stream.expected})]
        if options.verify and p.checksum:
            checks.append("source:content-sha256")
        # What the destination reports must match what was sent.
        reported = norm(image.checksum)
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
        image = _record(dst, image, recorded_identity(source, content))
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


