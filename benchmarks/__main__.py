"""``python -m benchmarks [--quick] [NAME...]`` (``make bench``): run the benchmarks, each
printing ratios against a baseline measured in the same run. Names: hub, lxd, glance,
migrate, migrate_vm, dask_sync, targets. ``targets`` runs last and ends the output with
one table: each target figure, its baseline, the ratio and the target. ``--quick``
(targets only) uses smaller transfers and fewer rounds."""

from __future__ import annotations

import importlib
import sys

ALL = ("hub", "lxd", "glance", "migrate", "migrate_vm", "dask_sync", "targets")


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("-")]
    names = [a for a in argv if not a.startswith("-")] or list(ALL)
    if set(flags) - {"--quick"}:
        print(f"unknown options {flags}; only --quick", file=sys.stderr)
        return 2
    for name in names:
        if name not in ALL:
            print(f"unknown benchmark {name!r}; choose from {', '.join(ALL)}", file=sys.stderr)
            return 2
    # The summary table is the last thing printed, whatever order the names came in.
    names = sorted(names, key=lambda n: n == "targets")
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        failed |= int(bool(module.main(flags if name == "targets" else [])))
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
