"""The CLI run in-process against one clouds file, as the CLI test modules use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagehub.cli import main


class CLIRun:
    """``run(*args)`` is ``imagehub --config FILE *args``: (exit code, stdout, stderr)."""

    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config, self.capsys = config, capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            main(["--config", str(self.config), *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> Any:
        """The command's JSON output; it must succeed."""
        code, out, err = self(*args, "-f", "json")
        assert code == 0, err
        return json.loads(out)


def run_on_local_store(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       *args: str) -> tuple[int, str, str]:
    """``imagehub *args`` with one cloud, ``local``, whose store is ``tmp_path/store``."""
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  local: {{backend: local, path: {tmp_path / 'store'}}}\n")
    return CLIRun(config, capsys)(*args)
