"""Finding and reading OpenStack's client files: clouds, secure and clouds-public.

The search order is openstacksdk's (``openstack/config/loader.py``), which the openstack
CLI uses: ``$OS_CLIENT_CONFIG_FILE`` (``$OS_CLIENT_SECURE_FILE`` for secrets) first,
then, in each of the current directory, the XDG user config folder, ``~/.config/openstack``,
the XDG system config folders and ``/etc/openstack``, the names ``<base>.yaml``,
``<base>.yml`` and ``<base>.json``. The first file that exists wins; the others are not
read. openstacksdk computes these paths once, at import; we compute them per call, from
the same environment variables.

One deliberate difference: openstacksdk skips a file it cannot parse with a log
warning and reads the next one. We refuse it instead, naming the file, because silently
reading another cloud's credentials is the worse surprise.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping
from typing import Any

import yaml

from imagehub.errors import ConfigError

_SUFFIXES = (".yaml", ".yml", ".json")


def search_dirs(env: Mapping[str, str] | None = None) -> list[str]:
    """The folders openstacksdk looks in, in its order (duplicates kept, as it does)."""
    env = os.environ if env is None else env
    home = env.get("HOME") or os.path.expanduser("~")
    # platformdirs (Unix), as the XDG spec says: XDG_CONFIG_HOME only when it is an
    # absolute path (a relative one, or "~/x", is ignored), else ~/.config.
    raw_home = env.get("XDG_CONFIG_HOME") or ""
    xdg_home = raw_home if posixpath.isabs(raw_home) else os.path.join(home, ".config")
    snap_home = env.get("SNAP_REAL_HOME")
    unix_home = os.path.join(snap_home if snap_home else home, ".config", "openstack")
    # platformdirs with multipath=True joins the absolute XDG_CONFIG_DIRS entries with
    # os.pathsep into ONE string, which openstacksdk then uses as a single folder. Kept
    # as is: a single entry (the usual case) is a real folder, several find nothing, as
    # there.
    xdg_dirs = [p for p in (env.get("XDG_CONFIG_DIRS") or "").split(os.pathsep)
                if posixpath.isabs(p)] or ["/etc/xdg"]
    site = os.pathsep.join(os.path.join(p, "openstack") for p in xdg_dirs)
    return [os.getcwd(), os.path.join(xdg_home, "openstack"), unix_home, site,
            "/etc/openstack"]


def candidates(base: str, override_var: str | None = None,
               env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    found = [os.path.join(d, base + s) for d in search_dirs(env) for s in _SUFFIXES]
    if override_var and env.get(override_var):
        named = env[override_var]
        if not os.path.exists(named):
            # openstacksdk silently falls back to the search path: a typo would then
            # read some other cloud's credentials.
            raise ConfigError(f"{override_var} names a file that does not exist",
                              path=named, key=override_var)
        found.insert(0, named)
    return found


def load_first(paths: list[str]) -> tuple[str, dict[str, Any]] | tuple[None, None]:
    """The first existing, readable file of ``paths``, parsed (YAML, or JSON by suffix)."""
    for path in paths:
        if not os.path.exists(path):
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle) if path.endswith("json") else yaml.safe_load(handle)
        except PermissionError:
            continue  # openstacksdk too moves on to the next file when it may not read one
        except (OSError, ValueError, RecursionError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot parse this OpenStack client file: {type(exc).__name__}",
                              path=path, hint="fix it or move it away; openstack would "
                              "skip it and read the next file in its search path") from None
        if data is None:
            data = {}  # an empty file: openstacksdk reads it as no clouds, so do we
        if not isinstance(data, dict):
            raise ConfigError("is not a mapping", path=path)
        return path, data
    return None, None


def merge_clouds(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """openstacksdk's deep merge (``_util.merge_clouds``), used for secure.yaml."""
    out = dict(old)
    for key, value in new.items():
        if isinstance(value, dict):
            prior = out.get(key)
            out[key] = merge_clouds(prior, value) if isinstance(prior, Mapping) \
                else dict(value)
        else:
            out[key] = value
    return out
