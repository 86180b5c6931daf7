"""``connect()``: the manager for a named cloud, from the clouds file."""

from __future__ import annotations

import os

from .config import Config, load_config
from .manager import ImageManager

__all__ = ["connect"]


def connect(cloud: str | None = None,
            config: Config | str | os.PathLike[str] | None = None) -> ImageManager:
    """The ImageManager for ``cloud`` (the configured default when None).

    ``config`` is a loaded Config or a path; by default the clouds file is found as the
    CLI finds it (``$IMAGEHUB_CONFIG``, then the XDG config dir).
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    return cfg.connect(cloud)
