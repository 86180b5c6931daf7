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
