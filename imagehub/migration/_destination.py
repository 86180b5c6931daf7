"""What every path does on the destination side: a sized body, and recording identity."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..manager import Capability, ImageManager
from ..models import Image


class Sized:
    """An iterable of chunks that says how many bytes it will yield (``open_source``
    reads ``size``), so a destination can send it with a Content-Length."""

    def __init__(self, chunks: Iterator[bytes], size: int | None) -> None:
        self._chunks, self.size = chunks, size

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks


def record(dst: ImageManager, image: Image, props: Mapping[str, str]) -> Image:
    """Write the identity properties onto a finished copy (so sync finds it later)."""
    if all(image.properties.get(k) == v for k, v in props.items()):
        return image
    if Capability.UPDATE not in type(dst).capabilities:
        return image
    return dst.update(image, properties=dict(props))
