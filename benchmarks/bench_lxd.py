"""LXD image create and export: imagehub against ``lxc`` and pylxd, same daemon, same run.

An incompressible unified image (a plain tar whose rootfs is random bytes) is imported
into, and exported from, a real LXD daemon started for the run, by three clients:

* imagehub: ``LXDManager.create(path)`` and ``LXDManager.export(fp).save(path)``;
* ``lxc image import FILE`` and ``lxc image export FP DIR`` (LXD's own Go client);
* pylxd: ``client.images.create(open(path, "rb"))`` and ``image.export()`` copied to a file
  (pylxd spools an export to a temporary file first; there is no other way to get it).

Each operation runs in its own child process; peak RSS is that child's ``VmHWM`` (the
high-water mark of the memory image it exec'd, reported by the Python children
themselves, sampled every 10 ms for ``lxc``), so one client's memory never counts
against another. (``ru_maxrss`` from ``wait4`` is useless here: Linux carries the
parent's high-water mark across fork and exec.) Time is the
operation itself: for the Python clients measured inside the child after imports and
connecting, for ``lxc`` the whole process (a Go binary that starts in milliseconds).
Every export is checked to hash to the image's fingerprint. Sizes default to 256 MiB and
1 GiB, to show whether memory stays flat as the image grows.

    python -m benchmarks.bench_lxd [--sizes 256,1024] [--rounds 6] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLIENTS = ("imagehub", "lxc", "pylxd")
OPS = ("create", "export")


@dataclass(frozen=True)
class Sample:
    client: str
    op: str
    size_mib: int
    seconds: float
    rss_mib: float


# -- children -------------------------------------------------------------------------------
def _worker(args: argparse.Namespace) -> int:
    """Run one operation in this (child) process; print its own timing as JSON."""
    client, op = args.worker.split("-", 1)
    if client == "imagehub":
        from imagehub.backends.lxd import LXDManager

        manager = LXDManager(endpoint=args.socket)
        start = time.perf_counter()
        if op == "create":
            fingerprint = manager.create(args.file, name="bench").id
        else:
            manager.export(args.fingerprint).save(args.out)
            fingerprint = args.fingerprint
        elapsed = time.perf_counter() - start
    elif client == "pylxd":
        import pylxd  # type: ignore[import-untyped]

        lxd = pylxd.Client(endpoint=args.socket)
        start = time.perf_counter()
        if op == "create":
            with open(args.file, "rb") as fh:
                fingerprint = lxd.images.create(fh).fingerprint
        else:
            image = lxd.images.get(args.fingerprint)
            with image.export() as spooled, open(args.out, "wb") as out:
                shutil.copyfileobj(spooled, out, 1 << 20)
            fingerprint = args.fingerprint
        elapsed = time.perf_counter() - start
    elif client == "idle":
        # What a Python client costs before moving any byte: interpreter, imports, connect.
        import pylxd

        from imagehub.backends.lxd import LXDManager

        LXDManager(endpoint=args.socket)
        pylxd.Client(endpoint=args.socket)
        elapsed, fingerprint = 0.0, ""
    else:
        raise SystemExit(f"unknown worker {args.worker}")
    print(json.dumps({"seconds": elapsed, "fingerprint": fingerprint,
                      "hwm_kib": _hwm_kib("self")}))
    return 0


def _hwm_kib(pid: int | str) -> int:
    """VmHWM of a live process in KiB (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _run_child(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a child; return (wall seconds, peak RSS MiB, stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _hwm_kib(proc.pid))
            time.sleep(0.01)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
        err.seek(0)
        errors = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {errors[-2000:]}")
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            peak = max(peak, int(json.loads(line).get("hwm_kib", 0)))
            break
    return wall, peak / 1024, text


# -- the run --------------------------------------------------------------------------------
def _python_child(worker: str, daemon: Any, **kw: str) -> tuple[float, float, str]:
    argv = [sys.executable, "-m", "benchmarks.bench_lxd", "--worker", worker,
            "--socket", str(daemon.socket_path)]
    for key, value in kw.items():
        argv += [f"--{key}", value]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    _wall, rss, text = _run_child(argv, env)
    report = json.loads(text.strip().splitlines()[-1])
    return float(report["seconds"]), rss, str(report["fingerprint"])


def _lxc_child(argv: list[str], daemon: Any) -> tuple[float, float]:
    wall, rss, _ = _run_child(["lxc", *argv], daemon.env())
    return wall, rss


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _measure(client: str, op: str, daemon: Any, image: Path, fingerprint: str,
             scratch: Path) -> tuple[float, float]:
    out_dir = scratch / f"out-{client}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    # Flush the previous run's dirty pages first: LXD writes every import to disk, and
    # writeback landing in the next measurement was the largest source of noise.
    os.sync()
    if client == "lxc":
        if op == "create":
            seconds, rss = _lxc_child(["image", "import", str(image)], daemon)
        else:
            seconds, rss = _lxc_child(["image", "export", fingerprint, str(out_dir) + "/"],
                                      daemon)
    else:
        kw = {"file": str(image)} if op == "create" else {
            "fingerprint": fingerprint, "out": str(out_dir / "image.tar")}
        seconds, rss, got = _python_child(f"{client}-{op}", daemon, **kw)
        if op == "create" and got != fingerprint:
            raise RuntimeError(f"{client} created {got}, expected {fingerprint}")
    if op == "export":
        files = list(out_dir.iterdir())
        if len(files) != 1 or _sha256(files[0]) != fingerprint:
            raise RuntimeError(f"{client} export does not hash to the fingerprint")
    shutil.rmtree(out_dir, ignore_errors=True)
    return seconds, rss


def run(sizes: list[int], rounds: int, workdir: Path) -> list[Sample]:
    from imagehub.backends.lxd import LXDManager
    from tests.servers.lxd import provision, start_daemon, stop_daemon
    from tests.servers.lxd_images import write_incompressible_unified

    provision()
    samples: list[Sample] = []
    daemon = start_daemon(workdir, "bench")
    try:
        manager = LXDManager(endpoint=str(daemon.socket_path))
        _, idle_rss, _ = _python_child("idle-x", daemon)
        print(f"python client at rest (interpreter + imports + connect): {idle_rss:.0f} MiB",
              flush=True)
        for size in sizes:
            path = workdir / f"random-{size}.tar"
            built = write_incompressible_unified(path, size, seed=size)
            for round_no in range(rounds):
                # Rotate who goes first: the run after a 1 GiB delete is the slowest seat.
                shift = round_no % len(CLIENTS)
                for client in CLIENTS[shift:] + CLIENTS[:shift]:
                    seconds, rss = _measure(client, "create", daemon, path, built.fingerprint,
                                            workdir)
                    samples.append(Sample(client, "create", size, seconds, rss))
                    seconds, rss = _measure(client, "export", daemon, path, built.fingerprint,
                                            workdir)
                    samples.append(Sample(client, "export", size, seconds, rss))
                    manager.delete(built.fingerprint)
                    print(f"  {size} MiB {client}: done", flush=True)
            path.unlink()
    finally:
        stop_daemon(daemon)
    return samples


def report(samples: list[Sample], sizes: list[int]) -> str:
    def pick(client: str, op: str, size: int) -> tuple[float, float]:
        chosen = [s for s in samples if (s.client, s.op, s.size_mib) == (client, op, size)]
        return (statistics.median(s.seconds for s in chosen),
                statistics.median(s.rss_mib for s in chosen))

    lines = ["", f"{'size':>8} {'op':<7} {'client':<9} {'seconds':>8} {'MB/s':>7} "
                 f"{'peak RSS MiB':>13}"]
    for size in sizes:
        for op in OPS:
            for client in CLIENTS:
                secs, rss = pick(client, op, size)
                lines.append(f"{size:>5} MiB {op:<7} {client:<9} {secs:8.2f} "
                             f"{size * 1.048576 / secs:7.0f} {rss:13.1f}")
    lines.append("")
    lines.append("ratios, imagehub / other (time; peak RSS), same run:")
    for size in sizes:
        for op in OPS:
            hub_s, hub_r = pick("imagehub", op, size)
            parts = []
            for other in ("lxc", "pylxd"):
                s, r = pick(other, op, size)
                parts.append(f"vs {other}: {hub_s / s:.2f}x time, {hub_r / r:.2f}x RSS")
            lines.append(f"  {size:>5} MiB {op:<7} " + "; ".join(parts))
    if len(sizes) > 1:
        small, big = min(sizes), max(sizes)
        lines.append("")
        lines.append(f"RSS growth from {small} MiB to {big} MiB ({big // small}x the bytes):")
        for op in OPS:
            growth = []
            for client in CLIENTS:
                _, r_small = pick(client, op, small)
                _, r_big = pick(client, op, big)
                growth.append(f"{client} {r_big / r_small:.2f}x ({r_small:.0f}->{r_big:.0f})")
            lines.append(f"  {op:<7} " + ", ".join(growth))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,1024", help="image sizes in MiB")
    parser.add_argument("--rounds", type=int, default=6, help="median of this many runs")
    parser.add_argument("--workdir", help="scratch directory (needs ~4x the largest size)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--socket", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--fingerprint", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if os.geteuid() != 0:
        print("the LXD benchmark starts its own LXD daemon and needs root", file=sys.stderr)
        return 2
    base = Path(args.workdir) if args.workdir else None
    with tempfile.TemporaryDirectory(prefix="imagehub-bench-lxd-", dir=base) as tmp:
        started = time.perf_counter()
        samples = run(sizes, args.rounds, Path(tmp))
    print(report(samples, sizes))
    print(f"\n(total {time.perf_counter() - started:.0f} s; LXD {_lxd_version()}, "
          f"{os.cpu_count()} CPUs)")
    return 0


def _lxd_version() -> str:
    try:
        return subprocess.run(["lxd", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
