"""Stream pipes: upstream bytes in, client bytes out, usage noted on the way.

A same-format pipe re-frames events (each upstream event is reassembled whole and written again
with its original data bytes; it is parsed only when it may carry usage, an error or the end).
A translating pipe runs upstream events through a format's StreamDecoder into the neutral form
and out through the client format's StreamEncoder.

Every pipe has the same small surface: ``feed(chunk) -> bytes``, ``finish() -> bytes`` (upstream
EOF: trailing bytes, or a terminal error event if the upstream stopped early),
``error(status, message) -> bytes`` (a terminal error in the client's format), ``usage``, and
``done`` (a terminal event has been written; nothing may follow).
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from . import errors
from .neutral import Error, Event, Finish, Start, Usage, UsageUpdate
from .openai_chat import usage_from_chat
from .sse import SSEEvent, SSEParser, encode_event

EARLY_EOF = "upstream stream closed before completion"


class Pipe(Protocol):
    usage: Usage | None
    done: bool

    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...
    def error(self, status: int, message: str) -> bytes: ...


class _DataPassthrough:
    """What the data-only passthroughs (chat, Gemini) share: the end of the upstream stream."""

    __slots__ = ()
    _parser: SSEParser
    _finished: bool
    done: bool

    def _event(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _closing(self) -> bytes:
        """Bytes that end a complete stream."""
        raise NotImplementedError

    def error(self, status: int, message: str) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        out = b""
        tail = self._parser.flush()
        if tail is not None and _complete(tail.data):
            out = self._event(tail.data)
        if self.done:
            return out
        if self._finished:
            self.done = True
            return out + self._closing()
        return out + self.error(502, EARLY_EOF)


class ChatPassthrough(_DataPassthrough):
    """OpenAI chat -> OpenAI chat. Drops the usage-only chunk the gateway asked for on the
    client's behalf when the client did not ask for it itself."""

    __slots__ = ("_finished", "_parser", "_want_usage", "done", "usage")

    def __init__(self, client_wants_usage: bool) -> None:
        self._parser = SSEParser()
        self._want_usage = client_wants_usage
        self._finished = False
        self.done = False
        self.usage: Usage | None = None

    def _event(self, data: bytes) -> bytes:
        if self.done:
            return b""
        if data == b"[DONE]":
            self.done = True
            return b"data: [DONE]\n\n"
        # Three scans that usually stop early, instead of parsing every event: a finish reason
        # that is a string (not null), a usage object (not null), or a payload that is not a
        # chunk at all (no "choices": an error, or something unknown that must be inspected).
        i = data.find(b'"finish_reason":')
        if i >= 0 and data[i + 16 : i + 18].lstrip()[:1] == b'"':
            self._finished = True
        j = data.find(b'"usage":')
        if (j >= 0 and data[j + 8 : j + 10].lstrip()[:1] == b"{") or b'"choices"' not in data:
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                return self.error(502, "upstream sent an event that is not valid JSON")
            if isinstance(obj, dict):
                if obj.get("error"):
                    self.done = True
                    return b"data: " + data + b"\n\ndata: [DONE]\n\n"
                usage = usage_from_chat(obj.get("usage"))
                if usage is not None:
                    self.usage = usage
                    if not self._want_usage and not obj.get("choices"):
                        return b""
        return b"data: " + data + b"\n\n"

    def feed(self, chunk: bytes) -> bytes:
        events = self._parser.feed(chunk)
        if not events:
            return b""
        if len(events) == 1:
            return self._event(events[0].data)
        return b"".join([self._event(ev.data) for ev in events])

    def _closing(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, status: int, message: str) -> bytes:
        self.done = True
        return errors.openai_stream_error(status, message)


class ClaudePassthrough:
    """Anthropic -> Anthropic: events re-framed with their ``event:`` names."""

    __slots__ = ("_parser", "_seen_delta", "_usage_from", "done", "usage")

    def __init__(self) -> None:
        from .claude import usage_from_claude

        self._usage_from = usage_from_claude
        self._parser = SSEParser()
        self._seen_delta = False
        self.done = False
        self.usage: Usage | None = None

    def _event(self, ev: SSEEvent) -> bytes:
        if self.done:
            return b""
        name = ev.event
        if name == "message_start" or name == "message_delta":
            try:
                obj = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                return self.error(502, "upstream sent an event that is not valid JSON")
            raw = (obj.get("message") or {}).get("usage") if name == "message_start" else obj.get("usage")
            if isinstance(raw, dict):
                self._merge_usage(raw)
            self._seen_delta = self._seen_delta or name == "message_delta"
        elif name == "message_stop" or name == "error":
            self.done = True
        if name is None:
            return b"data: " + ev.data + b"\n\n"
        return b"event: " + name.encode() + b"\ndata: " + ev.data + b"\n\n"

    def _merge_usage(self, raw: dict[str, Any]) -> None:
        new = self._usage_from(raw)
        if self.usage is None:
            self.usage = new
            return
        # message_delta carries cumulative output and, sometimes, the input counts again.
        u = self.usage
        u.output_tokens = new.output_tokens or u.output_tokens
        if "input_tokens" in raw:
            u.input_tokens, u.cached_tokens = new.input_tokens, new.cached_tokens
            u.cache_creation_tokens = new.cache_creation_tokens

    def feed(self, chunk: bytes) -> bytes:
        return b"".join([self._event(ev) for ev in self._parser.feed(chunk)])

    def finish(self) -> bytes:
        out = b""
        tail = self._parser.flush()
        if tail is not None and _complete(tail.data):
            out = self._event(tail)
        if self.done:
            return out
        if self._seen_delta:
            self.done = True
            return out + encode_event(b'{"type":"message_stop"}', "message_stop")
        return out + self.error(502, EARLY_EOF)

    def error(self, status: int, message: str) -> bytes:
        self.done = True
        return errors.claude_stream_error(status, message)


