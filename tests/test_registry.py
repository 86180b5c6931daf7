"""Registry errors: not found, extra missing, not an ImageManager, not viable, isolation."""

from __future__ import annotations

import configparser
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import imagehub
from imagehub import BackendNotFound, BackendUnavailable, InvalidBackend, registry
from imagehub.registry import INSTALL_HINTS, available_backends, get_backend

ROOT = Path(__file__).resolve().parents[1]


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
        fake-not-here = fakeplug_good:NotHere
        fake-check-crashes = fakeplug_good:CheckCrashes
        fake-check-bool = fakeplug_good:CheckBool
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
        class NotHere(Good):
            name = "fake-not-here"
            @classmethod
            def not_viable(cls):
                return "needs /dev/fake, which this machine lacks"
        class CheckBool(Good):
            name = "fake-check-bool"
            @classmethod
            def not_viable(cls):
                return True
        class CheckCrashes(Good):
            name = "fake-check-crashes"
            @classmethod
            def not_viable(cls):
                raise OSError("probe failed")
        """))
    (tmp_path / "fakeplug_extra.py").write_text("import some_sdk_that_is_not_installed\n")
    (tmp_path / "fakeplug_crash.py").write_text("raise RuntimeError('plugin bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # Entry points are scanned once per process; this plugin arrives mid-process.
    registry.refresh()
    yield tmp_path
    monkeypatch.undo()
    registry.refresh()


def test_missing_backend_lists_installed() -> None:
    with pytest.raises(BackendNotFound) as info:
        get_backend("no-such-backend")
    assert "local" in str(info.value)


def test_missing_dependency_says_what_to_install(fake_plugins: Path) -> None:
    # The entry point's "[fancy]" extra is not trusted (consumers may ignore extras);
    # the hint names what is missing and who needs it.
    with pytest.raises(BackendUnavailable) as info:
        get_backend("fake-needs-extra")
    assert "some_sdk_that_is_not_installed" in str(info.value)
    assert "fakeplug" in str(info.value)
    assert "[fancy]" not in str(info.value)


def _extras() -> dict[str, set[str]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = cfg["options.extras_require"]
    return {k: {line.strip() for line in extras[k].strip().splitlines()} for k in extras}


def test_install_hints_name_real_extras() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    declared = cfg["options.entry_points"]["imagehub.backends"].strip().splitlines()
    names = {line.split("=", 1)[0].strip() for line in declared}
    # Every built-in backend but the embedded one needs an extra, and its hint names one
    # that setup.cfg defines.
    assert set(INSTALL_HINTS) == names - {"local"}
    extras = _extras()
    for hint in INSTALL_HINTS.values():
        extra = hint.split("[", 1)[1].split("]", 1)[0]
        assert extra in extras
    assert extras["all"] == {"imagehub[lxd,openstack,lambda]"}
    assert not any("[" in line for line in declared), "entry-point extras are not read"


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


def test_a_plugin_may_say_it_cannot_work_here(fake_plugins: Path) -> None:
    infos = {b.name: b for b in available_backends()}
    assert infos["fake-not-here"].available and not infos["fake-not-here"].viable
    assert infos["fake-not-here"].not_viable == "needs /dev/fake, which this machine lacks"
    assert not infos["fake-check-crashes"].viable
    assert "probe failed" in (infos["fake-check-crashes"].not_viable or "")
    assert not infos["fake-check-bool"].viable
    assert "returned True" in (infos["fake-check-bool"].not_viable or "")
    assert infos["fake-good"].viable and infos["local"].viable


def test_backends_command_shows_why_not_viable(fake_plugins: Path) -> None:
    import json

    from click.testing import CliRunner

    from imagehub.cli import cli

    result = CliRunner().invoke(cli, ["--format", "json", "backends"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["fake-not-here"]["viable"] is False
    assert "/dev/fake" in rows["fake-not-here"]["problem"]
    assert rows["local"]["viable"] is True


def test_entry_points_are_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    registry.refresh()
    calls: list[str] = []
    real = metadata.entry_points

    def counting(**kwargs: str) -> Any:
        calls.append(kwargs.get("group", ""))
        return real(**kwargs)

    monkeypatch.setattr(metadata, "entry_points", counting)
    available_backends()
    get_backend("local")
    with pytest.raises(BackendNotFound):
        get_backend("no-such-backend")
    assert calls == [registry.NAMESPACE]
    monkeypatch.undo()
    registry.refresh()


def test_nothing_is_loaded_at_import() -> None:
    import subprocess
    import sys

    code = ("import sys, imagehub; "
            "print(any(m.startswith('imagehub.backends.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    assert imagehub.get_backend("local")


def test_connecting_to_a_backend_that_cannot_work_here_says_why(
        fake_plugins: Path, tmp_path: Path) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text("clouds:\n  here: {backend: fake-not-here}\n")
    with pytest.raises(BackendUnavailable, match="needs /dev/fake") as info:
        imagehub.connect("here", config)
    assert "imagehub backends" in str(info.value)
