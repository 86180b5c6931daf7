"""docs/api.md runs: every python block, in order, against local stores."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

API = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_page_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    config = tmp_path / "imagehub.yaml"
    config.write_text(yaml.safe_dump({"clouds": {
        "local": {"backend": "local", "path": store, "project": "me"},
        "archive": {"backend": "local", "path": str(tmp_path / "archive")},
        "other": {"backend": "local", "path": store, "project": "other"},
    }}))
    monkeypatch.setenv("IMAGEHUB_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "disk.img").write_bytes(os.urandom(3 << 20))
    namespace: dict[str, object] = {}
    blocks = re.findall(r"```python\n(.*?)```", API.read_text(), flags=re.S)
    assert len(blocks) >= 6
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"api.md block {number}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - report which block broke
            pytest.fail(f"api.md block {number} failed: {type(exc).__name__}: {exc}\n{block}")
    assert (tmp_path / "copy.img").read_bytes() == (tmp_path / "disk.img").read_bytes()
    assert "member_id='other'" in capsys.readouterr().out
    assert [i.name for i in namespace["pending"]] == ["web-2"]  # type: ignore[attr-defined]
