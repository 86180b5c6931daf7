"""Secrets stay secret, TLS stays on, every call has a deadline: checked against loopback
servers that misbehave on purpose (tests/servers/hostile.py), through the CLI in a
subprocess (with and without --debug) and through the library."""

from __future__ import annotations

import http.server
import json
import logging
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagehub import _redact
from imagehub.config import load_config
from imagehub.errors import ConfigError, ImageHubError, TransferError
from imagehub.hub import Hub, IncompleteAnswer
from tests.servers.hostile import HostileServer

API_KEY = "secret_lambda_key_7f3a9c"
PASSWORD = "pa55-w0rd-9d1e2f"
URL_PASSWORD = "urlpass-4b8c"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HostileServer]:
    made = HostileServer()
    yield made
    made.close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[HostileServer]:
    made = HostileServer(tls=True, workdir=tmp_path)
    yield made
    made.close()


def write_config(tmp_path: Path, clouds: dict[str, Any]) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    return path


def lambda_cloud(server: HostileServer, **extra: Any) -> dict[str, Any]:
    return {"backend": "lambda", "api_key": API_KEY, "base_url": server.url, "timeout": 3,
            "max_retries": 0, **extra}


def glance_keystone(server: HostileServer, **extra: Any) -> dict[str, Any]:
    return {"backend": "glance", "auth_type": "password", "retries": 0, "timeout": 3,
            "auth": {"auth_url": f"{server.url}/v3", "username": "user",
                     "password": PASSWORD, "project_name": "project",
                     "user_domain_name": "Default", "project_domain_name": "Default"},
            **extra}


def glance_direct(server: HostileServer, **extra: Any) -> dict[str, Any]:
    return {"backend": "glance", "auth_type": "none", "endpoint_override": server.url,
            "retries": 0, "timeout": 3, **extra}


