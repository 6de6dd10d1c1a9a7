"""Logging set-up, with secrets masked in every line."""

from __future__ import annotations

import logging
import re
import sys

_SECRET = re.compile(
    r"(?i)(bearer\s+|api[-_]?key[\"'=:\s]+|x-goog-api-key[\"'=:\s]+|token[\"'=:\s]+|secret[\"'=:\s]+)"
    r"([A-Za-z0-9._\-~+/]{6,})"
)


def mask(value: str) -> str:
    """Mask a secret for display: keep a short prefix and the last four characters."""
    if len(value) <= 8:
        return "****"
    return f"{value[:3]}...{value[-4:]}"


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: m.group(1) + mask(m.group(2)), text)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(debug: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("crossroute")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
    logging.getLogger("crossroute.usage").setLevel(logging.INFO if debug else logging.WARNING)
