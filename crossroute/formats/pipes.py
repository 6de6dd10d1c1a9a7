"""Stream pipes: upstream bytes in, client bytes out, usage noted on the way.

A same-format pipe re-frames events (each upstream event is reassembled whole, checked to be
valid JSON, and written again with its original data bytes). A translating pipe runs upstream
events through a format's StreamDecoder into the neutral form and out through the client
format's StreamEncoder.

Every pipe has the same small surface: ``feed(chunk) -> bytes``, ``finish() -> bytes`` (upstream
EOF: trailing bytes, or a terminal error event if the upstream stopped early),
``error(status, message) -> bytes`` (a terminal error in the client's format), ``usage``,
``done`` (a terminal event has been written; nothing may follow) and ``started`` (the pipe has
produced client output).

The failure contract (what the caller, dispatch, relies on):

* ``feed`` and ``finish`` raise ``UpstreamEventError(status, message)`` when the upstream stream
  is not usable: an event whose data is not valid JSON (``[DONE]`` aside; an empty ``data:`` is a
  keep-alive), bytes that are not an event stream at all (an HTML page, a JSON body), one event
  larger than ``sse.MAX_EVENT_BYTES``, and, while ``started`` is False, an upstream error event
  (chat ``{"error": ...}``, Anthropic ``event: error``, Responses ``response.failed``/``error``, a
  Gemini error object) or the end of the stream before any output. The status is the upstream
  error's own when it has one, else 502.
* ``started`` turns True when ``feed``/``finish`` first returns bytes. While it is False a raise
  discards whatever this call had rendered (the caller has seen nothing, and the next credential
  answers afresh). Once it is True a raise never loses client bytes: when an event fails after
  other events of the same call produced output, the call returns that output followed by the
  terminal error instead (``done`` is then True); a pipe may likewise end the stream itself with
  the terminal error rather than raise (the Responses framer does). Either way the bad event is
  never relayed and the client sees a terminal error.
* After a raise the pipe is not ``done``: the caller either moves to the next credential (nothing
  reached the client yet) or writes ``pipe.error(exc.status, exc.message)`` and stops.
* After ``started``, an upstream error event is relayed as the client format's terminal error
  (same format: the upstream's own event), as before.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from . import errors
from .claude_stream import status_for_error_type
from .neutral import Error, Event, Finish, Start, Usage, UsageUpdate
from .openai_chat import usage_from_chat
from .sse import MAX_EVENT_BYTES, SSEError, SSEEvent, SSEParser, encode_event, looks_like_sse, not_an_event_stream

EARLY_EOF = "upstream stream closed before completion"
NOT_JSON = "upstream sent a stream event that is not valid JSON"
NOT_OBJECT = "upstream sent a stream event that is not a JSON object"
NOT_READABLE = "upstream sent a stream event with fields of the wrong type"
# what reading an event of the wrong shape raises (a count that is a string, a list that is a dict)
UNREADABLE = (TypeError, ValueError, AttributeError, KeyError, IndexError)


class UpstreamEventError(Exception):
    """The upstream stream failed in a way the caller must handle (see the module docstring)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Pipe(Protocol):
    usage: Usage | None
    done: bool
    started: bool

    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...
    def error(self, status: int, message: str) -> bytes: ...


def _error_of(obj: Any, default: str = "upstream stream error") -> UpstreamEventError:
    """Status and message of an upstream error payload of any format."""
    err = obj.get("error", obj) if isinstance(obj, dict) else obj
    if isinstance(err, str):
        return UpstreamEventError(502, err[:2048] or default)
    if not isinstance(err, dict):
        return UpstreamEventError(502, default)
    status = 0
    for v in (err.get("code"), err.get("status"), err.get("status_code")):
        if isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 599:
            status = v
            break
        if isinstance(v, str) and v.isdigit() and 400 <= int(v) <= 599:
            status = int(v)
            break
    if not status:
        etype = err.get("type")
        status = status_for_error_type(etype if isinstance(etype, str) else None)
    msg = err.get("message")
    return UpstreamEventError(status, msg[:2048] if isinstance(msg, str) and msg else default)


