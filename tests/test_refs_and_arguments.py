"""Refs never select an image by accident; bad arguments are imagehub errors; errors pickle."""

from __future__ import annotations

import hashlib
import inspect
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import imagehub
import imagehub.errors
from imagehub import Image
from imagehub.backends.local import LocalManager
from imagehub.cli import main
from imagehub.manager import resolve_ref


def img(id_: str, checksum: str | None = None, **kw: Any) -> Image:
    return Image(id=id_, checksum=checksum, **kw)


SHA = hashlib.sha256(b"x").hexdigest()
POOL = [img("0a1b2c3d-aaaa", f"sha256:{SHA}", name="one"), img("ffee0000-bbbb", None, name="two")]


@pytest.mark.parametrize("ref", [
    "nosuchimage:", "sha256:", "md5:", "typo:" + SHA[:2], "typo:" + SHA[:8], "sha512:" + SHA[:8],
    "md5:" + SHA[:8], SHA[:3], "0a1", "sha256:" + SHA[:3], ":", "sha256:zzzz",
])
def test_refs_that_must_match_nothing(ref: str) -> None:
    with pytest.raises(imagehub.ImageNotFound):
        resolve_ref(POOL, ref)


@pytest.mark.parametrize(("ref", "expected"), [
    (SHA[:4], "0a1b2c3d-aaaa"), ("sha256:" + SHA[:4], "0a1b2c3d-aaaa"),
    ("SHA256:" + SHA[:6].upper(), "0a1b2c3d-aaaa"), ("0a1b", "0a1b2c3d-aaaa"),
    ("ffee", "ffee0000-bbbb"), ("two", "ffee0000-bbbb"),
])
def test_refs_that_match(ref: str, expected: str) -> None:
    assert resolve_ref(POOL, ref).id == expected


@pytest.mark.parametrize("ref", ["", "   ", "a\nb"])
def test_empty_or_control_refs_are_invalid(ref: str) -> None:
    with pytest.raises(imagehub.InvalidArgument):
        resolve_ref(POOL, ref)


def test_the_store_survives_hostile_deletes(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  local: {{backend: local, path: {tmp_path / 's'}}}\n")
    store = LocalManager(path=tmp_path / "s")
    only = store.create(b"precious", name="only")
    digest = (only.checksum or "").split(":")[1]
    for ref in ["nosuchimage:", "typo:" + digest[:2], "sha256:", "md5:" + digest[:8],
                digest[:3], "local:", "sha1:" + digest[:6]]:
        with pytest.raises(SystemExit) as exc:
            main(["--config", str(config), "delete", ref])
        assert exc.value.code in (1, 2), ref
        assert "Traceback" not in capsys.readouterr().err
    assert [i.id for i in store.all()] == [only.id]
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(config), "show", "local:"])
    assert exc.value.code == 2
    assert "names cloud 'local' but no image" in capsys.readouterr().err
    with pytest.raises(imagehub.InvalidArgument):
        store.get(f"{store.cloud}:")


@pytest.mark.parametrize(("kwargs", "kind"), [
    ({"aliases": "abc"}, TypeError),
    ({"tags": "abc"}, TypeError),
    ({"aliases": [1]}, TypeError),
    ({"aliases": ["a", "a"]}, ValueError),
    ({"visibility": "everyone"}, ValueError),
    ({"visibility": 3}, TypeError),
    ({"properties": ["a"]}, TypeError),
    ({"public": "yes"}, TypeError),
    ({"checksum": "sha256:"}, ValueError),
    ({"checksum": "crc32:abcd"}, ValueError),
    ({"description": 5}, TypeError),
    ({"name": None}, TypeError),
    ({"name": ""}, ValueError),
])
def test_wrong_arguments_raise_imagehub_errors(tmp_path: Path, kwargs: dict[str, Any],
                                               kind: type[Exception]) -> None:
    store = LocalManager(path=tmp_path / "s")
    args: dict[str, Any] = {"name": "n", **kwargs}
    with pytest.raises(imagehub.InvalidArgument) as exc:
        store.create(b"data", **args)
    assert isinstance(exc.value, kind)
    assert list(store.all()) == []
    assert list((tmp_path / "s" / "tmp").iterdir()) == []


def test_visibility_is_accepted_in_any_case(tmp_path: Path) -> None:
    store = LocalManager(path=tmp_path / "s")
    assert store.create(b"d", name="n", visibility="Public").visibility.value == "public"


def test_bound_remove_alias_only_removes_its_own(tmp_path: Path) -> None:
    store = LocalManager(path=tmp_path / "s")
    mine = store.create(b"a", name="mine", aliases=["mine-1"])
    theirs = store.create(b"b", name="theirs", aliases=["stable"])
    with pytest.raises(imagehub.ImageNotFound, match="has no alias 'stable'"):
        mine.remove_alias("stable")
    assert store.get(theirs.id).aliases == ("stable",)
    assert mine.remove_alias("mine-1").aliases == ()


