"""The conformance kit's mutation test: plant one bug in a copy of the example backend and
the kit must fail (not skip, not pass) for each.

Each mutant rewrites one exact passage of docs/example-plugin's FolderManager; the passage
must occur exactly once, so an edit to the example cannot silently turn a mutant into the
original. The kit runs in a fresh pytest process per mutant, as a plugin author runs it.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_SOURCE = (Path(__file__).resolve().parents[1] / "docs" / "example-plugin"
                 / "imagehub_folder" / "__init__.py")

KIT_SUITE = '''
from pathlib import Path

import pytest
from folder_mutant import FolderManager

from imagehub.testing import ImageManagerConformance, ShareTarget


class TestMutant(ImageManagerConformance):
    @pytest.fixture
    def manager(self, tmp_path: Path) -> FolderManager:
        return FolderManager(root=tmp_path / "shelf", project="alice", cloud="shelf")

    @pytest.fixture
    def share_target(self, tmp_path: Path) -> ShareTarget:
        return ShareTarget("bob", FolderManager(root=tmp_path / "shelf", project="bob"))
'''


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    old: str
    new: str
    #: a kit test (name substring) that must be among the failures
    caught_by: str


MUTANTS = [
    Mutant(
        "export corrupts every byte after the first MiB",
        old="""            with fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk
""",
        new="""            sent = 0
            with fh:
                while chunk := fh.read(_CHUNK):
                    sent += len(chunk)
                    yield chunk if sent <= _CHUNK else bytes(len(chunk))
""",
        caught_by="test_large_round_trip",
    ),
    Mutant(
        "export hands out wrong bytes and promises no checksum",
        old="return ImageStream([part], checksum=image.checksum,",
        new="return ImageStream([_flip_middle(part)], checksum=None,",
        caught_by="test_round_trip_identical_bytes",
    ),
    Mutant(
        "list ignores the name filter it declares",
        old="""            images = [i for i in images if i.name == filters["name"]]
""",
        new="""            pass
""",
        caught_by="test_filters_narrow",
    ),
    Mutant(
        "the name filter matches prefixes",
        old="""            images = [i for i in images if i.name == filters["name"]]
""",
        new="""            images = [i for i in images if str(i.name).startswith(filters["name"])]
""",
        caught_by="test_filters_narrow",
    ),
    Mutant(
        "paging skips the first image of every next page",
        old="return Page(images[:limit], images[limit - 1].id)",
        new="return Page(images[:limit], images[limit].id)",
        caught_by="test_list_pages_with_limit_and_marker",
    ),
    Mutant(
        "paging ignores limit",
        old="return Page(images[:limit], images[limit - 1].id)",
        new="return Page(images, images[limit - 1].id)",
        caught_by="test_list_pages_with_limit_and_marker",
    ),
    Mutant(
        "paging stops after the first page",
        old="return Page(images[:limit], images[limit - 1].id)",
        new="return Page(images[:limit])",
        caught_by="test_list_pages_with_limit_and_marker",
    ),
    Mutant(
        "update ignores the description it declares",
        old="""            for key in ("name", "description"):""",
        new="""            for key in ("name",):""",
        caught_by="test_update_each_declared_key[description]",
    ),
    Mutant(
        "update ignores remove_properties",
        old="""            for key in spec.remove_properties:
                properties.pop(key, None)
""",
        new="""            for key in spec.remove_properties:
                pass
""",
        caught_by="remove_properties",
    ),
    Mutant(
        "update ignores visibility (and so the CLI's --public)",
        old="""                data["visibility"] = spec.visibility.value
""",
        new="""                pass
""",
        caught_by="test_update_public_alias",
    ),
    Mutant(
        "update replaces the properties instead of merging them",
        old="properties = {**data[\"properties\"], **spec.properties}",
        new="properties = dict(spec.properties) or dict(data[\"properties\"])",
        caught_by="test_update_each_declared_key[properties]",
    ),
    Mutant(
        "answering a share is not stored",
        old="""            shares[member] = status.value
            self._save_shares(image.id, shares)
""",
        new="""            shares[member] = status.value
