"""How a transfer is to run, shared by every step of it."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._progress import Progress

ProgressCallback = Callable[["Progress"], None]


@dataclasses.dataclass
class Options:
    verify: bool = True
    progress: ProgressCallback | None = None
    retries: int = 3
    backoff: float = 1.0
    cleanup_timeout: float = 60.0
    #: where a conversion stages its files (None: TMPDIR)
    staging_dir: str | None = None
    # One event for a whole sync, so Ctrl-C reaches every transfer in flight.
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    #: a sync run's id: the prefix of every attempt token, so the run can sweep what its
    #: killed workers left once it ends (None: tokens are bare uuids)
    run: str | None = None
