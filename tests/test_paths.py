"""Per-user locations come from one XDG helper, with the specification's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagehub.backends.local import default_path
from imagehub.backends.lxd.connection import default_client_cert_dir
from imagehub.config import default_config_path
from imagehub.paths import cache_home, config_home, data_home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def test_defaults_under_home(home: Path) -> None:
    assert config_home() == home / ".config"
    assert data_home() == home / ".local" / "share"
    assert cache_home() == home / ".cache"
    assert default_config_path() == home / ".config" / "imagehub" / "clouds.yaml"
    assert default_path() == home / ".local" / "share" / "imagehub" / "local"
    assert default_client_cert_dir() == home / ".config" / "imagehub" / "lxd"


def test_absolute_variables_win(home: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_config_path() == tmp_path / "cfg" / "imagehub" / "clouds.yaml"
    assert default_path() == tmp_path / "data" / "imagehub" / "local"
    assert cache_home() == tmp_path / "cache"


@pytest.mark.parametrize("value", ["", "relative/dir", "./x"])
def test_empty_or_relative_variables_are_ignored(home: Path, value: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The specification calls relative paths invalid; following one would put the store
    # wherever the current directory happens to be.
    monkeypatch.setenv("XDG_DATA_HOME", value)
    monkeypatch.setenv("XDG_CONFIG_HOME", value)
    assert default_path() == home / ".local" / "share" / "imagehub" / "local"
    assert default_config_path() == home / ".config" / "imagehub" / "clouds.yaml"
