"""The clouds file: named clouds, each a backend plus its options.

Found from ``--config``, then ``$IMAGEHUB_CONFIG``, then ``$XDG_CONFIG_HOME/imagehub/
clouds.yaml``. Without any file a single cloud ``local`` exists and is the default. A
secret option may be given as ``KEY_env: VARNAME`` so the file holds no secret.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _redact
from ._redact import excerpt
from .errors import BackendNotFound, BackendUnavailable, ConfigError, ImageHubError
from .manager import ImageManager, Option
from .paths import config_home
from .registry import get_backend, why_not_viable

__all__ = ["CloudConfig", "Config", "default_config_path", "load_config"]

DEFAULT_CLOUD = "local"
_TOP_KEYS = {"clouds", "default", "staging_dir"}
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
            value = float(value)
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
class Config:
    clouds: Mapping[str, CloudConfig]
    default: str = DEFAULT_CLOUD
    path: str | None = None
    #: where migrate stages files it converts (None: TMPDIR)
    staging_dir: str | None = None

    def cloud(self, name: str | None = None) -> CloudConfig:
        wanted = name or self.default
        try:
            return self.clouds[wanted]
        except KeyError:
            names = ", ".join(sorted(self.clouds)) or "none"
            raise ConfigError(f"no cloud named {wanted!r} (configured clouds: {names})",
                              path=self.path) from None

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
        return Config(clouds={DEFAULT_CLOUD: _local_cloud()})
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
    return parse_config(data, where)


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
        if not isinstance(body, dict):
            raise ConfigError("each cloud must be a mapping", path=where, cloud=name)
        backend = body.get("backend")
        if not isinstance(backend, str) or not backend:
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
        clouds[name] = CloudConfig(name=name, backend=backend, options=options, path=where)
    default = data.get("default", DEFAULT_CLOUD)
    if not isinstance(default, str) or default not in clouds:
        raise ConfigError(f"default cloud {excerpt(default)} is not defined", path=where,
                          key="default")
    staging = data.get("staging_dir")
    if staging is not None and (not isinstance(staging, str) or not staging.strip()):
        raise ConfigError("staging_dir must be a directory path", path=where,
                          key="staging_dir")
    return Config(clouds=clouds, default=str(default), path=where,
                  staging_dir=os.path.expanduser(staging) if staging else None)
