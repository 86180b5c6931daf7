"""The conformance kit: one test suite every backend, ours or a third party's, passes.

Use it like fsspec's abstract tests or keyring's ``testing`` package::

    # tests/test_conformance.py of your plugin
    import pytest
    from imagehub.testing import ImageManagerConformance

    class TestMyBackend(ImageManagerConformance):
        @pytest.fixture
        def manager(self, tmp_path):
            return MyManager(root=tmp_path)

The mixins are not named ``Test*`` so pytest only collects them through your subclass.
Override ``manager`` (required), and where your backend needs them ``image_payload``
(bytes your backend accepts), ``share_target`` (a project to share with, and a manager
acting as it) and ``existing_image`` (for read-only backends). Tests for a capability the
backend does not declare are skipped with a reason, never passed silently. Every image a
test creates is deleted afterwards.
"""

from .kit import (
    FILTER_CASES,
    AliasConformance,
    BoundImageConformance,
    CapabilityConformance,
    ConcurrencyConformance,
    CreateExportConformance,
    FilterCase,
    ImageManagerConformance,
    ImagePayload,
    ListingConformance,
    ShareTarget,
    SharingConformance,
    UpdateConformance,
    assert_same_bytes,
    read_export,
    requires,
)

__all__ = [
    "FILTER_CASES",
    "AliasConformance",
    "BoundImageConformance",
    "CapabilityConformance",
    "ConcurrencyConformance",
    "CreateExportConformance",
    "FilterCase",
    "ImageManagerConformance",
    "ImagePayload",
    "ListingConformance",
    "ShareTarget",
    "SharingConformance",
    "UpdateConformance",
    "assert_same_bytes",
    "read_export",
    "requires",
]
