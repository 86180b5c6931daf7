"""A secret re-encoded as base64 is still the secret, wherever in the encoded text it
starts: HTTP Basic puts ``user:`` (any length) before it, so it may begin at any byte
offset of a base64 group, in the standard or the URL-safe alphabet. Checked against a
loopback server that quotes the credential back that way (tests/servers/hostile.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagehub import _redact
from tests.servers.hostile import HostileServer
from tests.test_network_hygiene import (
    API_KEY,
    PASSWORD,
    glance_keystone,
    lambda_cloud,
    run_cli,
    write_config,
)


@pytest.fixture
def server() -> Iterator[HostileServer]:
    made = HostileServer()
    yield made
    made.close()


PREFIXES = ("", "u:", "ab:", "user:", "apikey:", "someone-long:")


def encoded_forms(secret: str) -> list[str]:
    out = []
    for prefix in PREFIXES:
        for suffix in ("", ":", ":x"):
            raw = f"{prefix}{secret}{suffix}".encode()
            out += [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    return out


def assert_no_encoded(text: str, secret: str) -> None:
    assert secret not in text
    for form in encoded_forms(secret):
        assert form.rstrip("=") not in text, f"{form} (base64 of the secret) in:\n{text[-2000:]}"


@pytest.mark.parametrize("secret", ["basic-key-123456", "p@ss/w+rd?é", "k" * 40, "abcdefg"])
def test_base64_of_a_secret_at_any_offset_is_redacted(secret: str) -> None:
    _redact.register(secret)
    for form in encoded_forms(secret):
        out = _redact.redact(f"the server said: you sent {form} (rejected)")
        assert form.rstrip("=") not in out
        assert out.startswith("the server said: you sent ") and out.endswith(" (rejected)")


def test_ordinary_base64_is_left_alone() -> None:
    _redact.register("basic-key-123456")
    text = "checksum aGVsbG8gd29ybGQ= and dXNlcjpvdGhlcg=="
    assert _redact.redact(text) == text


@pytest.mark.parametrize("debug", [False, True])
def test_lambda_echoing_the_key_as_basic_never_prints_it(server: HostileServer,
                                                         tmp_path: Path, debug: bool) -> None:
    config = write_config(tmp_path, {"lam": lambda_cloud(server)})
    result, _, _ = run_cli(config, "-c", "lam", "list", debug=debug)
    assert result.returncode == 1
    assert "as basic" in result.stdout + result.stderr  # the echo was there
    assert_no_encoded(result.stdout + result.stderr, API_KEY)


@pytest.mark.parametrize("debug", [False, True])
def test_glance_echoing_a_token_as_basic_never_prints_it(server: HostileServer,
                                                         tmp_path: Path, debug: bool) -> None:
    server.keystone_ok = True
    server.status = 500
    config = write_config(tmp_path, {"os": glance_keystone(server)})
    result, _, _ = run_cli(config, "-c", "os", "list", debug=debug)
    assert result.returncode == 1
    assert_no_encoded(result.stdout + result.stderr, server.issued_token)
    assert_no_encoded(result.stdout + result.stderr, PASSWORD)


@pytest.mark.parametrize("debug", [False, True])
def test_percent_encoded_userinfo_is_redacted_decoded_too(server: HostileServer,
                                                          tmp_path: Path, debug: bool) -> None:
    """requests decodes an auth_url's userinfo and sends it as HTTP Basic; an echoing
    Keystone then quotes the decoded password, which is not the string configured."""
    decoded = "p@ss/w0rd-4e9a"
    server.keystone_misbehaves = True  # Keystone's answers are echoes too
    cloud = glance_keystone(server)
    cloud["auth"]["auth_url"] = server.url.replace(
        "http://", "http://someone:p%40ss%2Fw0rd-4e9a@") + "/v3"
    config = write_config(tmp_path, {"os": cloud})
    result, _, _ = run_cli(config, "-c", "os", "list", debug=debug)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert_no_encoded(out, decoded)
    assert "p%40ss" not in out


def test_registering_a_percent_encoded_value_covers_its_decoded_form() -> None:
    _redact.register("k%2Bey%3Dvalue-91")
    assert _redact.redact("sent k+ey=value-91") == "sent <redacted>"
