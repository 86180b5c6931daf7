"""sync on a Dask cluster against sync's own threads: the overhead per task.

Two ``local`` stores in a temporary directory; ``--count`` images of ``--size-mib`` MiB of
random bytes in the source. Each run syncs them all into an empty destination:

* **threads**: ``imagehub.sync(src, dst, jobs=N)``, the default executor (one process);
* **dask**: ``imagehub.sync(src, dst, executor=client.get_executor())`` on a
  ``LocalCluster`` of ``--workers`` worker processes with ``--threads`` threads each,
  started (and the clouds file read by its workers) before the clock starts.

Each kind runs twice, in the order threads, dask, dask, threads, into a fresh destination,
with a progress callback (so the workers' reports travel), after ``os.sync()``.
Both copy the same bytes through the same stream path with the same checks, so the
difference is what the cluster adds: pickling the task, the scheduler's round trips,
the worker's plan against the destination, progress reports through a scheduler queue.
On one 2-core machine a speed-up is not expected (both saturate the same cores and
disk); the figure to read is ``(dask - threads) / count``, the cost per task. A second
pair with 1-byte-ish images (``--tiny``) isolates that cost from the copying.

    python -m benchmarks.bench_dask_sync [--count 200] [--size-mib 8] [--workers 2]
                                         [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _fill(store: Any, count: int, size: int) -> None:
    block = os.urandom(size)
    for i in range(count):
        # Distinct content per image (sync is keyed on content), without paying for
        # count x size random bytes.
        store.create(i.to_bytes(8, "big") + block[8:], name=f"bench-{i:04d}")


def _clouds(root: Path, names: list[str]) -> Path:
    config = root / "clouds.yaml"
    config.write_text("clouds:\n" + "".join(
        f"  {n}: {{backend: local, path: {root / n}}}\n" for n in names))
    return config


def _run(label: str, do: Any, count: int) -> float:
    os.sync()  # the previous run's writes are on disk: each run starts from the same state
    started = time.perf_counter()
    summary = do()
    seconds = time.perf_counter() - started
    assert summary.ok and summary.copied == count, summary.to_dict()
    mib = summary.bytes / (1024 * 1024)
    print(f"  {label:<26} {seconds:8.2f} s  {mib / seconds:8.1f} MiB/s  "
          f"{1000 * seconds / count:7.1f} ms/image", flush=True)
    return seconds


# threads, dask, dask, threads: a drift over the run (the disk's writeback, a neighbour's
# load) weighs on both kinds alike instead of on whichever runs second.
ORDER = ("threads", "dask", "dask", "threads")


def bench(root: Path, count: int, size: int, workers: int, threads: int) -> None:
    import importlib

    import imagehub

    # Typed as Any: distributed ships no annotations.
    dist: Any = importlib.import_module("distributed")

    names = ["src"] + [f"dst-{i}" for i in range(len(ORDER))]
    os.environ["IMAGEHUB_CONFIG"] = str(_clouds(root, names))
    _fill(imagehub.connect("src"), count, size)
    print(f"{count} images of {size} bytes; {workers} workers x {threads} threads", flush=True)
    jobs = workers * threads
    took: dict[str, list[float]] = {"threads": [], "dask": []}
    with dist.LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                           dashboard_address=None) as cluster, dist.Client(cluster) as client:
        client.wait_for_workers(workers)
        for i, kind in enumerate(ORDER):
            dst = f"dst-{i}"
            if kind == "threads":
                took[kind].append(_run(f"threads (jobs={jobs})", lambda dst=dst: imagehub.sync(
                    "src", dst, jobs=jobs, progress=lambda p: None), count))
            else:
                took[kind].append(_run(f"dask ({workers} workers)", lambda dst=dst: imagehub.sync(
                    "src", dst, executor=client.get_executor(),
                    progress=lambda p: None), count))
            shutil.rmtree(root / dst, ignore_errors=True)
    t, d = (sum(took[k]) / len(took[k]) for k in ("threads", "dask"))
    print(f"  mean: threads {t:.2f} s, dask {d:.2f} s; overhead per task "
          f"{1000 * (d - t) / count:.1f} ms (dask/threads = {d / t:.2f}x)", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_dask_sync", description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size-mib", type=float, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="40 images, for a smoke run")
    parser.add_argument("--tiny", action="store_true",
                        help="also a run of 4 KiB images: the per-task cost alone")
    args = parser.parse_args(argv)
    try:
        import distributed  # noqa: F401
    except ImportError:
        # Not a failure of `python -m benchmarks`: the extra is optional.
        print("bench_dask_sync skipped: pip install 'imagehub[dask]'", file=sys.stderr)
        return 0
    count = 40 if args.quick else args.count
    runs = [int(args.size_mib * 1024 * 1024)] + ([4096] if args.tiny else [])
    for size in runs:
        root = Path(tempfile.mkdtemp(prefix="bench-dask-"))
        try:
            bench(root, count, size, args.workers, args.threads)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
