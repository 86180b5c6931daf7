"""Real LXD daemons for the test suite, one private ``LXD_DIR`` each.

Debian's ``lxd`` package (5.0.2) runs fine without systemd when started by hand:
``lxd --group root`` in its own session, readiness through ``lxd waitready``, and
a preseed instead of ``lxd init --auto`` (which fails looking for a bridge
subnet). Every daemon listens on HTTPS on a free loopback port so the backend's
HTTPS, pinning and trust-password paths are exercised for real.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

PACKAGES = ("lxd", "lxd-client", "squashfs-tools", "qemu-utils")
# The binaries each package must bring; a package counts as present when its
# binary is on PATH, so provisioning stays a no-op on a ready machine.
BINARIES = {
    "lxd": "lxd",
    "lxc": "lxd-client",
    "mksquashfs": "squashfs-tools",
    "qemu-img": "qemu-utils",
}
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class LXDUnavailable(RuntimeError):
    """LXD cannot be installed or started here; the message says exactly why."""


@dataclass(frozen=True)
class LXDDaemon:
    name: str
    lxd_dir: Path
    socket_path: Path
    url: str
    server_cert: Path
    trust_password: str
    pid: int
    log_path: Path
    # A private client configuration folder so ``lxc`` never writes ~/.config/lxc.
    lxd_conf: Path
    # Kept so the process is reaped through it: a Popen dropped while its child runs
    # raises ResourceWarning, an error in this suite.
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def env(self) -> dict[str, str]:
        """Environment for running ``lxc``/``lxd`` commands against this daemon."""
        env = dict(os.environ)
        env["LXD_DIR"] = str(self.lxd_dir)
        env["LXD_CONF"] = str(self.lxd_conf)
        return env


def _missing_binaries() -> list[str]:
    return [binary for binary in BINARIES if shutil.which(binary) is None]


def provision() -> None:
    """Install LXD and the image tools when missing; a quick no-op when present."""
    missing = _missing_binaries()
    if not missing:
        return
    if os.geteuid() != 0:
        raise LXDUnavailable(
            f"LXD test servers need {', '.join(missing)} (Debian packages "
            f"{' '.join(PACKAGES)}); not root, so they cannot be installed here"
        )
    if shutil.which("apt-get") is None:
        raise LXDUnavailable(
            f"missing {', '.join(missing)} and no apt-get to install {' '.join(PACKAGES)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
        proc = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise LXDUnavailable(
                f"{' '.join(argv)} failed with exit code {proc.returncode}:\n{tail}"
            )
    still_missing = _missing_binaries()
    if still_missing:
        raise LXDUnavailable(
            f"installed {' '.join(PACKAGES)} but {', '.join(still_missing)} still not on PATH"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _is_running(pid: int) -> bool:
    # PID 1 on this kind of machine reaps orphans late, so a dead daemon can
    # linger as a zombie that ``kill -0`` still reports alive: read the state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _trust_bundle(lxd_dir: Path, extra_ca: Path | None) -> Path | None:
    """A CA bundle for the daemon's own outgoing HTTPS (URL and simplestreams pulls).

    LXD is a Go program: it reads ``SSL_CERT_FILE`` once, at its first TLS
    client use. Creating an image from a URL ignores the ``certificate`` field of
    the image source, so the only way to make LXD 5.0 trust a test server's
    self-signed certificate there is to put it in the bundle the daemon starts
    with. (Simplestreams pulls honour ``source.certificate`` as a pin instead.)
    """
    if extra_ca is None:
        return None
    bundle = lxd_dir / "test-ca-bundle.pem"
    parts = []
    if SYSTEM_CA_BUNDLE.exists():
        parts.append(SYSTEM_CA_BUNDLE.read_text())
    parts.append(extra_ca.read_text())
    bundle.write_text("\n".join(parts))
    return bundle


def _daemon_env(lxd_dir: Path, lxd_conf: Path, bundle: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["LXD_DIR"] = str(lxd_dir)
    env["LXD_CONF"] = str(lxd_conf)
    if bundle is not None:
        env["SSL_CERT_FILE"] = str(bundle)
        env.pop("SSL_CERT_DIR", None)
    return env


def _preseed(port: int, trust_password: str) -> str:
    # JSON is valid YAML, and saves a dependency on a YAML emitter here.
    return json.dumps(
        {
            "config": {
                "core.https_address": f"127.0.0.1:{port}",
                "core.trust_password": trust_password,
                # No internet here: don't let the daemon try to refresh images.
                "images.auto_update_interval": "0",
            },
            "networks": [],
            "storage_pools": [{"name": "default", "driver": "dir", "config": {}}],
            "profiles": [
                {
                    "name": "default",
                    "devices": {
                        "root": {"path": "/", "pool": "default", "type": "disk"}
                    },
                }
            ],
        }
    )


def start_daemon(
    base_dir: Path, name: str, *, trust_ca: Path | None = None, attempts: int = 3
) -> LXDDaemon:
    """Start a fresh LXD daemon under ``base_dir/name`` and initialise it.

    ``trust_ca`` is an extra PEM certificate the daemon trusts for its own
    downloads (see ``_trust_bundle``).
    """
    provision()
    lxd_dir = base_dir / name
    lxd_dir.mkdir(parents=True, exist_ok=False)
    lxd_dir.chmod(0o711)
    lxd_conf = base_dir / f"{name}-lxc-conf"
    lxd_conf.mkdir(parents=True, exist_ok=True)
    log_path = base_dir / f"{name}.log"
    env = _daemon_env(lxd_dir, lxd_conf, _trust_bundle(lxd_dir, trust_ca))
    with (base_dir / f"{name}.stdout").open("ab") as out:
        proc = subprocess.Popen(
            ["lxd", "--group", "root", f"--logfile={log_path}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    trust_password = secrets.token_urlsafe(16)
    daemon = LXDDaemon(
        name=name,
        lxd_dir=lxd_dir,
        socket_path=lxd_dir / "unix.socket",
        url="",
        server_cert=lxd_dir / "server.crt",
        trust_password=trust_password,
        pid=proc.pid,
        log_path=log_path,
        lxd_conf=lxd_conf,
        proc=proc,
    )
    try:
        ready = subprocess.run(
            ["lxd", "waitready", "--timeout=60"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if ready.returncode != 0:
            raise LXDUnavailable(
                f"LXD daemon {name} not ready after 60 s: {ready.stderr.strip()}\n"
                f"{_log_tail(log_path)}"
            )
        error = ""
        for _ in range(attempts):
            port = free_port()
            init = subprocess.run(
                ["lxd", "init", "--preseed"],
                input=_preseed(port, trust_password),
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if init.returncode == 0:
                return replace(daemon, url=f"https://127.0.0.1:{port}")
            error = init.stderr.strip() or init.stdout.strip()
            # Another process grabbed the port between our probe and LXD's bind.
            if "address already in use" not in error:
                break
        raise LXDUnavailable(
            f"lxd init --preseed failed for {name}: {error}\n{_log_tail(log_path)}"
        )
    except BaseException:
        stop_daemon(daemon, remove=False)
        raise


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    found = []
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefix):
            found.append(target)
    # Deepest first, so nested mounts come off before their parents.
    return sorted(found, key=len, reverse=True)


def stop_daemon(daemon: LXDDaemon, *, remove: bool = True, timeout: float = 20) -> None:
    """Stop the daemon: ask politely, then by PID; unmount what it left; remove its dir."""
    env = daemon.env()
    if _is_running(daemon.pid):
        try:
            subprocess.run(
                ["lxd", "shutdown", "--timeout=10"],
                env=env,
                capture_output=True,
                timeout=15,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + timeout / 2
        while _is_running(daemon.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _is_running(daemon.pid):
            break
        try:
            os.kill(daemon.pid, sig)
        except ProcessLookupError:
            break
    # We are the daemon's parent when we started it: collect the zombie.
    if daemon.proc is not None:
        try:
            daemon.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    else:
        try:
            os.waitpid(daemon.pid, os.WNOHANG)
        except ChildProcessError:
            pass
    for target in _mounts_under(daemon.lxd_dir):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    if remove:
        shutil.rmtree(daemon.lxd_dir, ignore_errors=True)
        shutil.rmtree(daemon.lxd_conf, ignore_errors=True)
