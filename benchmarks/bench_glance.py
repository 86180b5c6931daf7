"""Glance: 1 GiB upload and download, and listing 5,000 images; imagehub, curl, openstacksdk.

One run starts a real Keystone and Glance (the test harness in ``tests/servers``), then:

* **upload** a 1 GiB random file: imagehub ``create(path)``; ``curl -T`` to ``PUT /file``
  (after creating the record); openstacksdk ``create_image(filename=..., wait=True)``,
  timed until Glance says ``active``.
* **download** it: imagehub ``export(id).save(path)`` (verified against sha512 and md5 as
  the bytes arrive), the same stream *unverified* (to show what verification costs),
  ``curl -o``, and openstacksdk ``download_image(output_path=..., stream=True)``.
* **list** 5,000 images: imagehub ``all()`` (default page size) and openstacksdk
  ``image.images()``.

Every operation runs in its own child process; peak RSS is that child's ``ru_maxrss``
(from ``wait4``). Time is the operation alone, measured inside the child after imports
and login (curl: the whole process, which starts in milliseconds). Every download is
checked against the file's sha256 by the parent. openstacksdk is installed into a
benchmark-only virtualenv beside the server venvs, never into the project.

    python -m benchmarks.bench_glance [--size-mib 1024] [--images 5000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SDK_VERSION = "4.22.0"


@dataclass(frozen=True)
class Sample:
    what: str
    client: str
    seconds: float
    rss_mib: float
    note: str = ""


# -- child side: one operation, report seconds on stdout ------------------------------------
def _child(task: str, args: dict[str, Any]) -> dict[str, Any]:
    if task.startswith("imagehub"):
        sys.path.insert(0, str(REPO))
        from imagehub.backends.glance import GlanceManager

        manager = GlanceManager.from_options(
            {"auth_type": "password", "auth": args["auth"],
             "download_hashes": args.get("hashes", "all")}, cloud="bench")
        manager.list(limit=1)  # log in before the clock starts
        start = time.perf_counter()
        if task == "imagehub-upload":
            image = manager.create(args["path"], name=args["name"], disk_format="raw")
            out: dict[str, Any] = {"id": image.id}
        elif task == "imagehub-download":
            manager.export(args["id"]).save(args["path"])
            out = {}
        elif task == "imagehub-download-unverified":
            resp = manager.http.request("GET", f"images/{args['id']}/file", "download",
                                        stream=True,
                                        headers={"Accept": "application/octet-stream"})
            with open(args["path"], "wb") as fh:
                while chunk := resp.raw.read(1 << 20):
                    fh.write(chunk)
                if args.get("fsync"):
                    fh.flush()
                    os.fsync(fh.fileno())
            out = {}
        elif task == "imagehub-verify-only":
            with manager.export(args["id"]) as stream:
                for _chunk in stream:
                    pass
            out = {}
        elif task == "imagehub-list":
            out = {"count": sum(1 for _ in manager.all())}
        else:
            raise SystemExit(f"unknown task {task}")
        out["seconds"] = time.perf_counter() - start
        return out
    if task.startswith("sdk"):
        import openstack  # type: ignore[import-not-found,unused-ignore]

        conn = openstack.connect(auth_type="password", **args["auth"])
        list(conn.image.images(limit=1))
        start = time.perf_counter()
        if task == "sdk-upload":
            made = conn.create_image(args["name"], filename=args["path"], disk_format="raw",
                                     container_format="bare", wait=True)
            assert made is not None
            returned = time.perf_counter() - start
            # openstacksdk may return before Glance has the bytes: time it to active.
            while conn.image.get_image(made.id).status != "active":
                time.sleep(0.05)
            out = {"id": made.id, "returned": returned}
        elif task == "sdk-download":
            conn.download_image(args["id"], output_path=args["path"], stream=True)
            out = {}
        elif task == "sdk-list":
            out = {"count": sum(1 for _ in conn.image.images())}
        else:
            raise SystemExit(f"unknown task {task}")
        out["seconds"] = time.perf_counter() - start
        return out
    raise SystemExit(f"unknown task {task}")


# -- parent side ------------------------------------------------------------------------------
def _measure(python: str, task: str, args: dict[str, Any]) -> tuple[dict[str, Any], float]:
    proc = subprocess.Popen(
        [python, __file__, "--child", task, json.dumps(args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{task} failed ({proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def _timed_process(argv: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"{argv[0]} failed: {err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Loopback only: no proxy may see this traffic.
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(key, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _random_file(path: Path, size_mib: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for _ in range(size_mib):
            block = os.urandom(1 << 20)
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


def _sdk_python() -> str:
    from tests.servers.openstack_venvs import build_venv, cache_root, py_tag

    venv = build_venv(cache_root() / f"bench-openstacksdk-{SDK_VERSION}-{py_tag()}",
                      (f"openstacksdk=={SDK_VERSION}",))
    return str(venv / "bin" / "python")


def run(size_mib: int, n_images: int, workdir: Path) -> list[Sample]:
    sys.path.insert(0, str(REPO))
    from tests.servers.openstack import password_session, provision, start_openstack

    provision()
    sdk = _sdk_python()
    here = sys.executable
    cloud = start_openstack(workdir / "servers")
    samples: list[Sample] = []
    try:
        user = cloud.project("alpha")
        auth = user.auth(cloud.auth_url)
        sess = password_session(cloud, user)
        token = sess.get_token()
        glance = cloud.glance_url
        source = workdir / "source.img"
        want = _random_file(source, size_mib)
        what_up, what_down = f"upload {size_mib} MiB", f"download {size_mib} MiB"

        def drop(image_id: str) -> None:
            sess.delete(f"{glance}/v2/images/{image_id}")

        # -- upload
        out, rss = _measure(here, "imagehub-upload",
                            {"auth": auth, "path": str(source), "name": "bench-ih"})
        samples.append(Sample(what_up, "imagehub create(path)", out["seconds"], rss))
        image_id = out["id"]

        rec = sess.post(f"{glance}/v2/images", json={
            "name": "bench-curl", "disk_format": "raw", "container_format": "bare"}).json()
        seconds, rss = _timed_process([
            "curl", "-sS", "--fail", "-X", "PUT", "-T", str(source),
            "-H", f"X-Auth-Token: {token}", "-H", "Content-Type: application/octet-stream",
            "-H", "Expect:", f"{glance}/v2/images/{rec['id']}/file"])
        samples.append(Sample(what_up, "curl -T", seconds, rss))
        drop(rec["id"])

        out, rss = _measure(sdk, "sdk-upload",
                            {"auth": auth, "path": str(source), "name": "bench-sdk"})
        samples.append(Sample(what_up, "openstacksdk create_image", out["seconds"], rss,
                              f"returned after {out['returned']:.1f}s"))
        drop(out["id"])

        # -- download (the imagehub-uploaded image)
        for client, task, python, hashes in (
                ("imagehub save, sha512+md5 (default)", "imagehub-download", here, "all"),
                ("imagehub save, sha512 only", "imagehub-download", here, "os_hash"),
                ("imagehub save, md5 only", "imagehub-download", here, "md5"),
                ("imagehub raw stream (unverified)", "imagehub-download-unverified", here,
                 "all"),
                ("imagehub raw stream + fsync", "imagehub-download-unverified", here, "fsync"),
                ("imagehub export, verify, no file", "imagehub-verify-only", here, "all"),
                ("openstacksdk download_image (md5)", "sdk-download", sdk, "")):
            target = workdir / f"{task}.img"
            out, rss = _measure(python, task, {"auth": auth, "id": image_id,
                                               "path": str(target), "fsync": hashes == "fsync",
                                               "hashes": hashes if hashes != "fsync" else "all"})
            ok = not target.exists() or _sha256(target) == want
            samples.append(Sample(what_down, client, out["seconds"], rss,
                                  "" if ok else "WRONG BYTES"))
            target.unlink(missing_ok=True)
        target = workdir / "curl.img"
        seconds, rss = _timed_process([
            "curl", "-sS", "--fail", "-o", str(target), "-H", f"X-Auth-Token: {token}",
            f"{glance}/v2/images/{image_id}/file"])
        samples.append(Sample(what_down, "curl -o", seconds, rss,
                              "" if _sha256(target) == want else "WRONG BYTES"))
        target.unlink()
        drop(image_id)
        source.unlink()

        # -- listing
        if not n_images:
            return samples
        started = time.perf_counter()

        def make(i: int) -> None:
            body = {"name": f"list-{i:05d}", "disk_format": "raw",
                    "container_format": "bare", "tags": ["bench"], "os_distro": "debian"}
            for _ in range(20):
                # SQLite behind the test Glance answers 500 "database is locked" when two
                # writes collide; a retry is all it needs.
                if sess.post(f"{glance}/v2/images", json=body, raise_exc=False).ok:
                    return
                time.sleep(0.05)
            raise RuntimeError("could not create image records")

        # One at a time: SQLite serialises writes anyway, and collisions cost retries.
        for i in range(n_images):
            make(i)
        print(f"(created {n_images} image records in {time.perf_counter() - started:.0f}s)",
              flush=True)
        what_list = f"list {n_images} images"
        out, rss = _measure(here, "imagehub-list", {"auth": auth})
        samples.append(Sample(what_list, "imagehub all() (page_size 500)", out["seconds"],
                              rss, f"{out['count']} images"))
        out, rss = _measure(sdk, "sdk-list", {"auth": auth})
        samples.append(Sample(what_list, "openstacksdk image.images()", out["seconds"], rss,
                              f"{out['count']} images"))
    finally:
        cloud.stop()
    return samples


def report(samples: list[Sample], size_mib: int) -> str:
    lines = [f"{'operation':<22} {'client':<38} {'seconds':>8} {'MB/s':>8} {'peak RSS MiB':>13}"
             "  note"]
    for s in samples:
        rate = f"{size_mib * 1.048576 / s.seconds:8.0f}" if "MiB" in s.what else " " * 8
        lines.append(f"{s.what:<22} {s.client:<38} {s.seconds:8.2f} {rate} "
                     f"{s.rss_mib:13.0f}  {s.note}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--workdir", type=Path)
    opts = parser.parse_args(argv)
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="imagehub-bench-glance-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        samples = run(opts.size_mib, opts.images, workdir)
    finally:
        if opts.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(samples, opts.size_mib))
    return 1 if any("WRONG" in s.note for s in samples) else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], json.loads(sys.argv[3]))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
