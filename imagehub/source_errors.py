"""Carrying a failing data source's error through an HTTP upload, connection dropped.

When the iterator that feeds a request body raises, the HTTP stack must drop the
connection so the server sees the body end at once and throws away what it was
building; the caller must then see the source's own error. urllib3 (under requests,
pylxd and keystoneauth1) does both only for errors that do not look like its own:

- ``BrokenPipeError`` and ``ConnectionResetError`` (a dead pipe or socket the image
  was read from) are taken for the server hanging up early. urllib3 swallows them,
  leaves the body unfinished and waits for a response, while the server waits for the
  rest of the body: both hang until a read timeout, if there is one, and the server
  keeps its half-built upload all that time.
- Any other ``OSError`` (a read error on the source disk) becomes ``ConnectionError``
  and would be reported as "cannot reach the server".

``guard_source`` wraps the body so that whatever the source raises leaves the HTTP
stack as ``SourceFailed``, which is no ``OSError``: urllib3 closes the connection on
its way out, as it does for any error that is not its own. ``source_errors`` then
re-raises the source's exception itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["SourceFailed", "guard_source", "source_errors"]


class SourceFailed(Exception):
    """What a data source raised mid-upload, on its way through the HTTP stack."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"the data source failed: {error!r}")
        self.error = error


def guard_source(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield ``chunks``; an exception from them leaves as :class:`SourceFailed`."""
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except SourceFailed:
            raise  # an inner upload's carrier already: wrapping it again would hide it
        except Exception as exc:  # carried out whole; source_errors re-raises it
            raise SourceFailed(exc) from exc
        yield chunk


@contextmanager
def source_errors() -> Iterator[None]:
    """Re-raise the data source's own exception when an upload inside fails by it."""
    failed: Exception | None = None
    try:
        yield
    except SourceFailed as carrier:
        failed = carrier.error
    if failed is not None:
        # Raising sets the error's context to the carrier still being handled; put its
        # own context back so tracebacks show the source's story, not the carrier.
        context = failed.__context__
        try:
            raise failed
        finally:
            failed.__context__ = context
