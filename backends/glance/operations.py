"""Glance's long-running work as imagehub Operations (pyrax task semantics).

Status goes pending -> processing -> success | failure, with Glance's message:

* :class:`ImageStatusOperation` waits for an image to reach ``active`` (after an upload
  Glance may still be ``saving``).
* :class:`ImportOperation` follows an interoperable import (glance-direct, web-download,
  copy-image) through the image's status and its import task
  (``GET /v2/images/{id}/tasks``), so a failed download reports Glance's reason.
* :class:`TaskOperation` follows a v2 task (``GET /v2/tasks/{id}``, legacy import).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from imagehub.errors import ImageHubError, ImageNotFound, OperationFailed
from imagehub.models import Image
from imagehub.operations import Operation, OperationStatus

from .errors import BACKEND
from .http import GlanceHTTP

ToImage = Callable[[Mapping[str, Any]], Image]

_FAILED_IMAGE = {"killed", "deleted", "pending_delete"}
_TASK_STATUS = {
    "pending": OperationStatus.PENDING,
    "processing": OperationStatus.PROCESSING,
    "success": OperationStatus.SUCCESS,
    "failure": OperationStatus.FAILURE,
}


class ImageStatusOperation(Operation[Image]):
    """Done when the image is ``active``; failed when Glance killed or deleted it."""

    def __init__(self, http: GlanceHTTP, image_id: str, to_image: ToImage) -> None:
        super().__init__(f"image-{image_id}", backend=BACKEND,
                         status=OperationStatus.PROCESSING)
        self.image_id = image_id
        self._http = http
        self._to_image = to_image

    def _refresh(self) -> None:
        try:
            record = self._http.json("GET", f"images/{self.image_id}",
                                     f"get image {self.image_id}")
        except ImageNotFound as exc:
            self._fail(f"image {self.image_id} disappeared", exc)
            return
        status = record.get("status")
        if status == "active":
            self._result = self._to_image(record)
            self.status = OperationStatus.SUCCESS
        elif status in _FAILED_IMAGE:
            self._fail(f"image {self.image_id} is {status}")
        else:
            self.message = f"image is {status}"

    def _fail(self, message: str, cause: ImageHubError | None = None) -> None:
        self.message = message if cause is None else f"{message}: {cause}"
        self.error = OperationFailed(message, backend=BACKEND,
                                     server_message=cause.server_message if cause else None)
        self.status = OperationStatus.FAILURE


class ImportOperation(ImageStatusOperation):
    """An interoperable import, followed through the image record while it runs.

    Glance stores the import task's id in the image's ``os_glance_import_task``
    property before it accepts the import, and removes it as the task's very last
    step. So the record alone says whether the task is still at work, and once the
    lock is gone, how it ended (status, ``stores``, ``os_glance_failed_import``); the
    operation is done only when Glance is, so the next call on the image does not
    meet a half-finished task (or its 409). The image's task list is read once, when
    the outcome needs Glance's message: listing tasks is a database write in Glance
    (it first soft-deletes the owner's expired tasks), and polling it raced the
    import's own writes; on SQLite that failed imports or lost them, the task left
    pending forever.
    """

    def __init__(self, http: GlanceHTTP, image_id: str, method: str, to_image: ToImage,
                 *, known_tasks: frozenset[str] = frozenset(),
                 stores: tuple[str, ...] = ()) -> None:
        super().__init__(http, image_id, to_image)
        self.id = f"{method}-{image_id}"
        self.method = method
        self.stores = stores
        self.status = OperationStatus.PENDING
        self.task_id: str | None = None
        # Tasks that existed before this import began are someone else's.
        self._known_tasks = known_tasks

    def _task(self) -> Mapping[str, Any] | None:
        """Our import task: the one whose lock we saw, else the newest one not known
        before the import (Glance creates it before answering the import request)."""
        body = self._http.json("GET", f"images/{self.image_id}/tasks",
                               f"list tasks of image {self.image_id}")
        tasks = (body or {}).get("tasks", [])
        if self.task_id is not None:
            mine = [t for t in tasks if str(t.get("id")) == self.task_id]
        else:
            mine = [t for t in tasks if t.get("id") not in self._known_tasks]
        if not mine:
            return None
        newest: Mapping[str, Any] = max(mine, key=lambda t: str(t.get("created_at") or ""))
        self.task_id = str(newest.get("id"))
        return newest

    def _refresh(self) -> None:
        try:
            record = self._http.json("GET", f"images/{self.image_id}",
                                     f"get image {self.image_id}")
        except ImageNotFound as exc:
            self._fail(f"image {self.image_id} disappeared during {self.method}", exc)
            return
        image_status = record.get("status")
        lock = str(record.get("os_glance_import_task") or "") or None
        if self.task_id is None and lock is not None:
            # The first lock seen after the import was accepted is this import's.
            self.task_id = lock
        if image_status in _FAILED_IMAGE:
            self._fail_with_task(f"image is {image_status}")
            return
        if lock is not None and lock == self.task_id:
            self._running(record)
            return
        stored = set(filter(None, str(record.get("stores") or "").split(",")))
        failed_stores = str(record.get("os_glance_failed_import") or "").strip(",")
        if failed_stores:
            self._fail_with_task(f"import failed for stores {failed_stores}")
        elif image_status == "active" and set(self.stores) <= stored:
            self._succeed(record)
        else:
            # Not clearly over: ended badly, or the lock was never seen (a Glance
            # without import locks, or another import took the image over). The task
            # record decides.
            self._judge_by_task(record)

    def _running(self, record: Mapping[str, Any]) -> None:
        status = record.get("status")
        importing = str(record.get("os_glance_importing_to_stores") or "").strip(",")
        started = status in ("importing", "saving") or bool(importing)
        self.status = OperationStatus.PROCESSING if started else OperationStatus.PENDING
        self.message = f"image is {status}, import task {self.task_id} " + (
            f"importing to {importing}" if importing else
            "running" if started else "not started yet")

    def _succeed(self, record: Mapping[str, Any]) -> None:
        self._result = self._to_image(record)
        self.status = OperationStatus.SUCCESS
        self.message = None

    def _fail_with_task(self, fallback: str) -> None:
        task = self._task()
        message = str((task or {}).get("message") or fallback)
        self._fail(f"{self.method} import of image {self.image_id} failed: {message}")
        self.message = message

    def _judge_by_task(self, record: Mapping[str, Any]) -> None:
        task = self._task()
        task_status = _TASK_STATUS.get(str((task or {}).get("status")))
        if task_status is OperationStatus.SUCCESS:
            if record.get("status") == "active":
                self._succeed(record)
                return
            self._fail_with_task(f"the task succeeded but the image is {record.get('status')}")
        elif task_status is OperationStatus.FAILURE or (
                task is None and self.task_id is not None):
            self._fail_with_task(f"image is {record.get('status')}")
        else:
            self.status = task_status or OperationStatus.PENDING
            self.message = f"image is {record.get('status')}" + (
                f", task {task_status.value}" if task_status is not None else "")


class TaskOperation(Operation[Image]):
    """A v2 task (``POST /v2/tasks``); on success ``result`` is the imported image."""

    def __init__(self, http: GlanceHTTP, task: Mapping[str, Any], to_image: ToImage) -> None:
        super().__init__(str(task["id"]), backend=BACKEND,
                         status=_TASK_STATUS.get(str(task.get("status")),
                                                 OperationStatus.PENDING))
        self._http = http
        self._to_image = to_image
        self.raw: Mapping[str, Any] = task

    def _refresh(self) -> None:
        task = self._http.json("GET", f"tasks/{self.id}", f"get task {self.id}")
        self.raw = task
        status = _TASK_STATUS.get(str(task.get("status")), OperationStatus.PROCESSING)
        self.message = task.get("message") or None
        if status is OperationStatus.SUCCESS:
            image_id = (task.get("result") or {}).get("image_id")
            if not image_id:
                self.error = OperationFailed(f"task {self.id} succeeded without an image",
                                             backend=BACKEND, server_message=self.message)
                self.status = OperationStatus.FAILURE
                return
            record = self._http.json("GET", f"images/{image_id}", f"get image {image_id}")
            self._result = self._to_image(record)
        elif status is OperationStatus.FAILURE:
            self.error = OperationFailed(f"task {self.id} failed", backend=BACKEND,
                                         server_message=self.message)
        self.status = status
