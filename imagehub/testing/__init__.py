"""The conformance kit: one test suite every backend, ours or a third party's, passes.

Install it with ``pip install 'imagehub[testing]'`` and use it like fsspec's abstract
tests or keyring's ``testing`` package::

    # tests/test_conformance.py of your plugin
    import pytest
    from imagehub.testing import ImageManagerConformance

    class TestMyBackend(ImageManagerConformance):
        @pytest.fixture
        def manager(self, tmp_path):
            return MyManager(root=tmp_path)

The mixins are not named ``Test*`` so pytest only collects them through your subclass.
Override ``manager`` (required), and where your backend needs them ``image_payload``
(bytes your backend accepts), ``large_payload`` and ``seed_payloads`` (several MiB; several
images of distinct sizes), ``share_target`` (a project to share with, and a manager acting
as it; required when you declare SHARE) and ``existing_image`` (for read-only backends);
``filter_cases`` tells the kit how to check a filter key only your backend knows. Class
attributes: ``duplicate_names_allowed = False`` where two images cannot share a name,
``large_payload_size`` for another large size, and ``serial_writes_reason`` (a sentence)
where the deployment under test cannot take two creates at once.

Only what the backend does not declare (a capability, an update key) is skipped, each
with its reason; any other error fails the test. Every image a test creates is deleted
afterwards. docs/writing-backends.md lists what each mixin checks.
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
