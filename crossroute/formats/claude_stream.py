"""Anthropic Messages streaming: SSE events <-> neutral events, plus the small mappings
(stop reasons, usage, error types, tool ids) shared with ``claude.py``.

Decoder input is the upstream's ``event:``/``data:`` pairs (``message_start``,
``content_block_start``/``_delta``/``_stop``, ``message_delta``, ``message_stop``, ``ping``,
``error``). Encoder output always carries an ``event:`` line equal to the JSON ``type`` (the
Anthropic SDK skips events without a name) and numbers content blocks 0, 1, 2... in the order it
starts them, because the SDK appends each ``content_block_start`` to a list and addresses later
deltas by that list index.
"""

from __future__ import annotations

import os
import re
from typing import Any

import orjson

from .errors import claude_error_type, claude_stream_error
from .neutral import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Error,
    Event,
    Finish,
    FinishReason,
    Start,
    Usage,
)
from .sse import SSEEvent

__all__ = [
    "CLAUDE_ERROR_STATUS",
    "StreamDecoder",
    "StreamEncoder",
    "finish_from_claude",
    "finish_to_claude",
    "new_message_id",
    "new_tool_id",
    "sanitize_tool_id",
    "status_for_error_type",
    "usage_from_claude",
    "usage_to_claude",
]

# ---------------------------------------------------------------- shared mappings

_FINISH_FROM: dict[str, FinishReason] = {
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop_sequence",
    "refusal": "content_filter",
    "sensitive": "content_filter",
    "model_context_window_exceeded": "length",
    "pause_turn": "stop",
}
_FINISH_TO: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
    "content_filter": "refusal",
    "error": "end_turn",
}

CLAUDE_ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_TOOL_ID_OK = re.compile(r"^[a-zA-Z0-9_-]+$")
_TOOL_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")


def finish_from_claude(stop_reason: str | None) -> FinishReason:
    if stop_reason is None:
        return "stop"
    return _FINISH_FROM.get(stop_reason, "stop")


def finish_to_claude(reason: str | None) -> str:
    return _FINISH_TO.get(reason or "stop", "end_turn")


def status_for_error_type(error_type: str | None) -> int:
    if error_type is None:
        return 502
    return CLAUDE_ERROR_STATUS.get(error_type, 502)


def new_message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def new_tool_id() -> str:
    return "toolu_" + os.urandom(12).hex()


def sanitize_tool_id(tool_id: str | None) -> str:
    """Claude requires tool ids matching ``^[a-zA-Z0-9_-]+$``; other characters become ``_``.
    Deterministic, so a tool_use id and its tool_result id stay equal."""
    if not tool_id:
        return new_tool_id()
    if _TOOL_ID_OK.match(tool_id):
        return tool_id
    return _TOOL_ID_BAD.sub("_", tool_id)


def _int(v: Any) -> int:
    return v if isinstance(v, int) else 0


def usage_from_claude(usage: dict[str, Any] | None) -> Usage:
    """Neutral usage from a Claude ``usage`` object (input counts the cache read and creation)."""
    if not isinstance(usage, dict):
        return Usage()
    inp = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    creation = _int(usage.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=inp + read + creation,
        output_tokens=_int(usage.get("output_tokens")),
        cached_tokens=read,
        cache_creation_tokens=creation,
    )


