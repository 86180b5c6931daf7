"""The keys of an OpenStack cloud: defaults, legacy spellings, and what imagehub takes.

The rewriting rules are openstacksdk's (``openstack/config/loader.py`` and
``defaults.json``); :mod:`.clouds` applies them in openstacksdk's order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from imagehub.errors import ConfigError

SECRET_KEYS = frozenset({"password", "token", "application_credential_secret", "secret",
                         "client_secret", "passcode", "access_token"})

# openstacksdk's get_defaults(): its Python defaults plus defaults.json.
DEFAULTS: Mapping[str, Any] = {
    "api_timeout": None, "verify": True, "cacert": None, "cert": None, "key": None,
    "auth_type": "password", "baremetal_status_code_retries": 5,
    "baremetal_introspection_status_code_retries": 5, "image_status_code_retries": 5,
    "disable_vendor_agent": {}, "interface": "public", "floating_ip_source": "neutron",
    "image_api_use_tasks": False, "image_format": "qcow2", "message": "",
    "network_api_version": "2", "object_store_api_version": "1",
    "secgroup_source": "neutron", "status": "active",
}

# OS_* variables that select files or clouds; alone they make no "envvars" cloud.
ENV_SELECTORS = frozenset({"OS_CLOUD", "OS_REGION_NAME", "OS_CLIENT_CONFIG_FILE",
                           "OS_CLIENT_SECURE_FILE", "OS_CLOUD_NAME"})
_ENV_ONLY = frozenset({"client_config_file", "client_secure_file", "cloud_name"})

SUPPORTED_AUTH_TYPES = ("password", "v3password", "token", "v3token",
                        "v3applicationcredential", "none", "admin_token")

_TOP_KEYS = frozenset({
    "auth", "auth_type", "profile", "region_name", "interface", "identity_api_version",
    "verify", "insecure", "cacert", "cert", "key", "api_timeout",
    "image_endpoint_override", "image_endpoint", "image_api_version", "image_interface",
    "image_region_name"})

_HINTS = {
    "endpoint_override": "openstack reads the image service's override as "
                         "image_endpoint_override",
    "timeout": "openstack reads the timeout of a clouds.yaml cloud as api_timeout",
    "default_domain": "that is an openstack CLI option; set user_domain_id and "
                      "project_domain_id (OS_USER_DOMAIN_ID, OS_PROJECT_DOMAIN_ID)",
    "image_url": "set image_endpoint_override (OS_IMAGE_ENDPOINT_OVERRIDE)",
    "endpoint": "with auth_type password the endpoint comes from the catalog; set "
                "image_endpoint_override, or auth_type none or admin_token",
}

# Settings of other services: they cannot change how Glance is reached, so they are
# reported as ignored rather than refused (a clouds.yaml made for the openstack CLI
# often carries them).
_OTHER_SERVICES = (
    "compute", "volume", "volumev2", "volumev3", "block_storage", "block_store",
    "network", "object_store", "orchestration", "dns", "database", "baremetal",
    "baremetal_introspection", "load_balancer", "key_manager", "container_infra",
    "placement", "shared_file_system", "share", "workflow", "clustering", "alarm",
    "alarming", "metric", "event", "application_catalog", "container", "message",
    "messaging", "rating", "reservation", "backup", "data_processing", "accelerator",
    "instance_ha", "identity", "object", "metering", "monitoring", "search")
_IGNORED = {
    **{k: "network settings for servers" for k in (
        "networks", "external_network", "internal_network", "nat_destination",
        "nat_source", "floating_ip_source", "secgroup_source", "requires_floating_ip",
        "force_ipv4", "prefer_ipv6")},
    "image_format": "openstacksdk's default disk format; imagehub takes it from the image",
    "image_api_use_tasks": "openstacksdk's upload mode; see the glance option legacy_tasks",
    "image_status_code_retries": "openstacksdk's retries; see the glance option retries",
    "disable_vendor_agent": "server creation setting",
    "vendor_hook": "openstacksdk extension hook",
    "status": "vendor profile status", "message": "vendor profile message",
    "split_loggers": "openstacksdk logging", "timing": "openstacksdk timing",
    "metrics": "openstacksdk metrics", "rate_limit": "openstacksdk rate limiting",
    "concurrency": "openstacksdk concurrency",
}


def _read_before_normalizing(key: str) -> bool:
    # openstacksdk's magic_fixes read these by their '_' names before it normalizes the
    # dashes: "auth-type" then loses to the default 'password', and "endpoint-type" never
    # becomes the interface. Quietly doing either differently would differ from the
    # openstack CLI, so such a spelling is refused.
    if "-" not in key:
        return False
    name = key.replace("-", "_")
    return name in ("auth_type", "auth_plugin") or name.endswith("endpoint_type")


def normalize(config: Mapping[str, Any], *, where: str, convert: bool = False,
              raw: bool = False) -> dict[str, Any]:
    """openstacksdk's ``normalize_keys``: '-' becomes '_' (and, with ``convert``, numbers
    other than ``api_timeout`` become strings). A key spelt both ways is refused. ``raw``:
    the mapping is as a file wrote it (a cloud, profile or region), where openstacksdk
    reads some keys before normalizing; their dashed spellings are refused."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if raw and _read_before_normalizing(str(key)):
            good = str(key).replace("-", "_")
            raise ConfigError(f"{where}: openstacksdk does not read {key!r} (it reads "
                              f"{good!r} only, and would use its default instead)",
                              key=str(key), hint=f"write {good}")
        new = str(key).replace("-", "_")
        if new in out and new != key:
            raise ConfigError(f"{where} sets both {new!r} and {key!r}", key=new,
                              hint="keep one spelling")
        if isinstance(value, dict):
            value = normalize(value, where=where, convert=convert)
        elif convert and not isinstance(value, bool):
            if isinstance(value, int) and new not in ("verbose_level", "api_timeout"):
                value = str(value)
            elif isinstance(value, float):
                value = str(value)
        out[new] = value
    return out


