"""Logging set-up, with secrets masked in every line.

Two layers, in this order: every configured secret by value (``redaction.scrub``: the keys of
config.yaml, tokens learnt later), then anything that looks like a key by pattern (``redact``: a
``Bearer ...`` or ``api_key=...`` the gateway was never told about).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING

from . import redaction
from .redaction import mask

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["mask", "redact", "scrub_line", "setup_logging"]

_SECRET = re.compile(
    r"(?i)(bearer\s+|api[-_]?key[\"'=:\s]+|x-goog-api-key[\"'=:\s]+|token[\"'=:\s]+|secret[\"'=:\s]+)"
    r"([A-Za-z0-9._\-~+/]{6,})"
)


def redact(text: str) -> str:
    """Mask what looks like a key (pattern only)."""
    return _SECRET.sub(lambda m: m.group(1) + mask(m.group(2)), text)


def scrub_line(text: str) -> str:
    """A line as it may be shown: known secrets masked by value, then key-like text by pattern."""
    return redact(redaction.scrub(text))


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub_line(super().format(record))


def setup_logging(debug: bool = False, settings: Settings | None = None) -> None:
    """Log to stderr with secrets masked; with ``settings``, its secrets are the known set from now
    on (the registry sets them again on every config load)."""
    if settings is not None:
        from .config import secret_values

        redaction.set_secrets(secret_values(settings))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("crossroute")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
    logging.getLogger("crossroute.usage").setLevel(logging.INFO if debug else logging.WARNING)
