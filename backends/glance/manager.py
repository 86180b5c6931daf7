"""GlanceManager: the ImageManager for OpenStack Glance (Image API v2)."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session

from imagehub._limits import check_retries
from imagehub.diskformat import label_by_bytes
from imagehub.errors import (
    BackendError,
    ChecksumMismatch,
    ImageConflict,
    ImageHubError,
    ImageNotFound,
    InvalidArgument,
    InvalidArgumentType,
    InvalidImageData,
    PermissionDenied,
    TransferError,
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
from imagehub.models import Image, Member, MemberStatus, Visibility, matches
from imagehub.operations import FunctionOperation, Operation
from imagehub.source_errors import source_errors
from imagehub.streams import (
    DataSource,
    Hasher,
    ImageStream,
    Source,
    StreamPart,
    hashing,
    open_source,
    parse_checksum,
)

from . import answers
from . import auth as auth_mod
from .errors import BACKEND
from .http import JSON_PATCH, GlanceHTTP
from .operations import ImageStatusOperation, ImportOperation, TaskOperation
from .records import CORE_FIELDS, INTERNAL_PREFIX, UPDATABLE, to_image, to_member, update_patch
from .transfer import UploadBody, response_chunks

__all__ = ["GlanceManager"]

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)
_HEXISH = re.compile(r"^(?:[a-z0-9]+:)?[0-9a-f-]{4,}$", re.I)  # id or [ALGO:]checksum prefix
# Glance computes these itself while storing; a promise in one of them is checked
# against Glance's own result instead of hashing the upload a second time here.
_SERVER_HASHES = {"md5": "checksum", "sha512": "os_hash_value"}
# Record fields create() accepts through **extra.
_NO_DATA_YET = frozenset({"queued", "saving", "uploading", "importing"})
_CREATE_EXTRA = frozenset({"protected", "min_disk", "min_ram", "os_hidden", "id"})
_LITERAL_KEYS = frozenset({"name", "id", "owner", "status", "disk_format",
                           "container_format", "visibility", "tag"})
_LIST_KEYS = frozenset({
    "name", "visibility", "member_status", "owner", "tag", "status", "size_min", "size_max",
    "sort_key", "sort_dir", "sort", "disk_format", "container_format", "protected",
    "os_hidden", "id", "created_at", "updated_at",
})


def _marker_from_next(link: str | None) -> str | None:
    if not link:
        return None
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query).get("marker")
    return values[0] if values else None


class _ExportFields:
    """What a download needs from the image record, each of its type."""

    def __init__(self, record: Mapping[str, Any], what: str) -> None:
        of = "image record"
        self.size = answers.optional_int(record, "size", what, of)
        self.disk_format = answers.optional_text(record, "disk_format", what, of)
        self.hash_algo = answers.optional_text(record, "os_hash_algo", what, of)
        self.hash_value = answers.optional_text(record, "os_hash_value", what, of)
        self.md5 = answers.optional_text(record, "checksum", what, of)


def _with_secrets_in_auth(options: Mapping[str, Any]) -> dict[str, Any]:
    opts = dict(options)
    secrets = {k: opts.pop(k) for k in ("password", "token",
                                         "application_credential_secret") if k in opts}
    if secrets:
        opts["auth"] = {**(opts.get("auth") or {}), **secrets}
    return opts


class GlanceManager(ImageManager):
    """Images in OpenStack Glance, pyrax style, over a keystoneauth1 Session."""

    name = "glance"
    capabilities = (Capability.LIST | Capability.GET | Capability.CREATE | Capability.EXPORT
                    | Capability.DELETE | Capability.UPDATE | Capability.SHARE
                    | Capability.MEMBERS)
    unsupported_reason = "Glance has no image aliases; use names or tags"
    server_filters = _LIST_KEYS
    updatable = UPDATABLE
    create_options = _CREATE_EXTRA
    ranged_export = True
    checksum_algorithms = frozenset({"sha512"})
    # A deployment configures its own list of disk formats (disk_formats in glance-api.conf)
    # and answers a label outside it with an error: Glance checks them, not imagehub.
    own_disk_formats = None
    # Record fields of the image schema clash with properties of the same name, and
    # Glance writes os_glance_* itself.
    reserved_properties = CORE_FIELDS
    reserved_property_prefixes = (INTERNAL_PREFIX,)
    options = {
        "cloud": Option(str, help="a clouds.yaml cloud (default: $OS_CLOUD, else OS_* vars)"),
        "auth_type": Option(str, help="keystoneauth1 plugin: password, "
                            "v3applicationcredential, token, none ..."),
        "auth": Option(dict, secret=True, help="the clouds.yaml 'auth' mapping: auth_url, "
                       "username, password, project_name, user_domain_name, ..."),
        "password": Option(str, secret=True, help="merged into auth (use password_env)"),
        "token": Option(str, secret=True, help="merged into auth (use token_env)"),
        "application_credential_secret": Option(str, secret=True,
                                                help="merged into auth (use ..._env)"),
        "region_name": Option(str, help="catalog region"),
        "interface": Option(str, default="public", choices=("public", "internal", "admin"),
                            help="catalog interface"),
        "endpoint_override": Option(str, help="Glance URL, instead of the catalog's"),
        "verify": Option((bool, str), help="TLS verification: true, false or a CA bundle"),
        "cacert": Option(str, help="CA bundle to verify the servers with"),
        "timeout": Option(float, help="seconds per socket operation"),
        "page_size": Option(int, default=500, help="images per listing request (max 1000 "
                            "by default in Glance)"),
        "retries": Option(int, default=3, help="retries of idempotent requests on "
                          "connection failure, 502/503/504 and 429"),
        "download_hashes": Option(str, default="all", choices=("all", "os_hash", "md5"),
                                  help="what a download is verified against: Glance's "
                                  "multihash (sha512) and md5 (all), or one of them"),
        "legacy_tasks": Option(bool, help="import_task through POST /v2/tasks: true, false, "
                               "or unset to try it and fall back to web-download"),
    }

    def __init__(
        self,
        *,
        session: ks_session.Session | None = None,
        adapter: ks_adapter.Adapter | None = None,
        region_name: str | None = None,
        interface: str = "public",
        endpoint_override: str | None = None,
        page_size: int = 500,
        retries: int = 3,
        backoff: float = 0.5,
        legacy_tasks: bool | None = None,
        hash_threads: bool = True,
        download_hashes: str = "all",
        cloud: str | None = None,
    ) -> None:
        super().__init__(cloud=cloud)
        self._update_lock = threading.Lock()
        if adapter is None:
            if session is None:
                raise InvalidArgumentType("GlanceManager needs a keystoneauth1 session or adapter",
                                          backend=BACKEND,
                                          hint="or build it with GlanceManager.from_options(...)")
            adapter = ks_adapter.Adapter(session, service_type="image", interface=interface,
                                         region_name=region_name,
                                         endpoint_override=endpoint_override)
        self.http = GlanceHTTP(adapter, retries=retries, backoff=backoff)
        self.page_size = max(1, page_size)
        self.legacy_tasks = legacy_tasks
        self.hash_threads = hash_threads
        if download_hashes not in ("all", "os_hash", "md5"):
            raise InvalidArgument(f"download_hashes must be all, os_hash or md5, not "
                                  f"{download_hashes!r}", backend=BACKEND)
        self.download_hashes = download_hashes

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, cloud: str) -> GlanceManager:
        opts = _with_secrets_in_auth(options)
        settings = auth_mod.resolve(opts)
        return cls(
            session=settings.session(),
            region_name=settings.region_name,
            interface=settings.interface,
            endpoint_override=settings.endpoint_override,
            page_size=int(opts.get("page_size") or 500),
            retries=check_retries(opts["retries"], key="retries")
            if opts.get("retries") is not None else 3,
            legacy_tasks=opts.get("legacy_tasks"),
            download_hashes=str(opts.get("download_hashes") or "all"),
            cloud=cloud,
        )

    @classmethod
    def describe_config(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """What ``options`` resolve to, and where each value came from; never secrets."""
        return auth_mod.describe(_with_secrets_in_auth(options))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.http.adapter.session.session.close()

    @property
    def project_id(self) -> str | None:
        """The project this session acts for (the owner of images it creates)."""
        return self.http.project_id()

    def _image(self, record: Mapping[str, Any], what: str) -> Image:
        return self.bind(to_image(record, what))

    def _record(self, image_id: str) -> dict[str, Any]:
        return self.http.json("GET", f"images/{image_id}", f"get image {image_id}")

    # -- listing --------------------------------------------------------------------------
    def _list(self, limit: int | None, marker: str | None, filters: Mapping[str, Any]) -> Page:
        params: dict[str, Any] = {"limit": limit or self.page_size}
        if marker:
            params["marker"] = marker
        for key, value in filters.items():
            if key == "tag" and isinstance(value, list | tuple | set | frozenset):
                params["tag"] = [str(v) for v in value]
            elif isinstance(value, Visibility | MemberStatus):
                params[key] = value.value
            elif isinstance(value, bool):
                params[key] = "true" if value else "false"
            else:
                params[key] = str(value)
        try:
            body = self.http.json("GET", "images", "list images", params=params)
        except InvalidImageData as exc:
            said = exc.server_message or ""
            if marker and (marker in said or "marker" in said.lower()):
                raise ImageNotFound(f"marker {marker!r} is not an image", backend=BACKEND,
                                    server_message=exc.server_message,
                                    status_code=exc.status_code) from exc
            raise
        what = "list images"
        listed = answers.records(body, "images", what, required=True)
        return Page([to_image(r, what) for r in listed],
                    _marker_from_next(answers.optional_text(body, "next", what)))

    def _server_filter_ok(self, key: str, value: Any) -> bool:
        # Glance reads "op:value" ("in:", "eq:") in these filters; a value with a colon of
        # its own is matched on the client, exactly. (sort=name:asc, created_at=gte:... are
        # Glance syntax on purpose and go to the server.)
        if key in ("created_at", "updated_at"):
            # Glance compares its sub-second times but shows whole seconds: lte:T with T
            # the time it shows left the image out. Matched on the times it shows instead.
            return False
        return not (key in _LITERAL_KEYS and isinstance(value, str) and ":" in value)

    def _get(self, ref: str, filters: Mapping[str, Any]) -> Image:
        server, client = self._split_filters(filters)
        if _UUID.match(ref):
            with contextlib.suppress(ImageNotFound):
                return to_image(self._record(ref), f"get image {ref}")
        if ":" in ref:
            # Glance reads "op:value" in a name filter as an operator ("in:", "eq:"), so a
            # ref with a colon is resolved over a listing, by the shared rules.
            return resolve_ref((i for i in self._iter_pages(server)
                                if matches(self.bind(i), client)), ref, backend=BACKEND)
        # Exactly this name: a database that compares names case-insensitively or
        # without trailing spaces (MySQL's default collation) must not widen rule 3.
        named = [i for i in self._iter_pages({**server, "name": ref})
                 if i.name == ref and matches(self.bind(i), client)]
        if len(named) == 1:
            return named[0]
        if named:
            return resolve_ref(named, ref, backend=BACKEND)  # raises AmbiguousImage
        if _HEXISH.match(ref):
            # Rule 4 of resolve_ref: a unique id prefix. Costs a full listing, so only
            # for refs that could be one.
            return resolve_ref(self._iter_pages(server), ref, backend=BACKEND)
        raise ImageNotFound(f"no image matches {ref!r}", backend=BACKEND,
                            hint="run 'imagehub list' to see what exists")

    def _iter_pages(self, server: Mapping[str, Any]) -> Iterable[Image]:
        marker: str | None = None
        while True:
            page = self._list(self.page_size, marker, server)
            yield from page
            if not page.next_marker or page.next_marker == marker:
                return
            marker = page.next_marker

    # -- create ---------------------------------------------------------------------------
    def _new_record(self, name: str, *, disk_format: str | None, container_format: str | None,
                    visibility: Visibility | str | None, properties: Mapping[str, Any],
                    tags: Sequence[str], description: str | None = None,
                    architecture: str | None = None, extra: Mapping[str, Any] | None = None
                    ) -> str:
        """Create the image record; its id."""
        unknown = set(extra or {}) - _CREATE_EXTRA
        if unknown:
            raise InvalidArgument(f"unknown create option(s) for Glance: "
                                  f"{', '.join(sorted(unknown))} (known: "
                                  f"{', '.join(sorted(_CREATE_EXTRA))})", backend=BACKEND)
        body: dict[str, Any] = {
            "name": name,
            "disk_format": disk_format or "raw",
            "container_format": container_format or "bare",
            **{str(k): str(v) for k, v in properties.items()},
            **dict(extra or {}),
        }
        if visibility is not None:
            body["visibility"] = Visibility(visibility).value
        if tags:
            body["tags"] = list(dict.fromkeys(tags))
        if description:
            body["description"] = description
        if architecture:
            body["architecture"] = architecture
        what = f"create image {name!r}"
        record = self.http.json("POST", "images", what, json=body)
        return answers.text(record, "id", what, "new image record")

    def _create(self, parts: list[DataSource], spec: CreateSpec) -> Image | Operation[Image]:
        if len(parts) != 1:
            raise InvalidImageData("Glance images are one file; a split (metadata + rootfs) "
                                   "image cannot be stored as is", backend=BACKEND,
                                   hint="pack it into one file first")
        image_id = self._new_record(
            spec.name, disk_format=spec.disk_format, container_format=spec.container_format,
            visibility=spec.visibility, properties=spec.properties, tags=spec.tags,
            description=spec.description, architecture=spec.architecture, extra=spec.extra)
        with self._discard_on_failure(image_id):
            record = self._upload(image_id, parts[0], spec)
        image = to_image(record, f"get image {image_id}")
        if image.status == "active":
            return image
        return ImageStatusOperation(self.http, image_id, to_image)

    @contextlib.contextmanager
    def _discard_on_failure(self, image_id: str) -> Any:
        """A failed upload must not leave a queued record behind (pyrax left them)."""
        try:
            yield
        except BaseException:
            self._discard(image_id)
            raise

    def _discard(self, image_id: str, attempts: int = 6) -> None:
        # Glance may still be inside the failed upload's request when the DELETE arrives
        # (it learns of the cut connection late) and answer 409 or a 500 ("database is
        # locked" on SQLite); keep trying briefly, then give up quietly: the caller's
        # error is the one that matters.
        delay = 0.1
        for _ in range(attempts):
            try:
                self.http.request("DELETE", f"images/{image_id}",
                                  f"delete failed upload {image_id}", retry=False)
                return
            except ImageNotFound:
                return
            except (BackendError, ImageConflict):
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except ImageHubError:
                return

    def _upload(self, image_id: str, source: DataSource, spec: CreateSpec) -> dict[str, Any]:
        promise = parse_checksum(spec.checksum) if spec.checksum else None
        local = Hasher([promise[0]]) if promise and promise[0] not in _SERVER_HASHES else None
        chunks = source.chunks()
        if local is not None or spec.progress is not None:
            chunks = hashing(chunks, local or Hasher([]), spec.progress)
        body = UploadBody(chunks, source.size, f"upload of image {image_id}")
        # A failing source drops the connection, so Glance stops waiting for the rest of
        # the body at once; the caller gets the source's own error.
        with source_errors():
            self.http.request(
                "PUT", f"images/{image_id}/file", f"upload image {image_id}", data=body,
                headers={"Content-Type": "application/octet-stream"}, retry=False)
        record = self._record(image_id)
        if promise is not None:
            algo, digest = promise
            actual = answers.optional_text(record, _SERVER_HASHES[algo],
                                           f"get image {image_id}", "image record") \
                if local is None else local.hexdigest(algo)
            if str(actual).lower() != digest:
                raise ChecksumMismatch(f"image {spec.name!r}", f"{algo}:{digest}",
                                       f"{algo}:{actual}", backend=BACKEND)
        return record

    # -- interoperable import -------------------------------------------------------------
    def import_methods(self) -> list[str]:
        """The import methods this Glance enables (``GET /v2/info/import``)."""
        what = "list import methods"
        body = self.http.json("GET", "info/import", what)
        methods = answers.optional_record(body, "import-methods", what) or {}
        return answers.texts(methods, "value", what, "'import-methods'")

    def stores(self) -> list[str]:
        """Store ids of a multi-store Glance (``GET /v2/info/stores``)."""
        what = "list stores"
        body = self.http.json("GET", "info/stores", what)
        return [answers.text(store, "id", what, "store")
                for store in answers.records(body, "stores", what)]

    def _start_import(self, image_id: str, method: dict[str, Any], *,
                      stores: Sequence[str] = (), all_stores: bool | None = None,
                      all_stores_must_succeed: bool | None = None) -> ImportOperation:
        # No task listing first to tell old tasks from the new one: Glance creates the
        # task before it answers, so it is the newest, and its id is the image's import
        # lock. (Listing an image's tasks is a write in Glance; see ImportOperation.)
        body: dict[str, Any] = {"method": method}
        if stores:
            body["stores"] = list(stores)
        if all_stores is not None:
            body["all_stores"] = all_stores
        if all_stores_must_succeed is not None:
            body["all_stores_must_succeed"] = all_stores_must_succeed
        self.http.request("POST", f"images/{image_id}/import",
                          f"{method['name']} import of image {image_id}", json=body)
        return ImportOperation(self.http, image_id, method["name"], self._image,
                               stores=tuple(stores))

    def web_download(self, url: str, *, name: str, disk_format: str | None = None,
                     container_format: str | None = None,
                     visibility: Visibility | str | None = Visibility.PRIVATE,
                     properties: Mapping[str, Any] | None = None, tags: Sequence[str] = (),
                     stores: Sequence[str] = (), **extra: Any) -> ImportOperation:
        """Glance fetches ``url`` itself (the native path: no byte passes through here)."""
        self.require(Capability.CREATE, "web_download")
        image_id = self._new_record(name, disk_format=disk_format,
                                    container_format=container_format, visibility=visibility,
                                    properties=properties or {}, tags=tags, extra=extra)
        with self._discard_on_failure(image_id):
            return self._start_import(image_id, {"name": "web-download", "uri": url},
                                      stores=stores)

    def glance_direct(self, data: Source, *, name: str, disk_format: str | None = None,
                      container_format: str | None = None,
                      visibility: Visibility | str | None = Visibility.PRIVATE,
                      properties: Mapping[str, Any] | None = None, tags: Sequence[str] = (),
                      stores: Sequence[str] = (), **extra: Any) -> ImportOperation:
        """Stage the bytes (``PUT /stage``), then import them (``glance-direct``)."""
        self.require(Capability.CREATE, "glance_direct")
        disk_format, source = label_by_bytes(open_source(data), disk_format, BACKEND)
        image_id = self._new_record(name, disk_format=disk_format,
                                    container_format=container_format, visibility=visibility,
                                    properties=properties or {}, tags=tags, extra=extra)
        with self._discard_on_failure(image_id):
            body = UploadBody(source.chunks(), source.size, f"staging of image {image_id}")
            with source_errors():
                self.http.request("PUT", f"images/{image_id}/stage",
                                  f"stage image {image_id}", data=body, retry=False,
                                  headers={"Content-Type": "application/octet-stream"})
            return self._start_import(image_id, {"name": "glance-direct"}, stores=stores)

    def copy_image(self, image: Image | str, stores: Sequence[str] = (), *,
                   all_stores: bool = False,
                   all_stores_must_succeed: bool = True) -> ImportOperation:
        """Copy an active image into more stores, server side (admin-only by default)."""
        self.require(Capability.CREATE, "copy_image")
        if not stores and not all_stores:
            raise InvalidArgument("copy_image needs target stores (or all_stores=True)",
                                  backend=BACKEND, hint=f"stores here: {self.stores()}")
        target = self.resolve(image)
        return self._start_import(target.id, {"name": "copy-image"}, stores=stores,
                                  all_stores=all_stores or None,
                                  all_stores_must_succeed=all_stores_must_succeed)

    # -- pyrax-style tasks ----------------------------------------------------------------
    def import_task(self, url: str, *, name: str, disk_format: str = "qcow2",
                    container_format: str = "bare",
                    properties: Mapping[str, Any] | None = None) -> Operation[Image]:
        """Import an image from ``url`` as a task (pyrax's ``import_task``).

        Uses the v2 tasks API (``POST /v2/tasks``, type ``import``) where the deployment
        allows it (by default only admins may), else interoperable web-download. Either
        way the Operation goes pending -> processing -> success | failure with Glance's
        message, and its result is the new image.
        """
        self.require(Capability.CREATE, "import_task")
        if self.legacy_tasks is not False:
            task_body = {"type": "import", "input": {
                "import_from": url,
                "import_from_format": disk_format,
                "image_properties": {"name": name, "disk_format": disk_format,
                                     "container_format": container_format,
                                     **{str(k): str(v) for k, v in (properties or {}).items()}},
            }}
            try:
                what = f"import task for {name!r}"
                task = self.http.json("POST", "tasks", what, json=task_body)
                return TaskOperation(self.http, task, self._image, what)
            except (PermissionDenied, ImageNotFound):
                if self.legacy_tasks:
                    raise
        return self.web_download(url, name=name, disk_format=disk_format,
                                 container_format=container_format, properties=properties)

    def export_task(self, image: Image | str, destination: str | os.PathLike[str] | IO[bytes],
                    *, force: bool = False) -> Operation[Path | None]:
        """Export in a background thread to a path or binary file object (pyrax's
        ``export_task``, with a local destination instead of a Swift container)."""
        self.require(Capability.EXPORT, "export_task")
        target = self.resolve(image)

        def run() -> Path | None:
            written = self.export(target).save(destination, force=force)
            return written[0] if written else None

        return FunctionOperation(run, backend=BACKEND, name=f"export-{target.id}")

    def get_task(self, task_id: str) -> Operation[Image]:
        what = f"get task {task_id}"
        task = self.http.json("GET", f"tasks/{task_id}", what)
        return TaskOperation(self.http, task, self._image, what)

    def image_tasks(self, image: Image | str) -> list[dict[str, Any]]:
        """The import tasks Glance keeps for an image (status, message, result)."""
        target = self.resolve(image)
        what = f"list tasks of {target.id}"
        body = self.http.json("GET", f"images/{target.id}/tasks", what)
        return [dict(task) for task in answers.records(body, "tasks", what)]

    # -- export ---------------------------------------------------------------------------
    def _export(self, image: Image) -> ImageStream:
        what = f"get image {image.id}"
        record = image.raw if image.raw.get("status") == "active" else self._record(image.id)
        status = answers.optional_text(record, "status", what, "image record")
        if status in _NO_DATA_YET:
            raise ImageHubError(f"image {image.id} is {status}: it has no data "
                                "to export yet", backend=BACKEND,
                                hint="wait for it to become active")
        fields = _ExportFields(record, what)
        # Anything else (deactivated, killed ...) is Glance's to refuse, in its own words.
        resp = self.http.request("GET", f"images/{image.id}/file",
                                 f"download image {image.id}", stream=True,
                                 headers={"Accept": "application/octet-stream"})
        if resp.status_code == 204:
            resp.close()
            raise ImageHubError(f"image {image.id} has no data", backend=BACKEND)
        size = fields.size
        length = resp.headers.get("Content-Length")
        if size is None and length and length.isdigit():
            size = int(length)
        promises = []
        if fields.hash_algo and fields.hash_value and self.download_hashes != "md5":
            promises.append(f"{fields.hash_algo.lower()}:{fields.hash_value}")
        md5 = fields.md5 or resp.headers.get("Content-MD5")
        if md5 and (self.download_hashes != "os_hash" or not promises):
            promises.append(f"md5:{md5}")
        part = StreamPart(name="image", chunks=response_chunks(resp, f"download of {image.id}"),
                          size=size, filename=f"{image.id}.{fields.disk_format or 'img'}")
        return ImageStream([part], checksum=promises[0] if promises else None,
                           expected=promises[1:], size=size, disk_format=fields.disk_format,
                           image=image, backend=BACKEND, on_close=resp.close,
                           hash_threads=self.hash_threads)

    def _export_from(self, image: Image, offset: int) -> ImageStream:
        # Glance answers a Range with 206; the rest of the image, unverified here (the
        # promises cover the whole), for a caller that carries its own hash state.
        resp = self.http.request("GET", f"images/{image.id}/file",
                                 f"download image {image.id} from byte {offset}",
                                 stream=True, headers={"Accept": "application/octet-stream",
                                                       "Range": f"bytes={offset}-"})
        if resp.status_code != 206:
            resp.close()
            raise TransferError(f"download of {image.id}: Glance ignored the range "
                                f"(answered {resp.status_code}); cannot resume",
                                backend=BACKEND)
        size = image.size - offset if image.size is not None else None
        part = StreamPart(name="image", chunks=response_chunks(resp, f"download of {image.id}"),
                          size=size)
        return ImageStream([part], size=size, image=image, backend=BACKEND,
                           on_close=resp.close)

    # -- changes --------------------------------------------------------------------------
    def _delete(self, image: Image) -> None:
        try:
            self.http.request("DELETE", f"images/{image.id}", f"delete image {image.id}")
        except PermissionDenied as exc:
            if "protected" in (exc.server_message or "").lower():
                refused = PermissionDenied(
                    f"image {image.id} is protected and cannot be deleted", backend=BACKEND,
                    server_message=exc.server_message, status_code=exc.status_code,
                    hint="unprotect it first: update(image, protected=False)")
                refused.cli_hint = f"unprotect it first: imagehub update {image.id} --unprotected"
                raise refused from exc
            raise

    def _update(self, image: Image, spec: UpdateSpec) -> Image:
        # Glance applies a PATCH to the record it loaded and saves every property back:
        # two PATCHes of one image that overlap lose one's changes. Updates through one
        # manager take turns.
        with self._update_lock:
            current = self._record(image.id)
            patch = update_patch(current, spec)
            if not patch:
                return to_image(current, f"get image {image.id}")
            what = f"update image {image.id}"
            record = self.http.json("PATCH", f"images/{image.id}", what,
                                    json=patch, headers={"Content-Type": JSON_PATCH})
        return to_image(record, what)

    def rename(self, image: Image | str, name: str) -> Image:
        return self.update(image, name=name)

    def add_tag(self, image: Image | str, tag: str) -> Image:
        self.require(Capability.UPDATE, "add_tag")
        target = self.resolve(image)
        self.http.request("PUT", f"images/{target.id}/tags/{urllib.parse.quote(tag, safe='')}",
                          f"tag image {target.id}")
        return self.get(target.id)

    def remove_tag(self, image: Image | str, tag: str) -> Image:
        self.require(Capability.UPDATE, "remove_tag")
        target = self.resolve(image)
        self.http.request("DELETE",
                          f"images/{target.id}/tags/{urllib.parse.quote(tag, safe='')}",
                          f"untag image {target.id}")
        return self.get(target.id)

    def deactivate(self, image: Image | str) -> Image:
        """Make the data unreadable to non-admins (downloads give 403) until reactivated."""
        return self._action(image, "deactivate")

    def reactivate(self, image: Image | str) -> Image:
        return self._action(image, "reactivate")

    def _action(self, image: Image | str, action: str) -> Image:
        self.require(Capability.UPDATE, action)
        target = self.resolve(image)
        self.http.request("POST", f"images/{target.id}/actions/{action}",
                          f"{action} image {target.id}", retry=True)
        return self.get(target.id)

    # -- sharing --------------------------------------------------------------------------
    def _share(self, image: Image, project: str) -> Member:
        record = self._record(image.id)
        if record.get("visibility") == "private":
            # Glance refuses members on a private image (403); sharing needs 'shared'.
            self._update(image, UpdateSpec(visibility=Visibility.SHARED))
        what = f"share image {image.id} with {project}"
        try:
            body = self.http.json("POST", f"images/{image.id}/members", what,
                                  json={"member": project})
        except ImageConflict as exc:
            raise ImageConflict(f"image {image.id} is already shared with {project!r}",
                                backend=BACKEND, server_message=exc.server_message,
                                status_code=exc.status_code) from exc
        return to_member(body, what)

    def _unshare(self, image: Image, project: str) -> None:
        self.http.request("DELETE", f"images/{image.id}/members/{project}",
                          f"unshare image {image.id} from {project}")

    def _members(self, image: Image) -> Iterable[Member]:
        what = f"list members of image {image.id}"
        body = self.http.json("GET", f"images/{image.id}/members", what)
        return [to_member(m, what) for m in answers.records(body, "members", what)]

    def _update_member(self, image: Image, status: MemberStatus,
                       member: str | None) -> Member:
        member = member or self.project_id
        if not member:
            raise ImageHubError("cannot tell which project to answer for: the session has no "
                                "project", backend=BACKEND, hint="pass member=PROJECT_ID")
        what = f"set membership of {member} in image {image.id}"
        body = self.http.json("PUT", f"images/{image.id}/members/{member}", what,
                              json={"status": status.value})
        return to_member(body, what)
