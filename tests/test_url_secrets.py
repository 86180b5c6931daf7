"""Passwords and tokens inside URLs never reach errors, logs or `imagehub clouds`."""

from __future__ import annotations

import json
import os
import pickle
import socket
from pathlib import Path

import pytest
import yaml

import imagehub
from imagehub._redact import MASK, redact
from imagehub.cli import main

SECRETS = ("hunter2", "sekrit1", "sekrit3")


@pytest.mark.parametrize(("text", "shown"), [
    ("https://admin:hunter2@k.example/v3", f"https://{MASK}@k.example/v3"),
    ("cannot reach http://u:p%40ss@h:5000/x.", f"cannot reach http://{MASK}@h:5000/x."),
    ("https://k/v3?token=abc&region=r1", f"https://k/v3?token={MASK}&region=r1"),
    ("https://k/v3?X-Amz-Signature=abc;Password=x",
     f"https://k/v3?X-Amz-Signature={MASK};Password={MASK}"),
    ("https://g/v2/images?sort_key=name&limit=5", "https://g/v2/images?sort_key=name&limit=5"),
    ("no url here, key=value", "no url here, key=value"),
])
def test_url_secrets_are_masked(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_errors_mask_url_secrets_and_still_pickle() -> None:
    error = imagehub.ServerUnreachable("cannot connect to https://a:hunter2@k/v3",
                                       server_message="GET https://k/v3?token=sekrit1 failed")
    for text in (str(error), repr(error), str(pickle.loads(pickle.dumps(error)))):
        assert "hunter2" not in text and "sekrit1" not in text


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    port = _closed_port()
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump({"clouds": {"a": {
        "auth": {"auth_url": f"http://admin:hunter2@127.0.0.1:{port}/v3?token=sekrit1",
                 "username": "alice", "password": "pw", "project_name": "demo",
                 "user_domain_name": "Default", "project_domain_name": "Default"},
        "image_endpoint_override": f"http://u:sekrit3@127.0.0.1:{port}",
        "region_name": "R"}}}))
    for key in [k for k in os.environ if k.startswith("OS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    mine = tmp_path / "imagehub.yaml"
    mine.write_text("clouds:\n  os: {backend: glance, cloud: a, timeout: 5}\n")
    return mine


def test_clouds_shows_urls_without_their_secrets(config: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--config", str(config), "--format", "json", "clouds"])
    out = capsys.readouterr().out
    row = next(r for r in json.loads(out) if r["name"] == "os")
    assert row["resolved"]["auth_url"].startswith(f"http://{MASK}@127.0.0.1:")
    assert row["resolved"]["endpoint_override"].startswith(f"http://{MASK}@127.0.0.1:")
    for secret in SECRETS:
        assert secret not in out


@pytest.mark.parametrize("debug", [False, True])
def test_an_unreachable_keystone_is_named_without_secrets(
        config: Path, capsys: pytest.CaptureFixture[str], debug: bool) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(config), *(["--debug"] if debug else []), "-c", "os", "list"])
    assert exc.value.code == 1
    captured = capsys.readouterr()
    assert "imagehub: error:" in captured.err and "127.0.0.1" in captured.err
    for secret in SECRETS:
        assert secret not in captured.err + captured.out
