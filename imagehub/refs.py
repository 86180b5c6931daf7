"""``CLOUD:REF`` addressing, and the prefix rule every backend resolves refs with.

A ref may name its cloud: ``lab-lxd:ubuntu-24.04``. The text before the first colon is a
cloud name only when such a cloud is configured; otherwise the whole text is the ref, so
``sha256:ab12…`` still works. To use a ref that itself starts with a cloud's name and a
colon, give the cloud explicitly: ``local:lab-lxd:odd-name`` is the ref ``lab-lxd:odd-name``
in cloud ``local``. Only the first colon ever splits. ``CLOUD:`` alone names no image and
is refused.

Prefixes are where a typo can select the wrong image (and ``delete`` it), so they are
strict: at least ``MIN_PREFIX`` characters, never empty after a colon, and an ``ALGO:``
prefix counts only for a hash algorithm imagehub knows, compared with that algorithm's
checksum alone.
"""

from __future__ import annotations

from collections.abc import Container

from .errors import InvalidArgument

__all__ = ["KNOWN_ALGORITHMS", "MIN_PREFIX", "prefix_matches", "split_ref"]

#: the shortest id or checksum prefix that may select an image
MIN_PREFIX = 4
KNOWN_ALGORITHMS = frozenset({"md5", "sha1", "sha224", "sha256", "sha384", "sha512"})
_HEX = frozenset("0123456789abcdef")


def split_ref(text: str, clouds: Container[str]) -> tuple[str | None, str]:
    """``(cloud, ref)``; cloud is None when ``text`` does not start with a known cloud."""
    head, sep, rest = text.partition(":")
    if sep and head in clouds:
        if not rest:
            raise InvalidArgument(f"{text!r} names cloud {head!r} but no image",
                                  hint=f"write {head}:REF, e.g. {head}:my-image")
        return head, rest
    return None, text


def prefix_matches(ref: str, image_id: str, checksum: str | None) -> bool:
    """Whether ``ref`` is a prefix of ``image_id`` or of the image's checksum.

    ``ALGO:HEX`` matches only a checksum of that algorithm; a bare prefix matches the id or
    the checksum's hex digest. Empty or shorter than MIN_PREFIX never matches.
    """
    lowered = ref.lower()
    algo, sep, digest = lowered.partition(":")
    if sep:
        if algo not in KNOWN_ALGORITHMS or len(digest) < MIN_PREFIX or not set(digest) <= _HEX:
            # An ALGO: prefix is a checksum prefix or nothing; ids may still hold colons.
            return len(lowered) >= MIN_PREFIX and image_id.lower().startswith(lowered) \
                and algo not in KNOWN_ALGORITHMS
        if not checksum:
            return False
        have_algo, have_sep, have_digest = checksum.lower().partition(":")
        return bool(have_sep) and have_algo == algo and have_digest.startswith(digest)
    if len(lowered) < MIN_PREFIX:
        return False
    if image_id.lower().startswith(lowered):
        return True
    if checksum and set(lowered) <= _HEX:
        return checksum.lower().rpartition(":")[2].startswith(lowered)
    return False
