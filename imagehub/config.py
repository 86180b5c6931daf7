"""The clouds file: named clouds, each a backend plus its options.

Found from ``--config``, then ``$IMAGEHUB_CONFIG``, then ``$XDG_CONFIG_HOME/imagehub/
clouds.yaml``. Without any file a single cloud ``local`` exists and is the default. A
secret option may be given as ``KEY_env: VARNAME`` so the file holds no secret.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import BackendNotFound, ConfigError, ImageHubError
from .manager import ImageManager, Option
from .refs import KNOWN_ALGORITHMS
from .registry import get_backend

__all__ = ["CloudConfig", "Config", "default_config_path", "load_config"]

DEFAULT_CLOUD = "local"
_TOP_KEYS = {"clouds", "default"}


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "imagehub" / "clouds.yaml"


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
            if base is not None and base in declared and declared[base].secret \
                    and f"{base}_env" not in declared:
                out[base] = self._from_env(base, key, value)
                continue
            if key not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise ConfigError(f"unknown key for backend {self.backend!r} (known keys: "
                                  f"{known})", path=self.path, cloud=self.name, key=key)
            out[key] = self._check(key, value, declared[key])
        for key, opt in declared.items():
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
            shown = "<hidden>" if opt.secret else repr(value)
            wanted = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"expected {wanted}, got {shown}", path=self.path,
                              cloud=self.name, key=key)
        if opt.choices is not None and value not in opt.choices:
            raise ConfigError(f"must be one of {', '.join(map(str, opt.choices))}",
                              path=self.path, cloud=self.name, key=key)
        return value


@dataclasses.dataclass(frozen=True)
class Config:
    clouds: Mapping[str, CloudConfig]
    default: str = DEFAULT_CLOUD
    path: str | None = None

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
        options = cloud.resolved_options(cls)
        try:
            return cls.from_options(options, cloud=cloud.name)
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
    try:
        data = yaml.safe_load(chosen.read_text(encoding="utf-8"))
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
            raise ConfigError(f"unknown top-level key (known: {', '.join(sorted(_TOP_KEYS))})",
                              path=where, key=str(key))
    raw_clouds = data.get("clouds") or {}
    if not isinstance(raw_clouds, dict):
        raise ConfigError("'clouds' must be a mapping of cloud names", path=where, key="clouds")
    clouds: dict[str, CloudConfig] = {DEFAULT_CLOUD: _local_cloud()}
    for name, body in raw_clouds.items():
        name = str(name)
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
            raise ConfigError("missing 'backend' (for example: backend: lxd)", path=where,
                              cloud=name, key="backend")
        options = {str(k): v for k, v in body.items() if k != "backend"}
        clouds[name] = CloudConfig(name=name, backend=backend, options=options, path=where)
    default = data.get("default", DEFAULT_CLOUD)
    if default not in clouds:
        raise ConfigError(f"default cloud {default!r} is not defined", path=where,
                          key="default")
    return Config(clouds=clouds, default=str(default), path=where)
