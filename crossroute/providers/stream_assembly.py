"""Upstream answers reshaped on the way in: a Responses stream assembled into one response, and
tool names restored in streams and whole bodies (``tool_names.NameMap``).

Each class wraps the ``Upstream`` the HTTP executor returned and is itself an ``Upstream`` (see
``base.Upstream``), so dispatch reads it like any other answer.

- ``AssembledResponse``: for an upstream that only streams (the Codex service) and a client that
  asked for a whole answer. ``body(limit)`` reads the event stream and returns the final response
  object (from ``response.completed`` or ``response.incomplete``; its ``output`` rebuilt from the
  ``response.output_item.done`` events when the service left it empty). A ``response.failed`` or
  ``error`` event raises ``UpstreamError`` with the status its code means (a usage limit is a 429
  with the reset it announced); a stream that ends without a final event raises ``BadAnswer``.
- ``RenamedStream``: a stream whose ``data:`` lines get the long tool names back, and whose usage
  events go to a hook (the quota book). It works on whole lines (an event's JSON is one line),
  keeping a partial line for the next chunk; lines it does not change pass byte for byte.
- ``RenamedBody``: a whole JSON answer with the long tool names back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from .. import redaction
from ..formats.sse import MAX_EVENT_BYTES, SSEError, SSEParser
from .base import BadAnswer, Upstream, UpstreamError
from .tool_names import NameMap

__all__ = ["AssembledResponse", "EventHook", "RenamedBody", "RenamedStream", "call_hook", "failure_of",
           "retry_after_of_error"]

log = logging.getLogger("crossroute")

# called with each usage event (``codex.rate_limits``) and each usage-limit failure seen in a stream
EventHook = Callable[[Mapping[str, Any]], None]
_WATCHED = (b'"codex.rate_limits"', b"usage_limit_reached")

_DROP_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "transfer-encoding"})
_REQUEST_CODES = frozenset({"context_length_exceeded", "invalid_prompt", "invalid_request_error",
                            "invalid_request", "string_above_max_length", "unsupported_parameter"})
_LIMIT_CODES = frozenset({"usage_limit_reached", "rate_limit_exceeded", "rate_limit_error", "insufficient_quota",
                          "usage_not_included"})


def _json_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k.lower() not in _DROP_HEADERS}
    out["Content-Type"] = "application/json"
    return out


def retry_after_of_error(err: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds until the reset an error object announces (``resets_in_seconds`` or ``resets_at``)."""
    value = err.get("resets_in_seconds")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    value = err.get("resets_at")
    if isinstance(value, int | float) and not isinstance(value, bool):
        now = time.time() if now is None else now
        return max(0.0, float(value) - now)
    return None


def failure_of(name: str, err: Mapping[str, Any]) -> UpstreamError:
    """The typed failure for an error object found in a stream (``response.failed``, ``error``)."""
    code = str(err.get("code") or err.get("type") or "")
    message = redaction.scrub(str(err.get("message") or code or "the stream reported an error"))
    if code in _LIMIT_CODES:
        return UpstreamError(429, f"upstream {name} failed: {message}", retry_after=retry_after_of_error(err))
    if code in _REQUEST_CODES:
        return UpstreamError(400, f"upstream {name} refused the request: {message}")
    return UpstreamError(502, f"upstream {name} failed: {message}")


class _Wrapped:
    """Delegates the ``Upstream`` protocol to the answer it wraps."""

    def __init__(self, up: Upstream) -> None:
        self._up = up
        self.status = up.status
        self.headers: Mapping[str, str] = up.headers
        self.io_errors = up.io_errors

    def at_eof(self) -> bool:
        return self._up.at_eof()

    def close(self, reuse: bool) -> None:
        self._up.close(reuse)


