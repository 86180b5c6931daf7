"""``python -m benchmarks [NAME...]`` (``make bench``): run the benchmarks, each printing
ratios against a baseline measured in the same run. Names: hub, lxd, glance, migrate,
migrate_vm, dask_sync."""

from __future__ import annotations

import importlib
import sys

ALL = ("hub", "lxd", "glance", "migrate", "migrate_vm", "dask_sync")


def main(argv: list[str]) -> int:
    names = argv or list(ALL)
    failed = 0
    for name in names:
        if name not in ALL:
            print(f"unknown benchmark {name!r}; choose from {', '.join(ALL)}", file=sys.stderr)
            return 2
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        failed |= int(bool(module.main([])))
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
