"""``Hub``: every configured cloud at once.

Listing asks all clouds concurrently (threads: every backend SDK here is synchronous), so
N clouds cost about the slowest one, not the sum. A cloud that fails (down, bad
credentials, plugin missing) hides nothing else: its error is returned beside the images.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .config import Config, load_config
from .errors import ImageHubError, ImageNotFound, InvalidArgument, InvalidArgumentType
from .manager import Capability, ImageManager, _check_text
from .models import Image, latest
from .refs import split_ref

__all__ = ["CloudFailure", "Hub", "HubListing", "IncompleteAnswer"]


@dataclasses.dataclass(frozen=True)
class CloudFailure:
    """One cloud that could not answer, and why."""

    cloud: str
    error: ImageHubError

    def __str__(self) -> str:
        return f"cloud {self.cloud!r}: {self.error}"


@dataclasses.dataclass
class HubListing:
    """Images from every cloud that answered, plus the failures of those that did not.

    Iterating it yields the images; check ``failures`` (or ``ok``) before trusting that
    the list is complete.
    """

    images: list[Image]
    failures: list[CloudFailure]

    def __iter__(self) -> Iterator[Image]:
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def ok(self) -> bool:
        return not self.failures


class IncompleteAnswer(ImageHubError):
    """Some clouds failed, so an answer over all clouds may be wrong (e.g. stale)."""

    def __init__(self, what: str, image: Image | None, failures: Sequence[CloudFailure]
                 ) -> None:
        found = (f"the newest image of {what} among the clouds that answered is "
                 f"{image.cloud}:{image.id} ({image.name})" if image is not None
                 else f"no image of {what} in the clouds that answered")
        down = "; ".join(str(f) for f in failures)
        super().__init__(f"{found}, but {len(failures)} cloud(s) failed, so a newer one may "
                         f"exist: {down}", hint="fix or leave out the failing clouds")
        self.image, self.failures = image, list(failures)


class Hub:
    """All configured clouds (or the named subset) behind one object."""

    def __init__(self, config: Config | str | os.PathLike[str] | None = None,
                 clouds: Sequence[str] | None = None, *, max_workers: int = 16) -> None:
        self.config = config if isinstance(config, Config) else load_config(config)
        if isinstance(clouds, str | bytes):
            # One string is iterable too: Hub(clouds="lab") must not mean clouds l, a, b.
            raise InvalidArgumentType(f"clouds must be a list of cloud names, got {clouds!r}",
                                      hint=f"pass clouds=[{clouds!r}]")
        self.clouds = list(clouds) if clouds is not None else list(self.config.clouds)
        for name in self.clouds:
            self.config.cloud(name)  # unknown names fail now, with the configured list
        self._managers: dict[str, ImageManager] = {}
        self._max_workers = max_workers

    def manager(self, cloud: str) -> ImageManager:
        if cloud not in self._managers:
            self._managers[cloud] = self.config.connect(cloud)
        return self._managers[cloud]

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()
        self._managers.clear()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _list_one(self, cloud: str, filters: dict[str, Any]) -> list[Image]:
        manager = self.manager(cloud)
        if Capability.LIST not in type(manager).capabilities:
            return []
        return list(manager.all(**filters))

    def all(self, *, latest: bool = False, **filters: Any) -> HubListing:
        """Every image of every cloud, listed concurrently; each image knows its cloud."""
        if not isinstance(latest, bool):
            raise InvalidArgumentType(f"latest must be True or False, got {latest!r}")
        images: list[Image] = []
        failures: list[CloudFailure] = []
        workers = max(1, min(self._max_workers, len(self.clouds)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hub") as pool:
            futures = {cloud: pool.submit(self._list_one, cloud, dict(filters))
                       for cloud in self.clouds}
            refused: list[InvalidArgument] = []
            for cloud, future in futures.items():
                try:
                    images.extend(future.result())
                except InvalidArgument as exc:
                    # A filter key one backend knows (LXD's type) or a property only some
                    # clouds' images have: that cloud has no match. Refused everywhere, it
                    # is the caller's mistake, not a cloud's failure.
                    refused.append(exc)
                except ImageHubError as exc:
                    failures.append(CloudFailure(cloud, exc))
                except Exception as exc:  # noqa: BLE001 - a plugin bug must not hide others
                    failures.append(CloudFailure(cloud, ImageHubError(
                        f"{type(exc).__name__}: {exc}", hint="run with --debug")))
        if refused and len(refused) == len(self.clouds):
            raise refused[0]
        if latest:
            images = _latest_per_cloud(images)
        return HubListing(images, failures)

    def latest_listing(self, family: str, *, architecture: str | None = None,
                       region: str | None = None) -> HubListing:
        """The newest image of ``family`` (zero or one) beside the clouds that failed."""
        _check_text("family", family)
        for kind, value in (("architecture", architecture), ("region", region)):
            if value is not None:
                _check_text(kind, value)
        filters: dict[str, Any] = {"family": family}
        if architecture:
            filters["architecture"] = architecture
        if region:
            filters["region"] = region
        listing = self.all(**filters)
        return HubListing(latest(listing.images, keys=())[:1], listing.failures)

    def latest(self, family: str, *, architecture: str | None = None,
               region: str | None = None) -> Image:
        """The newest image of ``family`` (for an architecture, in a region), wherever it is.

        Every cloud must answer: if one failed, the newest image might live there, so
        :class:`IncompleteAnswer` is raised, carrying the best image found (``image``) and
        the ``failures``. Use :meth:`latest_listing` to take a partial answer knowingly.
        Raises ImageNotFound when every cloud answered and none has one.
        """
        listing = self.latest_listing(family, architecture=architecture, region=region)
        what = (f"family {family!r}" + (f" for {architecture}" if architecture else "")
                + (f" in {region}" if region else ""))
        if listing.failures:
            raise IncompleteAnswer(what, listing.images[0] if listing.images else None,
                                   listing.failures)
        if listing.images:
            return listing.images[0]
        raise ImageNotFound(f"no image of {what} in clouds {', '.join(self.clouds)}")

    def get(self, ref: str) -> Image:
        """An image by ``CLOUD:REF`` (a bare ref means the default cloud)."""
        _check_text("image reference", ref)
        cloud, bare = split_ref(ref, self.config.clouds)
        return self.manager(cloud or self.config.default).get(bare)


def _latest_per_cloud(images: list[Image]) -> list[Image]:
    return latest(images, keys=("cloud", "family", "region", "architecture"))
