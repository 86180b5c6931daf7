"""What the CLI prints on stdout is redacted like its errors and logs: ``imagehub clouds``
shows what a backend resolved (an auth_url with userinfo, from imagehub's own file or
from OpenStack's clouds.yaml), and JSON/YAML output stays parseable after redaction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SECRETS = ("urlpw-7c1d9e", "osfilepw-5a2b8f", "lam-userpw-31fe", "appcred-s3cr3t-q")


def run(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagehub", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})


@pytest.mark.parametrize("fmt", ["table", "json", "yaml"])
def test_clouds_output_never_shows_url_userinfo_or_secrets(tmp_path: Path, fmt: str) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text(yaml.safe_dump({"clouds": {
        "inline": {"backend": "glance", "auth_type": "v3applicationcredential",
                   "auth": {"auth_url": f"https://someone:{SECRETS[0]}@keystone.invalid/v3",
                            "application_credential_id": "cred-id",
                            "application_credential_secret": SECRETS[3]}},
        "fromfile": {"backend": "glance", "cloud": "mine"},
        "lam": {"backend": "lambda", "api_key": "lambda-key-0a9b8c",
                "base_url": f"https://bob:{SECRETS[2]}@lambda.invalid/api"},
    }}))
    os_file = tmp_path / "os-clouds.yaml"
    os_file.write_text(yaml.safe_dump({"clouds": {"mine": {
        "auth": {"auth_url": f"https://alice:{SECRETS[1]}@keystone.invalid/v3",
                 "username": "alice", "password": "os-password-77", "project_name": "p",
                 "user_domain_name": "Default", "project_domain_name": "Default"}}}}))
    env = {"OS_CLIENT_CONFIG_FILE": str(os_file), "HOME": str(tmp_path)}
    proc = run(config, env, "--format", fmt, "clouds")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for secret in (*SECRETS, "os-password-77", "lambda-key-0a9b8c"):
        assert secret not in out, f"{secret} in:\n{out}"
    assert "keystone.invalid" in out or fmt == "table"  # the rest is still shown
    if fmt == "json":
        json.loads(proc.stdout)
    elif fmt == "yaml":
        yaml.safe_load(proc.stdout)
