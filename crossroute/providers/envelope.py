"""Answers wrapped in an envelope (``{"response": {...}, "traceId": ...}``, Google's Cloud Code API
behind Antigravity), unwrapped so that dispatch reads a plain Gemini answer or Gemini stream.

``Unwrapped(up)`` wraps an ``Upstream``:

- ``body(limit)``: the whole answer; when it is a JSON object with a ``response`` object, that
  object is the answer, anything else passes unchanged (an error, an HTML page: the answer check
  downstream names it);
- ``read_chunk()``: the stream, event by event. Bytes are kept until an event's closing blank line
  (``formats.sse.EventSplitter``: CR, LF or CRLF line ends, mixed, split anywhere), then each
  ``data:`` payload with a ``response`` object is replaced by that object; events go on with LF
  line ends. Pending bytes are bounded: past ``max_pending`` without an event boundary they pass
  through unchanged (the SSE parser downstream then refuses them).

The ``response`` object is cut out of the upstream's bytes, not parsed and dumped again: msgspec
checks the whole envelope as JSON and hands back the value's exact bytes (``msgspec.Raw``), which
the pipe downstream parses once. (msgspec does not check the UTF-8 of what it skips; the parser
downstream does, of the part that is passed on.) A whole event then costs about a third of what
``orjson.loads`` + ``orjson.dumps`` did (timings in the notes of the change).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from ..formats.sse import EventSplitter
from .base import Upstream

__all__ = ["MAX_PENDING", "Unwrapped", "response_of", "unwrap_body", "unwrap_event"]

MAX_PENDING = 8 * 1024 * 1024
_HEAD = 4096  # an envelope names its "response" within this many bytes of one end
_ABSENT = msgspec.Raw(b"null")  # (msgspec cannot union Raw with None)


class _Envelope(msgspec.Struct):
    response: msgspec.Raw = _ABSENT


_decode = msgspec.json.Decoder(_Envelope).decode


def response_of(raw: bytes) -> bytes | None:
    """The exact bytes of the ``response`` object of the JSON object ``raw``; None when ``raw`` is
    not valid JSON, not an object, or has no ``response`` object."""
    try:
        inner = _decode(raw).response
    except (msgspec.DecodeError, RecursionError):  # (ValidationError is a DecodeError)
        return None
    if inner is _ABSENT or memoryview(inner)[:1] != b"{":
        return None
    return bytes(inner)


def unwrap_body(raw: bytes) -> bytes:
    """The ``response`` object of an enveloped answer, else ``raw`` unchanged."""
    if raw.find(b'"response"', 0, _HEAD) < 0 and raw.find(b'"response"', max(0, len(raw) - _HEAD)) < 0:
        return raw
    inner = response_of(raw)
    return raw if inner is None else inner


def _data_lines(payload: bytes) -> bytes:
    if payload.find(b"\n") < 0:
        return b"data: " + payload
    return b"\n".join(b"data: " + line for line in payload.split(b"\n"))  # (a pretty-printed answer)


def unwrap_event(block: bytes) -> bytes:
    """One event (lines ended by LF, without its closing blank line), its data unwrapped; the
    other lines kept."""
    if block[:6] == b"data: " and block.find(b"\n") < 0:  # one data line: what Cloud Code sends
        if block.find(b'"response"', 6) < 0:
            return block
        try:
            inner = _decode(memoryview(block)[6:]).response
        except (msgspec.DecodeError, RecursionError):
            return block
        if inner is _ABSENT:
            return block
        value = memoryview(inner)
        return b"data: " + value if value[:1] == b"{" else block
    lines = block.split(b"\n")
    data = [ln[5:].removeprefix(b" ") for ln in lines if ln.startswith(b"data:")]
    if not data:
        return block
    payload = b"\n".join(data)
    inner = response_of(payload) if b'"response"' in payload else None
    if inner is None:
        return block
    others = [ln for ln in lines if not ln.startswith(b"data:")]
    return b"\n".join([*others, _data_lines(inner)])


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
            if len(blocks) == 1 and split.pending <= self._max:  # one event in the chunk (the common case)
                return unwrap_event(blocks[0]) + b"\n\n"
            out = [part for block in blocks for part in (unwrap_event(block), b"\n\n")]
            if split.pending > self._max:  # no boundary in sight: let the parser downstream judge
                out.append(split.take())
            if out:
                return b"".join(out)

    def at_eof(self) -> bool:
        return self._eof and not self._split.pending

    def close(self, reuse: bool) -> None:
        self._inner.close(reuse)
