"""OpenAI Responses streams: upstream events -> neutral events (``StreamDecoder``) and neutral
events -> client SSE bytes (``StreamEncoder``). Also the output-item and Response-object builders
shared with the non-stream translator in ``responses.py``.

Wire shape (openai SDK ``ResponseStreamEvent`` union; the SDK types events by the JSON ``type``):
``response.created``, ``response.in_progress``, then per output item ``response.output_item.added``
... ``response.output_item.done`` (messages carry ``content_part.added``/``output_text.delta``/
``output_text.done``/``content_part.done``; function calls ``function_call_arguments.delta/done``;
reasoning ``reasoning_summary_part.added``/``reasoning_summary_text.delta/done``/
``reasoning_summary_part.done``), then ``response.completed`` (or ``response.incomplete``) with the
whole output and usage. Every event has a ``sequence_number`` increasing from 0.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

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
from .responses_framer import (
    default_code,
    failed_response,
    sanitize_error_text,
    usage_from_responses,
    usage_to_responses,
)
from .responses_tools import call_item
from .sse import SSEEvent

__all__ = [
    "StreamDecoder",
    "StreamEncoder",
    "base_response",
    "error_status",
    "finish_from_status",
    "new_id",
]

# ---------------------------------------------------------------- shared helpers

_CODE_STATUS = {
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "invalid_api_key": 401,
    "invalid_prompt": 400,
    "context_length_exceeded": 400,
    "invalid_request_error": 400,
    "model_not_found": 404,
    "server_error": 500,
    "vector_store_timeout": 504,
}


def error_status(code: Any, payload: dict[str, Any] | None = None) -> int:
    """HTTP-like status for an upstream error code (502 when unknown)."""
    if isinstance(payload, dict):
        for key in ("status", "status_code"):
            v = payload.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 599:
                return v
    if isinstance(code, str):
        return _CODE_STATUS.get(code, 502)
    return 502


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def finish_from_status(status: Any, incomplete: Any, saw_tool_call: bool) -> FinishReason:
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        return "content_filter" if reason == "content_filter" else "length"
    if status == "failed":
        return "error"
    return "tool_calls" if saw_tool_call else "stop"


def _status_for(reason: FinishReason) -> tuple[str, dict[str, Any] | None]:
    if reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def base_response(
    response_id: str,
    model: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete_details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete Response object (the fields the openai SDK's ``Response`` model requires plus
    the usual echoes)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete_details,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def message_item(item_id: str, texts: list[str], status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [output_text_part(t) for t in texts],
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def reasoning_item(item_id: str, summary: list[str], encrypted: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": s} for s in summary],
    }
    if encrypted:
        item["encrypted_content"] = encrypted
    return item


def _summary_text(item: dict[str, Any]) -> str:
    parts: list[str] = []
    for key in ("summary", "content"):
        seq = item.get(key)
        if isinstance(seq, list):
            for p in seq:
                if isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"]:
                    parts.append(p["text"])
        if parts:
            break
    return "\n\n".join(parts)


# ---------------------------------------------------------------- decoder


class _Item:
    __slots__ = ("args_seen", "block", "kind", "parts", "summaries", "text_seen")

    def __init__(self, kind: str, block: int | None = None) -> None:
        self.kind = kind  # "message" | "thinking" | "tool_call" | "other"
        self.block = block  # neutral block index (thinking / tool_call)
        self.parts: dict[int, int] = {}  # message: content_index -> open block index
        self.args_seen = False
        self.text_seen = False
        self.summaries = 0


class StreamDecoder:
    """Upstream Responses SSE events -> neutral events (see the contract in neutral.py)."""

    __slots__ = ("_done", "_items", "_next", "_open", "_saw_tool", "_started", "_usage", "model")

    def __init__(self, model: str) -> None:
        self.model = model
        self._started = False
        self._done = False
        self._next = 0
        self._items: dict[Any, _Item] = {}
        self._open: dict[int, bool] = {}  # neutral index -> has any delta (insertion-ordered)
        self._saw_tool = False
        self._usage: Usage | None = None

    # ------------------------------------------------------------ helpers

    def _start(self, out: list[Event], resp: Any = None) -> None:
        if self._started:
            return
        self._started = True
        rid, model, created = "", self.model, None
        if isinstance(resp, dict):
            rid = resp.get("id") if isinstance(resp.get("id"), str) else ""
            if isinstance(resp.get("model"), str) and resp["model"]:
                model = resp["model"]
            ca = resp.get("created_at")
            created = int(ca) if isinstance(ca, int | float) else None
        out.append(Start(id=rid or new_id("resp_"), model=model, created=created))

    def _open_block(self, out: list[Event], block: str, call_id: str | None = None, name: str | None = None) -> int:
        idx = self._next
        self._next += 1
        self._open[idx] = False
        out.append(BlockStart(index=idx, block=block, tool_call_id=call_id, tool_name=name))  # type: ignore[arg-type]
        return idx

    def _delta(self, out: list[Event], ev: BlockDelta) -> None:
        if ev.index in self._open:
            self._open[ev.index] = True
            out.append(ev)

    def _stop(self, out: list[Event], idx: int | None) -> None:
        if idx is not None and self._open.pop(idx, None) is not None:
            out.append(BlockStop(index=idx))

    def _item(self, obj: dict[str, Any]) -> _Item | None:
        key = obj.get("output_index")
        if key is None:
            key = obj.get("item_id")
        return self._items.get(key)

    def _message_block(self, out: list[Event], obj: dict[str, Any]) -> int:
        """The open text block for (output_index, content_index), opened lazily."""
        key = obj.get("output_index")
        if key is None:
            key = obj.get("item_id")
        it = self._items.get(key)
        if it is None or it.kind != "message":
            it = self._items[key] = _Item("message")
        ci = obj.get("content_index")
        ci = ci if isinstance(ci, int) else 0
        idx = it.parts.get(ci)
        if idx is None:
            idx = it.parts[ci] = self._open_block(out, "text")
        return idx

    def _thinking_item(self, out: list[Event], obj: dict[str, Any]) -> _Item:
        it = self._item(obj)
        if it is None or it.kind != "thinking":
            key = obj.get("output_index")
            if key is None:
                key = obj.get("item_id")
            it = self._items[key] = _Item("thinking", self._open_block(out, "thinking"))
        return it

    # ------------------------------------------------------------ events

    def feed(self, ev: SSEEvent) -> list[Event]:
        if self._done:
            return []
        data = ev.data
        if not data or data == b"[DONE]":
            return []
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._fail(502, "upstream sent an event that is not valid JSON", None)
        if not isinstance(obj, dict):
            return []
        t = obj.get("type")
        if not isinstance(t, str):
            t = ev.event or ""
        out: list[Event] = []

        if t == "response.output_text.delta" or t == "response.refusal.delta":
            self._start(out)
            d = obj.get("delta")
            idx = self._message_block(out, obj)
            if isinstance(d, str) and d:
                self._delta(out, BlockDelta(index=idx, text=d))
            return out
        if t == "response.reasoning_summary_text.delta" or t == "response.reasoning_text.delta":
            self._start(out)
            d = obj.get("delta")
            it = self._thinking_item(out, obj)
            if isinstance(d, str) and d and it.block is not None:
                it.text_seen = True
                self._delta(out, BlockDelta(index=it.block, thinking=d))
            return out
        if t == "response.function_call_arguments.delta":
            self._start(out)
            it = self._item(obj)
            d = obj.get("delta")
            if it is not None and it.kind == "tool_call" and isinstance(d, str) and d:
                it.args_seen = True
                self._delta(out, BlockDelta(index=it.block or 0, arguments=d))
            return out

        if t in ("response.created", "response.in_progress", "response.queued"):
            self._start(out, obj.get("response"))
        elif t == "response.output_item.added":
            self._start(out)
            self._item_added(out, obj)
        elif t == "response.content_part.added":
            self._start(out)
            part = obj.get("part")
            if isinstance(part, dict) and part.get("type") in ("output_text", "refusal"):
                idx = self._message_block(out, obj)
                txt = part.get("text") or part.get("refusal")
                if isinstance(txt, str) and txt:
                    self._delta(out, BlockDelta(index=idx, text=txt))
        elif t in ("response.output_text.done", "response.refusal.done"):
            it = self._item(obj)
            ci = obj.get("content_index")
            idx = it.parts.get(ci if isinstance(ci, int) else 0) if it is not None else None
            txt = obj.get("text") if t == "response.output_text.done" else obj.get("refusal")
            if idx is not None and not self._open.get(idx, True) and isinstance(txt, str) and txt:
                self._delta(out, BlockDelta(index=idx, text=txt))
        elif t == "response.content_part.done":
            it = self._item(obj)
            ci = obj.get("content_index")
            if it is not None and it.kind == "message":
                idx = it.parts.get(ci if isinstance(ci, int) else 0)
                part = obj.get("part")
                if idx is not None and not self._open.get(idx, True) and isinstance(part, dict):
                    txt = part.get("text") or part.get("refusal")
                    if isinstance(txt, str) and txt:
                        self._delta(out, BlockDelta(index=idx, text=txt))
                self._stop(out, idx)
        elif t == "response.reasoning_summary_part.added":
            self._start(out)
            it = self._thinking_item(out, obj)
            if it.summaries > 0 and it.text_seen and it.block is not None:
                self._delta(out, BlockDelta(index=it.block, thinking="\n\n"))
            it.summaries += 1
        elif t in ("response.reasoning_summary_text.done", "response.reasoning_text.done"):
            it = self._item(obj)
            txt = obj.get("text")
            if it is not None and it.kind == "thinking" and not it.text_seen and isinstance(txt, str) and txt:
                it.text_seen = True
                self._delta(out, BlockDelta(index=it.block or 0, thinking=txt))
        elif t == "response.function_call_arguments.done":
            it = self._item(obj)
            args = obj.get("arguments")
            if it is not None and it.kind == "tool_call" and not it.args_seen and isinstance(args, str) and args:
                it.args_seen = True
                self._delta(out, BlockDelta(index=it.block or 0, arguments=args))
        elif t == "response.output_item.done":
            self._start(out)
            self._item_done(out, obj)
        elif t in ("response.completed", "response.incomplete", "response.done"):
            self._start(out, obj.get("response"))
            self._finish(out, obj.get("response"))
        elif t in ("response.failed", "error", "response.error"):
            return out + self._error_from(obj)
        return out

    def close(self) -> list[Event]:
        if self._done:
            return []
        out: list[Event] = []
        self._start(out)
        return out + self._fail(502, "upstream stream closed before a terminal event", None)

    # ------------------------------------------------------------ items

    def _item_added(self, out: list[Event], obj: dict[str, Any]) -> None:
        item = obj.get("item")
        if not isinstance(item, dict):
            return
        key = obj.get("output_index")
        if key is None:
            key = item.get("id")
        typ = item.get("type")
        if typ == "message":
            self._items[key] = _Item("message")
        elif typ == "reasoning":
            it = self._items[key] = _Item("thinking", self._open_block(out, "thinking"))
            txt = _summary_text(item)
            if txt and it.block is not None:
                it.text_seen = True
                self._delta(out, BlockDelta(index=it.block, thinking=txt))
        elif typ == "function_call":
            self._saw_tool = True
            call_id = item.get("call_id") or item.get("id") or new_id("call_")
            name = item.get("name") or ""
            it = self._items[key] = _Item("tool_call", self._open_block(out, "tool_call", call_id, name))
            args = item.get("arguments")
            if isinstance(args, str) and args and it.block is not None:
                it.args_seen = True
                self._delta(out, BlockDelta(index=it.block, arguments=args))
        else:
            self._items[key] = _Item("other")

    def _item_done(self, out: list[Event], obj: dict[str, Any]) -> None:
        item = obj.get("item")
        if not isinstance(item, dict):
            return
        it = self._item(obj)
        if it is None:
            it = self._items.get(item.get("id"))
        typ = item.get("type")
        if it is None:
            # no output_item.added was seen: open it now so its content is not lost
            if typ not in ("message", "reasoning", "function_call"):
                return
            self._item_added(out, {"output_index": obj.get("output_index"), "item": item})
            it = self._item(obj) or self._items.get(item.get("id"))
            if it is None:
                return
        if it.kind == "message":
            if not it.parts and isinstance(item.get("content"), list):
                for ci, part in enumerate(item["content"]):
                    txt = (part.get("text") or part.get("refusal")) if isinstance(part, dict) else None
                    if isinstance(txt, str) and txt:
                        idx = it.parts[ci] = self._open_block(out, "text")
                        self._delta(out, BlockDelta(index=idx, text=txt))
            for idx in list(it.parts.values()):
                self._stop(out, idx)
        elif it.kind == "thinking":
            if not it.text_seen:
                txt = _summary_text(item)
                if txt:
                    it.text_seen = True
                    self._delta(out, BlockDelta(index=it.block or 0, thinking=txt))
            enc = item.get("encrypted_content")
            if isinstance(enc, str) and enc:
                self._delta(out, BlockDelta(index=it.block or 0, redacted=enc))
            self._stop(out, it.block)
        elif it.kind == "tool_call":
            args = item.get("arguments")
            if not it.args_seen and isinstance(args, str) and args:
                it.args_seen = True
                self._delta(out, BlockDelta(index=it.block or 0, arguments=args))
            self._stop(out, it.block)

    def _finish(self, out: list[Event], resp: Any) -> None:
        resp = resp if isinstance(resp, dict) else {}
        if self._next == 0 and isinstance(resp.get("output"), list):
            # an upstream that only reports the final output: replay it as blocks
            for oi, item in enumerate(resp["output"]):
                self._item_done(out, {"output_index": ("final", oi), "item": item})
        for idx in list(self._open):
            self._stop(out, idx)
        usage = usage_from_responses(resp["usage"]) if isinstance(resp.get("usage"), dict) else self._usage
        reason = finish_from_status(resp.get("status", "completed"), resp.get("incomplete_details"), self._saw_tool)
        if reason == "error":
            reason = "stop"
        out.append(Finish(reason=reason, usage=usage))
        self._done = True

    def _error_from(self, obj: dict[str, Any]) -> list[Event]:
        err = obj.get("error")
        resp = obj.get("response")
        if not isinstance(err, dict) and isinstance(resp, dict) and isinstance(resp.get("error"), dict):
            err = resp["error"]
        src = err if isinstance(err, dict) else obj
        code = src.get("code") or src.get("type")
        message = src.get("message")
        if not isinstance(message, str) or not message:
            message = "upstream error"
        return self._fail(error_status(code, src if src is not obj else obj), message, code)

    def _fail(self, status: int, message: str, code: Any) -> list[Event]:
        self._done = True
        return [Error(status=status, message=message, code=code if isinstance(code, str) else None)]


# ---------------------------------------------------------------- encoder


class _Out:
    __slots__ = ("call_id", "item_id", "kind", "name", "oi", "origin", "part_open", "texts")

    def __init__(self, kind: str, oi: int, item_id: str) -> None:
        self.kind = kind
        self.oi = oi
        self.item_id = item_id
        self.texts: list[str] = []
        self.part_open = False  # reasoning: a summary part was announced
        self.call_id = ""
        self.name = ""
        # a tool the client declared as custom / namespaced / local_shell (responses_tools)
        self.origin: dict[str, Any] | None = None


class StreamEncoder:
    """Neutral events -> Responses SSE bytes for the client.

    Options: ``codex_client`` (terminal failures as ``response.failed`` instead of ``error``, as the
    Codex CLI expects), ``response_id`` (use this id instead of deriving one from Start), ``tools``
    (the request's tool origins, responses_tools.ORIGINS: calls of custom and local_shell tools are
    held until complete and sent as their own item types; namespaced calls get their names back)."""

    __slots__ = (
        "_blocks",
        "_created",
        "_done",
        "_output",
        "_rid",
        "_seq",
        "_started",
        "_tools",
        "_usage",
        "codex_client",
        "model",
    )

    def __init__(self, model: str, *, codex_client: bool = False, response_id: str | None = None,
                 tools: dict[str, dict[str, Any]] | None = None) -> None:
        self.model = model
        self._tools = tools
        self.codex_client = codex_client
        self._rid = response_id
        self._created = int(time.time())
        self._seq = 0
        self._started = False
        self._done = False
        self._blocks: dict[int, _Out] = {}
        self._output: list[dict[str, Any] | None] = []  # by output_index, filled on item done
        self._usage: Usage | None = None

    def _ev(self, typ: str, payload: dict[str, Any]) -> bytes:
        """One event: ``type`` first, ``sequence_number`` strictly increasing from 0."""
        payload = {"type": typ, **payload, "sequence_number": self._seq}
        self._seq += 1
        return b"event: " + typ.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _response(self, status: str, output: list[dict[str, Any]], usage: Usage | None, **kw: Any) -> dict[str, Any]:
        return base_response(
            self._rid or new_id("resp_"),
            self.model,
            self._created,
            status,
            output,
            usage_to_responses(usage) if usage is not None else None,
            **kw,
        )

    def _start(self, ev: Start | None) -> bytes:
        self._started = True
        if self._rid is None:
            sid = ev.id if ev is not None else ""
            self._rid = sid if sid.startswith("resp_") else new_id("resp_")
        if ev is not None and ev.created:
            self._created = int(ev.created)
        if ev is not None and ev.usage is not None:
            self._usage = ev.usage
        r = self._response("in_progress", [], None)
        return self._ev("response.created", {"response": r}) + self._ev("response.in_progress", {"response": r})

    def encode(self, ev: Event) -> bytes:
        if self._done:
            return b""
        t = ev.type
        if t == "block_delta":
            return self._delta(ev)  # type: ignore[arg-type]
        pre = b""
        if not self._started:
            pre = self._start(ev if isinstance(ev, Start) else None)
            if isinstance(ev, Start):
                return pre
        if isinstance(ev, BlockStart):
            return pre + self._block_start(ev)
        if isinstance(ev, BlockStop):
            return pre + self._block_stop(ev.index)
        if isinstance(ev, UsageUpdate):
            self._usage = ev.usage
            return pre
        if isinstance(ev, Finish):
            return pre + self._finish(ev)
        if isinstance(ev, Error):
            return pre + self.error(ev.status, ev.message, ev.code or ev.error_type)
        return pre

    # ------------------------------------------------------------ blocks

    def _block_start(self, ev: BlockStart) -> bytes:
        oi = len(self._output)
        self._output.append(None)
        if ev.block == "text":
            b = self._blocks[ev.index] = _Out("text", oi, new_id("msg_"))
            item = message_item(b.item_id, [], "in_progress")
            return self._ev("response.output_item.added", {"output_index": oi, "item": item}) + self._ev(
                "response.content_part.added",
                {
                    "item_id": b.item_id,
                    "output_index": oi,
                    "content_index": 0,
                    "part": output_text_part(""),
                },
            )
        if ev.block == "thinking":
            b = self._blocks[ev.index] = _Out("thinking", oi, new_id("rs_"))
            return self._ev(
                "response.output_item.added",
                {"output_index": oi, "item": reasoning_item(b.item_id, [])},
            )
        b = self._blocks[ev.index] = _Out("tool_call", oi, new_id("fc_"))
        b.call_id = ev.tool_call_id or new_id("call_")
        b.name = ev.tool_name or ""
        if self._tools is not None and (origin := self._tools.get(b.name)) is not None:
            b.origin = origin
            if origin.get("kind") != "function":
                b.kind = "held_call"  # announced when complete: its input is inside JSON arguments
                b.item_id = new_id("ctc_" if origin.get("kind") == "custom" else "lsh_")
                return b""
            item = call_item(origin, b.item_id, b.call_id, b.name, "", "in_progress")
        else:
            item = function_call_item(b.item_id, b.call_id, b.name, "", "in_progress")
        return self._ev("response.output_item.added", {"output_index": oi, "item": item})

    def _delta(self, ev: BlockDelta) -> bytes:
        if not self._started:
            return b""  # a delta before Start/BlockStart breaks the contract; nothing to attach it to
        b = self._blocks.get(ev.index)
        if b is None:
            return b""
        if b.kind == "text":
            if not ev.text:
                return b""
            b.texts.append(ev.text)
            return self._ev(
                "response.output_text.delta",
                {
                    "item_id": b.item_id,
                    "output_index": b.oi,
                    "content_index": 0,
                    "delta": ev.text,
                    "logprobs": [],
                },
            )
        if b.kind == "held_call":
            if ev.arguments:
                b.texts.append(ev.arguments)
            return b""
        if b.kind == "tool_call":
            if not ev.arguments:
                return b""
            b.texts.append(ev.arguments)
            return self._ev(
                "response.function_call_arguments.delta",
                {
                    "item_id": b.item_id,
                    "output_index": b.oi,
                    "delta": ev.arguments,
                },
            )
        if not ev.thinking:
            return b""  # signatures / redacted data of a foreign family are not replayed
        pre = b""
        if not b.part_open:
            b.part_open = True
            pre = self._ev(
                "response.reasoning_summary_part.added",
                {
                    "item_id": b.item_id,
                    "output_index": b.oi,
                    "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""},
                },
            )
        b.texts.append(ev.thinking)
        return pre + self._ev(
            "response.reasoning_summary_text.delta",
            {
                "item_id": b.item_id,
                "output_index": b.oi,
                "summary_index": 0,
                "delta": ev.thinking,
            },
        )

    def _block_stop(self, index: int) -> bytes:
        b = self._blocks.pop(index, None)
        if b is None:
            return b""
        text = "".join(b.texts)
        common = {"item_id": b.item_id, "output_index": b.oi}
        if b.kind == "text":
            item = message_item(b.item_id, [text])
            self._output[b.oi] = item
            return (
                self._ev(
                    "response.output_text.done",
                    {**common, "content_index": 0, "text": text, "logprobs": []},
                )
                + self._ev(
                    "response.content_part.done",
                    {
                        **common,
                        "content_index": 0,
                        "part": output_text_part(text),
                    },
                )
                + self._ev("response.output_item.done", {"output_index": b.oi, "item": item})
            )
        if b.kind == "held_call":
            return self._held_call_done(b, text)
        if b.kind == "tool_call":
            args = text or "{}"
            if b.origin is not None:
                item = call_item(b.origin, b.item_id, b.call_id, b.name, args)
            else:
                item = function_call_item(b.item_id, b.call_id, b.name, args)
            self._output[b.oi] = item
            return self._ev(
                "response.function_call_arguments.done",
                {**common, "name": b.name, "arguments": args},
            ) + self._ev("response.output_item.done", {"output_index": b.oi, "item": item})
        out = b""
        if b.part_open:
            part = {"type": "summary_text", "text": text}
            out = self._ev(
                "response.reasoning_summary_text.done",
                {**common, "summary_index": 0, "text": text},
            ) + self._ev(
                "response.reasoning_summary_part.done",
                {**common, "summary_index": 0, "part": part},
            )
        item = reasoning_item(b.item_id, [text] if text else [])
        self._output[b.oi] = item
        return out + self._ev("response.output_item.done", {"output_index": b.oi, "item": item})

    def _held_call_done(self, b: _Out, args: str) -> bytes:
        """A custom_tool_call (input delta + done) or local_shell_call item, whole."""
        item = call_item(b.origin, b.item_id, b.call_id, b.name, args)
        self._output[b.oi] = item
        added = {**item, "status": "in_progress"}
        if item["type"] == "custom_tool_call":
            added["input"] = ""
        common = {"item_id": b.item_id, "output_index": b.oi}
        out = self._ev("response.output_item.added", {"output_index": b.oi, "item": added})
        if item["type"] == "custom_tool_call":
            out += self._ev("response.custom_tool_call_input.delta", {**common, "delta": item["input"]})
            out += self._ev("response.custom_tool_call_input.done", {**common, "input": item["input"]})
        return out + self._ev("response.output_item.done", {"output_index": b.oi, "item": item})

    def _finish(self, ev: Finish) -> bytes:
        out = b"".join([self._block_stop(i) for i in list(self._blocks)])
        usage = ev.usage or self._usage or Usage()
        status, details = _status_for(ev.reason)
        output = [item for item in self._output if item is not None]
        r = self._response(status, output, usage, incomplete_details=details)
        typ = "response.completed" if status == "completed" else "response.incomplete"
        self._done = True
        return out + self._ev(typ, {"type": typ, "response": r})

    # ------------------------------------------------------------ terminal

    def error(self, status: int, message: str, error_type: str | None = None) -> bytes:
        if self._done:
            return b""
        self._done = True
        message = sanitize_error_text(message)
        code = error_type or default_code(status)
        if self.codex_client:
            r = failed_response(
                None,
                response_id=self._rid,
                created_at=self._created,
                model=self.model,
                code=code,
                message=message,
            )
            return self._ev("response.failed", {"response": r})
        return self._ev("error", {"code": code, "message": message, "param": None})

    def close(self) -> bytes:
        return b""
