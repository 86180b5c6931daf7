"""Every CLI command on the local backend, with its output and exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imagehub.backends.local import LocalManager
from tests.cli_runner import CLIRun


class CLI(CLIRun):
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(tmp_path / "clouds.yaml", capsys)
        self.config.write_text(
            "clouds:\n"
            f"  local: {{backend: local, path: {tmp_path / 'store'}, project: alice}}\n"
            f"  bob: {{backend: local, path: {tmp_path / 'store'}, project: bob}}\n")



@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(tmp_path, capsys)


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(300_000))
    return path


def test_create_list_show_export_delete(cli: CLI, image_file: Path, tmp_path: Path) -> None:
    made = cli.json("create", str(image_file), "--name", "web", "--alias", "web-latest",
                    "--property", "os=debian", "--public")
    assert isinstance(made, dict)
    assert made["name"] == "web" and made["visibility"] == "public"
    assert made["aliases"] == ["web-latest"] and made["properties"] == {"os": "debian"}
    listed = cli.json("list")
    assert [i["id"] for i in listed] == [made["id"]]
    code, out, _ = cli("list")
    assert code == 0 and "web" in out and "ID" in out
    assert cli.json("show", "web-latest")["id"] == made["id"]
    assert yaml.safe_load(cli("--format", "yaml", "show", made["id"][:8])[1])["name"] == "web"
    target = tmp_path / "out.img"
    code, _, err = cli("export", "web", "-o", str(target))
    assert code == 0, err
    assert target.read_bytes() == image_file.read_bytes()
    code, _, err = cli("export", "web", "-o", str(target))
    assert code == 1 and "already exists" in err and "--force" in err
    assert cli("export", "web", "-o", str(target), "--force")[0] == 0
    code, _, err = cli("delete", "web")
    assert code == 0
    assert cli.json("list") == []


def test_list_filter_latest_sort_limit(cli: CLI, tmp_path: Path) -> None:
    for i, (family, version) in enumerate([("a", "1"), ("a", "2"), ("b", "1")]):
        f = tmp_path / f"{i}.img"
        f.write_bytes(os.urandom(1000))
        cli.json("create", str(f), "--name", f"img{i}", "--property", f"family={family}",
                 "--property", f"version={version}")
    names = [i["name"] for i in cli.json("list", "--filter", "family=a")]
    assert sorted(names) == ["img0", "img1"]
    latest = cli.json("list", "--latest")
    assert sorted(i["name"] for i in latest) == ["img1", "img2"]
    by_name = [i["name"] for i in cli.json("list", "--sort", "-name", "--limit", "2")]
    assert by_name == ["img2", "img1"]
    code, _, err = cli("list", "--filter", "nonsense")
    assert code == 2 and "KEY=VALUE" in err
    code, _, err = cli("list", "--sort", "nope")
    assert code == 2


def test_update_alias_share_accept_reject(cli: CLI, image_file: Path) -> None:
    made = cli.json("create", str(image_file), "--name", "base")
    assert isinstance(made, dict)
    updated = cli.json("update", "base", "--name", "base2", "--property", "k=v")
    assert updated["name"] == "base2" and updated["properties"] == {"k": "v"}
    assert cli.json("alias", "add", "base2", "stable")["aliases"] == ["stable"]
    assert cli("alias", "remove", "stable")[0] == 0
    code, _, err = cli("alias", "remove", "stable")
    assert code == 1 and "no alias named 'stable'" in err
    member = cli.json("share", "base2", "bob")
    assert member == {**member, "member_id": "bob", "status": "pending"}
    assert [m["status"] for m in cli.json("members", "base2")] == ["pending"]
    assert cli.json("-c", "bob", "accept", made["id"])["status"] == "accepted"
    assert [i["id"] for i in cli.json("-c", "bob", "list")] == [made["id"]]
    assert cli.json("-c", "bob", "reject", made["id"])["status"] == "rejected"
    assert cli.json("-c", "bob", "list") == []
    code, _, err = cli("-c", "bob", "delete", made["id"])
    assert code == 1
    assert cli("unshare", "base2", "bob")[0] == 0
    assert cli.json("members", "base2") == []


def test_another_project_cannot_remove_an_alias(cli: CLI, image_file: Path) -> None:
    made = cli.json("create", str(image_file), "--name", "ob", "--alias", "ob")
    code, _, err = cli("-c", "bob", "alias", "add", made["id"], "theirs")
    assert code == 1  # bob cannot even see alice's private image
    code, _, err = cli("-c", "bob", "alias", "remove", "ob")
    assert code == 1 and "no alias named 'ob'" in err and "alice" not in err
    assert cli.json("show", made["id"])["aliases"] == ["ob"]


def test_update_property_moves_the_promoted_field(cli: CLI, image_file: Path) -> None:
    cli.json("create", str(image_file), "--name", "fam2", "--property", "family=old")
    shown = cli.json("update", "fam2", "--property", "family=new")
    assert shown["family"] == "new" and shown["properties"] == {"family": "new"}
    assert cli.json("show", "fam2")["family"] == "new"
    assert cli.json("latest", "new")["name"] == "fam2"
    assert cli("latest", "old")[0] == 1
    assert [i["name"] for i in cli.json("list", "--filter", "family=new")] == ["fam2"]
    assert cli.json("list", "--filter", "family=old") == []


def test_list_filters_on_cloud_and_backend(cli: CLI, image_file: Path) -> None:
    made = cli.json("create", str(image_file), "--name", "c1")
    for args in (["cloud=local"], ["backend=local"], ["cloud=local", "backend=local"]):
        listed = cli.json("list", *[a for kv in args for a in ("--filter", kv)])
        assert [i["id"] for i in listed] == [made["id"]], args
        assert listed[0]["cloud"] == "local"
    assert cli.json("list", "--filter", "cloud=bob") == []
    assert cli.json("list", "--filter", "cloud=local", "--limit", "1")[0]["id"] == made["id"]


def test_create_refuses_disk_formats_that_would_mislabel(cli: CLI, tmp_path: Path,
                                                         image_file: Path) -> None:
    meta, rootfs = tmp_path / "meta.tar", tmp_path / "rootfs.img"
    meta.write_bytes(os.urandom(2000))
    rootfs.write_bytes(b"QFI\xfb" + os.urandom(9000))
    code, _, err = cli("create", str(meta), str(rootfs), "--name", "s", "--disk-format", "qcow2")
    assert code != 0 and "split image (metadata + rootfs) takes no disk format" in err
    code, _, err = cli("create", str(image_file), "--name", "x", "--disk-format", "foo")
    assert code != 0 and "unknown disk format 'foo'; imagehub knows" in err and "qcow2" in err
    assert cli.json("list") == []


def test_cloud_prefixed_refs(cli: CLI, image_file: Path) -> None:
    made = cli.json("-c", "bob", "create", str(image_file), "--name", "bobs")
    assert cli.json("show", "bob:bobs")["id"] == made["id"]
    code, _, err = cli("show", "bobs")  # alice cannot see bob's private image
    assert code == 1 and "no image matches 'bobs'" in err


def test_split_image_create_and_export(cli: CLI, tmp_path: Path) -> None:
    meta, rootfs = tmp_path / "meta.tar", tmp_path / "rootfs.squashfs"
    meta.write_bytes(os.urandom(2000))
    rootfs.write_bytes(os.urandom(9000))
    made = cli.json("create", str(meta), str(rootfs), "--name", "split")
    out = tmp_path / "exported"
    assert cli("export", made["id"], "-o", str(out))[0] == 0
    assert (out / "meta.tar").read_bytes() == meta.read_bytes()
    assert (out / "rootfs.squashfs").read_bytes() == rootfs.read_bytes()
    code, _, _err = cli("create", str(meta), str(rootfs), str(meta), "--name", "x")
    assert code == 2


def test_backends_and_clouds(cli: CLI) -> None:
    rows = {r["name"]: r for r in cli.json("backends")}
    assert rows["local"]["available"] is True
    assert "members" in rows["local"]["capabilities"]
    clouds = {r["name"]: r for r in cli.json("clouds")}
    assert set(clouds) == {"local", "bob"} and clouds["local"]["default"] is True


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["show", "missing"], 1, "no image matches 'missing'"),
    (["export", "missing", "-o", "x"], 1, "no image matches"),
    (["create", "/nonexistent/disk.img", "--name", "x"], 1, "cannot read"),
    (["-c", "nowhere", "list"], 1, "no cloud named 'nowhere'"),
    (["launch", "x", "--region", "r", "--instance-type", "t", "--ssh-key", "k"], 1,
     "does not support launch"),
    (["create", "--name", "x"], 2, "Missing argument"),
    (["frobnicate"], 2, "No such command"),
])
def test_errors_are_one_line_with_exit_codes(cli: CLI, args: list[str], code: int,
                                             needle: str) -> None:
    got, _out, err = cli(*args)
    assert got == code
    assert needle in err
    if code == 1:
        assert err.startswith("imagehub: error: ") and err.count("\n") == 1
        assert "Traceback" not in err


def test_debug_shows_traceback_in_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "IMAGEHUB_CONFIG": str(tmp_path / "c.yaml")}
    (tmp_path / "c.yaml").write_text(f"clouds: {{local: {{backend: local, path: {tmp_path}}}}}\n")
    plain = subprocess.run([sys.executable, "-m", "imagehub", "show", "x"], env=env,
                           capture_output=True, text=True)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "imagehub", "--debug", "show", "x"],
                           env=env, capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_export_to_stdout_pipe(tmp_path: Path, image_file: Path) -> None:
    env = {**os.environ, "IMAGEHUB_CONFIG": str(tmp_path / "c.yaml")}
    (tmp_path / "c.yaml").write_text(
        f"clouds: {{local: {{backend: local, path: {tmp_path / 's'}}}}}\n")
    run = [sys.executable, "-m", "imagehub", "--quiet"]
    subprocess.run([*run, "create", str(image_file), "--name", "p"], env=env, check=True,
                   capture_output=True)
    out = subprocess.run([*run, "export", "p", "-o", "-"], env=env, capture_output=True)
    assert out.returncode == 0 and out.stdout == image_file.read_bytes()
    assert out.stderr == b""  # no progress bar in a pipe


def test_corrupt_store_export_leaves_no_partial_file(cli: CLI, image_file: Path,
                                                      tmp_path: Path) -> None:
    made = cli.json("create", str(image_file), "--name", "c")
    blob = tmp_path / "store" / "blobs" / "sha256" / made["checksum"].split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit on disk
    blob.write_bytes(bytes(data))
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    code, _, err = cli("export", "c", "-o", str(out_dir / "c.img"))
    assert code == 1 and "checksum mismatch" in err
    assert list(out_dir.iterdir()) == []


def test_progress_bar_only_on_a_tty(tmp_path: Path, image_file: Path) -> None:
    import pty

    env = {**os.environ, "IMAGEHUB_CONFIG": str(tmp_path / "c.yaml"), "COLUMNS": "100"}
    (tmp_path / "c.yaml").write_text(
        f"clouds: {{local: {{backend: local, path: {tmp_path / 's'}}}}}\n")
    big = tmp_path / "big.img"
    with big.open("wb") as fh:
        for _ in range(64):
            fh.write(os.urandom(1 << 20))
    run = [sys.executable, "-m", "imagehub"]
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    # A real terminal has a size; a bare pty reports 0x0 and progress libraries hide.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.run([*run, "create", str(big), "--name", "big"], env=env,
                          stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "upload" in shown and "B/s" in shown  # a bar with a rate, on a terminal
    piped = subprocess.run([*run, "export", "big", "-o", str(tmp_path / "o.img")], env=env,
                           capture_output=True, text=True)
    assert piped.returncode == 0 and "B/s" not in piped.stderr
    quiet = subprocess.run([*run, "--quiet", "export", "big", "-o", str(tmp_path / "q.img")],
                           env=env, capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_update_sends_every_documented_key(cli: CLI, image_file: Path) -> None:
    cli.json("create", str(image_file), "--name", "upd", "--property", "drop=me",
             "--property", "keep=yes")
    updated = cli.json("update", "upd", "--description", "words", "--property", "new=1",
                       "--remove-property", "drop", "--public")
    assert isinstance(updated, dict)
    assert updated["description"] == "words" and updated["visibility"] == "public"
    assert updated["properties"] == {"keep": "yes", "new": "1"}
    assert cli.json("update", "upd", "--private")["visibility"] == "private"
    code, _, err = cli("update", "upd")
    assert code == 2 and "nothing to change" in err


def test_hints_are_in_the_syntax_of_where_they_are_read(tmp_path: Path) -> None:
    """The CLI says '--force', Python says 'force=True'; neither says both."""
    from imagehub.errors import OutputError

    store = LocalManager(path=tmp_path / "s")
    image = store.create(b"x" * 64, name="h")
    target = tmp_path / "out.img"
    target.write_bytes(b"mine")
    with pytest.raises(OutputError) as info:
        store.export(image).save(target)
    assert info.value.hint == "pass force=True to overwrite it"
    assert info.value.cli_hint == "pass --force to overwrite it"


def test_disk_format_hints_say_the_option_in_the_cli_and_the_keyword_in_python(
        tmp_path: Path) -> None:
    import imagehub

    store = LocalManager(path=tmp_path / "s")
    with pytest.raises(imagehub.InvalidArgument) as info:
        store.create(b"x" * 64, name="n", disk_format="bogus")
    assert "--disk-format" not in (info.value.hint or "")
    assert info.value.cli_hint is not None and "--disk-format" in info.value.cli_hint
