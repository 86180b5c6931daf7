"""The clouds file: named clouds, each a backend plus its options.

Found from ``--config``, then ``$IMAGEHUB_CONFIG``, then ``$XDG_CONFIG_HOME/imagehub/
clouds.yaml``. Without any file a single cloud ``local`` exists and is the default. A
secret option may be given as ``KEY_env: VARNAME`` so the file holds no secret.

Clouds the user configured for other tools (OpenStack, lxc, Lambda; see
:mod:`imagehub.discovery`) are added behind the file's: the file wins on a name clash, and
its ``discovered:`` key renames, hides or turns off discovered clouds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import _redact
from ._redact import excerpt
from .discovery import SOURCES, Found, discover, prefixed
from .errors import BackendNotFound, BackendUnavailable, ConfigError, ImageHubError
from .manager import ImageManager, Option
from .paths import config_home
from .refs import KNOWN_ALGORITHMS
from .registry import get_backend, why_not_viable

__all__ = ["CloudConfig", "Config", "default_config_path", "load_config"]

DEFAULT_CLOUD = "local"
_TOP_KEYS = {"clouds", "default", "staging_dir", "discovered"}
_DISCOVERED_KEYS = {"sources", "hide", "rename"}
BUILT_IN = "built in"
# Scalars and containers a cloud's options may hold once YAML aliases are expanded; a
# clouds file is a few dozen. Past this it is an alias bomb, not a configuration.
_MAX_EXPANDED = 10_000


@functools.cache
def _loader() -> type[Any]:
    """The YAML loader for clouds files, built on first use: PyYAML costs ~20 ms to
    import, which only reading a file pays."""
    import yaml

    class _Loader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping (YAML keeps the last)."""

        def construct_mapping(self, node: yaml.MappingNode,
                              deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *defaults' entries may be overridden by explicit keys
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # unhashable: SafeLoader reports it itself
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {excerpt(key)}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return _Loader


def _expanded_size(value: Any, memo: dict[int, int] | None = None) -> int:
    """How many items ``value`` holds with every alias expanded, counted in linear time."""
    memo = {} if memo is None else memo
    if id(value) in memo:
        return memo[id(value)]
    memo[id(value)] = 1  # a cycle counts once
    if isinstance(value, dict):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo)
                       for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        size = 1 + sum(_expanded_size(v, memo) for v in value)
    else:
        size = 1
    memo[id(value)] = size
    return size


def default_config_path() -> Path:
    return config_home() / "imagehub" / "clouds.yaml"


@dataclasses.dataclass(frozen=True)
class CloudConfig:
    name: str
    backend: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    path: str | None = None
    #: where the cloud came from, for people: the imagehub file, an OpenStack clouds.yaml,
    #: the OS_* variables, an lxc remote, LAMBDA_API_KEY, or "built in"
    source: str = BUILT_IN

    def __repr__(self) -> str:
        # Options may hold secrets; show only which keys are set.
        return f"CloudConfig(name={self.name!r}, backend={self.backend!r}, " \
               f"keys={sorted(self.options)})"

    def resolved_options(self, cls: type[ImageManager]) -> dict[str, Any]:
        """Validate against the backend's declared options and resolve ``*_env`` secrets."""
        declared: Mapping[str, Option] = cls.options
        out: dict[str, Any] = {}
        for key, value in self.options.items():
            base = key[:-4] if key.endswith("_env") else None
            if base is not None and base in declared and declared[base].secret:
                out[base] = self._from_env(base, key, value)
                continue
            if key not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise ConfigError(f"unknown key for backend {self.backend!r} (known keys: "
                                  f"{known})", path=self.path, cloud=self.name, key=key)
            out[key] = self._check(key, value, declared[key])
        for key, opt in declared.items():
            if opt.env and key not in out and os.environ.get(opt.env):
                out[key] = os.environ[opt.env]
            if opt.secret and isinstance(out.get(key), str):
                # Whatever the backend does with it, it never leaves the process.
                _redact.register(out[key])
            if opt.required and key not in out:
                raise ConfigError(f"missing required key for backend {self.backend!r}"
                                  + (f": {opt.help}" if opt.help else ""),
                                  path=self.path, cloud=self.name, key=key)
        return out

    def _from_env(self, base: str, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError("must name an environment variable", path=self.path,
                              cloud=self.name, key=key)
        secret = os.environ.get(value)
        if not secret:
            raise ConfigError(f"environment variable {value!r} is not set", path=self.path,
                              cloud=self.name, key=key, hint=f"export {value}=...")
        return secret

    def _check(self, key: str, value: Any, opt: Option) -> Any:
        types = opt.type if isinstance(opt.type, tuple) else (opt.type,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:
                raise ConfigError(f"number too large, got {excerpt(value)}", path=self.path,
                                  cloud=self.name, key=key) from None
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            shown = "<hidden>" if opt.secret else excerpt(value)
            wanted = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"expected {wanted}, got {shown}", path=self.path,
                              cloud=self.name, key=key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"must be a finite number, got {value}", path=self.path,
                              cloud=self.name, key=key)
        if opt.choices is not None and value not in opt.choices:
            raise ConfigError(f"must be one of {', '.join(map(str, opt.choices))}, got "
                              f"{'<hidden>' if opt.secret else excerpt(value)}",
                              path=self.path, cloud=self.name, key=key)
        return value


@dataclasses.dataclass(frozen=True)
class DiscoveryRules:
    """The file's ``discovered:`` key: which sources, which names hidden or renamed."""
    sources: tuple[str, ...] = SOURCES
    hide: frozenset[str] = frozenset()
    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)


