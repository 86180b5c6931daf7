"""The CLI's logging: its own warning lines by default, everything (minus secrets) with
``--debug``.

Libraries speak through logging and ``warnings`` (keystoneauth1's discovery messages,
urllib3's InsecureRequestWarning). Without ``--debug`` only imagehub's own records reach
the terminal, as ``imagehub: warning: ...`` lines; what the libraries would add is
either said by imagehub itself (``verify: false`` warns once) or part of the error line.
"""

from __future__ import annotations

import logging
import sys

from .._redact import redact

__all__ = ["setup"]

_OWN = "imagehub"


class _RedactingFormatter(logging.Formatter):
    """Redacts whole formatted records, tracebacks included (belt and braces: records
    are already redacted when made)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _OwnRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == _OWN or record.name.startswith(_OWN + ".")


_handler: logging.Handler | None = None


def setup(debug: bool) -> None:
    """Route every log record and Python warning through one stderr handler."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    logging.captureWarnings(True)
    handler = logging.StreamHandler(sys.stderr)
    if debug:
        handler.setFormatter(_RedactingFormatter("%(name)s: %(message)s"))
        root.setLevel(logging.DEBUG)
    else:
        handler.setFormatter(_RedactingFormatter("imagehub: warning: %(message)s"))
        handler.addFilter(_OwnRecords())
        handler.setLevel(logging.WARNING)
        root.setLevel(logging.WARNING)
    root.addHandler(handler)
    _handler = handler