def _loads(data: bytes) -> dict[str, Any]:
    """An event's JSON object, or UpstreamEventError(502)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamEventError(502, NOT_JSON) from None
    if obj.__class__ is not dict:
        raise UpstreamEventError(502, NOT_OBJECT)
    return obj  # type: ignore[no-any-return]


class _Shape:
    """The bytes of a validated event around one string value (a text delta), so that the next
    events of a stream, which differ from it only in that string, are validated by parsing the
    string alone: ``prefix`` ends with the value's opening quote, ``suffix`` starts with its
    closing one. Any JSON string body between them makes the whole valid JSON with every other
    field unchanged, so what was learnt from the validated event (no error, no usage, no finish)
    holds too. Anything else takes the full parse."""

    __slots__ = ("_cut", "prefix", "suffix")

    def __init__(self, prefix: bytes, suffix: bytes) -> None:
        self.prefix = prefix
        self.suffix = suffix
        self._cut = len(prefix) + len(suffix)

    @classmethod
    def of(cls, data: bytes, key: bytes, value: str) -> _Shape | None:
        """The shape of ``data`` around the string after ``key`` (``b'"text":"'``), when that
        key occurs once and its string reads back as ``value``."""
        i = data.find(key)
        if i < 0 or data.find(key, i + 1) >= 0:
            return None
        start = i + len(key)
        j = start
        while True:
            j = data.find(b'"', j)
            if j < 0:
                return None
            n = 0
            while data[j - 1 - n] == 0x5C:  # backslashes before the quote
                n += 1
            if not n & 1:
                break
            j += 1
        try:
            if orjson.loads(data[start - 1 : j + 1]) != value:
                return None
        except orjson.JSONDecodeError:
            return None
        return cls(data[:start], data[j:])

    def match(self, data: bytes) -> bool:
        if len(data) < self._cut or not data.startswith(self.prefix) or not data.endswith(self.suffix):
            return False
        try:
            orjson.loads(data[len(self.prefix) - 1 : len(data) - len(self.suffix) + 1])
        except orjson.JSONDecodeError:
            return False
        return True


def _usage(read: Any, raw: Any) -> Usage | None:
    """Usage read from an upstream object; None when its counts are not numbers (the event is
    still relayed: usage is the gateway's bookkeeping, not the client's answer)."""
    try:
        return read(raw)  # type: ignore[no-any-return]
    except (TypeError, ValueError, AttributeError):
        return None


class _EventPipe:
    """What the passthroughs share: feeding events, the started/raise rules, the end of stream."""

    __slots__ = ()
    _parser: SSEParser
    done: bool
    started: bool

    def _event(self, ev: SSEEvent) -> bytes:
        raise NotImplementedError

    def _end(self) -> bytes:
        """Upstream EOF after the last event: b"" when a terminal event went out, else the
        bytes that end a complete stream, or an error when it was incomplete."""
        raise NotImplementedError

    def error(self, status: int, message: str) -> bytes:
        raise NotImplementedError

    def feed(self, chunk: bytes) -> bytes:
        try:
            events = self._parser.feed(chunk)
        except SSEError as exc:
            raise UpstreamEventError(502, str(exc)) from None
        if not events:
            return b""
        if len(events) == 1:
            out = self._event(events[0])
        else:
            parts = []
            for ev in events:
                try:
                    parts.append(self._event(ev))
                except UpstreamEventError as exc:
                    if not self.started:
                        raise
                    parts.append(self.error(exc.status, exc.message))
                    break
            out = b"".join(parts)
        if out:
            self.started = True
        return out

    def finish(self) -> bytes:
        out = b""
        tail = self._parser.flush()
        if tail is not None and _complete(tail.data) and not self.done:
            out = self._event(tail)
            if out:
                self.started = True
        if self.done:
            return out
        end = self._end()
        if not self.started and not end:
            raise UpstreamEventError(502, EARLY_EOF)
        return out + end


class ChatPassthrough(_EventPipe):
    """OpenAI chat -> OpenAI chat. Drops the usage-only chunk the gateway asked for on the
    client's behalf when the client did not ask for it itself."""

    __slots__ = ("_finished", "_parser", "_relayed", "_shape", "_want_usage", "done", "started", "usage")

    def __init__(self, client_wants_usage: bool) -> None:
        self._parser = SSEParser()
        self._want_usage = client_wants_usage
        self._finished = False
        self._relayed = False  # an event was relayed (perhaps not returned yet)
        self._shape: _Shape | None = None  # of the last plain text chunk
        self.done = False
        self.started = False
        self.usage: Usage | None = None

    def _event(self, ev: SSEEvent) -> bytes:
        if self.done:
            return b""
        data = ev.data
        if data == b"[DONE]":
            if not self._relayed:
                raise UpstreamEventError(502, "upstream stream ended before any content")
            self.done = True
            return b"data: [DONE]\n\n"
        shape = self._shape
        if shape is not None and shape.match(data):
            return b"data: " + data + b"\n\n"  # a text chunk like the last one (see _Shape)
        if not data:
            return b""  # an empty data line: a keep-alive
        obj = _loads(data)
        if obj.get("error"):
            if not self.started:
                raise _error_of(obj)
            self.done = True
            return b"data: " + data + b"\n\ndata: [DONE]\n\n"
        choices = obj.get("choices")
        if choices:
            for ch in choices:
                if ch.__class__ is dict and ch.get("finish_reason").__class__ is str:
                    self._finished = True
            if choices.__class__ is list and len(choices) == 1 and not self._finished and not obj.get("usage"):
                delta = choices[0].get("delta") if choices[0].__class__ is dict else None
                if delta.__class__ is dict and len(delta) == 1 and delta.get("content").__class__ is str:
                    self._shape = _Shape.of(data, b'"content":"', delta["content"])
        if obj.get("usage"):
            usage = _usage(usage_from_chat, obj["usage"])
            if usage is not None:
                self.usage = usage
                if not self._want_usage and not choices:
                    return b""
        self._relayed = True
        return b"data: " + data + b"\n\n"

    def _end(self) -> bytes:
        if self._finished:
            self.done = True
            return b"data: [DONE]\n\n"
        return self.error(502, EARLY_EOF) if self.started else b""

    def error(self, status: int, message: str) -> bytes:
        self.done = True
        return errors.openai_stream_error(status, message)


