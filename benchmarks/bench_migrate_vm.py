"""migrate_vm: a Glance VM disk -> an LXD virtual-machine image, against doing it by hand.

One run starts a real LXD daemon and a real Keystone + Glance (the test harness in
``tests/servers``), uploads an incompressible disk to Glance twice (as qcow2 and as raw),
then measures, in the same run:

* **as is**: ``imagehub.migrate(glance, qcow2, lxd)``: the stream path, the LXD
  metadata written by imagehub, download and upload overlapped; against the sequential
  baseline ``curl`` download to a file, then ``lxc image import metadata.tar disk.qcow2``;
* **converted**: ``imagehub.migrate(glance, raw, lxd)``: staged, ``qemu-img convert`` to
  qcow2, uploaded; against ``curl`` download, ``qemu-img convert -O qcow2``, then
  ``lxc image import``;
* **peak RSS** of the migrating process (``ru_maxrss``; flat means streamed: the staged
  files are on disk, not in memory).

Each imagehub run is a child process timed from after its imports and login; each
baseline step is a whole process. The medians of ``--rounds`` runs are compared.

    python -m benchmarks.bench_migrate_vm [--size-mib 1024] [--rounds 3] [--workdir D]
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


# -- child side: one migrate, seconds and peak RSS on stdout ---------------------------------
def _child(args: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    import imagehub
    from imagehub.backends.glance import GlanceManager
    from imagehub.backends.lxd import LXDManager

    glance = GlanceManager.from_options({"auth_type": "password", "auth": args["auth"]},
                                        cloud="glance")
    lxd = LXDManager(endpoint=args["socket"], cloud="lxd")
    image = glance.get(args["id"])  # log in before the clock starts
    start = time.perf_counter()
    done = imagehub.plan(glance, image, lxd).execute(staging_dir=args["staging"])
    seconds = time.perf_counter() - start
    assert done.image is not None
    return {"seconds": seconds, "fingerprint": done.image.id, "path": done.path,
            "checks": list(done.checks)}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(key, None)  # loopback only: no proxy may see this traffic
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _measure(args: dict[str, Any]) -> tuple[dict[str, Any], float]:
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"migrate failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return result, float(result.pop("rss_mib"))


def _timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env or _env(),
                          check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv!r} failed: {proc.stderr[-2000:]}")
    return seconds


def _incompressible_disk(workdir: Path, mib: int) -> tuple[Path, Path]:
    """A raw disk of random bytes (nothing for qcow2 to skip) and its qcow2 conversion."""
    raw = workdir / "disk.raw"
    with raw.open("wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1 << 20))
    qcow2 = workdir / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
                   check=True)
    return raw, qcow2


def run(size_mib: int, workdir: Path, rounds: int) -> list[str]:
    sys.path.insert(0, str(REPO))
    from imagehub.backends.glance import GlanceManager
    from imagehub.migration._vmmeta import metadata_tarball
    from tests.servers.lxd import start_daemon, stop_daemon
    from tests.servers.openstack import password_session, provision, start_openstack

    provision()
    cloud = start_openstack(workdir / "openstack")
    daemon = start_daemon(workdir / "lxd", "bench")
    lines: list[str] = []
    try:
        user = cloud.project("alpha")
        auth = user.auth(cloud.auth_url)
        token = password_session(cloud, user).get_token()
        glance = GlanceManager.from_options({"auth_type": "password", "auth": auth},
                                            cloud="glance")
        raw, qcow2 = _incompressible_disk(workdir, size_mib)
        props = {"hw_architecture": "x86_64", "os_distro": "debian", "os_version": "12"}
        stored = {"qcow2": glance.create(qcow2, name="bench-qcow2", properties=props),
                  "raw": glance.create(raw, name="bench-raw", properties=props)}
        raw.unlink()
        qcow2.unlink()
        lxc_env = {**_env(), **daemon.env()}
        staging = workdir / "staging"
        staging.mkdir()

        def lxc_delete(fingerprint: str) -> None:
            subprocess.run(["lxc", "image", "delete", fingerprint], env=lxc_env,
                           capture_output=True, check=False)

        def sequential(kind: str) -> float:
            image = stored[kind]
            meta = workdir / "metadata.tar"
            meta.write_bytes(metadata_tarball(image, "lxd"))
            downloaded = workdir / f"downloaded.{kind}"
            seconds = _timed(["curl", "-sS", "--fail", "-o", str(downloaded), "-H",
                              f"X-Auth-Token: {token}",
                              f"{cloud.glance_url}/v2/images/{image.id}/file"])
            disk = downloaded
            if kind == "raw":
                disk = workdir / "converted.qcow2"
                seconds += _timed(["qemu-img", "convert", "-f", "raw", "-O", "qcow2",
                                   str(downloaded), str(disk)])
            seconds += _timed(["lxc", "image", "import", str(meta), str(disk),
                               "--alias", "bench-seq"], env=lxc_env)
            for path in {downloaded, disk, meta}:
                path.unlink()
            # Same metadata and disk make imagehub's fingerprint: delete it before that.
            lxc_delete("bench-seq")
            return seconds

        label = f"{size_mib} MiB"
        for kind, title in (("qcow2", "as is (qcow2)"), ("raw", "raw -> qcow2")):
            seq: list[float] = []
            mig: list[float] = []
            rss: list[float] = []
            note = ""
            for _ in range(rounds):
                seq.append(sequential(kind))
                out, peak = _measure({"auth": auth, "socket": str(daemon.socket_path),
                                      "id": stored[kind].id, "staging": str(staging)})
                mig.append(out["seconds"])
                rss.append(peak)
                note = f"path={out['path']} checks={','.join(out['checks'])}"
                lxc_delete(out["fingerprint"])
                assert not any(staging.iterdir()), "staging files left behind"
            s, m = statistics.median(seq), statistics.median(mig)
            steps = "curl, qemu-img convert, lxc import" if kind == "raw" \
                else "curl, lxc image import"
            lines.append(f"{'sequential: ' + steps:<58} {s:8.2f}  {kind} {label}, "
                         f"range {min(seq):.2f}-{max(seq):.2f}")
            lines.append(f"{'imagehub.migrate Glance -> LXD VM, ' + title:<58} {m:8.2f}  "
                         f"peak RSS {max(rss):.0f} MiB, range {min(mig):.2f}-{max(mig):.2f}; "
                         f"{note}")
            lines.append(f"ratio {title}: migrate/sequential = {m / s:.2f} (target <= 0.80)")
    finally:
        stop_daemon(daemon)
        cloud.stop()
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    parser.add_argument("--workdir", type=Path)
    opts = parser.parse_args(argv)
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="imagehub-bench-vm-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        lines = run(opts.size_mib, workdir, opts.rounds)
    finally:
        if opts.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        import resource

        result = _child(json.loads(sys.argv[2]))
        result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
