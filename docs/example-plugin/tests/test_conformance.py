"""The whole imagehub conformance kit, run against the folder backend."""

from pathlib import Path

import pytest
from imagehub_folder import FolderManager

import imagehub
from imagehub.testing import ImageManagerConformance, ShareTarget


class TestFolder(ImageManagerConformance):
    @pytest.fixture
    def manager(self, tmp_path: Path) -> FolderManager:
        return FolderManager(root=tmp_path / "shelf", project="alice", cloud="shelf")

    @pytest.fixture
    def share_target(self, tmp_path: Path) -> ShareTarget:
        # Another project on the same shelf, to accept and reject shares.
        return ShareTarget("bob", FolderManager(root=tmp_path / "shelf", project="bob"))


def test_registered_through_entry_points() -> None:
    assert imagehub.get_backend("folder") is FolderManager
