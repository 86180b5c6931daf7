"""Moving image bytes: a sized streaming upload body and a verified streamed download."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

import requests
import urllib3.exceptions

from imagehub.errors import TransferError
from imagehub.source_errors import guard_source
from imagehub.streams import cut_short, read_chunks

from .errors import BACKEND

# uWSGI, which serves Glance in current deployments, refuses an HTTP chunk that does
# not fit its chunked-input buffer (--chunked-input-limit, 1 MB by default, and the
# chunk-size line counts too) with 500 "unable to receive chunked part". 256 KiB
# stays well inside it and is still large enough for per-chunk costs to vanish.
HTTP_CHUNK_MAX = 256 * 1024


class UploadBody:
    """The request body of ``PUT /file``: chunks passed straight to the socket.

    With ``__len__`` requests sends ``Content-Length`` (Glance then knows the size up
    front) instead of chunked encoding; urllib3 writes each 1 MiB chunk with one
    ``sendall``. Without a size (``len`` 0) requests falls back to chunked transfer
    encoding and each yielded piece becomes one HTTP chunk, so source chunks are cut
    to ``HTTP_CHUNK_MAX`` (one source chunk in memory at a time, as before).
    A source that yields more or fewer bytes than promised raises TransferError, so
    the server sees a cut connection rather than a short image. Whatever fails here
    leaves as ``SourceFailed`` (see :mod:`imagehub.source_errors`), so the connection is
    dropped at once whatever the error's type; send inside ``source_errors()`` to get the
    source's own exception back.
    """

    def __init__(self, chunks: Iterable[bytes], size: int | None, what: str) -> None:
        self._chunks = chunks
        self.size = size
        self.sent = 0
        self.what = what

    def __len__(self) -> int:
        return self.size or 0

    def __bool__(self) -> bool:
        return True  # an empty sized body is still a body

    def __iter__(self) -> Iterator[bytes]:
        return guard_source(self._pieces())

    def _pieces(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.sent += len(chunk)
            if self.size is not None and self.sent > self.size:
                raise TransferError(f"{self.what}: the source grew past its size "
                                    f"({self.size} bytes) during the upload", backend=BACKEND)
            if self.size or len(chunk) <= HTTP_CHUNK_MAX:
                yield chunk
            else:
                for start in range(0, len(chunk), HTTP_CHUNK_MAX):
                    yield chunk[start:start + HTTP_CHUNK_MAX]
        if self.size is not None and self.sent != self.size:
            raise cut_short(self.what, self.sent, self.size, backend=BACKEND)


def response_chunks(resp: requests.Response, what: str) -> Iterator[bytes]:
    """The body of a streamed response in ~1 MiB chunks; a cut stream is a TransferError."""
    moved = 0
    try:
        for chunk in read_chunks(functools.partial(resp.raw.read, decode_content=False)):
            moved += len(chunk)
            yield chunk
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        total = resp.headers.get("Content-Length")
        of = f" of {total}" if total and total.isdigit() else ""
        raise TransferError(f"{what}: the connection was lost after {moved}{of} bytes had "
                            f"arrived: {exc}", backend=BACKEND) from exc
    finally:
        resp.close()