def run_cli(config: Path, *args: str, debug: bool = False
            ) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run imagehub; returns the process, its wall time and its peak RSS in KiB."""
    argv = [sys.executable, "-m", "imagehub", "--config", str(config),
            *(["--debug"] if debug else []), *args]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "default"})
    out, err = proc.communicate(timeout=120)
    # Peak over every child so far: a bound, which is all the tests assert.
    rss = _peak_rss_of_children()
    return (subprocess.CompletedProcess(argv, proc.returncode, out, err),
            time.monotonic() - started, rss)


def _peak_rss_of_children() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"secret {secret!r} leaked in:\n{text[-3000:]}"


# -- secrets ------------------------------------------------------------------------------
@pytest.mark.parametrize("debug", [False, True])
def test_lambda_echoing_the_key_never_prints_it(server: HostileServer, tmp_path: Path,
                                                debug: bool) -> None:
    config = write_config(tmp_path, {"lam": lambda_cloud(server)})
    result, _, _ = run_cli(config, "-c", "lam", "list", debug=debug)
    assert result.returncode == 1
    assert "imagehub: error:" in result.stderr
    assert_clean(result.stdout + result.stderr, API_KEY)
    if not debug:
        assert result.stderr.count("\n") == 1, result.stderr  # one line, nothing else


def test_lambda_key_absent_from_library_errors_and_logs(server: HostileServer,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    from imagehub.backends.lambda_cloud import LambdaManager

    caplog.set_level(logging.DEBUG)
    manager = LambdaManager(api_key=API_KEY, base_url=server.url, timeout=3, max_retries=0)
    with pytest.raises(ImageHubError) as info:
        manager.list()
    error = info.value
    for text in (str(error), repr(error), error.message, error.hint or "",
                 error.server_message or "", caplog.text, repr(manager)):
        assert_clean(text, API_KEY)
    assert "<redacted>" in str(error)  # the echo was there, and was taken out


@pytest.mark.parametrize("debug", [False, True])
def test_url_userinfo_never_printed(server: HostileServer, tmp_path: Path,
                                    debug: bool) -> None:
    base = server.url.replace("http://", f"http://someone:{URL_PASSWORD}@")
    config = write_config(tmp_path, {"lam": lambda_cloud(server, base_url=base)})
    result, _, _ = run_cli(config, "-c", "lam", "list", debug=debug)
    assert result.returncode == 1
    assert_clean(result.stdout + result.stderr, URL_PASSWORD, f"someone:{URL_PASSWORD}@")
    manager = load_config(config).connect("lam")
    try:
        assert_clean(repr(manager) + repr(getattr(manager, "_client", "")), URL_PASSWORD)
    finally:
        manager.close()


@pytest.mark.parametrize("debug", [False, True])
def test_keystone_echoing_the_password_never_prints_it(server: HostileServer,
                                                       tmp_path: Path, debug: bool) -> None:
    config = write_config(tmp_path, {"os": glance_keystone(server)})
    result, _, _ = run_cli(config, "-c", "os", "list", debug=debug)
    assert result.returncode == 1
    assert "imagehub: error:" in result.stderr
    assert_clean(result.stdout + result.stderr, PASSWORD)
    if debug:
        assert "auth/tokens" in result.stderr  # debug output is still there, minus secrets


@pytest.mark.parametrize("debug", [False, True])
def test_glance_echoing_a_run_time_token_never_prints_it(server: HostileServer,
                                                         tmp_path: Path, debug: bool) -> None:
    server.keystone_ok = True
    server.status = 500
    config = write_config(tmp_path, {"os": glance_keystone(server)})
    result, _, _ = run_cli(config, "-c", "os", "list", debug=debug)
    assert result.returncode == 1
    assert ("GET", "/v2/images?limit=500") in server.requests or any(
        p.startswith("/v2/images") for _, p in server.requests)
    assert_clean(result.stdout + result.stderr, PASSWORD, server.issued_token)


def test_redaction_covers_encoded_spellings_and_headers() -> None:
    _redact.register("s3cr3t/with+chars")
    text = ('{"password": "s3cr3t/with+chars"} url=s3cr3t%2Fwith%2Bchars '
            "Authorization: Bearer abcdefghijkl X-Auth-Token: zzzzzzzzzzzz "
            "https://bob:pw@example.com/x")
    out = _redact.redact(text)
    for leaked in ("s3cr3t", "abcdefghijkl", "zzzzzzzzzzzz", "bob:pw"):
        assert leaked not in out
    assert "example.com/x" in out  # the rest of the line is kept


def test_redaction_covers_basic_auth_and_cut_excerpts() -> None:
    import base64

    _redact.register("basic-key-123456")
    encoded = base64.b64encode(b"basic-key-123456:").decode()
    assert "basic-key" not in _redact.redact(f"you sent {encoded}").lower()
    assert encoded[:12] not in _redact.redact(f"you sent {encoded}")
    # An excerpt cut through the secret leaves none of it behind.
    shown = _redact.excerpt("x" * 50 + "basic-key-123456" + "y" * 100, limit=55)
    assert "basic" not in shown


# -- TLS ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", "off", "no-such-bundle.pem", 3])
@pytest.mark.parametrize("backend", ["lambda", "glance"])
def test_bad_verify_is_a_config_error_naming_the_key(server: HostileServer, tmp_path: Path,
                                                     value: Any, backend: str) -> None:
    cloud = lambda_cloud(server) if backend == "lambda" else glance_direct(server)
    cloud["verify"] = value
    config = load_config(write_config(tmp_path, {"c": cloud}))
    with pytest.raises(ConfigError, match="verify"):
        config.connect("c")


@pytest.mark.parametrize("backend", ["lambda", "glance"])
def test_self_signed_tls_is_refused_then_accepted_with_its_ca(tls_server: HostileServer,
                                                              tmp_path: Path,
                                                              backend: str) -> None:
    make = lambda_cloud if backend == "lambda" else glance_direct
    assert tls_server.cert_path is not None
    config = write_config(tmp_path, {
        "strict": make(tls_server),
        "pinned": make(tls_server, verify=str(tls_server.cert_path)),
        "off": make(tls_server, verify=False)})
    strict, _, _ = run_cli(config, "-c", "strict", "list")
    assert strict.returncode == 1
    assert "TLS" in strict.stderr or "certificate" in strict.stderr, strict.stderr
    # With its CA the handshake passes; the server then answers 401 (echo mode).
    pinned, _, _ = run_cli(config, "-c", "pinned", "list")
    assert "certificate" not in pinned.stderr.lower()
    off, _, _ = run_cli(config, "-c", "off", "list")
    warnings = [line for line in off.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1 and "verification is off" in warnings[0], off.stderr
    assert "InsecureRequestWarning" not in off.stderr
    assert all(line.startswith("imagehub: ") for line in off.stderr.splitlines())


def test_plain_http_to_a_remote_host_warns() -> None:
    from imagehub import _tls

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logging.getLogger("imagehub.tls").addHandler(handler)
    try:
        _tls.warn_cleartext("http://127.0.0.1:5000")
        _tls.warn_cleartext("http://images.example.test:9292", "the token")
    finally:
        logging.getLogger("imagehub.tls").removeHandler(handler)
    assert [r.getMessage() for r in records] == [
        "http://images.example.test:9292 is plain http: the token travel in clear text; "
        "use https"]


# -- deadlines ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["silent", "drip", "drip-head"])
@pytest.mark.parametrize("backend", ["lambda", "glance", "keystone", "keystone-itself"])
def test_stalling_servers_fail_within_the_timeout(server: HostileServer, tmp_path: Path,
                                                  mode: str, backend: str) -> None:
    server.mode = mode
    server.drip_every = 0.3
    make = {"lambda": lambda_cloud, "glance": glance_direct, "keystone": glance_keystone,
            "keystone-itself": glance_keystone}[backend]
    # "keystone": Keystone answers and the Glance it names misbehaves; "keystone-itself":
    # Keystone misbehaves.
    server.keystone_ok = backend == "keystone"
    server.keystone_misbehaves = backend == "keystone-itself"
    config = write_config(tmp_path, {"c": make(server, timeout=2)})
    result, seconds, _ = run_cli(config, "-c", "c", "list")
    assert "did not answer" in result.stderr or "in time" in result.stderr \
        or "took longer" in result.stderr, result.stderr
    assert result.returncode == 1
    assert result.stderr.startswith("imagehub: error:"), result.stderr
    # 2 s timeout; the bound leaves room for interpreter start-up on a loaded machine.
    assert seconds < 30, seconds


@pytest.mark.parametrize("mode", ["silent", "drip", "drip-head"])
def test_glance_timeouts_are_not_retried_into_multiples_of_the_timeout(
        server: HostileServer, tmp_path: Path, mode: str) -> None:
    """With the default retries a slow Glance used to cost (retries + 1) x up to 3 x the
    timeout: a timeout is the whole budget for the answer, counted from the request."""
    server.mode = mode
    server.drip_every = 0.3
    cloud = glance_direct(server, timeout=4)
    cloud.pop("retries")  # the default: quick failures (refused, 503) are retried
    config = write_config(tmp_path, {"c": cloud})
    result, seconds, _ = run_cli(config, "-c", "c", "list")
    assert result.returncode == 1 and result.stderr.startswith("imagehub: error:")
    assert "in time" in result.stderr or "took longer" in result.stderr, result.stderr
    asked = [p for _m, p in server.requests if "/images" in p]
    assert len(asked) == 1, asked  # one attempt: the timeout was not retried
    assert seconds < 30, seconds


@pytest.mark.parametrize("mode", ["silent", "drip-head"])
def test_lxd_over_https_stalling_fails_within_the_timeout(tls_server: HostileServer,
                                                          tmp_path: Path, mode: str) -> None:
    tls_server.mode = mode
    tls_server.drip_every = 0.3
    assert tls_server.cert_path is not None
    config = write_config(tmp_path, {"c": {
        "backend": "lxd", "endpoint": tls_server.url, "timeout": 2,
        "server_cert": str(tls_server.cert_path),
        "client_cert": str(tmp_path / "client.crt"), "client_key": str(tmp_path / "client.key"),
        "trust_password": PASSWORD}})
    result, seconds, _ = run_cli(config, "-c", "c", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("imagehub: error:"), result.stderr
    assert_clean(result.stderr, PASSWORD)
    assert seconds < 30, seconds


class _DrippingLXD(socketserver.ThreadingUnixStreamServer):
    """An LXD on a unix socket that answers ``GET /1.0`` and then drips (``drip``: the
    body, ``drip-head``: the status line) one byte every 0.3 s, forever."""

    daemon_threads = True

    def __init__(self, path: str, mode: str) -> None:
        self.mode, self.stop = mode, threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def address_string(self) -> str:
                return "unix"

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/1.0":
                    body = json.dumps({"type": "sync", "status": "Success",
                                       "status_code": 200, "metadata": {
                                           "api_extensions": [], "api_status": "stable",
                                           "api_version": "1.0", "auth": "trusted",
                                           "environment": {"server_version": "5.0.2"}}})
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body.encode())
                    return
                head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000000000\r\n\r\n")
                if outer.mode == "drip":
                    self.wfile.write(head)
                    self.wfile.flush()
                while not outer.stop.is_set():
                    try:
                        self.wfile.write(head[:1] if outer.mode == "drip-head" else b" ")
                        self.wfile.flush()
                    except OSError:
                        return
                    outer.stop.wait(0.3)

        super().__init__(path, Handler)


@pytest.mark.parametrize("mode", ["drip", "drip-head"])
def test_lxd_over_its_unix_socket_dripping_fails_within_the_timeout(
        tmp_path: Path, mode: str) -> None:
    """The per-read timeout never fires on a byte every 0.3 s; the deadline does, over
    the unix socket as over HTTPS."""
    short = Path(tempfile.mkdtemp(prefix="ih-", dir="/tmp"))  # AF_UNIX paths are short
    server = _DrippingLXD(str(short / "lxd.socket"), mode)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = write_config(tmp_path, {"c": {
            "backend": "lxd", "endpoint": str(short / "lxd.socket"), "timeout": 2}})
        result, seconds, _ = run_cli(config, "-c", "c", "list")
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("imagehub: error:"), result.stderr
        assert seconds < 30, seconds
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        shutil.rmtree(short, ignore_errors=True)


def test_lxd_pinning_ignores_ca_bundle_variables(tls_server: HostileServer,
                                                 tmp_path: Path) -> None:
    """The pinned certificate is the one checked, whatever the CA variables say."""
    from imagehub.backends.lxd.connection import https_session

    assert tls_server.cert_path is not None
    (tmp_path / "other").mkdir()
    other = HostileServer(tls=True, workdir=tmp_path / "other")  # a different CA
    assert other.cert_path is not None
    try:
        saved = {k: os.environ.get(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                                                 "SSL_CERT_FILE")}
        for key in saved:
            os.environ[key] = str(other.cert_path)
        try:
            session = https_session(tls_server.url, client_cert=None, client_key=None,
                                    server_cert=tls_server.cert_path)
            assert session.get(f"{tls_server.url}/1.0", timeout=5).status_code == 401
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    finally:
        other.close()


def test_glance_has_a_default_timeout() -> None:
    from imagehub.backends.glance import auth as glance_auth

    settings = glance_auth.from_inline({"auth_type": "none",
                                        "endpoint_override": "http://127.0.0.1:9"})
    timeout = settings.session().timeout
    assert isinstance(timeout, tuple) and all(t is not None and t > 0 for t in timeout)


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("mode", ["endless", "huge"])
@pytest.mark.parametrize("backend", ["lambda", "glance", "keystone-itself"])
def test_oversized_answers_fail_with_bounded_memory(server: HostileServer, tmp_path: Path,
                                                    mode: str, backend: str,
                                                    debug: bool) -> None:
    server.mode = mode
    server.huge_bytes = 80 * 2**20  # past every cap, the 64 MiB backstop included
    server.keystone_misbehaves = backend == "keystone-itself"
    make = {"lambda": lambda_cloud, "glance": glance_direct,
            "keystone-itself": glance_keystone}[backend]
    config = write_config(tmp_path, {"c": make(server, timeout=60)})
    result, _, rss_kib = run_cli(config, "-c", "c", "list", debug=debug)
    assert result.returncode == 1
    assert "larger than" in result.stderr, result.stderr[-2000:]
    # Generous: the whole 80 MB listing parsed would take well over 1 GiB.
    assert rss_kib < 600 * 1024, rss_kib


def test_upload_cut_midway_says_so_with_bytes_moved(server: HostileServer,
                                                   tmp_path: Path) -> None:
    server.mode = "cut"
    from imagehub.backends.glance import GlanceManager

    config = load_config(write_config(tmp_path, {"c": glance_direct(server)}))
    manager = config.connect("c")
    assert isinstance(manager, GlanceManager)
    payload = tmp_path / "disk.raw"
    payload.write_bytes(os.urandom(8 * 2**20))
    with pytest.raises(TransferError) as info:
        manager.create(payload, name="cut-me")
    text = str(info.value)
    assert "connection was lost after" in text and "bytes" in text, text
    assert "cannot connect" not in text


def test_slow_upload_is_not_cut_by_the_timeout(server: HostileServer,
                                               tmp_path: Path) -> None:
    """Image data is bounded by inactivity: an upload longer than the timeout that never
    stalls for that long goes through."""
    server.mode = "sink"
    from imagehub.backends.glance import GlanceManager
    from imagehub.backends.glance.transfer import UploadBody

    config = load_config(write_config(tmp_path, {"c": glance_direct(server, timeout=1)}))
    manager = config.connect("c")
    assert isinstance(manager, GlanceManager)

    def slow() -> Iterator[bytes]:
        for _ in range(8):
            time.sleep(0.4)
            yield b"x" * 65536

    started = time.monotonic()
    body = UploadBody(slow(), 8 * 65536, "slow upload")
    response = manager.http.request("PUT", "images/x/file", "slow upload", data=body,
                                    retry=False)
    assert response.status_code == 204
    assert time.monotonic() - started > 2  # longer than the 1 s timeout, and not cut


# -- quiet libraries ----------------------------------------------------------------------
def test_unreachable_keystone_prints_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"os": {
        "backend": "glance", "auth_type": "password", "retries": 0, "timeout": 3,
        "auth": {"auth_url": "http://127.0.0.1:9/v3", "username": "u",
                 "password": PASSWORD, "project_name": "p",
                 "user_domain_name": "Default", "project_domain_name": "Default"}}})
    result, _, _ = run_cli(config, "-c", "os", "list")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Failed to discover" not in result.stderr


# -- aggregates ---------------------------------------------------------------------------
def test_latest_reports_failed_clouds(server: HostileServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"lam": lambda_cloud(server)})
    with Hub(config) as hub, pytest.raises(IncompleteAnswer) as info:
        hub.latest("debian")
    assert [f.cloud for f in info.value.failures] == ["lam"]
    assert_clean(str(info.value), API_KEY)
    result, _, _ = run_cli(config, "latest", "debian")
    assert result.returncode == 1
    assert "imagehub: warning: cloud 'lam'" in result.stderr
    assert_clean(result.stderr, API_KEY)


# -- config values a careless file holds --------------------------------------------------
@pytest.mark.parametrize("timeout", [0, -1, ".nan", ".inf"])
@pytest.mark.parametrize("backend", ["lambda", "glance"])
def test_nonsense_timeouts_are_config_errors_naming_cloud_and_key(
        server: HostileServer, tmp_path: Path, timeout: object, backend: str) -> None:
    make = lambda_cloud if backend == "lambda" else glance_direct
    cloud = make(server)
    cloud.pop("timeout")
    path = write_config(tmp_path, {"c": cloud})
    path.write_text(path.read_text() + f"    timeout: {timeout}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path).connect("c")
    assert "cloud 'c'" in str(info.value) and "timeout" in str(info.value)


def test_backend_config_errors_name_the_cloud(server: HostileServer, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, {"mine": glance_direct(server, verify="off")}))
    with pytest.raises(ConfigError) as info:
        config.connect("mine")
    assert info.value.cloud == "mine" and info.value.key == "verify"


def test_alias_bomb_as_a_wrong_typed_value_fails_fast(tmp_path: Path) -> None:
    levels = ["&a [" + ", ".join(['"lol"'] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"&{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "clouds.yaml"
    # timeout wants a number; it gets a list whose last item expands to 9**9 strings.
    path.write_text("clouds:\n  c:\n    backend: lambda\n    api_key: abcdefgh\n"
                    f"    timeout: [{', '.join(levels)}]\n")
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path).connect("c")
    assert time.monotonic() - started < 5  # generous; a repr of it would never finish
    assert "timeout" in str(info.value) and len(str(info.value)) < 500


def test_any_backends_secret_option_is_registered(tmp_path: Path) -> None:
    """A plugin's secret option is redacted even if the plugin forgets to."""
    from imagehub.config import CloudConfig
    from imagehub.manager import ImageManager, Option

    class Plugin(ImageManager):
        name = "plugin"
        options = {"token": Option(str, secret=True)}

    CloudConfig("p", "plugin", {"token": "plugin-secret-31337"}).resolved_options(
        Plugin)  # type: ignore[type-abstract]
    error = ImageHubError("server said: your token plugin-secret-31337 is wrong")
    assert_clean(str(error), "plugin-secret-31337")


def test_duplicate_keys_are_refused_but_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text("clouds:\n  a:\n    backend: local\n    <<: {path: /tmp/x}\n"
                    "    path: /tmp/y\n")
    assert load_config(path).clouds["a"].options["path"] == "/tmp/y"
    path.write_text("clouds:\n  a: {backend: local}\n  a: {backend: lambda}\n")
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load_config(path)
