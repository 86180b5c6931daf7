"""``lambda``: Lambda Cloud's machine images, through its public API (OpenAPI 1.8.3).

Lambda's API has one images endpoint, ``GET /api/v1/images``: no parameters, no paging,
one record per image and region. So this backend lists, filters and looks up images on
the client, picks the newest of a family with the core's ``latest``, and launches
instances from an image (``POST /api/v1/instance-operations/launch``). Everything else
(create, export, share, delete, aliases) raises ``UnsupportedOperation`` before any
request, because Lambda offers no way to do it.

Rules the API sets, kept here:

- **Errors** come as ``{"error": {"code", "message", "suggestion"}}``. Only ``code`` is
  mapped (Lambda says messages may change); message and suggestion travel in the error.
- **Limits**: 1 request/s in general, 1 launch per 12 s. The client paces itself so it
  never earns a 429; if one comes anyway (Cloudflare's plain-text "error code: 1015"), it
  is retried a bounded number of times honouring ``Retry-After``, then ``RateLimited``.
- **Retries**: 5xx and ``provider/*`` errors, cut connections and timeouts are retried
  with backoff only for requests that are safe to repeat. A launch is never repeated
  unless the server provably did not act on it (throttled at the edge, or never sent).
- **The API key** lives only inside the httpx auth hook: never in a repr, a log line, an
  error message or ``--debug`` output.
"""

from __future__ import annotations

import builtins
import contextlib
import email.utils
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, NoReturn

import httpx

from imagehub.errors import (
    AmbiguousImage,
    AuthenticationError,
    BackendError,
    ConfigError,
    ImageHubError,
    ImageNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerUnreachable,
)
from imagehub.manager import Capability, ImageManager, Option, Page, resolve_ref
from imagehub.models import Image, Visibility, parse_datetime

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

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://cloud.lambda.ai"
DEFAULT_API_KEY_ENV = "LAMBDA_API_KEY"
IMAGES_PATH = "/api/v1/images"
LAUNCH_PATH = "/api/v1/instance-operations/launch"

# The spec's info.description: "Requests to the API are generally limited to one request
# per second. Requests to the /instance-operations/launch endpoint are limited to one
# request per 12 seconds, or five requests per minute."
GENERAL_INTERVAL = 1.0
LAUNCH_INTERVAL = 12.0

# Image fields the spec marks required, in the spec's order.
_REQUIRED = ("id", "created_time", "updated_time", "name", "description", "family",
             "version", "architecture", "region")
_TEXT_FIELDS = ("id", "name", "description", "family", "version", "architecture")
# InstanceLaunchRequest fields a caller may pass through ``launch(**extra)``; the ones
# launch() builds itself (region, type, key, name, image) are not among them.
_LAUNCH_EXTRAS = frozenset({"file_system_names", "file_system_mounts", "hostname",
                            "user_data", "tags", "firewall_rulesets"})
FAMILY_PREFIX = "family:"
_UNSUPPORTED = ("Lambda Cloud's API only lists images (GET /api/v1/images) and launches "
                "instances from them; it cannot create, export, update, share, delete or "
                "alias images")


