"""Bound images, CLOUD:REF addressing, and one listing over every cloud."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

import imagehub
from imagehub import Hub, ImageNotFound, UnboundImageError
from imagehub.cli import main
from imagehub.refs import split_ref


@pytest.fixture
def config(tmp_path: Path) -> Path:
    broken = tmp_path / "not-a-dir"
    broken.write_text("a file where a store directory should be")
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n"
        f"  east: {{backend: local, path: {tmp_path / 'east'}}}\n"
        f"  west: {{backend: local, path: {tmp_path / 'west'}}}\n"
        f"  down: {{backend: local, path: {broken}}}\n")
    return path


def seed(config: Path) -> None:
    for cloud, family, arch, region in [("east", "debian", "amd64", "r1"),
                                        ("east", "debian", "arm64", "r1"),
                                        ("west", "debian", "x86_64", "r1"),
                                        ("west", "alpine", "x86_64", "r2")]:
        m = imagehub.connect(cloud, config=config)
        m.create(os.urandom(64), name=f"{family}-{arch}",
                 properties={"family": family, "architecture": arch, "region": region})


def test_listing_over_clouds_survives_one_down(config: Path) -> None:
    seed(config)
    with Hub(config) as hub:
        listing = hub.all()
    assert sorted((i.cloud, i.name) for i in listing) == [
        ("east", "debian-amd64"), ("east", "debian-arm64"),
        ("west", "alpine-x86_64"), ("west", "debian-x86_64")]
    assert [f.cloud for f in listing.failures] == ["down"]
    assert "cannot open the local store" in str(listing.failures[0])
    assert not listing.ok


def test_latest_across_clouds(config: Path) -> None:
    seed(config)
    with Hub(config, clouds=["east", "west"]) as hub:
        newest = hub.latest("debian", architecture="x86_64")
        assert (newest.cloud, newest.name) == ("west", "debian-x86_64")  # created last
        assert hub.latest("debian", architecture="aarch64").cloud == "east"
        with pytest.raises(ImageNotFound, match="no image of family 'debian' for riscv64"):
            hub.latest("debian", architecture="riscv64")


def test_cli_all_clouds_warns_and_exits_1(config: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    seed(config)
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(config), "--format", "json", "list", "--all-clouds",
              "--filter", "family=debian", "--latest"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1
    rows = json.loads(out)
    assert sorted((r["cloud"], r["architecture"]) for r in rows) == [
        ("east", "aarch64"), ("east", "x86_64"), ("west", "x86_64")]
    assert err.startswith("imagehub: warning: cloud 'down':") and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["--config", str(config), "list", "--all-clouds"])
    assert "CLOUD" in capsys.readouterr().out


def test_bound_images_and_unbound_copies(config: Path) -> None:
    m = imagehub.connect("east", config=config)
    image = m.create(b"bytes", name="bound")
    image = image.add_alias("b1")
    assert image.aliases == ("b1",)
    assert image.update(properties={"k": "v"}).properties["k"] == "v"
    assert image.reload().properties["k"] == "v"
    copy = pickle.loads(pickle.dumps(image))
    assert copy == image and not copy.bound
    with pytest.raises(UnboundImageError, match="not bound"):
        copy.delete()
    with image.export() as stream:
        assert b"".join(stream) == b"bytes"
    image.delete()
    with pytest.raises(ImageNotFound):
        m.get(image.id)


@pytest.mark.parametrize(("text", "expected"), [
    ("east:web", ("east", "web")),
    ("web", (None, "web")),
    ("sha256:abcd", (None, "sha256:abcd")),        # not a cloud: the whole text is the ref
    ("east:odd:name", ("east", "odd:name")),        # only the first colon splits
    ("east:west:thing", ("east", "west:thing")),   # escape a ref starting with a cloud name
    ("nosuch:", (None, "nosuch:")),                # not a cloud: left to the resolver
])
def test_split_ref_rules(text: str, expected: tuple[str | None, str]) -> None:
    assert split_ref(text, {"east", "west"}) == expected


def test_cloud_with_nothing_after_is_refused() -> None:
    with pytest.raises(imagehub.InvalidArgument, match="names cloud 'east' but no image"):
        split_ref("east:", {"east", "west"})


def test_colon_refs_through_cli(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = imagehub.connect("east", config=config)
    made = m.create(b"x", name="west:odd")  # a name that starts with another cloud's name
    with pytest.raises(SystemExit) as info:
        main(["--config", str(config), "--format", "json", "show", "east:west:odd"])
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out)["id"] == made.id


def test_library_calls_take_cloud_prefixed_refs(config: Path) -> None:
    east = imagehub.connect("east", config=config)
    made = east.create(b"abc", name="web")
    odd = east.create(b"def", name="east:odd")  # a name that looks prefixed
    assert east.get("east:web").id == made.id
    assert east.get("east:odd").id == odd.id      # falls back to the ref as written
    assert east.get("east:east:odd").id == odd.id
    with east.export("east:web") as stream:
        assert b"".join(stream) == b"abc"
    with Hub(config) as hub:
        assert hub.get("east:web").id == made.id
    east.delete("east:web")
    with pytest.raises(ImageNotFound):
        east.get("east:web")


def test_clouds_down_or_refusing_credentials_are_reported(tmp_path: Path) -> None:
    from tests.servers.lambda_api import LambdaAPIServer

    with LambdaAPIServer() as api:
        config = tmp_path / "clouds.yaml"
        config.write_text(
            "clouds:\n"
            f"  good: {{backend: lambda, base_url: '{api.url}', api_key: '{api.api_key}'}}\n"
            f"  badkey: {{backend: lambda, base_url: '{api.url}', api_key: 'wrong-key',"
            " max_retries: 0}\n"
            "  down: {backend: lambda, base_url: 'http://127.0.0.1:9', api_key: k,"
            " max_retries: 0, timeout: 2}\n")
        with Hub(config, clouds=["good", "badkey", "down"]) as hub:
            listing = hub.all()
    assert len(listing) == len(api.images_snapshot()) > 0
    assert {i.cloud for i in listing} == {"good"}
    failures = {f.cloud: f.error for f in listing.failures}
    assert isinstance(failures["badkey"], imagehub.AuthenticationError)
    assert isinstance(failures["down"], imagehub.ServerUnreachable)
    assert "wrong-key" not in str(failures["badkey"])
