"""``local``: an embedded, serverless image store in one directory.

Layout: ``blobs/sha256/<hex>`` holds content-addressed bytes, ``catalog.sqlite`` the
records, ``tmp/`` uploads in flight. Blobs are written to ``tmp/``, fsynced, and renamed
into place inside the same SQLite write transaction that records them, so a concurrent
delete can never remove a blob a new record is about to point at. File names derive only
from hex digests: no name or alias from a user ever becomes a path.

Crash safety rests on one order: the catalog never points at a blob that is not there.
A create first commits a ``pending`` row naming the blob it is about to place, then renames
the blob and commits the record (removing the blob again when that commit fails); a delete
removes the record and adds ``pending`` rows in one commit, and unlinks after. A crash at
any step leaves at most blobs named in ``pending`` and files in ``tmp/``, which the next
open reclaims. A live upload holds an ``flock`` on its file (in ``tmp/``, then renamed into
``blobs/``) for its whole life, so reclaiming never touches a file still being written.
A blob that no record and no ``pending`` row names (say, after restoring an older catalog)
is never removed behind the user's back: ``imagehub verify`` reports it, ``--repair``
removes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import json
import os
import secrets
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar

from imagehub.errors import (
    BackendError,
    ImageConflict,
    ImageHubError,
    ImageNotFound,
    PermissionDenied,
    QuotaExceeded,
)
from imagehub.manager import (
    Capability,
    CreateSpec,
    ImageManager,
    Option,
    Page,
    UpdateSpec,
    resolve_ref,
)
from imagehub.models import Image, Member, MemberStatus, Visibility, parse_datetime
from imagehub.paths import data_home
from imagehub.streams import (
    DataSource,
    Hasher,
    ImageStream,
    StreamPart,
    cut_short,
    hashing,
    read_chunks,
)

__all__ = ["LocalManager", "StoreReport", "default_path"]

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
CREATE TABLE IF NOT EXISTS pending (digest TEXT NOT NULL, tmp TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE, member_id TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (image_id, member_id)
);
"""

# Image fields that may arrive as properties (e.g. carried over by migrate).
_PROMOTED = ("description", "family", "version", "os", "release", "architecture")
_UPDATABLE = frozenset({"name", "description", "family", "version", "os", "release",
                        "architecture", "properties", "remove_properties", "visibility",
                        "tags"})


def default_path() -> Path:
    return data_home() / "imagehub" / "local"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


@dataclasses.dataclass
class StoreReport:
    """What a store check found: blobs no record uses, and blobs records miss."""

    orphans: list[str] = dataclasses.field(default_factory=list)   # digests
    missing: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # id -> digests
    stray: list[str] = dataclasses.field(default_factory=list)     # other files (names)
    removed: list[str] = dataclasses.field(default_factory=list)   # orphans/stray removed

    @property
    def ok(self) -> bool:
        return not (self.orphans or self.missing or self.stray)


