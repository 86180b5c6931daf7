"""Progress reports for one transfer, and the meter that makes them."""

from __future__ import annotations

import dataclasses
import threading
import time

from ..errors import MigrationError
from ._options import Options


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where one transfer stands, handed to the ``progress`` callback after every chunk."""

    image: str
    done: int
    total: int | None
    delta: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None when the size or rate is unknown)."""
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(self.done / self.total, 1.0)


class Meter:
    """Counts bytes for one transfer, calls the progress callback, honours cancel."""

    def __init__(self, label: str, total: int | None, options: Options) -> None:
        self.label, self.total, self.options = label, total, options
        self.done = 0
        self.start = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        if self.options.cancel.is_set():
            raise MigrationError(f"migration of {self.label} was cancelled")
        with self._lock:
            self.done += n
            done = self.done
        if self.options.progress is not None:
            self.options.progress(Progress(self.label, done, self.total, n,
                                           time.monotonic() - self.start))