# the string field of each Anthropic delta type
_DELTA_KEYS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


class ClaudePassthrough(_EventPipe):
    """Anthropic -> Anthropic: events re-framed with their ``event:`` names."""

    __slots__ = ("_parser", "_seen_delta", "_shape", "_usage_from", "done", "started", "usage")

    def __init__(self) -> None:
        from .claude import usage_from_claude

        self._usage_from = usage_from_claude
        self._parser = SSEParser()
        self._seen_delta = False
        self._shape: _Shape | None = None  # of the last content_block_delta
        self.done = False
        self.started = False
        self.usage: Usage | None = None

    def _event(self, ev: SSEEvent) -> bytes:
        if self.done:
            return b""
        data = ev.data
        name = ev.event
        if name == "content_block_delta":
            shape = self._shape
            if shape is not None and shape.match(data):
                return b"event: content_block_delta\ndata: " + data + b"\n\n"  # see _Shape
        if not data:
            return b""  # an event without data (a bare ``event: ping``): a keep-alive
        obj = _loads(data)
        if name == "content_block_delta" and obj.get("type") == "content_block_delta":
            delta = obj.get("delta")
            if delta.__class__ is dict and len(delta) == 2:
                key = _DELTA_KEYS.get(delta.get("type"))  # type: ignore[arg-type]
                if key is not None and delta.get(key).__class__ is str:
                    self._shape = _Shape.of(data, b'"' + key.encode() + b'":"', delta[key])
        elif name == "error" or obj.get("type") == "error":
            if not self.started:
                raise _error_of(obj)
            self.done = True
        elif name == "message_start" or name == "message_delta":
            raw = obj.get("message") if name == "message_start" else obj
            raw = raw.get("usage") if isinstance(raw, dict) else None
            if isinstance(raw, dict):
                self._merge_usage(raw)
            self._seen_delta = self._seen_delta or name == "message_delta"
        elif name == "message_stop":
            self.done = True
        if name is None:
            return b"data: " + data + b"\n\n"
        return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"

    def _merge_usage(self, raw: dict[str, Any]) -> None:
        new = _usage(self._usage_from, raw)
        if new is None:
            return
        if self.usage is None:
            self.usage = new
            return
        # message_delta carries cumulative output and, sometimes, the input counts again.
        u = self.usage
        u.output_tokens = new.output_tokens or u.output_tokens
        if "input_tokens" in raw:
            u.input_tokens, u.cached_tokens = new.input_tokens, new.cached_tokens
            u.cache_creation_tokens = new.cache_creation_tokens

    def _end(self) -> bytes:
        if self._seen_delta:
            self.done = True
            return encode_event(b'{"type":"message_stop"}', "message_stop")
        return self.error(502, EARLY_EOF) if self.started else b""

    def error(self, status: int, message: str) -> bytes:
        self.done = True
        return errors.claude_stream_error(status, message)


