"""TLS settings every HTTP backend shares: what ``verify``/``cacert`` may be, which CA
bundle variables count, and the one-line warnings for turning protection off.

``verify`` is ``true``, ``false`` or the path of an existing CA file or directory;
anything else is a ConfigError naming the key, never a silent "off". With ``verify:
true`` every backend honours the same variables, first set wins: ``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR`` (requests reads only the first
two, httpx only the last two; resolving them here makes the backends agree). A pinned
certificate (LXD's ``server_cert``) is never replaced by them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import threading
import urllib.parse
from typing import Any

from ._redact import excerpt, redact
from .errors import ConfigError

__all__ = ["CA_ENV_VARS", "ca_from_env", "check_verify", "warn_cleartext", "warn_insecure"]

CA_ENV_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")

log = logging.getLogger("imagehub.tls")
_warned: set[str] = set()
_warned_lock = threading.Lock()


def check_verify(verify: Any, *, cacert: Any = None, key: str = "verify",
                 cloud: str | None = None) -> bool | str:
    """``verify`` (and ``cacert``, which wins when set) as requests/httpx take them.

    Returns True, False or an existing path; raises ConfigError for anything else.
    """
    if cacert is not None:
        return _existing_path(cacert, "cacert", cloud)
    if verify is None or verify is True:
        return True
    if verify is False:
        return False
    if isinstance(verify, str) and verify.strip():
        return _existing_path(verify, key, cloud)
    raise ConfigError(f"must be true, false or the path of a CA bundle, got {excerpt(verify)}",
                      cloud=cloud, key=key)


def _existing_path(value: Any, key: str, cloud: str | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"must be the path of a CA file or directory, got {excerpt(value)}",
                          cloud=cloud, key=key)
    path = os.path.expanduser(value)
    if not (os.path.isfile(path) or os.path.isdir(path)):
        raise ConfigError(f"no CA file or directory at {excerpt(value)}", cloud=cloud, key=key,
                          hint="give true, false, or the path of an existing CA bundle")
    if os.path.isfile(path):
        _check_ca_file(path, key, cloud)
    elif not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(f"cannot read the CA directory {excerpt(value)}", cloud=cloud,
                          key=key, hint="check its permissions")
    return path


def _check_ca_file(path: str, key: str, cloud: str | None) -> None:
    """Load the file as OpenSSL will: an unreadable or non-PEM file is the user's to fix,
    not a 'cannot connect' or a raw ssl.SSLError at the first request."""
    try:
        ssl.create_default_context(cafile=path)
    except OSError as exc:  # ssl.SSLError is an OSError too
        problem = "holds no PEM certificate" if isinstance(exc, ssl.SSLError) \
            else f"cannot be read ({exc.strerror or exc})"
        raise ConfigError(f"the CA file {excerpt(path)} {problem}", cloud=cloud, key=key,
                          hint="give the path of a PEM CA bundle") from None


def ca_from_env() -> str | None:
    """The CA bundle the environment names, as every backend reads it (None: system CAs)."""
    for name in CA_ENV_VARS:
        value = os.environ.get(name)
        if value and (os.path.isfile(value) or os.path.isdir(value)):
            return value
    return None


def effective_verify(verify: bool | str) -> bool | str:
    """What to hand the HTTP library: an explicit choice, else the environment's bundle."""
    if verify is True:
        return ca_from_env() or True
    return verify


def _once(key: str) -> bool:
    with _warned_lock:
        if key in _warned:
            return False
        _warned.add(key)
        return True


def warn_insecure(where: str) -> None:
    """One warning line per target, the first time verification is turned off for it."""
    if _once(f"insecure:{where}"):
        log.warning("TLS verification is off for %s (verify: false): the server's identity "
                    "is not checked", redact(where))


def warn_cleartext(url: str, what: str = "credentials") -> None:
    """Warn (once per URL) when ``url`` is plain http to a host that is not loopback."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or _is_loopback(parts.hostname or ""):
        return
    shown = redact(f"{parts.scheme}://{parts.netloc}")
    if _once(f"cleartext:{shown}"):
        log.warning("%s is plain http: %s travel in clear text; use https", shown, what)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
