"""Process plumbing shared by the Keystone and Glance test servers.

Free loopback ports, bounded readiness polling and daemons started in their own
session so a stop takes their whole process group (uWSGI forks workers).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class ServerError(RuntimeError):
    """A test server could not be provisioned or started; the message says why."""


def free_port() -> int:
    # Bind to port 0 so parallel runs never clash; the tiny window before the
    # server binds it is acceptable for tests.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port_free(port: int, timeout: float = 15) -> None:
    """Wait until nothing listens on ``port`` any more.

    A killed uWSGI worker can hold the listening socket for a moment after its
    master is reaped; restarting before that fails with EADDRINUSE.
    """
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"port {port} still in use after {timeout:.0f}s"
                    ) from None
        time.sleep(0.1)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> None:
    """Run a setup command, appending its output to ``log``; raise with the tail on failure."""
    with log.open("ab") as out:
        out.write(f"$ {' '.join(map(str, argv))}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"{argv[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        raise ServerError(
            f"{' '.join(map(str, argv[:3]))} exited {proc.returncode}; log {log}:\n{log_tail(log)}"
        )


@dataclass
class Daemon:
    """A server process in its own session, with its log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _out: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )

    def alive(self) -> bool:
        # poll() reaps our own child, so a dead server is not mistaken for a
        # live one (PID 1 here reaps late, which fools kill -0).
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole group, as a crash would."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)
        self._close()

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Workers may outlive a master that exited; take the group down.
        self._signal_group(signal.SIGKILL)
        self._close()

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def wait_http(
    url: str, daemon: Daemon, *, timeout: float, accept: Sequence[int] = (200,)
) -> None:
    """Poll ``url`` until it answers one of ``accept``; every probe has its own time limit."""
    deadline = time.monotonic() + timeout
    # Loopback only: the environment's proxy settings must not be consulted.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    last = "no answer"
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise ServerError(
                f"{daemon.name} exited with {daemon.proc.returncode if daemon.proc else '?'}"
                f" before it was ready; log {daemon.log}:\n{log_tail(daemon.log)}"
            )
        try:
            with opener.open(url, timeout=2) as resp:
                if resp.status in accept:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            if exc.code in accept:
                return
            last = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ServerError(
        f"{daemon.name} not ready at {url} after {timeout:.0f}s ({last}); log {daemon.log}:\n"
        f"{log_tail(daemon.log)}"
    )
