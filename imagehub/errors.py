"""Every error imagehub raises, in one tree.

Catch ``ImageHubError`` to handle anything imagehub raises on purpose; catch a leaf to
handle one situation. A server's own words travel in ``server_message``; ``hint`` says
what the user can do about it. Messages never contain secrets.

::

    ImageHubError
    ├── ConfigError                 bad or missing configuration (file, cloud, key named)
    ├── RegistryError
    │   ├── BackendNotFound         no plugin by that name (lists the installed ones)
    │   ├── BackendUnavailable      plugin installed, its extra is not (says what to pip install)
    │   └── InvalidBackend          plugin does not subclass ImageManager
    ├── InvalidArgument             a bad argument value (also a ValueError)
    │   └── InvalidArgumentType     an argument of the wrong type (also a TypeError)
    ├── UnboundImageError           an Image built from data has no manager to act through
    ├── ReadOnlyImageError          ``image.public = True``: says to call update() (compat;
    │                               also the dataclass FrozenInstanceError it replaces)
    ├── UnsupportedOperation        the backend cannot do this; raised before any I/O
    ├── AuthenticationError         missing or rejected credentials
    ├── PermissionDenied            authenticated, but not allowed
    ├── ImageLookupError
    │   ├── ImageNotFound
    │   └── AmbiguousImage          a ref matched several images (``candidates``)
    ├── ImageConflict               duplicate image, fingerprint or alias
    ├── InvalidImageData            the server or imagehub rejected the image bytes or metadata
    │   └── UnreadableSource        a path or file given to create cannot be read (streams)
    ├── QuotaExceeded               the provider's storage or count quota is full
    ├── RateLimited                 throttled, still after bounded retries (``retry_after``)
    ├── BackendError                the server failed or answered something unusable
    │   └── ServerUnreachable       connection refused, DNS, TLS or timeout talking to it
    ├── OutputError                 a local file or stream could not be written (path named)
    ├── TransferError               image bytes stopped flowing (cut, stalled, short read)
    │   └── ChecksumMismatch        bytes arrived but do not hash to what was promised
    ├── OperationError
    │   ├── OperationFailed         a long-running operation ended in failure
    │   └── OperationTimeout        it did not finish within the timeout
    ├── IncompleteAnswer            some clouds failed, so an answer over all may be stale (hub)
    └── MigrationError              migrate/sync could not be carried out
        ├── IncompatibleFormat      the destination cannot hold this image; no byte was moved
        ├── QemuImgMissing          a conversion needs qemu-img, which is not installed (qemuimg)
        └── StagingSpaceError       no room to stage a conversion (migration._convert)

The five named with a module live beside the code that raises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from ._redact import excerpt, redact

__all__ = [
    "AmbiguousImage",
    "AuthenticationError",
    "BackendError",
    "BackendNotFound",
    "BackendUnavailable",
    "ChecksumMismatch",
    "ConfigError",
    "ImageConflict",
    "ImageHubError",
    "ImageLookupError",
    "ImageNotFound",
    "IncompatibleFormat",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidBackend",
    "InvalidImageData",
    "MigrationError",
    "OperationError",
    "OperationFailed",
    "OperationTimeout",
    "OutputError",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "RegistryError",
    "ServerUnreachable",
    "TransferError",
    "UnboundImageError",
    "UnsupportedOperation",
]


_TEXT_FIELDS = frozenset({"message", "server_message", "hint", "cli_hint"})


class ImageHubError(Exception):
    """Root of every error imagehub raises on purpose.

    ``message`` is imagehub's sentence, ``server_message`` the provider's own words
    (kept verbatim, minus secrets), ``hint`` what to do next. ``cli_hint``, when set,
    is the same advice in command-line syntax; the CLI shows it instead of ``hint``.
    """

    cli_hint: str | None = None

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        server_message: str | None = None,
        status_code: int | None = None,
        hint: str | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.backend = backend
        self.server_message = redact(server_message) if server_message else server_message
        self.status_code = status_code
        self.hint = hint

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other constructor arguments than ``args``; rebuild from the
        # instance's attributes so every error survives pickling (multiprocessing,
        # concurrent.futures) with what it carries.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))
    def __setattr__(self, name: str, value: Any) -> None:
        # Backends append to these after construction; each assignment is redacted too.
        if name in _TEXT_FIELDS and isinstance(value, str):
            value = redact(value)
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        return redact(super().__repr__())

    def __str__(self) -> str:
        text = self.message
        if self.server_message and self.server_message not in text:
            text += f" (server said: {self.server_message})"
        if self.hint:
            text += f"; {self.hint}"
        # Again here: a token received after this error was built, or a field set later.
        return redact(text)


def _rebuild(cls: type[ImageHubError], args: tuple[Any, ...],
             state: dict[str, Any]) -> ImageHubError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


E = TypeVar("E", bound=ImageHubError)


def with_cli_hint(error: E, cli_hint: str) -> E:
    """``error`` with its advice also said in the CLI's syntax (``hint`` keeps Python's)."""
    error.cli_hint = cli_hint
    return error


class InvalidArgument(ImageHubError, ValueError):
    """An argument's value is not acceptable (empty, malformed, out of range, unknown key)."""