_BACKEND_ALIASES = {"openstack": "glance"}


def _same_cloud(own: CloudConfig, found: Found) -> bool:
    """Whether a cloud of the file already is ``found`` (``backend: glance, cloud: x``)."""
    backend = _BACKEND_ALIASES.get(own.backend, own.backend)
    return backend == found.backend and all(
        own.options.get(k) == v for k, v in found.options.items())


class CloudTable(Mapping[str, CloudConfig]):
    """The file's clouds first, then discovered ones, discovered only when needed.

    Looking up a cloud the file names never reads another tool's files; a miss, or
    listing every cloud, runs discovery once.
    """

    def __init__(self, own: Mapping[str, CloudConfig], rules: DiscoveryRules,
                 env: Mapping[str, str] | None = None) -> None:
        self._own = dict(own)
        self._rules = rules
        self._env = env
        self._all: dict[str, CloudConfig] | None = None
        self.read: list[str] = []
        self.searched: list[str] = []
        self.problems: list[str] = []
        #: discovered clouds left out, and why (a clash, or hidden by the file)
        self.left_out: dict[str, str] = {}

    def _merged(self) -> dict[str, CloudConfig]:
        if self._all is not None:
            return self._all
        found = discover(self._rules.sources, self._env)
        self.read, self.searched, self.problems = found.read, found.searched, found.problems
        merged = dict(self._own)
        for cloud in found.clouds:
            if cloud.name in self._rules.hide:
                self.left_out[cloud.name] = f"{cloud.source}: hidden by the imagehub file"
                continue
            same = next((c.name for c in self._own.values() if _same_cloud(c, cloud)), None)
            if same is not None:
                self.left_out[cloud.name] = f"{cloud.source}: already configured as {same!r}"
                continue
            name = self._rules.rename.get(cloud.name, cloud.name)
            if name in merged:
                alt = prefixed(cloud)
                if name != cloud.name or alt is None or alt in merged:
                    self.left_out[cloud.name] = (f"{cloud.source}: name taken by "
                                                 f"{merged[name].source}")
                    continue
                name = alt
            merged[name] = CloudConfig(name=name, backend=cloud.backend,
                                       options=dict(cloud.options), path=cloud.path,
                                       source=cloud.source)
        self._all = merged
        return merged

    def __getitem__(self, name: str) -> CloudConfig:
        if name in self._own:
            return self._own[name]
        return self._merged()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._own or name in self._merged()

    def __iter__(self) -> Iterator[str]:
        return iter(self._merged())

    def __len__(self) -> int:
        return len(self._merged())


