"""One transfer as a task another process or host carries out: what travels, what runs.

A task holds names and options only: the clouds by name, the source image's id, the
destination name. No manager, session, token or password is in it; the worker connects
with its own configuration (``$IMAGEHUB_CONFIG`` or its XDG clouds file, and the
environment variables that file names), so secrets never leave the hosts that hold them.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import threading
import time
from typing import Any, Protocol

from ..errors import ImageHubError, MigrationError
from ..manager import ImageManager
from ._identity import copies_by_record
from ._options import Options
from ._plan import plan_one
from ._progress import Progress
from ._transfer import Transfer, carry_out, log

# How often a worker sends the bytes it moved to the client: often enough for a bar,
# rarely enough that a scheduler-routed queue is not a message per chunk.
REPORT_EVERY = 0.25


class Channel(Protocol):
    """Where workers put progress reports: a queue the client drains."""

    def put(self, item: Any) -> Any: ...


@dataclasses.dataclass(frozen=True)
class TransferTask:
    """Everything a worker needs to copy one image, and nothing it must not see."""

    source: str
    destination: str
    ref: str
    name: str
    #: the sync run's id: attempt tokens start with it, so the run sweeps its leftovers
    run: str
    stream: bool = False
    disk_format: str | None = None
    verify: bool = True
    retries: int = 3
    staging_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    """What comes back: the Transfer when it got that far, else the error; and where."""

    worker: str
    transfer: Transfer | None = None
    error: str | None = None


def worker_name() -> str:
    """The Dask worker's address when running in one, else ``host:pid``."""
    dist = sys.modules.get("distributed")  # only ever imported by a Dask worker here
    if dist is not None:
        try:
            return str(dist.get_worker().address)
        except ValueError:
            pass  # imported, but this is not a worker's thread
    return f"{socket.gethostname()}:{os.getpid()}"


# One manager per cloud per worker process: a Glance login or an LXD connection is paid
# once per worker, not once per image. Managers are shared by threads, as sync does.
_managers: dict[tuple[str, str | None], ImageManager] = {}
_managers_lock = threading.Lock()


def _connect(cloud: str, worker: str) -> ImageManager:
    from ..connect import connect

    key = (cloud, os.environ.get("IMAGEHUB_CONFIG"))
    with _managers_lock:
        if key not in _managers:
            try:
                _managers[key] = connect(cloud)
            except ImageHubError as exc:
                raise MigrationError(
                    f"worker {worker} cannot connect to cloud {cloud!r}: {exc}",
                    hint="each worker reads its own clouds file: give it one "
                         "(IMAGEHUB_CONFIG in the worker's environment) that has this "
                         "cloud") from exc
        return _managers[key]


class _Reporter:
    """Batches one transfer's progress into a report every REPORT_EVERY seconds."""

    def __init__(self, channel: Channel | None, worker: str, ref: str) -> None:
        self.channel, self.worker, self.ref = channel, worker, ref
        self.pending = 0
        self.last = time.monotonic()
        self.latest: Progress | None = None

    def __call__(self, p: Progress) -> None:
        self.pending += p.delta
        self.latest = p
        if time.monotonic() - self.last >= REPORT_EVERY:
            self.flush()

    def flush(self) -> None:
        p, self.last = self.latest, time.monotonic()
        if self.channel is None or p is None or not self.pending:
            return
        report = (self.ref, p.image, p.done, p.total, self.pending, p.elapsed, self.worker)
        self.pending = 0
        try:
            self.channel.put(report)
        except Exception as exc:  # noqa: BLE001 - a lost report never fails a transfer
            # The client makes up what it missed from the Transfer when the task ends.
            log.debug("sync: a progress report from %s was lost: %s", self.worker, exc)


def run_task(task: TransferTask, channel: Channel | None = None) -> TaskOutcome:
    """Carry one task out on this worker; every failure comes back as a TaskOutcome."""
    worker = worker_name()
    reporter = _Reporter(channel, worker, task.ref)
    try:
        src = _connect(task.source, worker)
        dst = _connect(task.destination, worker)
        image = src.get(task.ref)
        # Planned again here against the destination as it is now: a task retried after
        # its first worker died finds the copy that worker finished, and skips it. The
        # client's full index already ruled out older copies, so only the copies migrate
        # records are asked for, not a listing of every image per task.
        p = plan_one(src, image, dst, name=task.name, stream=task.stream,
                     fmt=task.disk_format, index=copies_by_record(dst, image),
                     staging_dir=task.staging_dir)
        options = Options(verify=task.verify, progress=reporter, retries=task.retries,
                          staging_dir=task.staging_dir, run=task.run)
        done = carry_out(p, options)
    except Exception as exc:  # noqa: BLE001 - reported per image in the summary
        text = str(exc)
        if worker not in text:
            text = f"{text} (on worker {worker})"
        return TaskOutcome(worker=worker, error=text)
    finally:
        reporter.flush()
    return TaskOutcome(worker=worker, transfer=dataclasses.replace(done, worker=worker))
