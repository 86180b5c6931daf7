"""Connecting to LXD: the unix socket, or HTTPS with a client certificate and a pinned
server certificate, optionally taken from the user's ``lxc`` remotes.

Pinning has to survive ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``: requests lets those
variables override a session's ``verify`` (even a pinned path, even ``False``) whenever
``trust_env`` is on, and pylxd then fails with "Fingerprints did not match". Every HTTPS
session built here has ``trust_env = False`` and carries its own ``verify`` and ``cert``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pylxd  # type: ignore[import-untyped]
import requests
from pylxd import exceptions as pylxd_exceptions

from imagehub import _http_deadline, _tls
from imagehub.discovery import lxc_conf_dir, lxc_remotes, lxd_socket
from imagehub.errors import AuthenticationError, ConfigError, ImageHubError
from imagehub.paths import config_home

from .errors import BACKEND, TRUST_HINT, from_transport, lxd_errors

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one LXD server."""

    url: str  # "unix:<path>" or "https://host:port"
    client_cert: Path | None = None
    client_key: Path | None = None
    server_cert: Path | None = None
    project: str | None = None

    @property
    def is_socket(self) -> bool:
        return self.url.startswith("unix:")

    @property
    def socket_path(self) -> str:
        return self.url[len("unix:"):]


def default_socket() -> str:
    """``$LXD_DIR/unix.socket``, else the snap's or the distribution package's socket."""
    return lxd_socket()


def from_lxc_remote(name: str, conf_dir: Path | None = None) -> Endpoint:
    """An Endpoint for ``lxc`` remote ``name``: its address, client cert and server cert."""
    base = conf_dir or lxc_conf_dir()
    config_path = base / "config.yml"
    try:
        conf_file, remotes = lxc_remotes(base)
    except ImageHubError as exc:
        raise ConfigError(str(exc), key="remote") from None
    if name not in remotes:
        known = ", ".join(sorted(remotes))
        where = (f"no lxc client configuration at {str(config_path)!r}" if conf_file is None
                 else f"lxc has no remote named {name!r}")
        raise ConfigError(f"{where} (remotes: {known})", key="remote",
                          hint="add the remote with 'lxc remote add', or set 'endpoint'")
    remote = remotes[name] or {}
    protocol = remote.get("protocol") or "lxd"
    if protocol != "lxd":
        raise ConfigError(
            f"lxc remote {name!r} is a {protocol} image server, not an LXD server",
            key="remote", hint="use create_from_simplestreams() to pull from it")
    addr = str(remote.get("addr") or "")
    project = remote.get("project") or None
    if addr.startswith("unix:"):
        path = addr[len("unix:"):].lstrip("/")
        return Endpoint(f"unix:{'/' + path if path else default_socket()}", project=project)
    server_cert = base / "servercerts" / f"{name}.crt"
    # lxc's folder is lxc's: without a key pair there, ours is used (and made) in
    # imagehub's own folder instead of writing one where lxc would later find it.
    certs = base if (base / "client.crt").exists() or (base / "client.key").exists() \
        else default_client_cert_dir()
    return Endpoint(
        addr.rstrip("/"),
        client_cert=certs / "client.crt",
        client_key=certs / "client.key",
        server_cert=server_cert if server_cert.exists() else None,
        project=project,
    )


def endpoint_from_options(
    endpoint: str | None,
    *,
    client_cert: str | os.PathLike[str] | None = None,
    client_key: str | os.PathLike[str] | None = None,
    server_cert: str | os.PathLike[str] | None = None,
    remote: str | None = None,
    project: str | None = None,
) -> Endpoint:
    if remote and endpoint:
        raise ConfigError("set either 'remote' or 'endpoint', not both", key="remote")
    # Paths in the clouds file may start with ~ (as in ~/.config/lxc/client.crt).
    client_cert, client_key, server_cert = (
        os.path.expanduser(p) if p else None for p in (client_cert, client_key, server_cert))
    if remote:
        found = from_lxc_remote(remote)
        return Endpoint(
            found.url,
            client_cert=Path(client_cert) if client_cert else found.client_cert,
            client_key=Path(client_key) if client_key else found.client_key,
            server_cert=Path(server_cert) if server_cert else found.server_cert,
            project=project or found.project,
        )
    url = endpoint or default_socket()
    if url.startswith("http://"):
        raise ConfigError("LXD serves its API over HTTPS only", key="endpoint",
                          hint="use https://host:8443 or a unix socket path")
    if not url.startswith("https://"):
        path = url[len("unix:"):] if url.startswith("unix:") else url
        return Endpoint(f"unix:{os.path.expanduser(path)}", project=project)
    if bool(client_cert) != bool(client_key):
        raise ConfigError("'client_cert' and 'client_key' go together", key="client_cert")
    conf = default_client_cert_dir()
    return Endpoint(
        url.rstrip("/"),
        client_cert=Path(client_cert) if client_cert else conf / "client.crt",
        client_key=Path(client_key) if client_key else conf / "client.key",
        server_cert=Path(server_cert) if server_cert else None,
        project=project,
    )


def default_client_cert_dir() -> Path:
    return config_home() / "imagehub" / "lxd"


