"""Commands about the installation: backends and clouds."""

from __future__ import annotations

from typing import Any

from ..config import CloudConfig
from ..errors import ImageHubError
from ..manager import Capability
from ..registry import available_backends, get_backend
from .app import State, cli, emit, pass_state


def _caps(flags: Capability | None) -> list[str]:
    if flags is None:
        return []
    single = [c for c in Capability if c.value and (c.value & (c.value - 1)) == 0]
    return [str(c.name).lower() for c in single if c in flags]


@cli.command()
@pass_state
def backends(state: State) -> None:
    """Installed backend plugins, their capabilities, and whether they load and can work here."""
    rows = [{"name": b.name, "available": b.available, "viable": b.viable,
             "capabilities": _caps(b.capabilities), "distribution": b.distribution,
             "problem": b.error or b.not_viable}
            for b in available_backends()]
    emit(state, rows, columns=("name", "available", "viable", "capabilities", "problem"))


@cli.command()
@pass_state
def clouds(state: State) -> None:
    """Configured clouds (a cloud named 'local' always exists)."""
    cfg = state.config
    rows = [{"name": c.name, "backend": c.backend, "default": c.name == cfg.default,
             "options": sorted(c.options)} for c in cfg.clouds.values()]
    if state.format in ("json", "yaml"):
        for row, c in zip(rows, cfg.clouds.values(), strict=True):
            row.update(_resolved(c))
    emit(state, rows, columns=("name", "backend", "default", "options"))


def _resolved(cloud: CloudConfig) -> dict[str, Any]:
    """What a backend that can say so (``describe_config``) resolved, secrets left out."""
    try:
        cls = get_backend(cloud.backend)
        describe = getattr(cls, "describe_config", None)
        if describe is None:
            return {}
        return {"resolved": describe(cloud.resolved_options(cls))}
    except ImageHubError as exc:
        return {"problem": str(exc)}
