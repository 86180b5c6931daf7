"""Where imagehub keeps things per user: the XDG base directories, found one way.

The XDG Base Directory specification: an unset or empty variable means the default
under ``$HOME``, and a relative path is invalid and ignored (so a stray relative value
cannot put the store under whatever the current directory happens to be).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_home", "config_home", "data_home"]


def _base(variable: str, *default: str) -> Path:
    value = os.environ.get(variable, "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path(os.path.expanduser("~"), *default)


def config_home() -> Path:
    """``$XDG_CONFIG_HOME``, else ``~/.config``."""
    return _base("XDG_CONFIG_HOME", ".config")


def data_home() -> Path:
    """``$XDG_DATA_HOME``, else ``~/.local/share``."""
    return _base("XDG_DATA_HOME", ".local", "share")


def cache_home() -> Path:
    """``$XDG_CACHE_HOME``, else ``~/.cache``."""
    return _base("XDG_CACHE_HOME", ".cache")
