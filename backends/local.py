"""``local``: an embedded, serverless image store in one directory.

Layout: ``blobs/sha256/<hex>`` holds content-addressed bytes, ``catalog.sqlite`` the
records, ``tmp/`` uploads in flight. Blobs are written to ``tmp/``, fsynced, and renamed
into place inside the same SQLite write transaction that records them, so a concurrent
delete can never remove a blob a new record is about to point at, and a failed create
leaves nothing behind. File names derive only from hex digests: no name or alias from a
user ever becomes a path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from imagehub.errors import (
    ImageConflict,
    ImageHubError,
    ImageNotFound,
    PermissionDenied,
    TransferError,
)
from imagehub.manager import Capability, CreateSpec, ImageManager, Option, Page, resolve_ref
from imagehub.models import Image, Member, MemberStatus, Visibility, parse_datetime
from imagehub.paths import data_home
from imagehub.streams import DataSource, Hasher, ImageStream, StreamPart, hashing

__all__ = ["LocalManager", "default_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT, family TEXT, version TEXT,
    os TEXT, release TEXT, architecture TEXT, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, size INTEGER NOT NULL, checksum TEXT NOT NULL,
    disk_format TEXT, container_format TEXT, visibility TEXT NOT NULL, status TEXT NOT NULL,
    owner TEXT NOT NULL, properties TEXT NOT NULL, tags TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
    name TEXT NOT NULL, filename TEXT, digest TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE INDEX IF NOT EXISTS parts_digest ON parts(digest);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    description TEXT
);
CREATE TABLE IF NOT EXISTS members (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE, member_id TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (image_id, member_id)
);
"""

# Image fields that may arrive as properties (e.g. carried over by migrate).
_PROMOTED = ("description", "family", "version", "os", "release", "architecture")
_UPDATABLE = {"name", "description", "family", "version", "os", "release", "architecture",
              "properties", "remove_properties", "visibility", "public", "tags"}


def default_path() -> Path:
    return data_home() / "imagehub" / "local"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


