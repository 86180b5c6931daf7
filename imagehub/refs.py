"""``CLOUD:REF`` addressing.

A ref may name its cloud: ``lab-lxd:ubuntu-24.04``. The text before the first colon is a
cloud name only when such a cloud is configured; otherwise the whole text is the ref, so
``sha256:ab12…`` still works. To use a ref that itself starts with a cloud's name and a
colon, give the cloud explicitly: ``local:lab-lxd:odd-name`` is the ref ``lab-lxd:odd-name``
in cloud ``local``. Only the first colon ever splits.
"""

from __future__ import annotations

from collections.abc import Container

__all__ = ["split_ref"]


def split_ref(text: str, clouds: Container[str]) -> tuple[str | None, str]:
    """``(cloud, ref)``; cloud is None when ``text`` does not start with a known cloud."""
    head, sep, rest = text.partition(":")
    if sep and head in clouds and rest:
        return head, rest
    return None, text
