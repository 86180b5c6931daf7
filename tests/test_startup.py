"""What `import imagehub` and the CLI's start-up load: nothing a call has not asked for.

Each check runs a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import imagehub

# Third-party packages that only a backend, a clouds file, a retry or a move needs.
HEAVY = ("yaml", "tenacity", "requests", "urllib3", "keystoneauth1", "pylxd", "httpx",
         "tqdm", "click")


def _loaded(code: str, tmp_path: Path) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter with no clouds file; report what it loaded."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("IMAGEHUB_CONFIG", None)
    report = ("import sys, json\n"
              "print('\\n' + json.dumps({"
              "'imagehub': sorted(m for m in sys.modules if m.split('.')[0] == 'imagehub'), "
              "'third': sorted({m.split('.')[0] for m in sys.modules}), "
              "'metadata': ['importlib.metadata'] if 'importlib.metadata' in sys.modules "
              "else []}))\n")
    done = subprocess.run([sys.executable, "-c", code + "\n" + report], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out: dict[str, list[str]] = json.loads(done.stdout.splitlines()[-1])
    return out


def test_import_imagehub_loads_only_the_package(tmp_path: Path) -> None:
    loaded = _loaded("import imagehub", tmp_path)
    assert loaded["imagehub"] == ["imagehub"]
    assert [m for m in HEAVY if m in loaded["third"]] == []
    assert loaded["metadata"] == []  # no entry-point scan


def test_a_public_name_loads_its_module_and_no_more(tmp_path: Path) -> None:
    loaded = _loaded("import imagehub\nimagehub.Image\nimagehub.ImageHubError", tmp_path)
    assert "imagehub.models" in loaded["imagehub"]
    assert not [m for m in loaded["imagehub"]
                if m.startswith(("imagehub.migration", "imagehub.config", "imagehub.registry",
                                 "imagehub.backends", "imagehub.cli"))]
    assert [m for m in HEAVY if m in loaded["third"]] == []


def test_connect_to_the_default_store_reads_no_yaml_and_loads_one_backend(
        tmp_path: Path) -> None:
    loaded = _loaded("import imagehub\nimagehub.connect().close()", tmp_path)
    backends = [m for m in loaded["imagehub"] if m.startswith("imagehub.backends.")]
    assert backends == ["imagehub.backends.local"]
    assert [m for m in HEAVY if m in loaded["third"]] == []
    assert not [m for m in loaded["imagehub"] if m.startswith("imagehub.migration")]


def test_version_imports_no_backend_yaml_or_http(tmp_path: Path) -> None:
    loaded = _loaded("from imagehub.cli import main\n"
                     "try:\n    main(['--version'])\nexcept SystemExit as exc:\n"
                     "    assert exc.code == 0, exc.code\n", tmp_path)
    assert [m for m in ("yaml", "requests", "urllib3", "keystoneauth1", "pylxd", "httpx",
                        "tenacity") if m in loaded["third"]] == []
    assert loaded["metadata"] == []
    assert not [m for m in loaded["imagehub"]
                if m.startswith(("imagehub.backends", "imagehub.config", "imagehub.manager",
                                 "imagehub.migration", "imagehub.registry"))]


def test_version_prints_the_package_version() -> None:
    done = subprocess.run([sys.executable, "-m", "imagehub", "--version"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == f"imagehub, version {imagehub.__version__}"


def test_local_list_loads_no_other_backend_nor_migration(tmp_path: Path) -> None:
    loaded = _loaded("from imagehub.cli import main\n"
                     "try:\n    main(['-c', 'local', 'list'])\nexcept SystemExit as exc:\n"
                     "    assert exc.code == 0, exc.code\n", tmp_path)
    assert [m for m in loaded["imagehub"] if m.startswith("imagehub.backends.")] == [
        "imagehub.backends.local"]
    assert not [m for m in loaded["imagehub"] if m.startswith("imagehub.migration")]
    assert [m for m in ("yaml", "requests", "keystoneauth1", "pylxd", "httpx", "tenacity")
            if m in loaded["third"]] == []


def test_a_clouds_file_still_reads_and_yaml_output_still_prints(tmp_path: Path) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  here:\n    backend: local\n    path: {tmp_path / 's'}\n"
                      "default: here\n")
    done = subprocess.run([sys.executable, "-m", "imagehub", "--config", str(config),
                           "--format", "yaml", "clouds"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "here" in done.stdout


@pytest.mark.parametrize("name", sorted(imagehub.__all__))
def test_every_public_name_is_its_modules_object(name: str) -> None:
    import importlib

    value = getattr(imagehub, name)
    home = imagehub._HOMES[name]
    assert value is getattr(importlib.import_module(f"imagehub.{home}"), name)


def test_functions_named_like_their_submodules_stay_functions(tmp_path: Path) -> None:
    code = ("import imagehub, imagehub.migration, imagehub.connect, types\n"
            "from imagehub.migration import plan\n"
            "assert callable(imagehub.migrate) and not isinstance(imagehub.migrate, "
            "types.ModuleType)\n"
            "assert not isinstance(imagehub.connect, types.ModuleType)\n"
            "from imagehub import *\n"
            "assert not isinstance(migrate, types.ModuleType)\n")
    _loaded(code, tmp_path)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        imagehub.no_such_name  # noqa: B018
    assert not hasattr(imagehub, "no_such_name")
