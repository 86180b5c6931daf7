"""A real Glance (Image API v2) for the test suite, served by uWSGI.

``glance-api`` no longer serves by itself in 33.x, so uWSGI runs
``glance.wsgi.api:application``. The schema migration (2-4 s) is done once per
Glance version into a cached SQLite template that each run copies.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .openstack_procs import Daemon, ServerError, run, wait_http, wait_port_free
from .openstack_venvs import (
    GLANCE_VERSION,
    cache_lock,
    cache_root,
    is_ready,
    mark_ready,
    py_tag,
)

TEMPLATE_KEY = (f"glance=={GLANCE_VERSION}", "template-v1")
SERVICE_USER = "glance"
SERVICE_PASSWORD = "glance-service-secret"  # test-only
SERVICE_PROJECT = "service"


def template_dir() -> Path:
    return cache_root() / f"glance-{GLANCE_VERSION}-{py_tag()}-db"


@dataclass(frozen=True)
class KeystoneLink:
    """What Glance's auth_token middleware needs to validate user tokens."""

    auth_url: str
    username: str = SERVICE_USER
    password: str = SERVICE_PASSWORD
    project_name: str = SERVICE_PROJECT


def write_conf(
    data: Path, conf_dir: Path, port: int, keystone: KeystoneLink | None
) -> None:
    url = f"http://127.0.0.1:{port}"
    auth = "keystone" if keystone is not None else ""
    sections = textwrap.dedent(
        f"""\
        [DEFAULT]
        use_stderr = true
        # Two stores so copy-image has somewhere to copy to.
        enabled_backends = fs:file, fs2:file
        enabled_import_methods = [glance-direct,web-download,copy-image]
        public_endpoint = {url}
        worker_self_reference_url = {url}
        image_cache_dir = {data}/cache
        [glance_store]
        default_backend = fs
        [fs]
        filesystem_store_datadir = {data}/images
        [fs2]
        filesystem_store_datadir = {data}/images2
        [os_glance_staging_store]
        filesystem_store_datadir = {data}/staging
        [os_glance_tasks_store]
        filesystem_store_datadir = {data}/tasks
        [task]
        work_dir = {data}/work
        [database]
        connection = sqlite:///{data}/glance.sqlite
        # A throwaway database: no fsync per commit (see use_wal below).
        sqlite_synchronous = false
        [oslo_concurrency]
        lock_path = {data}/locks
        [import_filtering_opts]
        # web-download from the loopback test HTTP server is blocked otherwise;
        # list values need the brackets.
        allowed_ports = []
        allowed_hosts = [127.0.0.1,localhost]
        [paste_deploy]
        flavor = {auth}
        """
    )
    if keystone is not None:
        sections += textwrap.dedent(
            f"""\
        [keystone_authtoken]
        www_authenticate_uri = {keystone.auth_url}
        auth_url = {keystone.auth_url}
        auth_type = password
        username = {keystone.username}
        password = {keystone.password}
        project_name = {keystone.project_name}
        user_domain_name = Default
        project_domain_name = Default
        """
        )
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "glance-api.conf").write_text(sections)


def build_template(venv: Path) -> Path:
    """Run the schema migration once per version into a cached SQLite file."""
    target = template_dir()
    with cache_lock(target.name):
        if is_ready(target, TEMPLATE_KEY):
            return target
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        write_conf(target, target, 1, None)
        run(
            [
                str(venv / "bin" / "glance-manage"),
                "--config-file",
                str(target / "glance-api.conf"),
                "db_sync",
            ],
            log=target / "db_sync.log",
        )
        mark_ready(target, TEMPLATE_KEY)
    return target


