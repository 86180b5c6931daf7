"""Resolving an OpenStack cloud the way ``openstack.config`` does, without importing it.

openstacksdk costs more start-up time than imagehub's whole CLI, so this mirrors the
part of ``OpenStackConfig().get_one(cloud, **options)`` that reaching Glance needs, step
for step (``openstack/config/loader.py``), and ``tests/test_openstack_config.py`` checks
it against openstacksdk itself on a corpus of configurations.

Supported: the clouds/secure/clouds-public files (:mod:`.clientfiles`), ``profile:``
(and the legacy ``cloud:``) from ``clouds-public.yaml``, ``OS_CLOUD``, the ``OS_*``
"envvars" cloud, the single-cloud default, ``region_name`` and ``regions`` (with
per-region ``values``), ``interface``, ``identity_api_version``, ``auth_type`` (and the
legacy ``auth_plugin``), the legacy key spellings openstacksdk rewrites, ``verify``,
``insecure``, ``cacert``, ``cert``/``key``, ``api_timeout``, ``image_endpoint_override``,
``image_api_version``, ``image_interface`` and ``image_region_name``.

Refused with a :class:`ConfigError` naming the key: openstacksdk's built-in vendor
profiles and profile URLs, auth plugins other than password, token, application
credential and none, ``auth_methods``, auth keys the plugin does not take, and any
other key. Settings for other OpenStack services (``compute_api_version``,
``networks``...) cannot change how Glance is reached; they are listed as ``ignored``
in :meth:`ResolvedCloud.describe` instead of being refused.

One extension: with no ``auth_type`` anywhere, openstacksdk uses ``password`` and then
fails on a token or application credential (at once, or at login). We pick the plugin
those keys imply (``token``, ``v3applicationcredential``, or ``none`` for an endpoint
and no credentials) and resolve what openstacksdk resolves when told that ``auth_type``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading

from imagehub.errors import ConfigError

from . import clientfiles
from .cloudkeys import (
    DEFAULTS,
    ENV_SELECTORS,
    SUPPORTED_AUTH_TYPES,
    check_keys,
    check_shapes,
    fix_backwards_auth,
    handle_domain_id,
    normalize,
    plugin_option_names,
    where_from,
)
from .resolved import DEFAULT, INFERRED, OPTIONS, ResolvedCloud, resolved

__all__ = ["INFERRED", "OpenStackClientConfig", "ResolvedCloud"]


class _Layers:
    """The merged cloud plus, for each key (``auth.x`` for auth keys), its source."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.src: dict[str, str] = {}

    def auth_update(self, data: Mapping[str, Any], source: str | Mapping[str, str]) -> None:
        """openstacksdk's ``_auth_update``: ``auth`` merges one level deep, the rest replace."""
        def where(key: str) -> str:
            return source if isinstance(source, str) else source.get(key, "?")
        for key, value in copy.deepcopy(dict(data)).items():
            if key == "auth" and isinstance(value, Mapping):
                self.config.setdefault("auth", {}).update(value)
                for sub in value:
                    self.src[f"auth.{sub}"] = where(f"auth.{sub}")
            else:
                self.config[key] = value
                self.src[key] = where(key)

    def move(self, old: str, new: str) -> None:
        if old in self.src:
            self.src[new] = self.src.pop(old)


