"""Values no configuration means: numbers too large for Python or for the platform's
timers, nesting too deep for the parser, retry counts that amount to a hang. Each is a
ConfigError naming the key, refused before any request, never an 'unexpected' error or a
traceback from a worker thread."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagehub.config import load_config
from imagehub.errors import ConfigError
from tests.servers.hostile import HostileServer

KEY = "limits-secret-key-5e1"


def clouds(server_url: str) -> dict[str, dict[str, Any]]:
    # Every backend that takes a timeout, each pointed at a server that never answers, so
    # a value that slipped through would hang or overflow instead of failing fast.
    return {
        "lam": {"backend": "lambda", "api_key": KEY, "base_url": server_url},
        "gl": {"backend": "glance", "auth_type": "none", "endpoint_override": server_url},
        "lxd": {"backend": "lxd", "endpoint": server_url.replace("http:", "https:")},
    }


@pytest.fixture
def silent() -> Any:
    server = HostileServer()
    server.mode = "silent"
    yield server
    server.close()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(text)
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagehub", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cloud", ["lam", "gl", "lxd"])
@pytest.mark.parametrize("timeout", [1e10, 1e12, 10**30, 10**400, 7 * 24 * 3600 + 1])
def test_huge_timeouts_are_config_errors(tmp_path: Path, silent: HostileServer, cloud: str,
                                         timeout: float) -> None:
    body = {**clouds(silent.url)[cloud], "timeout": timeout}
    config = load_config(write(tmp_path, yaml.safe_dump({"clouds": {cloud: body}})))
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        config.connect(cloud)
    assert (info.value.cloud, info.value.key) == (cloud, "timeout")
    assert time.monotonic() - started < 30  # refused, not waited out


@pytest.mark.parametrize("cloud,key", [("lam", "max_retries"), ("gl", "retries")])
@pytest.mark.parametrize("value", [101, 10**400, -1])
def test_retry_counts_that_mean_a_hang_are_config_errors(
        tmp_path: Path, silent: HostileServer, cloud: str, key: str, value: int) -> None:
    body = {**clouds(silent.url)[cloud], key: value}
    path = write(tmp_path, yaml.safe_dump({"clouds": {cloud: body}}))
    proc = cli(path, "-c", cloud, "list")
    assert proc.returncode != 0
    assert f"key '{key}'" in proc.stderr
    assert "unexpected" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_week_is_still_a_valid_timeout(tmp_path: Path, silent: HostileServer) -> None:
    body = {**clouds(silent.url)["lam"], "timeout": 7 * 24 * 3600}
    config = load_config(write(tmp_path, yaml.safe_dump({"clouds": {"lam": body}})))
    config.connect("lam").close()


@pytest.mark.parametrize("text,words", [
    # An integer past Python's digit limit: PyYAML's int() raises ValueError.
    ("clouds:\n  a:\n    backend: lambda\n    timeout: " + "9" * 5000 + "\n", "cannot be read"),
    # A date that does not exist: PyYAML's datetime() raises ValueError.
    ("clouds:\n  a:\n    backend: lambda\n    when: 2024-13-45\n", "cannot be read"),
    # Nesting past the recursion limit.
    ("clouds:\n  a:\n    backend: lambda\n    x: " + "[" * 20000 + "]" * 20000 + "\n",
     "nested too deeply"),
])
def test_unreadable_yaml_values_are_config_errors(tmp_path: Path, text: str,
                                                  words: str) -> None:
    path = write(tmp_path, text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert words in str(info.value)
    assert info.value.path == str(path)
    assert time.monotonic() - started < 30
    proc = cli(path, "-c", "a", "list")
    assert proc.returncode != 0
    assert proc.stderr.startswith("imagehub: error:") and "unexpected" not in proc.stderr


def test_huge_integer_for_a_float_option_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "clouds:\n  a:\n    backend: lambda\n    api_key: abcdefgh\n"
                 "    timeout: 1" + "0" * 400 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path).connect("a")
    assert (info.value.cloud, info.value.key) == ("a", "timeout")
    assert len(str(info.value)) < 300  # the 401-digit value is cut to an excerpt


def test_openstack_client_file_nested_too_deeply_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagehub.backends.glance.clouds import OpenStackClientConfig
    bad = write(tmp_path, "clouds: " + "[" * 20000 + "]" * 20000 + "\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(bad))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        OpenStackClientConfig()
    assert info.value.path == str(bad)
