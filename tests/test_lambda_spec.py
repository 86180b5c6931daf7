"""The Lambda fixtures and loopback server hold to the published spec.

The ``lambda`` backend is only ever tested against the loopback server, so
the server is only as good as its faithfulness to OpenAPI 1.8.3: every fixture
record and every JSON body the server can send is validated here against the
spec's own schemas (``$ref``s resolved inside the spec), and every response
status the spec documents for the two endpoints must be producible.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openapi_spec_validator
import pytest

from tests.servers import lambda_api, lambda_spec
from tests.servers.lambda_api import IMAGES_PATH, LAUNCH_PATH, LambdaAPIServer

IMAGES = lambda_spec.load_fixture("images.json")
ERRORS = lambda_spec.load_fixture("errors.json")


@pytest.fixture
def server(lambda_api_server: LambdaAPIServer) -> LambdaAPIServer:
    return lambda_api_server


@pytest.fixture
def client(server: LambdaAPIServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=5,
        trust_env=False,
    ) as c:
        yield c


def launch_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "region_name": "us-west-1",
        "instance_type_name": "gpu_1x_a10",
        "ssh_key_names": ["imagehub-ci"],
        "image": {"family": "lambda-stack"},
    }
    body.update(overrides)
    # A request the spec rejects must be built on purpose, never by accident.
    return body


def assert_documented(response: httpx.Response, path: str, method: str) -> None:
    validator = lambda_spec.response_validator(path, method, response.status_code)
    validator.validate(response.json())


# -- the spec itself -------------------------------------------------------


def test_repo_copy_of_spec_matches_the_published_one() -> None:
    if not lambda_spec.SHARED_SPEC_PATH.exists():
        pytest.skip(
            f"no shared specs folder beside the repo ({lambda_spec.SHARED_SPEC_PATH}); "
            "the repo copy is used"
        )
    assert (
        lambda_spec.SPEC_PATH.read_bytes() == lambda_spec.SHARED_SPEC_PATH.read_bytes()
    )


def test_spec_is_valid_openapi() -> None:
    spec = lambda_spec.load_spec()
    assert spec["info"]["version"] == "1.8.3"
    openapi_spec_validator.validate(spec)


# -- fixtures ----------------------------------------------------------------


@pytest.mark.parametrize(
    "record", IMAGES, ids=[f"{i['name']}@{i['region']['name']}" for i in IMAGES]
)
def test_fixture_image_matches_spec(record: dict[str, Any]) -> None:
    lambda_spec.schema_validator("Image").validate(record)


def test_fixture_list_is_a_valid_list_images_response() -> None:
    lambda_spec.response_validator(IMAGES_PATH, "get", 200).validate({"data": IMAGES})


def test_validator_rejects_a_record_missing_a_required_field() -> None:
    # Guards the guard: if $ref resolution silently failed, everything would pass.
    broken = dict(IMAGES[0])
    del broken["family"]
    assert not lambda_spec.schema_validator("Image").is_valid(broken)
    bad_arch = dict(IMAGES[0], architecture="aarch64")
    assert not lambda_spec.schema_validator("Image").is_valid(bad_arch)
    bad_time = dict(IMAGES[0], created_time="yesterday")
    assert not lambda_spec.schema_validator("Image").is_valid(bad_time)


def test_fixtures_make_latest_selection_meaningful() -> None:
    families = Counter(i["family"] for i in IMAGES)
    assert len(families) >= 3
    stack = [i for i in IMAGES if i["family"] == "lambda-stack"]
    assert len({i["version"] for i in stack}) >= 3
    assert {i["architecture"] for i in IMAGES} == {"x86_64", "arm64"}
    assert {"us-west-1", "us-east-1"} <= {i["region"]["name"] for i in IMAGES}
    # Newest lambda-stack is missing from one region, so "latest" differs per region.
    newest = max(stack, key=lambda i: i["created_time"])["version"]
    assert any(
        not any(i["version"] == newest for i in stack if i["region"]["name"] == r)
        for r in {i["region"]["name"] for i in stack}
    )
    # Ids are unique, and (name, region) names one record, so get(name, region) works.
    assert len({i["id"] for i in IMAGES}) == len(IMAGES)
    assert len({(i["name"], i["region"]["name"]) for i in IMAGES}) == len(IMAGES)


def test_exactly_one_fixture_carries_a_field_the_spec_does_not_name() -> None:
    known = lambda_spec.image_properties()
    extra = [sorted(set(i) - known) for i in IMAGES if set(i) - known]
    assert extra == [["release_notes_url"]]


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_error_samples_match_their_spec_schema(code: str) -> None:
    sample = ERRORS[code]
    error = lambda_api.error_body(code, sample["message"], sample.get("suggestion"))[
        "error"
    ]
    schemas = [name for name, c in lambda_spec.error_schemas().items() if c == code]
    if code.startswith("provider/"):
        # The spec describes provider errors in prose only: same envelope, code prefix.
        assert not schemas
        assert set(error) <= {"code", "message", "suggestion"}
        assert sample["status"] >= 500
    else:
        assert schemas, f"{code} is not a code the spec defines"
        for name in schemas:
            lambda_spec.schema_validator(name).validate(error)


def test_every_launch_error_code_in_the_spec_has_a_sample() -> None:
    launch = lambda_spec.load_spec()["paths"][LAUNCH_PATH]["post"]["responses"]
    refs = set()
    for status, response in launch.items():
        if status == "200":
            continue
        node = response["content"]["application/json"]["schema"]["properties"]["error"]
        for ref in node.get("anyOf", [node]):
            refs.add(ref["$ref"].rsplit("/", 1)[1])
    codes = lambda_spec.error_schemas()
    assert {codes[r] for r in refs} <= set(ERRORS)


# -- the server's answers --------------------------------------------------


def test_list_images_with_bearer_key(client: httpx.Client) -> None:
    response = client.get(IMAGES_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert_documented(response, IMAGES_PATH, "get")
    assert response.json() == {"data": IMAGES}


@pytest.mark.parametrize(
    "make_header",
    [
        lambda key: f"Basic {base64.b64encode(f'{key}:'.encode()).decode()}",
        lambda key: f"Basic {key}",
    ],
    ids=["basic-base64", "basic-raw"],
)
def test_basic_auth_is_accepted_as_the_spec_allows(
    server: LambdaAPIServer, make_header: Callable[[str], str]
) -> None:
    response = httpx.get(
        server.url + IMAGES_PATH,
        headers={"Authorization": make_header(server.api_key)},
        trust_env=False,
    )
    assert response.status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Token abc", "Basic !!!"])
def test_bad_credentials_give_the_spec_401(
    server: LambdaAPIServer, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("get", IMAGES_PATH), ("post", LAUNCH_PATH)):
        response = httpx.request(
            method,
            server.url + path,
            headers=headers,
            json=launch_body(),
            trust_env=False,
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "global/invalid-api-key"
        assert_documented(response, path, method)


def test_inactive_account_gives_the_spec_403(
    server: LambdaAPIServer, client: httpx.Client
) -> None:
    server.account_active = False
    for response, path, method in (
        (client.get(IMAGES_PATH), IMAGES_PATH, "get"),
        (client.post(LAUNCH_PATH, json=launch_body()), LAUNCH_PATH, "post"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "global/account-inactive"
        assert_documented(response, path, method)


def test_launch_by_id_and_by_family(
    server: LambdaAPIServer, client: httpx.Client
) -> None:
    image = next(i for i in IMAGES if i["region"]["name"] == "us-east-1")
    for spec_image in ({"id": image["id"]}, {"family": image["family"]}):
        body = launch_body(region_name="us-east-1", image=spec_image, name="trainer")
        lambda_spec.request_validator(LAUNCH_PATH, "post").validate(body)
        response = client.post(LAUNCH_PATH, json=body)
        assert response.status_code == 200, response.text
        assert_documented(response, LAUNCH_PATH, "post")
        [instance_id] = response.json()["data"]["instance_ids"]
        assert server.instances[-1].id == instance_id
        assert server.instances[-1].request["image"] == spec_image


def _scene(name: str, server: LambdaAPIServer) -> dict[str, Any]:
    """Set up one launch failure the real API produces; return the body to send."""
    if name == "not-json":
        return {}
    if name == "bad-region":
        return launch_body(region_name="mars-north-1")
    if name == "two-keys":
        return launch_body(ssh_key_names=["imagehub-ci", "other"])
    if name == "unknown-type":
        return launch_body(instance_type_name="gpu_99x_imaginary")
    if name == "unknown-key":
        return launch_body(ssh_key_names=["nobody"])
    if name == "unknown-image-id":
        return launch_body(image={"id": "does-not-exist"})
    if name == "image-in-other-region":
        asia = next(i for i in IMAGES if i["region"]["name"] == "asia-northeast-1")
        return launch_body(image={"id": asia["id"]})
    if name == "unknown-family":
        return launch_body(image={"family": "windows-xp"})
    if name == "fs-wrong-region":
        return launch_body(file_system_names=["shared-data"])
    if name == "no-capacity":
        server.no_capacity.add(("gpu_1x_a10", "us-west-1"))
        return launch_body()
    if name == "quota":
        server.quota = 0
        return launch_body()
    if name == "billing":
        server.billing_address_valid = False
        return launch_body()
    raise AssertionError(name)


@pytest.mark.parametrize(
    ("scene", "status", "code"),
    [
        ("not-json", 400, "global/invalid-parameters"),
        ("bad-region", 400, "global/invalid-parameters"),
        ("two-keys", 400, "global/invalid-parameters"),
        ("unknown-type", 404, "global/object-does-not-exist"),
        ("unknown-key", 404, "global/object-does-not-exist"),
        ("unknown-image-id", 404, "global/object-does-not-exist"),
        ("image-in-other-region", 404, "global/object-does-not-exist"),
        ("unknown-family", 404, "global/object-does-not-exist"),
        (
            "fs-wrong-region",
            400,
            "instance-operations/launch/file-system-in-wrong-region",
        ),
        ("no-capacity", 400, "instance-operations/launch/insufficient-capacity"),
        ("quota", 400, "global/quota-exceeded"),
        ("billing", 403, "global/invalid-address"),
    ],
)
def test_launch_failures_answer_as_the_spec_documents(
    server: LambdaAPIServer, client: httpx.Client, scene: str, status: int, code: str
) -> None:
    body = _scene(scene, server)
    if scene == "not-json":
        response = client.post(
            LAUNCH_PATH,
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
    else:
        response = client.post(LAUNCH_PATH, json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert_documented(response, LAUNCH_PATH, "post")
    assert server.instances == []


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_injected_spec_errors_are_sent_verbatim(
    server: LambdaAPIServer, client: httpx.Client, code: str
) -> None:
    server.inject(lambda_api.LAUNCH_INSTANCE, lambda_api.spec_error(code))
    response = client.post(LAUNCH_PATH, json=launch_body())
    sample = ERRORS[code]
    assert response.status_code == sample["status"]
    assert response.json() == lambda_api.error_body(
        code, sample["message"], sample.get("suggestion")
    )
    if sample["status"] in lambda_spec.documented_statuses(LAUNCH_PATH, "post"):
        assert_documented(response, LAUNCH_PATH, "post")
    # The fault was consumed; the next call is served normally.
    assert client.post(LAUNCH_PATH, json=launch_body()).status_code == 200


def test_every_documented_status_is_producible(
    server: LambdaAPIServer, client: httpx.Client
) -> None:
    seen: dict[tuple[str, str], set[int]] = {
        (IMAGES_PATH, "get"): set(),
        (LAUNCH_PATH, "post"): set(),
    }
    seen[(IMAGES_PATH, "get")].add(client.get(IMAGES_PATH).status_code)
    seen[(LAUNCH_PATH, "post")].add(
        client.post(LAUNCH_PATH, json=launch_body()).status_code
    )
    for scene in ("bad-region", "unknown-type", "billing"):
        seen[(LAUNCH_PATH, "post")].add(
            client.post(LAUNCH_PATH, json=_scene(scene, server)).status_code
        )
    server.billing_address_valid = True
    anonymous = httpx.Client(base_url=server.url, trust_env=False)
    seen[(IMAGES_PATH, "get")].add(anonymous.get(IMAGES_PATH).status_code)
    seen[(LAUNCH_PATH, "post")].add(
        anonymous.post(LAUNCH_PATH, json=launch_body()).status_code
    )
    anonymous.close()
    server.account_active = False
    seen[(IMAGES_PATH, "get")].add(client.get(IMAGES_PATH).status_code)
    for (path, method), statuses in seen.items():
        assert statuses >= set(lambda_spec.documented_statuses(path, method)), (
            path,
            statuses,
        )


# -- scripted faults ---------------------------------------------------------


def test_rate_limit_page_is_cloudflare_plain_text(
    server: LambdaAPIServer, client: httpx.Client
) -> None:
    server.inject(
        lambda_api.LIST_IMAGES, lambda_api.rate_limited("2"), lambda_api.rate_limited()
    )
    first = client.get(IMAGES_PATH)
    assert (first.status_code, first.content, first.headers["retry-after"]) == (
        429,
        b"error code: 1015",
        "2",
    )
    assert first.headers["content-type"].startswith("text/plain")
    second = client.get(IMAGES_PATH)
    assert second.status_code == 429 and "retry-after" not in second.headers
    assert client.get(IMAGES_PATH).status_code == 200


def test_provider_error_uses_the_envelope(
    server: LambdaAPIServer, client: httpx.Client
) -> None:
    server.inject(
        lambda_api.LIST_IMAGES, lambda_api.spec_error("provider/internal-unavailable")
    )
    response = client.get(IMAGES_PATH)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider/internal-unavailable"


def test_malformed_json_arrives_whole_but_does_not_parse(
    server: LambdaAPIServer, client: httpx.Client
) -> None:
    server.inject(lambda_api.LIST_IMAGES, lambda_api.malformed_json())
    response = client.get(IMAGES_PATH)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_truncated_body_breaks_the_transfer(
    server: LambdaAPIServer, client: httpx.Client
) -> None:
    server.inject(lambda_api.LIST_IMAGES, lambda_api.Truncated())
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(IMAGES_PATH)
    assert client.get(IMAGES_PATH).status_code == 200


def test_disconnect_without_answer(
    server: LambdaAPIServer, client: httpx.Client
) -> None:
    server.inject(lambda_api.LIST_IMAGES, lambda_api.Disconnect())
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(IMAGES_PATH)


def test_stall_outlasts_the_client_timeout_and_stop_is_prompt(
    server: LambdaAPIServer,
) -> None:
    server.inject(lambda_api.LIST_IMAGES, lambda_api.Stall(30))
    with httpx.Client(base_url=server.url, timeout=0.3, trust_env=False) as quick:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            quick.get(
                IMAGES_PATH, headers={"Authorization": f"Bearer {server.api_key}"}
            )
        assert time.monotonic() - started < 5
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5


def test_throttle_enforces_the_spec_limits(
    server: LambdaAPIServer, client: httpx.Client
) -> None:
    # The server's clock moves only when the test says so: the spacing asserted here is
    # the server's rule, not how fast this machine answers.
    now = [1000.0]
    server.clock = lambda: now[0]
    server.throttle(general=0.5, launch=2.0)
    assert client.get(IMAGES_PATH).status_code == 200
    too_soon = client.get(IMAGES_PATH)
    assert (
        too_soon.status_code == 429 and too_soon.content == lambda_api.RATE_LIMIT_BODY
    )
    assert too_soon.headers["retry-after"] == "1"
    now[0] += 0.55
    assert client.post(LAUNCH_PATH, json=launch_body()).status_code == 200
    now[0] += 0.55
    # The general bucket has refilled but launch's stricter one has not.
    assert client.get(IMAGES_PATH).status_code == 200
    now[0] += 0.55
    assert client.post(LAUNCH_PATH, json=launch_body()).status_code == 429
    now[0] += 2.0
    assert client.post(LAUNCH_PATH, json=launch_body()).status_code == 200


def test_requests_are_recorded_with_times_on_one_kept_alive_connection(
    server: LambdaAPIServer, client: httpx.Client
) -> None:
    before = time.monotonic()
    client.get(IMAGES_PATH)
    client.post(LAUNCH_PATH, json=launch_body())
    after = time.monotonic()
    recorded = server.requests
    assert [(r.method, r.path, r.operation, r.status) for r in recorded] == [
        ("GET", IMAGES_PATH, "listImages", 200),
        ("POST", LAUNCH_PATH, "launchInstance", 200),
    ]
    assert before <= recorded[0].at <= recorded[1].at <= after
    assert json.loads(recorded[1].body)["instance_type_name"] == "gpu_1x_a10"
    assert recorded[0].client_port == recorded[1].client_port


def test_unknown_route_and_wrong_method(client: httpx.Client) -> None:
    assert client.get("/api/v1/nope").status_code == 404
    assert client.delete(IMAGES_PATH).status_code == 405
