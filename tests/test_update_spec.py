"""UpdateSpec: what update() keywords become, and what update() refuses before any I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagehub import ImageHubError, UpdateSpec, Visibility
from imagehub.backends.local import LocalManager


def test_public_is_an_alias_of_visibility() -> None:
    assert UpdateSpec.from_changes({"public": True}).visibility is Visibility.PUBLIC
    assert UpdateSpec.from_changes({"public": False}).visibility is Visibility.PRIVATE
    assert UpdateSpec.from_changes({"public": True, "visibility": "public"}).keys() == {
        "visibility"}
    with pytest.raises(ImageHubError, match="contradicts"):
        UpdateSpec.from_changes({"public": True, "visibility": "private"})
    with pytest.raises(ImageHubError, match="true or false"):
        UpdateSpec.from_changes({"public": "yes"})


def test_values_are_normalised_and_checked() -> None:
    spec = UpdateSpec.from_changes({"properties": {"a": 1, "gone": None},
                                    "remove_properties": ["b"], "tags": ["x", "x", "y"],
                                    "auto_update": True})
    assert spec.properties == {"a": "1"}
    assert spec.remove_properties == ("b", "gone")
    assert spec.tags == ("x", "y")
    assert spec.extra == {"auto_update": True}
    assert spec.keys() == {"properties", "remove_properties", "tags", "auto_update"}
    assert UpdateSpec.from_changes({"tags": []}).keys() == {"tags"}  # clears them
    assert UpdateSpec.from_changes({"properties": {}}).keys() == frozenset()
    with pytest.raises(ImageHubError, match="visibility must be one of"):
        UpdateSpec.from_changes({"visibility": "everyone"})
    with pytest.raises(ImageHubError, match="tags must be a list of strings"):
        UpdateSpec.from_changes({"tags": "prod"})
    with pytest.raises(ImageHubError, match="non-empty"):
        UpdateSpec.from_changes({"name": "  "})


def test_update_refuses_undeclared_keys_before_looking_up(tmp_path: Path) -> None:
    manager = LocalManager(path=tmp_path / "s")
    # The ref names nothing: the refusal comes before any lookup.
    with pytest.raises(ImageHubError, match="cannot update 'auto_update' on a local image"):
        manager.update("no-such-image", auto_update=True)
    image = manager.create(b"data", name="x")
    with pytest.raises(ImageHubError, match="not both"):
        manager.update(image, UpdateSpec(name="y"), description="z")
    assert manager.update(image).id == image.id  # nothing asked: the image as it is
    assert manager.update(image, UpdateSpec(name="y")).name == "y"
    assert manager.update(image, tags=["a"]).tags == ("a",)
    assert manager.update(image, tags=[]).tags == ()
