"""One filter vocabulary on every backend; tables escape what could forge a line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import imagehub
from imagehub import ImageManager
from imagehub.backends.lambda_cloud import LambdaManager, Pacer
from imagehub.backends.local import LocalManager
from imagehub.cli import main
from tests.cli_runner import CLIRun, run_on_local_store
from tests.servers.lambda_api import LambdaAPIServer


@pytest.fixture
def local(tmp_path: Path) -> LocalManager:
    m = LocalManager(path=tmp_path / "store")
    m.create(b"a" * 1000, name="small", properties={"family": "deb", "os_type": "linux"},
             tags=["x"])
    m.create(b"b" * 5000, name="big", properties={"family": "ubu"}, tags=["y"])
    m.create(b"c" * 3000, name="mid", properties={"family": "arch"}, aliases=["m"])
    return m


@pytest.fixture
def lam(lambda_api_server: LambdaAPIServer) -> Iterator[LambdaManager]:
    m = LambdaManager(api_key=lambda_api_server.api_key, base_url=lambda_api_server.url,
                      timeout=5.0, pacer=Pacer(0), launch_pacer=Pacer(0),
                      sleep=lambda _s: None, cloud="lambda-test")
    yield m
    m.close()


@pytest.fixture(params=["local", "lambda"])
def manager(request: pytest.FixtureRequest) -> ImageManager:
    m: ImageManager = request.getfixturevalue("local" if request.param == "local" else "lam")
    return m


@pytest.mark.parametrize("filters", [
    {"famly": "x"}, {"nmae": "x"}, {"latest": 1}, {"marker": "x"}, {"sort_key": "properties"},
    {"sort_dir": "up"}, {"size_min": "big"}, {"size_max": -1}, {"properties.": "x"},
    {"no_such_property_anywhere": "x"},
])
def test_bad_filters_are_refused_not_empty(manager: ImageManager,
                                           filters: dict[str, Any]) -> None:
    with pytest.raises(imagehub.InvalidArgument) as exc:
        list(manager.all(**filters))
    assert isinstance(exc.value, ValueError)
    if "marker" not in filters:
        with pytest.raises(imagehub.InvalidArgument):
            manager.list(**filters)
    with pytest.raises(imagehub.InvalidArgument, match="not a filter"):
        list(manager.all(limit=3))


def test_vocabulary_is_listed_in_the_error(manager: ImageManager) -> None:
    with pytest.raises(imagehub.InvalidArgument, match="did you mean 'family'") as exc:
        list(manager.all(famly="x"))
    for key in ("size_min", "sort_key", "alias", "tag", "properties.KEY"):
        assert key in str(exc.value)


def test_pyrax_keys_on_every_backend(manager: ImageManager) -> None:
    every = list(manager.all())
    sizes = sorted({i.size for i in every if i.size is not None})
    cut = sizes[len(sizes) // 2] if sizes else 1  # Lambda lists no sizes: none qualifies
    assert {i.id for i in manager.all(size_min=cut)} == \
        {i.id for i in every if i.size is not None and i.size >= cut}
    assert {i.id for i in manager.all(size_max=str(cut))} == \
        {i.id for i in every if i.size is not None and i.size <= cut}
    by_name = [i.name for i in manager.all(sort_key="name", sort_dir="desc")]
    assert by_name == sorted((i.name for i in every), key=str, reverse=True)
    asc = [i.size for i in manager.all(sort_key="size")]
    assert asc == sorted(asc, key=lambda s: -1 if s is None else s)


def test_a_list_of_values_means_any_of(manager: ImageManager) -> None:
    every = list(manager.all())
    names = sorted({i.name or "" for i in every})[:2]
    assert {i.id for i in manager.all(name=names)} == {i.id for i in every if i.name in names}
    assert {i.id for i in manager.all(name=[names[0]])} == \
        {i.id for i in every if i.name == names[0]}


def test_property_shorthand_and_long_form(local: LocalManager) -> None:
    assert [i.name for i in local.all(os_type="linux")] == ["small"]
    long_form: dict[str, Any] = {"properties.os_type": "linux"}
    assert [i.name for i in local.all(**long_form)] == ["small"]
    absent: dict[str, Any] = {"properties.absent": "x"}
    assert list(local.all(**absent)) == []  # the long form may be empty
    assert [i.name for i in local.all(tag=["x", "y"], sort_key="name")] == ["big", "small"]
    assert [i.name for i in local.all(alias="m")] == ["mid"]


cli = run_on_local_store


@pytest.mark.parametrize("args", [
    ("--filter", "famly=x"), ("--filter", "latest=1"), ("--sort", "properties"),
    ("--sort", "raw"), ("--filter", "size_min=huge"), ("--filter", "sort_dir=sideways"),
    ("--sort=",), ("--sort", "-"), ("--sort", "--name"),  # an empty key listed unsorted
])
def test_cli_usage_errors(local: LocalManager, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, out, err = cli(tmp_path, capsys, "list", *args)
    assert code == 2 and "Traceback" not in err and out == "", err


def test_cli_repeated_filter_and_pyrax_keys(local: LocalManager, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(tmp_path, capsys, "--format", "json", "list", "--filter", "name=big",
                         "--filter", "name=small", "--sort", "name")
    assert code == 0, err
    assert [i["name"] for i in json.loads(out)] == ["big", "small"]
    code, out, _ = cli(tmp_path, capsys, "--format", "json", "list", "--filter",
                       "size_min=2000", "--filter", "sort_key=size", "--filter",
                       "sort_dir=desc")
    assert [i["name"] for i in json.loads(out)] == ["big", "mid"]
    code, out, _ = cli(tmp_path, capsys, "--format", "json", "list", "--sort",
                       "properties.family")
    assert [i["name"] for i in json.loads(out)] == ["mid", "small", "big"]


def test_cli_filters_on_lambda_are_checked(lambda_api_server: LambdaAPIServer, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text("clouds:\n  lambda: {backend: lambda, api_key_env: I10_KEY, "
                      f"base_url: '{lambda_api_server.url}'}}\n")
    monkeypatch.setenv("I10_KEY", lambda_api_server.api_key)
    for args, code in ((("--filter", "famly=x"), 2), (("--filter", "size_min=1"), 0),
                       (("--filter", "sort_key=name"), 0)):
        capsys.readouterr()
        try:
            main(["--config", str(config), "-c", "lambda", "list", *args])
            got = 0
        except SystemExit as exc:
            got = int(exc.code or 0)
        _out, err = capsys.readouterr()
        assert got == code, err
        assert "Traceback" not in err




def test_tables_escape_control_characters_json_keeps_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = LocalManager(path=tmp_path / "store")
    evil = "ok\nFAKE-ID  forged  x86_64  1B  active  public\x1b[2J\x07\u2028\x9b"
    store.create(b"x", name="n", description=evil, properties={"p": evil})
    # create() refuses such a name, but a server may hand one back: put it in the catalog.
    import sqlite3
    with sqlite3.connect(tmp_path / "store" / "catalog.sqlite") as db:
        db.execute("UPDATE images SET name = ?", (evil,))
    code, out, _ = cli(tmp_path, capsys, "list")
    assert code == 0 and out.count("\n") == 2
    assert "\x1b" not in out and "\\x1b" in out and "\x07" not in out
    image_id = json.loads(cli(tmp_path, capsys, "--format", "json", "list")[1])[0]["id"]
    code, out, _ = cli(tmp_path, capsys, "show", image_id)
    assert not any(line.startswith("FAKE-ID") for line in out.splitlines())
    assert "\\n" in out and "\u2028" not in out and "\x9b" not in out
    code, out, _ = cli(tmp_path, capsys, "--format", "json", "show", image_id)
    record = json.loads(out)
    assert record["description"] == evil and record["properties"]["p"] == evil
    assert record["name"] == evil
    code, out, _ = cli(tmp_path, capsys, "--format", "yaml", "show", image_id)
    import yaml
    assert yaml.safe_load(out)["description"] == evil


def test_all_clouds_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "two.yaml"
    config.write_text("clouds:\n"
                      f"  east: {{backend: local, path: {tmp_path / 'east'}}}\n"
                      f"  west: {{backend: local, path: {tmp_path / 'west'}}}\n")
    LocalManager(path=tmp_path / "east").create(b"e", name="e", properties={"team": "x"})
    LocalManager(path=tmp_path / "west").create(b"w", name="w")

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(["--config", str(config), "--format", "json", "list", "--all-clouds", *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("--filter", "team=x")  # a property only one cloud's images have
    assert code == 0, err
    assert [i["name"] for i in json.loads(out)] == ["e"]
    code, out, err = run("--filter", "famly=x")
    assert code == 2 and "did you mean 'family'" in err and err.count("\n") == 1


def test_latest_prints_the_newest_of_a_family_and_succeeds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = LocalManager(path=tmp_path / "store")
    for version in ("1", "2", "3"):  # newest: created last (version breaks a tie)
        store.create(os.urandom(100), name=f"deb-{version}",
                     properties={"family": "debian", "version": version})
    store.create(os.urandom(100), name="other", properties={"family": "alpine", "version": "9"})
    # A misspelt keyword is refused, not dropped in silence, and says where family goes.
    with pytest.raises(imagehub.InvalidArgument, match="family") as info:
        store.create(os.urandom(100), name="typo", family="debian")
    assert info.value.hint is not None and "properties=" in info.value.hint
    assert [i.name for i in store.all(name="typo")] == []
    store.close()
    code, out, err = cli(tmp_path, capsys, "latest", "debian", "-f", "json")
    assert (code, err) == (0, "")
    assert json.loads(out)["name"] == "deb-3"
    code, out, err = cli(tmp_path, capsys, "latest", "fedora")
    assert code == 1 and out == ""
    assert "no image of family 'fedora' in any configured cloud" in err


@pytest.mark.parametrize("args", [
    ("update", "x"), ("verify",), ("create", "a.img"), ("list", "--filter", "foo"),
    ("list", "--sort", "-"), ("nosuchcmd",), ("-f", "xml", "list"), ("show",),
    ("tag", "add", "x"), ("list", "--limit", "0"), ("export", "x", "-o", ""),
])
def test_usage_errors_are_one_line_saying_where_help_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, out, err = cli(tmp_path, capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("imagehub: error: ") and err.count("\n") == 1, err
    assert "--help'" in err and "Traceback" not in err


def two_local_clouds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLIRun:
    """The CLI with clouds ``a`` and ``b``, local stores under ``tmp_path``, no others."""
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  a: {{backend: local, path: {tmp_path / 'a'}}}\n"
                      f"  b: {{backend: local, path: {tmp_path / 'b'}}}\ndiscovered: false\n")
    return CLIRun(config, capsys)


def test_sync_filters_read_as_list_filters_do(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A repeated --filter key means any of its values, in sync as in list (sync kept
    only the last value); 'latest' is refused as a filter, not a crash."""
    store = LocalManager(path=tmp_path / "a")
    for name, os_name in (("ua1", "alpine"), ("ud1", "debian"), ("uf1", "fedora")):
        store.create(os.urandom(64), name=name, properties={"os": os_name})
    store.close()
    run = two_local_clouds(tmp_path, capsys)
    planned = run.json("sync", "a", "b", "--filter", "os=alpine", "--filter", "os=debian",
                       "--dry-run")
    listed = run.json("-c", "a", "list", "--filter", "os=alpine", "--filter", "os=debian")
    assert len(planned["items"]) == len(listed) == 2
    code, _, err = run("sync", "a", "b", "--filter", "latest=1", "--dry-run")
    assert code == 2 and "use --latest" in err and "unexpected" not in err


