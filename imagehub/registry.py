"""Finding and loading backend plugins (entry-point group ``imagehub.backends``).

Entry points are read with ``importlib.metadata`` alone, once per process, and only when
a backend is first asked for; only the one asked for is imported, so a broken plugin
hurts only its users. Nothing is scanned at import and nothing is cached on disk.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from .errors import BackendNotFound, BackendUnavailable, InvalidBackend
from .manager import Capability, ImageManager

if TYPE_CHECKING:
    from importlib import metadata

__all__ = ["INSTALL_HINTS", "NAMESPACE", "BackendInfo", "available_backends", "get_backend",
           "refresh", "why_not_viable"]

NAMESPACE = "imagehub.backends"

#: What to install when a backend's own SDK is missing. Kept here, not read from
#: entry-point extras: the entry-points specification lets consumers ignore those.
INSTALL_HINTS: dict[str, str] = {
    "lxd": "pip install 'imagehub[lxd]'",
    "glance": "pip install 'imagehub[openstack]'",
    "openstack": "pip install 'imagehub[openstack]'",
    "lambda": "pip install 'imagehub[lambda]'",
}


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """What ``imagehub backends`` shows for one plugin."""

    name: str
    target: str
    distribution: str | None
    capabilities: Capability | None
    #: why the plugin cannot be loaded (None when it loads)
    error: str | None
    #: why the plugin loads but cannot work on this machine (None when it can)
    not_viable: str | None = None

    @property
    def available(self) -> bool:
        return self.error is None

    @property
    def viable(self) -> bool:
        return self.error is None and self.not_viable is None


@functools.cache
def _entry_points() -> dict[str, metadata.EntryPoint]:
    # Scanned once: installing a plugin mid-process is not supported (restart instead),
    # and tests that fake one call refresh().
    # importlib.metadata itself costs tens of ms to import: only a backend lookup pays it.
    from importlib import metadata

    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=NAMESPACE):
        found.setdefault(ep.name, ep)
    return found


def refresh() -> None:
    """Forget what was scanned and loaded, so plugins installed since are seen."""
    _entry_points.cache_clear()
    get_backend.cache_clear()


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else None


def _install_hint(name: str, ep: metadata.EntryPoint, missing: str | None) -> str:
    if name in INSTALL_HINTS:
        return INSTALL_HINTS[name]
    dist = _dist_name(ep) or "the plugin"
    if missing:
        return f"pip install the package that provides {missing!r} (needed by {dist})"
    return f"reinstall {dist}"


@functools.cache
def get_backend(name: str) -> type[ImageManager]:
    """The ImageManager subclass registered as ``name``; errors say how to fix things."""
    eps = _entry_points()
    ep = eps.get(name)
    if ep is None:
        raise BackendNotFound(name, sorted(eps))
    try:
        cls = ep.load()
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        module = ep.module
        if missing and (module == missing or module.startswith(missing + ".")):
            # The plugin's own module is absent: a broken install, not a missing extra.
            raise InvalidBackend(
                f"backend {name!r} points at module {module!r}, which is not installed",
                backend=name, hint=f"reinstall {_dist_name(ep) or 'the plugin'}",
            ) from exc
        raise BackendUnavailable(
            f"backend {name!r} cannot load: {exc}",
            backend=name, hint=_install_hint(name, ep, missing),
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


def why_not_viable(cls: type[ImageManager]) -> str | None:
    """The backend's own reason it cannot work here, or None; never raises."""
    # A plugin's own check must not take the listing down with it.
    try:
        reason = cls.not_viable()
    except Exception as exc:  # noqa: BLE001 - any failure of the check means "cannot tell"
        return f"its viability check failed: {type(exc).__name__}: {exc}"
    if reason is None or isinstance(reason, str):
        return reason or None
    # keyring's viable is a bool; a plugin that mixes the two up must not read as viable.
    return (f"its not_viable() returned {reason!r}, not a reason or None; "
            "report this to the plugin's authors")


def available_backends() -> list[BackendInfo]:
    """Every registered plugin, each loaded on its own so one failure hides no other."""
    infos = []
    for name, ep in sorted(_entry_points().items()):
        dist = _dist_name(ep)
        try:
            cls = get_backend(name)
        except (BackendUnavailable, InvalidBackend, BackendNotFound) as exc:
            infos.append(BackendInfo(name, ep.value, dist, None, str(exc)))
        else:
            infos.append(BackendInfo(name, ep.value, dist, cls.capabilities, None,
                                     why_not_viable(cls)))
    return infos