def fix_backwards_auth(config: dict[str, Any], src: dict[str, str]) -> None:
    """``_fix_backwards_auth``: old spellings (tenant_*, auth_token...) into ``auth``.

    A value at the top level beats one in ``auth`` (openstacksdk: it may come from an
    override); every value becomes a string.
    """
    auth = config["auth"]
    mappings = {
        "domain_id": ("domain_id",), "domain_name": ("domain_name",),
        "user_domain_id": ("user_domain_id",), "user_domain_name": ("user_domain_name",),
        "project_domain_id": ("project_domain_id",),
        "project_domain_name": ("project_domain_name",),
        "token": ("auth_token", "token"), "passcode": ("passcode",),
        "project_id": ("tenant_id", "project_id"),
        "project_name": ("tenant_name", "project_name"),
    }
    for target, names in mappings.items():
        value, origin = None, "?"
        for key in names:
            if key in auth:
                value, origin = str(auth.pop(key)), src.pop(f"auth.{key}", "?")
            if key in config:
                value, origin = str(config.pop(key)), src.pop(key, "?")
        if value:
            auth[target] = value
            src[f"auth.{target}"] = origin


def handle_domain_id(config: dict[str, Any], src: dict[str, str]) -> None:
    """``_handle_domain_id``: ``domain_*`` stands for the user's and the project's."""
    auth = config["auth"]
    scoped = bool({"project_id", "project_name"} & (set(config) | set(auth)))
    for target, keys in (("domain_id", ("user_domain_id", "project_domain_id")),
                         ("domain_name", ("user_domain_name", "project_domain_name"))):
        if not scoped:
            if target in config and target not in auth:
                auth[target] = config.pop(target)
                src[f"auth.{target}"] = src.pop(target, "?")
            continue
        for key in keys:
            if target in auth and key not in auth:
                auth[key] = auth[target]
                src[f"auth.{key}"] = src.get(f"auth.{target}", "?")
        config.pop(target, None)
        auth.pop(target, None)


_SCALARS = (str, int, float, bool)