""",
        caught_by="test_member_view",
    ),
    Mutant(
        "the member_status filter is ignored",
        old="""        return member_status == "all" or status == (member_status or "accepted")""",
        new="""        return status == "accepted\"""",
        caught_by="test_member_view",
    ),
    Mutant(
        "a pending share shows in the member's default listing",
        old="""        return member_status == "all" or status == (member_status or "accepted")""",
        new="""        return True""",
        caught_by="test_member_view",
    ),
    Mutant(
        "another project may change an image it can see",
        old="""        if owner != self.project:
            raise PermissionDenied(""",
        new="""        if owner is None:
            raise PermissionDenied(""",
        caught_by="test_another_project_cannot_change_my_image",
    ),
    Mutant(
        "get raises a bare OS error instead of ImageNotFound",
        old="""        except FileNotFoundError:
            raise ImageNotFound(f"no image {image_id!r}", backend=self.name) from None
        return Image.from_dict""",
        new="""        except PermissionError:
            raise ImageNotFound(f"no image {image_id!r}", backend=self.name) from None
        return Image.from_dict""",
        caught_by="test_get_unknown_raises_not_found",
    ),
    Mutant(
        "concurrent updates lose one writer's change",
        old="""        with self._locked():
            data = self._load(image.id).to_dict()  # re-read under the lock
""",
        new="""        with contextlib.nullcontext():
            data = image.to_dict()
            time.sleep(0.05)  # a slow disk widens the window every racy backend has
""",
        caught_by="test_two_updates_of_one_image_at_once",
    ),
    Mutant(
        "export reopens the file by path for each chunk (crashes on delete)",
        old="""            with fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk
""",
        new="""            fh.close()
            offset = 0
            while True:
                with self._path(image.id, ".img").open("rb") as again:
                    again.seek(offset)
                    chunk = again.read(_CHUNK)
                if not chunk:
                    return
                offset += len(chunk)
                yield chunk
""",
        caught_by="test_delete_while_export_is_read",
    ),
    Mutant(
        "export may only be read on the thread that opened it",
        old="""        def chunks() -> Iterator[bytes]:
""",
        new="""        opener = threading.get_ident()

        def chunks() -> Iterator[bytes]:
            if threading.get_ident() != opener:
                raise RuntimeError("this handle belongs to another thread")
""",
        caught_by="read_from_another_thread",
    ),
    Mutant(
        "create does not verify the promised checksum",
        old="""                hasher.verify(spec.checksum, spec.name, backend=self.name)
""",
        new="""                pass
""",
        caught_by="test_checksum_mismatch_leaves_nothing",
    ),
    Mutant(
        "get finds ids only, not names or prefixes",
        old="""        return super()._get(ref, filters)
""",
        new="""        raise ImageNotFound(f"no image {ref!r}", backend=self.name)
""",
        caught_by="test_get_by_name_and_id_prefix",
    ),
    Mutant(
        "get ignores the filters that narrow a lookup",
        old="""        return super()._get(ref, filters)
""",
        new="""        return super()._get(ref, {})
""",
        caught_by="test_duplicate_name_is_ambiguous",
    ),
    Mutant(
        "create never reports progress",
        old="hashing(parts[0].chunks(), hasher, spec.progress)",
        new="hashing(parts[0].chunks(), hasher)",
        caught_by="test_create_reports_progress",
    ),
    Mutant(
        "create refuses a checksum promise that holds",
        old="hasher.verify(spec.checksum, spec.name, backend=self.name)",
        # the digest shifted by one hex digit: never the right one
        new=("hasher.verify('sha256:f' + spec.checksum[7:-1], spec.name, "
             "backend=self.name)"),
        caught_by="test_promised_checksum_that_holds_is_accepted",
    ),
    Mutant(
        "create records a wrong size",
        old="size=hasher.bytes,",
        new="size=hasher.bytes + 1,",
        caught_by="test_round_trip_identical_bytes",
    ),
    Mutant(
        "create drops the properties and description it was given",
        old=("properties=dict(spec.properties),\n"
             "                      description=spec.description,"),
        new="properties={},\n                      description=None,",
        caught_by="test_create_keeps_what_it_was_given",
    ),
    Mutant(
        "create drops the tags it was given",
        old="tags=spec.tags, owner=self.project",
        new="tags=[], owner=self.project",
        caught_by="test_create_keeps_its_tags",
    ),
    Mutant(
        "create ignores the visibility it was given",
        old="description=spec.description, visibility=spec.visibility,",
        new="description=spec.description, visibility=Visibility.PRIVATE,",
        caught_by="test_create_keeps_its_visibility",
    ),
    Mutant(
        "update folds property keys to lower case",
        old="""            properties = {**data["properties"], **spec.properties}""",
        new="""            properties = {**data["properties"],
                          **{k.lower(): v for k, v in spec.properties.items()}}""",
        caught_by="test_update_each_declared_key",
    ),
    Mutant(
        "list pages on from a marker that names no image",
        old="""            if not self._path(marker, ".json").exists():
                raise""",
        new="""            if False:
                raise""",
        caught_by="test_list_with_a_deleted_marker_raises_not_found",
    ),
]

HELPERS = '''

import threading  # noqa: E402
import time  # noqa: E402


def _flip_middle(part):
    def chunks():
        for n, chunk in enumerate(part.chunks):
            yield chunk if n or not chunk else chunk[:len(chunk) // 2] + bytes(
                [chunk[len(chunk) // 2] ^ 1]) + chunk[len(chunk) // 2 + 1:]
    return StreamPart(name=part.name, chunks=chunks(), size=part.size,
                      filename=part.filename)
'''


def write_suite(root: Path, source: str) -> Path:
    package = root / "folder_mutant"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(source + HELPERS)
    (root / "test_kit.py").write_text(KIT_SUITE)
    return root


def run_kit(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs",
         "--timeout=600", str(root / "test_kit.py")],
        capture_output=True, text=True, cwd=root, timeout=900,
        env={**_env(), "PYTHONPATH": str(root)})


def _env() -> dict[str, str]:
    import os
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


def test_the_unmutated_copy_passes(tmp_path: Path) -> None:
    """Without a planted bug the same harness passes: every failure below is the bug's."""
    result = run_kit(write_suite(tmp_path, PLUGIN_SOURCE.read_text()))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_kit_fails_for_a_planted_bug(tmp_path: Path, mutant: Mutant) -> None:
    source = PLUGIN_SOURCE.read_text()
    assert source.count(mutant.old) == 1, (
        f"the passage mutant {mutant.name!r} rewrites is not in the example exactly once")
    result = run_kit(write_suite(tmp_path, source.replace(mutant.old, mutant.new)))
    summary = result.stdout[-4000:] + result.stderr[-2000:]
    # 1 is "tests failed"; anything else (2 interrupted, 3 internal, 4 usage) would
    # mean the harness broke, not that the kit caught the bug.
    assert result.returncode == 1, summary
    failed = re.findall(r"^FAILED (\S+)", result.stdout, re.MULTILINE)
    assert any(mutant.caught_by in f for f in failed), (
        f"expected {mutant.caught_by!r} among the failures {failed}\n{summary}")