@dataclass
class GlanceServer:
    daemon: Daemon
    port: int
    data_dir: Path
    conf_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stored_file(self, image_id: str, store: str = "fs") -> Path:
        """Where the file store keeps an image's bytes (for corruption tests)."""
        return self.data_dir / ("images" if store == "fs" else "images2") / image_id

    def wait_ready(self, timeout: float = 60) -> None:
        wait_http(f"{self.url}/healthcheck", self.daemon, timeout=timeout)

    def stop(self) -> None:
        self.daemon.stop()

    def kill(self) -> None:
        """SIGKILL master and workers at once, as a crash or OOM kill would."""
        self.daemon.kill()

    def restart(self, timeout: float = 60) -> None:
        """Start again on the same port and data after stop() or kill()."""
        if self.daemon.alive():
            self.daemon.stop()
        wait_port_free(self.port)
        self.daemon.start()
        self.wait_ready(timeout)


def use_wal(db: Path) -> None:
    """Put Glance's SQLite database in WAL mode (the setting is stored in the file).

    In the default rollback-journal mode a commit waits for every open read
    transaction and then fsyncs while it holds the lock; oslo.db opens each
    transaction with a deferred BEGIN and Glance's updates read the row first, and
    SQLite fails such a read-then-write at once ("database is locked", no busy
    timeout) while another write holds the lock. On a loaded machine (CPU and fsync
    contention) writes held up that way turn into HTTP 500s, and worst of all into
    lost imports: the task thread's first save (pending -> processing) fails, Glance
    drops that error in a future nobody reads, and the task stays pending forever.
    With WAL readers and the writer no longer wait for each other, and without the
    fsyncs (sqlite_synchronous = false) a commit is short. Production Glance runs
    on MySQL or PostgreSQL, where none of this applies.
    """
    with sqlite3.connect(db) as conn:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    conn.close()
    if str(mode).lower() != "wal":
        raise ServerError(f"cannot switch {db} to WAL mode (got {mode!r})")


def start_glance(
    venv: Path, run_dir: Path, port: int, keystone: KeystoneLink | None
) -> GlanceServer:
    """Copy the migrated database into ``run_dir`` and start uWSGI (no wait)."""
    data = run_dir / "glance"
    data.mkdir(parents=True)
    for sub in ("images", "images2", "staging", "tasks", "work", "cache", "locks"):
        (data / sub).mkdir()
    shutil.copy2(template_dir() / "glance.sqlite", data / "glance.sqlite")
    use_wal(data / "glance.sqlite")
    conf_dir = data / "etc"
    write_conf(data, conf_dir, port, keystone)
    shutil.copy2(
        venv / "etc" / "glance" / "glance-api-paste.ini",
        conf_dir / "glance-api-paste.ini",
    )
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(data),
        "OS_GLANCE_CONFIG_DIR": str(conf_dir),
        "PYTHONUNBUFFERED": "1",
    }
    if "LANG" in os.environ:
        env["LANG"] = os.environ["LANG"]
    argv = [
        str(venv / "bin" / "uwsgi"),
        "--http-socket",
        f"127.0.0.1:{port}",
        "--module",
        "glance.wsgi.api:application",
        "--master",
        "--die-on-term",
        "--lazy-apps",
        "--enable-threads",
        "--need-app",
        "--processes",
        "1",
        "--threads",
        "4",
        "--buffer-size",
        "65535",
        "--http-timeout",
        "3600",
        # uWSGI's http-socket closes every connection after the response but says
        # HTTP/1.1 without "Connection: close"; clients that reuse the socket then hit
        # resets. Saying it makes the test server honest (production sits behind a
        # keep-alive proxy).
        "--add-header", "Connection: close",
        "--disable-logging",  # request lines would swamp the log during benchmarks
        "--home",
        str(venv),
        # oslo.concurrency runs qemu-img under "sys.executable -m ...prlimit"; under uWSGI
        # that would be the uwsgi binary and the legacy import task dies with
        # "Internal Error".
        "--py-sys-executable",
        str(venv / "bin" / "python"),
    ]
    daemon = Daemon(name="glance", argv=argv, env=env, log=run_dir / "glance.log")
    try:
        daemon.start()
    except OSError as exc:
        raise ServerError(f"cannot start uWSGI from {venv}: {exc}") from exc
    return GlanceServer(daemon=daemon, port=port, data_dir=data, conf_dir=conf_dir)
