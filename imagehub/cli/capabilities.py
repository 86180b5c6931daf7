"""Commands for what only some backends can do: server-side pulls and imports (LXD from a
URL or an image server, Glance's import and export tasks), tags, member status back to
pending, deactivation.

Each calls the backend's own method; a backend without it is an UnsupportedOperation
that names the backend, never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from ..errors import UnsupportedOperation
from ..manager import ImageManager, UpdateSpec
from ..operations import Operation
from .app import State, cli, complete_ref, emit, pass_state, printable


def backend_method(manager: ImageManager, name: str, what: str) -> Callable[..., Any]:
    method: Any = getattr(manager, name, None)
    if not callable(method):
        raise UnsupportedOperation(manager.name, what,
                                   f"cloud {manager.cloud!r} has no such operation")
    found: Callable[..., Any] = method
    return found


def finish(state: State, op: Operation[Any], wait: bool, timeout: float | None,
           label: str) -> Any:
    """Wait for ``op`` saying each status change on stderr, or report it unfinished."""
    if not wait:
        op.reload()
        return {"operation": op.id, "status": op.status.value, "message": op.message}
    deadline = None if timeout is None else time.monotonic() + timeout
    said = None
    interval = 0.2
    while True:
        op.reload()
        if op.status.value != said and not state.quiet:
            said = op.status.value
            click.echo(printable(f"imagehub: {label} {op.id}: {said}"
                                 + (f" ({op.message})" if op.message else "")), err=True)
        if op.done:
            return op.result
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return op.wait(0)  # raises OperationTimeout with the server's words
        time.sleep(interval if left is None else min(interval, left))
        interval = min(interval * 1.5, 2.0)


def emit_result(state: State, result: Any) -> None:
    if isinstance(result, dict) or hasattr(result, "to_dict"):
        emit(state, result)
    else:
        emit(state, {"result": None if result is None else str(result)})


# -- server-side imports --------------------------------------------------------------------
def parse_remote(text: str) -> tuple[str, str, str | None]:
    """``images:debian/12`` (an lxc image-server remote) or ``https://server:alias``."""
    from ..discovery import lxc_image_servers

    if text.startswith("https://"):
        server, sep, alias = text.rpartition(":")
        if not sep or server == "https" or not alias:
            raise click.BadParameter("write https://SERVER:ALIAS or REMOTE:ALIAS",
                                     param_hint="--from-remote")
        return server, alias, None
    remote, sep, alias = text.partition(":")
    servers = lxc_image_servers()
    if not sep or not alias:
        raise click.BadParameter(f"write REMOTE:ALIAS, e.g. images:debian/12 (remotes: "
                                 f"{', '.join(sorted(servers))})", param_hint="--from-remote")
    if remote not in servers:
        raise click.BadParameter(f"no image server remote {remote!r} (known: "
                                 f"{', '.join(sorted(servers))})", param_hint="--from-remote")
    return servers[remote]["addr"], alias, remote


def pull(state: State, manager: ImageManager, *, url: str | None, remote: str | None,
         name: str | None, aliases: tuple[str, ...], public: bool,
         properties: dict[str, str], wait: bool, timeout: float | None,
         server_cert: str | None, disk_format: str | None,
         container_format: str | None) -> None:
    """``create --from-url`` / ``--from-remote``: the server fetches the image itself."""
    lxd_pull = remote is not None or hasattr(manager, "create_from_url")
    carried = (("--disk-format", disk_format), ("--container-format", container_format)) \
        if lxd_pull else (("--public", public or None), ("--alias", aliases or None))
    unused = [option for option, value in carried if value is not None]
    if unused:
        raise click.UsageError(
            f"{', '.join(unused)} cannot be given with this pull on cloud "
            f"{manager.cloud!r}: the server decides "
            + ("the image's format" if lxd_pull else "no visibility or alias here")
            + "; set what it can keep with 'imagehub update' once the image is there")
    if remote is not None:
        server, alias, _ = parse_remote(remote)
        method = backend_method(manager, "create_from_simplestreams",
                                "create from an image server")
        made = method(server, alias, certificate=server_cert, name=name, aliases=aliases,
                      public=public, properties=properties, wait=False, timeout=timeout)
        label = "pull"
    else:
        assert url is not None
        if hasattr(manager, "create_from_url"):
            made = backend_method(manager, "create_from_url", "create from a URL")(
                url, name=name, aliases=aliases, public=public, properties=properties,
                wait=False, timeout=timeout)
        else:
            if not name:
                raise click.UsageError("--from-url on this cloud needs --name")
            method = backend_method(manager, "import_task", "create from a URL")
            made = method(url, name=name, disk_format=disk_format or "qcow2",
                          container_format=container_format or "bare",
                          properties=properties)
        label = "import"
    emit_result(state, finish(state, made, wait, timeout, label))


