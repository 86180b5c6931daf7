"""Backends shipped with imagehub; each is loaded through the ``imagehub.backends``
entry points, never imported by the core."""
