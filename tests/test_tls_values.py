"""``verify`` is true, false or the path of a CA bundle OpenSSL can load, the same on
every HTTP backend: a string is never a boolean in disguise ("False" must not turn TLS
off on one backend and be refused on another), and a file that holds no certificate is a
ConfigError naming the key, not a raw SSLError or a 'cannot connect' at the first request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagehub.config import parse_config
from imagehub.errors import ConfigError

BACKENDS: dict[str, dict[str, Any]] = {
    "lambda": {"backend": "lambda", "api_key": "tls-values-key-1",
               "base_url": "https://127.0.0.1:9"},
    "glance": {"backend": "glance", "auth_type": "none",
               "endpoint_override": "https://127.0.0.1:9"},
}


def connect(backend: str, **extra: Any) -> Any:
    config = parse_config({"clouds": {"c": {**BACKENDS[backend], **extra}}})
    return config.connect("c")


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("value", ["False", "false", "no", "0", "off", "yes", "True", "1"])
def test_boolean_looking_strings_are_refused(backend: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        connect(backend, verify=value)
    assert (info.value.cloud, info.value.key) == ("c", "verify")


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_file_that_is_no_ca_bundle_is_refused(backend: str, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    with pytest.raises(ConfigError, match="no PEM certificate") as info:
        connect(backend, verify=str(not_pem))
    assert info.value.key == "verify"


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_an_empty_file_is_refused(backend: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError):
        connect(backend, verify=str(empty))


def test_glance_cacert_that_is_no_ca_bundle_is_refused(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_bytes(b"\x00\x01binary")
    with pytest.raises(ConfigError, match="no PEM certificate") as info:
        connect("glance", cacert=str(not_pem))
    assert info.value.key == "cacert"
    with pytest.raises(ConfigError) as info:
        connect("glance", cacert="False")
    assert info.value.key == "cacert"
