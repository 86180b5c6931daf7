"""Server-to-server image copies between two LXD servers, in three modes.

* ``pull``: the target downloads from the source. pylxd's ``Image.copy`` does only
  this, and fails for a source reached over the unix socket (it hands the target the
  socket URL) and for public images (it sends no certificate, so the target cannot
  verify the source). Here the source's HTTPS address comes from its own
  ``environment.addresses`` and its certificate always travels with the request; a
  private image also gets a one-time secret.
* ``push``: the target issues a one-time secret (``POST /1.0/images`` in push mode)
  and the source uploads to it (``POST /1.0/images/<fp>/export``).
* ``relay``: the bytes stream through this client, export to import, in bounded memory.

``auto`` picks pull when the source listens on HTTPS, push when only the target does,
and relay otherwise. Aliases travel with their descriptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from imagehub.errors import ImageConflict, ImageHubError, ImageNotFound, InvalidArgument
from imagehub.models import Image
from imagehub.streams import DataSource

from .errors import BACKEND
from .operations import LXDOperation, operation_id

if TYPE_CHECKING:
    from .manager import LXDManager

MODES = ("auto", "pull", "push", "relay")


def plan(source: LXDManager, target: LXDManager) -> str:
    if source.https_url() is not None:
        return "pull"
    if target.https_url() is not None:
        return "push"
    return "relay"


def copy_image(source: LXDManager, image: Image, target: LXDManager, *, aliases: bool,
               public: bool | None, auto_update: bool | None, mode: str,
               timeout: float | None) -> Image:
    if mode not in MODES:
        raise InvalidArgument(f"copy mode must be one of {', '.join(MODES)}, got {mode!r}",
                              backend=BACKEND)
    fingerprint = image.id
    # Fresh, not image.raw: aliases or flags may have changed since the Image was read.
    record = source._record(fingerprint)
    alias_list = [{"name": str(a["name"]), "description": str(a.get("description") or "")}
                  for a in record.get("aliases") or ()] if aliases else []
    is_public = bool(record.get("public")) if public is None else public
    auto = bool(record.get("auto_update")) if auto_update is None else auto_update
    properties = {str(k): str(v) for k, v in (record.get("properties") or {}).items()}
    try:
        target._record(fingerprint)
    except ImageNotFound:
        pass
    else:
        raise ImageConflict(f"image {fingerprint} already exists on the target",
                            backend=BACKEND, hint="delete it there first, or skip it")
    target._check_aliases_free(a["name"] for a in alias_list)
    chosen = plan(source, target) if mode == "auto" else mode
    wait = timeout if timeout is not None else target.op_timeout
    if chosen == "pull":
        _pull(source, target, fingerprint, record, alias_list, is_public, auto, properties,
              wait)
    elif chosen == "push":
        _push(source, target, fingerprint, alias_list, is_public, properties, wait)
        if auto:
            target.update(fingerprint, auto_update=True)
    else:
        _relay(source, target, image, alias_list, is_public, auto, properties, wait)
    return target._image(fingerprint)


def _pull(source: LXDManager, target: LXDManager, fingerprint: str,
          record: Mapping[str, Any], alias_list: list[dict[str, str]], public: bool,
          auto_update: bool, properties: Mapping[str, str], wait: float | None) -> None:
    url = source.https_url()
    if url is None:
        raise ImageHubError("pull mode needs the source LXD to listen on HTTPS "
                            "(core.https_address)", backend=BACKEND,
                            hint="use mode='push' or mode='relay'")
    src: dict[str, Any] = {"type": "image", "mode": "pull", "protocol": "lxd",
                           "server": url, "fingerprint": fingerprint,
                           "certificate": source.server_certificate()}
    secret_op: str | None = None
    if not record.get("public"):
        # A one-time secret lets the (untrusted) target read this private image.
        with source._errors("creating a download secret"):
            response = source.api.images[fingerprint].secret.post(json={})
        body = response.json()
        secret_op = operation_id(response)
        src["secret"] = (body.get("metadata") or {}).get("metadata", {}).get("secret")
    request = {"source": src, "public": public, "auto_update": auto_update,
               "properties": dict(properties), "aliases": alias_list}
    try:
        with target._errors(f"copying image {fingerprint}"):
            response = target.api.images.post(json=request)
        op: LXDOperation[Mapping[str, Any]] = target._operation(
            response, f"copying image {fingerprint}", on_success=lambda meta: meta,
            on_failure=lambda _err: target._delete_quietly(_existing(target, fingerprint)))
        op.wait(wait)
    finally:
        if secret_op is not None:
            _cancel(source, secret_op)


def _push(source: LXDManager, target: LXDManager, fingerprint: str,
          alias_list: list[dict[str, str]], public: bool, properties: Mapping[str, str],
          wait: float | None) -> None:
    url = target.https_url()
    if url is None:
        raise ImageHubError("push mode needs the target LXD to listen on HTTPS "
                            "(core.https_address)", backend=BACKEND,
                            hint="use mode='relay'")
    # The token carries what the target applies once the bytes arrive; LXD takes the
    # properties from it too, so they must be the source's, not empty.
    token = {"source": {"type": "image", "mode": "push", "fingerprint": fingerprint},
             "public": public, "properties": dict(properties), "aliases": alias_list}
    with target._errors("preparing the target for a push"):
        response = target.api.images.post(json=token)
    token_op = operation_id(response)
    secret = ((response.json().get("metadata") or {}).get("metadata") or {}).get("secret")
    push = {"target": url, "secret": secret, "certificate": target.server_certificate()}
    if target.endpoint is not None and target.endpoint.project:
        push["project"] = target.endpoint.project
    try:
        with source._errors(f"pushing image {fingerprint}"):
            response = source.api.images[fingerprint].export.post(json=push)
        op: LXDOperation[Mapping[str, Any]] = source._operation(
            response, f"pushing image {fingerprint}", on_success=lambda meta: meta,
            on_failure=lambda _err: target._delete_quietly(_existing(target, fingerprint)))
        op.wait(wait)
    finally:
        _cancel(target, token_op)


def _relay(source: LXDManager, target: LXDManager, image: Image,
           alias_list: list[dict[str, str]], public: bool, auto_update: bool,
           properties: Mapping[str, str], wait: float | None) -> None:
    with source.export(image) as stream:
        parts = [DataSource(name=p.name, size=None, _open=_opener(p.chunks))
                 for p in stream.parts]
        # The rootfs part's name is only read once the metadata has streamed past.
        vm = image.container_format == "virtual-machine" if len(parts) > 1 else None
        op = target._upload(
            parts, properties=properties, public=public,
            aliases=[(a["name"], a["description"]) for a in alias_list],
            checksum=f"sha256:{image.id}", vm=vm, auto_update=auto_update)
        op.wait(wait)


def _opener(chunks: Iterator[bytes]) -> Callable[[], Iterator[bytes]]:
    return lambda: chunks


def _existing(manager: LXDManager, fingerprint: str) -> str:
    try:
        manager._record(fingerprint)
    except ImageHubError:
        return ""
    return fingerprint


def _cancel(manager: LXDManager, op_id: str) -> None:
    # Unused secrets would otherwise stay valid on the server until it restarts.
    try:
        manager.api.operations[op_id].delete()
    except Exception:  # noqa: BLE001 - already used up, or gone: either way harmless
        pass
