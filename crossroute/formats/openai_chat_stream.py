"""OpenAI Chat Completions streams: ``chat.completion.chunk`` SSE <-> neutral stream events.

``StreamDecoder`` reads an upstream chat stream; ``StreamEncoder`` writes one for a chat client.
Both are re-exported by ``openai_chat``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .errors import openai_stream_error
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
    UsageUpdate,
)
from .sse import SSEEvent

_DONE = b"data: [DONE]\n\n"

# OpenAI error types (and a few compatible servers' variants) -> HTTP status.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "tokens": 429,
    "requests": 429,
    "server_error": 500,
    "api_error": 500,
    "overloaded_error": 529,
    "timeout_error": 504,
}


def _error_event(err: Any) -> Error:
    if not isinstance(err, dict):
        return Error(500, str(err) if err else "upstream stream error")
    msg = err.get("message")
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    code = err.get("code")
    status = 0
    for v in (code, err.get("status"), err.get("status_code")):
        if isinstance(v, int) and 400 <= v <= 599:
            status = v
            break
        if isinstance(v, str) and v.isdigit() and 400 <= int(v) <= 599:
            status = int(v)
            break
    if not status:
        status = _ERROR_STATUS.get(etype or "", 0) or _ERROR_STATUS.get(code if isinstance(code, str) else "", 500)
    return Error(
        status=status,
        message=msg if isinstance(msg, str) and msg else "upstream stream error",
        error_type=etype,
        code=code if isinstance(code, str) else None,
    )


class _ToolState:
    __slots__ = ("args", "block", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.block = -1  # neutral block index once started
        self.args: list[str] = []  # fragments that arrived before the name


class StreamDecoder:
    """Upstream chat chunks -> neutral events. Finish is held until ``[DONE]`` (or ``close``)
    so that the trailing usage chunk (``choices: []``) is counted."""

    __slots__ = (
        "_done", "_finish", "_model", "_next", "_open_tools", "_started", "_text", "_thinking",
        "_tools", "_usage",
    )  # fmt: skip

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._done = False
        self._next = 0  # next neutral block index
        self._text = -1  # open text block index
        self._thinking = -1  # open thinking block index
        self._tools: dict[int, _ToolState] = {}
        self._open_tools: list[int] = []  # neutral indexes of open tool blocks
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None

    # -- block helpers
    def _close_text(self, out: list[Event]) -> None:
        if self._text >= 0:
            out.append(BlockStop(self._text))
            self._text = -1
        if self._thinking >= 0:
            out.append(BlockStop(self._thinking))
            self._thinking = -1

    def _close_tools(self, out: list[Event]) -> None:
        for b in self._open_tools:
            out.append(BlockStop(b))
        self._open_tools.clear()

    def _text_delta(self, text: str, out: list[Event]) -> None:
        if self._text < 0:
            if self._thinking >= 0:
                out.append(BlockStop(self._thinking))
                self._thinking = -1
            self._close_tools(out)
            self._text = self._next
            self._next += 1
            out.append(BlockStart(self._text, "text"))
        out.append(BlockDelta(self._text, text=text))

    def _thinking_delta(self, text: str, out: list[Event]) -> None:
        if self._thinking < 0:
            if self._text >= 0:
                out.append(BlockStop(self._text))
                self._text = -1
            self._close_tools(out)
            self._thinking = self._next
            self._next += 1
            out.append(BlockStart(self._thinking, "thinking"))
        out.append(BlockDelta(self._thinking, thinking=text))

    def _start_tool(self, st: _ToolState, out: list[Event]) -> None:
        self._close_text(out)
        st.block = self._next
        self._next += 1
        if not st.id:
            st.id = new_id("call_")
        out.append(BlockStart(st.block, "tool_call", tool_call_id=st.id, tool_name=st.name or ""))
        self._open_tools.append(st.block)
        if st.args:
            out.append(BlockDelta(st.block, arguments="".join(st.args)))
            st.args.clear()

    def _tool_deltas(self, calls: list[Any], out: list[Event]) -> None:
        for pos, tc in enumerate(calls):
            if not isinstance(tc, dict):
                continue
            idx = tc.get("index")
            tid = tc.get("id") if isinstance(tc.get("id"), str) and tc.get("id") else None
            if not isinstance(idx, int):
                # Some compatible servers omit index: match by id, else by position.
                idx = next((k for k, s in self._tools.items() if tid and s.id == tid), None)
                if idx is None:
                    idx = len(self._tools) if tid else max(self._tools, default=pos)
            st = self._tools.get(idx)
            if st is None:
                st = self._tools[idx] = _ToolState()
            elif tid and st.id and tid != st.id:
                # a new call at an index already in use (some compatible servers number every
                # call 0): the previous call is complete, this one starts a block of its own
                if st.block < 0:
                    self._start_tool(st, out)
                if st.block in self._open_tools:
                    self._open_tools.remove(st.block)
                    out.append(BlockStop(st.block))
                st = self._tools[idx] = _ToolState()
            fn = tc.get("function")
            fn = fn if isinstance(fn, dict) else {}
            if st.block < 0:
                if tid:
                    st.id = tid
                name = fn.get("name")
                if isinstance(name, str) and name:
                    st.name = name
            args = fn.get("arguments")
            if st.block >= 0:
                if isinstance(args, str) and args:
                    out.append(BlockDelta(st.block, arguments=args))
                continue
            if isinstance(args, str) and args:
                st.args.append(args)
            elif isinstance(args, dict):  # a few servers send the parsed object
                st.args.append(orjson.dumps(args).decode())
            if st.name:
                self._start_tool(st, out)

    def _flush_pending_tools(self, out: list[Event]) -> None:
        for st in self._tools.values():
            if st.block < 0:
                self._start_tool(st, out)

    def _finish_events(self, out: list[Event]) -> None:
        self._flush_pending_tools(out)
        self._close_text(out)
        self._close_tools(out)
        # usage None: the upstream sent none (a compatible server ignoring include_usage)
        out.append(Finish(self._finish or "stop", usage=self._usage))
        self._done = True

    # -- public
    def feed(self, ev: SSEEvent) -> list[Event]:
        if self._done:
            return []
        data = ev.data
        if not data:
            return []
        if data[0] != 0x7B and (data[:6] == b"[DONE]" or data.strip() == b"[DONE]"):  # not '{
            out: list[Event] = []
            if not self._started:
                self._started = True
                out.append(Start(id="", model=self._model))
            self._finish_events(out)
            return out
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(obj, dict):
            return []
        if self._text >= 0 and obj.get("usage") is None:
            # Fast path for the chunk that makes up most of a stream: one choice whose delta is
            # a single piece of text continuing the open text block, with no finish and no usage.
            choices = obj.get("choices")
            if choices.__class__ is list and len(choices) == 1:
                ch = choices[0]
                if ch.__class__ is dict and ch.get("finish_reason") is None and not ch.get("index"):
                    delta = ch.get("delta")
                    if delta.__class__ is dict and len(delta) == 1:
                        text = delta.get("content")
                        if text.__class__ is str and "error" not in obj:
                            return [BlockDelta(self._text, text=text)] if text else []
        out = []
        if obj.get("error"):
            self._done = True
            out.append(_error_event(obj["error"]))
            return out
        if not self._started:
            self._started = True
            created = obj.get("created")
            out.append(
                Start(
                    id=str(obj.get("id") or ""),
                    model=str(obj.get("model") or self._model),
                    created=created if isinstance(created, int) else None,
                )
            )
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage = usage_from_chat(usage)
        choices = obj.get("choices")
        if not isinstance(choices, list):
            return out
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # n > 1 is not translated: only the first choice
            delta = choice.get("delta")
            if isinstance(delta, dict) and len(delta) == 1:
                # The common chunk carries one field: dispatch on it without probing the others.
                key, value = next(iter(delta.items()))
                if value:
                    if key == "content" and isinstance(value, str):
                        if self._text >= 0:
                            out.append(BlockDelta(self._text, text=value))
                        else:
                            self._text_delta(value, out)
                    elif key in ("reasoning_content", "reasoning") and isinstance(value, str):
                        self._thinking_delta(value, out)
                    elif key == "refusal" and isinstance(value, str):
                        self._text_delta(value, out)
                    elif key == "tool_calls" and isinstance(value, list):
                        self._tool_deltas(value, out)
                    elif key == "function_call" and isinstance(value, dict):
                        self._tool_deltas([{"index": 0, "function": value}], out)
            elif isinstance(delta, dict):
                rc = delta.get("reasoning_content")
                if not isinstance(rc, str) or not rc:
                    rc = delta.get("reasoning")
                if isinstance(rc, str) and rc:
                    self._thinking_delta(rc, out)
                text = delta.get("content")
                if isinstance(text, str) and text:
                    self._text_delta(text, out)
                refusal = delta.get("refusal")
                if isinstance(refusal, str) and refusal:
                    self._text_delta(refusal, out)
                calls = delta.get("tool_calls")
                if isinstance(calls, list) and calls:
                    self._tool_deltas(calls, out)
                fc = delta.get("function_call")
                if isinstance(fc, dict):  # legacy functions: one call at index 0
                    self._tool_deltas([{"index": 0, "function": fc}], out)
            fr = choice.get("finish_reason")
            if isinstance(fr, str) and fr:
                self._finish = finish_from_chat(fr)
                self._flush_pending_tools(out)
                self._close_text(out)
                self._close_tools(out)
        return out

    def close(self) -> list[Event]:
        if self._done:
            return []
        out: list[Event] = []
        if self._finish is not None:
            self._finish_events(out)
            return out
        self._done = True
        out.append(Error(502, "upstream stream ended before a finish_reason", error_type="server_error"))
        return out


class StreamEncoder:
    """Neutral events -> chat ``data: <chunk>\\n\\n`` frames.

    Options: ``include_usage`` (the client's ``stream_options.include_usage``): when true a final
    chunk with ``choices: []`` and ``usage`` follows the finish chunk, as OpenAI sends it.
    """

    __slots__ = (
        "_closed", "_created", "_head", "_id", "_include_usage", "_model", "_started", "_tail",
        "_tools", "_usage",
    )  # fmt: skip

    def __init__(self, model: str, *, include_usage: bool = False) -> None:
        self._model = model
        self._include_usage = include_usage
        self._id = ""
        self._created = 0
        self._head = b""
        self._tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self._started = False
        self._closed = False
        self._tools: dict[int, int] = {}  # neutral block index -> chat tool_calls index
        self._usage: Usage | None = None

    def _prefix(self) -> bytes:
        return (
            b'{"id":' + orjson.dumps(self._id) + b',"object":"chat.completion.chunk","created":'
            + str(self._created).encode() + b',"model":' + orjson.dumps(self._model)
        )  # fmt: skip

    def _begin(self, upstream_id: str = "", created: int | None = None) -> bytes:
        self._started = True
        if upstream_id:
            self._id = upstream_id if upstream_id.startswith("chatcmpl-") else "chatcmpl-" + upstream_id
        else:
            self._id = new_id("chatcmpl-")
        self._created = created or int(time.time())
        self._head = b"data: " + self._prefix() + b',"choices":[{"index":0,"delta":'
        return self._chunk({"role": "assistant", "content": ""})

    def _chunk(self, delta: dict[str, Any]) -> bytes:
        return self._head + orjson.dumps(delta) + self._tail

    def encode(self, ev: Event) -> bytes:
        if self._closed:
            return b""
        if isinstance(ev, BlockDelta):
            pre = b"" if self._started else self._begin()
            if ev.text:
                return pre + self._chunk({"content": ev.text})
            if ev.thinking:
                return pre + self._chunk({"reasoning_content": ev.thinking})
            if ev.arguments:
                ti = self._tools.get(ev.index)
                if ti is None:
                    return pre
                return pre + self._chunk({"tool_calls": [{"index": ti, "function": {"arguments": ev.arguments}}]})
            return pre  # signatures / redacted reasoning have no chat field
        if isinstance(ev, Start):
            if self._started:
                return b""
            if ev.usage is not None:
                self._usage = ev.usage
            return self._begin(ev.id, ev.created)
        if isinstance(ev, BlockStart):
            pre = b"" if self._started else self._begin()
            if ev.block != "tool_call":
                return pre
            ti = len(self._tools)
            self._tools[ev.index] = ti
            call = {
                "index": ti,
                "id": ev.tool_call_id or new_id("call_"),
                "type": "function",
                "function": {"name": ev.tool_name or "", "arguments": ""},
            }
            return pre + self._chunk({"tool_calls": [call]})
        if isinstance(ev, UsageUpdate):
            self._usage = ev.usage
            return b""
        if isinstance(ev, Finish):
            return self._finish(ev)
        if isinstance(ev, Error):
            return self.error(ev.status, ev.message, ev.error_type)
        return b""  # BlockStop

    def _finish(self, ev: Finish) -> bytes:
        pre = b"" if self._started else self._begin()
        reason = FINISH_TO_CHAT.get(ev.reason, "stop")
        out = self._head + b'{},"logprobs":null,"finish_reason":' + orjson.dumps(reason) + b"}]}\n\n"
        usage = ev.usage or self._usage
        if self._include_usage:
            body = self._prefix() + b',"choices":[],"usage":' + orjson.dumps(usage_to_chat(usage or Usage())) + b"}"
            out += b"data: " + body + b"\n\n"
        return pre + out

    def error(self, status: int, message: str, error_type: str | None = None) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        return openai_stream_error(status, message, error_type)

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        return _DONE


# Imported last: ``openai_chat`` re-exports the classes above, so either module may be imported first.
from .openai_chat import FINISH_TO_CHAT, finish_from_chat, new_id, usage_from_chat, usage_to_chat  # noqa: E402
