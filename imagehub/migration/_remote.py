"""Sync's transfers handed to an executor that runs them elsewhere (processes, Dask).

The client submits TransferTasks (names and options, no secrets), drains the workers'
progress reports into the caller's one callback, gathers the outcomes into the summary,
and, once every task has ended, deletes the unfinished records its run's tokens mark
(what a worker killed mid-upload left on a server).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import importlib
import queue as queue_module
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ImageHubError
from ..manager import Capability, ImageManager
from ._cleanup import GONE, delete_if_present, log
from ._options import ProgressCallback
from ._progress import Progress
from ._properties import PROP_TRANSFER
from ._task import Channel, TaskOutcome, TransferTask, run_task
from ._transfer import Transfer

# Waits up to the seconds given and returns the reports that arrived (maybe none).
Getter = Callable[[float], list[Any]]


def dask_client(executor: concurrent.futures.Executor) -> Any:
    """The distributed Client behind ``Client.get_executor()``, else None."""
    if "distributed" not in sys.modules:
        return None  # nobody made a Dask executor without importing distributed
    cfexecutor: Any = importlib.import_module("distributed.cfexecutor")
    if not isinstance(executor, cfexecutor.ClientExecutor):
        return None
    return getattr(executor, "_client", None)


@contextlib.contextmanager
def _channel(executor: concurrent.futures.Executor
             ) -> Iterator[tuple[Channel | None, Getter | None]]:
    """A queue workers can reach from where they run, and how the client reads it."""
    client = dask_client(executor)
    if client is not None:
        # Typed as Any: distributed ships no annotations for its Queue.
        queue: Any = importlib.import_module("distributed").Queue(client=client)

        def batch(timeout: float) -> list[Any]:
            # A blocking get with a timeout makes the scheduler log a traceback on every
            # empty wait; a batch get answers at once, empty or not.
            got = list(queue.get(batch=True))
            if not got:
                time.sleep(timeout)
            return got

        try:
            yield queue, batch
        finally:
            with contextlib.suppress(Exception):
                queue.close()  # the scheduler forgets it once no holder is left
        return
    if isinstance(executor, concurrent.futures.ProcessPoolExecutor):
        import multiprocessing

        with multiprocessing.Manager() as mgr:
            shared = mgr.Queue()

            def one(timeout: float) -> list[Any]:
                try:
                    return [shared.get(timeout=timeout)]
                except queue_module.Empty:
                    return []

            yield shared, one
        return
    # Any other executor: no channel it surely can carry; progress per finished transfer.
    yield None, None


class _Drain:
    """A thread feeding the workers' reports to the caller's progress callback."""

    def __init__(self, get: Getter, progress: ProgressCallback) -> None:
        self.get, self.progress = get, progress
        self.stop = threading.Event()
        #: bytes reported so far per source image id
        self.reported: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, name="imagehub-sync-progress",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            stopping = self.stop.is_set()
            try:
                reports = self.get(0.2)
            except Exception:  # noqa: BLE001 - a queue gone with its cluster: no more bars
                return
            for ref, image, done, total, delta, elapsed, _worker in reports:
                self.reported[ref] = self.reported.get(ref, 0) + delta
                with contextlib.suppress(Exception):
                    self.progress(Progress(image, done, total, delta, elapsed))
            if stopping and not reports:
                return

    def close(self, items: list[Transfer | None]) -> None:
        # Workers flush before they return, so what is queued now is the last of it.
        self.stop.set()
        self.thread.join(timeout=10)
        if self.thread.is_alive():
            return
        # A report lost on the way (a worker's queue call failed): the bar still ends at
        # every byte moved.
        for t in items:
            missing = (t.bytes - self.reported.get(t.source.id, 0)) if t else 0
            if t is not None and missing > 0:
                with contextlib.suppress(Exception):
                    self.progress(Progress(t.source.id, t.bytes, t.bytes, missing,
                                           t.seconds))


def run_remote(tasks: list[tuple[int, TransferTask, Transfer]],
               items: list[Transfer | None], executor: concurrent.futures.Executor,
               dst: ImageManager, run: str, progress: ProgressCallback | None) -> None:
    """Run ``tasks`` on ``executor``; ``Transfer`` in each is the failure to report when
    the task never reports back (its ``source`` and planned bytes)."""
    # No callback, no channel: workers then send no reports at all.
    with (_channel(executor) if progress is not None
          else contextlib.nullcontext((None, None))) as (channel, get):
        drain = _Drain(get, progress) if progress and get else None
        futures = {executor.submit(run_task, task, channel): (i, blank)
                   for i, task, blank in tasks}
        try:
            for future in concurrent.futures.as_completed(futures):
                i, blank = futures[future]
                items[i] = _outcome(future, blank)
                done = items[i]
                if progress is not None and drain is None and done is not None and done.bytes:
                    with contextlib.suppress(Exception):
                        progress(Progress(done.source.id, done.bytes, done.bytes,
                                          done.bytes, done.seconds))
        except BaseException:
            # Ctrl-C: what has not started is cancelled; a transfer running elsewhere
            # finishes or cleans up after itself, and the next sync sweeps what a killed
            # one left once it is older than stale_after.
            for future in futures:
                future.cancel()
            raise
        finally:
            if drain is not None:
                drain.close(items)
    sweep_run(dst, run)


def _outcome(future: concurrent.futures.Future[TaskOutcome], blank: Transfer) -> Transfer:
    try:
        outcome = future.result()
    except Exception as exc:  # noqa: BLE001 - a lost worker, a payload that did not travel
        hint = ("; install imagehub (the same version) where the workers run"
                if isinstance(exc, ImportError) else "")
        return dataclasses.replace(
            blank, error=f"the task did not come back: {type(exc).__name__}: {exc}{hint}")
    if outcome.transfer is not None:
        return dataclasses.replace(outcome.transfer, source=blank.source)
    return dataclasses.replace(blank, error=outcome.error, worker=outcome.worker)


def sweep_run(dst: ImageManager, run: str) -> None:
    """Delete the unfinished records this run's attempts left (a worker killed mid-upload):
    every task has ended, so none of them is still in flight."""
    if Capability.LIST not in type(dst).capabilities:
        return
    prefix = f"{run}."
    try:
        for image in dst.all():
            token = image.properties.get(PROP_TRANSFER, "")
            if token.startswith(prefix) and image.status not in GONE | {"active"}:
                log.warning("sync: deleting %s (%s) on %s, left half-made by a lost worker",
                            image.name or "unnamed", image.id, dst.cloud)
                delete_if_present(dst, image)
    except ImageHubError as exc:
        log.error("sync: could not sweep what lost workers left on %s (%s); the next "
                  "sync deletes images tagged %s=%s* once stale", dst.cloud, exc,
                  PROP_TRANSFER, prefix)
