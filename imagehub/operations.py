"""Long-running work, in pyrax task terms: pending → processing → success | failure."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import ImageHubError, OperationFailed, OperationTimeout

__all__ = ["FunctionOperation", "Operation", "OperationStatus", "completed"]

T = TypeVar("T")


class OperationStatus(str, enum.Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILURE = "failure"

    @property
    def done(self) -> bool:
        return self in (OperationStatus.SUCCESS, OperationStatus.FAILURE)

    def __str__(self) -> str:
        return self.value


class Operation(Generic[T]):
    """Base for a backend's long-running work.

    Subclasses implement ``_refresh()`` to ask the server where the work stands and set
    ``status``, ``message`` and, on success, ``_result``. ``wait`` polls with a capped
    backoff; backends that can block server-side (LXD's ``/wait``) override ``_block``.
    """

    def __init__(self, id: str, *, backend: str = "", status: OperationStatus =
                 OperationStatus.PENDING, message: str | None = None) -> None:
        self.id = id
        self.backend = backend
        self.status = OperationStatus(status)
        self.message = message
        self._result: T | None = None
        self.error: ImageHubError | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.status.value}>"

    def _refresh(self) -> None:
        raise NotImplementedError

    def _block(self, timeout: float) -> None:
        # Default: sleep; a server that supports blocking waits overrides this.
        time.sleep(timeout)

    def reload(self) -> Operation[T]:
        if not self.status.done:
            self._refresh()
        return self

    @property
    def done(self) -> bool:
        return self.status.done

    @property
    def result(self) -> T:
        """The product (usually an Image) once succeeded; raises if failed or unfinished."""
        if self.status is OperationStatus.FAILURE:
            raise self._failed()
        if self.status is not OperationStatus.SUCCESS:
            raise ImageHubError(f"operation {self.id} is still {self.status.value}",
                                backend=self.backend, hint="call wait() first")
        return self._result  # type: ignore[return-value]

    def _failed(self) -> ImageHubError:
        if self.error is not None:
            return self.error
        return OperationFailed(f"operation {self.id} failed", backend=self.backend,
                               server_message=self.message)

    def wait(self, timeout: float | None = None, *, interval: float = 0.2,
             max_interval: float = 2.0) -> T:
        """Block until done; return the result or raise OperationFailed/OperationTimeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.reload()
        while not self.status.done:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise OperationTimeout(
                    f"operation {self.id} still {self.status.value} after {timeout:g}s",
                    backend=self.backend, server_message=self.message,
                    hint="wait longer, or check it later with reload()")
            self._block(interval if remaining is None else min(interval, remaining))
            interval = min(interval * 1.5, max_interval)
            self.reload()
        return self.result


class FunctionOperation(Operation[T]):
    """Work run in a background thread of this process (exports, local imports)."""

    _counter = 0
    _lock = threading.Lock()

    def __init__(self, fn: Callable[[], T], *, backend: str = "", name: str = "task",
                 start: bool = True) -> None:
        with FunctionOperation._lock:
            FunctionOperation._counter += 1
            n = FunctionOperation._counter
        super().__init__(f"{name}-{n}", backend=backend)
        self._fn = fn
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.id, daemon=True)
        if start:
            self._thread.start()

    def _run(self) -> None:
        self.status = OperationStatus.PROCESSING
        try:
            self._result = self._fn()
        except ImageHubError as exc:
            self.error, self.message = exc, str(exc)
            self.status = OperationStatus.FAILURE
        except Exception as exc:  # noqa: BLE001 - reported through the operation
            self.error = OperationFailed(f"operation {self.id} failed: {exc}",
                                         backend=self.backend)
            self.message = str(exc)
            self.status = OperationStatus.FAILURE
        else:
            self.status = OperationStatus.SUCCESS
        finally:
            self._finished.set()

    def _refresh(self) -> None:
        pass

    def _block(self, timeout: float) -> None:
        self._finished.wait(timeout)


def completed(result: T, *, backend: str = "", id: str = "done") -> Operation[T]:
    """An Operation that already succeeded (for backends whose work is synchronous)."""
    op: Operation[T] = Operation(id, backend=backend, status=OperationStatus.SUCCESS)
    op._result = result
    return op

