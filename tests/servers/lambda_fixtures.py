"""pytest fixture for the loopback Lambda Cloud API server (see lambda_api.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._gate import unavailable
from .lambda_api import LambdaAPIServer


@pytest.fixture
def lambda_api_server() -> Iterator[LambdaAPIServer]:
    """A fresh server per test, so injected faults and recorded requests never leak."""
    api = LambdaAPIServer()
    try:
        api.start()
    except OSError as exc:
        unavailable(f"loopback Lambda API could not bind 127.0.0.1: {exc}")
    yield api
    api.stop()
