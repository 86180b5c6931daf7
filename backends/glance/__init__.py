"""``glance`` (also ``openstack``): OpenStack Image API v2 through keystoneauth1.

pyrax's images module, on today's Glance: listing with Glance's filters and ``next``
links, sharing with member status, interoperable import and v2 tasks as Operations,
and streamed downloads verified against Glance's sha512 and md5 as they arrive.
"""

from .auth import AuthSettings
from .manager import GlanceManager

__all__ = ["AuthSettings", "GlanceManager"]
