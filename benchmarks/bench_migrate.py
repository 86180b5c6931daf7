"""migrate: 1 GiB LXD -> Glance against its legs, memory as size grows, verified download.

One run starts a real LXD daemon and a real Keystone + Glance (the test harness in
``tests/servers``), imports an incompressible unified LXD image, then measures:

* **migrate** ``imagehub.migrate(lxd, fingerprint, glance)`` (the stream path: export and
  upload overlap through a bounded queue, sha256 + sha512 computed on the way, the
  destination's sha512 compared after the upload);
* **the legs alone**, with curl: the LXD export (``GET /1.0/images/<fp>/export`` over the
  unix socket, to a file) and the Glance upload (``PUT /v2/images/<id>/file -T file``);
  the slower one is the floor a streaming migration can approach;
* **sequential**: export to a file, then upload it (both with curl, one after the other);
* **peak RSS** of the migrating process at 256 MiB and 2 GiB (flat means streamed);
* **verified download** from Glance: imagehub ``export`` checking sha512 and md5 as the
  bytes arrive, against ``curl | sha512sum``.

Every imagehub operation runs in its own child process; peak RSS is the child's
``ru_maxrss`` (``wait4``); time is the operation alone, after imports and login. curl
runs are timed as whole processes (they start in milliseconds).

    python -m benchmarks.bench_migrate [--size-mib 1024] [--rss-sizes 256,2048] [--workdir D]
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sample:
    what: str
    seconds: float
    rss_mib: float | None = None
    note: str = ""


# -- child side: one imagehub operation, seconds on stdout ----------------------------------
def _child(task: str, args: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    import imagehub
    from imagehub.backends.glance import GlanceManager
    from imagehub.backends.lxd import LXDManager

    glance = GlanceManager.from_options({"auth_type": "password", "auth": args["auth"]},
                                        cloud="glance")
    glance.list(limit=1)  # log in before the clock starts
    if task == "migrate":
        lxd = LXDManager(endpoint=args["socket"], cloud="lxd")
        lxd.get(args["fingerprint"])
        start = time.perf_counter()
        done = imagehub.plan(lxd, args["fingerprint"], glance).execute()
        seconds = time.perf_counter() - start
        assert done.image is not None
        return {"seconds": seconds, "id": done.image.id, "path": done.path,
                "checks": list(done.checks), "bytes": done.bytes}
    if task == "upload":
        start = time.perf_counter()
        image = glance.create(args["path"], name="bench-upload", disk_format="raw")
        return {"seconds": time.perf_counter() - start, "id": image.id}
    if task == "download":
        start = time.perf_counter()
        count = 0
        with glance.export(args["id"]) as stream:
            for chunk in stream.iter_bytes():
                count += len(chunk)
        return {"seconds": time.perf_counter() - start, "bytes": count,
                "verified": list(stream.expected)}
    raise SystemExit(f"unknown task {task}")


# -- parent side ------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(key, None)  # loopback only: no proxy may see this traffic
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _measure(task: str, args: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run one operation in a child; its result and its own peak RSS (MiB)."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", task, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{task} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return result, float(result.pop("rss_mib"))


def _timed(argv: list[str] | str, *, shell: bool = False) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, shell=shell, capture_output=True, text=True, env=_env(),
                          check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv!r} failed: {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def run(size_mib: int, rss_sizes: list[int], workdir: Path, rounds: int = 3
        ) -> tuple[list[Sample], bool]:
    sys.path.insert(0, str(REPO))
    from imagehub.backends.lxd import LXDManager
    from tests.servers.lxd import start_daemon, stop_daemon
    from tests.servers.lxd_images import write_incompressible_unified
    from tests.servers.openstack import password_session, provision, start_openstack

    provision()
    cloud = start_openstack(workdir / "openstack")
    daemon = start_daemon(workdir / "lxd", "bench")
    samples: list[Sample] = []
    ok = True
    try:
        user = cloud.project("alpha")
        auth = user.auth(cloud.auth_url)
        sess = password_session(cloud, user)
        token = sess.get_token()
        glance_url = cloud.glance_url
        lxd = LXDManager(endpoint=str(daemon.socket_path), cloud="lxd")

        def lxd_image(mib: int) -> str:
            path = workdir / f"unified-{mib}.tar"
            built = write_incompressible_unified(path, mib)
            image = lxd.create(path, name=f"bench-{mib}")
            path.unlink()
            assert image.id == built.fingerprint
            return image.id

        def new_record(name: str) -> str:
            rec = sess.post(f"{glance_url}/v2/images", json={
                "name": name, "disk_format": "raw", "container_format": "bare"}).json()
            return str(rec["id"])

        def drop(image_id: str) -> None:
            sess.delete(f"{glance_url}/v2/images/{image_id}")

        def curl_export(fingerprint: str, target: Path) -> float:
            seconds, _ = _timed(["curl", "-sS", "--fail", "--unix-socket",
                                 str(daemon.socket_path), "-o", str(target),
                                 f"http://lxd/1.0/images/{fingerprint}/export"])
            return seconds

        def curl_upload(source: Path, image_id: str) -> float:
            seconds, _ = _timed(["curl", "-sS", "--fail", "-X", "PUT", "-T", str(source),
                                 "-H", f"X-Auth-Token: {token}", "-H",
                                 "Content-Type: application/octet-stream", "-H", "Expect:",
                                 f"{glance_url}/v2/images/{image_id}/file"])
            return seconds

        fingerprint = lxd_image(size_mib)
        label = f"{size_mib} MiB"

        # -- rounds of: each leg alone, both one after the other, and migrate. Other work
        # on a 2-core machine makes single runs noisy: the medians are compared.
        exported = workdir / "exported.tar"
        legs: dict[str, list[float]] = {"export": [], "upload": [], "ih-upload": [],
                                        "sequential": [], "migrate": []}
        migrate_rss: list[float] = []
        migrated = ""
        notes = ""
        for _ in range(rounds):
            legs["export"].append(curl_export(fingerprint, exported))
            record = new_record("bench-leg")
            legs["upload"].append(curl_upload(exported, record))
            drop(record)
            out, _rss = _measure("upload", {"auth": auth, "path": str(exported)})
            legs["ih-upload"].append(out["seconds"])
            drop(out["id"])
            exported.unlink()

            start = time.perf_counter()
            curl_export(fingerprint, exported)
            record = new_record("bench-seq")
            curl_upload(exported, record)
            legs["sequential"].append(time.perf_counter() - start)
            drop(record)
            exported.unlink()

            if migrated:
                drop(migrated)
            out, rss = _measure("migrate", {"auth": auth, "socket": str(daemon.socket_path),
                                            "fingerprint": fingerprint})
            migrated = out["id"]
            legs["migrate"].append(out["seconds"])
            migrate_rss.append(rss)
            notes = f"path={out['path']} checks={','.join(out['checks'])}"
        med = {k: statistics.median(v) for k, v in legs.items()}
        spread = {k: f"{min(v):.2f}-{max(v):.2f}" for k, v in legs.items()}
        samples.append(Sample(f"leg: LXD export {label} (curl, to file)", med["export"],
                              note=f"range {spread['export']}"))
        samples.append(Sample(f"leg: Glance upload {label} (curl -T)", med["upload"],
                              note=f"range {spread['upload']}"))
        samples.append(Sample(f"(ref) Glance upload {label} (imagehub create)",
                              med["ih-upload"], note=f"range {spread['ih-upload']}"))
        samples.append(Sample(f"sequential: export to file, then upload {label}",
                              med["sequential"], note=f"range {spread['sequential']}"))
        samples.append(Sample(f"imagehub.migrate LXD -> Glance {label}", med["migrate"],
                              max(migrate_rss), f"range {spread['migrate']}; {notes}"))
        export_leg, upload_leg = med["export"], med["upload"]
        sequential, migrate_seconds = med["sequential"], med["migrate"]

        # -- verified download against curl | sha512sum
        record = sess.get(f"{glance_url}/v2/images/{migrated}").json()
        out, rss = _measure("download", {"auth": auth, "id": migrated})
        samples.append(Sample(f"imagehub export {label}, verified sha512+md5", out["seconds"],
                              rss, f"{out['bytes']} bytes"))
        download_seconds = out["seconds"]
        curl_seconds, digest = _timed(
            f"curl -sS --fail -H 'X-Auth-Token: {token}' "
            f"{glance_url}/v2/images/{migrated}/file | sha512sum", shell=True)
        same = digest.split()[0] == record["os_hash_value"]
        ok &= same
        samples.append(Sample(f"curl | sha512sum {label}", curl_seconds, None,
                              "matches os_hash_value" if same else "WRONG DIGEST"))
        drop(migrated)
        lxd.delete(fingerprint)

        # -- memory as the image grows
        for mib in rss_sizes:
            fp = lxd_image(mib)
            out, rss = _measure("migrate", {"auth": auth, "socket": str(daemon.socket_path),
                                            "fingerprint": fp})
            samples.append(Sample(f"imagehub.migrate LXD -> Glance {mib} MiB", out["seconds"],
                                  rss, "peak RSS check"))
            drop(out["id"])
            lxd.delete(fp)

        slowest = max(export_leg, upload_leg)
        samples.append(Sample(
            "ratios", 0.0, None,
            f"migrate/slowest-leg = {migrate_seconds / slowest:.2f} (target <= 1.15); "
            f"migrate/sequential = {migrate_seconds / sequential:.2f} (target <= 0.80); "
            f"migrate/(imagehub upload alone) = {migrate_seconds / med['ih-upload']:.2f}; "
            f"verified-download/(curl|sha512sum) = {download_seconds / curl_seconds:.2f}"))
    finally:
        stop_daemon(daemon)
        cloud.stop()
    return samples, ok


def report(samples: list[Sample]) -> str:
    lines = [f"{'measurement':<52} {'seconds':>8} {'peak RSS MiB':>13}  note"]
    for s in samples:
        if s.what == "ratios":
            continue
        rss = f"{s.rss_mib:13.0f}" if s.rss_mib is not None else " " * 13
        lines.append(f"{s.what:<52} {s.seconds:8.2f} {rss}  {s.note}")
    lines += [s.note for s in samples if s.what == "ratios"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rss-sizes", default="256,2048",
                        help="image sizes (MiB) whose peak RSS is compared")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    parser.add_argument("--workdir", type=Path)
    opts = parser.parse_args(argv)
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="imagehub-bench-migrate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        samples, ok = run(opts.size_mib, [int(s) for s in opts.rss_sizes.split(",") if s],
                          workdir, opts.rounds)
    finally:
        if opts.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(samples), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        import resource

        result = _child(sys.argv[2], json.loads(sys.argv[3]))
        result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
