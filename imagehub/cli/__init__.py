"""The ``imagehub`` command line: a thin layer over the public API."""

from . import images, info, migrate  # noqa: F401  (modules register their commands on import)
from .app import cli, main

__all__ = ["cli", "main"]
