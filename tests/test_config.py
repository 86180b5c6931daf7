"""The clouds file: discovery order, validation errors naming file/cloud/key, env secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagehub import ConfigError, connect, load_config
from imagehub.backends.local import LocalManager


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(text)
    return path


def test_no_file_means_local_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGEHUB_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    cfg = load_config()
    assert cfg.default == "local" and list(cfg.clouds) == ["local"]
    manager = connect()
    assert isinstance(manager, LocalManager)
    assert manager.root == tmp_path / "data" / "imagehub" / "local"


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "imagehub").mkdir(parents=True)
    (xdg / "imagehub" / "clouds.yaml").write_text("clouds: {from-xdg: {backend: local}}\n")
    env_file = write(tmp_path, "clouds: {from-env: {backend: local}}\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.delenv("IMAGEHUB_CONFIG", raising=False)
    assert "from-xdg" in load_config().clouds
    monkeypatch.setenv("IMAGEHUB_CONFIG", str(env_file))
    assert "from-env" in load_config().clouds
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("clouds: {from-flag: {backend: local}}\n")
    assert "from-flag" in load_config(explicit).clouds


@pytest.mark.parametrize(("text", "needles"), [
    ("clouds: {lab: {backend: local, colour: blue}}", ["'lab'", "'colour'", "unknown key"]),
    ("clouds: {lab: {backend: local, path: 42}}", ["'lab'", "'path'", "expected str"]),
    ("clouds: {lab: {path: /x}}", ["'lab'", "'backend'"]),
    ("clouds: {lab: {backend: nope}}", ["'lab'", "'backend'", "no backend named 'nope'"]),
    ("clouds: [1, 2]", ["'clouds'"]),
    ("colour: blue", ["'colour'"]),
    ("clouds: {lab: {backend: local}\n", ["not valid YAML"]),
    ("default: nowhere", ["'default'"]),
])
def test_bad_config_names_file_cloud_key(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path).connect("lab")
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")


def test_unknown_cloud_lists_configured(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "clouds: {lab: {backend: local}}"))
    with pytest.raises(ConfigError, match="configured clouds: lab, local"):
        cfg.connect("nope")


def test_secret_from_env_and_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from imagehub.config import CloudConfig
    from imagehub.manager import ImageManager, Option, Page

    class Secretive(ImageManager):
        name = "secretive"
        options = {"token": Option(str, required=True, secret=True)}

        def _list(self, limit, marker, filters):  # type: ignore[no-untyped-def]
            return Page([])

    cloud = CloudConfig("lab", "secretive", {"token_env": "LAB_TOKEN"}, path="f.yaml")
    with pytest.raises(ConfigError, match="'LAB_TOKEN' is not set"):
        cloud.resolved_options(Secretive)
    monkeypatch.setenv("LAB_TOKEN", "s3cr3t-value")
    assert cloud.resolved_options(Secretive) == {"token": "s3cr3t-value"}
    bad = CloudConfig("lab", "secretive", {"token": 12345}, path="f.yaml")
    with pytest.raises(ConfigError) as info:
        bad.resolved_options(Secretive)
    assert "12345" not in str(info.value)
    inline = CloudConfig("lab", "secretive", {"token": "s3cr3t-value"})
    assert "s3cr3t" not in repr(inline)


@pytest.mark.parametrize("name", ["sha256", "MD5", "sha512"])
def test_a_cloud_may_not_take_a_checksum_algorithms_name(tmp_path: Path, name: str) -> None:
    # With a cloud called sha256, "delete sha256:ab12..." would act in that cloud.
    path = tmp_path / "clouds.yaml"
    path.write_text(f"clouds:\n  {name}: {{backend: local, path: {tmp_path / 's'}}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.cloud == name