# -- errors only a launch can raise -------------------------------------------------------
class LaunchError(ImageHubError):
    """Lambda refused a launch. ``code`` is the API's error code; ``server_message`` and
    ``hint`` carry its message and suggestion."""

    def __init__(self, message: str, *, code: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.code = code


class InsufficientCapacity(LaunchError):
    """``instance-operations/launch/insufficient-capacity``"""


class FileSystemInWrongRegion(LaunchError):
    """``instance-operations/launch/file-system-in-wrong-region``"""


class InvalidLaunchRequest(LaunchError):
    """``global/invalid-parameters`` answered to a launch."""


class LaunchResourceNotFound(LaunchError):
    """``global/object-does-not-exist``: the instance type, SSH key, image or file
    system named in a launch does not exist (in that region)."""


class LaunchQuotaExceeded(LaunchError, QuotaExceeded):
    """``global/quota-exceeded`` answered to a launch."""


class InvalidBillingAddress(LaunchError, PermissionDenied):
    """``global/invalid-address``: launching needs a valid billing address."""


_LAUNCH_ERRORS: dict[str, type[LaunchError]] = {
    "instance-operations/launch/insufficient-capacity": InsufficientCapacity,
    "instance-operations/launch/file-system-in-wrong-region": FileSystemInWrongRegion,
    "global/invalid-parameters": InvalidLaunchRequest,
    "global/object-does-not-exist": LaunchResourceNotFound,
    "global/quota-exceeded": LaunchQuotaExceeded,
    "global/invalid-address": InvalidBillingAddress,
}
_GLOBAL_ERRORS: dict[str, type[ImageHubError]] = {
    "global/invalid-api-key": AuthenticationError,
    "global/account-inactive": PermissionDenied,
    "global/invalid-address": PermissionDenied,
    "global/quota-exceeded": QuotaExceeded,
}


# -- pacing -------------------------------------------------------------------------------
class Pacer:
    """Keeps requests at least ``interval`` seconds apart, across threads.

    A request may start ``interval`` after the previous one started *and* after it
    finished: waiting from the finish is what makes the spacing hold where the server
    measures it (arrivals), even when the first request paid for a TCP connect.
    ``clock`` and ``sleep`` are injectable so tests can run on a fake clock.
    """

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if interval < 0:
            raise ValueError("interval must be >= 0")
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: float | None = None

    def __repr__(self) -> str:
        return f"Pacer(interval={self.interval})"

    @contextlib.contextmanager
    def slot(self) -> Iterator[float]:
        """Wait for a turn; yields the seconds waited."""
        with self._lock:
            now = self._clock()
            waited = 0.0
            if self._next is not None and now < self._next:
                waited = self._next - now
                self._sleep(waited)
            start = max(self._clock(), now + waited)
            self._next = start + self.interval
        try:
            yield waited
        finally:
            with self._lock:
                self._next = max(self._next or 0.0, self._clock() + self.interval)


# -- authentication -----------------------------------------------------------------------
class _BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <key>`` to each request and shows the key nowhere."""

    __slots__ = ("_header",)

    def __init__(self, key: str) -> None:
        self._header = f"Bearer {key}"

    def __repr__(self) -> str:
        return "<BearerAuth key=<hidden>>"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


def _resolve_key(api_key: str | None, api_key_env: str) -> str:
    if api_key:
        return api_key
    from_env = os.environ.get(api_key_env, "")
    if from_env:
        return from_env
    raise ConfigError(
        f"no Lambda Cloud API key: set 'api_key' in the cloud's config, or the "
        f"environment variable {api_key_env}", key="api_key",
        hint="create a key at https://cloud.lambda.ai/api-keys",
    )


# -- one place that turns HTTP outcomes into imagehub errors ------------------------------
class _Failure(Exception):
    """An attempt failed: ``error`` is what the caller sees if no retry follows."""

    def __init__(self, error: ImageHubError, *, retry: bool, wait: float | None = None,
                 cause: BaseException | None = None) -> None:
        super().__init__(str(error))
        self.error, self.retry, self.wait, self.cause = error, retry, wait, cause


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """The envelope's code, message and suggestion; Nones when the body is not one."""
    try:
        doc = response.json()
    except ValueError:
        return None, None, None
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return None, None, None

    def text(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) and value else None

    return text("code"), text("message"), text("suggestion")


def _snippet(response: httpx.Response) -> str:
    body = response.text.strip().replace("\n", " ")
    return body[:200] + ("…" if len(body) > 200 else "")


@contextlib.contextmanager
def _map_transport_errors(method: str, path: str, base_url: str, timeout: float,
                          idempotent: bool) -> Iterator[None]:
    """httpx's failures to talk at all, as imagehub errors (cf. httpx's own
    ``map_httpcore_exceptions``)."""
    where = f"{method} {base_url}{path}"
    try:
        yield
    except httpx.ConnectError as exc:
        # Nothing reached the server, so even a launch may be tried again.
        raise _Failure(ServerUnreachable(f"cannot connect to Lambda Cloud for {where}: {exc}",
                                         backend="lambda", hint="check base_url and network"),
                       retry=True, cause=exc) from exc
    except httpx.TimeoutException as exc:
        raise _Failure(ServerUnreachable(
            f"Lambda Cloud did not answer {where} within {timeout:g}s ({type(exc).__name__})",
            backend="lambda", hint="raise the cloud's 'timeout' option, or try again later"),
            retry=idempotent, cause=exc) from exc
    except httpx.RemoteProtocolError as exc:
        raise _Failure(BackendError(
            f"Lambda Cloud's response to {where} was cut short: {exc}", backend="lambda",
            hint="the connection dropped mid-response; try again"),
            retry=idempotent, cause=exc) from exc
    except httpx.HTTPError as exc:
        raise _Failure(BackendError(f"talking to Lambda Cloud for {where} failed: "
                                    f"{type(exc).__name__}: {exc}", backend="lambda"),
                       retry=idempotent, cause=exc) from exc


def _status_failure(response: httpx.Response, method: str, path: str, *,
                    idempotent: bool, launch: bool) -> _Failure:
    """An unsuccessful HTTP answer, mapped on the envelope's ``code``, never ``message``."""
    status = response.status_code
    where = f"{method} {path}"
    common: dict[str, Any] = {"backend": "lambda", "status_code": status}
    if status == 429:
        # Cloudflare's plain-text page: the API never saw the request, so a retry is safe
        # even for a launch.
        after = _retry_after(response)
        return _Failure(RateLimited(f"Lambda Cloud throttled {where} (HTTP 429: "
                                    f"{_snippet(response)!r})", retry_after=after, **common),
                        retry=True, wait=after)
    code, message, suggestion = _error_fields(response)
    common.update(server_message=message, hint=suggestion)
    label = f" [{code}]" if code else ""
    if launch and code in _LAUNCH_ERRORS:
        return _Failure(_LAUNCH_ERRORS[code](f"Lambda Cloud refused the launch{label}",
                                             code=code or "", **common), retry=False)
    if code in _GLOBAL_ERRORS:
        cls = _GLOBAL_ERRORS[code or ""]
        return _Failure(cls(f"Lambda Cloud refused {where}{label}", **common), retry=False)
    if (code or "").startswith("provider/") or status >= 500:
        if message is None and code is None:
            common["server_message"] = _snippet(response) or None
        kind = "an upstream provider failed" if code and code.startswith("provider/") \
            else "server error"
        return _Failure(BackendError(f"Lambda Cloud {kind} on {where} (HTTP {status}){label}",
                                     **common), retry=idempotent)
    # The spec's own error codes are handled above; these fallbacks cover gateways and
    # future codes, still keyed on status rather than any message text.
    if status == 401:
        return _Failure(AuthenticationError(f"Lambda Cloud refused {where} (HTTP 401){label}",
                                            **common), retry=False)
    if status == 403:
        return _Failure(PermissionDenied(f"Lambda Cloud refused {where} (HTTP 403){label}",
                                         **common), retry=False)
    if message is None:
        common["server_message"] = _snippet(response) or None
    if status == 404 and code is None:
        common["hint"] = "check the cloud's base_url (the API lives under /api/v1/)"
    return _Failure(BackendError(f"Lambda Cloud answered {where} with HTTP {status}{label}",
                                 **common), retry=False)


# -- the manager --------------------------------------------------------------------------
class LambdaManager(ImageManager):
    """Lambda Cloud's images (read-only) and instance launch."""

    name = "lambda"
    capabilities = Capability.LIST | Capability.GET | Capability.LAUNCH
    unsupported_reason = _UNSUPPORTED
    options = {
        "api_key": Option(str, secret=True,
                          help=f"API key (else read from api_key_env, default "
                               f"{DEFAULT_API_KEY_ENV})"),
        "api_key_env": Option(str, default=DEFAULT_API_KEY_ENV,
                              help="environment variable holding the API key"),
        "base_url": Option(str, default=DEFAULT_BASE_URL, help="API root (without /api/v1)"),
        "timeout": Option(float, default=30.0, help="seconds to wait for each response"),
        "max_retries": Option(int, default=3,
                              help="extra attempts after a throttled or failed request"),
    }
    # The API has no paging: one GET returns every record, so all() must ask once.
    page_size = sys.maxsize

    def __init__(
        self,
        *,
        cloud: str | None = None,
        api_key: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        max_retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        pacer: Pacer | None = None,
        launch_pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff: float = 1.0,
        max_retry_wait: float = 60.0,
    ) -> None:
        super().__init__(cloud=cloud)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got "
                              f"{base_url!r}", key="base_url")
        if timeout <= 0:
            raise ConfigError("timeout must be a positive number of seconds", key="timeout")
        if max_retries < 0:
            raise ConfigError("max_retries must be 0 or more", key="max_retries")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self._pacer = pacer if pacer is not None else Pacer(GENERAL_INTERVAL)
        self._launch_pacer = launch_pacer if launch_pacer is not None else Pacer(LAUNCH_INTERVAL)
        self._sleep = sleep
        self._backoff = backoff
        self._max_retry_wait = max_retry_wait
        # One client: keep-alive across calls, and the key sealed in its auth hook.
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=_BearerAuth(_resolve_key(api_key, api_key_env)),
            timeout=httpx.Timeout(self.timeout),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "imagehub-lambda"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"<LambdaManager cloud={self.cloud!r} base_url={self.base_url!r}>"

    def close(self) -> None:
        self._client.close()

    # -- HTTP -----------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
              idempotent: bool, launch: bool = False) -> Any:
        """One API call with pacing, bounded retries and error mapping; returns the
        envelope's ``data``."""
        pacers = [self._pacer, self._launch_pacer] if launch else [self._pacer]
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(method, path, body, pacers, idempotent, launch, attempt)
            except _Failure as failure:
                self._after_failure(failure, attempt, method, path)

    def _attempt(self, method: str, path: str, body: Mapping[str, Any] | None,
                 pacers: builtins.list[Pacer], idempotent: bool, launch: bool,
                 attempt: int) -> Any:
        with contextlib.ExitStack() as stack:
            for pacer in pacers:
                stack.enter_context(pacer.slot())
            started = time.monotonic()
            with _map_transport_errors(method, path, self.base_url, self.timeout, idempotent):
                response = self._client.request(method, path, json=body)
            log.debug("%s %s -> HTTP %s in %.3fs (attempt %d)", method, path,
                      response.status_code, time.monotonic() - started, attempt)
        if not response.is_success:
            raise _status_failure(response, method, path, idempotent=idempotent, launch=launch)
        try:
            doc = response.json()
        except ValueError as exc:
            raise _Failure(BackendError(
                f"Lambda Cloud sent malformed JSON for {method} {path} (HTTP "
                f"{response.status_code}): {exc}", backend=self.name,
                status_code=response.status_code, server_message=_snippet(response) or None),
                retry=False, cause=exc) from exc
        if not isinstance(doc, dict) or "data" not in doc:
            raise _Failure(BackendError(
                f"Lambda Cloud's answer to {method} {path} has no 'data' field",
                backend=self.name, server_message=_snippet(response) or None), retry=False)
        return doc["data"]

    def _after_failure(self, failure: _Failure, attempt: int, method: str,
                       path: str) -> None:
        """Sleep before the next attempt, or raise the mapped error."""
        error = failure.error
        too_long = failure.wait is not None and failure.wait > self._max_retry_wait
        if not failure.retry or attempt > self.max_retries or too_long:
            if isinstance(error, RateLimited):
                error.message += (f"; gave up after {attempt} attempt(s)" if not too_long else
                                  f"; Retry-After {failure.wait:g}s exceeds the "
                                  f"{self._max_retry_wait:g}s this client waits")
            self._raise(error, failure.cause)
        wait = failure.wait if failure.wait is not None else \
            min(30.0, self._backoff * 2 ** (attempt - 1))
        log.debug("%s %s failed (%s); retry %d/%d in %.2fs", method, path,
                  type(error).__name__, attempt, self.max_retries, wait)
        self._sleep(wait)

    @staticmethod
    def _raise(error: ImageHubError, cause: BaseException | None) -> NoReturn:
        raise error from cause

    # -- images ---------------------------------------------------------------------------
    def _fetch(self) -> builtins.list[Image]:
        data = self._call("GET", IMAGES_PATH, idempotent=True)
        if not isinstance(data, builtins.list):
            raise BackendError(f"Lambda Cloud's {IMAGES_PATH} 'data' is not a list",
                               backend=self.name)
        return [self._image(record, index) for index, record in enumerate(data)]

    def _image(self, record: Any, index: int) -> Image:
        if not isinstance(record, dict):
            raise BackendError(f"Lambda Cloud image record #{index} is not an object",
                               backend=self.name)
        label = record["id"] if isinstance(record.get("id"), str) else f"#{index}"

        def bad(what: str) -> BackendError:
            return BackendError(f"Lambda Cloud image record {label} {what}", backend=self.name,
                                hint="the API's answer does not match its spec (1.8.3)")

        for field in _REQUIRED:
            if record.get(field) is None:
                raise bad(f"is missing required field {field!r}")
        for field in _TEXT_FIELDS:
            if not isinstance(record[field], str):
                raise bad(f"has a non-string {field!r}: {record[field]!r}")
        region = record["region"]
        if not isinstance(region, dict):
            raise bad("has a 'region' that is not an object")
        for field in ("name", "description"):
            if not isinstance(region.get(field), str):
                raise bad(f"is missing required field 'region.{field}'")
        stamps: dict[str, datetime | None] = {}
        for field in ("created_time", "updated_time"):
            try:
                # The spec's date-time is text; a number would mean the API changed.
                if not isinstance(record[field], str):
                    raise TypeError(field)
                stamps[field] = parse_datetime(record[field])
            except (TypeError, ValueError):
                raise bad(f"has {field!r} that is not an ISO 8601 date-time: "
                          f"{record[field]!r}") from None
        return Image(
            id=record["id"], name=record["name"], backend=self.name,
            description=record["description"], family=record["family"],
            version=record["version"], architecture=record["architecture"],
            region=region["name"], created_at=stamps["created_time"],
            updated_at=stamps["updated_time"],
            # Lambda's images are offered to every account.
            visibility=Visibility.PUBLIC, status="active",
            properties={"region_description": region["description"]},
            raw=dict(record),
        )

    def _list(self, limit: int | None, marker: str | None,
              filters: Mapping[str, Any]) -> Page:
        images = self._fetch()
        start = 0
        if marker is not None:
            ids = [i.id for i in images]
            if marker not in ids:
                raise ImageNotFound(f"marker {marker!r} is not an image id", backend=self.name)
            start = ids.index(marker) + 1
        end = len(images) if limit is None else min(len(images), start + limit)
        page = images[start:end]
        more = end < len(images) and bool(page)
        return Page(page, page[-1].id if more else None)

    def _get(self, ref: str, filters: Mapping[str, Any]) -> Image:
        candidates = builtins.list(self.all(**filters))
        try:
            return resolve_ref(candidates, ref, backend=self.name)
        except AmbiguousImage as exc:
            regions = sorted({i.region or "" for i in exc.candidates})
            if len(regions) > 1 and "region" not in filters:
                exc.hint = (f"Lambda lists one record per region ({', '.join(regions)}); "
                            f"use the id, or name the region: get({ref!r}, "
                            f"region={regions[0]!r}), or on the command line "
                            f"list --filter name={ref} --filter region={regions[0]}")
            raise

    # -- launch ---------------------------------------------------------------------------
    def _launch(self, image: Image | str, region: str, instance_type: str, ssh_key: str,
                name: str | None, extra: Mapping[str, Any]) -> builtins.list[str]:
        unknown = sorted(set(extra) - _LAUNCH_EXTRAS)
        if unknown:
            raise ImageHubError(f"unknown launch option(s) {', '.join(unknown)}; Lambda's "
                                f"launch also accepts: {', '.join(sorted(_LAUNCH_EXTRAS))}",
                                backend=self.name)
        for what, value in (("region", region), ("instance type", instance_type),
                            ("SSH key name", ssh_key)):
            if not isinstance(value, str) or not value.strip():
                raise ImageHubError(f"launch needs a {what}", backend=self.name)
        if name is not None and len(name) > 64:
            raise ImageHubError("Lambda instance names are at most 64 characters",
                                backend=self.name)
        body: dict[str, Any] = {
            "region_name": region,
            "instance_type_name": instance_type,
            # The spec: "Currently, exactly one SSH key must be specified."
            "ssh_key_names": [ssh_key],
            "image": self._image_spec(image, region),
            **extra,
        }
        if name is not None:
            body["name"] = name
        data = self._call("POST", LAUNCH_PATH, body, idempotent=False, launch=True)
        ids = data.get("instance_ids") if isinstance(data, dict) else None
        if not isinstance(ids, builtins.list) or not all(isinstance(i, str) for i in ids):
            raise BackendError("Lambda Cloud's launch answer has no list of instance_ids",
                               backend=self.name)
        return builtins.list(ids)

    def _image_spec(self, image: Image | str, region: str) -> dict[str, str]:
        """``{"family": ...}`` for ``family:NAME`` (Lambda picks the newest), else the
        ``{"id": ...}`` of the image record in the launch region."""
        if isinstance(image, str) and image.startswith(FAMILY_PREFIX):
            family = image[len(FAMILY_PREFIX):]
            if not family:
                raise ImageHubError("'family:' needs a family name, e.g. family:lambda-stack",
                                    backend=self.name)
            return {"family": family}
        if isinstance(image, Image) and image.backend in ("", self.name):
            if image.region not in (None, region):
                raise ImageNotFound(
                    f"image {image.id} ({image.name}) is in {image.region}, not {region}",
                    backend=self.name,
                    hint=f"use the same image's record in {region}, or family:{image.family}")
            return {"id": image.id}
        ref = image.id if isinstance(image, Image) else image
        try:
            found = self.get(ref, region=region)
        except ImageNotFound as exc:
            exc.hint = (f"no image {ref!r} in {region}; to launch the newest image of a "
                        f"family, pass 'family:NAME' (e.g. family:lambda-stack)")
            raise
        return {"id": found.id}
