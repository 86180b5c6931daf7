"""Listing N clouds at once costs about the slowest cloud, not the sum.

Four loopback Lambda-API servers (the spec-exact test server) each answer the image
listing after a set delay. ``Hub.all()`` lists them concurrently; the baseline, measured
in the same run, lists the same four clouds one after another through the same managers.

    python -m benchmarks.bench_hub [--delay 0.5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from imagehub import Hub, load_config
from tests.servers.lambda_api import LIST_IMAGES, LambdaAPIServer, Stall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds each server waits")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clouds", type=int, default=4)
    args = parser.parse_args(argv)

    servers = [LambdaAPIServer().start() for _ in range(args.clouds)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "clouds.yaml"
            config.write_text("clouds:\n" + "".join(
                f"  lambda{i}: {{backend: lambda, base_url: '{s.url}', api_key: '{s.api_key}'}}\n"
                for i, s in enumerate(servers)))
            cfg = load_config(config)
            names = [f"lambda{i}" for i in range(args.clouds)]
            hub = Hub(cfg, clouds=names)
            managers = [hub.manager(n) for n in names]

            def delay_all() -> None:
                for s in servers:
                    s.inject(LIST_IMAGES, Stall(args.delay))

            concurrent, sequential = [], []
            for _ in range(args.rounds):
                delay_all()
                start = time.perf_counter()
                listing = hub.all()
                concurrent.append(time.perf_counter() - start)
                assert listing.ok and len(listing) > 0
                # The client paces itself at 1 request/s per cloud; wait that out so
                # pacing never counts against either side.
                time.sleep(1.05)
                delay_all()
                start = time.perf_counter()
                total = sum(len(list(m.all())) for m in managers)
                sequential.append(time.perf_counter() - start)
                assert total == len(listing)
                time.sleep(1.05)
    finally:
        for s in servers:
            s.stop()
    conc, seq = statistics.median(concurrent), statistics.median(sequential)
    print(f"clouds={args.clouds} delay={args.delay:.2f}s rounds={args.rounds} (median)")
    print(f"  sequential listing : {seq:6.3f} s")
    print(f"  Hub.all()          : {conc:6.3f} s")
    print(f"  ratio Hub/sequential = {conc / seq:.2f}  (ideal 1/{args.clouds} = "
          f"{1 / args.clouds:.2f}); Hub/slowest = {conc / args.delay:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