class OpenStackClientConfig:
    """The files and environment as openstacksdk's ``OpenStackConfig()`` reads them."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.config_path: str | None
        self.secure_path: str | None
        self.config_path, data = clientfiles.load_first(
            clientfiles.candidates("clouds", "OS_CLIENT_CONFIG_FILE", self.env))
        self.secure_path, secure = clientfiles.load_first(
            clientfiles.candidates("secure", "OS_CLIENT_SECURE_FILE", self.env))
        self._vendor_candidates = clientfiles.candidates("clouds-public", None, self.env)
        raw = (data or {}).get("clouds") or {}
        secure_clouds = (secure or {}).get("clouds") or {}
        for path, clouds in ((self.config_path, raw), (self.secure_path, secure_clouds)):
            if not isinstance(clouds, Mapping) or any(
                    not isinstance(v, Mapping) for v in clouds.values()):
                raise ConfigError("'clouds' must map cloud names to mappings", path=path,
                                  key="clouds")
        self.clouds: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, dict[str, str]] = {}
        for name in list(raw) + [n for n in secure_clouds if n not in raw]:
            entry = clientfiles.merge_clouds(raw.get(name) or {}, secure_clouds.get(name) or {})
            src = _key_sources(raw.get(name) or {}, str(self.config_path))
            src.update(_key_sources(secure_clouds.get(name) or {}, str(self.secure_path)))
            self.clouds[str(name)] = entry
            self.sources[str(name)] = src
        self.envvar_key = self.env.get("OS_CLOUD_NAME", "envvars")
        if self.envvar_key in self.clouds:
            raise ConfigError(f"clouds.yaml defines a cloud named {self.envvar_key!r}, but "
                              "that is also the name of the cloud the OS_* variables make",
                              path=self.config_path, key="OS_CLOUD_NAME",
                              hint="rename one of them (OS_CLOUD_NAME sets the latter)")
        self.default_cloud = self.env.get("OS_CLOUD")
        envvars = self._environ_cloud()
        if envvars is not None:
            self.clouds[self.envvar_key], self.sources[self.envvar_key] = envvars
            self.default_cloud = self.default_cloud or self.envvar_key
        if not self.default_cloud and len(self.clouds) == 1:
            self.default_cloud = next(iter(self.clouds))

    def _os_vars(self) -> list[str]:
        return [k for k in self.env if k.startswith("OS_")
                and not k.startswith(("OS_TEST", "OS_STD", "OS_LOG"))]

    def _environ_cloud(self) -> tuple[dict[str, Any], dict[str, str]] | None:
        keys = self._os_vars()
        if not set(keys) - ENV_SELECTORS:
            return None
        cloud = {k.split("_", 1)[-1].lower(): self.env[k] for k in keys}
        return cloud, {k.split("_", 1)[-1].lower(): f"environment {k}" for k in keys}

    # -- get_one --------------------------------------------------------------------------
    def get_one(self, cloud: str | None = None, **options: Any) -> ResolvedCloud:
        """``OpenStackConfig().get_one(cloud, **options)``, for what imagehub supports."""
        name = cloud or self.default_cloud
        if not name:
            raise ConfigError(
                "no OpenStack cloud: no clouds.yaml found and no OS_* variables set",
                key="cloud", hint="set OS_CLOUD or OS_CLIENT_CONFIG_FILE, or OS_AUTH_URL "
                "and friends; looked in " + ", ".join(clientfiles.search_dirs(self.env)))
        if name not in self.clouds:
            known = ", ".join(sorted(self.clouds)) or "none"
            raise ConfigError(f"no cloud {name!r} in clouds.yaml (clouds: {known})",
                              path=self.config_path, key="cloud")
        entry = normalize(self.clouds[name], where=f"cloud {name!r}", raw=True)
        check_shapes(entry, cloud=name, path=self.config_path)
        entry_src = {k.replace("-", "_"): v for k, v in self.sources[name].items()}
        layers = _Layers()
        layers.auth_update(DEFAULTS, DEFAULT)
        profile = self._profile(name, entry)
        if profile is not None:
            layers.auth_update(*profile)
        layers.auth_update(entry, entry_src)
        layers.config.pop("cloud", None)
        layers.config.setdefault("auth", {})

        region, region_src, values_src = self._region(name, entry, profile,
                                                      options.get("region_name"))
        layers.config.pop("regions", None)
        layers.config["region_name"] = region["name"]
        layers.src["region_name"] = region_src
        for key, value in region["values"].items():
            if value is not None:
                # The file that lists the region, even when an option picked it.
                layers.auth_update({key: value},
                                   f"{values_src} (region {region['name']!r} values)")
        for key, value in normalize(dict(options), where=OPTIONS).items():
            if value is not None and key != "region_name":
                layers.auth_update({key: value}, OPTIONS)
        return self._finish(name, layers)

    def _profile(self, name: str, entry: Mapping[str, Any]) \
            -> tuple[dict[str, Any], str] | None:
        key = "profile" if "profile" in entry else "cloud"
        profile = entry.get(key)
        if not profile or profile == self.envvar_key:
            return None
        path, data = clientfiles.load_first(self._vendor_candidates)
        public = (data or {}).get("public-clouds") or {}
        found = public.get(profile) if isinstance(public, Mapping) else None
        if not isinstance(found, Mapping):
            where = path or "no clouds-public.yaml found"
            raise ConfigError(
                f"profile {profile!r} is not in clouds-public.yaml ({where}); imagehub "
                "does not ship openstacksdk's built-in vendor profiles or fetch profile URLs",
                cloud=name, key=key, hint="copy the vendor's profile under 'public-clouds:' "
                "in clouds-public.yaml, or write its settings into the cloud")
        data = normalize(dict(found), where=f"profile {profile!r}", raw=True)
        check_shapes(data, cloud=name, path=path)
        return data, f"{path} (profile {profile!r})"

    def _region(self, name: str, entry: Mapping[str, Any],
                profile: tuple[dict[str, Any], str] | None,
                wanted: str | None) -> tuple[dict[str, Any], str, str]:
        """``_get_region``: the wanted region of the known ones, else the first; with
        where its name came from and where the region list is."""
        src = self.sources[name]
        known: list[dict[str, Any]]
        where: str
        if "regions" in entry:
            known = _expand_regions(entry["regions"], name)
            where = src.get("regions", "?")
        elif "region_name" in entry:
            value = entry["region_name"]
            names = value if isinstance(value, list) else str(value).split(",")
            known = _expand_regions(names, name)
            where = src.get("region_name", "?")
        elif profile is not None and (profile[0].get("regions")
                                      or profile[0].get("region_name")):
            data, where = profile
            known = _expand_regions(data["regions"], name) if data.get("regions") \
                else [{"name": data["region_name"], "values": {}}]
        else:
            known, where = [], DEFAULT
        if wanted:
            for region in known:
                if region["name"] == wanted:
                    return region, OPTIONS, where
            if known:
                listed = ",".join(str(r["name"]) for r in known)
                raise ConfigError(f"region {wanted!r} is not a region of cloud {name!r}; "
                                  f"its regions are {listed} (names are case sensitive)",
                                  key="region_name")
            return {"name": wanted, "values": {}}, OPTIONS, OPTIONS
        return (known[0], where, where) if known else ({"name": "", "values": {}}, DEFAULT,
                                                        DEFAULT)

    def _finish(self, name: str, layers: _Layers) -> ResolvedCloud:
        config, src = layers.config, layers.src
        _magic_fixes(layers)
        config.update(normalize(config, where=f"cloud {name!r}", convert=True))
        auth_type = config.get("auth_type")
        if auth_type in (None, "None", ""):
            auth_type = "none"
        elif auth_type == "token_endpoint":
            auth_type = "admin_token"
        if src.get("auth_type") == DEFAULT:
            guessed = _infer_auth_type(config)
            if guessed != auth_type:
                auth_type, src["auth_type"] = guessed, INFERRED
        config["auth_type"] = auth_type
        if "auth_methods" in config or "auth_methods" in config["auth"]:
            raise ConfigError("auth_methods (multi-factor login) is not supported by "
                              "imagehub", cloud=name, key="auth_methods",
                              hint="use a password or an application credential",
                              **where_from(src, "auth_methods"))
        if auth_type not in SUPPORTED_AUTH_TYPES:
            raise ConfigError(f"auth_type {auth_type!r} is not supported by imagehub "
                              f"(supported: {', '.join(SUPPORTED_AUTH_TYPES)})",
                              cloud=name, key="auth_type")
        try:
            loader: Any = loading.get_plugin_loader(str(auth_type))
            plugin_opts = loader.get_options()
        except ks_exc.NoMatchingPlugin:  # pragma: no cover - keystoneauth1 ships them all
            raise ConfigError(f"keystoneauth1 has no plugin {auth_type!r}", cloud=name,
                              key="auth_type") from None
        _validate_auth(layers, plugin_opts)
        missing = sorted(o.dest for o in plugin_opts
                         if o.required and not config["auth"].get(o.dest))
        if missing:
            raise ConfigError(f"auth_type {auth_type!r} needs: {', '.join(missing)}",
                              cloud=name, key=f"auth.{missing[0]}")
        _expand_formats(config, name)
        ignored = check_keys(config, src, name, plugin_option_names(plugin_opts),
                             skip_sources=(DEFAULT,))
        try:  # builds the plugin only (no network), for keystoneauth1's own checks
            loader.load_from_options(**config["auth"])
        except ks_exc.OptionError as exc:
            raise ConfigError(f"auth_type {auth_type!r}: {exc}", cloud=name,
                              key="auth") from None
        except TypeError as exc:  # a plugin argument its loader does not mark required
            raise ConfigError(f"auth_type {auth_type!r} cannot be built from these auth "
                              f"keys ({', '.join(sorted(config['auth'])) or 'none'}): "
                              f"{_argument_problem(exc)}", cloud=name, key="auth") from None
        if name != self.envvar_key:
            for var in sorted(k for k in self._os_vars() if k not in ENV_SELECTORS
                              or k == "OS_REGION_NAME"):
                ignored[var] = (f"OS_* variables make their own cloud {self.envvar_key!r}; "
                                f"they do not change cloud {name!r}")
        return resolved(name, config, src, ignored)


def _argument_problem(exc: TypeError) -> str:
    # "Token.__init__() missing 1 required positional argument: 'token'": names, no values
    text = str(exc)
    return text.split(") ", 1)[-1] if ") " in text else "wrong arguments"


def _key_sources(entry: Mapping[str, Any], path: str) -> dict[str, str]:
    out = {str(k): path for k in entry}
    auth = entry.get("auth")
    if isinstance(auth, Mapping):
        out.update({f"auth.{k}": path for k in auth})
    return out


def _expand_regions(regions: Any, cloud: str) -> list[dict[str, Any]]:
    if not isinstance(regions, list):
        raise ConfigError("must be a list of region names or {name, values} mappings",
                          cloud=cloud, key="regions")
    out = []
    for region in regions:
        if isinstance(region, Mapping):
            if "name" not in region or not {"name", "values"} >= set(region):
                raise ConfigError(f"invalid region entry {sorted(region)}: it takes 'name' "
                                  "and 'values' only", cloud=cloud, key="regions")
            values = normalize(dict(region.get("values") or {}), where=f"region {region}",
                               raw=True)
            check_shapes(values, cloud=cloud, path=None)
            out.append({"name": region["name"], "values": values})
        else:
            out.append({"name": region, "values": {}})
    return out


def _magic_fixes(layers: _Layers) -> None:
    """openstacksdk's ``magic_fixes`` (networks aside: they concern other services)."""
    config = layers.config
    service_timeout = None
    for key in [k for k in config if k.endswith("timeout") and k not in ("timeout",
                                                                          "api_timeout")]:
        service_timeout = config.pop(key)
        layers.move(key, "api_timeout")
    if service_timeout is not None:
        config["api_timeout"] = service_timeout
    target = None
    for key in ("auth_plugin", "auth_type"):  # auth_type wins
        if key in config:
            target = config.pop(key)
            layers.move(key, "auth_type")
    config["auth_type"] = target
    fix_backwards_auth(layers.config, layers.src)
    for key in [k for k in config if k.endswith("endpoint_type")]:
        new = key.replace("endpoint_type", "interface")
        config[new] = config.pop(key)
        layers.move(key, new)
    handle_domain_id(config, layers.src)
    if "insecure" in config and not isinstance(config["insecure"], bool):
        value = config["insecure"]
        config["insecure"] = value is not None and str(value).lower() == "true"
    url = config["auth"].get("auth_url")
    if isinstance(url, str):
        try:
            config["auth"]["auth_url"] = url.format(**config)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"auth_url refers to an unknown value: {exc}",
                              key="auth.auth_url") from None


