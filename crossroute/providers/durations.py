"""Durations as providers write them, in seconds: Go's ``time.Duration`` text (``"1h30m"``,
``"1.5s"``, ``"300ms"``, ``"250us"``, ``"-2m"``, ``".5h"``; units ns, us/µs/μs, ms, s, m, h), Google's
proto durations (``"3.5s"``) and plain numbers of seconds (``"17"``, ``"0.5"``). Units are read
case-insensitively. OpenAI's rate-limit resets, Google's RetryInfo / quotaResetDelay and the
"retry after 12s" of an error message all go through ``parse_duration``.
"""

from __future__ import annotations

import math
import re

__all__ = ["DURATION", "parse_duration"]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"(?:\d+\.?\d*|\.\d+)"
_UNIT = r"(?:ns|us|µs|μs|ms|s|m|h)"  # (ms before m: the longest unit first)
DURATION = rf"[-+]?(?:{_NUMBER}{_UNIT})+"  # one duration with units, for a caller's own pattern
_PART = re.compile(rf"({_NUMBER})({_UNIT})")


def parse_duration(text: str) -> float | None:
    """``text`` in seconds; None when it is not a duration (or not a finite number)."""
    text = text.strip().lower()
    if not text:
        return None
    try:
        plain = float(text)
    except ValueError:
        pass
    else:
        return plain if math.isfinite(plain) else None
    sign = -1.0 if text[0] == "-" else 1.0
    if text[0] in "+-":
        text = text[1:]
    total, pos = 0.0, 0
    for m in _PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total if pos and pos == len(text) else None
