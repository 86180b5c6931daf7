"""``folder``: each image is ``<id>.img`` with a ``<id>.json`` record beside it."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from imagehub import (
    Capability,
    Image,
    ImageManager,
    ImageNotFound,
    ImageStream,
    Option,
    Page,
)
from imagehub.manager import CreateSpec
from imagehub.streams import DataSource, Hasher, StreamPart, atomic_write, hashing

__all__ = ["FolderManager"]


class FolderManager(ImageManager):
    name = "folder"
    capabilities = (Capability.LIST | Capability.GET | Capability.CREATE | Capability.EXPORT
                    | Capability.UPDATE | Capability.DELETE)
    options = {"root": Option(str, required=True, help="directory holding the images")}

    def __init__(self, *, root: str | os.PathLike[str], cloud: str | None = None) -> None:
        super().__init__(cloud=cloud)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _record(self, image_id: str) -> Path:
        # ids are uuids we made; anything else cannot name a file of ours
        try:
            uuid.UUID(image_id)
        except ValueError:
            raise ImageNotFound(f"no image {image_id!r}", backend=self.name) from None
        return self.root / f"{image_id}.json"

    def _load(self, path: Path) -> Image:
        return Image.from_dict({**json.loads(path.read_text()), "backend": self.name})

    def _list(self, limit: int | None, marker: str | None,
              filters: Mapping[str, Any]) -> Page:
        images = sorted((self._load(p) for p in self.root.glob("*.json")), key=lambda i: i.id)
        if marker is not None:
            images = [i for i in images if i.id > marker]
        if limit is not None and len(images) > limit:
            return Page(images[:limit], images[limit - 1].id)
        return Page(images)

    def _get(self, ref: str, filters: Mapping[str, Any]) -> Image:
        try:
            path = self._record(ref)
        except ImageNotFound:
            path = None
        if path is not None and path.exists():
            return self._load(path)
        return super()._get(ref, filters)

    def _create(self, parts: list[DataSource], spec: CreateSpec) -> Image:
        if len(parts) != 1:
            raise ValueError("the folder backend stores single-file images only")
        image_id = str(uuid.uuid4())
        hasher = Hasher(["sha256"])
        with atomic_write(self.root / f"{image_id}.img") as out:
            for chunk in hashing(parts[0].chunks(), hasher, spec.progress):
                out.write(chunk)
            if spec.checksum:
                hasher.verify(spec.checksum, spec.name, backend=self.name)
        now = dt.datetime.now(dt.timezone.utc)
        image = Image(id=image_id, name=spec.name, backend=self.name, size=hasher.bytes,
                      checksum=hasher.checksum("sha256"), properties=dict(spec.properties),
                      description=spec.description, visibility=spec.visibility,
                      created_at=now, updated_at=now, disk_format=spec.disk_format or "raw")
        self._save(image)
        return image

    def _save(self, image: Image) -> None:
        with atomic_write(self._record(image.id), force=True) as out:
            out.write(json.dumps(image.to_dict()).encode())

    def _export(self, image: Image) -> ImageStream:
        fh = (self.root / f"{image.id}.img").open("rb")

        def chunks() -> Iterator[bytes]:
            with fh:
                while chunk := fh.read(1 << 20):
                    yield chunk

        part = StreamPart(name="image", chunks=chunks(), size=image.size,
                          filename=f"{image.id}.img")
        return ImageStream([part], checksum=image.checksum, image=image, backend=self.name,
                           on_close=fh.close)

    def _update(self, image: Image, changes: Mapping[str, Any]) -> Image:
        data = image.to_dict()
        data["properties"] = {**data["properties"], **changes.get("properties", {})}
        for key in ("name", "description"):
            if key in changes:
                data[key] = changes[key]
        data["updated_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
        updated = Image.from_dict(data)
        self._save(updated)
        return updated

    def _delete(self, image: Image) -> None:
        self._record(image.id).unlink()
        (self.root / f"{image.id}.img").unlink(missing_ok=True)
