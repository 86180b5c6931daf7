"""A store check for crash tests: proves nothing is lost and nothing stray remains."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from imagehub.backends.local import LocalManager
from imagehub.verify import verify_image


def assert_store_whole(root: Path, expect_ids: set[str] | None = None) -> LocalManager:
    """Open the store (which recovers), then: every image verifies, no orphan, no missing
    blob, no stray file, nothing pending, tmp/ empty. ``expect_ids`` must all be listed."""
    store = LocalManager(path=root)
    report = store.check()
    assert report.ok, report
    images = list(store.all())
    for image in images:
        result = verify_image(store, image)
        assert result.ok and result.problem is None, result
    if expect_ids is not None:
        assert expect_ids <= {i.id for i in images}
    assert sorted(p.name for p in (root / "tmp").iterdir()) == []
    with sqlite3.connect(root / "catalog.sqlite") as db:
        assert db.execute("SELECT count(*) FROM pending").fetchone() == (0,)
    allowed = {"catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm", "blobs", "tmp"}
    assert {p.name for p in root.iterdir()} <= allowed
    return store
