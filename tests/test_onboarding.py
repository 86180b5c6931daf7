"""A newcomer's first minutes: clouds from other tools, `imagehub clouds`, global options
anywhere, errors that say where the configuration goes."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagehub.cli import main
from imagehub.config import load_config
from imagehub.errors import ConfigError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with OpenStack, lxc and Lambda configured, and no imagehub file."""
    for var in list(os.environ):
        if var.startswith("OS_") or var in ("LAMBDA_API_KEY", "IMAGEHUB_CONFIG", "LXD_CONF"):
            monkeypatch.delenv(var)
    home = tmp_path / "home"
    (home / ".config" / "openstack").mkdir(parents=True)
    (home / ".config" / "lxc").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.chdir(tmp_path)
    (home / ".config" / "openstack" / "clouds.yaml").write_text(
        "clouds:\n  devstack:\n    auth: {auth_url: 'http://127.0.0.1:9/identity', "
        "username: u, password: p, project_name: p, user_domain_name: Default, "
        "project_domain_name: Default}\n")
    (home / ".config" / "lxc" / "config.yml").write_text(
        "default-remote: local\nremotes:\n"
        "  local: {addr: 'unix://', protocol: lxd, public: false}\n"
        "  lab: {addr: 'https://127.0.0.1:9', protocol: lxd, public: false}\n"
        "  images: {addr: 'https://images.lxd.canonical.com', protocol: simplestreams, "
        "public: true}\n")
    monkeypatch.setenv("LAMBDA_API_KEY", "secret-key-for-test-1234")
    return home


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in rows}


def test_other_tools_clouds_usable_without_imagehub_file(
        home: Path, capsys: pytest.CaptureFixture[str], lxd_socket: Path) -> None:
    code, out, err = run(capsys, "clouds", "-f", "json")
    assert code == 0, err
    rows = by_name(json.loads(out))
    assert rows["local"]["backend"] == "local" and rows["local"]["default"]
    assert rows["devstack"]["backend"] == "glance"
    assert str(home / ".config" / "openstack" / "clouds.yaml") in rows["devstack"]["source"]
    assert rows["lab"]["backend"] == "lxd" and "lxc remote" in rows["lab"]["source"]
    # lxc's own 'local' remote cannot take imagehub's built-in name; it is offered renamed.
    assert rows["lxc-local"]["backend"] == "lxd"
    assert "images" not in rows  # an image server is not a cloud
    assert rows["lambda"]["source"] == "environment LAMBDA_API_KEY"
    assert "secret-key-for-test-1234" not in out + err
    # It says which files it read and where it looked.
    assert str(home / ".config" / "lxc" / "config.yml") in err
    assert "looked in:" in err and "not present" in err


def test_table_lists_source_and_files(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "clouds")
    assert code == 0
    assert "SOURCE" in out and "read: " in out and "looked in: " in out