def test_cloud_option_narrows_latest_and_clouds_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = LocalManager(path=tmp_path / "a")
    store.create(os.urandom(64), name="deb", properties={"family": "debian"})
    store.close()
    run = two_local_clouds(tmp_path, capsys)
    assert run.json("latest", "debian")["cloud"] == "a"
    code, out, err = run("-c", "b", "latest", "debian")
    assert code == 1 and out == "" and "no image of family 'debian'" in err
    assert [r["name"] for r in run.json("-c", "b", "clouds", "--check")] == ["b"]
    code, out, _ = run("-c", "nope", "clouds", "--check")
    assert code == 1 and "nope" in out and "FAILED" in out


def test_cli_pages_from_limit_with_markers_typed_as_shown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--limit gives the first page and the next marker; the marker goes back in as the
    table shows ids (a prefix); the line is printed under --quiet too: it is data."""
    store = LocalManager(path=tmp_path / "store")
    made = {store.create(os.urandom(64), name=f"p{i}").id for i in range(5)}
    store.close()
    seen: list[str] = []
    code, out, err = cli(tmp_path, capsys, "-q", "list", "--limit", "2")
    while True:
        assert code == 0, err
        rows = [line.split()[0] for line in out.splitlines()[1:]]
        seen += rows
        if "last page" in err:
            break
        marker = err.split("--marker ")[1].strip()
        code, out, err = cli(tmp_path, capsys, "-q", "list", "--limit", "2", "--marker",
                             marker[:12])
    assert len(seen) == 5 and {i for i in made if any(i.startswith(s) for s in seen)} == made


@pytest.mark.parametrize("args", [
    ("create", "f.img", "--name", "x", "--server-cert", "c.pem"),
    ("create", "f.img", "--name", "x", "--no-wait"),
    ("create", "--from-url", "https://example.test/i.img", "--name", "x", "--tag", "t"),
    ("create", "--from-url", "https://example.test/i.img", "--name", "x", "--min-ram", "0"),
    ("create", "--from-remote", "images:debian/12", "--description", "d"),
])
def test_create_refuses_options_its_way_of_creating_does_not_carry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    (tmp_path / "f.img").write_bytes(os.urandom(64))
    code, out, err = cli(tmp_path, capsys, *[str(tmp_path / a) if a == "f.img" else a
                                             for a in args])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert [i.name for i in LocalManager(path=tmp_path / "store").all()] == []


def test_migrate_name_on_a_copy_already_there_is_said_not_dropped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = LocalManager(path=tmp_path / "a")
    store.create(os.urandom(64), name="two")
    store.close()
    run = two_local_clouds(tmp_path, capsys)
    assert run.json("migrate", "a:two", "b", "--name", "first")["name"] == "first"
    for extra in (("--dry-run",), ()):
        code, out, err = run("migrate", "a:two", "b", "--name", "wanted", "-f", "json", *extra)
        assert code == 0, err
        assert json.loads(out)["name"] == "first"
        assert "already holds this image as 'first'" in err and "--name is not applied" in err


def test_sync_names_the_copy_of_a_twin_on_the_first_run(tmp_path: Path) -> None:
    """Two source images of one content: one copy, and both rows name it."""
    import imagehub

    a, b = LocalManager(path=tmp_path / "a"), LocalManager(path=tmp_path / "b")
    data = os.urandom(128)
    a.create(data, name="one")
    a.create(data, name="same-bytes")
    summary = imagehub.sync(a, b)
    assert sorted(t.action for t in summary.items) == ["copied", "present"]
    assert len({t.image.id for t in summary.items if t.image is not None}) == 1
    assert all(t.image is not None for t in summary.items)
    assert len(list(b.all())) == 1


def test_marker_is_an_id_not_a_name(tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    store = LocalManager(path=tmp_path / "store")
    first = store.create(os.urandom(64), name="p0")
    store.create(os.urandom(64), name=first.id[:8])  # a name that looks like an id prefix
    store.create(os.urandom(64), name="alias-holder", aliases=["pos"])
    # None means "not given" for a backend's own create options too.
    assert store.create(os.urandom(64), name="n", protected=None).name == "n"
    store.close()
    for bad in ("pos", "alias-holder"):
        code, _, err = cli(tmp_path, capsys, "list", "--limit", "1", "--marker", bad)
        assert code == 2 and "--marker takes an image id" in err, err


def test_create_refuses_what_the_backend_cannot_keep(tmp_path: Path) -> None:
    """Aliases on a backend without aliases, tags on one that keeps none: refused before
    a byte is read, never dropped (Glance dropped --alias; LXD dropped --tag)."""
    import imagehub
    from imagehub.manager import Capability

    class NoAliasesNoTags(LocalManager):
        capabilities = LocalManager.capabilities & ~Capability.ALIASES
        updatable = LocalManager.updatable - {"tags"}
        unsupported_reason = "this store has no aliases"

    store = NoAliasesNoTags(path=tmp_path / "s")
    with pytest.raises(imagehub.UnsupportedOperation, match="aliases: this store has no"):
        store.create(os.urandom(64), name="a", aliases=["x"])
    with pytest.raises(imagehub.UnsupportedOperation, match="tags"):
        store.create(os.urandom(64), name="t", tags=["x"])
    assert list(store.all()) == []


@pytest.mark.parametrize(("backend", "args"), [
    ({"backend": "glance", "auth_type": "none", "endpoint_override": "http://127.0.0.1:9"},
     ("--from-url", "http://127.0.0.1:9/i.img", "--name", "x", "--public")),
    ({"backend": "glance", "auth_type": "none", "endpoint_override": "http://127.0.0.1:9"},
     ("--from-url", "http://127.0.0.1:9/i.img", "--name", "x", "--alias", "a")),
    ({"backend": "lxd", "endpoint": "/nonexistent/lxd.socket"},
     ("--from-remote", "images:debian/12", "--disk-format", "qcow2")),
])
def test_a_server_side_pull_refuses_what_it_would_drop(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: dict[str, str],
        args: tuple[str, ...]) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text(json.dumps({"clouds": {"c": backend}, "discovered": False}))
    code, out, err = CLIRun(config, capsys)("-c", "c", "create", *args)
    assert code == 2 and out == "" and "cannot be given with" in err, err
