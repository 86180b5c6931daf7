"""Every command's output to a full or closed stdout is one error line, never a traceback
(it was, for everything but export)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagehub.backends.local import LocalManager

COMMANDS = [["list"], ["--format", "json", "list"], ["--format", "yaml", "show", "one"],
            ["show", "one"], ["export", "one", "-o", "-"], ["clouds"]]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    LocalManager(path=tmp_path / "store").create(os.urandom(4000), name="one")
    path = tmp_path / "clouds.yaml"
    path.write_text(f"clouds:\n  local: {{backend: local, path: {tmp_path / 'store'}}}\n")
    return path


def _run(config: Path, args: list[str], stdout: int | None, close_stdout: bool
         ) -> subprocess.CompletedProcess[str]:
    code = ("import sys; from imagehub.cli import main; "
            f"main(['--config', {str(config)!r}, *{args!r}])")
    return subprocess.run([sys.executable, "-c", code], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=120, check=False,
                          preexec_fn=(lambda: os.close(1)) if close_stdout else None)


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_a_full_stdout_is_one_line(config: Path, args: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        done = _run(config, args, full.fileno(), close_stdout=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "standard output" in done.stderr and "No space left" in done.stderr


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_a_closed_stdout_is_one_line(config: Path, args: list[str]) -> None:
    done = _run(config, args, None, close_stdout=True)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "standard output" in done.stderr


@pytest.mark.parametrize("closed", [True, False])
def test_an_export_to_a_file_succeeds_whatever_stdout_is(config: Path, tmp_path: Path,
                                                         closed: bool) -> None:
    # The saved path is only a note on stdout; losing it must not fail a good export.
    target = tmp_path / f"out-{closed}.img"
    if closed:
        done = _run(config, ["export", "one", "-o", str(target)], None, close_stdout=True)
    else:
        with open("/dev/full", "wb") as full:
            done = _run(config, ["export", "one", "-o", str(target)], full.fileno(),
                        close_stdout=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert target.stat().st_size == 4000