def _instances() -> list[imagehub.ImageHubError]:
    made: list[imagehub.ImageHubError] = []
    for _name, cls in inspect.getmembers(imagehub.errors, inspect.isclass):
        if not issubclass(cls, imagehub.ImageHubError):
            continue
        if cls is imagehub.BackendNotFound:
            made.append(cls("nope", ["local", "lxd"]))
        elif cls is imagehub.UnsupportedOperation:
            made.append(cls("lambda", "create", "read-only"))
        elif cls is imagehub.AmbiguousImage:
            made.append(cls("ab", [img("ab1"), img("ab2")], backend="local"))
        elif cls is imagehub.ChecksumMismatch:
            made.append(cls("image", "sha256:aa", "sha256:bb", backend="glance"))
        elif cls is imagehub.ConfigError:
            made.append(cls("bad", path="/x.yaml", cloud="c", key="k", hint="fix it"))
        elif cls is imagehub.RateLimited:
            made.append(cls("slow down", retry_after=3.5, status_code=429))
        elif cls is imagehub.OutputError:
            made.append(cls("cannot write", path="/tmp/x", hint="h"))
        else:
            made.append(cls("message", backend="b", server_message="said", status_code=500,
                            hint="do this"))
    return made


def test_every_error_class_is_tested_here() -> None:
    classes = {type(e) for e in _instances()}
    assert classes == {c for c in vars(imagehub.errors).values()
                       if isinstance(c, type) and issubclass(c, imagehub.ImageHubError)}


@pytest.mark.parametrize("error", _instances(), ids=lambda e: type(e).__name__)
def test_every_error_survives_pickle(error: imagehub.ImageHubError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.args == error.args
    assert {k: v for k, v in vars(copy).items() if k != "candidates"} == \
        {k: v for k, v in vars(error).items() if k != "candidates"}
    if isinstance(error, imagehub.AmbiguousImage):
        assert isinstance(copy, imagehub.AmbiguousImage)
        assert [c.id for c in copy.candidates] == [c.id for c in error.candidates]


def test_unbound_image_error_is_importable_everywhere() -> None:
    from imagehub.models import UnboundImageError

    assert UnboundImageError is imagehub.UnboundImageError is imagehub.errors.UnboundImageError


@pytest.mark.parametrize(("call", "kind"), [
    (lambda m: m.get(123), TypeError),
    (lambda m: m.get(None), TypeError),
    (lambda m: m.export(5), TypeError),
    (lambda m: m.delete(["x"]), TypeError),
    (lambda m: m.add_alias("x", 5), TypeError),
    (lambda m: m.share("x", ""), ValueError),
    (lambda m: m.list(limit="5"), TypeError),
    (lambda m: m.list(limit=0), ValueError),
    (lambda m: list(m.all(latest="yes")), TypeError),
    (lambda m: m.update_member("x", "maybe"), ValueError),
    (lambda m: Image(id="x", visibility="everyone"), ValueError),  # type: ignore[arg-type]
    (lambda m: Image(id="x", tags="abc"), TypeError),  # type: ignore[arg-type]
])
def test_public_methods_refuse_wrong_arguments(tmp_path: Path, call: Any,
                                               kind: type[Exception]) -> None:
    store = LocalManager(path=tmp_path / "s")
    store.create(b"d", name="x")
    with pytest.raises(imagehub.InvalidArgument) as exc:
        call(store)
    assert isinstance(exc.value, kind)
    assert [i.name for i in store.all()] == ["x"]


def test_backend_errors_with_their_own_arguments_pickle_too() -> None:
    from imagehub.backends.lambda_cloud.errors import LaunchQuotaExceeded

    error = LaunchQuotaExceeded("no", code="global/quota-exceeded", hint="ask")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, imagehub.QuotaExceeded) and isinstance(copy, LaunchQuotaExceeded)
    assert (copy.code, copy.hint, str(copy)) == (error.code, error.hint, str(error))


