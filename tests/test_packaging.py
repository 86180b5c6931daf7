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
