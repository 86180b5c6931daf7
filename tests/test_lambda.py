"""The ``lambda`` backend against a loopback Lambda Cloud API that answers as its spec says.

The server (tests/servers/lambda_api.py) runs on real sockets; its fixtures and answers
are checked against OpenAPI 1.8.3 in test_lambda_spec.py. Most tests give the manager
zero-interval pacers and a recording ``sleep`` so retries and backoff are asserted
without waiting; one test keeps the real pacer and measures spacing on the wire.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import imagehub
from imagehub.backends.lambda_cloud import (
    FileSystemInWrongRegion,
    InsufficientCapacity,
    InvalidBillingAddress,
    InvalidLaunchRequest,
    LambdaManager,
    LaunchError,
    LaunchQuotaExceeded,
    LaunchResourceNotFound,
    Pacer,
)
from imagehub.config import parse_config
from imagehub.errors import (
    AmbiguousImage,
    AuthenticationError,
    BackendError,
    ConfigError,
    ImageHubError,
    ImageNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerUnreachable,
    UnsupportedOperation,
)
from imagehub.manager import Capability
from imagehub.models import Image, Visibility, latest
from imagehub.registry import get_backend
from imagehub.testing import ImageManagerConformance, ShareTarget
from tests.servers import lambda_api, lambda_spec
from tests.servers.lambda_api import (
    LAUNCH_INSTANCE,
    LAUNCH_PATH,
    LIST_IMAGES,
    LambdaAPIServer,
    spec_error,
)

IMAGES: list[dict[str, Any]] = lambda_spec.load_fixture("images.json")
ERRORS: dict[str, Any] = lambda_spec.load_fixture("errors.json")
REPO = Path(__file__).resolve().parents[1]


def record(name: str, region: str) -> dict[str, Any]:
    return next(i for i in IMAGES if i["name"] == name and i["region"]["name"] == region)


@pytest.fixture
def server(lambda_api_server: LambdaAPIServer) -> LambdaAPIServer:
    return lambda_api_server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_manager(
    server: LambdaAPIServer, sleeps: list[float]
) -> Iterator[Callable[..., LambdaManager]]:
    made: list[LambdaManager] = []

    def make(**overrides: Any) -> LambdaManager:
        kwargs: dict[str, Any] = {
            "api_key": server.api_key,
            "base_url": server.url,
            "timeout": 5.0,
            "pacer": Pacer(0),
            "launch_pacer": Pacer(0),
            "sleep": sleeps.append,
            "cloud": "lambda-test",
        }
        kwargs.update(overrides)
        manager = LambdaManager(**kwargs)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()


@pytest.fixture
def manager(make_manager: Callable[..., LambdaManager]) -> LambdaManager:
    return make_manager()


class TestLambdaConformance(ImageManagerConformance):
    """The shared kit: listing and lookup run, write tests skip (Lambda cannot write)."""

    @pytest.fixture
    def manager(self, make_manager: Callable[..., LambdaManager]) -> LambdaManager:
        return make_manager()

    @pytest.fixture
    def share_target(self) -> ShareTarget:
        pytest.skip("backend 'lambda' does not declare SHARE: Lambda's API cannot share images")

    @pytest.fixture
    def existing_image(self, manager: LambdaManager) -> Image:
        return manager.get(record("lambda-stack-24.04-2025.05", "us-west-1")["id"])


# -- parsing ------------------------------------------------------------------------------


def test_every_spec_field_is_parsed(manager: LambdaManager) -> None:
    raw = record("lambda-stack-24.04-2025.05-arm64", "us-east-1")
    image = manager.get(raw["id"])
    assert image.id == raw["id"]
    assert image.name == "lambda-stack-24.04-2025.05-arm64"
    assert image.description == raw["description"]
    assert image.family == "lambda-stack"
    assert image.version == "24.04-2025.05"
    assert image.architecture == "aarch64"  # Lambda's arm64, normalised like every backend
    assert image.region == "us-east-1"
    assert image.properties == {"region_description": "Virginia, USA"}
    assert image.created_at == dt.datetime(2025, 5, 6, 18, 22, 41, 512000, tzinfo=dt.timezone.utc)
    assert image.updated_at is not None and image.updated_at.tzinfo is not None
    assert image.visibility is Visibility.PUBLIC
    assert (image.backend, image.cloud) == ("lambda", "lambda-test")
    assert image.raw == raw


def test_all_lists_every_record_with_one_request(
    server: LambdaAPIServer, manager: LambdaManager
) -> None:
    images = list(manager.all())
    assert [i.id for i in images] == [r["id"] for r in IMAGES]
    assert {i.architecture for i in images} == {"x86_64", "aarch64"}
    assert len(server.requests_for(LIST_IMAGES)) == 1


def test_unknown_fields_are_kept_in_raw(manager: LambdaManager) -> None:
    raw = next(r for r in IMAGES if "release_notes_url" in r)
    image = manager.get(raw["id"])
    assert image.raw["release_notes_url"] == raw["release_notes_url"]
    assert image.family == raw["family"]


@pytest.mark.parametrize("field", [*lambda_spec.load_spec()["components"]["schemas"]["Image"]
                                   ["required"], "region.name", "region.description"])
def test_missing_required_field_is_named(
    server: LambdaAPIServer, manager: LambdaManager, field: str
) -> None:
    broken = dict(IMAGES[3])
    if field.startswith("region."):
        broken["region"] = {k: v for k, v in broken["region"].items()
                            if k != field.split(".")[1]}
    else:
        del broken[field]
    server.images[3] = broken
    with pytest.raises(BackendError) as info:
        list(manager.all())
    assert f"missing required field '{field}'" in str(info.value)
    if field != "id":
        assert IMAGES[3]["id"] in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("created_time", "last tuesday", "not an ISO 8601 date-time"),
        ("updated_time", 1715000000, "not an ISO 8601 date-time"),
        ("family", 7, "non-string 'family'"),
        ("region", "us-west-1", "'region' that is not an object"),
    ],
)
def test_malformed_field_is_named(
    server: LambdaAPIServer, manager: LambdaManager, field: str, value: Any, says: str
) -> None:
    server.images[0] = dict(IMAGES[0], **{field: value})
    with pytest.raises(BackendError, match=says):
        list(manager.all())


def test_data_of_the_wrong_shape(server: LambdaAPIServer, manager: LambdaManager) -> None:
    server.inject(LIST_IMAGES, lambda_api.Raw(200, b'{"data": {"images": []}}'))
    with pytest.raises(BackendError, match="'data' is not a list"):
        list(manager.all())
    server.inject(LIST_IMAGES, lambda_api.Raw(200, b'{"images": []}'))
    with pytest.raises(BackendError, match="no 'data' field"):
        list(manager.all())


# -- filters, latest, lookups -----------------------------------------------------------


def expected(**match: str) -> set[str]:
    def keep(r: dict[str, Any]) -> bool:
        values = {"family": r["family"], "region": r["region"]["name"],
                  "architecture": r["architecture"], "name": r["name"]}
        return all(values[k] == v for k, v in match.items())

    return {r["id"] for r in IMAGES if keep(r)}


@pytest.mark.parametrize(
    "filters",
    [
        {"family": "lambda-stack"},
        {"region": "us-west-1"},
        {"architecture": "arm64"},
        {"name": "ubuntu-24.04.01"},
        {"family": "lambda-stack", "region": "us-east-1", "architecture": "arm64"},
    ],
)
def test_client_side_filters(manager: LambdaManager, filters: dict[str, Any]) -> None:
    found = {i.id for i in manager.all(**filters)}
    assert found == expected(**filters)
    assert found


def test_architecture_filter_accepts_either_spelling(manager: LambdaManager) -> None:
    assert {i.id for i in manager.all(architecture="aarch64")} == expected(architecture="arm64")


def _newest(**match: str) -> dict[tuple[str, str], str]:
    # Computed from the fixture, independently of imagehub's own latest().
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in IMAGES:
        if r["id"] not in expected(**match):
            continue
        key = (r["region"]["name"], r["architecture"])
        if key not in best or r["created_time"][:19] > best[key]["created_time"][:19]:
            best[key] = r
    return {k: v["version"] for k, v in best.items()}


@pytest.mark.parametrize("region", ["us-west-1", "us-east-1", "europe-central-1"])
def test_latest_per_family_region_and_architecture(manager: LambdaManager, region: str) -> None:
    found = list(manager.all(latest=True, family="lambda-stack", region=region))
    arm = {"x86_64": "x86_64", "aarch64": "arm64"}
    got = {(i.region or "", arm[i.architecture or ""]): i.version for i in found}
    assert got == _newest(family="lambda-stack", region=region)
    if region == "europe-central-1":
        # The newest release has not reached this region yet.
        assert got == {("europe-central-1", "x86_64"): "24.04-2025.02"}
    if region == "us-west-1":
        assert got == {("us-west-1", "x86_64"): "24.04-2025.05",
                       ("us-west-1", "arm64"): "24.04-2025.02"}


def test_latest_is_the_cores_selection(manager: LambdaManager) -> None:
    assert list(manager.all(latest=True)) == latest(manager.all())


def test_list_pages_with_marker(server: LambdaAPIServer, manager: LambdaManager) -> None:
    first = manager.list(limit=10)
    assert [i.id for i in first] == [r["id"] for r in IMAGES[:10]]
    assert first.next_marker == IMAGES[9]["id"]
    rest = manager.list(marker=first.next_marker)
    assert [i.id for i in rest] == [r["id"] for r in IMAGES[10:]]
    assert rest.next_marker is None
    with pytest.raises(ImageNotFound, match="marker"):
        manager.list(marker="no-such-id")


def test_get_by_id_and_by_name_in_a_region(
    server: LambdaAPIServer, manager: LambdaManager
) -> None:
    raw = record("ubuntu-24.04.01", "asia-northeast-1")
    assert manager.get(raw["id"]).region == "asia-northeast-1"
    by_name = manager.get("ubuntu-24.04.01", region="asia-northeast-1")
    assert by_name.id == raw["id"]
    # One GET per lookup: the endpoint has no per-image route.
    assert len(server.requests_for(LIST_IMAGES)) == 2


def test_get_by_name_alone_is_ambiguous_and_says_to_add_the_region(
    manager: LambdaManager,
) -> None:
    with pytest.raises(AmbiguousImage) as info:
        manager.get("ubuntu-24.04.01")
    assert len(info.value.candidates) == 3
    assert "region=" in str(info.value)


def test_get_unknown(manager: LambdaManager) -> None:
    with pytest.raises(ImageNotFound):
        manager.get("lambda-stack-99.99")
    with pytest.raises(ImageNotFound):
        manager.get("ubuntu-24.04.01", region="europe-central-1")


# -- what Lambda cannot do ----------------------------------------------------------------


def test_capabilities_say_list_get_launch_only() -> None:
    caps = LambdaManager.capabilities
    assert caps == Capability.LIST | Capability.GET | Capability.LAUNCH
    for missing in (Capability.CREATE, Capability.EXPORT, Capability.DELETE,
                    Capability.UPDATE, Capability.ALIASES, Capability.SHARE,
                    Capability.MEMBERS):
        assert missing not in caps


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.create(b"bytes", name="never"),
        lambda m: m.export("any"),
        lambda m: m.delete("any"),
        lambda m: m.update("any", name="x"),
        lambda m: m.add_alias("any", "alias"),
        lambda m: m.remove_alias("alias"),
        lambda m: m.share("any", "project"),
        lambda m: m.unshare("any", "project"),
        lambda m: m.members("any"),
        lambda m: m.accept("any"),
    ],
    ids=["create", "export", "delete", "update", "add_alias", "remove_alias", "share",
         "unshare", "members", "accept"],
)
def test_unsupported_operations_raise_before_any_request(
    server: LambdaAPIServer, manager: LambdaManager, call: Callable[[LambdaManager], Any]
) -> None:
    with pytest.raises(UnsupportedOperation) as info:
        call(manager)
    assert "only lists images" in str(info.value)
    assert server.requests == []


# -- authentication and the key -----------------------------------------------------------


def test_bearer_key_is_sent(server: LambdaAPIServer, manager: LambdaManager) -> None:
    list(manager.all())
    assert server.requests[0].headers["Authorization"] == f"Bearer {server.api_key}"


def test_invalid_key_is_authentication_error_without_retry(
    server: LambdaAPIServer, make_manager: Callable[..., LambdaManager]
) -> None:
    manager = make_manager(api_key="secret_wrong_0000")
    with pytest.raises(AuthenticationError) as info:
        list(manager.all())
    sample = ERRORS["global/invalid-api-key"]
    assert info.value.server_message == sample["message"]
    assert info.value.hint == sample["suggestion"]
    assert info.value.status_code == 401
    assert "secret_wrong_0000" not in str(info.value)
    assert len(server.requests) == 1


def test_inactive_account_is_permission_denied(
    server: LambdaAPIServer, manager: LambdaManager
) -> None:
    server.account_active = False
    with pytest.raises(PermissionDenied) as info:
        list(manager.all())
    assert info.value.server_message == ERRORS["global/account-inactive"]["message"]
    assert len(server.requests) == 1


def test_errors_map_on_code_never_on_message(
    server: LambdaAPIServer, manager: LambdaManager, sleeps: list[float]
) -> None:
    server.inject(LIST_IMAGES, lambda_api.ApiError(
        400, "global/invalid-api-key", "Something went wrong with the provider"))
    with pytest.raises(AuthenticationError):
        list(manager.all())
    server.inject(LIST_IMAGES, *[lambda_api.ApiError(
        401, "provider/internal-unavailable", "API key was invalid, expired, or deleted.")] * 4)
    with pytest.raises(BackendError) as info:
        list(manager.all())
    assert not isinstance(info.value, AuthenticationError)


def test_key_from_named_env_var_and_default_env_var(
    server: LambdaAPIServer, monkeypatch: pytest.MonkeyPatch,
    make_manager: Callable[..., LambdaManager],
) -> None:
    monkeypatch.delenv("LAMBDA_API_KEY", raising=False)
    monkeypatch.setenv("TEAM_LAMBDA_KEY", server.api_key)
    assert list(make_manager(api_key=None, api_key_env="TEAM_LAMBDA_KEY").all())
    monkeypatch.setenv("LAMBDA_API_KEY", server.api_key)
    assert list(make_manager(api_key=None).all())
    monkeypatch.delenv("LAMBDA_API_KEY")
    with pytest.raises(ConfigError, match="LAMBDA_API_KEY"):
        make_manager(api_key=None)


def test_cloud_config_keys(
    server: LambdaAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_LAMBDA_KEY", server.api_key)
    config = parse_config({"clouds": {"lambda": {
        "backend": "lambda", "base_url": server.url + "/", "api_key_env": "TEAM_LAMBDA_KEY",
        "timeout": 7, "max_retries": 0,
    }}})
    manager = config.connect("lambda")
    try:
        assert isinstance(manager, LambdaManager)
        assert (manager.timeout, manager.max_retries) == (7.0, 0)
        assert manager.get(IMAGES[0]["id"]).cloud == "lambda"
    finally:
        manager.close()
    bad = parse_config({"clouds": {"lambda": {"backend": "lambda", "region": "us-west-1"}}})
    with pytest.raises(ConfigError, match="unknown key"):
        bad.connect("lambda")


def test_entry_point_loads_the_backend() -> None:
    assert get_backend("lambda") is LambdaManager


def test_key_never_shows(
    server: LambdaAPIServer, make_manager: Callable[..., LambdaManager],
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    manager = make_manager(max_retries=1)
    server.inject(LIST_IMAGES, spec_error("provider/internal-unavailable"))
    images = list(manager.all())
    server.account_active = False
    with pytest.raises(PermissionDenied) as info:
        manager.get(images[0].id)
    key = server.api_key
    shown = [repr(manager), str(manager), repr(vars(manager)), repr(manager._client.auth),
             str(info.value), repr(info.value), caplog.text, *capfd.readouterr()]
    assert caplog.text, "debug logging produced nothing to check"
    for text in shown:
        assert key not in text
    assert key.encode() not in pickle.dumps(images)
    assert all(key not in json.dumps(i.to_dict()) for i in images)


def test_bad_base_url_and_options() -> None:
    for bad in ({"base_url": "cloud.lambda.ai"}, {"timeout": 0}, {"max_retries": -1}):
        with pytest.raises(ConfigError):
            LambdaManager(api_key="k", **bad)


# -- retries, throttling, broken answers --------------------------------------------------


def test_provider_errors_are_retried_with_backoff(
    server: LambdaAPIServer, manager: LambdaManager, sleeps: list[float]
) -> None:
    server.inject(LIST_IMAGES, spec_error("provider/internal-unavailable"),
                  spec_error("global/internal-error"))
    assert len(list(manager.all())) == len(IMAGES)
    assert sleeps == [1.0, 2.0]
    assert len(server.requests) == 3


def test_persistent_provider_error_is_backend_error_with_its_words(
    server: LambdaAPIServer, manager: LambdaManager, sleeps: list[float]
) -> None:
    server.inject(LIST_IMAGES, *[spec_error("provider/internal-unavailable")] * 4)
    with pytest.raises(BackendError) as info:
        list(manager.all())
    error = info.value
    assert "provider/internal-unavailable" in str(error)
    assert error.server_message == "Provider unavailable"
    assert error.hint == "Try again shortly"
    assert error.status_code == 503
    assert len(server.requests) == 4 and sleeps == [1.0, 2.0, 4.0]


def test_gateway_page_that_is_not_json(
    server: LambdaAPIServer, manager: LambdaManager
) -> None:
    page = lambda_api.Raw(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
    server.inject(LIST_IMAGES, page, page, page, page)
    with pytest.raises(BackendError) as info:
        list(manager.all())
    assert info.value.status_code == 502
    assert "502 Bad Gateway" in (info.value.server_message or "")


def test_429_burst_is_absorbed_honouring_retry_after(
    server: LambdaAPIServer, manager: LambdaManager, sleeps: list[float]
) -> None:
    server.inject(LIST_IMAGES, lambda_api.rate_limited("3"), lambda_api.rate_limited("2"),
                  lambda_api.rate_limited())
    assert len(list(manager.all())) == len(IMAGES)
    assert sleeps == [3.0, 2.0, 4.0]  # no Retry-After on the third: backoff


def test_429_that_persists_becomes_rate_limited(
    server: LambdaAPIServer, manager: LambdaManager, sleeps: list[float]
) -> None:
    server.inject(LIST_IMAGES, *[lambda_api.rate_limited("5")] * 4)
    with pytest.raises(RateLimited) as info:
        list(manager.all())
    assert info.value.retry_after == 5.0
    assert info.value.status_code == 429
    assert "error code: 1015" in str(info.value)
    assert "4 attempt" in str(info.value)
    assert sleeps == [5.0, 5.0, 5.0]


def test_retry_after_longer_than_we_wait_fails_at_once(
    server: LambdaAPIServer, make_manager: Callable[..., LambdaManager], sleeps: list[float]
) -> None:
    manager = make_manager(max_retry_wait=10)
    server.inject(LIST_IMAGES, lambda_api.rate_limited("3600"))
    with pytest.raises(RateLimited) as info:
        list(manager.all())
    assert info.value.retry_after == 3600
    assert sleeps == [] and len(server.requests) == 1


def test_retry_after_as_http_date(
    server: LambdaAPIServer, manager: LambdaManager, sleeps: list[float]
) -> None:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    stamp = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    server.inject(LIST_IMAGES, lambda_api.rate_limited(stamp))
    list(manager.all())
    assert len(sleeps) == 1 and 25 <= sleeps[0] <= 31


def test_malformed_json_is_a_clear_error(
    server: LambdaAPIServer, manager: LambdaManager
) -> None:
    server.inject(LIST_IMAGES, lambda_api.malformed_json())
    with pytest.raises(BackendError, match="malformed JSON"):
        list(manager.all())
    assert len(server.requests) == 1


def test_truncated_body_is_retried_then_reported(
    server: LambdaAPIServer, make_manager: Callable[..., LambdaManager]
) -> None:
    server.inject(LIST_IMAGES, lambda_api.Truncated())
    assert len(list(make_manager().all())) == len(IMAGES)
    server.inject(LIST_IMAGES, lambda_api.Truncated(), lambda_api.Truncated())
    with pytest.raises(BackendError, match="cut short"):
        list(make_manager(max_retries=1).all())


def test_dropped_connection_is_retried(server: LambdaAPIServer, manager: LambdaManager) -> None:
    server.inject(LIST_IMAGES, lambda_api.Disconnect())
    assert len(list(manager.all())) == len(IMAGES)


def test_timeout_is_a_clear_error(
    server: LambdaAPIServer, make_manager: Callable[..., LambdaManager]
) -> None:
    manager = make_manager(timeout=0.3, max_retries=1)
    server.inject(LIST_IMAGES, lambda_api.Stall(60), lambda_api.Stall(60))
    started = time.monotonic()
    with pytest.raises(ServerUnreachable, match=r"did not answer .* within 0.3s"):
        list(manager.all())
    # Far less than one stall: the client gave up on its own (a bound, not a speed).
    assert time.monotonic() - started < 30
    assert len(server.requests) == 2


def test_one_stall_then_success(server: LambdaAPIServer, make_manager: Callable[..., Any]) -> None:
    server.inject(LIST_IMAGES, lambda_api.Stall(10))
    assert len(list(make_manager(timeout=0.3).all())) == len(IMAGES)


def test_unreachable_server(make_manager: Callable[..., LambdaManager], sleeps: list[float],
                            server: LambdaAPIServer) -> None:
    url = server.url
    server.stop()
    manager = LambdaManager(api_key="k", base_url=url, max_retries=2, sleep=sleeps.append,
                            pacer=Pacer(0))
    with pytest.raises(ServerUnreachable, match="cannot connect"):
        list(manager.all())
    assert sleeps == [1.0, 2.0]


def test_keep_alive_and_injected_transport(
    server: LambdaAPIServer, make_manager: Callable[..., LambdaManager]
) -> None:
    sent: list[str] = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(f"{request.method} {request.url.path}")
            return super().handle_request(request)

    manager = make_manager(transport=Recording())
    manager.get(IMAGES[0]["id"])
    manager.get(IMAGES[1]["id"])
    manager.launch("family:lambda-stack", "us-west-1", "gpu_1x_a10", "imagehub-ci")
    assert sent == ["GET /api/v1/images", "GET /api/v1/images", f"POST {LAUNCH_PATH}"]
    assert len({r.client_port for r in server.requests}) == 1


# -- pacing -------------------------------------------------------------------------------


@dataclasses.dataclass
class FakeClock:
    now: float = 1000.0
    slept: list[float] = dataclasses.field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_pacer_spaces_calls_on_a_fake_clock() -> None:
    clock = FakeClock()
    pacer = Pacer(1.0, clock=clock, sleep=clock.sleep)
    starts = []
    for work in (0.0, 0.25, 3.0, 0.0):
        with pacer.slot():
            starts.append(clock.now)
            clock.now += work
    assert [b - a for a, b in itertools.pairwise(starts)] == [1.0, 1.25, 4.0]


def test_launch_is_paced_at_twelve_seconds(
    server: LambdaAPIServer, make_manager: Callable[..., LambdaManager]
) -> None:
    clock = FakeClock()
    at: list[tuple[str, float]] = []

    class Stamping(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            at.append((request.method, clock.now))
            return super().handle_request(request)

    manager = make_manager(
        transport=Stamping(),
        pacer=Pacer(1.0, clock=clock, sleep=clock.sleep),
        launch_pacer=Pacer(12.0, clock=clock, sleep=clock.sleep),
    )
    list(manager.all())
    for _ in range(2):
        manager.launch("family:lambda-stack", "us-west-1", "gpu_1x_a10", "imagehub-ci")
    list(manager.all())
    times = [t for _, t in at]
    assert [m for m, _ in at] == ["GET", "POST", "POST", "GET"]
    assert times[1] - times[0] >= 1.0
    assert times[2] - times[1] >= 12.0
    assert times[3] - times[2] >= 1.0


def test_real_pacing_keeps_one_second_on_the_wire(server: LambdaAPIServer) -> None:
    # The only test on the real clock: default pacer, and a server enforcing the spec's
    # 1 request/s the way the real edge does (a request too soon earns a 429).
    server.throttle(general=1.0, launch=None)
    with LambdaManager(api_key=server.api_key, base_url=server.url, max_retries=0) as manager:
        for _ in range(3):
            list(manager.all())
    arrivals = [r.at for r in server.requests]
    assert len(arrivals) == 3
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(arrivals)), arrivals
    assert all(r.status == 200 for r in server.requests)


# -- launch -------------------------------------------------------------------------------


def test_launch_by_image_sends_its_id(server: LambdaAPIServer, manager: LambdaManager) -> None:
    image = manager.get("lambda-stack-24.04-2025.05", region="us-west-1")
    ids = manager.launch(image, "us-west-1", "gpu_1x_a10", "imagehub-ci", name="trainer")
    assert ids == [server.instances[-1].id]
    body = json.loads(server.requests_for(LAUNCH_INSTANCE)[-1].body)
    lambda_spec.request_validator(LAUNCH_PATH, "post").validate(body)
    assert body == {"region_name": "us-west-1", "instance_type_name": "gpu_1x_a10",
                    "ssh_key_names": ["imagehub-ci"], "image": {"id": image.id},
                    "name": "trainer"}


def test_launch_latest_of_a_family(server: LambdaAPIServer, manager: LambdaManager) -> None:
    manager.launch("family:lambda-stack", "us-east-1", "gpu_1x_gh200", "imagehub-ci")
    body = json.loads(server.requests_for(LAUNCH_INSTANCE)[-1].body)
    assert body["image"] == {"family": "lambda-stack"}
    assert server.requests_for(LIST_IMAGES) == []


def test_launch_by_name_resolves_the_record_in_that_region(
    server: LambdaAPIServer, manager: LambdaManager
) -> None:
    manager.launch("ubuntu-24.04.01", "asia-northeast-1", "gpu_1x_a10", "imagehub-ci")
    body = json.loads(server.requests_for(LAUNCH_INSTANCE)[-1].body)
    assert body["image"] == {"id": record("ubuntu-24.04.01", "asia-northeast-1")["id"]}


def test_launch_passes_spec_extras(server: LambdaAPIServer, manager: LambdaManager) -> None:
    manager.launch("family:lambda-stack", "us-east-1", "gpu_1x_a10", "imagehub-ci",
                   hostname="node1", file_system_names=["shared-data"],
                   tags=[{"key": "team", "value": "ml"}])
    body = json.loads(server.requests_for(LAUNCH_INSTANCE)[-1].body)
    lambda_spec.request_validator(LAUNCH_PATH, "post").validate(body)
    assert body["hostname"] == "node1" and body["file_system_names"] == ["shared-data"]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, img: m.launch(img, "us-east-1", "gpu_1x_a10", "imagehub-ci"),
         "is in us-west-1, not us-east-1"),
        (lambda m, img: m.launch("family:lambda-stack", "us-west-1", "gpu_1x_a10",
                                 "imagehub-ci", colour="red"), "unknown launch option"),
        (lambda m, img: m.launch(img, "us-west-1", "gpu_1x_a10", "imagehub-ci",
                                 name="x" * 65), "at most 64"),
        (lambda m, img: m.launch("family:", "us-west-1", "gpu_1x_a10", "imagehub-ci"),
         "needs a family name"),
        (lambda m, img: m.launch(img, "us-west-1", "gpu_1x_a10", ""), "SSH key"),
    ],
    ids=["wrong-region", "unknown-option", "long-name", "empty-family", "no-key"],
)
def test_launch_mistakes_are_caught_before_the_post(
    server: LambdaAPIServer, manager: LambdaManager,
    call: Callable[[LambdaManager, Image], Any], match: str,
) -> None:
    image = manager.get("lambda-stack-24.04-2025.05", region="us-west-1")
    with pytest.raises(ImageHubError, match=match):
        call(manager, image)
    assert server.requests_for(LAUNCH_INSTANCE) == []


def test_launch_unknown_ref_suggests_family(manager: LambdaManager,
                                            server: LambdaAPIServer) -> None:
    with pytest.raises(ImageNotFound) as info:
        manager.launch("lambda-stack", "us-west-1", "gpu_1x_a10", "imagehub-ci")
    assert "family:lambda-stack" in str(info.value)
    assert server.requests_for(LAUNCH_INSTANCE) == []


def _launch_scene(name: str, server: LambdaAPIServer) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if name == "no-capacity":
        server.no_capacity.add(("gpu_1x_a10", "us-west-1"))
    elif name == "fs-wrong-region":
        kwargs["file_system_names"] = ["shared-data"]
    elif name == "bad-region":
        kwargs["region"] = "mars-north-1"
    elif name == "unknown-type":
        kwargs["instance_type"] = "gpu_99x_imaginary"
    elif name == "unknown-key":
        kwargs["ssh_key"] = "nobody"
    elif name == "quota":
        server.quota = 0
    elif name == "billing":
        server.billing_address_valid = False
    elif name == "inactive":
        server.account_active = False
    return kwargs


@pytest.mark.parametrize(
    ("scene", "error", "code"),
    [
        ("no-capacity", InsufficientCapacity, "instance-operations/launch/insufficient-capacity"),
        ("fs-wrong-region", FileSystemInWrongRegion,
         "instance-operations/launch/file-system-in-wrong-region"),
        ("bad-region", InvalidLaunchRequest, "global/invalid-parameters"),
        ("unknown-type", LaunchResourceNotFound, "global/object-does-not-exist"),
        ("unknown-key", LaunchResourceNotFound, "global/object-does-not-exist"),
        ("quota", LaunchQuotaExceeded, "global/quota-exceeded"),
        ("billing", InvalidBillingAddress, "global/invalid-address"),
    ],
)
def test_launch_error_codes_become_specific_errors(
    server: LambdaAPIServer, manager: LambdaManager, scene: str,
    error: type[LaunchError], code: str,
) -> None:
    call: dict[str, Any] = {"image": "family:lambda-stack", "region": "us-west-1",
                            "instance_type": "gpu_1x_a10", "ssh_key": "imagehub-ci"}
    call.update(_launch_scene(scene, server))
    with pytest.raises(error) as info:
        manager.launch(**call)
    raised = info.value
    assert raised.code == code
    # A refused launch is never repeated.
    assert len(server.requests_for(LAUNCH_INSTANCE)) == 1
    assert raised.server_message  # the API's message and suggestion are kept
    assert raised.hint
    assert code in str(raised)


def test_launch_quota_and_billing_are_also_core_errors(
    server: LambdaAPIServer, manager: LambdaManager
) -> None:
    server.quota = 0
    with pytest.raises(QuotaExceeded):
        manager.launch("family:lambda-stack", "us-west-1", "gpu_1x_a10", "imagehub-ci")
    server.billing_address_valid = False
    with pytest.raises(PermissionDenied):
        manager.launch("family:lambda-stack", "us-west-1", "gpu_1x_a10", "imagehub-ci")


def test_launch_keeps_message_and_suggestion_verbatim(
    server: LambdaAPIServer, manager: LambdaManager
) -> None:
    server.inject(LAUNCH_INSTANCE, spec_error("instance-operations/launch/insufficient-capacity"))
    with pytest.raises(InsufficientCapacity) as info:
        manager.launch("family:lambda-stack", "us-west-1", "gpu_1x_a10", "imagehub-ci")
    sample = ERRORS["instance-operations/launch/insufficient-capacity"]
    assert info.value.server_message == sample["message"]
    assert info.value.hint == sample["suggestion"]


def test_launch_auth_errors(server: LambdaAPIServer, manager: LambdaManager,
                            make_manager: Callable[..., LambdaManager]) -> None:
    with pytest.raises(AuthenticationError):
        make_manager(api_key="wrong").launch("family:lambda-stack", "us-west-1",
                                             "gpu_1x_a10", "imagehub-ci")
    server.account_active = False
    with pytest.raises(PermissionDenied) as info:
        manager.launch("family:lambda-stack", "us-west-1", "gpu_1x_a10", "imagehub-ci")
    assert not isinstance(info.value, LaunchError)


@pytest.mark.parametrize(
    "fault",
    [spec_error("provider/internal-unavailable"), lambda_api.Truncated(),
     lambda_api.Disconnect()],
    ids=["provider-503", "truncated", "disconnect"],
)
def test_launch_is_never_repeated_when_the_server_may_have_acted(
    server: LambdaAPIServer, manager: LambdaManager, sleeps: list[float],
    fault: lambda_api.Fault,
) -> None:
    server.inject(LAUNCH_INSTANCE, fault)
    with pytest.raises(BackendError):
        manager.launch("family:lambda-stack", "us-west-1", "gpu_1x_a10", "imagehub-ci")
    assert len(server.requests_for(LAUNCH_INSTANCE)) == 1
    assert sleeps == []


def test_launch_timeout_is_not_repeated(
    server: LambdaAPIServer, make_manager: Callable[..., LambdaManager]
) -> None:
    server.inject(LAUNCH_INSTANCE, lambda_api.Stall(10))
    with pytest.raises(ServerUnreachable):
        make_manager(timeout=0.3).launch("family:lambda-stack", "us-west-1", "gpu_1x_a10",
                                         "imagehub-ci")
    assert len(server.requests_for(LAUNCH_INSTANCE)) == 1


def test_throttled_launch_is_retried(
    server: LambdaAPIServer, manager: LambdaManager, sleeps: list[float]
) -> None:
    # A 429 comes from the edge before the API sees the request, so repeating is safe.
    server.inject(LAUNCH_INSTANCE, lambda_api.rate_limited("12"))
    ids = manager.launch("family:lambda-stack", "us-west-1", "gpu_1x_a10", "imagehub-ci")
    assert len(ids) == 1 and len(server.instances) == 1
    assert sleeps == [12.0]


# -- the CLI ------------------------------------------------------------------------------


def _cli(config: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    # The installed console script when there is one, as a user runs it.
    script = Path(sys.executable).with_name("imagehub")
    command = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from imagehub.cli import main; main(sys.argv[1:])"]
    return subprocess.run(
        [*command, "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli_config(server: LambdaAPIServer, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n"
        "  lambda:\n"
        "    backend: lambda\n"
        f"    base_url: {server.url}\n"
        "    api_key_env: IMAGEHUB_TEST_LAMBDA_KEY\n"
    )
    return path, {"IMAGEHUB_TEST_LAMBDA_KEY": server.api_key}


def test_cli_lists_latest_lambda_stack_in_a_region(
    server: LambdaAPIServer, cli_config: tuple[Path, dict[str, str]]
) -> None:
    config, env = cli_config
    done = _cli(config, "-c", "lambda", "list", "--filter", "family=lambda-stack",
                "--filter", "region=us-west-1", "--latest", env=env)
    assert done.returncode == 0, done.stderr
    newest = record("lambda-stack-24.04-2025.05", "us-west-1")
    newest_arm = record("lambda-stack-24.04-2025.02-arm64", "us-west-1")
    assert newest["name"] in done.stdout and newest_arm["name"] in done.stdout
    assert "2024.11" not in done.stdout and "us-east-1" not in done.stdout
    assert server.api_key not in done.stdout + done.stderr
    assert len(server.requests) == 1


def test_cli_json_and_debug_never_show_the_key(
    server: LambdaAPIServer, cli_config: tuple[Path, dict[str, str]]
) -> None:
    config, env = cli_config
    done = _cli(config, "--debug", "--format", "json", "-c", "lambda", "list", "--filter",
                "family=lambda-stack", "--filter", "region=us-west-1", "--latest", env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {r["version"] for r in rows} == {"24.04-2025.05", "24.04-2025.02"}
    assert server.api_key not in done.stdout + done.stderr


def test_cli_errors_are_clear(
    server: LambdaAPIServer, cli_config: tuple[Path, dict[str, str]]
) -> None:
    config, env = cli_config
    server.account_active = False
    done = _cli(config, "-c", "lambda", "list", env=env)
    assert done.returncode != 0
    assert ERRORS["global/account-inactive"]["message"] in done.stderr
    server.account_active = True
    done = _cli(config, "-c", "lambda", "delete", IMAGES[0]["id"], env=env)
    assert done.returncode != 0 and "only lists images" in done.stderr


def test_cli_launch(server: LambdaAPIServer, cli_config: tuple[Path, dict[str, str]]) -> None:
    config, env = cli_config
    image = record("lambda-stack-24.04-2025.05", "us-west-1")
    done = _cli(config, "--format", "json", "-c", "lambda", "launch", image["id"],
                "--region", "us-west-1", "--instance-type", "gpu_1x_a10",
                "--ssh-key", "imagehub-ci", "--name", "trainer", env=env)
    assert done.returncode == 0, done.stderr
    [launched] = server.instances
    assert json.loads(done.stdout) == [{"instance_id": launched.id, "image_id": image["id"]}]
    assert launched.request["image"] == {"id": image["id"]}
    assert launched.request["name"] == "trainer"
    # A refused launch is one clear line, with Lambda's own words.
    server.no_capacity.add(("gpu_1x_a10", "us-west-1"))
    done = _cli(config, "-c", "lambda", "launch", image["id"], "--region", "us-west-1",
                "--instance-type", "gpu_1x_a10", "--ssh-key", "imagehub-ci", env=env)
    assert done.returncode == 1
    assert "insufficient-capacity" in done.stderr
    assert "Not enough capacity" in done.stderr


def test_public_error_types_are_importable_from_imagehub() -> None:
    # Launch errors subclass the core tree so generic handlers still catch them.
    assert issubclass(LaunchError, imagehub.ImageHubError)
    assert issubclass(LaunchQuotaExceeded, imagehub.QuotaExceeded)
    assert issubclass(InvalidBillingAddress, imagehub.PermissionDenied)
