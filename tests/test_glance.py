"""The Glance backend against a real Glance and a real Keystone (tests/servers).

Two member projects (alpha owns, beta is shared with) log in with keystoneauth1
password auth; admin runs what Glance's default policy keeps for admins (copy-image,
the v2 tasks API). Faults come from the real servers: a killed Glance, bytes
corrupted in Glance's file store, a source that fails mid-upload. Only the 5xx-HTML
case uses a loopback stand-in, because a healthy Glance does not produce one on demand.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagehub import (
    AmbiguousImage,
    AuthenticationError,
    BackendError,
    ChecksumMismatch,
    ConfigError,
    ImageConflict,
    ImageNotFound,
    InvalidImageData,
    MemberStatus,
    OperationFailed,
    OperationStatus,
    PermissionDenied,
    QuotaExceeded,
    ServerUnreachable,
    TransferError,
    Visibility,
)
from imagehub.backends.glance import GlanceManager
from imagehub.backends.glance.auth import from_inline
from imagehub.backends.glance.operations import ImportOperation, TaskOperation
from imagehub.config import parse_config
from imagehub.manager import CreateSpec
from imagehub.models import Image, parse_datetime
from imagehub.streams import DataSource, open_source
from imagehub.testing import FilterCase, ImageManagerConformance, ShareTarget
from tests.servers.openstack import OpenStackCloud, ProjectUser, password_session


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def connect(cloud: OpenStackCloud, user: ProjectUser, **options: Any) -> GlanceManager:
    """The way a user configures it: inline password auth, endpoint from the catalog."""
    opts: dict[str, Any] = {"auth_type": "password", "auth": user.auth(cloud.auth_url),
                            "region_name": cloud.region_name, **options}
    manager = GlanceManager.from_options(opts, cloud=f"test-{user.project_name}")
    assert isinstance(manager, GlanceManager)
    return manager


@pytest.fixture(scope="module")
def alpha(openstack_cloud: OpenStackCloud) -> GlanceManager:
    return connect(openstack_cloud, openstack_cloud.project("alpha"))


@pytest.fixture(scope="module")
def beta(openstack_cloud: OpenStackCloud) -> GlanceManager:
    return connect(openstack_cloud, openstack_cloud.project("beta"))


@pytest.fixture(scope="module")
def admin(openstack_cloud: OpenStackCloud) -> GlanceManager:
    return connect(openstack_cloud, openstack_cloud.admin)


@pytest.fixture
def cleanup(alpha: GlanceManager, admin: GlanceManager) -> Iterator[list[str]]:
    """Image ids to delete after the test (as admin, so protected ones go too)."""
    ids: list[str] = []
    yield ids
    for image_id in ids:
        with contextlib.suppress(ImageNotFound):
            with contextlib.suppress(PermissionDenied):
                admin.update(image_id, protected=False)
            admin.delete(image_id)


def payload(size: int = 256 * 1024) -> bytes:
    return os.urandom(size)


# -- the conformance kit ------------------------------------------------------------------
def _raw_flag(key: str) -> FilterCase:
    def keeps(image: Image, value: Any) -> bool:
        return bool(image.raw.get(key)) is (value == "true")
    return FilterCase(lambda _: ["true", "false"], keeps)


def _since(key: str) -> FilterCase:
    # Glance's time filters take an operator: "gte:<ISO 8601>".
    def values(images: Sequence[Image]) -> list[str]:
        stamps = sorted(getattr(i, key) for i in images if getattr(i, key) is not None)
        return [f"gte:{stamps[len(stamps) // 2].strftime('%Y-%m-%dT%H:%M:%SZ')}"]

    def keeps(image: Image, value: Any) -> bool:
        stamp = getattr(image, key)
        bound = parse_datetime(str(value)[4:])
        return stamp is not None and bound is not None and stamp >= bound
    return FilterCase(values, keeps)


def _keeps_all(image: Image, value: Any) -> bool:
    return True


class TestGlanceConformance(ImageManagerConformance):
    # The test Glance keeps its catalog in SQLite, which refuses a second writer
    # mid-upload ("database is locked", HTTP 500); production Glance uses MySQL.
    serial_writes_reason = "the test Glance runs on SQLite, which takes one writer at a time"
    filter_cases = {
        "protected": _raw_flag("protected"),
        "os_hidden": _raw_flag("os_hidden"),
        "created_at": _since("created_at"),
        "updated_at": _since("updated_at"),
        # Orderings, not filters: every image stays.
        "sort_key": FilterCase(lambda _: ["name", "size"], _keeps_all),
        "sort_dir": FilterCase(lambda _: ["asc", "desc"], _keeps_all),
        "sort": FilterCase(lambda _: ["name:asc", "size:desc"], _keeps_all),
    }

    @pytest.fixture
    def manager(self, alpha: GlanceManager) -> GlanceManager:
        return alpha

    @pytest.fixture
    def share_target(self, openstack_cloud: OpenStackCloud, beta: GlanceManager) -> ShareTarget:
        return ShareTarget(project=openstack_cloud.project("beta").project_id, manager=beta)


# -- authentication and endpoints ---------------------------------------------------------
def test_clouds_yaml_with_secure_yaml(openstack_cloud: OpenStackCloud, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    doc = openstack_cloud.clouds_yaml()
    secrets = {"clouds": {name: {"auth": {"password": body["auth"].pop("password")}}
                          for name, body in doc["clouds"].items()}}
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "secure.yaml").write_text(yaml.safe_dump(secrets))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(tmp_path / "secure.yaml"))

    by_option = GlanceManager.from_options({"cloud": "beta"}, cloud="b")
    assert by_option.project_id == openstack_cloud.project("beta").project_id
    monkeypatch.setenv("OS_CLOUD", "alpha")
    by_env = GlanceManager.from_options({}, cloud="a")
    assert by_env.project_id == openstack_cloud.project("alpha").project_id
    by_env.list(limit=1)


def test_os_environment_variables(openstack_cloud: OpenStackCloud,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    user = openstack_cloud.project("alpha")
    for key in [k for k in os.environ if k.startswith("OS_")]:
        monkeypatch.delenv(key)
    for key, value in {"OS_AUTH_URL": openstack_cloud.auth_url, "OS_USERNAME": user.username,
                       "OS_PASSWORD": user.password, "OS_PROJECT_NAME": user.project_name,
                       "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                       "OS_REGION_NAME": openstack_cloud.region_name}.items():
        monkeypatch.setenv(key, value)
    manager = GlanceManager.from_options({}, cloud="env")
    assert manager.project_id == user.project_id
    manager.list(limit=1)


def test_imagehub_config_with_password_from_env(openstack_cloud: OpenStackCloud,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    user = openstack_cloud.project("alpha")
    auth = user.auth(openstack_cloud.auth_url)
    auth.pop("password")
    monkeypatch.setenv("TEST_GLANCE_PW", user.password)
    config = parse_config({"clouds": {"os": {
        "backend": "openstack", "auth_type": "password", "auth": auth,
        "password_env": "TEST_GLANCE_PW", "region_name": openstack_cloud.region_name,
        "page_size": 50}}})
    manager = config.connect("os")
    assert isinstance(manager, GlanceManager) and manager.page_size == 50
    assert manager.cloud == "os"
    manager.list(limit=1)


def test_application_credential_and_token(openstack_cloud: OpenStackCloud) -> None:
    user = openstack_cloud.project("alpha")
    sess = password_session(openstack_cloud, user)
    cred = sess.post(f"{openstack_cloud.auth_url}/users/{user.user_id}/application_credentials",
                     json={"application_credential": {"name": unique("cred")}}).json()[
        "application_credential"]
    by_cred = GlanceManager.from_options({
        "auth_type": "v3applicationcredential",
        "auth": {"auth_url": openstack_cloud.auth_url,
                 "application_credential_id": cred["id"],
                 "application_credential_secret": cred["secret"]}}, cloud="cred")
    assert by_cred.project_id == user.project_id
    by_cred.list(limit=1)

    by_token = GlanceManager.from_options({
        "auth_type": "token",
        "auth": {"auth_url": openstack_cloud.auth_url, "token": sess.get_token(),
                 "project_id": user.project_id}}, cloud="tok")
    by_token.list(limit=1)


def test_none_auth_with_endpoint_reaches_glance_which_wants_a_token(
        openstack_cloud: OpenStackCloud) -> None:
    manager = GlanceManager.from_options(
        {"auth_type": "none", "endpoint_override": openstack_cloud.glance_url}, cloud="none")
    with pytest.raises(AuthenticationError) as info:
        manager.list(limit=1)
    assert info.value.status_code == 401


def test_endpoint_override_with_version_suffix(openstack_cloud: OpenStackCloud,
                                               alpha: GlanceManager, cleanup: list[str]) -> None:
    image = alpha.create(payload(1024), name=unique("ovr"))
    cleanup.append(image.id)
    other = connect(openstack_cloud, openstack_cloud.project("alpha"),
                    endpoint_override=openstack_cloud.glance_url + "/v2/")
    assert other.get(image.id).id == image.id


def test_wrong_password_is_an_auth_error_and_secrets_stay_out(
        openstack_cloud: OpenStackCloud, caplog: pytest.LogCaptureFixture) -> None:
    user = openstack_cloud.project("alpha")
    secret = "not-the-password-" + uuid.uuid4().hex
    auth = {**user.auth(openstack_cloud.auth_url), "password": secret}
    caplog.set_level(logging.DEBUG)
    manager = GlanceManager.from_options({"auth_type": "password", "auth": auth}, cloud="bad")
    with pytest.raises(AuthenticationError) as info:
        manager.list(limit=1)
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in repr(manager)
    assert secret not in caplog.text
    assert secret not in repr(from_inline({"auth": auth}))

    good = connect(openstack_cloud, user)
    caplog.clear()
    good.list(limit=1)
    assert user.password not in caplog.text
    token = good.http.adapter.get_token()
    assert token and token not in caplog.text


def test_missing_credentials_are_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("OS_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="no OpenStack credentials"):
        GlanceManager.from_options({}, cloud="x")
    with pytest.raises(ConfigError, match="needs: auth_url"):
        GlanceManager.from_options({"auth_type": "password",
                                    "auth": {"username": "u", "password": "p"}}, cloud="x")
    with pytest.raises(ConfigError, match="not used by auth_type 'password': pasword"):
        GlanceManager.from_options({"auth_type": "password",
                                    "auth": {"auth_url": "http://127.0.0.1:9/v3",
                                             "pasword": "typo"}}, cloud="x")


# -- listing --------------------------------------------------------------------------------
def test_pagination_follows_next_links_over_many_pages(
        openstack_cloud: OpenStackCloud, alpha: GlanceManager, cleanup: list[str]) -> None:
    tag = unique("page")
    made = set()
    for i in range(11):
        record = alpha.http.json("POST", "images", "seed", json={
            "name": f"{tag}-{i:02d}", "tags": [tag], "disk_format": "raw",
            "container_format": "bare"})
        made.add(record["id"])
        cleanup.append(record["id"])
    small = connect(openstack_cloud, openstack_cloud.project("alpha"), page_size=3)
    calls: list[int] = []
    original = small._list

    def counting(limit: int | None, marker: str | None, filters: Any) -> Any:
        page = original(limit, marker, filters)
        calls.append(len(page))
        return page

    small._list = counting  # type: ignore[method-assign]
    listed = [i.id for i in small.all(tag=tag)]
    assert sorted(listed) == sorted(made) and len(listed) == len(set(listed))
    assert len(calls) >= 4 and calls[:3] == [3, 3, 3]

    first = small.list(limit=5, tag=tag, sort_key="name", sort_dir="asc")
    assert [i.name for i in first] == [f"{tag}-{i:02d}" for i in range(5)]
    assert first.next_marker == first[-1].id
    second = small.list(limit=5, marker=first.next_marker, tag=tag, sort="name:asc")
    assert [i.name for i in second] == [f"{tag}-{i:02d}" for i in range(5, 10)]
    with pytest.raises(ImageNotFound):
        small.list(marker=str(uuid.uuid4()))


def test_server_and_client_side_filters(alpha: GlanceManager, cleanup: list[str]) -> None:
    tag = unique("filt")
    small = alpha.create(payload(1000), name=f"{tag}-small", tags=[tag],
                         properties={"family": "ubuntu"}, architecture="amd64")
    big = alpha.create(payload(5000), name=f"{tag}-big", tags=[tag, "extra"],
                       properties={"family": "debian"}, architecture="arm64")
    cleanup += [small.id, big.id]

    def ids(**filters: Any) -> set[str]:
        return {i.id for i in alpha.all(**filters)}

    assert ids(tag=tag) == {small.id, big.id}
    assert ids(tag=[tag, "extra"]) == {small.id, big.id}  # a list means any of them
    assert ids(tag=tag, size_min=2000) == {big.id}
    assert ids(tag=tag, size_max=2000) == {small.id}
    assert ids(name=f"{tag}-small") == {small.id}
    assert ids(tag=tag, status="active", visibility="private") == {small.id, big.id}
    assert ids(tag=tag, owner=small.owner) == {small.id, big.id}
    # Not Glance filters: applied here, on normalised fields.
    assert ids(tag=tag, architecture="x86_64") == {small.id}
    assert ids(tag=tag, family="debian") == {big.id}
    assert alpha.get(small.id).architecture == "x86_64"


def test_get_by_unique_name_and_ambiguity(alpha: GlanceManager, cleanup: list[str]) -> None:
    name = unique("named")
    first = alpha.create(payload(100), name=name)
    cleanup.append(first.id)
    assert alpha.get(name).id == first.id
    assert alpha.get(first.id[:13]).id == first.id  # unique id prefix
    second = alpha.create(payload(100), name=name)
    cleanup.append(second.id)
    with pytest.raises(AmbiguousImage) as info:
        alpha.get(name)
    assert {c.id for c in info.value.candidates} == {first.id, second.id}


# -- create ----------------------------------------------------------------------------------
def test_create_streams_from_path_with_size_and_fields(alpha: GlanceManager, tmp_path: Path,
                                                       cleanup: list[str]) -> None:
    data = payload(3 * 1024 * 1024 + 5)
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    seen: list[int] = []
    image = alpha.create(path, name=unique("path"), format="raw", container_format="ovf",
                         properties={"os_distro": "debian", "os_version": "12"},
                         tags=["a", "b"], protected=False, min_ram=64, progress=seen.append,
                         checksum="sha512:" + hashlib.sha512(data).hexdigest())
    cleanup.append(image.id)
    assert image.status == "active" and image.size == len(data)
    assert image.disk_format == "raw" and image.container_format == "ovf"
    assert set(image.tags) == {"a", "b"}
    assert image.os == "debian" and image.release == "12"
    assert image.raw["min_ram"] == 64 and image.visibility is Visibility.PRIVATE
    assert image.checksum == "sha512:" + hashlib.sha512(data).hexdigest()
    assert image.raw["checksum"] == hashlib.md5(data).hexdigest()
    assert sum(seen) == len(data)


def test_create_from_iterator_is_chunked(alpha: GlanceManager, cleanup: list[str]) -> None:
    data = payload(2 * 1024 * 1024)
    chunks = (data[i:i + 65536] for i in range(0, len(data), 65536))
    image = alpha.create(chunks, name=unique("iter"),
                         checksum="md5:" + hashlib.md5(data).hexdigest())
    cleanup.append(image.id)
    assert image.size == len(data)
    assert b"".join(alpha.export(image)) == data


def test_create_from_big_chunks_without_size_gets_through_uwsgi(
        alpha: GlanceManager, cleanup: list[str]) -> None:
    # A sizeless generator is sent with chunked transfer encoding. uWSGI (how Glance
    # is served here and in real deployments) refuses an HTTP chunk bigger than its
    # chunked-input limit with 500 "unable to receive chunked part"; the pipe-like
    # sources users pass yield 1 MiB pieces, so those must reach Glance intact.
    data = payload(3 * 1024 * 1024 + 17)
    mib = 1024 * 1024
    chunks = (data[i:i + mib] for i in range(0, len(data), mib))
    image = alpha.create(chunks, name=unique("bigchunk"),
                         checksum="sha512:" + hashlib.sha512(data).hexdigest())
    cleanup.append(image.id)
    assert image.status == "active" and image.size == len(data)
    assert b"".join(alpha.export(image)) == data
    # Staging for glance-direct streams the same way.
    chunks = (data[i:i + mib] for i in range(0, len(data), mib))
    staged = alpha.glance_direct(chunks, name=unique("bigstage")).wait(timeout=120)
    cleanup.append(staged.id)
    assert b"".join(alpha.export(staged)) == data


def test_create_without_wait_returns_an_operation(alpha: GlanceManager,
                                                  cleanup: list[str]) -> None:
    op = alpha.create(payload(1000), name=unique("nowait"), wait=False)
    image = op.wait(timeout=30)
    cleanup.append(image.id)
    assert op.status is OperationStatus.SUCCESS and image.status == "active"


def test_failed_upload_deletes_the_queued_image(alpha: GlanceManager) -> None:
    name = unique("broken")

    def dying() -> Iterator[bytes]:
        yield b"x" * 1024 * 1024
        raise RuntimeError("source disk went away")

    with pytest.raises(RuntimeError, match="source disk went away"):
        alpha.create(dying(), name=name)
    assert list(alpha.all(name=name)) == []

    # A source that delivers fewer bytes than its known size promised: the transfer is
    # cut (Glance would otherwise wait for the rest), and the record goes too.
    short = DataSource(name="image", size=4096, _open=lambda: iter([b"y" * 1000]))
    with pytest.raises(TransferError, match="read 1000 of 4096 bytes"):
        alpha._create([short], CreateSpec(name=name))
    assert list(alpha.all(name=name)) == []


def test_checksum_promise_mismatch_leaves_nothing(alpha: GlanceManager) -> None:
    name = unique("promise")
    for algo in ("md5", "sha512", "sha256"):
        bad = f"{algo}:" + "0" * {"md5": 32, "sha512": 128, "sha256": 64}[algo]
        with pytest.raises(ChecksumMismatch):
            alpha.create(payload(2000), name=name, checksum=bad)
    assert list(alpha.all(name=name)) == []


def test_format_that_does_not_match_the_data_is_refused(alpha: GlanceManager) -> None:
    name = unique("fmt")
    # imagehub looks at the bytes first and refuses before anything is sent ...
    with pytest.raises(InvalidImageData, match="labelled qcow2, but its bytes are raw") as info:
        alpha.create(payload(4096), name=name, disk_format="qcow2")
    assert info.value.status_code is None
    # ... and Glance's own inspection, reached past that look, is mapped the same way.
    with pytest.raises(InvalidImageData) as info:
        alpha._create([open_source(payload(4096))], CreateSpec(name=name, disk_format="qcow2"))
    assert info.value.status_code == 415 and "does not match" in str(info.value.server_message)
    assert list(alpha.all(name=name)) == []


def test_member_cannot_create_public_image(alpha: GlanceManager) -> None:
    name = unique("public")
    with pytest.raises(PermissionDenied) as info:
        alpha.create(payload(10), name=name, visibility="public")
    assert info.value.status_code == 403 and info.value.server_message
    assert list(alpha.all(name=name)) == []


# -- export ----------------------------------------------------------------------------------
def test_verified_download_detects_corruption_and_leaves_no_file(
        openstack_cloud: OpenStackCloud, alpha: GlanceManager, tmp_path: Path,
        cleanup: list[str]) -> None:
    data = payload(4 * 1024 * 1024)
    image = alpha.create(data, name=unique("corrupt"))
    cleanup.append(image.id)
    good = tmp_path / "good.img"
    alpha.export(image).save(good)
    assert good.read_bytes() == data

    stored = openstack_cloud.glance_server.stored_file(image.id)
    assert stored.read_bytes() == data
    with stored.open("r+b") as fh:  # same length, one byte flipped: only hashes can tell
        fh.seek(len(data) // 2)
        fh.write(bytes([data[len(data) // 2] ^ 0xFF]))
    target = tmp_path / "bad.img"
    with pytest.raises(ChecksumMismatch) as info:
        alpha.export(image).save(target)
    assert "sha512" in str(info.value)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["good.img"]
    # Verifying against one of Glance's two hashes still catches it.
    for hashes, algo in (("os_hash", "sha512"), ("md5", "md5")):
        single = connect(openstack_cloud, openstack_cloud.project("alpha"),
                         download_hashes=hashes)
        with pytest.raises(ChecksumMismatch, match=algo):
            single.export(image.id).save(target)
        assert not target.exists()


def test_export_task_to_path_and_file_object(alpha: GlanceManager, tmp_path: Path,
                                             cleanup: list[str]) -> None:
    data = payload(1024 * 1024)
    image = alpha.create(data, name=unique("exp"))
    cleanup.append(image.id)
    op = alpha.export_task(image, tmp_path / "out.raw")
    assert op.wait(timeout=30) == tmp_path / "out.raw"
    assert (tmp_path / "out.raw").read_bytes() == data
    buf = io.BytesIO()
    op2 = alpha.export_task(image.id, buf)
    op2.wait(timeout=30)
    assert op2.status is OperationStatus.SUCCESS and buf.getvalue() == data

    alpha.deactivate(image)
    failing = alpha.export_task(image, tmp_path / "never.raw")
    with pytest.raises(PermissionDenied):
        failing.wait(timeout=30)
    assert failing.status is OperationStatus.FAILURE and failing.message
    assert not (tmp_path / "never.raw").exists()
    alpha.reactivate(image)
    assert b"".join(alpha.export(image)) == data


# -- sharing -----------------------------------------------------------------------------------
def test_sharing_across_two_projects(openstack_cloud: OpenStackCloud, alpha: GlanceManager,
                                     beta: GlanceManager, cleanup: list[str]) -> None:
    beta_id = openstack_cloud.project("beta").project_id
    data = payload(64 * 1024)
    image = alpha.create(data, name=unique("shared"))
    cleanup.append(image.id)
    assert image.visibility is Visibility.PRIVATE
    with pytest.raises(ImageNotFound):
        beta.get(image.id)

    member = alpha.share(image, beta_id)
    assert member.status is MemberStatus.PENDING and member.member_id == beta_id
    assert alpha.get(image.id).visibility is Visibility.SHARED
    with pytest.raises(ImageConflict):
        alpha.share(image, beta_id)

    def beta_sees(**filters: Any) -> bool:
        return image.id in {i.id for i in beta.all(**filters)}

    assert not beta_sees()
    assert beta_sees(member_status="pending") and beta_sees(member_status="all")
    assert beta.accept(image.id).status is MemberStatus.ACCEPTED
    assert beta_sees() and not beta_sees(member_status="pending")
    assert b"".join(beta.export(image.id)) == data
    assert [m.status for m in alpha.members(image)] == [MemberStatus.ACCEPTED]

    with pytest.raises(PermissionDenied):
        beta.delete(image.id)
    with pytest.raises((PermissionDenied, ImageNotFound)):
        alpha.update_member(image, "accepted", member=beta_id)  # only the member may answer

    assert beta.reject(image.id).status is MemberStatus.REJECTED
    assert not beta_sees() and beta_sees(member_status="rejected")
    back = beta.update_member(image.id, MemberStatus.PENDING)
    assert back.status is MemberStatus.PENDING and beta_sees(member_status="pending")

    alpha.unshare(image, beta_id)
    assert alpha.members(image) == []
    assert not beta_sees(member_status="all")


# -- updates -----------------------------------------------------------------------------------
def test_tags_properties_rename_and_protection(alpha: GlanceManager,
                                               cleanup: list[str]) -> None:
    image = alpha.create(payload(100), name=unique("upd"), tags=["one"],
                         properties={"keep": "1", "drop": "2"})
    cleanup.append(image.id)
    image = alpha.update(image, tags=["x", "y"], properties={"keep": "kept", "new": "n"},
                         remove_properties=["drop"], description="described",
                         architecture="aarch64")
    assert set(image.tags) == {"x", "y"}
    assert image.properties["keep"] == "kept" and image.properties["new"] == "n"
    assert "drop" not in image.properties
    assert image.description == "described" and image.architecture == "aarch64"
    assert set(alpha.add_tag(image, "z").tags) == {"x", "y", "z"}
    assert set(alpha.remove_tag(image, "x").tags) == {"y", "z"}
    new_name = unique("renamed")
    assert alpha.rename(image, new_name).name == new_name
    assert alpha.get(new_name).id == image.id
    odd = alpha.update(image, properties={"a/b~c": "escaped"})
    assert odd.properties["a/b~c"] == "escaped"

    alpha.update(image, protected=True)
    with pytest.raises(PermissionDenied) as info:
        alpha.delete(image)
    assert "protected" in str(info.value) and "protected=False" in str(info.value)
    alpha.update(image, protected=False)
    alpha.delete(image)
    with pytest.raises(ImageNotFound):
        alpha.get(image.id)
    with pytest.raises(ImageNotFound):
        alpha.delete(image.id)


def test_update_moves_a_promoted_field_under_any_of_its_keys(alpha: GlanceManager,
                                                            cleanup: list[str]) -> None:
    image = alpha.create(payload(100), name=unique("promo"),
                         properties={"os_distro": "ubuntu", "family": "old",
                                     "hw_architecture": "x86_64"})
    cleanup.append(image.id)
    assert (image.os, image.family, image.architecture) == ("ubuntu", "old", "x86_64")
    # imagehub's own spelling of a key the field is read from second: the field follows.
    updated = alpha.update(image, properties={"os": "debian", "family": "new",
                                              "architecture": "aarch64"})
    for seen in (updated, alpha.get(image.id)):
        assert (seen.os, seen.family, seen.architecture) == ("debian", "new", "aarch64")
        assert seen.properties["os_distro"] == seen.properties["os"] == "debian"
        assert seen.properties["hw_architecture"] == "aarch64"
    assert image.id in {i.id for i in alpha.all(os="debian", family="new")}
    assert image.id not in {i.id for i in alpha.all(os="ubuntu")}
    # A field set by name moves every key it is read from.
    assert alpha.update(image, os="fedora").properties["os"] == "fedora"
    # Removing the field by name clears it, whichever keys held it.
    cleared = alpha.update(image, remove_properties=["os", "architecture"])
    assert cleared.os is None and cleared.architecture is None
    assert not {"os", "os_distro", "architecture", "hw_architecture"} & set(
        cleared.properties)


def test_read_only_field_is_refused_with_glances_message(alpha: GlanceManager,
                                                         cleanup: list[str]) -> None:
    image = alpha.create(payload(100), name=unique("ro"))
    cleanup.append(image.id)
    with pytest.raises(Exception, match="cannot update 'size'"):
        alpha.update(image, size=5)
    with pytest.raises(PermissionDenied) as info:
        alpha.http.json("PATCH", f"images/{image.id}", "patch", json=[
            {"op": "replace", "path": "/owner", "value": "someone"}],
            headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert info.value.server_message


def test_deactivate_blocks_download_until_reactivated(alpha: GlanceManager,
                                                      cleanup: list[str]) -> None:
    image = alpha.create(payload(100), name=unique("deact"))
    cleanup.append(image.id)
    assert alpha.deactivate(image).status == "deactivated"
    with pytest.raises(PermissionDenied):
        b"".join(alpha.export(image.id))
    assert alpha.reactivate(image).status == "active"
    assert len(b"".join(alpha.export(image.id))) == 100


# -- imports and tasks ---------------------------------------------------------------------------
class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "no such file")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def file_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}
    handler = type("Files", (_Files,), {"files": files})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()


def test_glance_direct_import(alpha: GlanceManager, cleanup: list[str]) -> None:
    data = payload(512 * 1024)
    op = alpha.glance_direct(data, name=unique("direct"))
    image = op.wait(timeout=60)
    cleanup.append(image.id)
    assert op.status is OperationStatus.SUCCESS
    assert image.status == "active" and image.size == len(data)
    assert b"".join(alpha.export(image)) == data


def test_web_download_import_and_its_failure(alpha: GlanceManager,
                                             file_server: tuple[str, dict[str, bytes]],
                                             cleanup: list[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    base, files = file_server
    data = payload(300 * 1024)
    files["/disk.raw"] = data
    paths: list[str] = []
    original = alpha.http.json

    def recording(method: str, path: str, what: str, **kw: Any) -> Any:
        paths.append(path)
        return original(method, path, what, **kw)

    monkeypatch.setattr(alpha.http, "json", recording)
    op = alpha.web_download(f"{base}/disk.raw", name=unique("web"))
    cleanup.append(op.image_id)
    image = op.wait(timeout=60)
    assert image.checksum == "sha512:" + hashlib.sha512(data).hexdigest()
    # Listing an image's tasks is a database write in Glance that raced the import
    # it watched (on SQLite the task was then lost, pending forever): a successful
    # import is followed through the image record alone.
    assert not [p for p in paths if p.endswith("/tasks")]
    # Done means Glance is done: task finished, import lock released, so the next
    # import of this image is not refused as "still in progress".
    assert alpha.image_tasks(image)[-1]["status"] == "success"
    assert "os_glance_import_task" not in alpha.get(image.id).raw

    failing = alpha.web_download(f"{base}/missing.raw", name=unique("web404"))
    cleanup.append(failing.image_id)
    with pytest.raises(OperationFailed) as info:
        failing.wait(timeout=60)
    assert failing.status is OperationStatus.FAILURE
    # Glance's own words, as its task records them.
    task = alpha.image_tasks(failing.image_id)[-1]
    assert task["status"] == "failure" and failing.message == task["message"]
    assert task["message"] in str(info.value)


def test_copy_image_between_stores_as_admin(admin: GlanceManager, alpha: GlanceManager,
                                            cleanup: list[str]) -> None:
    assert set(admin.stores()) >= {"fs", "fs2"}
    assert "copy-image" in admin.import_methods()
    image = admin.create(payload(100 * 1024), name=unique("copy"))
    cleanup.append(image.id)
    assert image.raw["stores"] == "fs"
    op = admin.copy_image(image, ["fs2"])
    copied = op.wait(timeout=60)
    assert set(copied.raw["stores"].split(",")) == {"fs", "fs2"}
    member_image = alpha.create(payload(100), name=unique("copy-member"))
    cleanup.append(member_image.id)
    with pytest.raises(PermissionDenied):
        alpha.copy_image(member_image, ["fs2"])


def test_import_task_uses_tasks_api_for_admin_and_falls_back_for_members(
        admin: GlanceManager, alpha: GlanceManager,
        file_server: tuple[str, dict[str, bytes]], cleanup: list[str]) -> None:
    base, files = file_server
    data = payload(200 * 1024)
    files["/task.raw"] = data
    admin_op = admin.import_task(f"{base}/task.raw", name=unique("task"), disk_format="raw")
    assert isinstance(admin_op, TaskOperation)
    assert admin_op.status in (OperationStatus.PENDING, OperationStatus.PROCESSING)
    try:
        image = admin_op.wait(timeout=90)
    finally:
        admin_op.reload()
        # mypy keeps the narrowing from the assert above across reload()
        if admin_op.status is OperationStatus.SUCCESS:  # type: ignore[comparison-overlap]
            cleanup.append(admin_op.result.id)
    assert image.size == len(data)

    member_op = alpha.import_task(f"{base}/task.raw", name=unique("task-member"),
                                  disk_format="raw")
    assert isinstance(member_op, ImportOperation)
    cleanup.append(member_op.image_id)
    assert member_op.wait(timeout=60).size == len(data)
    assert alpha.image_tasks(member_op.image_id)


# -- errors, retries and faults ------------------------------------------------------------------
def test_quota_error_from_glance(alpha: GlanceManager) -> None:
    name = unique("quota")
    with pytest.raises(QuotaExceeded) as info:
        alpha.create(payload(10), name=name, tags=[f"t{i}" for i in range(200)])
    assert info.value.status_code == 413 and info.value.server_message
    assert list(alpha.all(name=name)) == []


def test_retries_ride_out_a_glance_restart(glance_alive: OpenStackCloud,
                                           cleanup: list[str]) -> None:
    cloud = glance_alive
    manager = connect(cloud, cloud.project("alpha"), retries=6)
    manager.http.backoff = 0.5
    image = manager.create(payload(100), name=unique("restart"))
    cleanup.append(image.id)
    cloud.kill_glance()
    restarter = threading.Timer(1.0, cloud.restart_glance)
    restarter.start()
    started = time.monotonic()
    try:
        assert manager.get(image.id).id == image.id
    finally:
        restarter.join()
    assert time.monotonic() - started >= 1.0


def test_unreachable_glance_is_reported_after_bounded_retries(
        openstack_cloud: OpenStackCloud) -> None:
    manager = connect(openstack_cloud, openstack_cloud.project("alpha"), retries=2,
                      endpoint_override="http://127.0.0.1:9")
    manager.http.backoff = 0.01
    with pytest.raises(ServerUnreachable):
        manager.list(limit=1)


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers like an overloaded WSGI server in front of Glance: 503 with an HTML page."""

    answers: list[int] = []

    def do_GET(self) -> None:
        code = self.answers.pop(0) if self.answers else 200
        if code == 200:
            body = b'{"images": [], "first": "/v2/images"}'
            ctype = "application/json"
        else:
            body = (b"<html><head><title>503 Service Unavailable</title></head><body>"
                    b"<h1>503 Service Unavailable</h1>The server is currently unavailable."
                    b" Please try again at a later time.<br /><br /></body></html>")
            ctype = "text/html; charset=UTF-8"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_5xx_html_message_is_kept_and_idempotent_calls_are_retried() -> None:
    answers = [503, 503]
    handler = type("Flaky", (_Flaky,), {"answers": answers})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        manager = GlanceManager.from_options({"auth_type": "none", "endpoint_override": url,
                                              "retries": 2}, cloud="flaky")
        manager.http.backoff = 0.01
        assert list(manager.list()) == []  # two 503s, then an answer
        answers[:] = [503, 503, 503]
        with pytest.raises(BackendError) as info:
            manager.list()
        assert info.value.status_code == 503
        assert info.value.server_message is not None
        assert "The server is currently unavailable" in info.value.server_message
        assert "<" not in info.value.server_message
    finally:
        server.shutdown()
        server.server_close()


def test_errors_keep_glances_message(alpha: GlanceManager) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(ImageNotFound) as info:
        alpha.get(missing)
    with pytest.raises(ImageNotFound) as info:
        alpha.http.json("GET", f"images/{missing}", "get")
    assert info.value.status_code == 404 and missing in (info.value.server_message or "")

