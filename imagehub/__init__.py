"""imagehub: one API and CLI for machine images across clouds.

>>> import imagehub
>>> local = imagehub.connect()          # the embedded default store
>>> sorted(imagehub.Capability.__members__)[:3]
['ALIASES', 'ALL_IMAGE_OPS', 'CREATE']
"""

from .config import CloudConfig, Config, load_config
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
    InvalidBackend,
    InvalidImageData,
    MigrationError,
    OperationError,
    OperationFailed,
    OperationTimeout,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    RegistryError,
    ServerUnreachable,
    TransferError,
    UnsupportedOperation,
)
from .hub import CloudFailure, Hub, HubListing
from .manager import (
    Capability,
    CreateSpec,
    ImageManager,
    Option,
    Page,
    UpdateSpec,
    resolve_ref,
)
from .migrate import Plan, Progress, SyncSummary, Transfer, migrate, plan, sync
from .models import (
    Image,
    Member,
    MemberStatus,
    UnboundImageError,
    Visibility,
    latest,
    normalize_architecture,
    parse_datetime,
)
from .operations import FunctionOperation, Operation, OperationStatus
from .registry import BackendInfo, available_backends, get_backend
from .streams import CHUNK_SIZE, Hasher, ImageStream, StreamPart

__version__ = "0.1.0"

__all__ = [
    "CHUNK_SIZE",
    "AmbiguousImage",
    "AuthenticationError",
    "BackendError",
    "BackendInfo",
    "BackendNotFound",
    "BackendUnavailable",
    "Capability",
    "ChecksumMismatch",
    "CloudConfig",
    "CloudFailure",
    "Config",
    "ConfigError",
    "CreateSpec",
    "FunctionOperation",
    "Hasher",
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
    "Page",
    "PermissionDenied",
    "Plan",
    "Progress",
    "QuotaExceeded",
    "RateLimited",
    "RegistryError",
    "ServerUnreachable",
    "StreamPart",
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
    "normalize_architecture",
    "parse_datetime",
    "plan",
    "resolve_ref",
    "sync",
]
