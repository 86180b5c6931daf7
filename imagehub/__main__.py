"""``python -m imagehub`` is the ``imagehub`` command."""

from .cli import main

main()
