"""Disk format conversion with the real ``qemu-img`` (Debian/Ubuntu package ``qemu-utils``).

Conversion needs seekable files, so callers stage the source on disk first (see
``imagehub.migration._staging``). The child is always reaped: on Ctrl-C or any other error
it is killed and waited for, so no half-written output keeps growing behind our back.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from .errors import InvalidImageData, MigrationError

__all__ = ["CONVERTIBLE", "QemuImgMissing", "convert", "info", "qemu_img"]

#: Formats qemu-img converts between for migrate/sync ``--disk-format``.
CONVERTIBLE = frozenset({"raw", "qcow2", "vmdk", "vhdx", "vdi", "vhd"})
# qemu-img's own names where they differ from the disk-format vocabulary.
_QEMU_NAMES = {"vhd": "vpc"}


class QemuImgMissing(MigrationError):
    """Conversion was needed and no ``qemu-img`` binary is installed."""


def qemu_img() -> str:
    found = shutil.which("qemu-img")
    if found is None:
        raise QemuImgMissing(
            "converting a disk image needs qemu-img, which is not installed",
            hint="install the qemu-utils package (apt-get install qemu-utils; "
                 "dnf install qemu-img on Fedora)")
    return found


def info(path: Path) -> dict[str, Any]:
    """``qemu-img info`` as JSON (format, virtual-size ...)."""
    done = _run([qemu_img(), "info", "--output=json", str(path)], f"reading {path.name}")
    data: dict[str, Any] = json.loads(done)
    return data


def convert(source: Path, source_format: str, target: Path, target_format: str) -> None:
    """Write ``source`` converted to ``target_format`` at ``target`` (which must not exist
    beyond this call if it fails: the caller's staging directory removes it)."""
    for fmt in (source_format, target_format):
        if fmt not in CONVERTIBLE:
            raise InvalidImageData(
                f"imagehub converts between {', '.join(sorted(CONVERTIBLE))}, not {fmt}",
                hint="pick one of those disk formats")
    # -W: the output is a new file nobody reads yet, so qemu-img may write out of order
    # and keep several requests in flight.
    _run([qemu_img(), "convert", "-W", "-f", _QEMU_NAMES.get(source_format, source_format),
          "-O", _QEMU_NAMES.get(target_format, target_format), str(source), str(target)],
         f"converting {source_format} to {target_format}")


def _run(argv: list[str], what: str) -> str:
    # Popen rather than run(): on KeyboardInterrupt run() waits for the child forever
    # after a SIGINT it may ignore; here the child is killed and reaped either way.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        if proc.returncode < 0:
            sig = signal.Signals(-proc.returncode).name
            raise MigrationError(f"{what}: qemu-img was killed ({sig})",
                                 hint="nothing was kept; run it again")
        message = (err or out).strip().splitlines()
        raise InvalidImageData(f"{what}: qemu-img failed",
                            server_message=message[-1] if message else None,
                            hint="check that the image's disk format is right")
    return out
