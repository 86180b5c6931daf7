"""The ``imagehub`` command line: a thin layer over the public API."""

from . import capabilities, images, info, migrate  # noqa: F401  (modules register their commands on import)
from .app import add_global_options, cli, main

add_global_options(cli)  # after every module registered its commands

__all__ = ["cli", "main"]
