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

from . import answers
from .errors import BACKEND
from .http import GlanceHTTP

# (record, the call's name for errors) -> Image
ToImage = Callable[[Mapping[str, Any], str], Image]
IMAGE = "image record"
TASK = "task"

_FAILED_IMAGE = {"killed", "deleted", "pending_delete"}
_TASK_STATUS = {
    "pending": OperationStatus.PENDING,
    "processing": OperationStatus.PROCESSING,
    "success": OperationStatus.SUCCESS,
    "failure": OperationStatus.FAILURE,
}


def _task_status(task: Mapping[str, Any], what: str) -> OperationStatus | None:
    """The task's status; None for one imagehub does not know."""
    said = answers.optional_text(task, "status", what, TASK)
    return _TASK_STATUS.get(said or "")


def _task_message(task: Mapping[str, Any], what: str) -> str | None:
    return answers.optional_text(task, "message", what, TASK) or None


class ImageStatusOperation(Operation[Image]):
    """Done when the image is ``active``; failed when Glance killed or deleted it."""

    def __init__(self, http: GlanceHTTP, image_id: str, to_image: ToImage) -> None:
        super().__init__(f"image-{image_id}", backend=BACKEND,
                         status=OperationStatus.PROCESSING)
        self.image_id = image_id
        self._http = http
        self._to_image = to_image

    def _refresh(self) -> None:
        what = f"get image {self.image_id}"
        try:
            record = self._http.json("GET", f"images/{self.image_id}", what)
        except ImageNotFound as exc:
            self._fail(f"image {self.image_id} disappeared", exc)
            return
        status = answers.optional_text(record, "status", what, IMAGE)
        if status == "active":
            self._result = self._to_image(record, what)
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
        what = f"list tasks of image {self.image_id}"
        body = self._http.json("GET", f"images/{self.image_id}/tasks", what)
        tasks = {answers.text(t, "id", what, TASK): t
                 for t in answers.records(body, "tasks", what)}
        if self.task_id is not None:
            mine = {tid: t for tid, t in tasks.items() if tid == self.task_id}
        else:
            mine = {tid: t for tid, t in tasks.items() if tid not in self._known_tasks}
        if not mine:
            return None
        self.task_id = max(mine, key=lambda tid: str(
            answers.optional_text(mine[tid], "created_at", what, TASK) or ""))
        return mine[self.task_id]

    def _refresh(self) -> None:
        what = f"get image {self.image_id}"
        try:
            record = self._http.json("GET", f"images/{self.image_id}", what)
        except ImageNotFound as exc:
            self._fail(f"image {self.image_id} disappeared during {self.method}", exc)
            return

        def text(key: str) -> str:
            return answers.optional_text(record, key, what, IMAGE) or ""

        image_status = text("status") or None
        lock = text("os_glance_import_task") or None
        if self.task_id is None and lock is not None:
            # The first lock seen after the import was accepted is this import's.
            self.task_id = lock
        if image_status in _FAILED_IMAGE:
            self._fail_with_task(f"image is {image_status}")
            return
        if lock is not None and lock == self.task_id:
            self._running(image_status, text("os_glance_importing_to_stores").strip(","))
            return
        stored = set(filter(None, text("stores").split(",")))
        failed_stores = text("os_glance_failed_import").strip(",")
        if failed_stores:
            self._fail_with_task(f"import failed for stores {failed_stores}")
        elif image_status == "active" and set(self.stores) <= stored:
            self._succeed(record, what)
        else:
            # Not clearly over: ended badly, or the lock was never seen (a Glance
            # without import locks, or another import took the image over). The task
            # record decides.
            self._judge_by_task(record, image_status, what)

    def _running(self, status: str | None, importing: str) -> None:
        started = status in ("importing", "saving") or bool(importing)
        self.status = OperationStatus.PROCESSING if started else OperationStatus.PENDING
        self.message = f"image is {status}, import task {self.task_id} " + (
            f"importing to {importing}" if importing else
            "running" if started else "not started yet")

    def _succeed(self, record: Mapping[str, Any], what: str) -> None:
        self._result = self._to_image(record, what)
        self.status = OperationStatus.SUCCESS
        self.message = None

    def _fail_with_task(self, fallback: str) -> None:
        task = self._task()
        message = (_task_message(task, f"list tasks of image {self.image_id}")
                   if task is not None else None) or fallback
        self._fail(f"{self.method} import of image {self.image_id} failed: {message}")
        self.message = message

    def _judge_by_task(self, record: Mapping[str, Any], image_status: str | None,
                       what: str) -> None:
        task = self._task()
        task_status = None if task is None else _task_status(
            task, f"list tasks of image {self.image_id}")
        if task_status is OperationStatus.SUCCESS:
            if image_status == "active":
                self._succeed(record, what)
                return
            self._fail_with_task(f"the task succeeded but the image is {image_status}")
        elif task_status is OperationStatus.FAILURE or (
                task is None and self.task_id is not None):
            self._fail_with_task(f"image is {image_status}")
        else:
            self.status = task_status or OperationStatus.PENDING
            self.message = f"image is {image_status}" + (
                f", task {task_status.value}" if task_status is not None else "")


class TaskOperation(Operation[Image]):
    """A v2 task (``POST /v2/tasks``); on success ``result`` is the imported image."""

    def __init__(self, http: GlanceHTTP, task: Mapping[str, Any], to_image: ToImage,
                 what: str) -> None:
        """``task`` is Glance's answer to the call ``what`` (named in errors)."""
        super().__init__(answers.text(task, "id", what, TASK), backend=BACKEND,
                         status=_task_status(task, what) or OperationStatus.PENDING,
                         message=_task_message(task, what))
        self._http = http
        self._to_image = to_image
        self.raw: Mapping[str, Any] = task

    def _refresh(self) -> None:
        what = f"get task {self.id}"
        task = self._http.json("GET", f"tasks/{self.id}", what)
        self.raw = task
        status = _task_status(task, what) or OperationStatus.PROCESSING
        self.message = _task_message(task, what)
        if status is OperationStatus.SUCCESS:
            result = answers.optional_record(task, "result", what, TASK) or {}
            image_id = answers.optional_text(result, "image_id", what, "task's result")
            if not image_id:
                self.error = OperationFailed(f"task {self.id} succeeded without an image",
                                             backend=BACKEND, server_message=self.message)
                self.status = OperationStatus.FAILURE
                return
            what = f"get image {image_id}"
            record = self._http.json("GET", f"images/{image_id}", what)
            self._result = self._to_image(record, what)
        elif status is OperationStatus.FAILURE:
            self.error = OperationFailed(f"task {self.id} failed", backend=BACKEND,
                                         server_message=self.message)
        self.status = status
