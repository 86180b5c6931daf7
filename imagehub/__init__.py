"""imagehub: one API and CLI for machine images across clouds.

>>> import imagehub
>>> local = imagehub.connect()          # the embedded default store
>>> sorted(imagehub.Capability.__members__)[:3]
['ALIASES', 'ALL_IMAGE_OPS', 'CREATE']
"""

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
from .models import (
    Image,
    Member,
    MemberStatus,
    Visibility,
    latest,
)
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
