"""One spelling per concept in the core API; the seed spellings live in imagehub.compat."""

from __future__ import annotations

import ast
import builtins
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import imagehub
from imagehub import Capability, Image, ImageHubError, ImageNotFound, Visibility
from imagehub.backends.local import LocalManager

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path) -> LocalManager:
    return LocalManager(path=tmp_path / "store")


def test_core_signatures_have_one_spelling() -> None:
    create = inspect.signature(imagehub.ImageManager.create)
    assert {"visibility", "disk_format"} <= set(create.parameters)
    assert not {"public", "format"} & set(create.parameters)
    for func in (imagehub.plan, imagehub.migrate):
        params = set(inspect.signature(func).parameters)
        assert "disk_format" in params and "format" not in params
    assert "list_all" not in vars(imagehub.ImageManager)


@pytest.mark.parametrize(("seed", "core"), [
    ({"public": True}, {"visibility": "public"}),
    ({"public": False}, {"visibility": Visibility.PRIVATE}),
    ({"format": "raw"}, {"disk_format": "raw"}),
])
def test_seed_keywords_mean_the_core_ones(store: LocalManager, seed: dict[str, Any],
                                          core: dict[str, Any]) -> None:
    old = store.create(b"seed", name="old", **seed)
    new = store.create(b"core", name="new", **core)
    assert (old.visibility, old.disk_format) == (new.visibility, new.disk_format)


@pytest.mark.parametrize("both", [
    {"public": True, "visibility": "private"},
    {"format": "raw", "disk_format": "qcow2"},
])
def test_both_spellings_at_once_is_an_error(store: LocalManager, both: dict[str, Any]) -> None:
    with pytest.raises(ImageHubError, match="not both"):
        store.create(b"x", name="x", **both)
    assert list(store.all()) == []


def test_public_must_be_a_bool(store: LocalManager) -> None:
    with pytest.raises(ImageHubError, match="True or False"):
        store.create(b"x", name="x", public="no")


def test_seed_method_names_work_on_every_manager(store: LocalManager) -> None:
    image = store.create(b"abc", name="web")
    assert [i.id for i in store.list_all()] == [i.id for i in store.all()] == [image.id]
    store.add_image_member(image, "bob")
    assert [m.member_id for m in store.list_image_members(image)] == ["bob"]
    store.delete_image_member(image, "bob")
    assert store.members(image) == []
    assert store.change_image_name(image, "web2").name == "web2"
    image.add_member("carol")
    assert [m.member_id for m in image.members()] == ["carol"]
    image.delete_member("carol")
    assert image.members() == []


def _method_aliases(path: Path) -> list[str]:
    """``name = other_method`` assignments in class bodies: a second name for a method."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        methods = {f.name for f in cls.body if isinstance(f, ast.FunctionDef)}
        for stmt in cls.body:
            if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name)
                    and stmt.value.id in methods
                    and not all(isinstance(t, ast.Name) and t.id.startswith("__")
                                for t in stmt.targets)):  # __str__ = __repr__ is fine
                found.append(f"{path.relative_to(ROOT)}:{stmt.lineno}")
    return found


def test_no_second_names_outside_compat() -> None:
    files = [p for d in ("imagehub", "backends") for p in (ROOT / d).rglob("*.py")]
    assert [a for p in files for a in _method_aliases(p)] == []
    seeds = {"list_all", "add_image_member", "delete_image_member", "list_image_members",
             "change_image_name", "add_member", "delete_member"}
    defined = {f"{p.relative_to(ROOT)}:{n.name}" for p in files
               for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
               if isinstance(n, ast.FunctionDef) and n.name in seeds}
    assert {d.split(":")[0] for d in defined} == {"imagehub/compat.py"}


class Launcher(LocalManager):
    """The local store, able to 'launch': records what the base class hands over."""

    name = "launcher"
    capabilities = LocalManager.capabilities | Capability.LAUNCH
    launch_refs = {"family:": "pass family:NAME for the newest of a family"}
    launched: builtins.list[Image | str]

    def _launch(self, image: Image | str, region: str, instance_type: str, ssh_key: str,
                name: str | None, extra: Mapping[str, Any]) -> builtins.list[str]:
        self.launched.append(image)
        return ["i-1"]


def test_launch_resolves_its_image_like_every_other_method(tmp_path: Path) -> None:
    a = Launcher(path=tmp_path / "a", cloud="a")
    a.launched = []
    image = a.create(b"abc", name="web", aliases=["web-latest"])
    other = LocalManager(path=tmp_path / "b", cloud="b").create(b"abc", name="web")
    for ref in ("web", "web-latest", image.id[:8], "a:web", image):
        a.launch(ref, "r1", "small", "key")
    assert all(isinstance(i, Image) and i.id == image.id for i in a.launched)
    # An Image of another cloud is looked up here by its id, as export and delete do.
    with pytest.raises(ImageNotFound):
        a.export(other)
    with pytest.raises(ImageNotFound):
        a.launch(other, "r1", "small", "key")
    assert len(a.launched) == 5
    a.launch("family:web", "r1", "small", "key")  # the provider's own kind of ref
    assert a.launched[-1] == "family:web"
    with pytest.raises(ImageNotFound, match="family:NAME"):
        a.launch("nothing-like-it", "r1", "small", "key")


def test_stream_disk_format_has_one_name_and_a_seed_alias(store: LocalManager) -> None:
    image = store.create(b"QFI\xfb" + b"\0" * 100, name="disk", disk_format="qcow2")
    with store.export(image) as stream:
        assert stream.disk_format == stream.format == "qcow2"
    assert "format" not in inspect.signature(imagehub.ImageStream).parameters
