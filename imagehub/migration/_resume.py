"""Resuming a cut download from its last byte instead of from zero.

A source that declares ``ranged_export`` (Glance's HTTP Range, a local file's seek) can
continue an export where it broke. The continuation is spliced into the running
stream's one part, so the stream's own hashers see one unbroken sequence of bytes:
the hash state carries over, and the source's promises are still checked at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from ..errors import ChecksumMismatch, ServerUnreachable, TransferError
from ..manager import ImageManager
from ..models import Image
from ..streams import ImageStream

log = logging.getLogger("imagehub.migration")


def make_resumable(src: ImageManager, image: Image, stream: ImageStream, resumes: int
                   ) -> None:
    """Let ``stream`` (fresh, unread) survive up to ``resumes`` cuts of its download."""
    if not type(src).ranged_export or len(stream.parts) != 1 or resumes <= 0:
        return
    part = stream.parts[0]
    part.chunks = _resuming(src, image, part.chunks, part.size, resumes)


def _resuming(src: ImageManager, image: Image, chunks: Iterator[bytes], size: int | None,
              resumes: int) -> Iterator[bytes]:
    got = 0
    left = resumes
    current: Iterator[bytes] = chunks
    rest: ImageStream | None = None
    try:
        while True:
            try:
                for chunk in current:
                    got += len(chunk)
                    yield chunk
                if size is None or got >= size:
                    return
                cause: Exception = TransferError(
                    f"download of {image.id} ended at byte {got} of {size}",
                    backend=src.name)
            except ChecksumMismatch:
                raise  # bad bytes: a continuation would not make them good
            except (TransferError, ServerUnreachable) as exc:
                cause = exc
            if rest is not None:
                rest.close()
                rest = None
            while rest is None:
                if left <= 0 or size is None:
                    raise cause
                left -= 1
                log.warning("download of %s cut at byte %d (%s); resuming from there",
                            image.id, got, cause)
                try:
                    rest = src.export(image, offset=got)
                except (TransferError, ServerUnreachable) as exc:
                    cause = exc  # the server may still be coming back: try again
            current = iter(rest.parts[0].chunks)
    finally:
        if rest is not None:
            rest.close()