def check_shapes(data: Mapping[str, Any], *, cloud: str, path: str | None) -> None:
    """Refuse values of the wrong kind before openstacksdk's rules would trip on them."""
    def bad(key: str, wanted: str) -> ConfigError:
        return ConfigError(f"must be {wanted}", cloud=cloud, key=key,
                           path=path if path and path.startswith("/") else None)
    for key, value in data.items():
        if key == "auth":
            if not isinstance(value, Mapping):
                raise bad(key, "a mapping of auth options")
            for sub, item in value.items():
                if item is not None and not isinstance(item, _SCALARS):
                    raise bad(f"auth.{sub}", "a single value")
        elif value is None or ignored_reason(key) is not None:
            continue
        elif key in ("profile", "cloud", "auth_type", "auth_plugin"):
            if not isinstance(value, str):
                raise bad(key, "a string")
        elif key == "regions":
            if not isinstance(value, list) or not all(
                    isinstance(r, _SCALARS) or (isinstance(r, Mapping) and isinstance(
                        r.get("values") or {}, Mapping)) for r in value):
                raise bad(key, "a list of region names or {name, values} mappings")
        elif key == "region_name":
            if not isinstance(value, _SCALARS) and not (isinstance(value, list) and all(
                    isinstance(r, _SCALARS) for r in value)):
                raise bad(key, "a region name")
        elif key.endswith("interface") and isinstance(value, list):
            continue  # refused later with its own message
        elif not isinstance(value, _SCALARS):
            raise bad(key, "a single value")


def ignored_reason(key: str) -> str | None:
    """Why a key of another service is ignored, or None for keys that matter here."""
    if key in _IGNORED:
        return _IGNORED[key]
    if key == "identity_api_version":
        return None
    if key.startswith("has_") or key.split("_", 1)[0] in _OTHER_SERVICES or any(
            key.startswith(s + "_") for s in _OTHER_SERVICES if "_" in s):
        return "a setting of another OpenStack service"
    return None


def plugin_option_names(options: Iterable[Any]) -> frozenset[str]:
    return frozenset(o.dest or o.name.replace("-", "_") for o in options)


def check_keys(config: Mapping[str, Any], src: Mapping[str, str], cloud: str,
               plugin_keys: frozenset[str], *, skip_sources: tuple[str, ...]) \
        -> dict[str, str]:
    """Refuse what imagehub does not support; return the other-service keys ignored."""
    auth_type = config.get("auth_type")
    ignored: dict[str, str] = {}
    for key in sorted(config["auth"]):
        if key not in plugin_keys:
            raise ConfigError(f"auth_type {auth_type!r} does not take this key (it takes: "
                              f"{', '.join(sorted(plugin_keys)) or 'nothing'})",
                              cloud=cloud, key=f"auth.{key}", **where_from(src, f"auth.{key}"))
    for key in sorted(config):
        origin = src.get(key, skip_sources[0])
        if key in _TOP_KEYS or origin in skip_sources:
            continue
        if key in _ENV_ONLY and origin.startswith("environment"):
            continue
        reason = ignored_reason(key)
        if reason is not None:
            ignored[key] = reason
            continue
        origin_note = f" (set by {origin[12:]})" if origin.startswith("environment ") else ""
        if key in _all_plugin_keys() and key not in _HINTS:
            raise ConfigError(f"auth_type {auth_type!r} does not take this key{origin_note}",
                              cloud=cloud, key=key, hint="remove it, or set the auth_type "
                              "it belongs to", **where_from(src, key))
        hint = _HINTS.get(key, "see the supported keys in docs/backends/glance.md")
        raise ConfigError(f"imagehub does not support this key of an OpenStack cloud "
                          f"(auth_type {auth_type!r}){origin_note}", cloud=cloud, key=key,
                          hint=hint, **where_from(src, key))
    return ignored


@functools.cache
def _all_plugin_keys() -> frozenset[str]:
    from keystoneauth1 import loading
    return frozenset().union(*(plugin_option_names(loading.get_plugin_loader(t).get_options())
                               for t in SUPPORTED_AUTH_TYPES))


def where_from(src: Mapping[str, str], key: str) -> dict[str, str]:
    """The file a key came from, for ConfigError's ``path`` (variables are no files)."""
    origin = src.get(key)
    return {"path": origin} if origin and not origin.startswith("environment ") else {}
