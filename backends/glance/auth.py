"""Building a keystoneauth1 Session from what OpenStack users already have.

Sources, first match wins:

1. inline options: ``auth_type`` and/or ``auth`` (the mapping clouds.yaml uses);
2. OpenStack's own configuration, read as the openstack CLI reads it (:mod:`.clouds`):
   the ``cloud`` option, else ``$OS_CLOUD``, else the ``OS_*`` variables, else the only
   cloud of ``clouds.yaml``; imagehub's options override what it sets.

Secrets (passwords, tokens, application credential secrets) only ever reach the
keystoneauth1 plugin: :class:`AuthSettings` hides them in its repr, and error
messages name missing keys, never values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading, session

from imagehub import _tls
from imagehub._redact import redact
from imagehub.errors import ConfigError

from . import clouds
from .cloudkeys import SECRET_KEYS
from .session import build as build_session

__all__ = ["SDK_OPTION_NAMES", "SECRET_KEYS", "AuthSettings", "describe", "from_inline",
           "from_resolved", "resolve", "resolve_cloud"]


@dataclasses.dataclass(frozen=True)
class AuthSettings:
    """Where and how to authenticate; ``repr`` never shows secret values."""

    auth_type: str
    auth: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    region_name: str | None = None
    interface: str = "public"
    endpoint_override: str | None = None
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    timeout: float | None = None
    source: str = "options"

    def __repr__(self) -> str:
        shown = {k: ("<hidden>" if k in SECRET_KEYS else v) for k, v in self.auth.items()}
        return redact(f"AuthSettings(auth_type={self.auth_type!r}, auth={shown!r}, "
                      f"region_name={self.region_name!r}, interface={self.interface!r}, "
                      f"endpoint_override={self.endpoint_override!r}, source={self.source!r})")

    __str__ = __repr__

    def session(self) -> session.Session:
        try:
            loader: Any = loading.get_plugin_loader(self.auth_type)
        except ks_exc.NoMatchingPlugin:
            names = ", ".join(sorted(loading.get_available_plugin_names()))
            raise ConfigError(f"unknown auth_type {self.auth_type!r} (available: {names})",
                              key="auth_type") from None
        known = {o.dest for o in loader.get_options()} | {
            d.dest for o in loader.get_options() for d in o.deprecated}
        unknown = sorted(set(self.auth) - known)
        if unknown:
            raise ConfigError(
                f"auth keys not used by auth_type {self.auth_type!r}: {', '.join(unknown)}",
                key="auth", hint=f"{self.auth_type} takes: {', '.join(sorted(known))}")
        try:
            plugin = loader.load_from_options(**dict(self.auth))
        except ks_exc.MissingRequiredOptions as exc:
            names = ", ".join(sorted(o.dest for o in exc.options))
            raise ConfigError(f"auth_type {self.auth_type!r} needs: {names}",
                              key="auth") from None
        except ks_exc.OptionError as exc:
            raise ConfigError(f"invalid auth for {self.auth_type!r}: {exc}", key="auth") \
                from None
        return build_session(plugin, options=self.auth, verify=self.verify, cert=self.cert,
                             timeout=self.timeout, where=f"Glance ({self.source})",
                             endpoint=self.endpoint_override)


def _verify(verify: Any, cacert: Any) -> Any:
    # Passed on as given, for the one TLS check (imagehub._tls) to accept or refuse: a
    # string is a CA path, never a boolean spelt "false"/"no" that turns TLS off.
    if verify is False:
        return False
    if cacert:
        return str(cacert)
    return verify


def _guess_auth_type(auth: Mapping[str, Any], endpoint: str | None) -> str:
    if auth.get("application_credential_id") or auth.get("application_credential_name"):
        return "v3applicationcredential"
    if auth.get("token"):
        return "token"
    if not auth.get("auth_url") and (endpoint or auth.get("endpoint")):
        return "none"
    return "password"


def from_inline(options: Mapping[str, Any]) -> AuthSettings:
    auth = dict(options.get("auth") or {})
    endpoint = options.get("endpoint_override")
    auth_type = options.get("auth_type") or _guess_auth_type(auth, endpoint)
    if auth_type == "none":
        # keystoneauth1's 'none' plugin takes the endpoint; accept it in either place.
        endpoint = endpoint or auth.get("endpoint")
        if not endpoint:
            raise ConfigError("auth_type 'none' needs an endpoint",
                              key="endpoint_override",
                              hint="set endpoint_override (or auth: {endpoint: URL})")
        auth = {"endpoint": endpoint}
    if options.get("cacert") is not None and options.get("verify") is not False:
        # Checked here so the error names 'cacert', not the 'verify' it is folded into.
        _tls.check_verify(True, cacert=options.get("cacert"))
    return AuthSettings(
        auth_type=str(auth_type), auth=auth,
        region_name=options.get("region_name"),
        interface=options.get("interface") or "public",
        endpoint_override=endpoint,
        verify=_verify(options.get("verify", True), options.get("cacert")),
        cert=options.get("cert"),
        timeout=options.get("timeout"),
        source="options",
    )


def from_resolved(cloud: clouds.ResolvedCloud) -> AuthSettings:
    auth = dict(cloud.auth)
    if cloud.auth_type in ("none", "admin_token") and not cloud.endpoint_override \
            and not auth.get("endpoint"):
        raise ConfigError(f"auth_type {cloud.auth_type!r} needs an endpoint", cloud=cloud.name,
                          key="image_endpoint_override",
                          hint="set image_endpoint_override (or auth: {endpoint: URL})")
    if cloud.auth_type == "none":
        # keystoneauth1's 'none' plugin serves its endpoint to every service.
        auth = {"endpoint": cloud.endpoint_override or auth["endpoint"]}
    return AuthSettings(
        auth_type=cloud.auth_type, auth=auth, region_name=cloud.region_name,
        interface=cloud.interface or "public", endpoint_override=cloud.endpoint_override,
        verify=cloud.verify, cert=cloud.cert, timeout=cloud.api_timeout,
        source=f"OpenStack cloud {cloud.name!r}")


# imagehub's own option names, as openstacksdk's get_one() takes them.
SDK_OPTION_NAMES = {"region_name": "region_name", "interface": "image_interface",
                    "endpoint_override": "image_endpoint_override",
                    "timeout": "api_timeout", "verify": "verify", "cacert": "cacert"}


def resolve_cloud(options: Mapping[str, Any]) -> clouds.ResolvedCloud:
    """The OpenStack cloud ``options`` name (or OS_CLOUD, the OS_* variables...)."""
    overrides = {SDK_OPTION_NAMES[k]: v for k, v in options.items()
                 if k in SDK_OPTION_NAMES and v is not None}
    config = clouds.OpenStackClientConfig()
    if not options.get("cloud") and not config.default_cloud and config.clouds:
        raise ConfigError(f"{config.config_path} has several clouds "
                          f"({', '.join(sorted(config.clouds))}) and none is chosen",
                          key="cloud", hint="set 'cloud' in imagehub's config, or OS_CLOUD")
    if not (options.get("cloud") or config.default_cloud):
        raise ConfigError(
            "no OpenStack credentials: set 'auth' (and 'auth_type'), 'cloud' (a clouds.yaml "
            "entry), OS_CLOUD, or OS_AUTH_URL and friends",
            hint="see docs/backends/glance.md")
    return config.get_one(options.get("cloud"), **overrides)


def resolve(options: Mapping[str, Any]) -> AuthSettings:
    """Pick the source, as the module docstring orders them."""
    if options.get("auth") or options.get("auth_type"):
        return from_inline(options)
    return from_resolved(resolve_cloud(options))


def describe(options: Mapping[str, Any]) -> dict[str, Any]:
    """``imagehub clouds`` output for a glance cloud: what resolved, secrets left out."""
    if not (options.get("auth") or options.get("auth_type")):
        return resolve_cloud(options).describe()
    inline = from_inline(options)
    out: dict[str, Any] = {"cloud": None, "auth_type": inline.auth_type}
    out.update({k: v for k, v in inline.auth.items() if k not in SECRET_KEYS})
    out["secrets_set"] = sorted(k for k in inline.auth if k in SECRET_KEYS)
    out.update(region_name=inline.region_name, interface=inline.interface,
               endpoint_override=inline.endpoint_override, verify=inline.verify,
               cert=inline.cert, api_timeout=inline.timeout)
    out["sources"] = {k: "imagehub config" for k in (
        "auth_type", *(f"auth.{a}" for a in inline.auth), "region_name", "interface",
        "endpoint_override", "verify") if k in options or k.startswith("auth.")}
    return out
