"""``python -m tests.servers demo``: the README's main job, ending with a real migration.

After the embedded round trip (``python -m imagehub.demo``), this starts Keystone and
Glance on loopback, and an LXD daemon when LXD can run here, then moves an image
LXD -> Glance -> LXD (or local -> Glance -> local without LXD) through the public API and
checks the image that comes back has the identical fingerprint. Servers are stopped at
the end whatever happens. Without root, it says what it could not start and stops there.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

import imagehub


def _step(text: str) -> None:
    print(f"demo: {text}", flush=True)


@contextlib.contextmanager
def _servers(work: Path) -> Iterator[tuple[object, object | None]]:
    from . import lxd, openstack

    started = time.monotonic()
    cloud = openstack.start_openstack(work / "openstack")
    _step(f"Keystone and Glance up on loopback in {time.monotonic() - started:.1f}s")
    daemon = None
    try:
        try:
            lxd.provision()
            daemon = lxd.start_daemon(work / "lxd", "demo")
            _step(f"LXD daemon up ({daemon.socket_path})")
        except Exception as exc:  # noqa: BLE001 - LXD is optional for the demo
            _step(f"LXD unavailable here ({exc}); migrating from the local store instead")
        yield cloud, daemon
    finally:
        if daemon is not None:
            lxd.stop_daemon(daemon)
        cloud.stop()


def main() -> int:
    if os.geteuid() != 0:
        _step("skipping the migration part: starting LXD/Glance needs root "
              "(run 'make test' as root to provision them)")
        return 0
    from . import openstack
    from .lxd_images import unified_image

    openstack.provision()
    with tempfile.TemporaryDirectory(prefix="imagehub-demo-") as tmp:
        work = Path(tmp)
        with _servers(work) as (cloud, daemon):
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(work / "clouds.yaml")
            (work / "clouds.yaml").write_text(yaml.safe_dump(cloud.clouds_yaml()))  # type: ignore[attr-defined]
            clouds = {"glance": {"backend": "glance", "cloud": "alpha"},
                      "local": {"backend": "local", "path": str(work / "store")}}
            if daemon is not None:
                clouds["lxd"] = {"backend": "lxd",
                                 "endpoint": str(daemon.socket_path)}  # type: ignore[attr-defined]
            config = work / "imagehub.yaml"
            config.write_text(yaml.safe_dump({"clouds": clouds}))
            source_cloud = "lxd" if daemon is not None else "local"
            source = imagehub.connect(source_cloud, config=config)
            built = unified_image(work, name="demo-image")
            original = source.create(built.paths[0], name="demo-image",
                                     aliases=["demo-image"])
            _step(f"created in {source_cloud}: {original.checksum}")
            glance = imagehub.connect("glance", config=config)
            there = imagehub.migrate(source, original, glance, name="demo-image")
            _step(f"migrated {source_cloud} -> glance: image {there.id} "
                  f"({there.properties.get('imagehub.sha256', '')[:12]}...)")
            source.delete(original)
            back = imagehub.migrate(glance, there, source, name="demo-image")
            _step(f"migrated glance -> {source_cloud}: {back.checksum}")
            if back.checksum != original.checksum:
                _step(f"FAILED: checksum changed ({original.checksum} -> {back.checksum})")
                return 1
            glance.delete(there)
            source.delete(back)
            _step(f"OK: the image came back from Glance with the identical "
                  f"{'LXD fingerprint' if daemon is not None else 'sha256'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
