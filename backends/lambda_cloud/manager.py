"""LambdaManager: Lambda Cloud's images, listed and looked up on the client, and launch.

Lambda's API has one images endpoint with no parameters and no paging, so every listing
is one GET whose records are filtered, paged and resolved here.
"""

from __future__ import annotations

import builtins
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from imagehub import _redact, _tls
from imagehub._limits import check_retries, check_timeout
from imagehub.errors import (
    AmbiguousImage,
    BackendError,
    ConfigError,
    ImageNotFound,
    InvalidArgument,
)
from imagehub.manager import Capability, ImageManager, Option, Page, resolve_ref
from imagehub.models import Image

from .client import GENERAL_INTERVAL, LAUNCH_INTERVAL, LambdaClient, Pacer, resolve_key
from .errors import BACKEND
from .records import image_from_record

DEFAULT_BASE_URL = "https://cloud.lambda.ai"
DEFAULT_API_KEY_ENV = "LAMBDA_API_KEY"
IMAGES_PATH = "/api/v1/images"
LAUNCH_PATH = "/api/v1/instance-operations/launch"

# InstanceLaunchRequest fields a caller may pass through ``launch(**extra)``; the ones
# launch() builds itself (region, type, key, name, image) are not among them.
_LAUNCH_EXTRAS = frozenset({"file_system_names", "file_system_mounts", "hostname",
                            "user_data", "tags", "firewall_rulesets"})
FAMILY_PREFIX = "family:"
_UNSUPPORTED = ("Lambda Cloud's API only lists images (GET /api/v1/images) and launches "
                "instances from them; it cannot create, export, update, share, delete or "
                "alias images")


class LambdaManager(ImageManager):
    """Lambda Cloud's images (read-only) and instance launch."""

    name = BACKEND
    capabilities = Capability.LIST | Capability.GET | Capability.LAUNCH
    unsupported_reason = _UNSUPPORTED
    launch_refs = {FAMILY_PREFIX: "to launch the newest image of a family, pass "
                                  "'family:NAME' (e.g. family:lambda-stack)"}
    options = {
        "api_key": Option(str, secret=True, env=DEFAULT_API_KEY_ENV,
                          help=f"API key (or api_key_env: VARIABLE; else read from "
                               f"{DEFAULT_API_KEY_ENV})"),
        "base_url": Option(str, default=DEFAULT_BASE_URL, help="API root (without /api/v1)"),
        "timeout": Option(float, default=30.0,
                          help="seconds each request may take in all (connect, wait, read)"),
        "verify": Option((bool, str), default=True,
                         help="TLS verification: true, false, or a CA file or directory"),
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
        verify: bool | str = True,
    ) -> None:
        super().__init__(cloud=cloud)
        _redact.register(api_key, *_userinfo_secrets(base_url))
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got "
                              f"{_redact.excerpt(base_url)}", key="base_url")
        timeout = check_timeout(timeout)
        checked = _tls.check_verify(verify, cloud=cloud)
        if checked is False:
            _tls.warn_insecure(f"cloud {cloud or BACKEND!r}")
        _tls.warn_cleartext(base_url, "the API key and answers")
        max_retries = check_retries(max_retries, key="max_retries")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self._client = LambdaClient(
            base_url=self.base_url,
            key=resolve_key(api_key, api_key_env),
            timeout=self.timeout,
            max_retries=max_retries,
            transport=transport,
            pacer=pacer if pacer is not None else Pacer(GENERAL_INTERVAL),
            launch_pacer=launch_pacer if launch_pacer is not None else Pacer(LAUNCH_INTERVAL),
            sleep=sleep,
            backoff=backoff,
            max_retry_wait=max_retry_wait,
            verify=_tls.effective_verify(checked),
        )

    def __repr__(self) -> str:
        return _redact.redact(f"<LambdaManager cloud={self.cloud!r} base_url={self.base_url!r}>")

    def close(self) -> None:
        self._client.close()

    # -- images ---------------------------------------------------------------------------
    def _fetch(self) -> builtins.list[Image]:
        data = self._client.call("GET", IMAGES_PATH, idempotent=True)
        if not isinstance(data, builtins.list):
            raise BackendError(f"Lambda Cloud's {IMAGES_PATH} 'data' is not a list",
                               backend=self.name)
        return [image_from_record(record, index, backend=self.name)
                for index, record in enumerate(data)]

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
                said = f"Lambda lists one record per region ({', '.join(regions)}); "
                exc.hint = (f"{said}use the id, or name the region: get({ref!r}, "
                            f"region={regions[0]!r})")
                exc.cli_hint = (f"{said}use the id, or name the region: --region "
                                f"{regions[0]}")
            raise

    # -- launch ---------------------------------------------------------------------------
    def _launch(self, image: Image | str, region: str, instance_type: str, ssh_key: str,
                name: str | None, extra: Mapping[str, Any]) -> builtins.list[str]:
        unknown = sorted(set(extra) - _LAUNCH_EXTRAS)
        if unknown:
            raise InvalidArgument(f"unknown launch option(s) {', '.join(unknown)}; Lambda's "
                                  f"launch also accepts: {', '.join(sorted(_LAUNCH_EXTRAS))}",
                                  backend=self.name)
        for what, value in (("region", region), ("instance type", instance_type),
                            ("SSH key name", ssh_key)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidArgument(f"launch needs a {what}", backend=self.name)
        if name is not None and len(name) > 64:
            raise InvalidArgument("Lambda instance names are at most 64 characters",
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
        data = self._client.call("POST", LAUNCH_PATH, body, idempotent=False, launch=True)
        ids = data.get("instance_ids") if isinstance(data, dict) else None
        if not isinstance(ids, builtins.list) or not all(isinstance(i, str) for i in ids):
            raise BackendError("Lambda Cloud's launch answer has no list of instance_ids",
                               backend=self.name)
        return builtins.list(ids)

    def _image_spec(self, image: Image | str, region: str) -> dict[str, str]:
        """``{"family": ...}`` for ``family:NAME`` (Lambda picks the newest), else the
        ``{"id": ...}`` of the image record, which must be in the launch region."""
        if isinstance(image, str):
            # launch() hands over only the refs named in launch_refs, resolved by Lambda.
            family = image[len(FAMILY_PREFIX):]
            if not family:
                raise InvalidArgument("'family:' needs a family name, e.g. family:lambda-stack",
                                      backend=self.name)
            return {"family": family}
        if image.region not in (None, region):
            raise ImageNotFound(
                f"image {image.id} ({image.name}) is in {image.region}, not {region}",
                backend=self.name,
                hint=f"use the same image's record in {region}, or family:{image.family}")
        return {"id": image.id}


def _userinfo_secrets(url: str) -> tuple[str, ...]:
    """A base_url's userinfo (``https://user:pass@host``) parts: credentials too."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return ()
    return tuple(p for p in (parts.password, parts.username) if p)