def usage_to_claude(u: Usage | None) -> dict[str, int]:
    if u is None:
        return {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    return {
        "input_tokens": max(u.input_tokens - u.cached_tokens - u.cache_creation_tokens, 0),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_creation_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    }


def _error_type_for(status: int, error_type: str | None) -> str:
    if error_type and error_type in CLAUDE_ERROR_STATUS:
        return error_type
    return claude_error_type(status)


# ---------------------------------------------------------------- decoder

_SKIP = 0  # a block type the neutral form cannot carry (server tools, compaction...)
_TEXT = 1
_THINKING = 2
_TOOL = 3


class _Raw:
    """Claude's usage counters as last reported (message_delta values overwrite when present)."""

    __slots__ = ("cache_creation", "cache_read", "input", "output")

    def __init__(self) -> None:
        self.input = 0
        self.output = 0
        self.cache_read = 0
        self.cache_creation = 0

    def update(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        v = usage.get("input_tokens")
        if isinstance(v, int):
            self.input = v
        v = usage.get("output_tokens")
        if isinstance(v, int):
            self.output = v
        v = usage.get("cache_read_input_tokens")
        if isinstance(v, int):
            self.cache_read = v
        v = usage.get("cache_creation_input_tokens")
        if isinstance(v, int):
            self.cache_creation = v

    def neutral(self) -> Usage:
        return Usage(
            input_tokens=self.input + self.cache_read + self.cache_creation,
            output_tokens=self.output,
            cached_tokens=self.cache_read,
            cache_creation_tokens=self.cache_creation,
        )


class StreamDecoder:
    """Claude SSE events -> neutral events. Neutral block indexes are Claude's own indexes
    (unique and increasing); blocks of types the neutral form cannot carry are skipped."""

    __slots__ = (
        "_args_seen",
        "_blocks",
        "_delta_seen",
        "_done",
        "_initial_input",
        "_model",
        "_open",
        "_started",
        "_stop_reason",
        "_stop_sequence",
        "_usage",
    )

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._done = False  # Finish or Error emitted
        self._blocks: dict[int, int] = {}  # claude index -> kind
        self._open: list[int] = []  # neutral-visible blocks started and not stopped
        self._args_seen: set[int] = set()
        self._initial_input: dict[int, str] = {}
        self._usage = _Raw()
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._delta_seen = False

    # -- helpers

    def _start_if_needed(self, out: list[Event]) -> None:
        if not self._started:
            self._started = True
            out.append(Start(id=new_message_id(), model=self._model))

    def _close_blocks(self, out: list[Event]) -> None:
        for idx in self._open:
            if self._blocks.get(idx) == _TOOL and idx not in self._args_seen:
                out.append(BlockDelta(index=idx, arguments=self._initial_input.get(idx, "{}")))
            out.append(BlockStop(index=idx))
        self._open = []

    def _finish(self, out: list[Event]) -> None:
        self._start_if_needed(out)
        self._close_blocks(out)
        self._done = True
        seq = self._stop_sequence if self._stop_reason == "stop_sequence" else None
        out.append(Finish(reason=finish_from_claude(self._stop_reason), usage=self._usage.neutral(),
                          stop_sequence=seq))

    def _error(self, payload: Any, out: list[Event]) -> None:
        err = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(err, dict):
            etype = err.get("type") if isinstance(err.get("type"), str) else None
            msg = err.get("message") if isinstance(err.get("message"), str) else None
        else:
            etype = None
            msg = err if isinstance(err, str) else None
        self._done = True
        out.append(Error(status=status_for_error_type(etype), message=msg or "upstream stream error",
                         error_type=etype))

    def _begin(self, idx: int, kind: int, out: list[Event], tool_id: str | None = None,
               name: str | None = None) -> None:
        self._blocks[idx] = kind
        if kind == _SKIP:
            return
        self._open.append(idx)
        block = "text" if kind == _TEXT else "thinking" if kind == _THINKING else "tool_call"
        out.append(BlockStart(index=idx, block=block, tool_call_id=tool_id, tool_name=name))

    # -- API

    def feed(self, ev: SSEEvent) -> list[Event]:
        if self._done or ev.event == "ping" or not ev.data.strip():
            return []
        try:
            obj = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            if ev.event == "error":
                text = ev.data.decode("utf-8", "replace")
                self._done = True
                return [Error(status=502, message=text[:2048] or "upstream stream error")]
            return []
        if not isinstance(obj, dict):
            return []
        etype = obj.get("type")
        if ev.event == "error" or etype == "error":
            out: list[Event] = []
            self._error(obj, out)
            return out
        out = []
        if etype == "content_block_delta":
            self._on_delta(obj, out)
        elif etype == "content_block_start":
            self._on_block_start(obj, out)
        elif etype == "content_block_stop":
            idx = obj.get("index")
            if isinstance(idx, int) and idx in self._open:
                self._open.remove(idx)
                if self._blocks.get(idx) == _TOOL and idx not in self._args_seen:
                    out.append(BlockDelta(index=idx, arguments=self._initial_input.get(idx, "{}")))
                out.append(BlockStop(index=idx))
        elif etype == "message_start":
            self._on_message_start(obj, out)
        elif etype == "message_delta":
            self._start_if_needed(out)
            self._delta_seen = True
            delta = obj.get("delta")
            if isinstance(delta, dict):
                sr = delta.get("stop_reason")
                if isinstance(sr, str):
                    self._stop_reason = sr
                ss = delta.get("stop_sequence")
                if isinstance(ss, str):
                    self._stop_sequence = ss
            self._usage.update(obj.get("usage"))
        elif etype == "message_stop":
            self._finish(out)
        return out

    def _on_message_start(self, obj: dict[str, Any], out: list[Event]) -> None:
        if self._started:
            return
        msg = obj.get("message")
        if not isinstance(msg, dict):
            msg = {}
        self._usage.update(msg.get("usage"))
        self._started = True
        mid = msg.get("id")
        model = msg.get("model")
        out.append(Start(
            id=mid if isinstance(mid, str) and mid else new_message_id(),
            model=model if isinstance(model, str) and model else self._model,
            usage=self._usage.neutral(),
        ))

    def _on_block_start(self, obj: dict[str, Any], out: list[Event]) -> None:
        self._start_if_needed(out)
        idx = obj.get("index")
        cb = obj.get("content_block")
        if not isinstance(idx, int) or not isinstance(cb, dict) or idx in self._blocks:
            return
        btype = cb.get("type")
        if btype == "text":
            self._begin(idx, _TEXT, out)
            text = cb.get("text")
            if isinstance(text, str) and text:
                out.append(BlockDelta(index=idx, text=text))
        elif btype == "thinking":
            self._begin(idx, _THINKING, out)
            thinking = cb.get("thinking")
            if isinstance(thinking, str) and thinking:
                out.append(BlockDelta(index=idx, thinking=thinking))
            sig = cb.get("signature")
            if isinstance(sig, str) and sig:
                out.append(BlockDelta(index=idx, signature=sig))
        elif btype == "redacted_thinking":
            self._begin(idx, _THINKING, out)
            data = cb.get("data")
            if isinstance(data, str) and data:
                out.append(BlockDelta(index=idx, redacted=data))
        elif btype == "tool_use":
            tid = cb.get("id")
            name = cb.get("name")
            self._begin(idx, _TOOL, out, tool_id=tid if isinstance(tid, str) else None,
                        name=name if isinstance(name, str) else None)
            inp = cb.get("input")
            if isinstance(inp, dict) and inp:
                self._initial_input[idx] = orjson.dumps(inp).decode()
        else:
            self._begin(idx, _SKIP, out)

    def _on_delta(self, obj: dict[str, Any], out: list[Event]) -> None:
        idx = obj.get("index")
        delta = obj.get("delta")
        if not isinstance(idx, int) or not isinstance(delta, dict):
            return
        dtype = delta.get("type")
        kind = self._blocks.get(idx)
        if kind == _SKIP:
            return
        if dtype == "text_delta":
            text = delta.get("text")
            if not isinstance(text, str) or not text:
                return
            if kind is None:
                self._start_if_needed(out)
                self._begin(idx, _TEXT, out)
            out.append(BlockDelta(index=idx, text=text))
        elif dtype == "input_json_delta":
            part = delta.get("partial_json")
            if kind is None:
                self._start_if_needed(out)
                self._begin(idx, _TOOL, out)
            if not isinstance(part, str) or not part:
                return
            self._args_seen.add(idx)
            out.append(BlockDelta(index=idx, arguments=part))
        elif dtype == "thinking_delta" or dtype == "signature_delta":
            key = "thinking" if dtype == "thinking_delta" else "signature"
            value = delta.get(key)
            if not isinstance(value, str) or not value:
                return
            if kind is None:
                self._start_if_needed(out)
                self._begin(idx, _THINKING, out)
            if key == "thinking":
                out.append(BlockDelta(index=idx, thinking=value))
            else:
                out.append(BlockDelta(index=idx, signature=value))
        # citations_delta, compaction_delta and unknown delta types carry nothing neutral

    def close(self) -> list[Event]:
        if self._done:
            return []
        out: list[Event] = []
        if self._delta_seen:
            self._finish(out)
            return out
        self._start_if_needed(out)
        self._done = True
        out.append(Error(status=502, message="upstream stream closed before the message completed",
                         error_type="api_error"))
        return out


# ---------------------------------------------------------------- encoder

_EV_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_EV_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
_TEXT_DELTA = b',"delta":{"type":"text_delta","text":'
_THINK_DELTA = b',"delta":{"type":"thinking_delta","thinking":'
_SIG_DELTA = b',"delta":{"type":"signature_delta","signature":'
_JSON_DELTA = b',"delta":{"type":"input_json_delta","partial_json":'
_END = b"}}\n\n"
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _frame(etype: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + etype.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class _Block:
    """One neutral block on its way out. ``out`` is its Claude index once started."""

    __slots__ = ("buffered", "kind", "name", "out", "prefix", "stopped", "tool_id")

    def __init__(self, kind: str, tool_id: str | None, name: str | None) -> None:
        self.kind = kind
        self.tool_id = tool_id
        self.name = name
        self.out: int | None = None
        self.prefix = b""  # the bytes every delta event of this block starts with, once started
        self.buffered: list[BlockDelta] = []
        self.stopped = False


class StreamEncoder:
    """Neutral events -> Claude SSE bytes.

    Option ``upstream_family`` ("openai", "gemini"...; None or "claude" = Claude): thinking
    signatures and redacted data from another family are sent tagged ``"<family>:<value>"`` so that
    ``claude.request_to_neutral`` can give them back to that family on the next turn.

    Claude streams one content block at a time, so blocks that a neutral stream interleaves
    (parallel tool calls) are serialised: the first open block streams live, later ones are
    buffered until it stops. A thinking block's start waits for its first delta (it may turn
    out to be ``redacted_thinking``); a tool block's start waits until its name is known (a later
    ``BlockStart`` with the same index may supply id and name); their deltas are held meanwhile.
    """

    def __init__(self, model: str, **options: Any) -> None:
        self._model = model
        fam = options.get("upstream_family")
        self._tag = f"{fam}:" if isinstance(fam, str) and fam and fam != "claude" else ""
        self._started = False
        self._finished = False
        self._next_out = 0
        self._blocks: dict[int, _Block] = {}
        self._queue: list[int] = []  # neutral indexes not yet stopped on the wire, in start order
        self._usage: Usage | None = None
        self._msg_id: str | None = None

    # -- framing helpers

    def _message_start(self, msg_id: str | None, usage: Usage | None) -> bytes:
        self._started = True
        self._msg_id = msg_id or new_message_id()
        return _frame("message_start", {
            "type": "message_start",
            "message": {
                "id": self._msg_id,
                "type": "message",
                "role": "assistant",
                "model": self._model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage_to_claude(usage),
            },
        })

    def _ensure_started(self) -> bytes:
        return b"" if self._started else self._message_start(None, self._usage)

    def _emit_start(self, b: _Block, first: BlockDelta | None) -> bytes:
        """content_block_start for ``b``; returns bytes and marks ``first`` consumed when it was
        folded into the start (redacted thinking)."""
        b.out = self._next_out
        b.prefix = _EV_DELTA + str(b.out).encode()
        self._next_out += 1
        if b.kind == "text":
            cb: dict[str, Any] = {"type": "text", "text": ""}
        elif b.kind == "thinking":
            if first is not None and first.redacted and not first.thinking:
                cb = {"type": "redacted_thinking", "data": self._tag + first.redacted}
                b.kind = "redacted"
            else:
                cb = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            cb = {"type": "tool_use", "id": sanitize_tool_id(b.tool_id), "name": b.name or "",
                  "input": {}}
        return _frame("content_block_start",
                      {"type": "content_block_start", "index": b.out, "content_block": cb})

    def _delta_bytes(self, b: _Block, d: BlockDelta) -> bytes:
        if b.kind == "text":  # the common case: one text delta
            return b.prefix + _TEXT_DELTA + orjson.dumps(d.text) + _END if d.text else b""
        idx = str(b.out).encode()
        parts: list[bytes] = []
        if b.kind == "text":
            if d.text:
                parts.append(_EV_DELTA + idx + _TEXT_DELTA + orjson.dumps(d.text) + _END)
        elif b.kind == "thinking":
            if d.thinking:
                parts.append(_EV_DELTA + idx + _THINK_DELTA + orjson.dumps(d.thinking) + _END)
            if d.signature:
                sig = self._tag + d.signature
                parts.append(_EV_DELTA + idx + _SIG_DELTA + orjson.dumps(sig) + _END)
        elif b.kind == "tool_call":
            if d.arguments:
                parts.append(_EV_DELTA + idx + _JSON_DELTA + orjson.dumps(d.arguments) + _END)
        # "redacted": the data went out with the start; nothing else fits that block
        return b"".join(parts)

    def _ready(self, b: _Block) -> bool:
        if b.kind == "tool_call":
            return bool(b.name) or b.stopped
        if b.kind == "thinking":
            return bool(b.buffered) or b.stopped
        return True

    def _pump(self) -> bytes:
        """Emit whatever the head of the queue allows: start it when ready, flush its buffered
        deltas, stop it if it already stopped, then move on to the next block."""
        parts: list[bytes] = []
        while self._queue:
            b = self._blocks[self._queue[0]]
            if b.out is None:
                if not self._ready(b):
                    break
                first = b.buffered[0] if b.buffered else None
                parts.append(self._emit_start(b, first))
                pending = b.buffered
                if b.kind == "redacted" and pending:
                    pending = pending[1:]
                b.buffered = []
                for d in pending:
                    parts.append(self._delta_bytes(b, d))
            elif b.buffered:
                pending, b.buffered = b.buffered, []
                for d in pending:
                    parts.append(self._delta_bytes(b, d))
            if not b.stopped:
                break
            parts.append(_EV_STOP + str(b.out).encode() + b"}\n\n")
            self._queue.pop(0)
        return b"".join(parts)

    def _block_for_delta(self, d: BlockDelta) -> _Block:
        b = self._blocks.get(d.index)
        if b is None:
            if d.arguments is not None:
                kind = "tool_call"
            elif d.text is not None:
                kind = "text"
            else:
                kind = "thinking"
            b = _Block(kind, None, None)
            self._blocks[d.index] = b
            self._queue.append(d.index)
        return b

    # -- API

    def encode(self, ev: Event) -> bytes:
        if self._finished:
            return b""
        t = ev.type
        if t == "block_delta":
            b = self._blocks.get(ev.index)  # type: ignore[union-attr]
            if (b is not None and b.out is not None and not b.stopped and b.kind == "text"
                    and self._queue[0] == ev.index):  # type: ignore[union-attr]
                # an open text block at the head of the queue: straight to bytes
                text = ev.text  # type: ignore[union-attr]
                return b.prefix + _TEXT_DELTA + orjson.dumps(text) + _END if text else b""
            b = self._block_for_delta(ev)  # type: ignore[arg-type]
            if b.stopped:
                return b""
            head = self._ensure_started()
            if b.out is not None and self._queue and self._queue[0] == ev.index:  # type: ignore[union-attr]
                return head + self._delta_bytes(b, ev)  # type: ignore[arg-type]
            b.buffered.append(ev)  # type: ignore[arg-type]
            return head + self._pump()
        if t == "block_start":
            return self._on_block_start(ev)  # type: ignore[arg-type]
        if t == "block_stop":
            b = self._blocks.get(ev.index)  # type: ignore[union-attr]
            if b is None or b.stopped:
                return b""
            b.stopped = True
            return self._ensure_started() + self._pump()
        if t == "start":
            if self._started:
                return b""
            if ev.usage is not None:  # type: ignore[union-attr]
                self._usage = ev.usage  # type: ignore[union-attr]
            return self._message_start(ev.id or None, ev.usage)  # type: ignore[union-attr]
        if t == "usage":
            self._usage = ev.usage  # type: ignore[union-attr]
            return b""
        if t == "finish":
            return self._on_finish(ev)  # type: ignore[arg-type]
        if t == "error":
            return self.error(ev.status, ev.message, ev.error_type)  # type: ignore[union-attr]
        return b""

    def _on_block_start(self, ev: BlockStart) -> bytes:
        b = self._blocks.get(ev.index)
        if b is not None:
            # a repeated start: late tool id / name
            if ev.tool_call_id and not b.tool_id:
                b.tool_id = ev.tool_call_id
            if ev.tool_name and not b.name:
                b.name = ev.tool_name
            return self._ensure_started() + self._pump() if b.out is None else b""
        self._blocks[ev.index] = _Block(ev.block, ev.tool_call_id, ev.tool_name)
        self._queue.append(ev.index)
        return self._ensure_started() + self._pump()

    def _on_finish(self, ev: Finish) -> bytes:
        parts = [self._ensure_started()]
        for i in self._queue:
            self._blocks[i].stopped = True
        parts.append(self._pump())
        self._finished = True
        usage = ev.usage or self._usage
        seq = ev.stop_sequence if ev.reason == "stop_sequence" else None
        parts.append(_frame("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": finish_to_claude(ev.reason), "stop_sequence": seq},
            "usage": usage_to_claude(usage),
        }))
        parts.append(_MESSAGE_STOP)
        return b"".join(parts)

    def error(self, status: int, message: str, error_type: str | None = None) -> bytes:
        self._finished = True
        return claude_stream_error(status, message, _error_type_for(status, error_type))

    def close(self) -> bytes:
        return b""
