"""CLI habits people bring from kubectl, openstack and lxc: tables whose ids can be typed
back, regions, --latest that never merges unrelated images, pages, JSON for every command."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from imagehub.cli.app import table, unique_prefix_width
from imagehub.config import parse_config
from imagehub.manager import ImageManager
from tests.cli_runner import CLIRun
from tests.servers.lambda_api import LambdaAPIServer

Run = CLIRun


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.delenv("LAMBDA_API_KEY", raising=False)
    config = tmp_path / "clouds.yaml"
    config.write_text(f"discovered: false\nclouds:\n  local: {{backend: local, "
                      f"path: {tmp_path / 'store'}}}\n")
    return Run(config, capsys)


def make(run: Run, tmp_path: Path, name: str, *extra: str) -> dict[str, Any]:
    path = tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.img"
    path.write_bytes(os.urandom(2000))
    made: dict[str, Any] = run.json("create", str(path), "--name", name, *extra)
    return made


def test_ids_are_cut_only_where_still_unique() -> None:
    ids = [f"00000000-0000-0000-0000-00000000000{n}" for n in range(3)]
    assert unique_prefix_width(ids, 12) == len(ids[0])
    assert unique_prefix_width(["abcdef01", "12345678"], 4) == 4
    assert unique_prefix_width(["abcd1234", "abcd5678"], 4) == 5
    assert unique_prefix_width(["same", "same"], 4) == 4  # one image listed twice
    out = table([{"id": i} for i in ids], ["id"], id_width=12)
    assert out.splitlines()[1:] == ids
    assert table([{"id": i} for i in ids], ["id"], id_width=None).splitlines()[1:] == ids


def test_list_ids_min_width_wide_and_zone(run: Run, tmp_path: Path) -> None:
    made = [make(run, tmp_path, f"img{n}") for n in range(3)]
    code, out, _ = run("list", "--id-width", "6")
    assert code == 0
    shown = [line.split()[0] for line in out.splitlines()[1:]]
    assert all(6 <= len(s) < 64 for s in shown)
    for prefix in shown:  # each shown id selects its image again
        assert run.json("show", prefix)["id"] in {m["id"] for m in made}
    code, out, _ = run("list", "--wide")
    assert {line.split()[0] for line in out.splitlines()[1:]} == {m["id"] for m in made}
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", out)
    assert "UTC" in run("show", made[0]["id"])[1]
    assert run("list", "--id-width", "2")[0] == 2  # below the prefix rule's minimum


def test_latest_groups_by_name_when_there_is_no_family(run: Run, tmp_path: Path) -> None:
    make(run, tmp_path, "web")
    newest_web = make(run, tmp_path, "web")
    db = make(run, tmp_path, "db")
    fam = [make(run, tmp_path, f"deb-{n}", "--property", "family=debian") for n in range(2)]
    got = {i["id"] for i in run.json("list", "--latest")}
    # Two unrelated family-less images stay apart; same-name images collapse.
    assert newest_web["id"] in got and db["id"] in got
    assert fam[1]["id"] in got and fam[0]["id"] not in got
    assert len(got) == 3


def test_pages_filled_after_client_filtering(run: Run, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    wanted = {make(run, tmp_path, f"n{n}", *(["--property", "keep=yes"] if n % 3 == 0
                                              else []))["id"] for n in range(9)}
    wanted = {i["id"] for i in run.json("list", "--filter", "properties.keep=yes")}
    assert len(wanted) == 3
    cfg = parse_config({"discovered": False, "clouds": {"s": {
        "backend": "local", "path": str(tmp_path / "store")}}})
    manager: ImageManager = cfg.connect("s")
    seen: list[str] = []
    marker: str | None = None
    try:
        page = manager.list(limit=1, **{"properties.keep": "yes"})
        while page:  # pyrax's loop: an empty page is the end
            assert len(page) == 1
            seen += [i.id for i in page]
            marker = page.next_marker
            page = manager.list(limit=1, marker=marker, **{"properties.keep": "yes"})
        assert page.next_marker is None
    finally:
        manager.close()
    assert sorted(seen) == sorted(wanted)
    # The CLI pages the same way and says where the next page starts.
    code, out, err = run("list", "--limit", "2", "--marker", seen[0], "--filter",
                         "properties.keep=yes", "-f", "json")
    assert code == 0, err
    assert [i["id"] for i in json.loads(out)] == seen[1:3]
    assert "last page" in err or "--marker" in err
    # A cloud that cannot sort pages itself refuses --sort with --marker, rather than
    # sorting each page on its own.
    code, _, err = run("list", "--limit", "2", "--marker", seen[0], "--sort", "-name")
    assert code == 2 and "cannot sort pages itself" in err


def test_json_result_for_commands_that_printed_nothing(run: Run, tmp_path: Path) -> None:
    made = make(run, tmp_path, "x", "--alias", "x-alias")
    exported = run.json("export", "x", "-o", str(tmp_path / "out.img"))
    assert exported["files"] == [str(tmp_path / "out.img")] and exported["id"] == made["id"]
    assert run.json("alias", "remove", "x-alias") == {"removed_alias": "x-alias"}
    assert run.json("delete", "x") == {"deleted": made["id"], "name": "x"}


@pytest.fixture
def lambda_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
               monkeypatch: pytest.MonkeyPatch,
               lambda_api_server: LambdaAPIServer) -> Run:
    monkeypatch.setenv("LAMBDA_API_KEY", lambda_api_server.api_key)
    config = tmp_path / "clouds.yaml"
    config.write_text(f"discovered: false\nclouds:\n  lam: {{backend: lambda, "
                      f"base_url: '{lambda_api_server.url}'}}\n")
    return Run(config, capsys)


def test_region_on_show_and_launch(lambda_run: Run) -> None:
    code, _, err = lambda_run("show", "lam:ubuntu-24.04.01")
    assert code == 1
    assert "--region" in err and "region=" not in err  # CLI syntax in the CLI
    shown = lambda_run.json("show", "lam:ubuntu-24.04.01", "--region", "asia-northeast-1")
    assert shown["region"] == "asia-northeast-1"
    launched = lambda_run.json("launch", "lam:ubuntu-24.04.01", "--region",
                               "asia-northeast-1", "--instance-type", "gpu_1x_a10",
                               "--ssh-key", "imagehub-ci")
    assert launched[0]["image_id"] == shown["id"]
    # Ids in the table are long enough to be typed back.
    code, out, _ = lambda_run("list", "-c", "lam")
    first = out.splitlines()[1].split()[0]
    assert lambda_run.json("show", f"lam:{first}")["id"].startswith(first)
