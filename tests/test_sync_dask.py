"""sync on a real Dask cluster: a scheduler and worker processes on loopback.

The workers are ``dask worker`` processes with their own environment: each reads the
clouds file its ``IMAGEHUB_CONFIG`` names, as a worker on another host would. Nothing
here is mocked; a recording executor only looks at what is submitted.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import pytest
import yaml

import imagehub
from imagehub.backends.local import LocalManager
from imagehub.migration._task import TransferTask, run_task
from tests.test_migrate import _leftovers, _lxd_image, _tagged
from tests.test_migrate import lxd_one as lxd_one

if TYPE_CHECKING:
    from imagehub.backends.glance import GlanceManager
    from imagehub.backends.lxd import LXDManager
    from tests.servers.lxd import LXDDaemon
    from tests.servers.openstack import OpenStackCloud

distributed: Any = pytest.importorskip(
    "distributed", reason="the dask extra is not installed: pip install 'imagehub[dask]'")
from distributed.cfexecutor import ClientExecutor  # noqa: E402

MiB = 1024 * 1024
P = ParamSpec("P")
T = TypeVar("T")
START_TIMEOUT = 120.0


class Cluster:
    """A ``dask scheduler`` and ``dask worker`` processes, each with its own env."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        sched_file = root / "scheduler.json"
        with open(root / "scheduler.log", "wb") as log:
            self.scheduler = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                 "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                 str(sched_file)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True)
        _wait(lambda: sched_file.exists() and sched_file.stat().st_size > 0, "scheduler")
        self.client: Any = distributed.Client(scheduler_file=str(sched_file),
                                              timeout=START_TIMEOUT)
        self.address: str = self.client.scheduler.address

    def add_worker(self, name: str, config: Path) -> str:
        """Start a worker (no nanny: a SIGKILL kills it for good); its address."""
        env = {**os.environ, "IMAGEHUB_CONFIG": str(config)}
        with open(self.root / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                 "--no-nanny", "--nthreads", "2", "--name", name, "--no-dashboard"],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True)
        _wait(lambda: self.worker(name) is not None, f"worker {name}")
        address = self.worker(name)
        assert address is not None
        return address

    def worker(self, name: str) -> str | None:
        for address, info in self.client.scheduler_info()["workers"].items():
            if info.get("name") == name:
                return str(address)
        return None

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def close(self) -> None:
        self.client.close()
        for proc in [*self.procs.values(), self.scheduler]:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in [*self.procs.values(), self.scheduler]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start within {START_TIMEOUT}s")
        time.sleep(0.1)