@pytest.mark.parametrize(("changes", "kind"), [
    ({"tags": "abc"}, TypeError),              # was: three tags a, b, c
    ({"tags": ["a", 1]}, TypeError),
    ({"remove_properties": "abc"}, TypeError),  # was: removed properties a, b and c
    ({"public": "no"}, TypeError),              # was: made the image public
    ({"public": 0}, TypeError),
    ({"visibility": "everyone"}, ValueError),   # was: a bare enum ValueError
    ({"visibility": None}, TypeError),
    ({"visibility": 3}, TypeError),
    ({"properties": "k=v"}, TypeError),         # was: AttributeError
    ({"properties": {1: "v"}}, TypeError),
    ({"properties": {"k\n": "v"}}, ValueError),
    ({"description": 5}, TypeError),            # was: stored as '5'
    ({"family": ["f"]}, TypeError),
    ({"name": None}, TypeError),
    ({"name": " "}, ValueError),
    ({"colour": "red"}, ValueError),
])
def test_update_refuses_wrong_arguments_and_changes_nothing(
        tmp_path: Path, changes: dict[str, Any], kind: type[Exception]) -> None:
    store = LocalManager(path=tmp_path / "s")
    before = store.create(b"d", name="x", tags=["keep"], properties={"a": "1", "b": "2"})
    with pytest.raises(imagehub.InvalidArgument) as exc:
        store.update(before, **changes)
    assert isinstance(exc.value, kind)
    with pytest.raises(imagehub.InvalidArgument):
        before.update(**changes)  # the bound form goes through the same checks
    after = store.get(before.id)
    assert (after.name, after.tags, after.properties, after.visibility, after.description) \
        == ("x", ("keep",), {"a": "1", "b": "2"}, imagehub.Visibility.PRIVATE, None)


def test_update_normalises_what_it_accepts(tmp_path: Path) -> None:
    store = LocalManager(path=tmp_path / "s")
    image = store.create(b"d", name="x", properties={"a": "1"})
    image = store.update(image, visibility="PUBLIC", tags=("t1", "t2"),
                         remove_properties=["a"], description=None)
    assert (image.visibility, image.tags, image.properties) == (
        imagehub.Visibility.PUBLIC, ("t1", "t2"), {})


@pytest.mark.parametrize("data", [5, 3.5, None, object()])
def test_unreadable_data_is_a_type_error_too(tmp_path: Path, data: Any) -> None:
    store = LocalManager(path=tmp_path / "s")
    with pytest.raises(imagehub.InvalidImageData) as exc:
        store.create(data, name="x")
    assert isinstance(exc.value, TypeError)
    assert pickle.loads(pickle.dumps(exc.value)).args == exc.value.args
    assert list(store.all()) == []


def test_alias_description_must_be_text(tmp_path: Path) -> None:
    store = LocalManager(path=tmp_path / "s")
    image = store.create(b"d", name="x")
    with pytest.raises(imagehub.InvalidArgument) as exc:
        store.add_alias(image, "al", description=5)  # type: ignore[arg-type]
    assert isinstance(exc.value, TypeError)
    assert store.get(image.id).aliases == ()


@pytest.mark.parametrize(("call", "kind"), [
    (lambda a, b, i: imagehub.migrate(a, i, b, retries="3"), TypeError),  # type: ignore[call-overload,arg-type,unused-ignore]
    (lambda a, b, i: imagehub.migrate(a, i, b, retries=-1), ValueError),
    (lambda a, b, i: imagehub.migrate(a, i, b, verify="no"), TypeError),  # type: ignore[call-overload,arg-type,unused-ignore]
    (lambda a, b, i: imagehub.migrate(a, i, b, progress=5), TypeError),  # type: ignore[call-overload,arg-type,unused-ignore]
    (lambda a, b, i: imagehub.migrate(a, i, b, name=""), ValueError),
    (lambda a, b, i: imagehub.migrate(a, i, b, format=5), TypeError),  # type: ignore[call-overload,arg-type,unused-ignore]
    (lambda a, b, i: imagehub.migrate(a, i, 5), TypeError),  # type: ignore[call-overload,arg-type,unused-ignore]
    (lambda a, b, i: imagehub.sync(a, b, jobs=0), ValueError),
    (lambda a, b, i: imagehub.sync(a, b, jobs="2"), TypeError),  # type: ignore[call-overload,arg-type,unused-ignore]
    (lambda a, b, i: imagehub.sync(a, b, stale_after=-1), ValueError),
    (lambda a, b, i: imagehub.sync(a, b, stale_after="1h"), TypeError),  # type: ignore[call-overload,arg-type,unused-ignore]
    (lambda a, b, i: imagehub.sync(a, b, filters=["family"]), TypeError),  # type: ignore[call-overload,arg-type,unused-ignore]
    (lambda a, b, i: imagehub.sync(a, b, dry_run="yes"), TypeError),  # type: ignore[call-overload,arg-type,unused-ignore]
])
def test_migrate_and_sync_refuse_wrong_options_before_moving_anything(
        tmp_path: Path, call: Any, kind: type[Exception]) -> None:
    src = LocalManager(path=tmp_path / "a", cloud="a")
    dst = LocalManager(path=tmp_path / "b", cloud="b")
    image = src.create(b"bytes", name="x")
    with pytest.raises(imagehub.InvalidArgument) as exc:
        call(src, dst, image)
    assert isinstance(exc.value, kind)
    assert list(dst.all()) == []


