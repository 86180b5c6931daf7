"""Clouds the user already configured for other tools, usable with no imagehub file.

Three sources, read only when a cloud is asked for that the imagehub file does not name
(or when all clouds are listed), so a command on a cloud of the file pays nothing:

- OpenStack: every cloud of ``clouds.yaml`` / ``secure.yaml`` and the ``OS_*`` variables
  cloud, found as the openstack CLI finds them (the glance backend's loader);
- lxc: every LXD remote lxc itself knows: those of its ``config.yml`` or, with no such
  file, lxc's built-in ``local`` remote when an LXD socket is there (image servers such
  as ``images:`` are not clouds; they are sources for ``create --from-remote``);
- Lambda: a cloud ``lambda`` when ``LAMBDA_API_KEY`` is set.

A source that cannot be read is a problem listed by ``imagehub clouds``, never a reason
for an unrelated command to fail.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ImageHubError

__all__ = ["LXD_SYSTEM_SOCKETS", "SOURCES", "Discovered", "Found", "discover", "lxc_conf_dir",
           "lxc_image_servers", "lxc_remotes", "lxd_socket", "prefixed"]

#: discovery sources, in priority order (an earlier one keeps a clashing name)
SOURCES = ("openstack", "lxc", "lambda")
#: the name prefix a discovered cloud gets when its own name is taken
_PREFIX = {"openstack": "os", "lxc": "lxc"}
LAMBDA_KEY_VAR = "LAMBDA_API_KEY"
_LXD_PROTOCOL = "lxd"  # lxc's protocol for an LXD server (others are image servers)
#: where the snap and the distribution packages put LXD's socket, in lxc's order
LXD_SYSTEM_SOCKETS = ("/var/snap/lxd/common/lxd/unix.socket", "/var/lib/lxd/unix.socket")
# lxc's own tables (lxc/config/default.go): with no config.yml it uses DefaultRemotes;
# over every config it loads it lays StaticRemotes, keeping only a project set on them.
_LXC_LOCAL: dict[str, Any] = {"addr": "unix://", "protocol": _LXD_PROTOCOL, "public": False}
_LXC_DEFAULT = {
    "images": {"addr": "https://images.lxd.canonical.com", "protocol": "simplestreams"},
}
_LXC_STATIC: dict[str, dict[str, Any]] = {
    "local": _LXC_LOCAL,
    "ubuntu": {"addr": "https://cloud-images.ubuntu.com/releases",
               "protocol": "simplestreams"},
    "ubuntu-daily": {"addr": "https://cloud-images.ubuntu.com/daily",
                     "protocol": "simplestreams"},
    "ubuntu-minimal": {"addr": "https://cloud-images.ubuntu.com/minimal/releases",
                       "protocol": "simplestreams"},
    "ubuntu-minimal-daily": {"addr": "https://cloud-images.ubuntu.com/minimal/daily",
                             "protocol": "simplestreams"},
}


@dataclasses.dataclass(frozen=True)
class Found:
    name: str
    backend: str
    options: Mapping[str, Any]
    source: str            # for people: where it came from
    path: str | None       # the file it came from, if any
    origin: str            # one of SOURCES


@dataclasses.dataclass
class Discovered:
    clouds: list[Found] = dataclasses.field(default_factory=list)
    read: list[str] = dataclasses.field(default_factory=list)       # files read
    searched: list[str] = dataclasses.field(default_factory=list)   # where we looked
    problems: list[str] = dataclasses.field(default_factory=list)


def lxc_conf_dir() -> Path:
    """The ``lxc`` client's configuration folder, as ``lxc`` itself finds it."""
    if os.environ.get("LXD_CONF"):
        return Path(os.environ["LXD_CONF"])
    home = Path.home()
    snap = home / "snap" / "lxd" / "common" / "config"
    return snap if snap.is_dir() else home / ".config" / "lxc"