@dataclasses.dataclass(frozen=True)
class Config:
    clouds: Mapping[str, CloudConfig]
    default: str = DEFAULT_CLOUD
    path: str | None = None
    #: where migrate stages files it converts (None: TMPDIR)
    staging_dir: str | None = None
    #: the imagehub file looked for, whether or not it exists
    looked_for: str | None = None

    def cloud(self, name: str | None = None) -> CloudConfig:
        wanted = name or self.default
        try:
            return self.clouds[wanted]
        except KeyError:
            names = ", ".join(sorted(self.clouds)) or "none"
            where = self.path or self.looked_for or str(default_config_path())
            table = self.discovery
            unread = f"; could not read: {'; '.join(table.problems)}" \
                if table is not None and table.problems else ""
            raise ConfigError(
                f"no cloud named {wanted!r} (configured clouds: {names}){unread}",
                hint=f"define it under 'clouds:' in {where}, or add it to your OpenStack "
                     "clouds.yaml or lxc remotes; 'imagehub clouds' shows where each cloud "
                     "comes from and where imagehub looked (see docs/configuration.md)"
            ) from None

    @property
    def discovery(self) -> CloudTable | None:
        """The discovered-clouds table, for reporting what was read and searched."""
        return self.clouds if isinstance(self.clouds, CloudTable) else None

    def connect(self, name: str | None = None) -> ImageManager:
        """Build the manager for cloud ``name`` (the default cloud when None)."""
        cloud = self.cloud(name)
        try:
            cls = get_backend(cloud.backend)
        except BackendNotFound as exc:
            raise ConfigError(exc.message, path=cloud.path, cloud=cloud.name,
                              key="backend") from exc
        problem = why_not_viable(cls)
        if problem:
            raise BackendUnavailable(
                f"cloud {cloud.name!r}: backend {cloud.backend!r} cannot work on this "
                f"machine: {problem}", backend=cloud.backend,
                hint="'imagehub backends' shows which backends can")
        options = cloud.resolved_options(cls)
        try:
            return cls.from_options(options, cloud=cloud.name)
        except ConfigError as exc:
            if exc.cloud is not None:
                raise
            # A backend's own check (verify, base_url ...) knows the key, not where it is.
            raise ConfigError(exc.reason, path=exc.path or cloud.path, cloud=cloud.name,
                              key=exc.key, hint=exc.hint) from exc
        except ImageHubError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc), path=self.path, cloud=cloud.name) from exc


