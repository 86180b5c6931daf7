"""The ``lxd`` backend: LXD image stores over the unix socket or HTTPS (see manager.py)."""

from .manager import PUBLIC_MEMBERS, LXDManager

__all__ = ["PUBLIC_MEMBERS", "LXDManager"]
