"""Filter values a key cannot hold are refused, not answered with nothing (or everything);
times filter the same way on every backend."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import imagehub
from imagehub import ImageManager
from imagehub.cli import main
from tests.test_filters_output import lam, local, manager  # noqa: F401 - shared fixtures


@pytest.mark.parametrize("filters", [
    {"visibility": "everyone"}, {"visibility": ["private", "nope"]},
    {"public": "maybe"}, {"public": 2},
    {"member_status": "bogus"},
    {"size": "big"}, {"size": -5},
    {"created_at": "yesterday"}, {"created_at": "gte:"}, {"updated_at": "after:2020-01-01"},
])
def test_values_a_key_cannot_hold_are_refused(manager: ImageManager,  # noqa: F811
                                              filters: dict[str, Any]) -> None:
    with pytest.raises(imagehub.InvalidArgument) as exc:
        list(manager.all(**filters))
    assert isinstance(exc.value, ValueError)
    with pytest.raises(imagehub.InvalidArgument):
        manager.list(**filters)


def test_values_are_read_in_any_spelling(manager: ImageManager) -> None:  # noqa: F811
    every = {i.id for i in manager.all()}
    private = {i.id for i in manager.all(visibility="private")}
    assert {i.id for i in manager.all(visibility="PRIVATE")} == private
    assert {i.id for i in manager.all(public="No")} == \
        {i.id for i in manager.all(public=False)} == every - {
            i.id for i in manager.all(visibility="public")}
    assert {i.id for i in manager.all(visibility=imagehub.Visibility.PRIVATE)} == private


def test_times_filter_on_the_client_where_the_server_cannot(
        manager: ImageManager) -> None:  # noqa: F811
    every = list(manager.all())
    stamps = sorted({i.created_at for i in every if i.created_at is not None})
    assert stamps, "the fixtures give every image a creation time"
    cut = stamps[len(stamps) // 2]
    iso = cut.isoformat()
    assert {i.id for i in manager.all(created_at=f"gte:{iso}")} == \
        {i.id for i in every if i.created_at is not None and i.created_at >= cut}
    assert {i.id for i in manager.all(created_at=f"lt:{iso}")} == \
        {i.id for i in every if i.created_at is not None and i.created_at < cut}
    assert {i.id for i in manager.all(created_at=iso)} == \
        {i.id for i in every if i.created_at == cut}
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()
    assert list(manager.all(updated_at=f"gt:{future}")) == []


def test_cli_refuses_impossible_values(local: Any, tmp_path: Path,  # noqa: F811
                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  local: {{backend: local, path: {tmp_path / 'store'}}}\n")
    for value in ("visibility=everyone", "public=maybe", "member_status=x", "size=big",
                  "created_at=last-week"):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(["--config", str(config), "list", "--filter", value])
        out, err = capsys.readouterr()
        assert exc.value.code == 2 and out == "" and err.count("\n") == 1, (value, err)
        assert value.split("=")[0] in err
