"""docs/guide.md runs: every python block, in order, against the real servers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import imagehub
from imagehub.backends.lxd import LXDManager
from tests.servers.lambda_api import LambdaAPIServer
from tests.servers.lxd import LXDDaemon
from tests.servers.lxd_images import unified_image
from tests.servers.openstack import OpenStackCloud
from tests.servers.simplestreams import TLSFiles

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture
def guide_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lxd_daemon: LXDDaemon,
              lxd_daemon2: LXDDaemon, lxd_client_tls: TLSFiles,
              openstack_cloud: OpenStackCloud) -> Iterator[dict[str, object]]:
    clouds_yaml = tmp_path / "clouds.yaml"
    clouds_yaml.write_text(yaml.safe_dump(openstack_cloud.clouds_yaml()))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
    monkeypatch.delenv("OS_CLOUD", raising=False)

    def lxd(daemon: LXDDaemon) -> dict[str, str]:
        # Trust the client certificate once, as `lxc remote add` would.
        LXDManager(endpoint=daemon.url, client_cert=str(lxd_client_tls.cert),
                   client_key=str(lxd_client_tls.key), server_cert=str(daemon.server_cert),
                   trust_password=daemon.trust_password).close()
        return {"backend": "lxd", "endpoint": daemon.url,
                "client_cert": str(lxd_client_tls.cert), "client_key": str(lxd_client_tls.key),
                "server_cert": str(daemon.server_cert)}

    with LambdaAPIServer() as api:
        monkeypatch.setenv("LAMBDA_API_KEY", api.api_key)
        config = tmp_path / "imagehub.yaml"
        config.write_text(yaml.safe_dump({"clouds": {
            "lab-lxd": lxd(lxd_daemon),
            "lab-lxd2": lxd(lxd_daemon2),
            "os-alpha": {"backend": "glance", "cloud": "alpha"},
            "os-beta": {"backend": "glance", "cloud": "beta"},
            "lambda": {"backend": "lambda", "base_url": api.url},
        }}))
        monkeypatch.setenv("IMAGEHUB_CONFIG", str(config))
        monkeypatch.chdir(tmp_path)
        yield {
            "tarball": str(unified_image(tmp_path).paths[0]),
            "beta_project": openstack_cloud.project("beta").project_id,
        }


def test_guide_examples_run(guide_env: dict[str, object],
                            capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(GUIDE.read_text())
    assert len(blocks) == 6
    namespace: dict[str, object] = dict(guide_env)
    try:
        for number, block in enumerate(blocks, 1):
            try:
                exec(compile(block, f"{GUIDE.name} block {number}", "exec"), namespace)
            except Exception as exc:  # noqa: BLE001 - report which block broke
                pytest.fail(f"guide block {number} failed: {type(exc).__name__}: {exc}\n"
                            f"{block}")
    finally:
        # The guide reads as a script that ends with the process; here the process goes
        # on, so close what it connected (open connections are ResourceWarnings).
        for value in namespace.values():
            if isinstance(value, imagehub.ImageManager | imagehub.Hub):
                value.close()
    out = capsys.readouterr().out
    assert "guide-base" in out                         # listed, then aliased and exported
    assert (Path.cwd() / "guide-base.tar.gz").exists()
    assert "[(True, 'pending')]" in out                # shared with beta, pending
    assert "lambda" in out                             # the latest image's cloud
