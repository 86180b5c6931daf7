"""Data sources that fail part-way, the way real ones do, for upload tests."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Iterator


class SourceBroke(Exception):
    """A source's own error, of a type no HTTP library knows."""


# What a real source may raise mid-way: its own error, a dead pipe or socket it reads
# from (which HTTP clients mistake for the server hanging up), a disk read error.
SOURCE_ERRORS: dict[str, Callable[[], Exception]] = {
    "own-error": lambda: SourceBroke("disk went away"),
    "broken-pipe": lambda: BrokenPipeError(errno.EPIPE, "the producer went away"),
    "connection-reset": lambda: ConnectionResetError(errno.ECONNRESET, "peer reset"),
    "read-error": lambda: OSError(errno.EIO, "Input/output error"),
}


def failing_after(pieces: int, error: Exception,
                  chunks: Iterable[bytes] | None = None) -> Iterator[bytes]:
    """Yield ``pieces`` chunks of ``chunks`` (64 KiB of x's by default), then raise."""
    source = iter(chunks) if chunks is not None else iter(lambda: b"x" * 65536, None)
    for _ in range(pieces):
        yield next(source)
    raise error


def failing_past(nbytes: int, error: Exception, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield ``chunks`` until at least ``nbytes`` have gone, then raise ``error``.

    Past the first bytes on purpose: create reads the head of a one-file image to label
    its format before it sends anything, and a failure there never reaches the server.
    """
    sent = 0
    for chunk in chunks:
        yield chunk
        sent += len(chunk)
        if sent >= nbytes:
            break
    raise error
