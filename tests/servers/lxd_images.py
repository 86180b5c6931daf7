"""Small, valid LXD images built on the fly, plus a big incompressible one.

LXD checks little at import: ``metadata.yaml`` with ``architecture`` and
``creation_date`` in the metadata (or unified) tarball. Each builder adds a
random nonce so every call yields a new fingerprint, which keeps tests that
share one daemon independent of each other.
"""

from __future__ import annotations

import hashlib
import io
import platform
import random
import secrets
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

Compression = Literal["gz", "xz", "bz2", ""]
ImageKind = Literal["unified", "container", "virtual-machine"]
MiB = 1024 * 1024


@dataclass(frozen=True)
class BuiltImage:
    """Files of one image and the fingerprint LXD will give it."""

    kind: ImageKind
    # Unified: (tarball,). Split: (metadata tarball, rootfs).
    paths: tuple[Path, ...]
    fingerprint: str
    architecture: str

    @property
    def metadata(self) -> Path:
        return self.paths[0]

    @property
    def rootfs(self) -> Path:
        if len(self.paths) < 2:
            raise AttributeError("a unified image has no separate rootfs")
        return self.paths[1]

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.paths)


def host_architecture() -> str:
    # LXD names architectures like the kernel does (x86_64, aarch64, ...).
    return platform.machine()


def sha256_files(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            while chunk := fh.read(MiB):
                digest.update(chunk)
    return digest.hexdigest()


def metadata_yaml(
    *,
    architecture: str | None = None,
    creation_date: int | None = None,
    properties: Mapping[str, str] | None = None,
    omit: Iterable[str] = (),
) -> bytes:
    meta: dict[str, Any] = {
        "architecture": architecture or host_architecture(),
        "creation_date": int(time.time()) if creation_date is None else creation_date,
        "properties": {
            "os": "imagehub",
            "release": "test",
            "variant": "default",
            "description": "imagehub test image",
            **(properties or {}),
        },
        "templates": {
            "/etc/hostname": {"when": ["create", "copy"], "template": "hostname.tpl"},
        },
    }
    for key in omit:
        meta.pop(key, None)
    return yaml.safe_dump(meta, sort_keys=True).encode()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(time.time())
    tar.addfile(info)


def _rootfs_files(nonce: str) -> dict[str, bytes]:
    return {
        "etc/hostname": b"imagehub-test\n",
        "etc/os-release": b'NAME="imagehub test"\nID=imagehub\n',
        "etc/imagehub-nonce": nonce.encode() + b"\n",
        "usr/share/doc/README": b"A tiny rootfs built by the imagehub test suite.\n",
    }


def _write_metadata_members(tar: tarfile.TarFile, meta: bytes | None) -> None:
    if meta is not None:
        _add_bytes(tar, "metadata.yaml", meta)
    _add_dir(tar, "templates")
    _add_bytes(tar, "templates/hostname.tpl", b"{{ container.name }}\n")


def _mode(compression: Compression) -> str:
    return f"w:{compression}" if compression else "w"


def _suffix(compression: Compression) -> str:
    return f".tar.{compression}" if compression else ".tar"


def unified_image(
    dest_dir: Path,
    *,
    name: str | None = None,
    compression: Compression = "gz",
    architecture: str | None = None,
    properties: Mapping[str, str] | None = None,
    creation_date: int | None = None,
    omit_metadata_keys: Iterable[str] = (),
    include_metadata: bool = True,
) -> BuiltImage:
    """One tarball holding ``metadata.yaml``, ``templates/`` and ``rootfs/``.

    ``omit_metadata_keys`` / ``include_metadata`` build the broken images LXD
    must refuse ("Missing creation date", "Metadata tarball is missing metadata.yaml").
    """
    nonce = secrets.token_hex(8)
    path = dest_dir / f"{name or 'unified-' + nonce}{_suffix(compression)}"
    meta = metadata_yaml(
        architecture=architecture, properties=properties, omit=omit_metadata_keys
    )
    with tarfile.open(path, _mode(compression)) as tar:  # type: ignore[call-overload]
        _write_metadata_members(tar, meta if include_metadata else None)
        _add_dir(tar, "rootfs")
        for sub in (
            "rootfs/etc",
            "rootfs/usr",
            "rootfs/usr/share",
            "rootfs/usr/share/doc",
        ):
            _add_dir(tar, sub)
        for rel, data in _rootfs_files(nonce).items():
            _add_bytes(tar, f"rootfs/{rel}", data)
    return BuiltImage(
        "unified", (path,), sha256_files([path]), architecture or host_architecture()
    )


def _metadata_tarball(path: Path, meta: bytes, compression: Compression) -> None:
    with tarfile.open(path, _mode(compression)) as tar:  # type: ignore[call-overload]
        _write_metadata_members(tar, meta)


def split_container_image(
    dest_dir: Path,
    *,
    name: str | None = None,
    compression: Compression = "xz",
    architecture: str | None = None,
    properties: Mapping[str, str] | None = None,
) -> BuiltImage:
    """A metadata tarball plus a squashfs rootfs, as distrobuilder makes them."""
    nonce = secrets.token_hex(8)
    stem = name or f"container-{nonce}"
    meta_path = dest_dir / f"{stem}-meta{_suffix(compression)}"
    rootfs_path = dest_dir / f"{stem}.squashfs"
    _metadata_tarball(
        meta_path,
        metadata_yaml(architecture=architecture, properties=properties),
        compression,
    )
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        root = Path(tmp)
        for rel, data in _rootfs_files(nonce).items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        subprocess.run(
            [
                "mksquashfs",
                str(root),
                str(rootfs_path),
                "-noappend",
                "-quiet",
                "-no-progress",
                "-all-root",
            ],
            check=True,
            capture_output=True,
        )
    paths = (meta_path, rootfs_path)
    return BuiltImage(
        "container", paths, sha256_files(paths), architecture or host_architecture()
    )


def split_vm_image(
    dest_dir: Path,
    *,
    name: str | None = None,
    compression: Compression = "xz",
    architecture: str | None = None,
    properties: Mapping[str, str] | None = None,
    disk_size: str = "8M",
) -> BuiltImage:
    """A metadata tarball plus an empty qcow2 disk: a virtual-machine image."""
    nonce = secrets.token_hex(8)
    stem = name or f"vm-{nonce}"
    meta_path = dest_dir / f"{stem}-meta{_suffix(compression)}"
    disk_path = dest_dir / f"{stem}.qcow2"
    # The nonce lives in the metadata: an empty qcow2 of a given size is
    # byte-identical every time, so it cannot make the fingerprint unique.
    props = {"nonce": nonce, **(properties or {})}
    _metadata_tarball(
        meta_path,
        metadata_yaml(architecture=architecture, properties=props),
        compression,
    )
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(disk_path), disk_size],
        check=True,
        capture_output=True,
    )
    paths = (meta_path, disk_path)
    return BuiltImage(
        "virtual-machine",
        paths,
        sha256_files(paths),
        architecture or host_architecture(),
    )