class AssembledResponse(_Wrapped):
    """A Responses event stream read whole into the final response object."""

    def __init__(self, up: Upstream, names: NameMap | None, upstream_name: str, watch: EventHook | None = None
                 ) -> None:
        super().__init__(up)
        self.headers = _json_headers(up.headers)
        self._names = names
        self._watch = watch
        self._name = upstream_name
        self._done = False
        self.read_chunk = self._no_stream

    async def _no_stream(self) -> bytes:
        raise BadAnswer("an assembled answer is read with body(), not as a stream")

    def at_eof(self) -> bool:
        return self._done

    def close(self, reuse: bool) -> None:
        self._up.close(reuse and self._up.at_eof())  # the final event may come before the stream's end

    def body(self, limit: int) -> Awaitable[bytes]:
        return self._assemble(limit)

    async def _assemble(self, limit: int) -> bytes:
        try:
            return await self._read_all(limit)
        except BadAnswer:
            raise  # dispatch closes the answer
        except UpstreamError:
            self._done = True
            self._up.close(False)
            raise

    async def _read_all(self, limit: int) -> bytes:
        parser = SSEParser(max_event=min(limit, MAX_EVENT_BYTES))
        items: dict[int, Any] = {}
        extra: list[Any] = []
        size = 0
        read = self._up.read_chunk
        while True:
            chunk = await read()
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise BadAnswer(f"an answer larger than the limit ({limit} bytes)")
            try:
                events = parser.feed(chunk)
            except SSEError as exc:
                raise BadAnswer(f"a stream that could not be read: {exc}") from None
            for ev in events:
                final = self._event(ev.data, items, extra)
                if final is not None:
                    self._done = True
                    return final
        if (last := parser.flush()) is not None and (final := self._event(last.data, items, extra)) is not None:
            self._done = True
            return final
        self._done = True
        raise BadAnswer("a stream that ended before response.completed")

    def _event(self, data: bytes, items: dict[int, Any], extra: list[Any]) -> bytes | None:
        if not data or data == b"[DONE]":
            return None
        try:
            ev = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise BadAnswer("an event that is not JSON") from None
        if not isinstance(ev, dict):
            return None
        kind = ev.get("type")
        if self._watch is not None and (kind == "codex.rate_limits" or (
                kind in ("response.failed", "error") and data.find(b"usage_limit_reached") >= 0)):
            call_hook(self._watch, ev)
        if kind == "response.output_item.done":
            item = ev.get("item")
            index = ev.get("output_index")
            if isinstance(index, int) and not isinstance(index, bool):
                items[index] = item
            else:
                extra.append(item)
            return None
        if kind in ("response.completed", "response.incomplete", "response.done"):
            resp = ev.get("response")
            if not isinstance(resp, dict):
                raise BadAnswer(f"a {kind} event without a response object")
            if not resp.get("output") and (items or extra):
                resp["output"] = [items[i] for i in sorted(items)] + extra
            if self._names:
                self._names.restore(resp)
            return orjson.dumps(resp)
        if kind == "response.failed":
            resp = ev.get("response")
            err = resp.get("error") if isinstance(resp, dict) else None
            raise failure_of(self._name, err if isinstance(err, dict) else {})
        if kind == "error":
            err = ev.get("error") if isinstance(ev.get("error"), dict) else ev
            raise failure_of(self._name, err)
        return None


class RenamedStream(_Wrapped):
    """A stream with the long tool names put back into its ``data:`` lines."""

    def __init__(self, up: Upstream, names: NameMap | None, max_line: int = MAX_EVENT_BYTES,
                 watch: EventHook | None = None) -> None:
        super().__init__(up)
        self._names = names
        self._watch = watch
        self._rest = b""
        self._max = max_line
        self._eof = False
        self.read_chunk = self._read

    def body(self, limit: int) -> Awaitable[bytes]:
        return self._whole(limit)

    async def _whole(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while chunk := await self._read():
            size += len(chunk)
            if size > limit:
                raise BadAnswer(f"an answer larger than the limit ({limit} bytes)")
            parts.append(chunk)
        return b"".join(parts)

    def at_eof(self) -> bool:
        return self._eof

    async def _read(self) -> bytes:
        read = self._up.read_chunk
        while True:
            chunk = await read()
            if not chunk:
                self._eof = True
                rest, self._rest = self._rest, b""
                return self._rename(rest) if rest else b""
            data = self._rest + chunk if self._rest else chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) > self._max:
                    raise BadAnswer(f"a stream line longer than {self._max} bytes")
                self._rest = data
                continue  # no whole line yet: read on (an empty chunk would mean the end)
            self._rest = data[cut:]
            return self._rename(data[:cut])

    def _rename(self, lines: bytes) -> bytes:
        names = self._names
        rename = names is not None and names.mentioned_in(lines)
        watch = self._watch is not None and any(m in lines for m in _WATCHED)
        if not (rename or watch):
            return lines
        out: list[bytes] = []
        for line in lines.split(b"\n"):
            if line.startswith(b"data:"):
                mine = rename and names is not None and names.mentioned_in(line)
                seen = watch and any(m in line for m in _WATCHED)
                if mine or seen:
                    try:
                        obj = orjson.loads(line[5:])
                    except orjson.JSONDecodeError:
                        out.append(line)
                        continue
                    if seen and isinstance(obj, dict) and self._watch is not None:
                        call_hook(self._watch, obj)
                    if mine and names is not None:
                        end = b"\r" if line.endswith(b"\r") else b""
                        line = b"data: " + orjson.dumps(names.restore(obj)) + end
            out.append(line)
        return b"\n".join(out)


def call_hook(hook: EventHook, event: Mapping[str, Any]) -> None:
    """A hook's failure never breaks the answer it watches."""
    try:
        hook(event)
    except Exception:
        log.exception("a stream event hook failed")


class RenamedBody(_Wrapped):
    """A whole JSON answer with the long tool names put back."""

    def __init__(self, up: Upstream, names: NameMap) -> None:
        super().__init__(up)
        self._names = names
        self.read_chunk = up.read_chunk

    def body(self, limit: int) -> Awaitable[bytes]:
        return self._restored(limit)

    async def _restored(self, limit: int) -> bytes:
        raw = await self._up.body(limit)
        if not self._names.mentioned_in(raw):
            return raw
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw  # dispatch's answer check names the problem
        return orjson.dumps(self._names.restore(obj))
