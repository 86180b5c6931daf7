"""Many images: ``sync`` copies what the destination lacks, keyed on content."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
import uuid
from collections.abc import Mapping
from typing import Any

from ..errors import ImageHubError, InvalidArgument, InvalidArgumentType
from ..manager import ImageManager
from ..models import Image
from ._cleanup import sweep
from ._identity import Index, identities
from ._options import Options, ProgressCallback
from ._plan import Plan, _staging_dir, check_pair, check_transfer_options, manager, plan_one
from ._remote import run_remote
from ._task import TransferTask
from ._transfer import Transfer, carry_out


@dataclasses.dataclass(frozen=True)
class SyncSummary:
    """The outcome of ``sync``: one Transfer per source image considered."""

    source: str
    destination: str
    dry_run: bool
    items: tuple[Transfer, ...]
    seconds: float = 0.0

    def _count(self, action: str) -> int:
        return sum(1 for t in self.items if t.action == action)

    @property
    def copied(self) -> int:
        return self._count("copied")

    @property
    def present(self) -> int:
        return self._count("present")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def planned(self) -> int:
        return self._count("planned")

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.items)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "copied": self.copied,
            "present": self.present,
            "failed": self.failed,
            "planned": self.planned,
            "bytes": self.bytes if not self.dry_run else sum(
                t.planned_bytes or 0 for t in self.items if t.action == "planned"),
            "seconds": round(self.seconds, 3),
            "items": [t.to_dict() for t in self.items],
        }


def sync(src: ImageManager | str, dst: ImageManager | str, *,
         filters: Mapping[str, Any] | None = None, latest: bool = False, jobs: int = 1,
         dry_run: bool = False, progress: ProgressCallback | None = None,
         stream: bool = False, verify: bool = True, retries: int = 3,
         stale_after: float = 3600.0, config: Any = None, disk_format: str | None = None,
         staging_dir: str | None = None,
         executor: concurrent.futures.Executor | None = None) -> SyncSummary:
    """Copy every image of ``src`` (matching ``filters``) that ``dst`` lacks.

    Keyed on content: an image whose content the destination already holds is
    ``present``, whatever its name. Failures are reported per image, not raised; check
    ``summary.ok``. Half-made images a killed run left behind (tagged, not active, older
    than ``stale_after`` seconds) are deleted. Ctrl-C cancels the running transfers,
    cleans them up, and re-raises. ``disk_format`` converts each copy as ``migrate``
    does (qemu-img, staged in ``staging_dir``, else the config's, else TMPDIR).

    ``executor`` runs the transfers: None is a pool of ``jobs`` threads in this process;
    a ThreadPoolExecutor is used as that pool. Any other ``concurrent.futures.Executor``
    (a ProcessPoolExecutor, ``dask.distributed.Client(...).get_executor()``) gets one
    picklable task per image holding the cloud names, the image id, the destination
    name and the options, never a secret: each worker connects to the clouds by name
    with its own configuration (``$IMAGEHUB_CONFIG``). Each Transfer names its
    ``worker``; ``progress`` gets every worker's reports.
    """
    check_transfer_options(verify=verify, progress=progress, dry_run=dry_run, stream=stream,
                           retries=retries)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise (InvalidArgument if isinstance(jobs, int) and not isinstance(jobs, bool)
               else InvalidArgumentType)(f"jobs must be a whole number of at least 1, "
                                         f"got {jobs!r}")
    if isinstance(stale_after, bool) or not isinstance(stale_after, int | float) \
            or stale_after < 0:
        raise (InvalidArgument if isinstance(stale_after, int | float)
               and not isinstance(stale_after, bool) else InvalidArgumentType)(
            f"stale_after must be a number of seconds, at least 0, got {stale_after!r}")
    if filters is not None and not isinstance(filters, Mapping):
        raise InvalidArgumentType(f"filters must be a mapping, got {type(filters).__name__}")
    started = time.monotonic()
    src_m, dst_m = manager(src, config), manager(dst, config)
    check_pair(src_m, dst_m)
    # Only images with data to copy: not Glance's queued, importing or deactivated ones.
    images = [i for i in src_m.all(latest=latest, **dict(filters or {}))
              if i.status == "active"]
    index = Index(dst_m)
    if not dry_run:
        sweep(dst_m, index.stale, stale_after)

    items: list[Transfer | None] = [None] * len(images)
    todo: list[tuple[int, Plan]] = []
    claimed: dict[str, Image] = {}
    twins: dict[int, Image] = {}  # item -> the source image whose copy it shares
    for i, image in enumerate(images):
        try:
            p = plan_one(src_m, image, dst_m, name=None, stream=stream, fmt=disk_format,
                         index=index, staging_dir=staging_dir or _staging_dir(config))
        except ImageHubError as exc:
            items[i] = Transfer(source=image, action="failed", path="none", error=str(exc))
            continue
        # Two source images of one content: the first is copied, the others are present.
        twin = next((claimed[k] for k in sorted(identities(image)) if k in claimed), None)
        if p.action == "present" or twin is not None:
            items[i] = Transfer(source=image, action="present", path="none",
                                image=p.existing, checksum=p.checksum, planned_bytes=p.bytes)
            if p.existing is None and twin is not None:
                twins[i] = twin
            continue
        claimed.update({k: image for k in identities(image)})
        if dry_run:
            items[i] = Transfer(source=image, action="planned", path=p.path,
                                checksum=p.checksum, planned_bytes=p.bytes)
        else:
            todo.append((i, p))

    options = Options(verify=verify, progress=progress, retries=retries,
                      staging_dir=staging_dir or _staging_dir(config))
    if todo and (executor is None
                 or isinstance(executor, concurrent.futures.ThreadPoolExecutor)):
        _run_all(todo, items, options, max(1, jobs), executor)
    elif todo:
        assert executor is not None
        run = uuid.uuid4().hex
        tasks = [(i, _task(src_m, dst_m, p, options, run, stream, disk_format),
                  Transfer(source=p.source, action="failed", path=p.path,
                           planned_bytes=p.bytes)) for i, p in todo]
        run_remote(tasks, items, executor, dst_m, run, progress)
    # A twin's copy is the one its first image got in this run: name it, once made.
    made = {t.source.id: t.image for t in items if t is not None and t.image is not None}
    for i, twin in twins.items():
        item = items[i]
        if item is not None and made.get(twin.id) is not None:
            items[i] = dataclasses.replace(item, image=made[twin.id])
    return SyncSummary(source=src_m.cloud, destination=dst_m.cloud, dry_run=dry_run,
                       items=tuple(t for t in items if t is not None),
                       seconds=time.monotonic() - started)


def _task(src: ImageManager, dst: ImageManager, p: Plan, options: Options, run: str,
          stream: bool, disk_format: str | None) -> TransferTask:
    return TransferTask(source=src.cloud, destination=dst.cloud, ref=p.source.id,
                        name=p.name, run=run, stream=stream, disk_format=disk_format,
                        verify=options.verify, retries=options.retries,
                        staging_dir=options.staging_dir)


def _run_all(todo: list[tuple[int, Plan]], items: list[Transfer | None], options: Options,
             jobs: int, given: concurrent.futures.Executor | None = None) -> None:
    def one(p: Plan) -> Transfer:
        try:
            return carry_out(p, options)
        except Exception as exc:  # noqa: BLE001 - reported per image in the summary
            return Transfer(source=p.source, action="failed", path=p.path, error=str(exc),
                            planned_bytes=p.bytes)

    pool = given or concurrent.futures.ThreadPoolExecutor(
        max_workers=jobs, thread_name_prefix="imagehub-sync")
    futures = {pool.submit(one, p): i for i, p in todo}
    try:
        for future in concurrent.futures.as_completed(futures):
            items[futures[future]] = future.result()
    except BaseException:
        # Ctrl-C: stop the transfers in flight (each cleans up after itself), then go.
        options.cancel.set()
        for future in futures:
            future.cancel()
        if given is None:
            pool.shutdown(wait=True)
        else:
            concurrent.futures.wait(futures)
        raise
    if given is None:
        pool.shutdown(wait=True)
