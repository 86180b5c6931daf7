"""LXD background operations as imagehub Operations, with a real ``wait(timeout)``.

LXD forgets a finished operation a few seconds after it ends (its ``/wait`` then answers
404), and pylxd's wait has no timeout. So a watcher thread parks on LXD's own blocking
``GET /1.0/operations/<id>/wait`` from the moment the operation exists and keeps the
final state; ``wait(timeout)`` waits on that thread for at most ``timeout`` seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import requests
from pylxd import exceptions as pylxd_exceptions  # type: ignore[import-untyped]

from imagehub._retry import retrying
from imagehub.errors import ImageHubError, OperationFailed
from imagehub.operations import Operation, OperationStatus

from .errors import BACKEND, from_text, from_transport

T = TypeVar("T")

_SUCCESS, _FAILURE, _CANCELLED = 200, 400, 401
# Seconds LXD blocks per /wait call; short enough to notice a dead daemon.
_WAIT_SLICE = 20
_TRANSPORT_RETRIES = 3


def operation_id(response: requests.Response) -> str:
    """The operation id from an async LXD answer (``"operation": "/1.0/operations/<id>"``)."""
    body = response.json()
    path = body.get("operation") or (body.get("metadata") or {}).get("id") or ""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


class LXDOperation(Operation[T]):
    """One LXD operation; ``result`` is built by ``on_success`` from LXD's final metadata.

    ``on_success`` may raise an ImageHubError (a fingerprint check, say): the operation then
    fails with it. ``on_failure`` runs once when the operation fails, to undo side effects.
    """

    def __init__(
        self,
        api: Any,
        op_id: str,
        *,
        on_success: Callable[[Mapping[str, Any]], T],
        on_failure: Callable[[ImageHubError], None] | None = None,
        what: str = "",
        trusted: bool = True,
    ) -> None:
        super().__init__(op_id, backend=BACKEND, status=OperationStatus.PROCESSING)
        self._api = api
        self._on_success = on_success
        self._on_failure = on_failure
        self._what = what
        self._trusted = trusted
        self._final: Mapping[str, Any] | None = None
        self._watch_error: ImageHubError | None = None
        self._done = threading.Event()
        self._settle_lock = threading.Lock()
        self.metadata: Mapping[str, Any] = {}
        self._watcher = threading.Thread(target=self._watch, name=f"lxd-op-{op_id[:8]}",
                                         daemon=True)
        self._watcher.start()

    # -- the watcher thread ---------------------------------------------------------------
    def _watch(self) -> None:
        try:
            while True:
                try:
                    # A dropped long-poll is asked again a few times before it counts.
                    response = retrying(
                        attempts=_TRANSPORT_RETRIES,
                        retry_if=lambda e: isinstance(e, requests.exceptions.RequestException),
                        wait=lambda state: 0.5 * state.attempt_number,
                    )(self._wait_slice)
                except pylxd_exceptions.NotFound:
                    self._watch_error = OperationFailed(
                        f"LXD operation {self.id} vanished before its result was read",
                        backend=BACKEND,
                        hint="LXD drops finished operations after a few seconds")
                    return
                except pylxd_exceptions.LXDAPIException as exc:
                    self._watch_error = from_text(str(exc), what=self._what,
                                                  trusted=self._trusted)
                    return
                except requests.exceptions.RequestException as exc:
                    self._watch_error = from_transport(exc, what=self._what)
                    return
                meta = response.json().get("metadata") or {}
                self.metadata = meta.get("metadata") or {}
                if int(meta.get("status_code", 0)) >= _SUCCESS:
                    self._final = meta
                    return
        finally:
            self._done.set()

    def _wait_slice(self) -> Any:
        return self._api.operations[self.id].wait.get(
            params={"timeout": _WAIT_SLICE}, timeout=_WAIT_SLICE + 30)

    # -- Operation hooks ------------------------------------------------------------------
    def _refresh(self) -> None:
        if self._done.is_set():
            self._settle()

    def _block(self, timeout: float) -> None:
        self._done.wait(timeout)

    def _settle(self) -> None:
        with self._settle_lock:
            if self.status.done:
                return
            if self._watch_error is not None:
                self._fail(self._watch_error)
                return
            final = self._final or {}
            code = int(final.get("status_code", 0))
            if code == _SUCCESS:
                try:
                    self._result = self._on_success(final.get("metadata") or {})
                except ImageHubError as exc:
                    self._fail(exc, undo=False)
                    return
                self.message = "success"
                self.status = OperationStatus.SUCCESS
                return
            text = str(final.get("err") or final.get("status") or "operation failed")
            if code == _CANCELLED:
                text = f"cancelled: {text}"
            self._fail(from_text(text, what=self._what, trusted=self._trusted))

    def _fail(self, error: ImageHubError, *, undo: bool = True) -> None:
        self.error = error
        self.message = error.server_message or str(error)
        self.status = OperationStatus.FAILURE
        if undo and self._on_failure is not None:
            self._on_failure(error)

    def cancel(self) -> None:
        """Ask LXD to cancel the operation (only cancellable ones stop)."""
        try:
            self._api.operations[self.id].delete()
        except (pylxd_exceptions.LXDAPIException, requests.exceptions.RequestException):
            pass
