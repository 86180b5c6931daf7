"""What an OpenStack cloud resolved to, and where each value came from."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from imagehub._redact import redact
from imagehub.errors import ConfigError

from .cloudkeys import SECRET_KEYS

DEFAULT = "openstack default"
OPTIONS = "imagehub options"
INFERRED = "inferred from the auth keys"


@dataclasses.dataclass(frozen=True)
class ResolvedCloud:
    """What a cloud resolved to, and the file (or variable) each value came from."""

    name: str
    auth_type: str
    auth: Mapping[str, Any]
    region_name: str | None
    interface: str | None
    endpoint_override: str | None
    image_api_version: str | None
    identity_api_version: str | None
    verify: bool | str
    cert: str | tuple[str, str] | None
    api_timeout: float | None
    sources: Mapping[str, str]
    ignored: Mapping[str, str]

    def __repr__(self) -> str:
        return f"ResolvedCloud(name={self.name!r}, auth_type={self.auth_type!r}, " \
               f"auth_keys={sorted(self.auth)}, region_name={self.region_name!r})"

    __str__ = __repr__

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary with every secret left out (keys only, never values)."""
        auth = self.auth
        shown = ("auth_url", "username", "user_id", "user_domain_name", "user_domain_id",
                 "project_name", "project_id", "project_domain_name", "project_domain_id",
                 "domain_name", "domain_id", "application_credential_id",
                 "application_credential_name", "system_scope", "endpoint")
        out: dict[str, Any] = {"cloud": self.name, "auth_type": self.auth_type}
        out.update({k: redact(str(auth[k])) if k in ("auth_url", "endpoint") else auth[k]
                    for k in shown if auth.get(k) is not None})
        out["secrets_set"] = sorted(k for k in auth if k in SECRET_KEYS)
        out.update(region_name=self.region_name, interface=self.interface,
                   endpoint_override=redact(self.endpoint_override)
                   if self.endpoint_override else None,
                   image_api_version=self.image_api_version,
                   identity_api_version=self.identity_api_version,
                   verify=self.verify, cert=self.cert, api_timeout=self.api_timeout)
        # Where a secret came from is no secret: it tells the user which file to fix.
        out["sources"] = dict(sorted(self.sources.items()))
        out["ignored"] = dict(self.ignored)
        return out


def resolved(name: str, config: Mapping[str, Any], src: Mapping[str, str],
              ignored: Mapping[str, str]) -> ResolvedCloud:
    auth = dict(config["auth"])
    verify: Any = config.get("verify", True)
    cacert = config.get("cacert")
    if config.get("insecure"):
        verify = False
    if verify and cacert:
        verify = os.path.expanduser(str(cacert))
    cert: Any = config.get("cert")
    if cert:
        cert = os.path.expanduser(str(cert))
        if config.get("key"):
            cert = (cert, os.path.expanduser(str(config["key"])))
    endpoint = config.get("image_endpoint_override") or config.get("image_endpoint")
    if not endpoint and config["auth_type"] == "none":
        endpoint = auth.get("endpoint")
    interface = config.get("image_interface") or config.get("interface")
    if interface is not None and not isinstance(interface, str):
        raise ConfigError("imagehub takes one interface (public, internal or admin), "
                          "not a list", cloud=name, key="interface")
    region = config.get("image_region_name") or config.get("region_name")
    version = config.get("image_api_version")
    try:
        float(version or "x")
    except ValueError:
        version = None  # openstacksdk ignores a version that is not a number
    if version and not str(version).startswith("2"):
        raise ConfigError(f"image_api_version {version!r}: imagehub speaks the Image API "
                          "v2 only", cloud=name, key="image_api_version")
    timeout = config.get("api_timeout")
    try:
        timeout = float(timeout) if timeout else None
    except (TypeError, ValueError):
        raise ConfigError("must be a number of seconds", cloud=name,
                          key="api_timeout") from None
    identity = config.get("identity_api_version")
    sources = dict(src)
    for alias, real in (("endpoint_override", "image_endpoint_override"),
                        ("interface", "image_interface"), ("region_name", "image_region_name")):
        if real in sources and config.get(real):
            sources[alias] = sources[real]
    if not config.get("image_endpoint_override") and config.get("image_endpoint"):
        sources["endpoint_override"] = sources.get("image_endpoint", "?")
    elif not endpoint:
        sources.pop("endpoint_override", None)
    elif config["auth_type"] == "none" and not config.get("image_endpoint_override"):
        sources["endpoint_override"] = sources.get("auth.endpoint", "?")
    return ResolvedCloud(
        name=name, auth_type=str(config["auth_type"]), auth=auth,
        region_name=str(region) if region else None, interface=interface,
        endpoint_override=str(endpoint) if endpoint else None,
        image_api_version=str(version) if version else None,
        identity_api_version=str(identity) if identity is not None else None,
        verify=verify, cert=cert, api_timeout=timeout,
        sources={k: v for k, v in sources.items()
                 if k in _SHOWN_SOURCES or k.startswith("auth.")},
        ignored=ignored)


_SHOWN_SOURCES = frozenset({
    "auth_type", "region_name", "interface", "endpoint_override", "image_api_version",
    "identity_api_version", "verify", "insecure", "cacert", "cert", "key", "api_timeout",
    "profile"})