class LocalManager(ImageManager):
    """Images in a local directory; every capability, no server."""

    name = "local"
    #: the disk_format of a split image (metadata + rootfs parts) created without one:
    #: the store's own word for its layout, not the name of a backend that uses it
    split_disk_format: ClassVar[str] = "split"
    capabilities = Capability.ALL_IMAGE_OPS
    options = {
        "path": Option(str, help="store directory (default: $XDG_DATA_HOME/imagehub/local)"),
        "project": Option(str, default="local",
                          help="the project this client acts as (owner of new images)"),
    }
    server_filters = frozenset({"member_status"})

    def __init__(self, *, path: str | os.PathLike[str] | None = None, project: str = "local",
                 cloud: str | None = None) -> None:
        super().__init__(cloud=cloud)
        self.root = Path(path) if path is not None else default_path()
        self.project = project
        try:
            for sub in ("blobs/sha256", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ImageHubError(f"cannot open the local store at {str(self.root)!r}: {exc}",
                                backend=self.name,
                                hint="check the 'path' option and its permissions") from exc

    # -- storage plumbing -----------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per call: safe across threads and processes; WAL and
        # a long busy timeout let concurrent CLI processes queue instead of failing.
        conn = sqlite3.connect(self.root / "catalog.sqlite", timeout=60,
                               isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_mode = WAL")
            if write:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                yield conn
        finally:
            conn.close()

    def _blob(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ImageHubError(f"corrupt catalog: bad digest {digest!r}", backend=self.name)
        return self.root / "blobs" / "sha256" / digest

    # -- records --------------------------------------------------------------------------
    def _visible_sql(self, member_status: str | None) -> tuple[str, list[Any]]:
        # Like Glance: own images, public/community ones, and shares accepted by this
        # project (or in the asked-for member status).
        statuses = ["accepted"] if member_status is None else (
            ["pending", "accepted", "rejected"] if member_status == "all" else [member_status])
        marks = ",".join("?" * len(statuses))
        return (
            "(owner = ? OR visibility IN ('public','community') OR id IN (SELECT image_id "
            f"FROM members WHERE member_id = ? AND status IN ({marks})))",
            [self.project, self.project, *statuses],
        )

    def _image(self, db: sqlite3.Connection, row: sqlite3.Row) -> Image:
        aliases = [r["name"] for r in db.execute(
            "SELECT name FROM aliases WHERE image_id = ? ORDER BY name", (row["id"],))]
        return Image(
            id=row["id"], name=row["name"], backend=self.name, description=row["description"],
            family=row["family"], version=row["version"], os=row["os"], release=row["release"],
            architecture=row["architecture"], created_at=row["created_at"],
            updated_at=row["updated_at"], size=row["size"], checksum=row["checksum"],
            disk_format=row["disk_format"], container_format=row["container_format"],
            visibility=Visibility(row["visibility"]), status=row["status"],
            aliases=tuple(aliases), tags=tuple(json.loads(row["tags"])),
            properties=json.loads(row["properties"]), owner=row["owner"],
            raw=dict(row),
        )

    def _list(self, limit: int | None, marker: str | None,
              filters: Mapping[str, Any]) -> Page:
        where, args = self._visible_sql(filters.get("member_status"))
        with self._db() as db:
            if marker is not None:
                row = db.execute("SELECT created_at FROM images WHERE id = ?",
                                 (marker,)).fetchone()
                if row is None:
                    raise ImageNotFound(f"marker {marker!r} is not an image", backend=self.name)
                where += " AND (created_at, id) > (?, ?)"
                args += [row["created_at"], marker]
            sql = f"SELECT * FROM images WHERE {where} ORDER BY created_at, id"
            if limit is not None:
                sql += " LIMIT ?"
                args.append(limit + 1)
            rows = db.execute(sql, args).fetchall()
            more = limit is not None and len(rows) > limit
            rows = rows[:limit] if limit is not None else rows
            images = [self._image(db, r) for r in rows]
        return Page(images, images[-1].id if more and images else None)

    def _get(self, ref: str, filters: Mapping[str, Any]) -> Image:
        where, args = self._visible_sql(filters.get("member_status"))
        with self._db() as db:
            row = db.execute(f"SELECT * FROM images WHERE id = ? AND {where}",
                             [ref, *args]).fetchone()
            if row is not None:
                return self._image(db, row)
            alias = db.execute(f"SELECT i.* FROM aliases a JOIN images i ON i.id = a.image_id "
                               f"WHERE a.name = ? AND {where}", [ref, *args]).fetchone()
            if alias is not None:
                return self._image(db, alias)
        rest = {k: v for k, v in filters.items() if k != "member_status"}
        return resolve_ref(self.all(member_status=filters.get("member_status"), **rest), ref,
                           backend=self.name)

    def _row_for_write(self, db: sqlite3.Connection, image: Image) -> sqlite3.Row:
        row: sqlite3.Row | None = db.execute("SELECT * FROM images WHERE id = ?",
                                             (image.id,)).fetchone()
        if row is None:
            raise ImageNotFound(f"image {image.id} no longer exists", backend=self.name)
        if row["owner"] != self.project:
            raise PermissionDenied(
                f"image {image.id} belongs to project {row['owner']!r}, not {self.project!r}",
                backend=self.name)
        return row

    # -- create / export ------------------------------------------------------------------
    def _create(self, parts: list[DataSource], spec: CreateSpec) -> Image:
        whole = Hasher(["sha256"] + ([spec.checksum.split(":", 1)[0]]
                                     if spec.checksum and ":" in spec.checksum else []))
        staged: list[tuple[DataSource, str, str, int]] = []  # source, tmp path, digest, size
        try:
            for part in parts:
                fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", suffix=".part")
                own = Hasher(["sha256"])
                size = 0
                with os.fdopen(fd, "wb") as out:
                    staged.append((part, tmp, "", 0))
                    for chunk in hashing(part.chunks(), whole, spec.progress):
                        own.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if part.size is not None and size != part.size:
                    raise TransferError(f"{part.name}: read {size} of {part.size} bytes; the "
                                        "source changed or was cut short", backend=self.name)
                staged[-1] = (part, tmp, own.hexdigest("sha256"), size)
            if spec.checksum:
                whole.verify(spec.checksum, spec.name, backend=self.name)
            return self._commit(staged, whole, spec)
        finally:
            for _part, tmp, _digest, _size in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _commit(self, staged: list[tuple[DataSource, str, str, int]], whole: Hasher,
                spec: CreateSpec) -> Image:
        image_id = str(uuid.uuid4())
        now = _now()
        props = dict(spec.properties)
        fields = {k: props.get(k) for k in _PROMOTED}
        fields["description"] = spec.description or fields["description"]
        fields["architecture"] = spec.architecture or fields["architecture"]
        with self._db(write=True) as db:
            for alias in spec.aliases:
                if db.execute("SELECT 1 FROM aliases WHERE name = ?", (alias,)).fetchone():
                    raise ImageConflict(f"alias {alias!r} already exists", backend=self.name)
            db.execute(
                "INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (image_id, spec.name, fields["description"], fields["family"],
                 fields["version"], fields["os"], fields["release"], fields["architecture"],
                 now, now, whole.bytes, whole.checksum("sha256"),
                 spec.disk_format or (self.split_disk_format if len(staged) > 1 else "raw"),
                 spec.container_format or "bare", spec.visibility.value, "active",
                 self.project, json.dumps(props), json.dumps(list(spec.tags))))
            for idx, (part, tmp, digest, size) in enumerate(staged):
                os.replace(tmp, self._blob(digest))
                filename = part.path.name if part.path is not None else None
                db.execute("INSERT INTO parts VALUES (?,?,?,?,?,?)",
                           (image_id, idx, part.name, filename, digest, size))
            for alias in spec.aliases:
                db.execute("INSERT INTO aliases VALUES (?,?,?)", (alias, image_id, None))
        return self._get(image_id, {})

    def _export(self, image: Image) -> ImageStream:
        with self._db() as db:
            rows = db.execute("SELECT * FROM parts WHERE image_id = ? ORDER BY idx",
                              (image.id,)).fetchall()
        if not rows:
            raise ImageNotFound(f"image {image.id} has no data", backend=self.name)
        handles = []
        try:
            for r in rows:
                handles.append(self._blob(r["digest"]).open("rb"))
        except FileNotFoundError as exc:
            for fh in handles:
                fh.close()
            raise ImageHubError(f"blob missing for image {image.id}", backend=self.name,
                                hint="the store was modified outside imagehub") from exc
        parts = [
            StreamPart(name=r["name"], chunks=_chunks(fh), size=r["size"],
                       filename=r["filename"] or f"{image.id}.{r['name']}",
                       checksum=f"sha256:{r['digest']}")
            for r, fh in zip(rows, handles, strict=True)
        ]

        def close_all() -> None:
            for fh in handles:
                fh.close()

        return ImageStream(parts, checksum=image.checksum, size=image.size,
                           disk_format=image.disk_format, image=image, backend=self.name,
                           on_close=close_all)

    # -- changes --------------------------------------------------------------------------
    def _delete(self, image: Image) -> None:
        with self._db(write=True) as db:
            self._row_for_write(db, image)
            digests = [r["digest"] for r in db.execute(
                "SELECT digest FROM parts WHERE image_id = ?", (image.id,))]
            db.execute("DELETE FROM images WHERE id = ?", (image.id,))
            # Still inside the write transaction: no create can claim these blobs meanwhile.
            for digest in set(digests):
                if not db.execute("SELECT 1 FROM parts WHERE digest = ?", (digest,)).fetchone():
                    with contextlib.suppress(FileNotFoundError):
                        self._blob(digest).unlink()

    def _update(self, image: Image, changes: Mapping[str, Any]) -> Image:
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ImageHubError(f"cannot update {', '.join(sorted(unknown))} on a local image "
                                f"(updatable: {', '.join(sorted(_UPDATABLE))})",
                                backend=self.name)
        with self._db(write=True) as db:
            row = self._row_for_write(db, image)
            props = json.loads(row["properties"])
            props.update({str(k): str(v) for k, v in (changes.get("properties") or {}).items()})
            for key in changes.get("remove_properties") or ():
                props.pop(key, None)
            values: dict[str, Any] = {k: changes[k] for k in (*_PROMOTED, "name")
                                      if k in changes}
            if "public" in changes:
                values["visibility"] = "public" if changes["public"] else "private"
            if "visibility" in changes:
                values["visibility"] = Visibility(changes["visibility"]).value
            if "tags" in changes:
                values["tags"] = json.dumps(list(changes["tags"]))
            values["properties"] = json.dumps(props)
            values["updated_at"] = _now()
            assignments = ", ".join(f"{k} = ?" for k in values)
            db.execute(f"UPDATE images SET {assignments} WHERE id = ?",
                       [*values.values(), image.id])
        return self._get(image.id, {})

    def _add_alias(self, image: Image, name: str, description: str | None) -> None:
        with self._db(write=True) as db:
            self._row_for_write(db, image)
            try:
                db.execute("INSERT INTO aliases VALUES (?,?,?)", (name, image.id, description))
            except sqlite3.IntegrityError:
                raise ImageConflict(f"alias {name!r} already exists", backend=self.name,
                                    hint="remove it first or pick another name") from None

    def _remove_alias(self, name: str) -> None:
        with self._db(write=True) as db:
            row = db.execute("SELECT image_id FROM aliases WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise ImageNotFound(f"no alias named {name!r}", backend=self.name)
            db.execute("DELETE FROM aliases WHERE name = ?", (name,))

    # -- sharing --------------------------------------------------------------------------
    def _share(self, image: Image, project: str) -> Member:
        now = _now()
        with self._db(write=True) as db:
            row = self._row_for_write(db, image)
            if row["visibility"] in ("private",):
                db.execute("UPDATE images SET visibility = 'shared' WHERE id = ?", (image.id,))
            try:
                db.execute("INSERT INTO members VALUES (?,?,?,?,?)",
                           (image.id, project, "pending", now, now))
            except sqlite3.IntegrityError:
                raise ImageConflict(f"image {image.id} is already shared with {project!r}",
                                    backend=self.name) from None
        stamp = parse_datetime(now)
        return Member(image_id=image.id, member_id=project, status=MemberStatus.PENDING,
                      created_at=stamp, updated_at=stamp)

    def _unshare(self, image: Image, project: str) -> None:
        with self._db(write=True) as db:
            self._row_for_write(db, image)
            gone = db.execute("DELETE FROM members WHERE image_id = ? AND member_id = ?",
                              (image.id, project)).rowcount
            if not gone:
                raise ImageNotFound(f"image {image.id} is not shared with {project!r}",
                                    backend=self.name)

    def _members(self, image: Image) -> Iterable[Member]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM members WHERE image_id = ? ORDER BY member_id",
                              (image.id,)).fetchall()
        return [Member(image_id=r["image_id"], member_id=r["member_id"], status=r["status"],
                       created_at=parse_datetime(r["created_at"]),
                       updated_at=parse_datetime(r["updated_at"]), raw=dict(r))
                for r in rows]

    def _update_member(self, image: Image, status: MemberStatus,
                       member: str | None) -> Member:
        member = member or self.project
        if member != self.project:
            raise PermissionDenied(f"only project {member!r} can answer its own share",
                                   backend=self.name)
        now = _now()
        with self._db(write=True) as db:
            done = db.execute("UPDATE members SET status = ?, updated_at = ? WHERE image_id = ? "
                              "AND member_id = ?", (status.value, now, image.id, member))
            if not done.rowcount:
                raise ImageNotFound(f"image {image.id} is not shared with {member!r}",
                                    backend=self.name)
            row = db.execute("SELECT * FROM members WHERE image_id = ? AND member_id = ?",
                             (image.id, member)).fetchone()
        return Member(image_id=image.id, member_id=member, status=status,
                      created_at=parse_datetime(row["created_at"]),
                      updated_at=parse_datetime(now), raw=dict(row))

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, cloud: str) -> LocalManager:
        return cls(cloud=cloud, **options)


def _chunks(fh: Any, size: int = 1 << 20) -> Iterator[bytes]:
    try:
        while chunk := fh.read(size):
            yield chunk
    finally:
        fh.close()