def test_imagehub_file_wins_renames_and_hides(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = home / ".config" / "imagehub" / "clouds.yaml"
    cfg.parent.mkdir()
    cfg.write_text(f"clouds:\n  devstack: {{backend: local, path: {tmp_path / 's'}}}\n"
                   "discovered:\n  rename: {lab: prod-lxd}\n  hide: [lambda]\n")
    rows = by_name(json.loads(run(capsys, "clouds", "-f", "json")[1]))
    assert rows["devstack"]["backend"] == "local"
    assert rows["devstack"]["source"] == f"imagehub {cfg}"
    assert "prod-lxd" in rows and "lab" not in rows
    assert "lambda" not in rows
    # The file's own cloud is found without reading another tool's files.
    config = load_config()
    assert config.cloud("devstack").backend == "local"
    table = config.discovery
    assert table is not None and table.read == []


def test_discovery_can_be_turned_off(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = home / ".config" / "imagehub" / "clouds.yaml"
    cfg.parent.mkdir()
    cfg.write_text("discovered: false\n")
    rows = by_name(json.loads(run(capsys, "clouds", "-f", "json")[1]))
    assert list(rows) == ["local"]


def test_unreadable_other_tool_file_is_a_warning_not_a_failure(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / ".config" / "openstack" / "clouds.yaml").write_text("clouds: [\n")
    code, out, err = run(capsys, "clouds", "-f", "json")
    assert code == 0
    assert "lab" in by_name(json.loads(out))
    assert "warning: openstack" in err and "clouds.yaml" in err
    assert run(capsys, "list", "-c", "local")[0] == 0
    # Asking for a cloud of the unreadable file says why it is missing.
    code, _, err = run(capsys, "list", "-c", "devstack")
    assert code == 1 and "could not read: openstack" in err


def test_missing_cloud_says_where_config_goes(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "list", "-c", "lab-lxd")
    assert code == 1
    assert "no cloud named 'lab-lxd'" in err
    assert str(home / ".config" / "imagehub" / "clouds.yaml") in err
    assert "imagehub clouds" in err


def test_config_pointed_at_openstack_file_says_whose_it_is(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / ".config" / "openstack" / "clouds.yaml"
    with pytest.raises(ConfigError, match=r"looks like an OpenStack clouds\.yaml") as info:
        load_config(path)
    assert "drop --config" in str(info.value)


@pytest.mark.parametrize("args", [
    ("list", "-c", "bob", "--format", "json"),
    ("list", "-c", "bob", "-f", "json"),
    ("-f", "json", "list", "-c", "bob"),
    ("list", "--cloud=bob", "--format=json", "--quiet"),
    ("-c", "bob", "list", "-f", "json"),
])
def test_global_options_before_or_after_the_command(
        args: tuple[str, ...], home: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "own.yaml"
    cfg.write_text(f"clouds:\n  bob: {{backend: local, path: {tmp_path / 'bob'}}}\n")
    image = tmp_path / "disk.img"
    image.write_bytes(os.urandom(1000))
    assert run(capsys, "--config", str(cfg), "create", str(image), "--name", "x",
               "-c", "bob")[0] == 0
    code, out, err = run(capsys, "--config", str(cfg), *args)
    assert code == 0, err
    assert [i["name"] for i in json.loads(out)] == ["x"]


def test_debug_and_config_after_a_nested_command(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "alias", "remove", "nope", "--debug", "-c", "local")
    assert code == 1 and "Traceback" in err and "no alias named 'nope'" in err
    code, _, err = run(capsys, "alias", "remove", "nope", "--config", str(tmp_path / "no.yaml"))
    assert code == 1 and "file not found" in err


def test_check_reports_every_cloud_and_fails_if_any_fails(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "own.yaml"
    cfg.write_text("discovered: false\nclouds:\n"
                   f"  store: {{backend: local, path: {tmp_path / 'store'}}}\n"
                   "  down: {backend: lambda, api_key_env: LAMBDA_API_KEY, "
                   "base_url: 'http://127.0.0.1:9', max_retries: 0, timeout: 5}\n")
    code, out, _ = run(capsys, "--config", str(cfg), "clouds", "--check")
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert code == 1
    assert lines["store"] == "ok" and lines["local"] == "ok"
    assert lines["down"].startswith("FAILED: ")
    assert "secret-key-for-test-1234" not in out
    code, out, _ = run(capsys, "--config", str(cfg), "clouds", "--check", "-f", "json")
    assert code == 1
    assert {r["name"]: r["ok"] for r in json.loads(out)} == {
        "local": True, "store": True, "down": False}


def test_lxc_remote_without_client_cert_uses_imagehub_folder(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pylxd")
    from imagehub.backends.lxd.connection import endpoint_from_options

    endpoint = endpoint_from_options(None, remote="lab")
    lxc_dir = home / ".config" / "lxc"
    assert endpoint.client_cert is not None
    assert lxc_dir not in endpoint.client_cert.parents
    assert (home / ".config" / "imagehub") in endpoint.client_cert.parents
    # With lxc's own pair present, lxc's identity is used (and not rewritten).
    (lxc_dir / "client.crt").write_text("x")
    (lxc_dir / "client.key").write_text("x")
    assert endpoint_from_options(None, remote="lab").client_cert == lxc_dir / "client.crt"


def test_cloud_already_in_the_file_is_not_listed_twice(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "own.yaml"
    cfg.write_text("clouds:\n  os-dev: {backend: openstack, cloud: devstack}\n"
                   "  lam: {backend: lambda}\n")
    code, out, err = run(capsys, "--config", str(cfg), "clouds", "-f", "json")
    assert code == 0, err
    rows = by_name(json.loads(out))
    assert "devstack" not in rows and "lambda" not in rows
    assert rows["os-dev"]["source"] == f"imagehub {cfg}"
    assert "already configured as 'os-dev'" in err


def complete(words: str, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What bash completion offers for the last word of ``words``."""
    monkeypatch.setenv("_IMAGEHUB_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", words)
    monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - (0 if words.endswith(" ")
                                                                 else 1)))
    from imagehub.cli import cli

    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(prog_name="imagehub")
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert all("," in line for line in lines), lines
    return [line.split(",", 1)[1] for line in lines]


def test_completion_of_clouds_and_refs(home: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "own.yaml"
    cfg.write_text("discovered: false\nclouds:\n"
                   f"  lab: {{backend: local, path: {tmp_path / 'lab'}}}\n")
    image = tmp_path / "d.img"
    image.write_bytes(os.urandom(1000))
    assert run(capsys, "--config", str(cfg), "-c", "lab", "create", str(image), "--name",
               "webby", "--alias", "webby-a")[0] == 0
    assert complete(f"imagehub --config {cfg} -c ", monkeypatch, capsys) == ["local", "lab"]
    assert complete(f"imagehub --config {cfg} -c lab show web", monkeypatch, capsys) == [
        "webby", "webby-a"]
    assert complete(f"imagehub --config {cfg} export lab:webby-", monkeypatch, capsys) == [
        "lab:webby-a"]
    assert complete(f"imagehub --config {cfg} show ", monkeypatch, capsys) == [
        "local:", "lab:"]
    # A broken config completes nothing instead of printing a traceback.
    cfg.write_text("clouds: [\n")
    assert complete(f"imagehub --config {cfg} show ", monkeypatch, capsys) == []


def test_a_new_lxd_client_certificate_in_lxcs_folder_is_announced(
        home: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("pylxd")
    from imagehub.backends.lxd.connection import ensure_client_cert

    own = home / ".config" / "imagehub" / "lxd" / "client.crt"
    with caplog.at_level(logging.WARNING, logger="imagehub"):
        ensure_client_cert(own, own.with_suffix(".key"))
    assert own.exists() and caplog.text == ""  # imagehub's own folder: nothing to say
    lxcs = home / ".config" / "lxc" / "client.crt"  # e.g. client_cert: ~/.config/lxc/...
    with caplog.at_level(logging.WARNING, logger="imagehub"):
        ensure_client_cert(lxcs, lxcs.with_suffix(".key"))
    assert lxcs.exists() and str(lxcs) in caplog.text and "lxc's configuration" in caplog.text


@pytest.fixture
def lxd_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A listening unix socket where LXD_DIR says LXD's is (AF_UNIX paths are short)."""
    import shutil
    import socket
    import tempfile

    lxd_dir = Path(tempfile.mkdtemp(prefix="ihlxd-", dir="/tmp"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(lxd_dir / "unix.socket"))
    sock.listen()
    monkeypatch.setenv("LXD_DIR", str(lxd_dir))
    yield lxd_dir / "unix.socket"
    sock.close()
    shutil.rmtree(lxd_dir, ignore_errors=True)


def lxd_rows(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    code, out, err = run(capsys, "clouds", "-f", "json")
    assert code == 0, err
    return {n: r for n, r in by_name(json.loads(out)).items() if r["backend"] == "lxd"}


def test_lxc_without_config_offers_its_builtin_local_remote(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], lxd_socket: Path) -> None:
    """lxc before 'lxc remote add' ever ran: no config.yml, yet 'local' works in lxc."""
    (home / ".config" / "lxc" / "config.yml").unlink()
    rows = lxd_rows(capsys)
    assert list(rows) == ["lxc-local"]
    assert "lxc's built-in remote" in rows["lxc-local"]["source"]
    assert str(home / ".config" / "lxc" / "config.yml") in rows["lxc-local"]["source"]
    # Nothing was written into lxc's folder to get there.
    assert list((home / ".config" / "lxc").iterdir()) == []
    # A file, a directory or nothing where the socket should be is no LXD.
    for stand_in in ("file", "dir", "none"):
        lxd_dir = tmp_path / stand_in
        lxd_dir.mkdir()
        if stand_in == "file":
            (lxd_dir / "unix.socket").touch()
        elif stand_in == "dir":
            (lxd_dir / "unix.socket").mkdir()
        monkeypatch.setenv("LXD_DIR", str(lxd_dir))
        assert lxd_rows(capsys) == {}


def test_lxc_lays_its_static_local_over_every_config(
        home: Path, capsys: pytest.CaptureFixture[str], lxd_socket: Path) -> None:
    """lxc's 'local' is static: a config.yml without it, or with another address for it,
    still has lxc's own (keeping a project set on it), as lxc loads the file."""
    from imagehub.backends.lxd.connection import from_lxc_remote

    config = home / ".config" / "lxc" / "config.yml"
    config.write_text("remotes:\n  lab: {addr: 'https://127.0.0.1:9', protocol: lxd}\n")
    assert sorted(lxd_rows(capsys)) == ["lab", "lxc-local"]
    assert from_lxc_remote("local").url == f"unix:{lxd_socket}"
    config.write_text("remotes:\n  local: {addr: 'https://10.0.0.1:8443', protocol: lxd, "
                      "project: web}\n")
    found = from_lxc_remote("local")
    assert (found.url, found.project) == (f"unix:{lxd_socket}", "web")
