"""A real Keystone for the test suite: SQLite, fernet tokens, served by waitress.

The slow part of a Keystone start (db_sync, key setup and bootstrap, 15-19 s)
is done once per Keystone version into a cached template folder; each run
copies the template, points the catalog at its own port and starts serving in
about three seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .openstack_procs import Daemon, ServerError, run, wait_http
from .openstack_venvs import (
    KEYSTONE_VERSION,
    cache_lock,
    cache_root,
    is_ready,
    mark_ready,
    py_tag,
)

ADMIN_PASSWORD = "keystone-admin-secret"  # test-only, like every credential here
REGION = "RegionOne"
# Bootstrap stores endpoint URLs in the database; the template carries this
# placeholder, replaced by the real port when a run copies it.
PLACEHOLDER_URL = "http://127.0.0.1:1"
TEMPLATE_KEY = (f"keystone=={KEYSTONE_VERSION}", "template-v1")

# Keystone's config loader parses sys.argv, so the server cannot be started by
# a generic WSGI runner; this wrapper clears argv before importing the app.
WRAPPER = textwrap.dedent(
    """\
    import sys

    port = int(sys.argv[1])
    sys.argv = sys.argv[:1]

    import threading

    import waitress
    from keystone.wsgi.api import application

    # SQLite takes one writer at a time, and refuses at once ("database is locked", not
    # after a wait) a transaction that read first and then writes while another writes.
    # Keystone writes on every password login (user.last_active_at), so two logins at
    # once could fail with HTTP 500 (seen in the guide test's concurrent Hub). One
    # writing request at a time, as SQLite allows; reads (token checks) stay concurrent.
    writing = threading.Lock()

    def one_writer_at_a_time(environ, start_response):
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS"):
            return application(environ, start_response)
        with writing:
            return list(application(environ, start_response))

    waitress.serve(one_writer_at_a_time, host="127.0.0.1", port=port, threads=8,
                   ident="keystone")
    """
)


def template_dir() -> Path:
    return cache_root() / f"keystone-{KEYSTONE_VERSION}-{py_tag()}-state"


def write_conf(state: Path, conf: Path) -> None:
    conf.write_text(
        textwrap.dedent(
            f"""\
            [DEFAULT]
            use_stderr = true
            [database]
            connection = sqlite:///{state}/keystone.sqlite
            [token]
            provider = fernet
            [fernet_tokens]
            key_repository = {state}/fernet-keys
            [fernet_receipts]
            key_repository = {state}/fernet-keys
            [credential]
            key_repository = {state}/credential-keys
            [cache]
            # Without a cache every token check costs about a second.
            enabled = true
            backend = dogpile.cache.memory
            [identity]
            # Test logins stay fast; never use this outside tests.
            password_hash_rounds = 4
            """
        )
    )


def build_template(venv: Path) -> Path:
    """db_sync + fernet/credential keys + bootstrap, once per version."""
    target = template_dir()
    with cache_lock(target.name):
        if is_ready(target, TEMPLATE_KEY):
            return target
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        conf = target / "keystone.conf"
        write_conf(target, conf)
        log = target / "bootstrap.log"
        manage = [str(venv / "bin" / "keystone-manage"), "--config-file", str(conf)]
        run([*manage, "db_sync"], log=log)
        for keys in ("fernet_setup", "credential_setup"):
            run(
                [*manage, keys, "--keystone-user", "root", "--keystone-group", "root"],
                log=log,
            )
        url = f"{PLACEHOLDER_URL}/v3/"
        run(
            [
                *manage,
                "bootstrap",
                "--bootstrap-password",
                ADMIN_PASSWORD,
                "--bootstrap-admin-url",
                url,
                "--bootstrap-internal-url",
                url,
                "--bootstrap-public-url",
                url,
                "--bootstrap-region-id",
                REGION,
            ],
            log=log,
        )
        mark_ready(target, TEMPLATE_KEY)
    return target


@dataclass
class KeystoneServer:
    daemon: Daemon
    port: int
    state_dir: Path
    conf: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/v3"

    def wait_ready(self, timeout: float = 30) -> None:
        wait_http(f"{self.url}/v3", self.daemon, timeout=timeout)

    def stop(self) -> None:
        self.daemon.stop()


def start_keystone(venv: Path, run_dir: Path, port: int) -> KeystoneServer:
    """Copy the bootstrapped template into ``run_dir`` and start serving (no wait)."""
    state = run_dir / "keystone"
    shutil.copytree(
        template_dir(), state, ignore=shutil.ignore_patterns("*.log", ".imagehub-*")
    )
    # sqlite3's own context manager commits but does not close (3.13 warns).
    with contextlib.closing(sqlite3.connect(state / "keystone.sqlite")) as db, db:
        db.execute(
            "UPDATE endpoint SET url = replace(url, ?, ?)",
            (PLACEHOLDER_URL, f"http://127.0.0.1:{port}"),
        )
    conf = state / "keystone.conf"
    write_conf(state, conf)
    wrapper = state / "serve_keystone.py"
    wrapper.write_text(WRAPPER)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(state),
        "OS_KEYSTONE_CONFIG_FILES": str(conf),
        "PYTHONUNBUFFERED": "1",
    }
    daemon = Daemon(
        name="keystone",
        argv=[str(venv / "bin" / "python"), str(wrapper), str(port)],
        env=env,
        log=run_dir / "keystone.log",
    )
    try:
        daemon.start()
    except OSError as exc:
        raise ServerError(f"cannot start keystone from {venv}: {exc}") from exc
    return KeystoneServer(daemon=daemon, port=port, state_dir=state, conf=conf)


if __name__ == "__main__":  # pragma: no cover - manual check
    from .openstack_venvs import keystone_venv

    print(build_template(keystone_venv()), file=sys.stderr)
