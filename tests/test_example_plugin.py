"""A plugin from outside the repo registers, shows in `imagehub backends`, passes the kit.

The package in docs/example-plugin is pip-installed into the running environment (as a
third party's users would install it), then its own test suite (the conformance kit,
subclassed) runs in a fresh process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "docs" / "example-plugin"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Install from a copy so no build artefacts land in the repo.
    src = tmp_path_factory.mktemp("plugin") / "example-plugin"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", str(src)], check=True)
    return src


def test_plugin_listed_by_cli(installed_plugin: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "imagehub", "--format", "json", "backends"],
                         capture_output=True, text=True, check=True)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["folder"]["available"] is True
    assert rows["folder"]["distribution"] == "imagehub-folder"
    assert "aliases" not in rows["folder"]["capabilities"]


def test_plugin_passes_the_conformance_kit(installed_plugin: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         str(installed_plugin / "tests")],
        capture_output=True, text=True, cwd=installed_plugin)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
    # Capability-gated tests skip with a reason rather than passing silently.
    assert "does not declare ALIASES" in result.stdout
