"""``folder``: each image is ``<id>.img`` with a ``<id>.json`` record beside it.

Shares live in ``<id>.members.json`` (project -> status). A manager acts as one
``project``: it lists its own images, public ones, and shares it accepted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from imagehub import (
    Capability,
    Image,
    ImageConflict,
    ImageManager,
    ImageNotFound,
    ImageStream,
    InvalidImageData,
    Member,
    MemberStatus,
    Option,
    Page,
    PermissionDenied,
    UpdateSpec,
    Visibility,
)
from imagehub.manager import CreateSpec
from imagehub.streams import DataSource, Hasher, StreamPart, atomic_write, hashing

__all__ = ["FolderManager"]

_CHUNK = 1 << 20


class FolderManager(ImageManager):
    name = "folder"
    capabilities = (Capability.LIST | Capability.GET | Capability.CREATE | Capability.EXPORT
                    | Capability.UPDATE | Capability.DELETE | Capability.SHARE
                    | Capability.MEMBERS)
    options = {
        "root": Option(str, required=True, help="directory holding the images"),
        "project": Option(str, default="me", help="the project this client acts as"),
    }
    # Filters _list applies itself; imagehub applies any other filter on the client.
    server_filters = frozenset({"name", "member_status"})
    # The UpdateSpec fields _update honours; update() refuses the rest before any I/O.
    updatable = frozenset({"name", "description", "properties", "remove_properties",
                           "visibility", "tags"})
    unsupported_reason = "a folder has no aliases"

    def __init__(self, *, root: str | os.PathLike[str], project: str = "me",
                 cloud: str | None = None) -> None:
        super().__init__(cloud=cloud)
        self.root = Path(root)
        self.project = project
        self.root.mkdir(parents=True, exist_ok=True)

    # -- files ------------------------------------------------------------------------------
    def _path(self, image_id: str, suffix: str) -> Path:
        # ids are uuids we made; anything else cannot name a file of ours
        try:
            uuid.UUID(image_id)
        except ValueError:
            raise ImageNotFound(f"no image {image_id!r}", backend=self.name) from None
        return self.root / f"{image_id}{suffix}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # One writer at a time, across threads and processes: read-modify-write of a
        # record must not lose another writer's change.
        with (self.root / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load(self, image_id: str) -> Image:
        try:
            text = self._path(image_id, ".json").read_text()
        except FileNotFoundError:
            raise ImageNotFound(f"no image {image_id!r}", backend=self.name) from None
        return Image.from_dict({**json.loads(text), "backend": self.name})

    def _save(self, image: Image) -> None:
        with atomic_write(self._path(image.id, ".json"), force=True) as out:
            out.write(json.dumps(image.to_dict()).encode())

    def _check_owner(self, image_id: str, owner: str | None) -> None:
        # Seeing an image (public, or a share we accepted) never grants changing it:
        # every write to an image or to its shares is its own project's alone.
        if owner != self.project:
            raise PermissionDenied(f"image {image_id} belongs to project {owner!r}, not "
                                   f"{self.project!r}", backend=self.name)

    def _shares(self, image_id: str) -> dict[str, str]:
        try:
            return dict(json.loads(self._path(image_id, ".members.json").read_text()))
        except FileNotFoundError:
            return {}

    def _save_shares(self, image_id: str, shares: Mapping[str, str]) -> None:
        with atomic_write(self._path(image_id, ".members.json"), force=True) as out:
            out.write(json.dumps(dict(shares)).encode())

    def _visible(self, image: Image, member_status: str | None) -> bool:
        # Like Glance: own and public images, plus shares in the asked-for status
        # (accepted by default, every status with "all").
        if image.owner == self.project or image.visibility in (Visibility.PUBLIC,
                                                               Visibility.COMMUNITY):
            return True
        status = self._shares(image.id).get(self.project)
        if status is None:
            return False
        return member_status == "all" or status == (member_status or "accepted")

    def _all_records(self) -> list[Image]:
        images = []
        for path in self.root.glob("*.json"):
            if path.name.endswith(".members.json"):
                continue
            with contextlib.suppress(ImageNotFound):  # deleted while we looked
                images.append(self._load(path.name[:-len(".json")]))
        return images

    # -- hooks ------------------------------------------------------------------------------
    def _list(self, limit: int | None, marker: str | None,
              filters: Mapping[str, Any]) -> Page:
        images = sorted((i for i in self._all_records()
                         if self._visible(i, filters.get("member_status"))),
                        key=lambda i: i.id)
        if "name" in filters:
            images = [i for i in images if i.name == filters["name"]]
        if marker is not None:
            if not self._path(marker, ".json").exists():
                raise ImageNotFound(f"marker {marker!r} is not an image", backend=self.name)
            images = [i for i in images if i.id > marker]
        if limit is not None and len(images) > limit:
            return Page(images[:limit], images[limit - 1].id)
        return Page(images)

    def _get(self, ref: str, filters: Mapping[str, Any]) -> Image:
        with contextlib.suppress(ImageNotFound):
            image = self._load(ref)
            if self._visible(image, filters.get("member_status")):
                return image
        # Names, prefixes: the shared resolution rules over a listing.
        return super()._get(ref, filters)

    def _create(self, parts: list[DataSource], spec: CreateSpec) -> Image:
        if len(parts) != 1:
            raise InvalidImageData("the folder backend stores single-file images only",
                                   backend=self.name)
        image_id = str(uuid.uuid4())
        hasher = Hasher(["sha256"])
        # atomic_write: the file appears only complete; a failure leaves nothing.
        with atomic_write(self._path(image_id, ".img")) as out:
            for chunk in hashing(parts[0].chunks(), hasher, spec.progress):
                out.write(chunk)
            if spec.checksum:
                hasher.verify(spec.checksum, spec.name, backend=self.name)
        now = dt.datetime.now(dt.timezone.utc)
        image = Image(id=image_id, name=spec.name, backend=self.name, size=hasher.bytes,
                      checksum=hasher.checksum("sha256"), properties=dict(spec.properties),
                      description=spec.description, visibility=spec.visibility,
                      tags=spec.tags, owner=self.project, created_at=now, updated_at=now,
                      disk_format=spec.disk_format or "raw")
        self._save(image)
        return image

    def _export(self, image: Image) -> ImageStream:
        # Open now: the handle keeps the bytes readable even if the image is deleted
        # while the stream is read, from whichever thread reads it.
        try:
            fh = self._path(image.id, ".img").open("rb")
        except FileNotFoundError:
            raise ImageNotFound(f"no image {image.id!r}", backend=self.name) from None

        def chunks() -> Iterator[bytes]:
            with fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk

        part = StreamPart(name="image", chunks=chunks(), size=image.size,
                          filename=f"{image.id}.img")
        return ImageStream([part], checksum=image.checksum, image=image, backend=self.name,
                           on_close=fh.close)

    def _update(self, image: Image, spec: UpdateSpec) -> Image:
        with self._locked():
            data = self._load(image.id).to_dict()  # re-read under the lock
            self._check_owner(image.id, data.get("owner"))
            properties = {**data["properties"], **spec.properties}
            for key in spec.remove_properties:
                properties.pop(key, None)
            data["properties"] = properties
            for key in ("name", "description"):
                if getattr(spec, key) is not None:
                    data[key] = getattr(spec, key)
            if spec.visibility is not None:
                data["visibility"] = spec.visibility.value
            if spec.tags is not None:
                data["tags"] = list(spec.tags)
            data["updated_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
            updated = Image.from_dict(data)
            self._save(updated)
        return updated

    def _delete(self, image: Image) -> None:
        with self._locked():
            self._check_owner(image.id, self._load(image.id).owner)
            try:
                self._path(image.id, ".json").unlink()
            except FileNotFoundError:
                raise ImageNotFound(f"no image {image.id!r}", backend=self.name) from None
            self._path(image.id, ".members.json").unlink(missing_ok=True)
            self._path(image.id, ".img").unlink(missing_ok=True)

    def _share(self, image: Image, project: str) -> Member:
        with self._locked():
            current = self._load(image.id)
            self._check_owner(image.id, current.owner)
            shares = self._shares(image.id)
            if project in shares:
                raise ImageConflict(f"image {image.id} is already shared with {project!r}",
                                    backend=self.name)
            if current.visibility is Visibility.PRIVATE:
                self._save(Image.from_dict({**current.to_dict(), "visibility": "shared"}))
            shares[project] = MemberStatus.PENDING.value
            self._save_shares(image.id, shares)
        return Member(image_id=image.id, member_id=project, status=MemberStatus.PENDING)

    def _unshare(self, image: Image, project: str) -> None:
        with self._locked():
            self._check_owner(image.id, self._load(image.id).owner)
            shares = self._shares(image.id)
            if shares.pop(project, None) is None:
                raise ImageNotFound(f"image {image.id} is not shared with {project!r}",
                                    backend=self.name)
            self._save_shares(image.id, shares)

    def _members(self, image: Image) -> Iterable[Member]:
        return [Member(image_id=image.id, member_id=p, status=MemberStatus(s))
                for p, s in sorted(self._shares(image.id).items())]

    def _update_member(self, image: Image, status: MemberStatus,
                       member: str | None) -> Member:
        member = member or self.project
        if member != self.project:
            raise PermissionDenied(f"only project {member!r} can answer its own share",
                                   backend=self.name)
        with self._locked():
            shares = self._shares(image.id)
            if member not in shares:
                raise ImageNotFound(f"image {image.id} is not shared with {member!r}",
                                    backend=self.name)
            shares[member] = status.value
            self._save_shares(image.id, shares)
        return Member(image_id=image.id, member_id=member, status=status)
