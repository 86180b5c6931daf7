"""Commands that move images between clouds: migrate and sync."""

from __future__ import annotations

from collections.abc import Callable

import click

from ..errors import MigrationError
from ..migration import Progress, SyncSummary, plan, sync
from ..migration._executors import SPECS, open_executor
from ..qemuimg import CONVERTIBLE
from .app import State, cli, emit, parse_filters, pass_state, printable

SYNC_COLUMNS = ("source_id", "action", "path", "image_id", "bytes", "seconds", "error")
# With --executor the table says where each transfer ran.
PLACED_COLUMNS = (*SYNC_COLUMNS[:-1], "worker", "error")


def _bar(state: State, total: int | None, label: str) -> Callable[[Progress], None] | None:
    """migrate's Progress fed to the CLI's byte bar (drawn only on a terminal)."""
    advance = state.progress(total, label)
    if advance is None:
        return None
    bar = advance  # narrowed for the closure

    def show(p: Progress) -> None:
        bar(p.delta)

    return show


@cli.command("migrate")
@click.argument("source", metavar="SRC_CLOUD:REF")
@click.argument("destination", metavar="DST_CLOUD")
@click.option("--name", help="name of the new image (default: the source's)")
@click.option("--dry-run", is_flag=True, help="print the plan: what, how many bytes, which path")
@click.option("--stream", is_flag=True, help="force the client-side stream even where a "
              "native server-side path exists")
@click.option("--disk-format", type=click.Choice(sorted(CONVERTIBLE)),
              help="convert the disk to this format with qemu-img (staged in the config's "
                   "staging_dir, else TMPDIR)")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="retries of a transfer after a transient error")
@pass_state
def migrate_cmd(state: State, source: str, destination: str, name: str | None,
                dry_run: bool, stream: bool, disk_format: str | None, retries: int) -> None:
    """Copy one image to another cloud, verified end to end.

    Nothing half-made is left on the destination if it fails or is interrupted.
    """
    src, ref = state.target(source)
    dst = state.manager(destination)
    chosen = plan(src, ref, dst, name=name, stream=stream, disk_format=disk_format)
    if name is not None and chosen.action == "present" and chosen.name != name:
        click.echo(f"imagehub: warning: {destination} already holds this image as "
                   f"{printable(repr(chosen.name))}; --name is not applied to it (rename it "
                   "with 'imagehub update')", err=True)
    if dry_run:
        emit(state, chosen)
        return
    done = chosen.execute(progress=_bar(state, chosen.bytes, chosen.name), retries=retries,
                          staging_dir=state.config.staging_dir)
    emit(state, done)


@cli.command("sync")
@click.argument("source", metavar="SRC_CLOUD")
@click.argument("destination", metavar="DST_CLOUD")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="only source images whose KEY is VALUE (a repeated KEY means any of its "
                   "values, as in list)")
@click.option("--latest", is_flag=True, help="only the newest image per family, region and "
              "architecture")
@click.option("--jobs", type=click.IntRange(min=1, max=64), default=1, show_default=True,
              help="transfers at once")
@click.option("--dry-run", is_flag=True, help="print what would be copied, copy nothing")
@click.option("--stream", is_flag=True, help="force the client-side stream path")
@click.option("--disk-format", type=click.Choice(sorted(CONVERTIBLE)),
              help="convert each copy to this disk format with qemu-img")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--executor", "executor_spec", metavar="SPEC",
              help=f"where transfers run: {SPECS} (a Dask cluster needs "
                   "'imagehub[dask]'; its workers connect with their own clouds file)")
@pass_state
def sync_cmd(state: State, source: str, destination: str, filters: tuple[str, ...],
             latest: bool, jobs: int, dry_run: bool, stream: bool, disk_format: str | None,
             retries: int, executor_spec: str | None) -> None:
    """Copy every image SRC_CLOUD has and DST_CLOUD lacks (by content, not by name).

    Safe to re-run: what was copied is found by its checksum and skipped, and a run cut
    short is finished by the next one.
    """
    src, dst = state.manager(source), state.manager(destination)
    with open_executor(None if dry_run else executor_spec, jobs,
                       state.config_path) as executor:
        summary = sync(src, dst, filters=parse_filters(filters), latest=latest,
                       jobs=jobs, dry_run=dry_run, stream=stream, retries=retries,
                       disk_format=disk_format, staging_dir=state.config.staging_dir,
                       progress=None if dry_run else _bar(state, None, "sync"),
                       executor=executor)
    if state.format == "table":
        emit(state, [t.to_dict() for t in summary.items],
             columns=SYNC_COLUMNS if executor_spec is None else PLACED_COLUMNS)
        if not state.quiet:
            click.echo(_totals(summary), err=True)
    else:
        emit(state, summary)
    if not summary.ok:
        first = next(t for t in summary.items if t.action == "failed")
        raise MigrationError(f"{summary.failed} of {len(summary.items)} images failed; "
                             f"first: {first.source.id}: {first.error}")


def _totals(s: SyncSummary) -> str:
    if s.dry_run:
        return f"sync {s.source} -> {s.destination}: {s.planned} to copy, {s.present} present"
    return (f"sync {s.source} -> {s.destination}: {s.copied} copied, {s.present} present, "
            f"{s.failed} failed, {s.bytes} bytes in {s.seconds:.1f}s")
