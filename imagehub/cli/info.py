"""Commands about the installation: backends and clouds."""

from __future__ import annotations

from typing import Any

import click

from .._redact import redact
from ..config import CloudConfig
from ..errors import ImageHubError
from ..manager import Capability
from ..registry import available_backends, get_backend
from .app import State, cli, emit, pass_state, printable


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
@click.option("--check", is_flag=True,
              help="log in to every cloud (or the -c one) at once; one line each, exit 1 if any "
                   "fails")
@pass_state
def clouds(state: State, check: bool) -> None:
    """Every cloud usable here: the imagehub file's, then OpenStack's, lxc's and Lambda's.

    Says where each came from, which files were read and where imagehub looked.
    """
    cfg = state.config
    if check:
        _check(state, [state.cloud] if state.cloud else list(cfg.clouds))
        return
    rows = [{"name": c.name, "backend": c.backend, "default": c.name == cfg.default,
             "source": c.source, "options": sorted(c.options)} for c in cfg.clouds.values()]
    if state.format in ("json", "yaml"):
        for row, c in zip(rows, cfg.clouds.values(), strict=True):
            row.update(_resolved(c))
    emit(state, rows, columns=("name", "backend", "default", "source"))
    if state.quiet:
        return
    table = cfg.discovery
    notes = [f"imagehub file: {cfg.path or (cfg.looked_for or '') + ' (not present)'}"]
    if table is not None:
        notes.append("read: " + (", ".join(table.read) or "no other tool's file"))
        if table.searched:
            notes.append("looked in: " + ", ".join(table.searched))
        notes += [f"left out {name}: {why}" for name, why in table.left_out.items()]
        notes += [f"warning: {problem}" for problem in table.problems]
    for note in notes:
        click.echo(printable(note), err=state.format != "table")


def _check_one(state: State, name: str) -> dict[str, Any]:
    try:
        manager = state.config.connect(name)
        try:
            manager.list(limit=1)
        finally:
            manager.close()
    except ImageHubError as exc:
        return {"name": name, "ok": False, "problem": " ".join(str(exc).split())}
    except Exception as exc:  # noqa: BLE001 - one cloud's bug must not hide the others'
        return {"name": name, "ok": False,
                "problem": f"unexpected {type(exc).__name__}: {redact(str(exc))[:300]}"}
    return {"name": name, "ok": True, "problem": None}


def _check(state: State, names: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as pool:
        rows = list(pool.map(lambda n: _check_one(state, n), names))
    if state.format == "table":
        width = max((len(r["name"]) for r in rows), default=0)
        for row in rows:
            click.echo(printable(f"{row['name'].ljust(width)}  "
                                 + ("ok" if row["ok"] else f"FAILED: {row['problem']}")))
    else:
        emit(state, rows)
    if not all(r["ok"] for r in rows):
        raise click.exceptions.Exit(1)


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