class GeminiPassthrough(_EventPipe):
    """Gemini -> Gemini: data-only chunks, as SSE or as the JSON-array stream."""

    __slots__ = ("_count", "_finished", "_parser", "_sse", "_usage_from", "done", "started", "usage")

    def __init__(self, sse: bool = True) -> None:
        from .gemini import usage_from_gemini

        self._usage_from = usage_from_gemini
        self._parser = SSEParser()
        self._sse = sse
        self._count = 0
        self._finished = False
        self.done = False
        self.started = False
        self.usage: Usage | None = None

    def _frame(self, data: bytes) -> bytes:
        self._count += 1
        if self._sse:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if self._count == 1 else b",\r\n") + data

    def _event(self, ev: SSEEvent) -> bytes:
        if self.done:
            return b""
        data = ev.data
        if not data:
            return b""
        if data == b"[DONE]":
            return b""  # not Gemini's; some compatible servers end with it
        obj = _loads(data)
        if obj.get("error"):
            if not self.started:
                raise _error_of(obj)
            self.done = True
            return self._frame(data) + self._close_array()
        meta = obj.get("usageMetadata")
        if meta.__class__ is dict:
            self.usage = _usage(self._usage_from, meta) or self.usage
        cands = obj.get("candidates")
        if cands:
            for cand in cands:
                if cand.__class__ is dict and cand.get("finishReason"):
                    self._finished = True
        return self._frame(data)

    def _close_array(self) -> bytes:
        if self._sse:
            return b""
        return b"]" if self._count else b"[]"

    def _end(self) -> bytes:
        if self._finished:
            self.done = True
            return self._close_array()
        return self.error(502, EARLY_EOF) if self.started else b""

    def error(self, status: int, message: str) -> bytes:
        self.done = True
        body = orjson.dumps(errors.gemini_error(status, message))
        return self._frame(body) + self._close_array()