@pytest.mark.parametrize(("call", "kind"), [
    (lambda h: h.get(5), TypeError),
    (lambda h: h.get(""), ValueError),
    (lambda h: h.latest(5), TypeError),
    (lambda h: h.latest("f", architecture=5), TypeError),
    (lambda h: h.all(latest="yes"), TypeError),
])
def test_hub_refuses_wrong_arguments(tmp_path: Path, call: Any, kind: type[Exception]) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  local: {{backend: local, path: {tmp_path / 's'}}}\n")
    hub = imagehub.Hub(imagehub.load_config(config))
    with pytest.raises(imagehub.InvalidArgument) as exc:
        call(hub)
    assert isinstance(exc.value, kind)


def test_hub_clouds_is_a_list_not_a_string(tmp_path: Path) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text(f"clouds:\n  lab: {{backend: local, path: {tmp_path / 's'}}}\n")
    with pytest.raises(imagehub.InvalidArgument) as exc:
        imagehub.Hub(imagehub.load_config(config), clouds="lab")
    assert isinstance(exc.value, TypeError)
    assert imagehub.Hub(imagehub.load_config(config), clouds=["lab"]).clouds == ["lab"]


@pytest.mark.parametrize("data", [["text"], [1, 2], [None]])
def test_iterables_of_non_bytes_are_type_errors(tmp_path: Path, data: Any) -> None:
    store = LocalManager(path=tmp_path / "s")
    with pytest.raises(imagehub.InvalidImageData) as exc:
        store.create(data, name="x")
    assert isinstance(exc.value, TypeError)
    assert list(store.all()) == [] and list((tmp_path / "s" / "tmp").iterdir()) == []


def test_text_file_objects_are_type_errors(tmp_path: Path) -> None:
    store = LocalManager(path=tmp_path / "s")
    source = tmp_path / "img"
    source.write_bytes(b"bytes")
    with source.open(encoding="ascii") as text, pytest.raises(imagehub.InvalidImageData) as exc:
        store.create(text, name="x")  # type: ignore[arg-type]
    assert isinstance(exc.value, TypeError)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs /proc/self/mem")
def test_a_source_that_fails_to_read_is_not_blamed_on_the_store(tmp_path: Path) -> None:
    # Reading /proc/self/mem at offset 0 fails with EIO: a real failing source. It was
    # reported as "local store ...: writing an upload failed".
    store = LocalManager(path=tmp_path / "s")
    for source in ("/proc/self/mem", Path("/proc/self/mem")):
        with pytest.raises(imagehub.TransferError) as exc:
            store.create(source, name="x")
        assert "/proc/self/mem" in str(exc.value) and "local store" not in str(exc.value)
    with open("/proc/self/mem", "rb") as fh, pytest.raises(imagehub.TransferError):
        store.create(fh, name="x")
    assert list(store.all()) == [] and list((tmp_path / "s" / "tmp").iterdir()) == []
    assert list((tmp_path / "s" / "blobs" / "sha256").iterdir()) == []


def _error_classes_outside_errors_module() -> set[type[imagehub.ImageHubError]]:
    import importlib
    import pkgutil

    for module in pkgutil.walk_packages(imagehub.__path__, "imagehub."):
        if not module.name.endswith(("__main__", ".demo")):
            importlib.import_module(module.name)

    def below(cls: type[imagehub.ImageHubError]) -> Iterator[type[imagehub.ImageHubError]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from below(sub)

    return {c for c in below(imagehub.ImageHubError)
            if c.__module__ != "imagehub.errors" and c.__module__.startswith("imagehub.")
            and not c.__module__.startswith(("imagehub.backends.", "imagehub.testing"))}


def _more_instances() -> list[imagehub.ImageHubError]:
    from imagehub.compat import ReadOnlyImageError
    from imagehub.hub import CloudFailure, IncompleteAnswer
    from imagehub.migration._convert import StagingSpaceError
    from imagehub.qemuimg import QemuImgMissing
    from imagehub.streams import UnreadableSource

    failure = CloudFailure("lam", imagehub.ServerUnreachable("down", backend="lambda"))
    return [ReadOnlyImageError("public", True),
            IncompleteAnswer("family 'debian'", None, [failure]),
            StagingSpaceError("full", backend="lxd", hint="free space"),
            QemuImgMissing("no qemu-img", hint="apt install qemu-utils"),
            UnreadableSource("cannot read", backend="local")]


def test_errors_defined_beside_their_code_are_tested_and_pickle() -> None:
    """Error classes kept in the module that raises them (the tree in imagehub.errors
    names them) cross process boundaries too: Dask and process pools pickle them."""
    made = _more_instances()
    assert {type(e) for e in made} == _error_classes_outside_errors_module()
    for error in made:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.hint == error.hint and copy.backend == error.backend
