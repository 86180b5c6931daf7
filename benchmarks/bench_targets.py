"""The performance targets, each a ratio to a baseline measured in the same run.

| figure | baseline | target |
|---|---|---|
| ``imagehub --version`` | ``python -c pass`` (same interpreter) | <= 3x |
| ``imagehub -c local list``, 10 images | ``python -c pass`` | <= 4x |
| ``imagehub list`` against Keystone + Glance, 30 images | ``openstack image list`` | <= 0.18x |
| LXD create, 1 GiB, fingerprint checked | ``lxc image import`` | <= 1.0x |
| Glance upload, 1 GiB | openstacksdk ``create_image`` (to ``active``) | <= 1.0x |

The commands are whole processes, timed from spawn to exit, as a user waits for them.
The transfers are timed as in ``bench_lxd`` and ``bench_glance`` (the Python side inside
its child after imports and login; ``lxc`` as a whole process). Rounds interleave the
contenders and rotate who goes first, so a burst of load from other work on the machine
hits both sides; each figure is the median. The load average is printed with the table.

python-openstackclient and openstacksdk are installed into benchmark-only virtualenvs
beside the test servers' venvs, never into the project.

    python -m benchmarks.bench_targets [--quick] [--only startup,glance,lxd] [--workdir DIR]

``--quick`` uses 128 MiB transfers and fewer rounds (a few minutes); the default is the
issue's 1 GiB and more rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OSC_VERSION = "8.2.0"
PARTS = ("startup", "glance", "lxd")


@dataclass(frozen=True)
class Figure:
    what: str
    baseline: str
    ours: float
    theirs: float
    target: float
    unit: str = "s"

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs

    @property
    def met(self) -> bool:
        return self.ratio <= self.target


# -- timing -----------------------------------------------------------------------------------
def _wall(argv: list[str], env: dict[str, str]) -> float:
    """Spawn-to-exit seconds of one command; it must succeed."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{done.stderr.decode(errors='replace')[-2000:]}")
    return seconds


def _interleaved(contenders: dict[str, Callable[[], float]], rounds: int
                 ) -> dict[str, float]:
    """Median seconds of each contender over ``rounds``, first seat rotating each round."""
    names = list(contenders)
    seen: dict[str, list[float]] = {n: [] for n in names}
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            seen[name].append(contenders[name]())
    return {n: statistics.median(v) for n, v in seen.items()}


def _imagehub_command() -> list[str]:
    # The console script a user runs; `python -m imagehub` would add runpy's own imports.
    script = Path(sys.executable).with_name("imagehub")
    return [str(script)] if script.exists() else [sys.executable, "-m", "imagehub"]


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, XDG_CONFIG_HOME=str(workdir / "config"),
               XDG_DATA_HOME=str(workdir / "data"), XDG_CACHE_HOME=str(workdir / "cache"))
    env.pop("IMAGEHUB_CONFIG", None)  # only the clouds file a part writes for itself
    env.update(extra)
    # An installed package runs from cached bytecode (pip compiles at install); without
    # it every start would compile imagehub's modules again, which is not what users see.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(key, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


# -- the parts ----------------------------------------------------------------------------------
def startup(workdir: Path, rounds: int) -> list[Figure]:
    env = _env(workdir)
    # Ten small images in the embedded default store, made through the public API.
    subprocess.run([sys.executable, "-c",
                    "import imagehub\nwith imagehub.connect() as m:\n"
                    "    for i in range(10):\n"
                    "        m.create(b'image %d' % i * 1000, name='bench-%02d' % i)\n"],
                   env=env, check=True)
    hub = _imagehub_command()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "imagehub")],
                   env=env, check=True)
    listed = subprocess.run([*hub, "--format", "json", "-c", "local", "list"], env=env,
                            capture_output=True, text=True, check=True)
    if len(json.loads(listed.stdout)) != 10:
        raise RuntimeError(f"the local store should hold 10 images: {listed.stdout[:500]}")
    medians = _interleaved({
        "pass": lambda: _wall([sys.executable, "-c", "pass"], env),
        "version": lambda: _wall([*hub, "--version"], env),
        "list": lambda: _wall([*hub, "-c", "local", "list"], env),
    }, rounds)
    return [
        Figure("imagehub --version", "python -c pass", medians["version"], medians["pass"],
               3.0),
        Figure("imagehub -c local list (10 images)", "python -c pass", medians["list"],
               medians["pass"], 4.0),
    ]


def _osc_bin() -> str:
    from tests.servers.openstack_venvs import build_venv, cache_root, py_tag

    venv = build_venv(cache_root() / f"bench-openstackclient-{OSC_VERSION}-{py_tag()}",
                      (f"python-openstackclient=={OSC_VERSION}",))
    return str(venv / "bin" / "openstack")


