"""The conversion path: download to a staging file, ``qemu-img convert``, upload the result.

qemu-img needs seekable files, so this path (and only this one) stages on disk: in the
``staging_dir`` the config names, else ``TMPDIR``. Free space is checked before a byte
is fetched, and the staging directory is removed on every way out: success, failure,
Ctrl-C, a killed qemu-img.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ChecksumMismatch, MigrationError
from ..manager import ImageManager
from ..models import Image
from ..qemuimg import convert, info, qemu_img
from ..streams import CHUNK_SIZE, Hasher, hashing, read_chunks
from ._destination import Sized, record
from ._identity import label, norm, recorded_identity
from ._options import Options
from ._progress import Meter
from ._properties import (
    PROP_SOURCE,
    PROP_SOURCE_CHECKSUM,
    PROP_SOURCE_DISK_FORMAT,
    PROP_TRANSFER,
    carried,
)
from ._resume import make_resumable
from ._vmmeta import metadata_tarball

if TYPE_CHECKING:
    from ._plan import Plan

# Headroom over the estimate: qcow2 metadata, filesystem rounding.
_SLACK = 1.05
_MIN_SLACK = 16 * 1024 * 1024


class StagingSpaceError(MigrationError):
    """Not enough free space where conversion stages its files."""


def staging_root(options: Options) -> Path:
    return Path(options.staging_dir or tempfile.gettempdir())


def check_space(root: Path, needed: int) -> None:
    """StagingSpaceError unless ``root`` has ``needed`` bytes (plus slack) free."""
    want = int(needed * _SLACK) + _MIN_SLACK
    try:
        root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(root).free
    except OSError as exc:
        raise MigrationError(f"cannot use staging directory {str(root)!r}: {exc.strerror}",
                             hint="set staging_dir in the config, or TMPDIR, to a writable "
                                  "directory") from exc
    if free < want:
        raise StagingSpaceError(
            f"converting needs {want} bytes of staging space in {str(root)!r}, which has "
            f"{free} free", hint="free some space, or point staging_dir in the config (or "
                                 "TMPDIR) at a larger disk")


def copy_converted(p: Plan, options: Options, token: str, made: list[Image]
                   ) -> tuple[Image, int, str, tuple[str, ...]]:
    """Stage, convert, upload; returns the image, bytes fetched, content checksum, checks."""
    assert p.src is not None and p.dst is not None and p.convert is not None
    src_fmt, dst_fmt = p.convert
    qemu_img()  # a missing binary is known before any byte moves
    root = staging_root(options)
    size = p.bytes or p.source.size or 0
    check_space(root, 2 * size)
    with tempfile.TemporaryDirectory(prefix="imagehub-stage-", dir=root) as tmp:
        staged = Path(tmp) / f"source.{src_fmt}"
        moved, checks = _download(p, options, staged)
        out = Path(tmp) / f"disk.{dst_fmt}"
        if src_fmt == dst_fmt:
            out = staged
        else:
            virtual = int(info(staged).get("virtual-size") or 0)
            # A raw result is as large as the virtual disk; other formats stay near the
            # source's size. Only the output is still to be written.
            check_space(root, virtual if dst_fmt == "raw" else staged.stat().st_size)
            convert(staged, src_fmt, out, dst_fmt)
            staged.unlink()  # its space is the upload's headroom now
        image, content, more = _upload(p, options, token, out, dst_fmt, made)
    return image, moved, content, (*checks, *more, f"converted:{src_fmt}->{dst_fmt}")


def _download(p: Plan, options: Options, staged: Path) -> tuple[int, tuple[str, ...]]:
    assert p.src is not None
    meter = Meter(label(p.source), p.bytes, options)
    with p.src.export(p.source) as stream:
        make_resumable(p.src, p.source, stream, options.retries)
        want_sha = bool(p.checksum and options.verify)
        with staged.open("wb") as fh:
            for chunk in stream.iter_bytes(meter, sha256=want_sha):
                fh.write(chunk)
        checks = ["source:" + a.split(":", 1)[0] for a in stream.expected]
        if want_sha:
            assert p.checksum is not None
            if stream.sha256 != p.checksum:
                raise ChecksumMismatch(f"image {label(p.source)}", p.checksum,
                                       str(stream.sha256), backend=p.src.name)
            checks.append("source:content-sha256")
    return meter.done, tuple(checks)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        yield from read_chunks(fh.read, CHUNK_SIZE)


def _upload(p: Plan, options: Options, token: str, disk: Path, dst_fmt: str,
            made: list[Image]) -> tuple[Image, str, tuple[str, ...]]:
    assert p.src is not None and p.dst is not None
    dst: ImageManager = p.dst
    source = p.source
    # sha256 is the copy's identity; a destination that reports one hashed the bytes it
    # stored itself (its backend checks that against what it sent), so it is not redone.
    reports = type(dst).checksum_algorithms
    hasher = Hasher(sorted(reports - {"sha256"} if "sha256" in reports else {"sha256", *reports}))
    metadata = metadata_tarball(source, dst.cloud) if p.wrap else None
    if metadata is not None:
        hasher.update(metadata)  # a split image's identity covers both parts
    props = carried(source, p.src, dst)
    props[PROP_TRANSFER] = token
    props[PROP_SOURCE] = label(source)
    props[PROP_SOURCE_DISK_FORMAT] = p.convert[0] if p.convert else ""
    own = norm(source.checksum) or p.checksum
    if own:
        props[PROP_SOURCE_CHECKSUM] = own
    body = Sized(hashing(_file_chunks(disk), hasher), disk.stat().st_size)
    image = dst.create(body, metadata=io.BytesIO(metadata) if metadata is not None else None,
                       name=p.name, description=source.description,
                       architecture=source.architecture, properties=props,
                       disk_format=None if metadata is not None else dst_fmt,
                       container_format=None if metadata is not None else "bare")
    made.append(image)
    reported = norm(image.checksum)
    if "sha256" in hasher.algos:
        content = hasher.checksum("sha256")
    elif reported and reported.startswith("sha256:"):
        content = reported
    else:
        raise MigrationError(f"{dst.cloud!r} reported no sha256 for image {image.id}",
                             backend=dst.name, hint="report this as a bug in the backend")
    checks: list[str] = []
    if reported and options.verify:
        algo, digest = reported.split(":", 1)
        if algo in hasher.algos:
            if hasher.hexdigest(algo) != digest:
                raise ChecksumMismatch(f"image {image.id} as {dst.cloud!r} stored it",
                                       f"{algo}:{hasher.hexdigest(algo)}", reported,
                                       backend=dst.name)
            checks.append(f"destination:{algo}")
    identity = recorded_identity(source, content)
    if own:
        identity[PROP_SOURCE_CHECKSUM] = own
    image = record(dst, image, identity)
    made.clear()
    return image, content, tuple(checks)

