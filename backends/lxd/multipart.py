"""Streaming ``multipart/form-data`` both ways, for LXD split images.

LXD takes a split image as a two-part form (``metadata`` then ``rootfs`` or, for a
virtual machine, ``rootfs.img``) and exports one the same way. pylxd's encoder needs
file objects and its export hands the raw multipart body back; these work on chunk
iterators instead, so neither direction holds an image in memory.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from imagehub.errors import TransferError

CRLF = b"\r\n"


def boundary() -> str:
    return "imagehub-" + secrets.token_hex(16)


def encode(parts: Iterable[tuple[str, str, Iterable[bytes]]], mark: str) -> Iterator[bytes]:
    """Yield the form for ``(field name, file name, chunks)`` parts, chunks passed through."""
    for index, (name, filename, chunks) in enumerate(parts):
        head = (
            (CRLF if index else b"")
            + f"--{mark}\r\n".encode()
            + f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
            + b"Content-Type: application/octet-stream\r\n\r\n"
        )
        yield head
        yield from chunks
    yield f"\r\n--{mark}--\r\n".encode()


_DISPOSITION = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class PartHeaders:
    name: str
    filename: str | None
    headers: dict[str, str] = field(default_factory=dict)


class MultipartReader:
    """Parse a multipart body from a chunk iterator, one part at a time.

    ``next_part()`` reads the next part's headers; ``body()`` then yields that part's bytes.
    Memory stays bounded by about two chunks whatever the part sizes.
    """

    def __init__(self, chunks: Iterable[bytes], mark: str) -> None:
        self._chunks = iter(chunks)
        self._delimiter = b"\r\n--" + mark.encode()
        self._buf = bytearray()
        self._finished = False
        self._in_body = False
        # The body is preceded by "--mark"; pretending a CRLF came before it lets one
        # delimiter pattern find every boundary, the first included.
        self._buf += CRLF
        self._at_start = True

    def _fill(self) -> bool:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            return False
        self._buf += chunk
        return True

    def _need(self, n: int) -> None:
        while len(self._buf) < n:
            if not self._fill():
                raise TransferError("the LXD export ended in the middle of a multipart header",
                                    backend="lxd")

    def next_part(self) -> PartHeaders | None:
        """Headers of the next part, or None after the closing boundary."""
        if self._finished:
            return None
        if self._in_body:
            for _ in self.body():  # the caller skipped a part: drain it
                pass
        if self._at_start:
            self._skip_to_delimiter()
            self._at_start = False
        # After a delimiter: "--" closes the body, CRLF starts a part.
        self._need(2)
        if bytes(self._buf[:2]) == b"--":
            self._finished = True
            return None
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > 64 * 1024 or not self._fill():
                raise TransferError("malformed multipart headers in the LXD export",
                                    backend="lxd")
        raw = bytes(self._buf[2:end]).decode("utf-8", "replace")
        del self._buf[: end + 4]
        headers: dict[str, str] = {}
        for line in raw.split("\r\n"):
            if ":" in line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        params = dict(_DISPOSITION.findall(headers.get("content-disposition", "")))
        self._in_body = True
        return PartHeaders(params.get("name", ""), params.get("filename"), headers)

    def _skip_to_delimiter(self) -> None:
        while True:
            idx = self._buf.find(self._delimiter)
            if idx >= 0:
                del self._buf[: idx + len(self._delimiter)]
                return
            keep = len(self._delimiter)
            if len(self._buf) > keep:
                del self._buf[: len(self._buf) - keep]
            if not self._fill():
                raise TransferError("the LXD export holds no multipart boundary",
                                    backend="lxd")

    def body(self) -> Iterator[bytes]:
        """The current part's bytes; ends at its closing delimiter."""
        if not self._in_body:
            return
        keep = len(self._delimiter) - 1
        while True:
            idx = self._buf.find(self._delimiter)
            if idx >= 0:
                if idx:
                    yield bytes(self._buf[:idx])
                del self._buf[: idx + len(self._delimiter)]
                self._in_body = False
                return
            # Hold back a possible partial delimiter at the end of the buffer.
            if len(self._buf) > keep:
                out = bytes(self._buf[: len(self._buf) - keep])
                del self._buf[: len(self._buf) - keep]
                yield out
            if not self._fill():
                raise TransferError("the LXD export ended before the multipart part did",
                                    backend="lxd")