def _local_cloud() -> CloudConfig:
    return CloudConfig(name=DEFAULT_CLOUD, backend="local")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the clouds file; an explicitly named file must exist, the default need not."""
    explicit = path is not None or bool(os.environ.get("IMAGEHUB_CONFIG"))
    chosen = Path(path) if path is not None else Path(
        os.environ.get("IMAGEHUB_CONFIG") or default_config_path())
    if not chosen.exists():
        if explicit:
            raise ConfigError("file not found", path=str(chosen),
                              hint="check --config / IMAGEHUB_CONFIG")
        return Config(clouds=CloudTable({DEFAULT_CLOUD: _local_cloud()}, DiscoveryRules()),
                      looked_for=str(chosen))
    where = str(chosen)
    import yaml

    try:
        data = yaml.load(chosen.read_text(encoding="utf-8"), Loader=_loader())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=where) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{at}: {getattr(exc, 'problem', exc)}",
                          path=where) from exc
    except ValueError as exc:
        # PyYAML converts scalars itself and lets Python's own refusals through: an
        # integer of thousands of digits, a date like 2024-13-45.
        raise ConfigError(f"a value cannot be read: {excerpt(str(exc), 100)}",
                          path=where) from exc
    except RecursionError as exc:
        raise ConfigError("nested too deeply to be a clouds file", path=where) from exc
    return parse_config(data, where)


_OPENSTACK_KEYS = {"auth", "auth_type", "region_name", "regions", "profile", "interface",
                   "identity_api_version"}


def _looks_like_openstack(clouds: Mapping[Any, Any]) -> bool:
    return any(isinstance(b, dict) and "backend" not in b and _OPENSTACK_KEYS & set(b)
               for b in clouds.values())


def _rules(data: Any, where: str | None) -> DiscoveryRules:
    if data is None:
        return DiscoveryRules()
    if data is False:
        return DiscoveryRules(sources=())
    if not isinstance(data, dict):
        raise ConfigError("'discovered' must be a mapping (sources, hide, rename) or false",
                          path=where, key="discovered")
    for key in data:
        if key not in _DISCOVERED_KEYS:
            raise ConfigError(f"unknown key {excerpt(key)} (known: "
                              f"{', '.join(sorted(_DISCOVERED_KEYS))})", path=where,
                              key="discovered")
    sources = data.get("sources", list(SOURCES))
    if not isinstance(sources, list) or any(s not in SOURCES for s in sources):
        raise ConfigError(f"must be a list of {', '.join(SOURCES)}", path=where,
                          key="discovered.sources")
    hide = data.get("hide") or []
    if not isinstance(hide, list) or not all(isinstance(h, str) for h in hide):
        raise ConfigError("must be a list of cloud names", path=where, key="discovered.hide")
    rename = data.get("rename") or {}
    if not isinstance(rename, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() and ":" not in v
            for k, v in rename.items()):
        raise ConfigError("must map discovered names to new names (no ':')", path=where,
                          key="discovered.rename")
    return DiscoveryRules(sources=tuple(sources), hide=frozenset(hide), rename=dict(rename))


def parse_config(data: Any, where: str | None = None) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping with a 'clouds' key", path=where)
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(f"unknown top-level key {excerpt(key)} (known: "
                              f"{', '.join(sorted(_TOP_KEYS))})", path=where)
    raw_clouds = data.get("clouds") or {}
    if not isinstance(raw_clouds, dict):
        raise ConfigError("'clouds' must be a mapping of cloud names", path=where, key="clouds")
    clouds: dict[str, CloudConfig] = {DEFAULT_CLOUD: _local_cloud()}
    for name, body in raw_clouds.items():
        if not isinstance(name, str):
            raise ConfigError(f"cloud names must be strings, got {excerpt(name)}",
                              path=where, key="clouds",
                              hint="quote the name in the file, e.g. '2024': ...")
        if ":" in name or not name.strip():
            raise ConfigError("cloud names may not be empty or contain ':'", path=where,
                              cloud=name)
        if name.lower() in KNOWN_ALGORITHMS:
            # "sha256:ab12..." must stay a checksum ref, never "image ab12... in cloud
            # sha256": a delete would act on another cloud than the user meant.
            raise ConfigError(f"cloud name {name!r} is a checksum algorithm's, which refs "
                              "use as ALGO:HEX", path=where, cloud=name,
                              hint="choose another name")
        if not isinstance(body, dict):
            raise ConfigError("each cloud must be a mapping", path=where, cloud=name)
        backend = body.get("backend")
        if not isinstance(backend, str) or not backend:
            if _looks_like_openstack(raw_clouds):
                raise ConfigError(
                    "this looks like an OpenStack clouds.yaml (the openstack CLI's file), "
                    "not an imagehub file", path=where, cloud=name, key="backend",
                    hint="drop --config: imagehub reads clouds.yaml by itself (see "
                         "'imagehub clouds'); or set OS_CLIENT_CONFIG_FILE to this file")
            raise ConfigError("missing 'backend' (for example: backend: lxd)", path=where,
                              cloud=name, key="backend")
        for key, value in body.items():
            if not isinstance(key, str):
                raise ConfigError(f"option names must be strings, got {excerpt(key)}",
                                  path=where, cloud=name)
            if _expanded_size(value) > _MAX_EXPANDED:
                raise ConfigError(f"value expands to more than {_MAX_EXPANDED} items "
                                  "(YAML aliases?)", path=where, cloud=name, key=key)
        options = {str(k): v for k, v in body.items() if k != "backend"}
        clouds[name] = CloudConfig(name=name, backend=backend, options=options, path=where,
                                   source=f"imagehub {where}" if where else "imagehub")
    table = CloudTable(clouds, _rules(data.get("discovered"), where))
    default = data.get("default", DEFAULT_CLOUD)
    if not isinstance(default, str) or default not in table:
        raise ConfigError(f"default cloud {excerpt(default)} is not defined", path=where,
                          key="default")
    staging = data.get("staging_dir")
    if staging is not None and (not isinstance(staging, str) or not staging.strip()):
        raise ConfigError("staging_dir must be a directory path", path=where,
                          key="staging_dir")
    return Config(clouds=table, default=str(default), path=where, looked_for=where,
                  staging_dir=os.path.expanduser(staging) if staging else None)
