"""Every upstream secret the gateway knows, masked by value wherever text leaves it.

Pattern-based masking (``logs.redact``) catches things that look like keys; this module catches
the exact values of the configured credentials (and, later, OAuth tokens), so an upstream that
echoes a key in its error message ("Incorrect API key provided: sk-...") cannot leak it to the
client, the log or ``crossroute check``. The set is replaced on every config load; the scrub is
only ever run on error paths and log lines, never on the hot path of a successful answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_MIN_LEN = 6  # shorter values would mask ordinary words
_values: frozenset[str] = frozenset()
_text_re: re.Pattern[str] | None = None
_bytes_re: re.Pattern[bytes] | None = None


def mask(value: str) -> str:
    """A secret for display: a short prefix and the last four characters (``sk-...abcd``)."""
    if len(value) <= 8:
        return "****"
    return f"{value[:3]}...{value[-4:]}"


def set_secrets(values: Iterable[str | None]) -> None:
    """Replace the known secrets (every configured upstream key, every token)."""
    global _values, _text_re, _bytes_re
    vals = frozenset(v for v in values if v and len(v) >= _MIN_LEN)
    if vals == _values:
        return
    _values = vals
    if not vals:
        _text_re = _bytes_re = None
        return
    ordered = sorted(vals, key=len, reverse=True)  # longest first: a key that contains another
    _text_re = re.compile("|".join(re.escape(v) for v in ordered))
    _bytes_re = re.compile(b"|".join(re.escape(v.encode()) for v in ordered))


def add_secrets(values: Iterable[str | None]) -> None:
    """Add secrets (tokens learnt at run time) to the known set."""
    set_secrets([*_values, *values])


def known() -> frozenset[str]:
    return _values


def scrub(text: str) -> str:
    """``text`` with every known secret masked."""
    if _text_re is None or not text:
        return text
    return _text_re.sub(lambda m: mask(m.group(0)), text)


def scrub_with(text: str, values: Iterable[str | None]) -> str:
    """``text`` with each of ``values`` masked (for text rendered before the known set is set,
    such as a config's problem messages); values shorter than the known set's minimum are kept."""
    ordered = sorted({v for v in values if v and len(v) >= _MIN_LEN}, key=len, reverse=True)
    if not ordered or not text:
        return text
    return re.sub("|".join(re.escape(v) for v in ordered), lambda m: mask(m.group(0)), text)


def scrub_bytes(data: bytes) -> bytes:
    """``data`` with every known secret masked (the mask has no JSON-special characters, so a
    JSON body stays valid JSON)."""
    if _bytes_re is None or not data:
        return data
    return _bytes_re.sub(lambda m: mask(m.group(0).decode("utf-8", "replace")).encode(), data)
