"""imagehub: one API and CLI for machine images across clouds.

>>> import imagehub
>>> local = imagehub.connect()          # the embedded default store
>>> sorted(imagehub.Capability.__members__)[:3]
['ALIASES', 'ALL_IMAGE_OPS', 'CREATE']
"""

import importlib
import sys
import types
import typing as _typing

if _typing.TYPE_CHECKING:
    from .config import Config, load_config
    from .connect import connect
    from .errors import (
        AmbiguousImage,
        AuthenticationError,
        BackendError,
        BackendNotFound,
        BackendUnavailable,
        ChecksumMismatch,
        ConfigError,
        ImageConflict,
        ImageHubError,
        ImageLookupError,
        ImageNotFound,
        IncompatibleFormat,
        InvalidArgument,
        InvalidArgumentType,
        InvalidBackend,
        InvalidImageData,
        MigrationError,
        OperationError,
        OperationFailed,
        OperationTimeout,
        OutputError,
        PermissionDenied,
        QuotaExceeded,
        RateLimited,
        RegistryError,
        ServerUnreachable,
        TransferError,
        UnboundImageError,
        UnsupportedOperation,
    )
    from .hub import CloudFailure, Hub, HubListing
    from .manager import Capability, ImageManager, Option, Page, UpdateSpec
    from .migration import Plan, Progress, SyncSummary, Transfer, migrate, plan, sync
    from .models import Image, Member, MemberStatus, Visibility, latest
    from .operations import Operation, OperationStatus
    from .registry import BackendInfo, available_backends, get_backend
    from .streams import ImageStream

__version__ = "0.1.0"  # the one version source: setup.cfg reads it

# What users of the API and CLI need, and what plugin authors subclass. Plumbing
# (CreateSpec, StreamPart, Hasher, CHUNK_SIZE, FunctionOperation, resolve_ref,
# parse_datetime, ...) stays importable from its module: imagehub.manager,
# imagehub.streams, imagehub.operations, imagehub.models, imagehub.config.

__all__ = [
    "AmbiguousImage",
    "AuthenticationError",
    "BackendError",
    "BackendInfo",
    "BackendNotFound",
    "BackendUnavailable",
    "Capability",
    "ChecksumMismatch",
    "CloudFailure",
    "Config",
    "ConfigError",
    "Hub",
    "HubListing",
    "Image",
    "ImageConflict",
    "ImageHubError",
    "ImageLookupError",
    "ImageManager",
    "ImageNotFound",
    "ImageStream",
    "IncompatibleFormat",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidBackend",
    "InvalidImageData",
    "Member",
    "MemberStatus",
    "MigrationError",
    "Operation",
    "OperationError",
    "OperationFailed",
    "OperationStatus",
    "OperationTimeout",
    "Option",
    "OutputError",
    "Page",
    "PermissionDenied",
    "Plan",
    "Progress",
    "QuotaExceeded",
    "RateLimited",
    "RegistryError",
    "ServerUnreachable",
    "SyncSummary",
    "Transfer",
    "TransferError",
    "UnboundImageError",
    "UnsupportedOperation",
    "UpdateSpec",
    "Visibility",
    "available_backends",
    "connect",
    "get_backend",
    "latest",
    "load_config",
    "migrate",
    "plan",
    "sync",
]


# Each public name is imported from its module on first use (PEP 562), so `import imagehub`
# (and the CLI's start-up) pays for no YAML parser, entry-point scan, migration machinery
# or backend SDK until a call needs one. The table is checked against __all__ by a test.
_ERRORS = (
    "AmbiguousImage", "AuthenticationError", "BackendError", "BackendNotFound",
    "BackendUnavailable", "ChecksumMismatch", "ConfigError", "ImageConflict",
    "ImageHubError", "ImageLookupError", "ImageNotFound", "IncompatibleFormat",
    "InvalidArgument", "InvalidArgumentType", "InvalidBackend", "InvalidImageData",
    "MigrationError", "OperationError", "OperationFailed", "OperationTimeout", "OutputError",
    "PermissionDenied", "QuotaExceeded", "RateLimited", "RegistryError", "ServerUnreachable",
    "TransferError", "UnboundImageError", "UnsupportedOperation",
)
_HOMES: dict[str, str] = {
    **dict.fromkeys(_ERRORS, "errors"),
    **dict.fromkeys(("Config", "load_config"), "config"),
    "connect": "connect",
    **dict.fromkeys(("CloudFailure", "Hub", "HubListing"), "hub"),
    **dict.fromkeys(("Capability", "ImageManager", "Option", "Page", "UpdateSpec"), "manager"),
    **dict.fromkeys(("Plan", "Progress", "SyncSummary", "Transfer", "migrate", "plan",
                     "sync"), "migration"),
    **dict.fromkeys(("Image", "Member", "MemberStatus", "Visibility", "latest"), "models"),
    **dict.fromkeys(("Operation", "OperationStatus"), "operations"),
    **dict.fromkeys(("BackendInfo", "available_backends", "get_backend"), "registry"),
    "ImageStream": "streams",
}


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    # Cached as a plain attribute: the next lookup does not come back here. The name
    # `connect` is both a submodule and a function; the function wins, as it did when
    # it was imported eagerly.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    # Importing the submodule imagehub.connect binds it on the package, which would hide
    # the function of the same name users call as imagehub.connect(...). The submodule
    # stays reachable through sys.modules and `from imagehub.connect import`.
    def __setattr__(self, name: str, value: _typing.Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


_SHADOWED = frozenset({"connect"})
sys.modules[__name__].__class__ = _Package