def _lxc_remotes(conf_dir: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    import yaml  # only when lxc's remotes are looked at: PyYAML costs start-up time

    path = (conf_dir or lxc_conf_dir()) / "config.yml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ImageHubError(f"lxc: cannot read {path}: {type(exc).__name__}") from None
    remotes = data.get("remotes") if isinstance(data, dict) else None
    if remotes is not None and not isinstance(remotes, dict):
        raise ImageHubError(f"lxc: {path}: 'remotes' is not a mapping")
    return path, {str(k): v for k, v in (remotes or {}).items() if isinstance(v, dict)}


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def lxd_socket() -> str:
    """``$LXD_DIR/unix.socket``, else the first system socket that exists (else the last)."""
    lxd_dir = os.environ.get("LXD_DIR")
    if lxd_dir:
        # Absolute: pylxd takes only a path starting with '/' for a socket.
        return os.path.join(os.path.abspath(lxd_dir), "unix.socket")
    for path in LXD_SYSTEM_SOCKETS:
        if os.path.exists(path):
            return path
    return LXD_SYSTEM_SOCKETS[-1]


def lxc_remotes(conf_dir: Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """lxc's remotes as lxc itself sees them, and the file they came from (None: lxc's
    defaults, as lxc uses them before anything wrote its ``config.yml``)."""
    found = _lxc_remotes(conf_dir)
    path, remotes = found if found is not None else (None, dict(_LXC_DEFAULT))
    merged = dict(remotes)
    for name, static in _LXC_STATIC.items():
        project = (remotes.get(name) or {}).get("project")
        merged[name] = {**static, **({"project": project} if project else {})}
    return path, merged


def lxc_image_servers(conf_dir: Path | None = None) -> dict[str, dict[str, str]]:
    """lxc's simplestreams remotes (``images:``, ``ubuntu:`` ...): name -> addr, protocol."""
    return {name: {"addr": str(remote["addr"]), "protocol": "simplestreams"}
            for name, remote in lxc_remotes(conf_dir)[1].items()
            if remote.get("protocol") == "simplestreams" and remote.get("addr")}


def _openstack(out: Discovered, env: Mapping[str, str]) -> None:
    import importlib

    try:
        # The glance backend's loader reads the files as the openstack CLI does; imported
        # only here since keystoneauth1 comes with it.
        clientfiles = importlib.import_module("imagehub.backends.glance.clientfiles")
        clouds = importlib.import_module("imagehub.backends.glance.clouds")
    except ImportError as exc:
        out.problems.append(f"openstack: glance backend unavailable ({exc.name})")
        return
    out.searched.extend(os.path.join(d, "clouds.yaml") for d in clientfiles.search_dirs(env))
    loaded = clouds.OpenStackClientConfig(env)
    for path in (loaded.config_path, loaded.secure_path):
        if path:
            out.read.append(path)
    for name in loaded.clouds:
        if name == loaded.envvar_key:
            source = "OpenStack OS_* environment variables"
            path = None
        else:
            path = loaded.config_path or loaded.secure_path
            source = f"OpenStack {path}"
        out.clouds.append(Found(name, "glance", {"cloud": name}, source, path, "openstack"))


def _lxc(out: Discovered) -> None:
    conf = lxc_conf_dir()
    out.searched.append(str(conf / "config.yml"))
    path, remotes = lxc_remotes(conf)
    if path is not None:
        out.read.append(str(path))
    for name, remote in remotes.items():
        if (remote.get("protocol") or _LXD_PROTOCOL) != _LXD_PROTOCOL:
            continue  # an image server, not an LXD
        if name == "local" and not _is_socket(lxd_socket()):
            # lxc always shows 'local'; without a daemon here it is not a cloud anyone
            # set up, and checking it would only fail.
            continue
        if path is None:
            source = f"lxc's built-in remote (no {conf / 'config.yml'})"
        elif name == "local":
            source = "lxc's built-in remote"
        else:
            source = f"lxc remote in {path}"
        out.clouds.append(Found(name, "lxd", {"remote": name}, source,
                                None if path is None else str(path), "lxc"))


def _lambda(out: Discovered, env: Mapping[str, str]) -> None:
    out.searched.append(f"environment {LAMBDA_KEY_VAR}")
    if env.get(LAMBDA_KEY_VAR):
        out.clouds.append(Found("lambda", "lambda", {}, f"environment {LAMBDA_KEY_VAR}", None,
                                "lambda"))


def discover(sources: tuple[str, ...] = SOURCES,
             env: Mapping[str, str] | None = None) -> Discovered:
    """Every cloud the given sources offer, in priority order; problems collected."""
    env = os.environ if env is None else env
    out = Discovered()
    readers = {"openstack": lambda: _openstack(out, env), "lxc": lambda: _lxc(out),
               "lambda": lambda: _lambda(out, env)}
    for source in sources:
        try:
            readers[source]()
        except ImageHubError as exc:
            out.problems.append(f"{source}: {exc}")
    out.searched = list(dict.fromkeys(out.searched))  # openstack's path list repeats
    return out


def prefixed(found: Found) -> str | None:
    """The name a discovered cloud takes when its own is taken (``lxc-local``), if any."""
    prefix = _PREFIX.get(found.origin)
    return f"{prefix}-{found.name}" if prefix else None
