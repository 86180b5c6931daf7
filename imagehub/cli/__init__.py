"""The ``imagehub`` command line: a thin layer over the public API."""

from .app import cli, main  # the command modules load on first lookup (app.COMMAND_MODULES)

__all__ = ["cli", "main"]
