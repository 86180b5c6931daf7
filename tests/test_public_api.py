"""The public surface: __all__ is exact, and every declared entry point loads."""

from __future__ import annotations

import configparser
import inspect
from pathlib import Path

import pytest

import imagehub
from imagehub import ImageManager, get_backend

ROOT = Path(__file__).resolve().parents[1]


def test_all_matches_public_names() -> None:
    # Public names load on first use (module __getattr__): dir() lists them, and each
    # must resolve to something other than a module.
    public = {n for n in dir(imagehub)
              if not n.startswith("_") and not inspect.ismodule(getattr(imagehub, n))}
    assert set(imagehub.__all__) == public
    assert len(imagehub.__all__) == len(set(imagehub.__all__))
    assert set(imagehub._HOMES) == set(imagehub.__all__)


def test_py_typed_is_shipped() -> None:
    assert (Path(imagehub.__file__).parent / "py.typed").exists()


def _declared_backends() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["imagehub.backends"].strip().splitlines()
    return [line.split("=", 1)[0].strip() for line in lines]


@pytest.mark.parametrize("name", _declared_backends())
def test_declared_entry_point_loads_and_subclasses(name: str) -> None:
    cls = get_backend(name)
    assert issubclass(cls, ImageManager)
    assert cls.name in (name, "glance")  # 'openstack' is an alias of glance


def test_backends_package_is_not_top_level(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import importlib.util as u, imagehub.backends as b; "
            "print(u.find_spec('backends') is None, b.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.split() == ["True", "imagehub.backends"]


@pytest.mark.parametrize(("module", "name"), [
    ("imagehub.streams", "CHUNK_SIZE"), ("imagehub.streams", "Hasher"),
    ("imagehub.streams", "StreamPart"), ("imagehub.operations", "FunctionOperation"),
    ("imagehub.manager", "CreateSpec"), ("imagehub.manager", "resolve_ref"),
    ("imagehub.models", "parse_datetime"), ("imagehub.models", "normalize_architecture"),
    ("imagehub.config", "CloudConfig"),
])
def test_plumbing_lives_in_its_module_not_the_top_level(module: str, name: str) -> None:
    import importlib

    assert hasattr(importlib.import_module(module), name)
    assert name not in imagehub.__all__ and not hasattr(imagehub, name)


def test_version_has_one_source() -> None:
    from importlib import metadata

    assert metadata.version("imagehub") == imagehub.__version__
    assert "version = attr: imagehub.__version__" in (ROOT / "setup.cfg").read_text()


def test_the_core_names_no_backend_private_keys() -> None:
    """Backend-specific record keys and vocabulary are the backend's declaration
    (reserved_properties, image_kind, split_disk_format ...), never the core's. Only the
    registry's install-hint table names built-in backends."""
    import ast

    backend_words = {"lxd", "glance", "openstack", "lambda", "type", "fingerprint"}
    found = []
    for path in (ROOT / "imagehub").rglob("*.py"):
        if path.name == "registry.py":
            continue
        text = path.read_text(encoding="utf-8")
        if "os_glance_" in text or ".raw.get(" in text or ".raw[" in text:
            found.append(f"{path.relative_to(ROOT)}: reads a backend's raw record")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Compare) and any(
                    isinstance(c, ast.Constant) and c.value in backend_words
                    for c in node.comparators):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