def iter_incompressible_unified(
    size_mib: int,
    *,
    chunk_size: int = MiB,
    seed: int | None = None,
    architecture: str | None = None,
) -> Iterator[bytes]:
    """Yield an uncompressed unified image whose rootfs holds ``size_mib`` MiB of random data.

    The tar stream is produced chunk by chunk, so the image never sits whole in
    memory; plain tar is accepted by LXD and keeps the bytes incompressible.
    """
    rng = random.Random(seed if seed is not None else secrets.randbits(64))
    now = int(time.time())
    members: list[tuple[tarfile.TarInfo, bytes]] = []

    def header(
        name: str, size: int = 0, kind: bytes = tarfile.REGTYPE
    ) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.type = kind
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.mtime = now
        return info

    meta = metadata_yaml(
        architecture=architecture, properties={"description": f"{size_mib} MiB random"}
    )
    members.append((header("metadata.yaml", len(meta)), meta))
    members.append((header("templates", kind=tarfile.DIRTYPE), b""))
    members.append((header("rootfs", kind=tarfile.DIRTYPE), b""))
    for info, data in members:
        yield info.tobuf(format=tarfile.GNU_FORMAT) + data + _padding(len(data))
    total = size_mib * MiB
    yield header("rootfs/random.bin", total).tobuf(format=tarfile.GNU_FORMAT)
    left = total
    while left:
        n = min(chunk_size, left)
        yield rng.randbytes(n)
        left -= n
    yield _padding(total)
    # Two zero blocks end the archive.
    yield bytes(2 * tarfile.BLOCKSIZE)


def _padding(size: int) -> bytes:
    rest = size % tarfile.BLOCKSIZE
    return bytes(tarfile.BLOCKSIZE - rest) if rest else b""


def write_incompressible_unified(
    path: Path, size_mib: int, *, seed: int | None = None
) -> BuiltImage:
    """Write ``iter_incompressible_unified`` to ``path``, hashing as it goes."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for chunk in iter_incompressible_unified(size_mib, seed=seed):
            digest.update(chunk)
            fh.write(chunk)
    return BuiltImage("unified", (path,), digest.hexdigest(), host_architecture())
