"""Finding and loading backend plugins (stevedore, entry-point group ``imagehub.backends``).

Nothing is imported or scanned at import time: entry points are read when a backend is
asked for, and only the one asked for is loaded, so a broken plugin hurts only its users.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import metadata
from typing import Any

import stevedore
import stevedore.exception

from .errors import BackendNotFound, BackendUnavailable, InvalidBackend
from .manager import Capability, ImageManager

__all__ = ["NAMESPACE", "BackendInfo", "available_backends", "get_backend"]

NAMESPACE = "imagehub.backends"


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """What ``imagehub backends`` shows for one plugin."""

    name: str
    target: str
    distribution: str | None
    capabilities: Capability | None
    error: str | None

    @property
    def available(self) -> bool:
        return self.error is None


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=NAMESPACE):
        found.setdefault(ep.name, ep)
    return found


def _install_hint(ep: metadata.EntryPoint, missing: str | None) -> str:
    dist = ep.dist.name if ep.dist is not None else None
    if ep.extras and dist:
        return f"pip install '{dist}[{','.join(ep.extras)}]'"
    if missing:
        return f"pip install the package that provides {missing!r}"
    return f"reinstall {dist or 'the plugin'}"


@functools.cache
def get_backend(name: str) -> type[ImageManager]:
    """The ImageManager subclass registered as ``name``; errors say how to fix things."""
    eps = _entry_points()
    ep = eps.get(name)
    if ep is None:
        raise BackendNotFound(name, list(eps))
    try:
        # DriverManager loads just this one plugin and lets its exceptions through.
        driver: Any = stevedore.DriverManager(
            NAMESPACE, name, invoke_on_load=False, on_load_failure_callback=_reraise,
        )
        cls = driver.driver
    except stevedore.exception.NoMatches:
        raise BackendNotFound(name, list(eps)) from None
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        module = ep.value.split(":", 1)[0]
        if missing and (module == missing or module.startswith(missing + ".")):
            # The plugin's own module is absent: a broken install, not a missing extra.
            raise InvalidBackend(
                f"backend {name!r} points at module {module!r}, which is not installed",
                backend=name, hint=f"reinstall {ep.dist.name if ep.dist else 'the plugin'}",
            ) from exc
        raise BackendUnavailable(
            f"backend {name!r} cannot load: {exc}",
            backend=name, hint=_install_hint(ep, missing),
        ) from exc
    except Exception as exc:
        raise InvalidBackend(
            f"backend {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
            backend=name, hint="report this to the plugin's authors",
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, ImageManager)):
        raise InvalidBackend(
            f"backend {name!r} ({ep.value}) is not an imagehub.ImageManager subclass",
            backend=name, hint="report this to the plugin's authors",
        )
    return cls


def _reraise(manager: Any, entrypoint: Any, exc: BaseException) -> None:
    raise exc


def available_backends() -> list[BackendInfo]:
    """Every registered plugin, each loaded on its own so one failure hides no other."""
    infos = []
    for name, ep in sorted(_entry_points().items()):
        dist = ep.dist.name if ep.dist is not None else None
        try:
            cls = get_backend(name)
        except (BackendUnavailable, InvalidBackend, BackendNotFound) as exc:
            infos.append(BackendInfo(name, ep.value, dist, None, str(exc)))
        else:
            infos.append(BackendInfo(name, ep.value, dist, cls.capabilities, None))
    return infos
