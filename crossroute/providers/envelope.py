"""Answers wrapped in an envelope (``{"response": {...}, "traceId": ...}``, Google's Cloud Code API
behind Antigravity), unwrapped so that dispatch reads a plain Gemini answer or Gemini stream.

``Unwrapped(up)`` wraps an ``Upstream``:

- ``body(limit)``: the whole answer; when it is a JSON object with a ``response`` object, that
  object (re-serialised) is the answer, anything else passes unchanged (an error, an HTML page: the
  answer check downstream names it);
- ``read_chunk()``: the stream, event by event. Bytes are kept until an event's closing blank line
  (``formats.sse.EventSplitter``: CR, LF or CRLF line ends, mixed, split anywhere), then each
  ``data:`` payload with a ``response`` object is replaced by that object; events go on with LF
  line ends. Pending bytes are bounded: past ``max_pending`` without an event boundary they pass
  through unchanged (the SSE parser downstream then refuses them).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from ..formats.sse import EventSplitter
from .base import Upstream

__all__ = ["MAX_PENDING", "Unwrapped", "unwrap_body", "unwrap_event"]

MAX_PENDING = 8 * 1024 * 1024


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
    """One event (lines ended by LF, without its closing blank line), its data unwrapped; the
    other lines kept."""
    lines = block.split(b"\n")
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

    __slots__ = ("_eof", "_inner", "_max", "_split", "headers", "io_errors", "status")

    def __init__(self, inner: Upstream, max_pending: int = MAX_PENDING) -> None:
        self._inner = inner
        self.status = inner.status
        self.headers: Mapping[str, str] = inner.headers
        self.io_errors = inner.io_errors
        self._split = EventSplitter()
        self._eof = False
        self._max = max_pending

    async def body(self, limit: int) -> bytes:
        return unwrap_body(await self._inner.body(limit))

    async def read_chunk(self) -> bytes:
        read = self._inner.read_chunk
        split = self._split
        while True:
            if self._eof:
                rest = split.take()
                return unwrap_event(rest) if rest.strip() else rest
            chunk = await read()
            if not chunk:
                self._eof = True
                continue
            blocks = split.feed(chunk)
            out = [part for block in blocks for part in (unwrap_event(block), b"\n\n")]
            if split.pending > self._max:  # no boundary in sight: let the parser downstream judge
                out.append(split.take())
            if out:
                return b"".join(out)

    def at_eof(self) -> bool:
        return self._eof and not self._split.pending

    def close(self, reuse: bool) -> None:
        self._inner.close(reuse)