class InvalidArgumentType(InvalidArgument, TypeError):
    """An argument has the wrong type (e.g. one string where a list of strings is due)."""


class UnboundImageError(ImageHubError):
    """An Image rebuilt from data knows no manager to act through."""


class ConfigError(ImageHubError):
    """The configuration file or a cloud's options are wrong."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        cloud: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = [f"{label} {excerpt(value, 300)}" for label, value in
                 (("file", path), ("cloud", cloud), ("key", key)) if value]
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full, hint=hint)
        self.path, self.cloud, self.key = path, cloud, key
        self.reason = message  # without the location, to re-raise with more of it


class RegistryError(ImageHubError):
    """A backend plugin could not be found or loaded."""


class BackendNotFound(RegistryError):
    def __init__(self, name: str, installed: Sequence[str]) -> None:
        names = ", ".join(sorted(installed)) or "none"
        super().__init__(
            f"no backend named {name!r}; installed backends: {names}",
            hint="check the name, or install the package that provides it",
        )
        self.name, self.installed = name, list(installed)


class BackendUnavailable(RegistryError):
    """The plugin is registered but a dependency it needs is not installed."""


class InvalidBackend(RegistryError):
    """The plugin loaded, but is not an ImageManager subclass."""


class UnsupportedOperation(ImageHubError):
    def __init__(self, backend: str, operation: str, reason: str | None = None) -> None:
        text = f"backend {backend!r} does not support {operation}"
        if reason:
            text += f": {reason}"
        super().__init__(text, backend=backend)
        self.operation = operation


class AuthenticationError(ImageHubError):
    pass


class PermissionDenied(ImageHubError):
    pass


class ImageLookupError(ImageHubError):
    pass


class ImageNotFound(ImageLookupError):
    pass


class AmbiguousImage(ImageLookupError):
    def __init__(self, ref: str, candidates: Sequence[Any], *, backend: str | None = None) -> None:
        shown = ", ".join(f"{getattr(c, 'id', c)} ({getattr(c, 'name', '') or 'unnamed'})"
                          for c in candidates[:10])
        more = f" and {len(candidates) - 10} more" if len(candidates) > 10 else ""
        super().__init__(
            f"{ref!r} matches {len(candidates)} images: {shown}{more}",
            backend=backend,
            hint="use a full id or fingerprint",
        )
        self.ref, self.candidates = ref, list(candidates)


class ImageConflict(ImageHubError):
    pass


class InvalidImageData(ImageHubError):
    pass


class QuotaExceeded(ImageHubError):
    pass


class RateLimited(ImageHubError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class BackendError(ImageHubError):
    pass


class ServerUnreachable(BackendError):
    pass


class OutputError(ImageHubError):
    """Writing an export's bytes to a local path or stream failed, or was refused."""

    def __init__(self, message: str, *, path: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.path = path


class TransferError(ImageHubError):
    pass


class ChecksumMismatch(TransferError):
    def __init__(self, what: str, expected: str, actual: str, **kw: Any) -> None:
        super().__init__(
            f"checksum mismatch for {what}: expected {expected}, got {actual}", **kw)
        self.expected, self.actual = expected, actual


class OperationError(ImageHubError):
    pass


class OperationFailed(OperationError):
    pass


class OperationTimeout(OperationError):
    pass


class MigrationError(ImageHubError):
    pass


class IncompatibleFormat(MigrationError):
    pass
