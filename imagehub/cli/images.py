"""Image commands: list, show, create, export, update, delete, aliases, sharing, launch."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ImageLookupError, ImageNotFound
from ..filters import sort_images
from ..manager import Capability, ImageManager, UpdateSpec
from ..models import Image, Visibility
from ..models import latest as latest_images
from ..streams import safe_filename

if TYPE_CHECKING:
    from ..hub import CloudFailure
    from ..verify import VerifyResult

from .app import (
    IMAGE_COLUMNS,
    State,
    cli,
    complete_ref,
    emit,
    parse_filters,
    parse_pairs,
    pass_state,
    printable,
)


@cli.command("list")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="keep images whose KEY is VALUE (properties.K for properties; a repeated "
                   "KEY means any of its values; see 'Filters' in the docs)")
@click.option("--latest", is_flag=True,
              help="newest image per family, region and architecture (per name when an "
                   "image has no family)")
@click.option("--sort", "sort_key", metavar="[-]KEY", help="sort by a field; '-' for descending")
@click.option("--limit", type=click.IntRange(min=1), help="show at most N images")
@click.option("--marker", metavar="ID",
              help="one page of --limit images after image ID; the next page's marker is "
                   "printed on stderr (an empty page is the end)")
@click.option("--all-clouds", is_flag=True,
              help="list every configured cloud at once; failures are warnings (exit 1)")
@click.option("--wide", is_flag=True, help="show ids whole")
@click.option("--id-width", type=click.IntRange(min=4), default=12, show_default=True,
              help="shortest id prefix shown (longer where needed to tell ids apart)")
@pass_state
def list_cmd(state: State, filters: tuple[str, ...], latest: bool, sort_key: str | None,
             limit: int | None, marker: str | None, all_clouds: bool, wide: bool,
             id_width: int) -> None:
    """List images."""
    state.wide, state.id_width = wide or state.wide, id_width
    wanted = parse_filters(filters)
    descending = sort_key is not None and sort_key.startswith("-")
    if sort_key is not None:
        sort_key = sort_key[1:] if descending else sort_key
        if not sort_key:
            raise click.UsageError("--sort needs a KEY (a field or properties.K, '-' before "
                                   "it for descending)")
        sort_images([], sort_key)  # a bad key is refused before a slow listing
    failures: list[CloudFailure] = []
    columns: tuple[str, ...] = IMAGE_COLUMNS
    next_marker: str | None = None
    if marker is not None and (all_clouds or latest):
        raise click.UsageError("--marker pages one cloud's plain listing; it does not go "
                               "with --all-clouds or --latest")
    if all_clouds:
        from ..hub import Hub  # only --all-clouds pays for the thread pool and hub

        with Hub(state.config) as hub:
            listing = hub.all(latest=latest, **wanted)
        images, failures = listing.images, listing.failures
        columns = ("cloud", *IMAGE_COLUMNS)
    elif marker is not None or (limit and not latest and not sort_key):
        # A page: --marker, or the first page of --limit (whose last line says the
        # marker of the next).
        manager = state.manager()
        if marker is not None:
            # Any id as the table shows it (a unique prefix) can be typed back; a name
            # is not a position in the listing.
            found = manager.resolve(marker).id
            if not found.startswith(marker):
                raise click.UsageError(f"--marker takes an image id (or the start of one); "
                                       f"{marker!r} is the name or alias of {found}")
            marker = found
        if sort_key:
            # Sorted pages follow one another only where the server sorts (Glance);
            # elsewhere each page would be sorted on its own, which is not a paging.
            if "sort_key" not in manager.server_filters:
                raise click.UsageError(
                    f"cloud {manager.cloud!r} cannot sort pages itself, so --sort does not "
                    "go with --marker there; without --marker, --sort sorts everything")
            wanted["sort_key"] = sort_key
            wanted["sort_dir"] = "desc" if descending else "asc"
        page = manager.list(limit=limit, marker=marker, **wanted)
        images, next_marker = list(page), page.next_marker
    else:
        images = list(state.manager().all(latest=latest, **wanted))
    if sort_key and marker is None:
        images = sort_images(images, sort_key, descending)
    if any(i.region for i in images):  # region-scoped clouds list one record per region
        at = columns.index("architecture") + 1
        columns = (*columns[:at], "region", "version", *columns[at:])
    emit(state, images[:limit] if limit else images, columns=columns)
    if marker is not None or (limit and not all_clouds and not latest and not sort_key):
        # Said under --quiet too: it is how to get the rest, not chatter.
        click.echo(f"imagehub: next page: --marker {next_marker}" if next_marker
                   else "imagehub: last page", err=True)
    warn_failures(failures)


def warn_failures(failures: list[CloudFailure]) -> None:
    for failure in failures:
        click.echo(f"imagehub: warning: {printable(' '.join(str(failure).split()))}", err=True)
    if failures:
        raise click.exceptions.Exit(1)


@cli.command("latest")
@click.argument("family")
@click.option("--architecture", "--arch", help="e.g. x86_64, aarch64 (any spelling)")
@click.option("--region")
@pass_state
def latest_cmd(state: State, family: str, architecture: str | None,
               region: str | None) -> None:
    """The newest image of FAMILY in any configured cloud (only the -c cloud, if given)."""
    from ..hub import Hub

    with Hub(state.config, [state.cloud] if state.cloud else None) as hub:
        listing = hub.latest_listing(family, architecture=architecture, region=region)
    if listing.images:
        emit(state, listing.images[0])
        warn_failures(listing.failures)  # an answer, but exit 1 if a cloud did not give one
        return
    for failure in listing.failures:  # said before the error line they explain
        click.echo(f"imagehub: warning: {printable(' '.join(str(failure).split()))}",
                   err=True)
    wanted = (f"family {family!r}" + (f" for {architecture}" if architecture else "")
              + (f" in {region}" if region else ""))
    if state.cloud:
        where = f"cloud {state.cloud!r}" + (", which did not answer" if listing.failures
                                            else "")
    else:
        where = "the clouds that answered" if listing.failures else "any configured cloud"
    raise ImageNotFound(f"no image of {wanted} in {where}")


_REGION_HELP = "the region's record, for a name that exists in several regions"


def _get(state: State, ref: str, region: str | None) -> tuple[ImageManager, Image]:
    manager, bare = state.target(ref)
    return manager, (manager.get(bare, region=region) if region else manager.get(bare))


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@click.option("--region", help=_REGION_HELP)
@pass_state
def show(state: State, ref: str, region: str | None) -> None:
    """Show one image ([CLOUD:]REF: id, fingerprint prefix, name or alias)."""
    emit(state, _get(state, ref, region)[1])


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=False))
@click.option("--name", help="image name (required for an upload)")
@click.option("--description")
@click.option("--public", is_flag=True, help="make the image public")
@click.option("--property", "properties", multiple=True, metavar="K=V")
@click.option("--alias", "aliases", multiple=True, metavar="ALIAS")
@click.option("--tag", "tags", multiple=True)
@click.option("--disk-format", help="e.g. qcow2, raw; by default read from the file's "
              "own bytes (a label they contradict is refused)")
@click.option("--container-format", help="Glance: bare, ovf, docker ...")
@click.option("--min-ram", type=click.IntRange(min=0), help="Glance: MiB of RAM it needs")
@click.option("--min-disk", type=click.IntRange(min=0), help="Glance: GiB of disk it needs")
@click.option("--protected", is_flag=True, default=None, help="Glance: refuse deletion")
@click.option("--from-url", metavar="URL",
              help="the server downloads the image itself (LXD: a direct-URL image; "
                   "Glance: an import task)")
@click.option("--from-remote", metavar="REMOTE:ALIAS",
              help="LXD pulls from an image server: lxc's remotes (images:debian/12) or "
                   "https://SERVER:ALIAS")
@click.option("--server-cert", metavar="PEM", help="with --from-remote: pin this certificate")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="with --from-url/--from-remote: wait, with a line per status change")
@click.option("--timeout", type=click.FloatRange(min=0), help="seconds to wait at most")
@pass_state
def create(state: State, files: tuple[str, ...], name: str | None, description: str | None,
           public: bool, properties: tuple[str, ...], aliases: tuple[str, ...],
           tags: tuple[str, ...], disk_format: str | None, container_format: str | None,
           min_ram: int | None, min_disk: int | None, protected: bool | None,
           from_url: str | None, from_remote: str | None, server_cert: str | None,
           wait: bool, timeout: float | None) -> None:
    """Upload an image from FILE, or from METADATA ROOTFS for a split image; or have the
    server fetch it (--from-url, --from-remote)."""
    sources = sum(map(bool, (files, from_url, from_remote)))
    if sources == 0:
        raise click.UsageError("Missing argument 'FILES...': give FILE (or METADATA "
                               "ROOTFS), or --from-url or --from-remote")
    if sources > 1:
        raise click.UsageError("give only one of FILE, --from-url and --from-remote")
    if len(files) > 2:
        raise click.UsageError("give one image file, or a metadata tarball and a rootfs")
    # An option the chosen way of creating does not carry is refused, never dropped.
    if server_cert and not from_remote:
        raise click.UsageError("--server-cert goes with --from-remote")
    if files and not wait:
        raise click.UsageError("an upload from FILE always waits: this command sends its "
                               "bytes (--no-wait goes with --from-url/--from-remote)")
    if from_url or from_remote:
        unused = [option for option, value in (
            ("--description", description), ("--tag", tags), ("--min-ram", min_ram),
            ("--min-disk", min_disk), ("--protected", protected))
            if value is not None and value != ()]
        if from_remote:  # an image server's image comes as it is published
            unused += [option for option, value in (("--disk-format", disk_format),
                       ("--container-format", container_format)) if value is not None]
        if unused:
            raise click.UsageError(f"{', '.join(unused)} cannot be given with "
                                   f"{'--from-url' if from_url else '--from-remote'}; set "
                                   "them with 'imagehub update' once the image is there")
    manager = state.manager()
    if from_url or from_remote:
        from .capabilities import pull

        pull(state, manager, url=from_url, remote=from_remote, name=name, aliases=aliases,
             public=public, properties=parse_pairs(properties, "--property"), wait=wait,
             timeout=timeout, server_cert=server_cert, disk_format=disk_format,
             container_format=container_format)
        return
    if not name:
        raise click.UsageError("an upload needs --name")
    extra: dict[str, Any] = {k: v for k, v in (("min_ram", min_ram), ("min_disk", min_disk),
                                               ("protected", protected)) if v is not None}
    if container_format is not None:
        extra["container_format"] = container_format
    if timeout is not None:
        extra["timeout"] = timeout
    total = sum(Path(f).stat().st_size for f in files if Path(f).is_file())
    data, metadata = (files[1], files[0]) if len(files) == 2 else (files[0], None)
    image = manager.create(
        data, name=name, metadata=metadata, description=description,
        visibility=Visibility.PUBLIC if public else None,
        properties=parse_pairs(properties, "--property"), aliases=aliases, tags=tags,
        disk_format=disk_format, progress=state.progress(total, "upload"), **extra)
    emit(state, image)


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@click.option("-o", "--output", metavar="PATH|-",
              help="file (or directory for split images); '-' for stdout")
@click.option("--force", is_flag=True, help="overwrite an existing file")
@click.option("--region", help=_REGION_HELP)
@pass_state
def export(state: State, ref: str, output: str | None, force: bool,
           region: str | None) -> None:
    """Download an image, verified against its checksum; no partial file is left."""
    if output == "":
        raise click.UsageError("-o/--output is empty; name a file or directory, or '-'")
    manager, image = _get(state, ref, region)
    with manager.export(image) as stream:
        progress = state.progress(stream.size, "download")
        if output == "-":
            if sys.stdout.isatty():
                raise click.UsageError("refusing to write image bytes to a terminal")
            stream.save(sys.stdout.buffer, progress=progress)
            return
        image = stream.image
        # The default name comes from the server's id: only ever a name in this directory.
        default = safe_filename(image.id)
        target = output or (default if len(stream.parts) == 1 else f"{default}.parts")
        written = stream.save(target, force=force, progress=progress)
    if state.format != "table":
        emit(state, {"id": image.id, "name": image.name,
                     "files": [str(p) for p in written]})
    elif not state.quiet:
        # Only a note: the image is saved, and a closed or full stdout must not turn that
        # success into exit status 1.
        with contextlib.suppress(OSError):
            for path in written:
                click.echo(printable(str(path)))


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@click.option("--name")
@click.option("--description")
@click.option("--property", "properties", multiple=True, metavar="K=V")
@click.option("--remove-property", "removed", multiple=True, metavar="K")
@click.option("--public/--private", default=None)
@click.option("--protected/--unprotected", default=None, help="Glance: refuse deletion")
@click.option("--min-ram", type=click.IntRange(min=0), help="Glance: MiB of RAM it needs")
@click.option("--min-disk", type=click.IntRange(min=0), help="Glance: GiB of disk it needs")
@click.option("--auto-update/--no-auto-update", default=None,
              help="LXD: refresh the image from its source")
@pass_state
def update(state: State, ref: str, name: str | None, description: str | None,
           properties: tuple[str, ...], removed: tuple[str, ...],
           public: bool | None, protected: bool | None, min_ram: int | None,
           min_disk: int | None, auto_update: bool | None) -> None:
    """Change an image's name, description, properties, visibility, and the settings only
    some backends have."""
    manager, bare = state.target(ref)
    given = {"name": name, "description": description,
             "visibility": None if public is None else (
                 Visibility.PUBLIC if public else Visibility.PRIVATE)}
    # An option left out is no change; only the ones given reach the spec.
    extra = {k: v for k, v in (("protected", protected), ("min_ram", min_ram),
                               ("min_disk", min_disk), ("auto_update", auto_update))
             if v is not None}
    spec = UpdateSpec.from_changes({
        **{k: v for k, v in given.items() if v is not None},
        "properties": parse_pairs(properties, "--property"),
        "remove_properties": removed,
        **extra,
    })
    if not spec.keys():
        raise click.UsageError("nothing to change")
    emit(state, manager.update(bare, spec))


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@pass_state
def delete(state: State, ref: str) -> None:
    """Delete an image."""
    manager, bare = state.target(ref)
    manager.require(Capability.DELETE, "delete")  # refuse before any request
    image = manager.get(bare)
    manager.delete(image)
    if state.format != "table":
        emit(state, {"deleted": image.id, "name": image.name})
    elif not state.quiet:
        click.echo(f"deleted {printable(image.id)}", err=True)


@cli.command()
@click.argument("refs", nargs=-1, shell_complete=complete_ref)
@click.option("--all", "all_images", is_flag=True, help="every image of the cloud")
@click.option("--repair", is_flag=True,
              help="local store: remove orphan blobs (data no image uses)")
@pass_state
def verify(state: State, refs: tuple[str, ...], all_images: bool, repair: bool) -> None:
    """Read images back and check them against their checksums (a scrub).

    On a local store it also reports orphan and missing blobs; exit status 1 when anything
    is wrong.
    """
    if bool(refs) == all_images:
        raise click.UsageError("give REF... or --all")
    from ..verify import verify_image

    results: list[VerifyResult] = []
    store_ok = True
    if all_images:
        manager = state.manager()
        manager.require(Capability.EXPORT, "verify (it reads images back)")
        results = [verify_image(manager, image) for image in manager.all()]
        managers = [manager]
    else:
        managers = []
        for ref in refs:
            manager, bare = state.target(ref)
            manager.require(Capability.EXPORT, "verify (it reads images back)")
            results.append(verify_image(manager, manager.get(bare)))
            if manager not in managers:
                managers.append(manager)
    checkers = [(m, getattr(m, "check", None)) for m in managers]
    if repair and not any(callable(c) for _m, c in checkers):
        raise click.UsageError("--repair applies to local stores only")
    rows = [{"id": r.image.id, "name": r.image.name, "size": r.bytes,
             "result": "ok" if r.ok and not r.problem else
             (f"ok ({r.problem})" if r.ok else f"FAILED: {r.problem}")} for r in results]
    emit(state, rows, columns=("id", "name", "size", "result"))
    for manager, check in checkers:
        if not callable(check):
            continue
        report = check(repair=repair)
        for digest in report.orphans:
            # An orphan may be the only copy of an image a restored catalog forgot.
            click.echo(f"imagehub: warning: {manager.cloud}: orphan blob {digest} "
                       "(no image uses it; if the catalog was restored or recovered, it "
                       "may be an image: 'imagehub create' it from blobs/sha256/ first; "
                       "--repair removes it)", err=True)
        for image_id, digests in report.missing.items():
            click.echo(f"imagehub: warning: {manager.cloud}: image {printable(image_id)} is "
                       f"missing blob(s) {printable(', '.join(digests))}", err=True)
        for name in report.stray:
            click.echo(f"imagehub: warning: {manager.cloud}: stray file {printable(name)}",
                       err=True)
        for name in report.removed:
            click.echo(f"imagehub: {manager.cloud}: removed {printable(name)}", err=True)
        store_ok = store_ok and not (report.orphans or report.missing or report.stray)
    if not store_ok or not all(r.ok for r in results):
        raise click.exceptions.Exit(1)


@cli.group()
def alias() -> None:
    """Add or remove aliases (tags, where a backend calls them that)."""


@alias.command("add")
@click.argument("ref", shell_complete=complete_ref)
@click.argument("name")
@click.option("--description")
@pass_state
def alias_add(state: State, ref: str, name: str, description: str | None) -> None:
    manager, bare = state.target(ref)
    emit(state, manager.add_alias(bare, name, description=description))


@alias.command("remove")
@click.argument("name")
@pass_state
def alias_remove(state: State, name: str) -> None:
    manager, bare = state.target(name)
    manager.remove_alias(bare)
    if state.format != "table":
        emit(state, {"removed_alias": bare})


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@click.argument("project")
@pass_state
def share(state: State, ref: str, project: str) -> None:
    """Share an image with another project."""
    manager, bare = state.target(ref)
    emit(state, manager.share(bare, project))


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@click.argument("project")
@pass_state
def unshare(state: State, ref: str, project: str) -> None:
    """Stop sharing an image with a project."""
    manager, bare = state.target(ref)
    manager.unshare(bare, project)
    if state.format != "table":
        emit(state, {"image": bare, "unshared": project})


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@pass_state
def members(state: State, ref: str) -> None:
    """List the projects an image is shared with."""
    manager, bare = state.target(ref)
    emit(state, manager.members(bare), columns=("member_id", "status", "updated_at"))


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@pass_state
def accept(state: State, ref: str) -> None:
    """As the member project, accept an image shared with you."""
    manager, bare = state.target(ref)
    emit(state, manager.accept(bare))


@cli.command()
@click.argument("ref", shell_complete=complete_ref)
@pass_state
def reject(state: State, ref: str) -> None:
    """As the member project, reject an image shared with you."""
    manager, bare = state.target(ref)
    emit(state, manager.reject(bare))


@cli.command()
@click.argument("ref", required=False, shell_complete=complete_ref)
@click.option("--family", help="launch the latest image of this family instead of REF")
@click.option("--region", required=True)
@click.option("--architecture", "--arch", help="with --family: which architecture's image")
@click.option("--instance-type", required=True)
@click.option("--ssh-key", required=True, help="name of an SSH key known to the provider")
@click.option("--name", help="instance name")
@pass_state
def launch(state: State, ref: str | None, family: str | None, region: str,
           architecture: str | None, instance_type: str, ssh_key: str,
           name: str | None) -> None:
    """Launch instances from an image, where the backend can."""
    if (ref is None) == (family is None):
        raise click.UsageError("give either REF or --family")
    manager, bare = state.target(ref) if ref else (state.manager(), "")
    manager.require(Capability.LAUNCH, "launch")
    if family:
        newest = latest_images(manager.all(family=family, region=region,
                                           architecture=architecture))
        if not newest:
            raise click.UsageError(f"no image of family {family!r} in {region}")
        if len(newest) > 1:
            # Never guess: an arm64 image on an x86 instance type fails late and costs money.
            archs = ", ".join(sorted(str(i.architecture) for i in newest))
            raise click.UsageError(f"family {family!r} in {region} has images for {archs}; "
                                   "choose one with --architecture")
        target = newest[0]
        ids = manager.launch(target, region, instance_type, ssh_key, name=name)
        emit(state, [{"instance_id": i, "image_id": target.id} for i in ids])
        return
    # As launch() in Python: a name found in several regions means this region's record.
    try:
        chosen: Image | str = manager.get(bare, region=region)
    except ImageLookupError:
        chosen = bare  # launch() knows refs (family:...) and images valid in any region
    ids = manager.launch(chosen, region, instance_type, ssh_key, name=name)
    shown = chosen.id if isinstance(chosen, Image) else chosen
    emit(state, [{"instance_id": i, "image_id": shown} for i in ids])
