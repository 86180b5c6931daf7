"""A wheel built from this tree holds every module, maps backends/ to imagehub.backends,
ships py.typed, and installs no top-level ``backends`` package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contents(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("imagehub-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {f"imagehub/backends/{p.relative_to(ROOT / 'backends')}"
               for p in (ROOT / "backends").rglob("*.py")}
    sources |= {str(p.relative_to(ROOT)) for p in (ROOT / "imagehub").rglob("*.py")}
    assert sources <= names, f"missing from the wheel: {sorted(sources - names)}"
    assert "imagehub/py.typed" in names
    assert not any(n.startswith("backends/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "local = imagehub.backends.local:LocalManager" in text

    # One version source; the classifiers promise exactly what tox tests; 'all' is the
    # union of the backend extras, so it cannot drift from them.
    import email

    import imagehub

    meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
    meta = email.message_from_bytes(zipfile.ZipFile(wheel).read(meta_name))
    assert meta["Version"] == imagehub.__version__
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = set(meta.get_all("Classifier") or [])
    tested = {f"Programming Language :: Python :: {v}" for v in ("3.10", "3.11", "3.13")}
    assert tested <= classifiers
    requires = meta.get_all("Requires-Dist") or []
    assert any(r.startswith("imagehub[") and "extra == \"all\"" in r for r in requires)
    for module, extra in (("cryptography", "lxd"), ("requests", "lxd"),
                          ("requests", "openstack")):
        assert any(r.startswith(module) and f'extra == "{extra}"' in r for r in requires)


# Distribution names of the modules imported under another name.
_DIST = {"yaml": "PyYAML", "pylxd": "pylxd", "keystoneauth1": "keystoneauth1"}
_BACKEND_EXTRA = {"lxd": "lxd", "glance": "openstack", "lambda_cloud": "lambda"}


def _imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _extras() -> dict[str, set[str]]:
    import configparser
    import re

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def dists(text: str) -> set[str]:
        return {re.split(r"[<>=!\[ ]", line.strip(), maxsplit=1)[0].lower()
                for line in text.splitlines() if line.strip()}

    out = {k: dists(v) for k, v in cfg["options.extras_require"].items()}
    out[""] = dists(cfg["options"]["install_requires"])
    return out


def test_each_backend_extra_declares_every_module_it_imports() -> None:
    """A backend's third-party imports (its own, and those of the core helpers it uses)
    are declared in its extra or the core requirements, not left to whatever another
    package pulls in today (httpcore under httpx, urllib3 under requests)."""
    extras = _extras()
    for package, extra in _BACKEND_EXTRA.items():
        modules: set[str] = set()
        for path in (ROOT / "backends" / package).rglob("*.py"):
            modules |= _imports(path)
        for helper in [m for m in modules if m.startswith("imagehub.")]:
            file = ROOT / (helper.replace(".", "/") + ".py")
            if file.exists():
                modules |= _imports(file)
        third_party = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {
            "imagehub", "__future__"}
        declared = extras[extra] | extras[""]
        missing = {m for m in third_party if _DIST.get(m, m).lower() not in declared}
        assert not missing, f"backend {package!r} imports {sorted(missing)} but the " \
                            f"{extra!r} extra does not declare them"