def ensure_client_cert(cert: Path, key: Path) -> None:
    """Create a client key pair if neither file exists, as ``lxc`` does on first use."""
    if cert.exists() and key.exists():
        return
    if cert.exists() or key.exists():
        raise ConfigError(f"only one of {str(cert)!r} and {str(key)!r} exists",
                          key="client_cert", hint="give both files, or neither to create them")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    private = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imagehub"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"imagehub@{socket.gethostname()}"),
    ])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(private, hashes.SHA384())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    # Writing into lxc's own folder is said out loud: lxc will use that identity too.
    in_lxc = lxc_conf_dir().resolve() in (cert.parent.resolve(), *cert.parent.resolve().parents)
    (_log.warning if in_lxc else _log.debug)(
        "created a new LXD client certificate %s (and its key %s)%s; the server must trust "
        "it: 'lxc config trust add' there, or set trust_password", cert, key,
        " in lxc's configuration folder" if in_lxc else "")


def https_session(url: str, *, client_cert: Path | None, client_key: Path | None,
                  server_cert: Path | None) -> requests.Session:
    """A requests session whose TLS settings no environment variable can override."""
    verify: str | bool
    if server_cert is not None:
        if not server_cert.exists():
            raise ConfigError(f"server certificate {str(server_cert)!r} does not exist",
                              key="server_cert")
        verify = str(server_cert)
    else:
        # No pin: verify against CAs, honouring the bundle variables every backend
        # honours (the pinned branch above never reads them).
        verify = _tls.effective_verify(True)
    cert = (str(client_cert), str(client_key)) if client_cert and client_key else None
    session: requests.Session = pylxd.client.get_session_for_url(url, verify=verify, cert=cert)
    session.trust_env = False
    # A daemon dripping its answers must still be timed out (exports are streamed, so
    # their bodies are bounded by inactivity only).
    _http_deadline.mount(session)
    return session


def unix_session(path: str) -> requests.Session:
    """pylxd's session for a unix socket, with the deadlines HTTPS sessions get: a daemon
    dripping its answer over the socket is timed out too, not only a silent one."""
    url = pylxd.client.DEFAULT_SCHEME + urllib.parse.quote(path, safe="")
    session: requests.Session = pylxd.client.get_session_for_url(url)
    adapter_cls = getattr(pylxd.client, "_UnixAdapter", None)
    pool_cls = getattr(pylxd.client, "_UnixSocketHTTPConnectionPool", None)
    conn_cls = getattr(pylxd.client, "_UnixSocketHTTPConnection", None)
    if adapter_cls is None or pool_cls is None or conn_cls is None:
        return session  # another pylxd layout: the per-read timeout still holds
    connection = _http_deadline.with_deadline(conn_cls)

    class Pool(pool_cls):  # type: ignore[misc, valid-type]
        def _new_conn(self) -> Any:
            return connection(self.socket_path)

    class Adapter(_http_deadline.DeadlineMixin, adapter_cls):  # type: ignore[misc, valid-type]
        def get_connection(self, url: str, proxies: Any = None) -> Any:
            with self.pools.lock:
                pool = self.pools.get(url)
                if pool is None:
                    pool = self.pools[url] = Pool(url)
            return pool

        def get_connection_with_tls_context(self, request: Any, verify: Any,
                                            proxies: Any = None, cert: Any = None) -> Any:
            return self.get_connection(request.url)

    session.mount(pylxd.client.DEFAULT_SCHEME, Adapter())
    return session


def connect(endpoint: Endpoint, *, trust_password: str | None = None,
            timeout: float | None = None) -> Any:
    """A pylxd Client for ``endpoint``; with ``trust_password`` the client gets trusted."""
    if endpoint.is_socket:
        path = endpoint.socket_path
        if not os.path.exists(path):
            raise from_transport(ConnectionError(f"no LXD socket at {path}"),
                                 what="connecting to LXD")
        with lxd_errors("connecting to LXD"):
            return pylxd.Client(endpoint=path, project=endpoint.project, timeout=timeout,
                                session=unix_session(path))
    if endpoint.client_cert is not None and endpoint.client_key is not None:
        ensure_client_cert(endpoint.client_cert, endpoint.client_key)
    session = https_session(endpoint.url, client_cert=endpoint.client_cert,
                            client_key=endpoint.client_key, server_cert=endpoint.server_cert)
    with lxd_errors(f"connecting to {endpoint.url}"):
        client = pylxd.Client(endpoint=endpoint.url, project=endpoint.project,
                              timeout=timeout, session=session)
    if trust_password and not client.trusted:
        trust(client, trust_password)
    return client


def trust(client: Any, password: str) -> None:
    """Have the server trust this client's certificate, with its trust password.

    Without a ``certificate`` field LXD trusts the certificate this TLS connection
    presented, so this works the same with every pylxd version.
    """
    try:
        client.api.certificates.post(json={"type": "client", "password": password})
        client.host_info = client.api.get().json()["metadata"]
    except pylxd_exceptions.LXDAPIException as exc:
        raise AuthenticationError(
            "the LXD server refused the trust password", backend=BACKEND,
            server_message=str(exc), status_code=exc.response.status_code,
            hint="check 'trust_password' (core.trust_password on the server)") from exc
    except requests.exceptions.RequestException as exc:
        raise from_transport(exc, what="trusting the client") from exc
    if not client.trusted:
        raise AuthenticationError("the LXD server still does not trust this client",
                                  backend=BACKEND, hint=TRUST_HINT)
