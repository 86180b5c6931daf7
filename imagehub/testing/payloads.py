"""What the kit uploads and how it compares what comes back: payloads, share targets and
byte-for-byte export checks."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from imagehub.manager import ImageManager
from imagehub.models import Image
from imagehub.streams import Source

__all__ = ["ImagePayload", "ShareTarget", "assert_same_bytes", "check_recorded_content",
           "read_export"]


@dataclasses.dataclass
class ImagePayload:
    """Bytes a backend accepts for ``create``. ``parts`` are written in order; two parts
    mean a split image (metadata first). ``kwargs`` go to ``create`` as they are."""

    parts: list[bytes]
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def content(self) -> bytes:
        return b"".join(self.parts)

    def padded(self, extra: bytes) -> ImagePayload:
        """The same image with ``extra`` appended to its last part (another size)."""
        return dataclasses.replace(self, parts=[*self.parts[:-1], self.parts[-1] + extra])

    def create_args(self, as_kind: str = "bytes", tmp: Path | None = None
                    ) -> tuple[Source, dict[str, Any]]:
        """The payload as the given kind of source: bytes, path, file or iterable."""
        sources = [self._as(p, as_kind, tmp, i) for i, p in enumerate(self.parts)]
        if len(sources) == 2:
            return sources[1], {"metadata": sources[0], **self.kwargs}
        return sources[0], dict(self.kwargs)

    @staticmethod
    def _as(blob: bytes, kind: str, tmp: Path | None, i: int) -> Source:
        if kind == "path":
            assert tmp is not None
            path = tmp / f"payload-{uuid.uuid4().hex[:8]}-{i}.bin"
            path.write_bytes(blob)
            return path
        if kind == "file":
            return io.BytesIO(blob)
        if kind == "iterable":
            # An odd chunk size, so no part boundary lines up with the backend's chunks.
            return (blob[j:j + 65531] for j in range(0, len(blob), 65531))
        return blob


@dataclasses.dataclass
class ShareTarget:
    """A project to share with; ``manager`` acts as that project (to accept or reject)."""

    project: str
    manager: ImageManager | None = None


def assert_same_bytes(chunks: Iterable[bytes], expected: bytes, what: str = "export") -> None:
    """Compare streamed bytes with ``expected`` byte for byte, naming the first difference."""
    offset = 0
    for chunk in chunks:
        want = expected[offset:offset + len(chunk)]
        if chunk != want:
            at = next((j for j, (a, b) in enumerate(zip(chunk, want, strict=False))
                       if a != b), min(len(chunk), len(want)))
            pytest.fail(f"{what}: byte {offset + at} differs (of {len(expected)} expected)")
        offset += len(chunk)
    assert offset == len(expected), f"{what}: got {offset} bytes, expected {len(expected)}"


def check_recorded_content(image: Image, payload: ImagePayload) -> None:
    """The size and checksum an image reports, where it reports them, fit the bytes."""
    if image.size is not None:
        assert image.size == len(payload.content), (
            f"image.size is {image.size}, {len(payload.content)} bytes were uploaded")
    if image.checksum is not None:
        algo, _, digest = image.checksum.partition(":")
        assert hashlib.new(algo, payload.content).hexdigest() == digest.lower(), (
            f"image.checksum {image.checksum} is not the {algo} of the uploaded bytes")


def read_export(manager: ImageManager, image: Image | str,
                expected: ImagePayload, *, other_thread: bool = False) -> None:
    """Export ``image`` and compare every part with ``expected`` (the stream is read in a
    worker thread with ``other_thread``, as migrate and ``save`` do)."""
    with manager.export(image) as stream:
        assert len(stream.parts) == len(expected.parts), (
            f"export has {len(stream.parts)} parts, the image was made of "
            f"{len(expected.parts)}")

        def consume() -> None:
            for n, (_part, chunks) in enumerate(stream.iter_parts()):
                assert_same_bytes(chunks, expected.parts[n], f"export part {n}")

        if other_thread:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(consume).result()
        else:
            consume()
    if stream.checksum is not None:
        assert stream.sha256 == "sha256:" + hashlib.sha256(expected.content).hexdigest()
