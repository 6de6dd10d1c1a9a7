"""How long a Google API (Cloud Code, Vertex) asks a client to wait after a 429, read from the
error body when there is no ``Retry-After`` header.

Google errors say it in ``error.details``: a ``google.rpc.RetryInfo`` with ``retryDelay`` (``"3.5s"``),
or a ``google.rpc.ErrorInfo`` whose ``metadata.quotaResetDelay`` is a duration (``"1h2m3.5s"``), or
only in the message (``"... retry after 12s."``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .base import UpstreamError
from .durations import DURATION, parse_duration

__all__ = ["MAX_WAIT", "google_retry_after", "wait_of", "with_google_retry"]

_AFTER = re.compile(rf"after\s+({DURATION})", re.IGNORECASE)
MAX_WAIT = 7 * 86400.0


def wait_of(text: str) -> float | None:
    """A wait Google wrote (``"3.5s"``, ``"1h2m3s"``, ``"250ms"``, ``"17"``: ``durations.parse_duration``)
    in seconds, within 0 .. ``MAX_WAIT``; None when it is not a duration."""
    seconds = parse_duration(text)
    return None if seconds is None else min(max(seconds, 0.0), MAX_WAIT)


def google_retry_after(body: bytes | None) -> float | None:
    if not body or body.find(b'"error"') < 0:
        return None
    try:
        obj: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, list) and obj:  # some Google APIs answer errors as a one-element list
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict):
        return None
    details = err.get("details") if isinstance(err.get("details"), list) else []
    for kind, pick in (("google.rpc.RetryInfo", lambda d: d.get("retryDelay")),
                       ("google.rpc.ErrorInfo", lambda d: (d.get("metadata") or {}).get("quotaResetDelay"))):
        for d in details:
            if isinstance(d, dict) and str(d.get("@type", "")).endswith(kind):
                value = pick(d)
                if isinstance(value, str) and (seconds := wait_of(value)) is not None:
                    return seconds
    message = err.get("message")
    if isinstance(message, str) and (m := _AFTER.search(message)):
        return wait_of(m.group(1))
    return None


def with_google_retry(exc: UpstreamError) -> UpstreamError:
    """``exc`` with the wait its body asks for, when it is a 429 without ``Retry-After``."""
    if exc.status == 429 and exc.retry_after is None:
        exc.retry_after = google_retry_after(exc.body)
    return exc
