"""Answers wrapped in an envelope (``{"response": {...}, "traceId": ...}``, Google's Cloud Code API
behind Antigravity), unwrapped so that dispatch reads a plain Gemini answer or Gemini stream.

``Unwrapped(up)`` wraps an ``Upstream``:

- ``body(limit)``: the whole answer; when it is a JSON object with a ``response`` object, that
  object (re-serialised) is the answer, anything else passes unchanged (an error, an HTML page: the
  answer check downstream names it);
- ``read_chunk()``: the stream, event by event. Bytes are kept until an event's closing blank line
  (CR, LF or CRLF line ends, split anywhere), then each ``data:`` payload with a ``response``
  object is replaced by that object. Pending bytes are bounded: past ``max_pending`` without an
  event boundary they pass through unchanged (the SSE parser downstream then refuses them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from .base import Upstream

__all__ = ["MAX_PENDING", "Unwrapped", "unwrap_body", "unwrap_event"]

MAX_PENDING = 8 * 1024 * 1024
_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(rb"\r\n|\n|\r")


def unwrap_body(raw: bytes) -> bytes:
    """The ``response`` object of an enveloped answer, else ``raw`` unchanged."""
    if b'"response"' not in raw[:4096] and b'"response"' not in raw[-4096:]:
        return raw
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if type(obj) is dict and type(obj.get("response")) is dict:
        return orjson.dumps(obj["response"])
    return raw


def unwrap_event(block: bytes) -> bytes:
    """One event (without its closing blank line), its data unwrapped; the other lines kept."""
    lines = _LINE.split(block)
    data = [ln[5:].removeprefix(b" ") for ln in lines if ln.startswith(b"data:")]
    if not data:
        return block
    payload = b"\n".join(data)
    unwrapped = unwrap_body(payload)
    if unwrapped is payload:
        return block
    others = [ln for ln in lines if not ln.startswith(b"data:")]
    return b"\n".join([*others, b"data: " + unwrapped])


class Unwrapped:
    """An ``Upstream`` whose enveloped answers and stream events are unwrapped (see the module)."""

    __slots__ = ("_eof", "_inner", "_max", "_pending", "headers", "io_errors", "status")

    def __init__(self, inner: Upstream, max_pending: int = MAX_PENDING) -> None:
        self._inner = inner
        self.status = inner.status
        self.headers: Mapping[str, str] = inner.headers
        self.io_errors = inner.io_errors
        self._pending = b""
        self._eof = False
        self._max = max_pending

    async def body(self, limit: int) -> bytes:
        return unwrap_body(await self._inner.body(limit))

    async def read_chunk(self) -> bytes:
        read = self._inner.read_chunk
        while True:
            if self._eof:
                rest, self._pending = self._pending, b""
                return unwrap_event(rest) if rest.strip() else rest
            chunk = await read()
            if not chunk:
                self._eof = True
                continue
            buf = self._pending + chunk if self._pending else chunk
            out: list[bytes] = []
            start = 0
            for m in _BOUNDARY.finditer(buf):
                out.append(unwrap_event(buf[start:m.start()]))
                out.append(b"\n\n")
                start = m.end()
            self._pending = buf[start:]
            if len(self._pending) > self._max:  # no boundary in sight: let the parser downstream judge
                out.append(self._pending)
                self._pending = b""
            if out:
                return b"".join(out)

    def at_eof(self) -> bool:
        return self._eof and not self._pending

    def close(self, reuse: bool) -> None:
        self._inner.close(reuse)