def glance(workdir: Path, rounds: int, list_rounds: int, size_mib: int) -> list[Figure]:
    sys.path.insert(0, str(REPO))
    from benchmarks import bench_glance
    from tests.servers.openstack import password_session, provision, start_openstack

    provision()
    osc = _osc_bin()
    sdk = bench_glance._sdk_python()
    cloud = start_openstack(workdir / "servers")
    try:
        user = cloud.project("alpha")
        auth = user.auth(cloud.auth_url)
        sess = password_session(cloud, user)
        base = f"{cloud.glance_url}/v2/images"
        for i in range(30):  # active images, each with a few bytes of data
            made = sess.post(base, json={"name": f"list-{i:02d}", "disk_format": "raw",
                                         "container_format": "bare"}).json()
            sess.put(f"{base}/{made['id']}/file", data=b"%02d" % i * 512,
                     headers={"Content-Type": "application/octet-stream"})
        # Both CLIs read one OpenStack clouds.yaml, as a user's would.
        os_config = workdir / "os-clouds.yaml"
        os_config.write_text(json.dumps({"clouds": {"bench": {
            "auth_type": "password", "auth": auth, "region_name": "RegionOne"}}}))
        hub_config = workdir / "imagehub.yaml"
        hub_config.write_text(json.dumps({"clouds": {"os": {"backend": "glance",
                                                            "cloud": "bench"}},
                                          "default": "os"}))
        env = _env(workdir, OS_CLIENT_CONFIG_FILE=str(os_config),
                   IMAGEHUB_CONFIG=str(hub_config))
        hub = [*_imagehub_command(), "list"]
        theirs = [osc, "--os-cloud", "bench", "image", "list"]
        for argv in (hub, theirs):  # warm the page cache and check both see 30 images
            out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if out.returncode != 0 or out.stdout.count("list-") != 30:
                raise RuntimeError(f"{argv[0]} did not list 30 images: "
                                   f"{out.stdout[-1500:]} {out.stderr[-1500:]}")
        listing = _interleaved({"imagehub": lambda: _wall(hub, env),
                                "openstack": lambda: _wall(theirs, env)}, list_rounds)

        source = workdir / "source.img"
        bench_glance._random_file(source, size_mib)

        def upload(python: str, task: str) -> Callable[[], float]:
            def once() -> float:
                out, _ = bench_glance._measure(python, task, {
                    "auth": auth, "path": str(source), "name": f"bench-{task}"})
                sess.delete(f"{base}/{out['id']}")
                return float(out["seconds"])
            return once

        uploads = _interleaved({"imagehub": upload(sys.executable, "imagehub-upload"),
                                "sdk": upload(sdk, "sdk-upload")}, rounds)
        source.unlink()
    finally:
        cloud.stop()
    return [
        Figure("imagehub list (Glance+Keystone, 30 images)", "openstack image list",
               listing["imagehub"], listing["openstack"], 0.18),
        Figure(f"Glance upload {size_mib} MiB", "openstacksdk create_image",
               uploads["imagehub"], uploads["sdk"], 1.0),
    ]


def lxd(workdir: Path, rounds: int, size_mib: int) -> list[Figure]:
    sys.path.insert(0, str(REPO))
    from benchmarks import bench_lxd
    from imagehub.backends.lxd import LXDManager
    from tests.servers.lxd import provision, start_daemon, stop_daemon
    from tests.servers.lxd_images import write_incompressible_unified

    provision()
    daemon = start_daemon(workdir, "targets")
    try:
        manager = LXDManager(endpoint=str(daemon.socket_path))
        path = workdir / "random.tar"
        built = write_incompressible_unified(path, size_mib, seed=size_mib)

        def create(client: str) -> Callable[[], float]:
            def once() -> float:
                # bench_lxd checks that imagehub's image got the file's fingerprint.
                seconds, _ = bench_lxd._measure(client, "create", daemon, path,
                                                built.fingerprint, workdir)
                manager.delete(built.fingerprint)
                return seconds
            return once

        medians = _interleaved({"imagehub": create("imagehub"), "lxc": create("lxc")},
                               rounds)
        path.unlink()
        manager.close()
    finally:
        stop_daemon(daemon)
    return [Figure(f"LXD create {size_mib} MiB", "lxc image import", medians["imagehub"],
                   medians["lxc"], 1.0)]


# -- report ------------------------------------------------------------------------------------
def summary(figures: list[Figure]) -> str:
    rows = [("figure", "imagehub", "baseline", "", "ratio", "target", "")]
    for f in figures:
        rows.append((f.what, f"{f.ours:.3f} s", f"{f.theirs:.3f} s", f.baseline,
                     f"{f.ratio:.2f}x", f"<= {f.target:g}x", "met" if f.met else "MISSED"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i in (0, 3, 6) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="128 MiB transfers and fewer rounds")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts: {', '.join(PARTS)}")
    parser.add_argument("--workdir", type=Path)
    opts = parser.parse_args(argv)
    parts = [p for p in opts.only.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    size, rounds, starts = (128, 3, 11) if opts.quick else (1024, 5, 21)
    figures: list[Figure] = []
    skipped: list[str] = []
    started, load_before = time.perf_counter(), _load()
    with tempfile.TemporaryDirectory(prefix="imagehub-bench-targets-",
                                     dir=opts.workdir) as tmp:
        work = Path(tmp)
        runs: dict[str, Callable[[], list[Figure]]] = {
            "startup": lambda: startup(work / "startup", starts),
            "glance": lambda: glance(work / "glance", rounds, starts, size),
            "lxd": lambda: lxd(work / "lxd", rounds, size),
        }
        for part in parts:
            (work / part).mkdir()
            if part == "lxd" and os.geteuid() != 0:
                skipped.append("lxd (starts its own LXD daemon: needs root)")
                continue
            print(f"-- {part}", flush=True)
            figures += runs[part]()
            shutil.rmtree(work / part, ignore_errors=True)
    print()
    print(summary(figures))
    print(f"\nmedians; {'quick' if opts.quick else 'full'} mode; load average (1/5 min) "
          f"{load_before} before, {_load()} after; {os.cpu_count()} CPUs; "
          f"{time.perf_counter() - started:.0f} s")
    for s in skipped:
        print(f"skipped: {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
