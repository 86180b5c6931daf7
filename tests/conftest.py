"""Server fixtures shared by the suite: real LXD daemons and real Keystone + Glance."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagehub import _redact

pytest_plugins = [
    "tests.servers.lxd_fixtures",
    "tests.servers.openstack_fixtures",
    "tests.servers.lambda_fixtures",
]


@pytest.fixture(autouse=True)
def _secrets_registered_per_test() -> Iterator[None]:
    # Secrets are registered process-wide (a running CLI wants exactly that), so a test
    # whose cloud uses the password "wrong" would blank that word in every later test's
    # messages: each test starts from the registry as it was before it.
    saved = (set(_redact._secrets), _redact._ordered)
    yield
    with _redact._lock:
        _redact._secrets.clear()
        _redact._secrets.update(saved[0])
        _redact._ordered = saved[1]