class GeminiPassthrough(_DataPassthrough):
    """Gemini -> Gemini: data-only chunks, as SSE or as the JSON-array stream."""

    __slots__ = ("_count", "_finished", "_parser", "_sse", "_usage_from", "done", "usage")

    def __init__(self, sse: bool = True) -> None:
        from .gemini import usage_from_gemini

        self._usage_from = usage_from_gemini
        self._parser = SSEParser()
        self._sse = sse
        self._count = 0
        self._finished = False
        self.done = False
        self.usage: Usage | None = None

    def _frame(self, data: bytes) -> bytes:
        self._count += 1
        if self._sse:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if self._count == 1 else b",\r\n") + data

    def _event(self, data: bytes) -> bytes:
        if self.done:
            return b""
        if data[:9] == b'{"error":' or b'"error"' in data[:40]:
            self.done = True
            return self._frame(data) + self._close_array()
        if b"usageMetadata" in data or b"finishReason" in data:
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                return self.error(502, "upstream sent an event that is not valid JSON")
            meta = obj.get("usageMetadata")
            if isinstance(meta, dict):
                self.usage = self._usage_from(meta)
            for cand in obj.get("candidates") or ():
                if isinstance(cand, dict) and cand.get("finishReason"):
                    self._finished = True
        return self._frame(data)

    def _close_array(self) -> bytes:
        if self._sse:
            return b""
        return b"]" if self._count else b"[]"

    def feed(self, chunk: bytes) -> bytes:
        return b"".join([self._event(ev.data) for ev in self._parser.feed(chunk)])

    def _closing(self) -> bytes:
        return self._close_array()

    def error(self, status: int, message: str) -> bytes:
        self.done = True
        body = orjson.dumps(errors.gemini_error(status, message))
        return self._frame(body) + self._close_array()


class ResponsesPassthrough:
    """Responses -> Responses through the framer (which repairs and terminates the stream)."""

    __slots__ = ("_framer",)

    def __init__(self, codex_client: bool) -> None:
        from .responses_framer import ResponsesFramer

        self._framer = ResponsesFramer(codex_client=codex_client)

    @property
    def usage(self) -> Usage | None:
        return self._framer.usage

    @property
    def done(self) -> bool:
        return self._framer.terminal

    def feed(self, chunk: bytes) -> bytes:
        return self._framer.feed(chunk)

    def finish(self) -> bytes:
        return self._framer.finish()

    def error(self, status: int, message: str) -> bytes:
        return self._framer.fail(status, message)


class TranslatePipe:
    """Upstream format -> neutral events -> client format."""

    __slots__ = ("_decoder", "_encoder", "_parser", "_started", "done", "usage")

    def __init__(self, decoder: Any, encoder: Any) -> None:
        self._parser = SSEParser()
        self._decoder = decoder
        self._encoder = encoder
        self._started = False
        self.done = False
        self.usage: Usage | None = None

    def _emit(self, events: list[Event]) -> bytes:
        out = []
        encode = self._encoder.encode
        for ev in events:
            if self.done:
                break
            t = ev.type
            if t == "block_delta" or t == "block_start" or t == "block_stop":
                out.append(encode(ev))
                continue
            if isinstance(ev, Start):
                self._started = True
                if ev.usage is not None:
                    self.usage = ev.usage
            elif isinstance(ev, UsageUpdate):
                self.usage = ev.usage
            elif isinstance(ev, Finish):
                if ev.usage is not None:
                    self.usage = ev.usage
                out.append(self._encoder.encode(ev))
                out.append(self._encoder.close())
                self.done = True
                continue
            elif isinstance(ev, Error):
                out.append(self._encoder.error(ev.status, ev.message, ev.error_type))
                self.done = True
                continue
            out.append(self._encoder.encode(ev))
        return b"".join(out)

    def feed(self, chunk: bytes) -> bytes:
        out = []
        decode = self._decoder.feed
        encode = self._encoder.encode
        for sse in self._parser.feed(chunk):
            if self.done:
                break
            events = decode(sse)
            if len(events) == 1 and events[0].type == "block_delta":
                out.append(encode(events[0]))  # the common case, without the general loop
            elif events:
                out.append(self._emit(events))
        return b"".join(out)

    def finish(self) -> bytes:
        out = b""
        tail = self._parser.flush()
        if tail is not None and not self.done and _complete(tail.data):
            out = self._emit(self._decoder.feed(tail))
        if not self.done:
            out += self._emit(self._decoder.close())
        if not self.done:
            out += self.error(502, EARLY_EOF)
        return out

    def error(self, status: int, message: str) -> bytes:
        self.done = True
        return self._encoder.error(status, message, None)


def _complete(data: bytes) -> bool:
    if data == b"[DONE]":
        return True
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True