class LocalManager(ImageManager):
    """Images in a local directory; every capability, no server."""

    name = "local"
    #: the disk_format of a split image (metadata + rootfs parts) created without one:
    #: the store's own word for its layout, not the name of a backend that uses it
    split_disk_format: ClassVar[str] = "split"
    capabilities = Capability.ALL_IMAGE_OPS
    ranged_export = True
    max_parts = 2
    checksum_algorithms = frozenset({"sha256"})
    options = {
        "path": Option(str, help="store directory (default: $XDG_DATA_HOME/imagehub/local)"),
        "project": Option(str, default="local",
                          help="the project this client acts as (owner of new images)"),
    }
    server_filters = frozenset({"member_status"})
    updatable = _UPDATABLE

    def __init__(self, *, path: str | os.PathLike[str] | None = None, project: str = "local",
                 cloud: str | None = None) -> None:
        super().__init__(cloud=cloud)
        self.root = Path(path) if path is not None else default_path()
        self.project = project
        self.recovered = StoreReport()
        # A store on read-only media (a mounted archive, a backup disk) can still be listed,
        # exported and verified; writes are refused as such, never as catalog damage.
        self.read_only = (self.root / "catalog.sqlite").is_file() and not (
            os.access(self.root, os.W_OK) and os.access(self.root / "catalog.sqlite", os.W_OK))
        try:
            if not self.read_only:
                for sub in ("blobs/sha256", "tmp"):
                    (self.root / sub).mkdir(parents=True, exist_ok=True)
                # One opener at a time sets the catalog up. Switching a new catalog to WAL
                # takes a lock SQLite does not wait for: two processes opening a fresh store
                # at once got "database is locked" (seen under load). WAL is kept in the
                # file, so connections need not ask for it again.
                lock = os.open(self.root, os.O_RDONLY)  # the store's folder: no extra file
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    with self._db() as db:
                        db.execute("PRAGMA journal_mode = WAL")
                        db.executescript(_SCHEMA)
                finally:
                    os.close(lock)
        except ImageHubError:
            raise
        except (OSError, sqlite3.Error) as exc:
            raise ImageHubError(f"cannot open the local store at {str(self.root)!r}: {exc}",
                                backend=self.name,
                                hint="check the 'path' option and its permissions") from exc
        if not self.read_only:
            self.recover()

    # -- storage plumbing -----------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per call: safe across threads and processes; WAL and
        # a long busy timeout let concurrent CLI processes queue instead of failing.
        if write and self.read_only:
            raise PermissionDenied(f"local store {str(self.root)!r} is read-only; nothing was "
                                   "changed", backend=self.name,
                                   hint="remount it read-write, or copy the images elsewhere "
                                        "with 'imagehub migrate'")
        try:
            if self.read_only:
                wal = self.root / "catalog.sqlite-wal"
                if wal.exists() and wal.stat().st_size:
                    # immutable mode would ignore it, and show the catalog as it was before
                    # the last changes: images would seem missing.
                    raise BackendError(
                        f"local store {str(self.root)!r} is read-only and its catalog has "
                        f"changes not yet merged ({wal.name})", backend=self.name,
                        hint="open the store once where it is writable (any imagehub "
                             "command), then read it read-only")
                # immutable: no -shm/-wal can be made here, and nobody writes meanwhile.
                uri = Path(self.root / "catalog.sqlite").absolute().as_uri()
                conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True,
                                       isolation_level=None)
            else:
                conn = sqlite3.connect(self.root / "catalog.sqlite", timeout=60,
                                       isolation_level=None)
        except sqlite3.Error as exc:
            raise self._catalog_error(exc) from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            if write:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                yield conn
        except sqlite3.Error as exc:
            raise self._catalog_error(exc) from exc
        finally:
            conn.close()

    def _catalog_error(self, exc: BaseException) -> ImageHubError:
        where = str(self.root / "catalog.sqlite")
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("full" in text or (
                "I/O error" in text and _no_space(self.root))):
            return QuotaExceeded(f"local store {str(self.root)!r}: no space left to update "
                                 f"its catalog ({text}); nothing was changed",
                                 backend=self.name, hint="free space and try again")
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            return BackendError(f"local store {str(self.root)!r} is busy ({text})",
                                backend=self.name, hint="try again when the other process "
                                "using it has finished")
        if isinstance(exc, sqlite3.OperationalError) and (
                "unable to open" in text or "readonly" in text or "read-only" in text):
            # Permissions or a read-only mount: the catalog is fine, and advice to restore
            # it from a backup would lose what was stored since.
            return BackendError(f"local store {str(self.root)!r}: cannot open or write its "
                                f"catalog {where!r} ({text})", backend=self.name,
                                hint="check that the store and catalog.sqlite are readable "
                                     "and writable, and that the file system is mounted "
                                     "read-write")
        if isinstance(exc, sqlite3.IntegrityError):
            return ImageConflict(f"local store {str(self.root)!r}: {text}", backend=self.name)
        if isinstance(exc, sqlite3.OperationalError) and "I/O error" in text:
            return BackendError(f"local store {str(self.root)!r}: cannot read or write its "
                                f"catalog {where!r} ({text})", backend=self.name,
                                hint="check the disk and the file system it is on")
        if self.read_only and isinstance(exc, sqlite3.DatabaseError):
            # Read without locks (nothing can be locked here): a writer elsewhere may have
            # changed it under us. Not proof of damage; restoring a backup would lose data.
            return BackendError(f"local store {str(self.root)!r} is read-only here and its "
                                f"catalog could not be read ({text})", backend=self.name,
                                hint="if another machine writes to it, try again when it "
                                     "is done; else open it where it is writable and run "
                                     "'imagehub verify --all'")
        if isinstance(exc, sqlite3.DatabaseError | ValueError | TypeError | KeyError):
            return BackendError(
                f"local store {str(self.root)!r}: its catalog {where!r} is damaged ({text})",
                backend=self.name,
                hint="restore catalog.sqlite from a backup, or recover it with "
                     "'sqlite3 catalog.sqlite .recover'; the image bytes under blobs/ are "
                     "untouched; then run 'imagehub verify --all', and keep the orphan "
                     "blobs it reports (images the restored catalog does not know): "
                     "re-create them from blobs/sha256/ before any --repair")
        return BackendError(f"local store {str(self.root)!r}: {text}", backend=self.name)

    def _write_staged(self, out: IO[bytes], chunk: bytes | None, tmp: str) -> None:
        """Write ``chunk`` to a staged upload (None: flush and fsync it)."""
        try:
            if chunk is None:
                out.flush()
                os.fsync(out.fileno())
            else:
                out.write(chunk)
        except OSError as exc:
            if exc.filename is None:
                exc.filename = tmp
            raise self._os_error(exc, "writing an upload") from exc

    def _os_error(self, exc: OSError, doing: str) -> ImageHubError:
        where = exc.filename or str(self.root)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return QuotaExceeded(f"local store {str(self.root)!r}: no space left {doing} "
                                 f"({where})", backend=self.name,
                                 hint="free space and try again; nothing was stored")
        return BackendError(f"local store {str(self.root)!r}: {doing} failed: "
                            f"{exc.strerror or exc} ({where})", backend=self.name)

    # -- recovery and checking ------------------------------------------------------------
    def recover(self) -> StoreReport:
        """Reclaim what killed processes left: dead uploads in tmp/ and their blobs."""
        report = StoreReport()
        with contextlib.suppress(OSError):
            for entry in (self.root / "tmp").iterdir():
                if _unlink_if_dead(entry):
                    report.removed.append(f"tmp/{entry.name}")
        with contextlib.suppress(OSError, ImageHubError):
            with self._db() as db:
                waiting = db.execute("SELECT 1 FROM pending LIMIT 1").fetchone()
            if waiting:
                with self._db(write=True) as db:
                    report.removed += self._reclaim_pending(db)
        self.recovered = report
        return report

    def _reclaim_pending(self, db: sqlite3.Connection) -> list[str]:
        removed: list[str] = []
        for row in db.execute("SELECT rowid, digest, tmp FROM pending").fetchall():
            digest, tmp = str(row["digest"]), str(row["tmp"])
            if not _is_digest(digest):
                # A damaged part row's digest names no file: nothing to reclaim, and a
                # note that can never be acted on must not block every later open.
                db.execute("DELETE FROM pending WHERE rowid = ?", (row["rowid"],))
                continue
            blob = self._blob(digest)
            if tmp and (_is_locked(self.root / "tmp" / tmp) or _is_locked(blob)):
                continue  # a live create between its two commits
            if not db.execute("SELECT 1 FROM parts WHERE digest = ?", (digest,)).fetchone():
                with contextlib.suppress(FileNotFoundError):
                    blob.unlink()
                    removed.append(f"blobs/sha256/{digest}")
            db.execute("DELETE FROM pending WHERE rowid = ?", (row["rowid"],))
        return removed

    def check(self, *, repair: bool = False) -> StoreReport:
        """Blobs no record uses (orphans), blobs records need but lack, stray files.

        Runs inside a write transaction: creates rename blobs into place only inside
        theirs, so a blob without a record is never one a live create is about to commit.
        """
        report = StoreReport()
        blobs = self.root / "blobs" / "sha256"
        with self._db(write=repair or not self.read_only) as db:
            if not self.read_only:
                report.removed += self._reclaim_pending(db)
            wanted: dict[str, list[str]] = {}
            for row in db.execute("SELECT image_id, digest FROM parts"):
                wanted.setdefault(str(row["digest"]), []).append(str(row["image_id"]))
            present: set[str] = set()
            for entry in blobs.iterdir():
                name = entry.name
                if len(name) == 64 and set(name) <= set("0123456789abcdef") \
                        and entry.is_file() and not entry.is_symlink():
                    present.add(name)
                else:
                    report.stray.append(f"blobs/sha256/{name}")
            report.orphans = sorted(present - set(wanted))
            for digest in sorted(set(wanted) - present):
                for image_id in wanted[digest]:
                    report.missing.setdefault(image_id, []).append(digest)
            if repair:
                for digest in report.orphans:
                    with contextlib.suppress(FileNotFoundError):
                        (blobs / digest).unlink()
                    report.removed.append(f"blobs/sha256/{digest}")
                report.orphans = []
        return report

    def _blob(self, digest: str) -> Path:
        if not _is_digest(digest):
            # Never a path from the catalog: a damaged digest names no file.
            raise self._catalog_error(ValueError(f"a part's digest {digest!r} is not hex"))
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
        try:
            return self._image_unchecked(db, row)
        except (ValueError, TypeError, KeyError) as exc:
            # Bad JSON, an unknown enum value, a wrong-typed column: a damaged catalog.
            raise self._catalog_error(ValueError(f"image {row['id']!r}: {exc}")) from exc

    def _image_unchecked(self, db: sqlite3.Connection, row: sqlite3.Row) -> Image:
        aliases = [r["name"] for r in db.execute(
            "SELECT name FROM aliases WHERE image_id = ? ORDER BY name", (row["id"],))]
        tags = json.loads(row["tags"])
        props = json.loads(row["properties"])
        if not isinstance(tags, list) or not isinstance(props, dict):
            raise ValueError("tags or properties are not a JSON list and object")
        size, checksum = row["size"], row["checksum"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size {size!r} is not a byte count")
        # The store writes sha256:HEX only; anything else was damaged, and exporting it
        # would check the bytes against nothing.
        algo, _sep, digest = str(checksum).partition(":")
        if algo != "sha256" or len(digest) != 64 or not set(digest) <= set("0123456789abcdef"):
            raise ValueError(f"checksum {checksum!r} is not sha256:HEX")
        return Image(
            id=row["id"], name=row["name"], backend=self.name, description=row["description"],
            family=row["family"], version=row["version"], os=row["os"], release=row["release"],
            architecture=row["architecture"], created_at=row["created_at"],
            updated_at=row["updated_at"], size=row["size"], checksum=row["checksum"],
            disk_format=row["disk_format"], container_format=row["container_format"],
            visibility=Visibility(row["visibility"]), status=row["status"],
            aliases=tuple(aliases), tags=tuple(tags), properties=props, owner=row["owner"],
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

    def _row_for_write(self, db: sqlite3.Connection, image_id: str) -> sqlite3.Row:
        """The image's row, read inside the caller's write transaction, once it is known
        to be this project's own: every change to an image or to what names it (aliases,
        shares) goes through here, so seeing an image never grants changing it."""
        row: sqlite3.Row | None = db.execute("SELECT * FROM images WHERE id = ?",
                                             (image_id,)).fetchone()
        if row is None:
            raise ImageNotFound(f"image {image_id} no longer exists", backend=self.name)
        if row["owner"] != self.project:
            raise PermissionDenied(
                f"image {image_id} belongs to project {row['owner']!r}, not {self.project!r}",
                backend=self.name,
                hint=f"act as project {row['owner']!r} (a cloud whose 'project' is "
                     f"{row['owner']!r}) to change it; nothing was changed")
        return row

    # -- create / export ------------------------------------------------------------------
    def _create(self, parts: list[DataSource], spec: CreateSpec) -> Image:
        whole = Hasher(["sha256"] + ([spec.checksum.split(":", 1)[0]]
                                     if spec.checksum and ":" in spec.checksum else []))
        staged: list[tuple[DataSource, str, str, int]] = []  # source, tmp path, digest, size
        claimed: list[str] = []  # every temp name taken, even one a Ctrl-C cut short
        locks: list[int] = []
        try:
            for part in parts:
                try:
                    fd, tmp = _locked_temp(self.root / "tmp", claimed)
                except OSError as exc:
                    raise self._os_error(exc, "staging an upload") from exc
                locks.append(os.dup(fd))  # the flock lives as long as this descriptor
                own = Hasher(["sha256"])
                size = 0
                with os.fdopen(fd, "wb") as out:
                    staged.append((part, tmp, "", 0))
                    # Only the store's own writes are mapped: an OSError the source
                    # raises (a dead pipe it reads, a disk error) is the caller's, and
                    # leaves as it came, its filename untouched.
                    for chunk in hashing(part.chunks(), whole, spec.progress):
                        own.update(chunk)
                        self._write_staged(out, chunk, tmp)
                        size += len(chunk)
                    self._write_staged(out, None, tmp)
                if part.size is not None and size != part.size:
                    raise cut_short(part.name, size, part.size, backend=self.name)
                staged[-1] = (part, tmp, own.hexdigest("sha256"), size)
            if spec.checksum:
                whole.verify(spec.checksum, spec.name, backend=self.name)
            return self._commit(staged, whole, spec)
        finally:
            for tmp in claimed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            for fd in locks:
                os.close(fd)

    def _commit(self, staged: list[tuple[DataSource, str, str, int]], whole: Hasher,
                spec: CreateSpec) -> Image:
        image_id = str(uuid.uuid4())
        now = _now()
        props = dict(spec.properties)
        fields = {k: props.get(k) for k in _PROMOTED}
        fields["description"] = spec.description or fields["description"]
        fields["architecture"] = spec.architecture or fields["architecture"]
        tmps = [os.path.basename(tmp) for _p, tmp, _d, _s in staged]
        digests = [d for _p, _t, d, _s in staged]
        # Step 1: say which blobs are about to appear, so a crash after their rename
        # leaves a note the next open acts on instead of an unexplained orphan.
        with self._db(write=True) as db:
            db.executemany("INSERT INTO pending VALUES (?, ?)", zip(digests, tmps, strict=True))
        try:
            self._commit_records(staged, whole, spec, image_id, now, props, fields, tmps)
        except BaseException:
            # The blobs were renamed into place before COMMIT; a commit that failed (disk
            # full, a conflict) must not leave them behind as orphans.
            with contextlib.suppress(ImageHubError, OSError):
                self._drop_unreferenced(digests, tmps)
            raise
        return self._get(image_id, {})

    def _commit_records(self, staged: list[tuple[DataSource, str, str, int]], whole: Hasher,
                        spec: CreateSpec, image_id: str, now: str, props: dict[str, str],
                        fields: dict[str, str | None], tmps: list[str]) -> None:
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
            for idx, (part, _tmp, digest, size) in enumerate(staged):
                filename = part.path.name if part.path is not None else None
                db.execute("INSERT INTO parts VALUES (?,?,?,?,?,?)",
                           (image_id, idx, part.name, filename, digest, size))
            for alias in spec.aliases:
                db.execute("INSERT INTO aliases VALUES (?,?,?)", (alias, image_id, None))
            db.executemany("DELETE FROM pending WHERE tmp = ?", [(t,) for t in tmps])
            # Last before COMMIT. A blob that already exists (the same bytes in another
            # image) is replaced too: these bytes were just hashed, while the old file may
            # have rotted since (a truncated or flipped blob would otherwise be shared by
            # the new image, which would be broken from its first day). Readers that have
            # the old file open keep reading it.
            for _part, tmp, digest, _size in staged:
                blob = self._blob(digest)
                try:
                    os.replace(tmp, blob)
                except OSError as exc:
                    raise self._os_error(exc, "storing an upload") from exc
            _fsync_dir(self.root / "blobs" / "sha256")

    def _drop_unreferenced(self, digests: Iterable[str], tmps: Iterable[str] = ("",)) -> None:
        wanted = set(digests)
        # Its own write transaction: no create can claim one of these blobs meanwhile.
        with self._db(write=True) as db:
            for digest in wanted:
                if not _is_digest(digest):
                    continue
                if not db.execute("SELECT 1 FROM parts WHERE digest = ?",
                                  (digest,)).fetchone():
                    with contextlib.suppress(FileNotFoundError):
                        self._blob(digest).unlink()
            for tmp in set(tmps):
                db.executemany("DELETE FROM pending WHERE digest = ? AND tmp = ?",
                               [(d, tmp) for d in wanted])

    def _export(self, image: Image) -> ImageStream:
        with self._db() as db:
            rows = db.execute("SELECT * FROM parts WHERE image_id = ? ORDER BY idx",
                              (image.id,)).fetchall()
        if not rows:
            raise ImageNotFound(f"image {image.id} has no data", backend=self.name)
        for r in rows:
            if isinstance(r["size"], bool) or not isinstance(r["size"], int) or r["size"] < 0:
                raise self._catalog_error(ValueError(
                    f"image {image.id!r}: part {r['name']!r} has size {r['size']!r}"))
        handles = []
        try:
            for r in rows:
                handles.append(self._blob(r["digest"]).open("rb"))
        except FileNotFoundError as exc:
            for fh in handles:
                fh.close()
            raise BackendError(f"local store {str(self.root)!r}: image {image.id} is missing "
                               f"its data ({exc.filename})", backend=self.name,
                               hint="the store was modified outside imagehub; run "
                                    "'imagehub verify --all' to see what else is affected"
                               ) from exc
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

    def _export_from(self, image: Image, offset: int) -> ImageStream:
        with self._db() as db:
            rows = db.execute("SELECT * FROM parts WHERE image_id = ? ORDER BY idx",
                              (image.id,)).fetchall()
        if len(rows) != 1:
            raise ImageHubError(f"image {image.id} has {len(rows)} parts; only a one-file "
                                "image can be read from an offset", backend=self.name)
        try:
            fh = self._blob(rows[0]["digest"]).open("rb")
        except FileNotFoundError as exc:
            raise ImageHubError(f"blob missing for image {image.id}", backend=self.name,
                                hint="the store was modified outside imagehub") from exc
        fh.seek(offset)
        size = max(int(rows[0]["size"]) - offset, 0)
        return ImageStream([StreamPart(name=rows[0]["name"], chunks=_chunks(fh), size=size)],
                           size=size, image=image, backend=self.name, on_close=fh.close)

    # -- changes --------------------------------------------------------------------------
    def _delete(self, image: Image) -> None:
        with self._db(write=True) as db:
            self._row_for_write(db, image.id)
            digests = [r["digest"] for r in db.execute(
                "SELECT digest FROM parts WHERE image_id = ?", (image.id,))]
            db.execute("DELETE FROM images WHERE id = ?", (image.id,))
            db.executemany("INSERT INTO pending VALUES (?, '')",
                           [(d,) for d in digests if _is_digest(d)])
        # Only once the record is gone for good: a failed commit keeps the image whole, and
        # a crash from here on leaves pending blobs, which the next open reclaims.
        with contextlib.suppress(ImageHubError, OSError):
            self._drop_unreferenced(digests)

    def _update(self, image: Image, spec: UpdateSpec) -> Image:
        with self._db(write=True) as db:
            row = self._row_for_write(db, image.id)
            props = json.loads(row["properties"])
            props.update(spec.properties)
            values: dict[str, Any] = {}
            for key in spec.remove_properties:
                props.pop(key, None)
                if key in _PROMOTED:  # a promoted field is cleared the same way
                    values[key] = None
            # A promoted key given as a property sets its field, as create does, so that
            # show, filters and 'latest' never read a value the properties contradict.
            for key in _PROMOTED:
                if key in spec.properties:
                    values[key] = spec.properties[key]
            for key in (*_PROMOTED, "name"):
                if getattr(spec, key) is not None:
                    values[key] = getattr(spec, key)
                    # ... and a field set by name keeps the property it came from in step.
                    if key in _PROMOTED and key in props and key not in spec.properties:
                        props[key] = values[key]
            if spec.visibility is not None:
                values["visibility"] = spec.visibility.value
            if spec.tags is not None:
                values["tags"] = json.dumps(list(spec.tags))
            values["properties"] = json.dumps(props)
            values["updated_at"] = _now()
            assignments = ", ".join(f"{k} = ?" for k in values)
            db.execute(f"UPDATE images SET {assignments} WHERE id = ?",
                       [*values.values(), image.id])
        return self._get(image.id, {})

    def _add_alias(self, image: Image, name: str, description: str | None) -> None:
        with self._db(write=True) as db:
            self._row_for_write(db, image.id)
            try:
                db.execute("INSERT INTO aliases VALUES (?,?,?)", (name, image.id, description))
            except sqlite3.IntegrityError:
                raise ImageConflict(f"alias {name!r} already exists", backend=self.name,
                                    hint="remove it first or pick another name") from None

    def _remove_alias(self, name: str) -> None:
        where, args = self._visible_sql("all")
        with self._db(write=True) as db:
            # An alias of an image this project cannot see does not exist for it: saying
            # whose it is would tell what another project keeps private.
            row = db.execute(f"SELECT a.image_id FROM aliases a JOIN images i ON "
                             f"i.id = a.image_id WHERE a.name = ? AND {where}",
                             [name, *args]).fetchone()
            if row is None:
                raise ImageNotFound(f"no alias named {name!r}", backend=self.name)
            # The same right as adding it: an alias is part of its image, and only the
            # image's own project may take it away (or repoint it, by remove and add).
            self._row_for_write(db, str(row["image_id"]))
            db.execute("DELETE FROM aliases WHERE name = ?", (name,))

    # -- sharing --------------------------------------------------------------------------
    def _share(self, image: Image, project: str) -> Member:
        now = _now()
        with self._db(write=True) as db:
            row = self._row_for_write(db, image.id)
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
            self._row_for_write(db, image.id)
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


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


_HEX = frozenset("0123456789abcdef")


def _locked_temp(directory: Path, claimed: list[str]) -> tuple[int, str]:
    """A new ``.part`` file in ``directory``, flocked for as long as its descriptor lives.

    Its name goes into ``claimed`` before the file exists, so a Ctrl-C landing anywhere
    in here (it can land between any two bytecodes) still leaves the caller a name to
    remove: with mkstemp the file existed before anyone knew its name.
    """
    while True:
        tmp = os.path.join(directory, f"tmp{secrets.token_hex(8)}.part")
        claimed.append(tmp)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A recovering process may have taken the file for a dead upload's between
        # mkstemp and flock; then the name is gone, and we start over with a fresh one.
        try:
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)


def _no_space(path: Path) -> bool:
    # SQLite reports a write that found no space in its WAL as a plain "disk I/O error".
    try:
        return os.statvfs(path).f_bavail == 0
    except OSError:
        return False


def _is_locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _unlink_if_dead(path: Path) -> bool:
    """Remove a tmp file unless a live process holds its flock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live upload
        try:
            if os.stat(path, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
                return False
        except FileNotFoundError:
            return False
        path.unlink()
        return True
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # The rename must survive a power cut before the commit that points at it does.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _chunks(fh: Any, size: int = 1 << 20) -> Iterator[bytes]:
    try:
        yield from read_chunks(fh.read, size)
    finally:
        fh.close()
