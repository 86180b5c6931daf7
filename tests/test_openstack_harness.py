"""The OpenStack test harness itself works: real Keystone, real Glance.

These tests use raw keystoneauth1 on purpose, so a failure here points at the
harness, not at imagehub's Glance backend.
"""

from __future__ import annotations

import hashlib
import os
import uuid

from keystoneauth1 import adapter

from tests.servers.openstack import OpenStackCloud, password_session


def image_client(cloud: OpenStackCloud, project: str) -> adapter.Adapter:
    sess = password_session(cloud, cloud.project(project))
    return adapter.Adapter(
        sess, service_type="image", interface="public", region_name=cloud.region_name
    )


def test_two_projects_log_in_and_find_glance_in_the_catalog(
    openstack_cloud: OpenStackCloud,
) -> None:
    alpha = password_session(openstack_cloud, openstack_cloud.project("alpha"))
    beta = password_session(openstack_cloud, openstack_cloud.project("beta"))

    assert alpha.get_project_id() == openstack_cloud.project("alpha").project_id
    assert beta.get_project_id() == openstack_cloud.project("beta").project_id
    assert alpha.get_project_id() != beta.get_project_id()
    endpoint = alpha.get_endpoint(service_type="image", interface="public")
    assert endpoint is not None and endpoint.rstrip("/") == openstack_cloud.glance_url


def test_upload_and_download_through_catalog_endpoint(
    openstack_cloud: OpenStackCloud,
) -> None:
    glance = image_client(openstack_cloud, "alpha")
    payload = os.urandom(3 * 1024 * 1024 + 17)
    name = f"harness-{uuid.uuid4().hex[:8]}"

    created = glance.post(
        "/v2/images",
        json={"name": name, "disk_format": "raw", "container_format": "bare"},
    ).json()
    try:
        glance.put(
            f"/v2/images/{created['id']}/file",
            data=payload,
            headers={"Content-Type": "application/octet-stream"},
        )
        record = glance.get(f"/v2/images/{created['id']}").json()
        assert record["status"] == "active"
        assert record["size"] == len(payload)
        assert record["owner"] == openstack_cloud.project("alpha").project_id
        assert record["os_hash_value"] == hashlib.sha512(payload).hexdigest()

        body = glance.get(f"/v2/images/{created['id']}/file").content
        assert body == payload

        # Another project cannot see a private/shared image it is not a member of.
        beta = image_client(openstack_cloud, "beta")
        missing = beta.get(f"/v2/images/{created['id']}", raise_exc=False)
        assert missing.status_code == 404
    finally:
        glance.delete(f"/v2/images/{created['id']}")


def test_glance_survives_a_kill_and_restart(glance_alive: OpenStackCloud) -> None:
    cloud = glance_alive
    glance = image_client(cloud, "alpha")
    image = glance.post("/v2/images", json={"name": "survivor"}).json()
    old_pid = cloud.pids["glance"]

    cloud.kill_glance()
    assert not cloud.glance_server.daemon.alive()
    cloud.restart_glance()

    assert cloud.pids["glance"] != old_pid
    # Same port and same database: the record made before the crash is still there.
    assert glance.get(f"/v2/images/{image['id']}").json()["name"] == "survivor"
    glance.delete(f"/v2/images/{image['id']}")