class Recording(ClientExecutor):
    """Dask's own executor, keeping the pickled bytes of everything submitted."""

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)  # type: ignore[no-untyped-call]
        self.payloads: list[bytes] = []
        self.tasks: list[TransferTask] = []

    # Executor's signature (fn positional-only), which distributed's untyped one loosens.
    def submit(self, fn: Callable[P, T], /,  # type: ignore[override]
               *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[T]:
        self.payloads.append(pickle.dumps((fn, args, kwargs)))
        self.tasks.extend(a for a in args if isinstance(a, TransferTask))
        return super().submit(fn, *args, **kwargs)  # type: ignore[no-untyped-call,no-any-return]


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workers' clouds file; tests add their clouds before their first sync."""
    root = tmp_path_factory.mktemp("dask-clouds")
    config = root / "clouds.yaml"
    config.write_text(yaml.safe_dump({"clouds": {
        name: {"backend": "local", "path": str(root / name)}
        for name in ("many-src", "many-dst", "kill-src", "kill-dst", "lack-src", "lack-dst")
    }}))
    return config


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, clouds: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.add_worker("w1", clouds)
        c.add_worker("w2", clouds)
        yield c
    finally:
        c.close()


@pytest.fixture
def use_clouds(clouds: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMAGEHUB_CONFIG", str(clouds))
    return clouds


def _fill(store: imagehub.ImageManager, count: int, size: int) -> dict[str, str]:
    """``count`` images of random bytes; their sha256 by name."""
    out = {}
    for i in range(count):
        data = os.urandom(size)
        store.create(data, name=f"img-{i:03d}")
        out[f"img-{i:03d}"] = "sha256:" + hashlib.sha256(data).hexdigest()
    return out


def _held(store: imagehub.ImageManager) -> dict[str, str | None]:
    return {i.name or i.id: i.checksum for i in store.all() if i.status == "active"}


def test_fifty_images_between_two_local_stores(cluster: Cluster, use_clouds: Path) -> None:
    src, dst = imagehub.connect("many-src"), imagehub.connect("many-dst")
    want = _fill(src, 50, 64 * 1024 + 7)
    executor = Recording(cluster.client)
    seen: list[int] = []
    summary = imagehub.sync("many-src", "many-dst", executor=executor,
                            progress=lambda p: seen.append(p.delta))
    assert summary.ok, [t.error for t in summary.items if t.error]
    assert summary.copied == 50
    assert _held(dst) == want  # verified and keyed on content: every byte as it was
    # Placement: each transfer names the worker that did it; both took part.
    workers = {t.worker for t in summary.items}
    assert workers == {cluster.worker("w1"), cluster.worker("w2")}
    assert summary.to_dict()["items"][0]["worker"] in workers
    # One bar over all transfers: the workers' reports add up to every byte moved.
    assert sum(seen) == summary.bytes == 50 * (64 * 1024 + 7)
    assert len(executor.tasks) == 50
    again = imagehub.sync("many-src", "many-dst", executor=Recording(cluster.client))
    assert (again.present, again.copied) == (50, 0)


def test_a_task_run_twice_copies_once(use_clouds: Path) -> None:
    """What Dask does after a worker dies between committing a copy and reporting it."""
    src = imagehub.connect("many-src")
    image = src.create(os.urandom(20_000), name="twice")
    task = TransferTask(source="many-src", destination="many-dst", ref=image.id,
                        name="twice", run="r")
    first, second = run_task(task), run_task(task)
    assert first.transfer is not None and first.transfer.action == "copied"
    assert second.transfer is not None and second.transfer.action == "present"
    assert second.transfer.image == first.transfer.image
    assert [i.name for i in imagehub.connect("many-dst").all()].count("twice") == 1


def test_worker_missing_a_cloud_fails_its_tasks_naming_it(
        cluster: Cluster, use_clouds: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"clouds": {
        "lack-src": yaml.safe_load(use_clouds.read_text())["clouds"]["lack-src"]}}))
    address = cluster.add_worker("bare", bare)
    try:
        src = imagehub.connect("lack-src")
        _fill(src, 3, 1000)
        summary = imagehub.sync("lack-src", "lack-dst",
                                executor=cluster.client.get_executor(workers=[address]))
        assert summary.failed == 3
        for t in summary.items:
            assert t.error is not None and address in t.error
            assert "'lack-dst'" in t.error and "IMAGEHUB_CONFIG" in t.error
            assert t.worker == address
        assert _held(imagehub.connect("lack-dst")) == {}
        # The same tasks on workers that have the cloud finish the job.
        done = imagehub.sync("lack-src", "lack-dst", executor=cluster.client.get_executor(
            workers=[cluster.worker("w1")]))
        assert done.copied == 3
    finally:
        cluster.kill("bare")


def test_worker_killed_mid_transfer_then_rerun_finishes(
        cluster: Cluster, use_clouds: Path) -> None:
    victim = cluster.add_worker("victim", use_clouds)
    survivor = cluster.worker("w1")
    src, dst = imagehub.connect("kill-src"), imagehub.connect("kill-dst")
    want = _fill(src, 8, 24 * MiB)
    killed = threading.Event()

    def kill_on_first_bytes(p: imagehub.Progress) -> None:
        # The first report means transfers are under way on both workers.
        if not killed.is_set():
            killed.set()
            cluster.kill("victim")

    executor = cluster.client.get_executor(workers=[victim, survivor])
    first = imagehub.sync("kill-src", "kill-dst", executor=executor,
                          progress=kill_on_first_bytes)
    assert killed.is_set()
    # Dask retries the lost worker's tasks on the survivor; any it gave up on is failed.
    # A task the victim had committed before the kill reached it finds its own copy
    # when Dask runs it again, and says "present": every image is accounted for once.
    assert len(first.items) == 8
    assert first.copied + first.present + first.failed == 8
    # Placement names a worker of the cluster for every copy; the victim may have
    # finished one before the kill reached it, so either may appear.
    assert {t.worker for t in first.items if t.action == "copied"} <= {victim, survivor}
    rerun = imagehub.sync("kill-src", "kill-dst",
                          executor=cluster.client.get_executor(workers=[survivor]))
    assert rerun.ok and rerun.copied + rerun.present == 8
    assert _held(dst) == want
    # Nothing half-made: no unfinished record, and the store (reopened, as a next user
    # would) holds no staged upload or blob of the dead worker.
    assert [i for i in dst.all() if i.status != "active"] == []
    assert isinstance(dst, LocalManager)
    assert _leftovers(LocalManager(path=dst.root, cloud="kill-dst")) == []