@cli.group()
def task() -> None:
    """Glance's import and export tasks (pyrax's import_task and export_task)."""


@task.command("import")
@click.argument("url")
@click.option("--name", required=True)
@click.option("--disk-format", default="qcow2", show_default=True)
@click.option("--container-format", default="bare", show_default=True)
@click.option("--property", "properties", multiple=True, metavar="K=V")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="wait for the task, with a line per status change")
@click.option("--timeout", type=click.FloatRange(min=0), help="seconds to wait at most")
@pass_state
def task_import(state: State, url: str, name: str, disk_format: str, container_format: str,
                properties: tuple[str, ...], wait: bool, timeout: float | None) -> None:
    """Have the cloud import an image from URL."""
    from .app import parse_pairs

    manager = state.manager()
    method = backend_method(manager, "import_task", "import tasks")
    op = method(url, name=name, disk_format=disk_format, container_format=container_format,
                properties=parse_pairs(properties, "--property"))
    emit_result(state, finish(state, op, wait, timeout, "task"))


@task.command("export")
@click.argument("ref", shell_complete=complete_ref)
@click.option("-o", "--output", required=True, metavar="PATH")
@click.option("--force", is_flag=True, help="overwrite an existing file")
@click.option("--wait/--no-wait", default=True, show_default=True)
@pass_state
def task_export(state: State, ref: str, output: str, force: bool, wait: bool) -> None:
    """Export an image as a task, to a local file."""
    manager, bare = state.target(ref)
    method = backend_method(manager, "export_task", "export tasks")
    op = method(bare, output, force=force)
    if not wait:
        click.echo("imagehub: --no-wait: the export runs inside this process; waiting",
                   err=True)
    result = finish(state, op, True, None, "export")
    emit(state, {"files": [str(result)] if result else []})


@task.command("show")
@click.argument("task_id")
@pass_state
def task_show(state: State, task_id: str) -> None:
    """Where a task stands."""
    manager = state.manager()
    op = backend_method(manager, "get_task", "tasks")(task_id)
    emit(state, {"operation": op.id, "status": op.status.value, "message": op.message})


# -- tags -----------------------------------------------------------------------------------
@cli.group()
def tag() -> None:
    """Add or remove an image's tags."""


def _retag(state: State, ref: str, tags: tuple[str, ...], add: bool) -> None:
    manager, bare = state.target(ref)
    image = manager.get(bare)
    current = list(image.tags)
    wanted = current + [t for t in tags if t not in current] if add else \
        [t for t in current if t not in tags]
    emit(state, manager.update(image, UpdateSpec(tags=tuple(wanted))))


@tag.command("add")
@click.argument("ref", shell_complete=complete_ref)
@click.argument("tags", nargs=-1, required=True)
@pass_state
def tag_add(state: State, ref: str, tags: tuple[str, ...]) -> None:
    """Add TAGS to an image."""
    _retag(state, ref, tags, add=True)


@tag.command("remove")
@click.argument("ref", shell_complete=complete_ref)
@click.argument("tags", nargs=-1, required=True)
@pass_state
def tag_remove(state: State, ref: str, tags: tuple[str, ...]) -> None:
    """Remove TAGS from an image."""
    _retag(state, ref, tags, add=False)


# -- member status, activation ----------------------------------------------------------------
@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@pass_state
def pending(state: State, ref: str) -> None:
    """As the member project, put a share back to pending (neither accepted nor rejected)."""
    manager, bare = state.target(ref)
    emit(state, manager.update_member(bare, "pending"))


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@pass_state
def deactivate(state: State, ref: str) -> None:
    """Make an image's data unreadable to non-admins until reactivated (Glance)."""
    manager, bare = state.target(ref)
    emit(state, backend_method(manager, "deactivate", "deactivate")(bare))


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@pass_state
def reactivate(state: State, ref: str) -> None:
    """Make a deactivated image readable again (Glance)."""
    manager, bare = state.target(ref)
    emit(state, backend_method(manager, "reactivate", "reactivate")(bare))
