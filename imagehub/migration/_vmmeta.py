"""The metadata a VM disk from elsewhere needs to become a split virtual-machine image.

A destination that declares ``vm_needs_metadata`` (LXD) keeps a VM image as a metadata
tarball (``metadata.yaml``) plus a qcow2 root disk; a disk from Glance or a local store
has no such tarball, so migrate writes one from the source image's own fields.
"""

from __future__ import annotations

import datetime as dt
import io
import tarfile

from ..errors import IncompatibleFormat
from ..models import Image, normalize_architecture

# Where each value may hide on an image from another cloud: the model's field first,
# then the property names OpenStack documents (Glance's image properties).
_ARCH_KEYS = ("architecture", "hw_architecture", "arch")
_OS_KEYS = ("os", "os_distro")
_RELEASE_KEYS = ("release", "os_version")


def _first(image: Image, field: str | None, keys: tuple[str, ...]) -> str | None:
    value = getattr(image, field) if field else None
    if value:
        return str(value)
    for key in keys:
        if image.properties.get(key):
            return str(image.properties[key])
    return None


def vm_architecture(image: Image, destination: str) -> str:
    """The image's CPU architecture, or IncompatibleFormat saying how to give one."""
    arch = normalize_architecture(_first(image, "architecture", _ARCH_KEYS))
    if arch is None:
        raise IncompatibleFormat(
            f"image {image.id} does not say which CPU architecture its disk is for, and "
            f"{destination} needs it to make a virtual-machine image", backend=destination,
            hint="set it on the source image first, e.g. 'imagehub update REF "
                 "--property hw_architecture=x86_64' (or architecture=...)")
    return arch


def metadata_tarball(image: Image, destination: str) -> bytes:
    """A ``metadata.yaml`` tarball for ``image`` (a few hundred bytes).

    Deterministic for one source image (the creation date is the source's), so the same
    disk always makes the same image, fingerprint included.
    """
    created = image.created_at or dt.datetime.now(tz=dt.timezone.utc)
    properties = {
        "os": _first(image, "os", _OS_KEYS),
        "release": _first(image, "release", _RELEASE_KEYS),
        "description": image.description or image.name or image.id,
    }
    document = {
        "architecture": vm_architecture(image, destination),
        "creation_date": int(created.timestamp()),
        "properties": {k: v for k, v in properties.items() if v},
    }
    import yaml  # only a move that builds VM metadata pays for PyYAML

    text = yaml.safe_dump(document, sort_keys=True).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size, info.mtime, info.mode = len(text), int(created.timestamp()), 0o644
        tar.addfile(info, io.BytesIO(text))
    return out.getvalue()
