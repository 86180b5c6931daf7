"""``python -m tests.servers provision``: install what the server tests need.

Run by ``make test`` before tox. As root it installs Debian's LXD, squashfs-tools and
qemu-utils, and builds the Keystone and Glance virtualenvs (cached per version outside the
repo). Without root it says what is missing; the tests that need it then skip with that
reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import sys
import threading
import time


def provision() -> int:
    from . import lxd, openstack

    failures: list[str] = []

    def run(name: str, fn: object) -> None:
        start = time.monotonic()
        try:
            fn()  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - reported below, tests gate on it again
            failures.append(f"{name}: {exc}")
        else:
            print(f"provision: {name} ready in {time.monotonic() - start:.1f}s", flush=True)

    # LXD is apt, the OpenStack venvs are pip: independent, so do both at once.
    threads = [threading.Thread(target=run, args=(n, f)) for n, f in
               (("lxd", lxd.provision), ("openstack", openstack.provision))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for line in failures:
        print(f"provision: {line}", file=sys.stderr)
    if failures and os.environ.get("CI") == "true":
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["provision"]:
        sys.exit(provision())
    if sys.argv[1:] == ["demo"]:
        from .demo import main

        sys.exit(main())
    sys.exit("usage: python -m tests.servers provision|demo")
