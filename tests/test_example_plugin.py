"""A plugin from outside the repo registers, shows in `imagehub backends`, passes the kit.

The package in docs/example-plugin is pip-installed into the running environment (as a
third party's users would install it), then its own test suite (the conformance kit,
subclassed) runs in a fresh process.
"""

from __future__ import annotations

import json
import os
import re
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
    # Capability-gated tests skip with a reason rather than passing silently, and the
    # sharing flow, paging and concurrency checks ran rather than skipped.
    assert "does not declare ALIASES" in result.stdout
    assert "does not declare SHARE" not in result.stdout


def test_walkthrough_backend_passes_the_kit(tmp_path: Path) -> None:
    """The backend docs/writing-backends.md builds, copied from the page as it stands,
    passes the whole kit: the walkthrough is followable without imagehub's source."""
    page = (PLUGIN.parent / "writing-backends.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    backend = next(b for b in blocks if b.startswith("# imagehub_shelf/__init__.py"))
    suite = next(b for b in blocks if b.startswith("# tests/test_conformance.py"))
    (tmp_path / "imagehub_shelf").mkdir()
    (tmp_path / "imagehub_shelf" / "__init__.py").write_text(backend)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_conformance.py").write_text(suite)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         str(tmp_path / "tests")],
        capture_output=True, text=True, cwd=tmp_path, env={**env, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
