"""``lambda``: Lambda Cloud's machine images, through its public API (OpenAPI 1.8.3).

Lambda's API has one images endpoint, ``GET /api/v1/images``: no parameters, no paging,
one record per image and region. So this backend lists, filters and looks up images on
the client, picks the newest of a family with the core's ``latest``, and launches
instances from an image (``POST /api/v1/instance-operations/launch``). Everything else
(create, export, share, delete, aliases) raises ``UnsupportedOperation`` before any
request, because Lambda offers no way to do it.

The rules the API sets are kept where they apply: error codes in errors.py, request
pacing, retries and the API key in client.py, the image record's shape in records.py.
"""

from .client import Pacer
from .errors import (
    FileSystemInWrongRegion,
    InsufficientCapacity,
    InvalidBillingAddress,
    InvalidLaunchRequest,
    LaunchError,
    LaunchQuotaExceeded,
    LaunchResourceNotFound,
)
from .manager import DEFAULT_BASE_URL, LambdaManager

__all__ = [
    "DEFAULT_BASE_URL",
    "FileSystemInWrongRegion",
    "InsufficientCapacity",
    "InvalidBillingAddress",
    "InvalidLaunchRequest",
    "LambdaManager",
    "LaunchError",
    "LaunchQuotaExceeded",
    "LaunchResourceNotFound",
    "Pacer",
]