def _infer_auth_type(config: Mapping[str, Any]) -> str:
    """The plugin the keys imply, when no auth_type was given (see the module docstring)."""
    keys = {k for k, v in config["auth"].items() if v} | {k for k, v in config.items() if v}
    user = keys & {"username", "user_id", "password"}
    appcred = keys & {"application_credential_id", "application_credential_name"}
    if "token" in keys and not user and not appcred:
        return "token"
    if appcred and "token" not in keys and "password" not in keys:
        return "v3applicationcredential"
    endpoint = keys & {"endpoint", "image_endpoint_override", "image_endpoint"}
    if endpoint and "auth_url" not in keys and not user and "token" not in keys:
        return "none"
    return "password"


def _validate_auth(layers: _Layers, options: list[Any]) -> None:
    """``_validate_auth``: each plugin option from ``auth``, else from the cloud's top level."""
    config, auth = layers.config, layers.config["auth"]
    for opt in options:
        names = [opt.name.replace("-", "_")] + [d.name.replace("-", "_")
                                                for d in opt.deprecated]
        value, origin = None, None
        for place, prefix in ((auth, "auth."), (config, "")):
            for candidate in names:
                if candidate in place:
                    value, origin = place[candidate], prefix + candidate
                    break
            if value:
                break
        source = layers.src.get(origin or "", DEFAULT)
        for candidate in names:
            config.pop(candidate, None)
            auth.pop(candidate, None)
            layers.src.pop(candidate, None)
            layers.src.pop(f"auth.{candidate}", None)
        if value:
            dest = opt.dest or opt.name.replace("-", "_")
            auth[dest] = value
            layers.src[f"auth.{dest}"] = source


def _expand_formats(config: dict[str, Any], cloud: str) -> None:
    for key, value in list(config.items()):
        if isinstance(value, str) and key != "password":
            try:
                config[key] = value.format(**config)
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"the value refers to an unknown value: {exc}",
                                  cloud=cloud, key=key) from None
