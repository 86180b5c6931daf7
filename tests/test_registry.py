"""Registry errors: not found, extra missing, not an ImageManager, and isolation."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import stevedore

import imagehub
from imagehub import BackendNotFound, BackendUnavailable, InvalidBackend
from imagehub.registry import available_backends, get_backend


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A third-party distribution on sys.path with good and broken plugins."""
    dist = tmp_path / "fakeplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [imagehub.backends]
        fake-good = fakeplug_good:Good
        fake-needs-extra = fakeplug_extra:Needy [fancy]
        fake-not-manager = fakeplug_good:NotAManager
        fake-crashes = fakeplug_crash:Boom
        fake-missing-module = fakeplug_absent:Gone
        """))
    (tmp_path / "fakeplug_good.py").write_text(textwrap.dedent("""\
        from imagehub import ImageManager, Capability, Page
        class Good(ImageManager):
            name = "fake-good"
            capabilities = Capability.LIST | Capability.GET
            def _list(self, limit, marker, filters):
                return Page([])
        class NotAManager:
            pass
        """))
    (tmp_path / "fakeplug_extra.py").write_text("import some_sdk_that_is_not_installed\n")
    (tmp_path / "fakeplug_crash.py").write_text("raise RuntimeError('plugin bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # stevedore keeps each namespace's entry points for the life of the process; a plugin
    # installed mid-process is not the case under test, so start from a clean slate.
    monkeypatch.setattr(stevedore.ExtensionManager, "ENTRY_POINT_CACHE", {})
    get_backend.cache_clear()
    yield tmp_path
    get_backend.cache_clear()


def test_missing_backend_lists_installed() -> None:
    with pytest.raises(BackendNotFound) as info:
        get_backend("no-such-backend")
    assert "local" in str(info.value)


def test_missing_extra_says_what_to_install(fake_plugins: Path) -> None:
    with pytest.raises(BackendUnavailable) as info:
        get_backend("fake-needs-extra")
    assert "pip install 'fakeplug[fancy]'" in str(info.value)
    assert "some_sdk_that_is_not_installed" in str(info.value)


def test_not_a_manager_is_invalid(fake_plugins: Path) -> None:
    with pytest.raises(InvalidBackend, match=r"not an imagehub\.ImageManager"):
        get_backend("fake-not-manager")


def test_crashing_plugin_is_invalid_not_fatal(fake_plugins: Path) -> None:
    with pytest.raises(InvalidBackend, match="plugin bug"):
        get_backend("fake-crashes")
    with pytest.raises(InvalidBackend, match="not installed"):
        get_backend("fake-missing-module")


def test_broken_plugins_do_not_hide_the_others(fake_plugins: Path) -> None:
    infos = {b.name: b for b in available_backends()}
    assert infos["fake-good"].available
    assert infos["local"].available
    assert not infos["fake-crashes"].available
    assert not infos["fake-needs-extra"].available
    assert get_backend("fake-good").name == "fake-good"


def test_nothing_is_loaded_at_import() -> None:
    import subprocess
    import sys

    code = ("import sys, imagehub; "
            "print(any(m.startswith('imagehub.backends.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    assert imagehub.get_backend("local")
