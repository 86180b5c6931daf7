"""The one place LXD's answers become imagehub errors, keeping LXD's own words.

LXD reports failures three ways: an HTTP error status with a JSON ``error`` text, a
failed background operation whose ``err`` holds the text, and transport failures
(refused socket, TLS mismatch). All three come through here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import requests
from pylxd import exceptions as pylxd_exceptions  # type: ignore[import-untyped]

from imagehub.errors import (
    AuthenticationError,
    BackendError,
    ChecksumMismatch,
    ImageConflict,
    ImageHubError,
    ImageNotFound,
    InvalidImageData,
    PermissionDenied,
    QuotaExceeded,
    ServerUnreachable,
    TransferError,
)

BACKEND = "lxd"

TRUST_HINT = (
    "this client's certificate is not trusted by the LXD server: set the 'trust_password' "
    "option once, or run 'lxc config trust add <client.crt>' on the server"
)

# LXD's texts for image bytes or metadata it refuses (lxd/images.go, shared/archive).
_INVALID = re.compile(
    r"unsupported compression|missing metadata\.yaml|missing creation date|"
    r"architecture isn't supported|architecture name unknown|invalid multipart image|"
    r"invalid tar header|unexpected eof|archive/tar|gzip:|xz:|zstd|bzip2|yaml:|"
    r"unsupported backup compression|failed to detect",
    re.IGNORECASE,
)
_CONFLICT = re.compile(r"already exists", re.IGNORECASE)
_MISMATCH = re.compile(r"fingerprints? (don't|do not) match|hash mismatch", re.IGNORECASE)
_QUOTA = re.compile(r"quota|not enough space|no space left", re.IGNORECASE)
_NOT_FOUND = re.compile(r"not found|doesn't exist|couldn't be found", re.IGNORECASE)


def error_text(response: requests.Response) -> str:
    """LXD's own error sentence from an error response (JSON ``error``), else the body."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip() or response.reason or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        meta = body.get("metadata")
        if isinstance(meta, dict) and meta.get("err"):
            return str(meta["err"])
        if body.get("error"):
            return str(body["error"])
    return response.text.strip()


def from_text(text: str, *, status: int | None = None, what: str = "",
              trusted: bool = True) -> ImageHubError:
    """Map one LXD error sentence (with the HTTP status when there is one)."""
    message = f"{what}: {text}" if what else text
    kw: dict[str, Any] = {"backend": BACKEND, "server_message": text, "status_code": status}
    if _MISMATCH.search(text):
        return _mismatch(message, text, kw)
    if status == 409 or _CONFLICT.search(text):
        return ImageConflict(message, **kw)
    if status == 412:
        # ETag mismatch: someone changed the record between our read and our write.
        return ImageConflict(message, hint="the image changed meanwhile; try again", **kw)
    if status == 404 or (status is None and _NOT_FOUND.search(text)):
        return ImageNotFound(message, **kw)
    if status in (401, 403):
        if not trusted:
            return AuthenticationError(message, hint=TRUST_HINT, **kw)
        return PermissionDenied(message, **kw)
    if _INVALID.search(text):
        return InvalidImageData(message, **kw)
    if _QUOTA.search(text):
        return QuotaExceeded(message, **kw)
    return BackendError(message, **kw)


def _mismatch(message: str, text: str, kw: dict[str, Any]) -> ImageHubError:
    # "fingerprints don't match, got X expected Y": the bytes LXD received do not hash to
    # what we promised in X-LXD-fingerprint.
    found = re.search(r"got ([0-9a-f]{64}) expected ([0-9a-f]{64})", text)
    if found:
        return ChecksumMismatch("image", f"sha256:{found.group(2)}",
                                f"sha256:{found.group(1)}", **kw)
    return TransferError(message, **kw)


def from_response(response: requests.Response, *, what: str = "",
                  trusted: bool = True) -> ImageHubError:
    return from_text(error_text(response), status=response.status_code, what=what,
                     trusted=trusted)


def from_transport(exc: BaseException, *, what: str = "") -> ImageHubError:
    text = str(exc)
    prefix = f"{what}: " if what else ""
    if "Fingerprints did not match" in text:
        return ServerUnreachable(
            f"{prefix}the LXD server's certificate does not match the pinned one",
            backend=BACKEND, server_message=text,
            hint="check the 'server_cert' option (or the remote's servercerts/ file)")
    if isinstance(exc, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return ServerUnreachable(
            f"{prefix}TLS verification of the LXD server failed", backend=BACKEND,
            server_message=text,
            hint="pin the server's certificate with the 'server_cert' option")
    if isinstance(exc, requests.exceptions.Timeout):
        return ServerUnreachable(f"{prefix}LXD did not answer in time", backend=BACKEND,
                                 server_message=text, hint="raise the 'timeout' option")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return TransferError(f"{prefix}the transfer was cut short", backend=BACKEND,
                             server_message=text)
    if "Connection aborted" in text or "Broken pipe" in text:
        # The server was reached and the connection then dropped: not "cannot reach".
        return TransferError(f"{prefix}the connection to LXD was lost mid-request",
                             backend=BACKEND, server_message=text,
                             hint="try again; check the daemon's log if it keeps happening")
    return ServerUnreachable(f"{prefix}cannot reach the LXD server", backend=BACKEND,
                             server_message=text,
                             hint="check the 'endpoint' option and that LXD is running")


@contextlib.contextmanager
def lxd_errors(what: str = "", *, trusted: bool = True) -> Iterator[None]:
    """Translate pylxd/requests exceptions raised inside the block."""
    try:
        yield
    except ImageHubError:
        raise
    except pylxd_exceptions.LXDAPIException as exc:
        raise from_response(exc.response, what=what, trusted=trusted) from exc
    except pylxd_exceptions.ClientConnectionFailed as exc:
        raise from_transport(exc, what=what) from exc
    except requests.exceptions.RequestException as exc:
        raise from_transport(exc, what=what) from exc
