"""pytest fixtures for the real Keystone + Glance servers.

Register with ``pytest_plugins = ["tests.servers.openstack_fixtures"]`` in the
top-level conftest. One Keystone and one Glance serve the whole session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

import imagehub

from ._gate import unavailable

if TYPE_CHECKING:
    from imagehub.backends.glance import GlanceManager
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


def alpha_glance(cloud: OpenStackCloud, **options: Any) -> GlanceManager:
    """A Glance manager logged in as project alpha of the suite's cloud."""
    from imagehub.backends.glance import GlanceManager

    opts = {"auth_type": "password", "auth": cloud.project("alpha").auth(cloud.auth_url),
            "region_name": cloud.region_name, **options}
    manager = GlanceManager.from_options(opts, cloud="glance")
    assert isinstance(manager, GlanceManager)
    return manager


@pytest.fixture(scope="module")
def glance(openstack_cloud: OpenStackCloud) -> Iterator[GlanceManager]:
    manager = alpha_glance(openstack_cloud)
    yield manager
    manager.close()


@pytest.fixture
def glance_tidy(glance: GlanceManager) -> Iterator[GlanceManager]:
    """Glance as the test found it afterwards: images a test made are deleted."""
    before = {i.id for i in glance.all()}
    yield glance
    for image in glance.all():
        if image.id not in before and image.status not in ("deleted", "pending_delete"):
            with contextlib.suppress(imagehub.ImageNotFound):
                glance.delete(image)