class ResponsesPassthrough:
    """Responses -> Responses through the framer (which repairs and terminates the stream, and
    parses every event). This wrapper adds what the framer does not do: the not-an-event-stream
    check, the bound on an unfinished event, and the started/raise rules."""

    __slots__ = ("_failure", "_framer", "_head", "_unframed", "started")

    def __init__(self, codex_client: bool) -> None:
        from .responses_framer import ResponsesFramer

        self._framer = ResponsesFramer(codex_client=codex_client)
        self._head: bytes | None = b""
        self._unframed = 0  # bytes fed since the framer last produced output
        self._failure: bytes | None = None  # the framer's terminal error, held back by a raise
        self.started = False

    @property
    def usage(self) -> Usage | None:
        return self._framer.usage

    @property
    def done(self) -> bool:
        return self._framer.terminal and self._failure is None

    def _check(self, out: bytes) -> bytes:
        """Before ``started``, a stream the framer ended with an error raises instead."""
        framer = self._framer
        if not self.started and framer.error is not None and not framer.completed:
            # keep the terminal error frame (the last one) for error(); drop what came before it
            cut = max(out.rfind(b"\n\nevent: error\n"), out.rfind(b"\n\nevent: response.failed\n"))
            self._failure = out[cut + 2 :] if cut >= 0 else out
            raise _framer_error(framer.error)
        if out:
            self.started = True
        return out

    def feed(self, chunk: bytes) -> bytes:
        if self._head is not None and chunk:
            head = self._head + chunk
            ok = looks_like_sse(head)
            if ok is False:
                raise UpstreamEventError(502, str(not_an_event_stream(head)))
            self._head = None if ok else head[-64:]
        if self._failure is not None:
            return b""
        try:
            out = self._framer.feed(chunk)
        except UNREADABLE:
            if not self.started:
                raise UpstreamEventError(502, NOT_READABLE) from None
            return self._framer.fail(502, NOT_READABLE)
        if out:
            self._unframed = 0
        else:
            self._unframed += len(chunk)
            if self._unframed > MAX_EVENT_BYTES:
                raise UpstreamEventError(502, f"upstream sent an event larger than {MAX_EVENT_BYTES} bytes "
                                              "without ending it")
        return self._check(out)

    def finish(self) -> bytes:
        if self._failure is not None:
            return b""
        try:
            out = self._framer.finish()
        except UNREADABLE:
            if not self.started:
                raise UpstreamEventError(502, NOT_READABLE) from None
            return self._framer.fail(502, NOT_READABLE)
        return self._check(out)

    def error(self, status: int, message: str) -> bytes:
        if self._failure is not None:
            # the terminal error the framer rendered when the caller was told to fail
            out, self._failure = self._failure, None
            return out or self._framer.fail(status, message)
        return self._framer.fail(status, message)


_QUOTA_CODES = frozenset({"rate_limit_exceeded", "insufficient_quota", "rate_limit_error", "requests", "tokens"})


def _framer_error(error: tuple[int, str, str]) -> UpstreamEventError:
    status, code, message = error
    if status == 502 and code in _QUOTA_CODES:
        status = 429
    return UpstreamEventError(status, message)


class TranslatePipe:
    """Upstream format -> neutral events -> client format."""

    __slots__ = ("_decoder", "_encoder", "_parser", "done", "started", "usage")

    def __init__(self, decoder: Any, encoder: Any) -> None:
        self._parser = SSEParser()
        self._decoder = decoder
        self._encoder = encoder
        self.done = False
        self.started = False
        self.usage: Usage | None = None

    def _emit(self, events: list[Event]) -> bytes:
        """Client bytes for decoded events (an Error before ``started`` raises)."""
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
                if not self.started:
                    raise UpstreamEventError(ev.status or 502, ev.message)
                out.append(self._encoder.error(ev.status, ev.message, ev.error_type))
                self.done = True
                continue
            out.append(self._encoder.encode(ev))
        return b"".join(out)

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        decode = self._decoder.feed
        encode = self._encoder.encode
        try:
            sses = self._parser.feed(chunk)
        except SSEError as exc:
            raise UpstreamEventError(502, str(exc)) from None
        for sse in sses:
            if self.done:
                break
            try:
                events = decode(sse)
                if len(events) == 1 and events[0].type == "block_delta":
                    out.append(encode(events[0]))  # the common case, without the general loop
                    continue
                if events:
                    out.append(self._emit(events))
                    continue
            except UNREADABLE:
                problem = NOT_READABLE
            else:
                if not sse.data or _complete(sse.data):
                    continue
                problem = NOT_JSON  # the decoders skip what they cannot parse; it must not vanish
            if not self.started:
                raise UpstreamEventError(502, problem)
            out.append(self.error(502, problem))
            break
        if not out:
            return b""
        self.started = True
        return b"".join(out)

    def finish(self) -> bytes:
        out = b""
        tail = self._parser.flush()
        try:
            if tail is not None and not self.done and _complete(tail.data):
                out = self._emit(self._decoder.feed(tail))
            if not self.done:
                out += self._emit(self._decoder.close())
        except UNREADABLE:
            if not self.started:
                raise UpstreamEventError(502, NOT_READABLE) from None
            return out + self.error(502, NOT_READABLE)
        if not self.done:
            if not self.started:
                raise UpstreamEventError(502, EARLY_EOF)
            out += self.error(502, EARLY_EOF)
        if out:
            self.started = True
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
