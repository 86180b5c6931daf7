"""Server virtualenvs for the OpenStack test servers, built once and cached.

The venvs live outside the repo under ``${XDG_CACHE_HOME:-~/.cache}/imagehub/servers``
(or ``$IMAGEHUB_SERVER_CACHE``), one folder per pinned version and Python, so a
re-run finds them in milliseconds. A marker written after a successful build
tells a finished venv from one an interrupted run left half-built.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imagehub.paths import cache_home

from .openstack_procs import ServerError, run

# Test servers, not imagehub dependencies: pinned so the suite is reproducible.
GLANCE_VERSION = "33.0.0"
KEYSTONE_VERSION = "30.0.0"
GLANCE_SPECS = (f"glance=={GLANCE_VERSION}", "uwsgi==2.0.31")
KEYSTONE_SPECS = (f"keystone=={KEYSTONE_VERSION}", "waitress==3.0.2")

MARKER = ".imagehub-ready"
# Glance and Keystone at these versions need Python 3.11+, while the suite also runs on
# 3.10. The servers are separate processes, so their venvs are built with one fixed
# interpreter, whatever the test run's own: every tox environment shares one cache.
SERVER_PYTHONS = ("3.11", "3.12", "3.13")


@functools.cache
def server_python() -> tuple[str, str]:
    """The interpreter for the server venvs and its tag (``py3.11``)."""
    explicit = os.environ.get("IMAGEHUB_SERVER_PYTHON")
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [explicit] if explicit else []
    if own == SERVER_PYTHONS[0]:
        candidates.append(sys.executable)
    candidates += [f"python{v}" for v in SERVER_PYTHONS]
    if own in SERVER_PYTHONS:
        candidates.append(sys.executable)
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            continue
        probe = subprocess.run(
            [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=False, timeout=60)
        version = probe.stdout.strip()
        if probe.returncode == 0 and (version in SERVER_PYTHONS or name == explicit):
            return path, f"py{version}"
    raise ServerError(
        f"the Keystone and Glance test servers need Python {' or '.join(SERVER_PYTHONS)}; "
        "none is on PATH (or set IMAGEHUB_SERVER_PYTHON)")


def py_tag() -> str:
    return server_python()[1]


def cache_root() -> Path:
    explicit = os.environ.get("IMAGEHUB_SERVER_CACHE")
    if explicit:
        return Path(explicit)
    return cache_home() / "imagehub" / "servers"


def glance_venv() -> Path:
    return cache_root() / f"glance-{GLANCE_VERSION}-{py_tag()}"


def keystone_venv() -> Path:
    return cache_root() / f"keystone-{KEYSTONE_VERSION}-{py_tag()}"


def is_ready(path: Path, specs: tuple[str, ...]) -> bool:
    marker = path / MARKER
    try:
        return marker.read_text() == "\n".join(specs)
    except OSError:
        return False


def mark_ready(path: Path, specs: tuple[str, ...]) -> None:
    (path / MARKER).write_text("\n".join(specs))


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Serialise builds of one cache entry across concurrent test runs."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_venv(path: Path, specs: tuple[str, ...]) -> Path:
    with cache_lock(path.name):
        if is_ready(path, specs):
            return path
        if path.exists():
            shutil.rmtree(path)  # half-built by an interrupted run
        path.parent.mkdir(parents=True, exist_ok=True)
        log = path.parent / f"{path.name}.build.log"
        log.write_text("")
        run([server_python()[0], "-m", "venv", path], log=log, timeout=120)
        pip = path / "bin" / "pip"
        run([pip, "install", "--quiet", *specs], log=log, timeout=1800)
        mark_ready(path, specs)
    return path


def ensure_qemu_img() -> None:
    """The legacy v2 import task converts with qemu-img; install it when we are root."""
    if shutil.which("qemu-img") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    log = cache_root() / "qemu-utils.apt.log"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "qemu-utils",
    ]
    try:
        run(install, log=log, env=env, timeout=600)
    except ServerError:
        # A stale or missing package list is the usual cause; refresh once.
        run(["apt-get", "update", "-q"], log=log, env=env, timeout=600)
        run(install, log=log, env=env, timeout=600)


def build_all() -> tuple[Path, Path]:
    """Build both venvs (in parallel: they are mostly network and compile time)."""
    cache_root().mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=3) as pool:
        glance = pool.submit(build_venv, glance_venv(), GLANCE_SPECS)
        keystone = pool.submit(build_venv, keystone_venv(), KEYSTONE_SPECS)
        qemu = pool.submit(ensure_qemu_img)
        paths = (glance.result(), keystone.result())
        try:
            qemu.result()
        except ServerError:
            pass  # only the legacy import-task tests need it; they skip by themselves
    return paths


if __name__ == "__main__":  # pragma: no cover - manual provisioning
    try:
        print(build_all())
    except (ServerError, subprocess.SubprocessError) as exc:
        sys.exit(str(exc))
