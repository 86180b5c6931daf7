"""pytest fixtures for the real Keystone + Glance servers.

Register with ``pytest_plugins = ["tests.servers.openstack_fixtures"]`` in the
top-level conftest. One Keystone and one Glance serve the whole session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._gate import unavailable
from .openstack import (
    OpenStackCloud,
    ProjectUser,
    ServerError,
    provision,
    start_openstack,
)


@pytest.fixture(scope="session")
def openstack_cloud(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OpenStackCloud]:
    try:
        provision()
    except ServerError as exc:
        unavailable(f"cannot provision Keystone/Glance test servers: {exc}")
    try:
        cloud = start_openstack(tmp_path_factory.mktemp("openstack"))
    except ServerError as exc:
        unavailable(f"cannot start Keystone/Glance test servers: {exc}")
    try:
        yield cloud
    finally:
        cloud.stop()


@pytest.fixture(scope="session")
def openstack_admin(openstack_cloud: OpenStackCloud) -> ProjectUser:
    return openstack_cloud.admin


@pytest.fixture(scope="session")
def openstack_alpha(openstack_cloud: OpenStackCloud) -> ProjectUser:
    """Owner-side member project."""
    return openstack_cloud.project("alpha")


@pytest.fixture(scope="session")
def openstack_beta(openstack_cloud: OpenStackCloud) -> ProjectUser:
    """Consumer-side member project (sharing target)."""
    return openstack_cloud.project("beta")


@pytest.fixture
def glance_alive(openstack_cloud: OpenStackCloud) -> Iterator[OpenStackCloud]:
    """For fault tests that kill Glance: guarantees it is serving again afterwards."""
    yield openstack_cloud
    if not openstack_cloud.glance_server.daemon.alive():
        openstack_cloud.restart_glance()