def test_lxd_to_glance_through_the_cluster_carries_no_secret(
        cluster: Cluster, clouds: Path, lxd_one: LXDManager, lxd_daemon: LXDDaemon,
        glance_tidy: GlanceManager, openstack_cloud: OpenStackCloud, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    project = openstack_cloud.project("alpha")
    config = yaml.safe_load(clouds.read_text())
    config["clouds"]["lxd-one"] = {"backend": "lxd", "endpoint": str(lxd_daemon.socket_path)}
    config["clouds"]["glance"] = {
        "backend": "glance", "auth_type": "password",
        "auth": project.auth(openstack_cloud.auth_url),
        "region_name": openstack_cloud.region_name}
    clouds.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("IMAGEHUB_CONFIG", str(clouds))
    images = []
    for kind in ("unified", "container"):
        (tmp_path / kind).mkdir()
        images.append(_lxd_image(lxd_one, tmp_path / kind, kind)[0])
    try:
        executor = Recording(cluster.client)
        summary = imagehub.sync("lxd-one", "glance", executor=executor)
        assert summary.ok, [t.error for t in summary.items if t.error]
        copied = {t.image.properties["imagehub.sha256"] for t in summary.items
                  if t.action == "copied" and t.image is not None}
        assert {i.id for i in images} <= copied
        assert _tagged(glance_tidy) and all(
            i.status == "active" for i in _tagged(glance_tidy))
        # What went to the cluster: names and options only, never a credential.
        assert executor.payloads
        for blob in executor.payloads:
            assert project.password.encode() not in blob
            assert b"password" not in blob and b"auth_url" not in blob
        for task in executor.tasks:
            assert {f.name for f in dataclasses.fields(task)} == {
                "source", "destination", "ref", "name", "run", "stream", "disk_format",
                "verify", "retries", "staging_dir"}
            assert (task.source, task.destination) == ("lxd-one", "glance")
        # A task run again (Dask retrying it after its worker died having finished the
        # copy) finds that copy on Glance by the identity it records: no second copy.
        again = run_task(executor.tasks[0])
        assert again.transfer is not None and again.transfer.action == "present"
    finally:
        for image in images:
            with contextlib.suppress(imagehub.ImageNotFound):
                lxd_one.delete(image.id)


def test_process_pool_runs_the_same_tasks(use_clouds: Path, tmp_path: Path) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text(yaml.safe_dump({"clouds": {
        n: {"backend": "local", "path": str(tmp_path / n)} for n in ("p-src", "p-dst")}}))
    os.environ["IMAGEHUB_CONFIG"] = str(config)  # restored by use_clouds' monkeypatch
    want = _fill(imagehub.connect("p-src"), 4, 300_000)
    seen: list[int] = []
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        summary = imagehub.sync("p-src", "p-dst", executor=pool,
                                progress=lambda p: seen.append(p.delta))
    assert summary.copied == 4 and _held(imagehub.connect("p-dst")) == want
    assert sum(seen) == 4 * 300_000
    assert all(t.worker and t.worker.endswith(tuple("0123456789")) for t in summary.items)


def _run(args: list[str]) -> int:
    from imagehub.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_executor_without_dask_says_what_to_install(
        use_clouds: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    capsys.readouterr()
    assert _run(["sync", "many-src", "many-dst", "--executor", "dask://127.0.0.1:1"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("imagehub: error:") and "pip install 'imagehub[dask]'" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_sync_on_the_cluster(cluster: Cluster, use_clouds: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import json

    src = imagehub.connect("many-src")
    src.create(os.urandom(5000), name="cli-one")
    host_port = cluster.address.removeprefix("tcp://")
    capsys.readouterr()
    assert _run(["--format", "json", "sync", "many-src", "many-dst",
                 "--executor", f"dask://{host_port}"]) == 0
    out = json.loads(capsys.readouterr().out)
    copied = [t for t in out["items"] if t["action"] == "copied"]
    assert len(copied) == 1 and copied[0]["worker"] in {
        cluster.worker("w1"), cluster.worker("w2")}
    for bad in ("dask://", "nope", "threads:0"):
        assert _run(["sync", "many-src", "many-dst", "--executor", bad]) != 0
        assert "imagehub: error:" in capsys.readouterr().err


def test_cli_processes_read_the_config_file_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    monkeypatch.delenv("IMAGEHUB_CONFIG", raising=False)
    config = tmp_path / "given.yaml"
    config.write_text(yaml.safe_dump({"clouds": {
        n: {"backend": "local", "path": str(tmp_path / n)} for n in ("g-src", "g-dst")}}))
    src = LocalManager(path=tmp_path / "g-src", cloud="g-src")
    want = _fill(src, 3, 50_000)
    capsys.readouterr()
    assert _run(["--config", str(config), "--format", "json", "sync", "g-src", "g-dst",
                 "--executor", "processes:2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["copied"] == 3 and all(t["worker"] for t in out["items"])
    assert _held(LocalManager(path=tmp_path / "g-dst", cloud="g-dst")) == want


def test_dask_is_imported_only_when_an_executor_asks_for_it() -> None:
    code = ("import sys, imagehub, imagehub.cli.migrate; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"
