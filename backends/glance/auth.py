"""Building a keystoneauth1 Session from what OpenStack users already have.

Sources, first match wins:

1. inline options: ``auth_type`` and/or ``auth`` (the mapping clouds.yaml uses);
2. a clouds.yaml entry: the ``cloud`` option, else ``$OS_CLOUD``; ``secure.yaml`` from
   the same places is merged in (deep), so secrets can live apart;
3. ``OS_*`` environment variables (``OS_AUTH_URL``, ``OS_USERNAME``, ``OS_TOKEN`` ...).

Secrets (passwords, tokens, application credential secrets) only ever reach the
keystoneauth1 plugin: :class:`AuthSettings` hides them in its repr, and error
messages name missing keys, never values.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading, session

from imagehub.errors import ConfigError
from imagehub.paths import config_home

SECRET_KEYS = frozenset({"password", "token", "application_credential_secret", "secret",
                         "client_secret", "passcode", "access_token"})

# Keys a clouds.yaml cloud may set next to ``auth`` that we understand.
_CLOUD_KEYS = ("region_name", "interface", "verify", "cacert", "cert", "key",
               "image_endpoint_override", "endpoint_override", "api_timeout", "timeout")


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
        return (f"AuthSettings(auth_type={self.auth_type!r}, auth={shown!r}, "
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
        return session.Session(auth=plugin, verify=self.verify, cert=self.cert,
                               timeout=self.timeout, user_agent="imagehub")


def _verify(verify: Any, cacert: Any) -> bool | str:
    if verify is False or (isinstance(verify, str) and verify.lower() in ("false", "0", "no")):
        return False
    if cacert:
        return str(cacert)
    if isinstance(verify, str) and verify.lower() not in ("true", "1", "yes"):
        return verify  # a CA bundle path given as 'verify'
    return True


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


def config_dirs() -> list[Path]:
    """openstacksdk's search order: current directory, user config, system config."""
    return [Path.cwd(), config_home() / "openstack", Path("/etc/openstack")]


def _find(env_var: str, names: tuple[str, ...]) -> Path | None:
    explicit = os.environ.get(env_var)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{env_var} points at a missing file", path=str(path))
        return path
    for folder in config_dirs():
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read: {type(exc).__name__}", path=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", path=str(path))
    return data


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def from_clouds_yaml(name: str, overrides: Mapping[str, Any] | None = None) -> AuthSettings:
    clouds_path = _find("OS_CLIENT_CONFIG_FILE", ("clouds.yaml", "clouds.yml"))
    if clouds_path is None:
        where = ", ".join(str(d) for d in config_dirs())
        raise ConfigError(f"cloud {name!r} asked for, but no clouds.yaml found (looked in "
                          f"{where})", key="cloud", hint="or set OS_CLIENT_CONFIG_FILE")
    clouds = _load_yaml(clouds_path).get("clouds") or {}
    secure_path = _find("OS_CLIENT_SECURE_FILE", ("secure.yaml", "secure.yml"))
    if secure_path is not None:
        clouds = _merge(clouds, _load_yaml(secure_path).get("clouds") or {})
    entry = clouds.get(name)
    if not isinstance(entry, Mapping):
        known = ", ".join(sorted(map(str, clouds))) or "none"
        raise ConfigError(f"no cloud {name!r} in clouds.yaml (clouds: {known})",
                          path=str(clouds_path), key="cloud")
    merged = dict(entry)
    if not merged.get("region_name") and isinstance(merged.get("regions"), list) \
            and merged["regions"]:
        first = merged["regions"][0]
        merged["region_name"] = first.get("name") if isinstance(first, Mapping) else first
    merged["endpoint_override"] = merged.get("image_endpoint_override") or merged.get(
        "endpoint_override")
    merged["timeout"] = merged.get("api_timeout") or merged.get("timeout")
    if merged.get("cert") and merged.get("key"):
        merged["cert"] = (merged["cert"], merged["key"])
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = value
    settings = from_inline({k: merged.get(k) for k in (*_CLOUD_KEYS, "auth", "auth_type")})
    return dataclasses.replace(settings, source=f"clouds.yaml cloud {name!r}")


def from_environment(env: Mapping[str, str] | None = None) -> AuthSettings | None:
    """``OS_*`` variables, mapped onto the chosen plugin's options; None when unset."""
    env = os.environ if env is None else env
    if not any(k in env for k in ("OS_AUTH_URL", "OS_TOKEN", "OS_AUTH_TYPE", "OS_ENDPOINT",
                                  "OS_IMAGE_URL", "OS_APPLICATION_CREDENTIAL_ID")):
        return None
    endpoint = env.get("OS_IMAGE_URL") or env.get("OS_ENDPOINT")
    probe = {"application_credential_id": env.get("OS_APPLICATION_CREDENTIAL_ID"),
             "token": env.get("OS_TOKEN"), "auth_url": env.get("OS_AUTH_URL")}
    auth_type = env.get("OS_AUTH_TYPE") or _guess_auth_type(probe, endpoint)
    auth: dict[str, Any] = {}
    if auth_type != "none":
        try:
            loader: Any = loading.get_plugin_loader(auth_type)
        except ks_exc.NoMatchingPlugin:
            raise ConfigError(f"OS_AUTH_TYPE {auth_type!r} is not a keystoneauth1 plugin",
                              key="OS_AUTH_TYPE") from None
        for opt in loader.get_options():
            for candidate in (opt, *opt.deprecated):
                value = env.get("OS_" + candidate.dest.upper())
                if value:
                    auth[opt.dest] = value
                    break
        # python-openstackclient habits: OS_DOMAIN_NAME scopes nothing by itself here,
        # OS_USER_DOMAIN_NAME / OS_PROJECT_DOMAIN_NAME are read above.
    settings = from_inline({
        "auth_type": auth_type, "auth": auth, "endpoint_override": endpoint,
        "region_name": env.get("OS_REGION_NAME"), "interface": env.get("OS_INTERFACE"),
        "verify": "false" if env.get("OS_INSECURE", "").lower() in ("1", "true", "yes")
        else True,
        "cacert": env.get("OS_CACERT"),
    })
    return dataclasses.replace(settings, source="OS_* environment variables")


def resolve(options: Mapping[str, Any]) -> AuthSettings:
    """Pick the source, as the module docstring orders them."""
    if options.get("auth") or options.get("auth_type"):
        return from_inline(options)
    overrides = {k: options.get(k) for k in ("region_name", "interface", "endpoint_override",
                                             "timeout", "cacert")}
    if options.get("verify") is not None:
        overrides["verify"] = options["verify"]
    cloud = options.get("cloud") or os.environ.get("OS_CLOUD")
    if cloud:
        return from_clouds_yaml(str(cloud), overrides)
    env = from_environment()
    if env is not None:
        extra = {k: v for k, v in overrides.items() if v is not None}
        if "cacert" in extra or "verify" in extra:
            extra["verify"] = _verify(extra.pop("verify", env.verify), extra.pop("cacert", None))
        return dataclasses.replace(env, **extra)
    raise ConfigError(
        "no OpenStack credentials: set 'auth' (and 'auth_type'), 'cloud' (a clouds.yaml "
        "entry), OS_CLOUD, or OS_AUTH_URL and friends",
        hint="see docs/backends/glance.md")
