"""Gemini ``streamGenerateContent`` streams, both directions, plus the usage and finish-reason
mappings shared with ``gemini.py``.

Upstream (decoder): every ``data:`` chunk is a whole GenerateContentResponse. Text parts form one
text block while text continues, ``thought: true`` parts a thinking block, and each
``functionCall`` part becomes one complete tool_call block (its whole ``args`` as one arguments
delta). A ``thoughtSignature`` on a thought part or a functionCall becomes a ``signature`` delta
on that block (ToolCall.signature); one on a plain text part is not carried in streams.
``usageMetadata`` repeats on every chunk (the latest wins, reported as UsageUpdate when it
changes). The Finish is held back until the next chunk or EOF so that a trailing usage-only chunk
is counted.

Client (encoder): ``data: <json>\\r\\n\\r\\n`` chunks only (google-genai accepts nothing else), or
with ``sse=False`` the JSON-array form (``[`` ... ``,`` ... ``]``) that streamGenerateContent uses
without ``alt=sse``.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from .errors import gemini_error
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

__all__ = [
    "StreamDecoder",
    "StreamEncoder",
    "finish_from_gemini",
    "finish_to_gemini",
    "gget",
    "new_call_id",
    "usage_from_gemini",
    "usage_to_gemini",
]

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
_ERRORED = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})
_TO_GEMINI: dict[str, str] = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "stop_sequence": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "error": "OTHER",
}


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


_SNAKE_CACHE: dict[str, str] = {}


def gget(d: dict[str, Any], camel: str) -> Any:
    """``d[camel]``, or its snake_case spelling (the REST API accepts both)."""
    v = d.get(camel)
    if v is not None:
        return v
    snake = _SNAKE_CACHE.get(camel)
    if snake is None:
        snake = _SNAKE_CACHE[camel] = _snake(camel)
    return d.get(snake)


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def usage_from_gemini(meta: dict[str, Any] | None) -> Usage:
    """Neutral usage from ``usageMetadata``. promptTokenCount already includes the cached
    tokens; output counts candidates plus thoughts."""
    if not isinstance(meta, dict):
        return Usage()
    prompt = int(gget(meta, "promptTokenCount") or 0) + int(gget(meta, "toolUsePromptTokenCount") or 0)
    candidates = int(gget(meta, "candidatesTokenCount") or 0)
    thoughts = int(gget(meta, "thoughtsTokenCount") or 0)
    return Usage(
        input_tokens=prompt,
        output_tokens=candidates + thoughts,
        cached_tokens=int(gget(meta, "cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


def usage_to_gemini(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": max(u.output_tokens - u.reasoning_tokens, 0),
        "totalTokenCount": u.input_tokens + u.output_tokens,
    }
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    if u.cached_tokens:
        out["cachedContentTokenCount"] = u.cached_tokens
    return out


def finish_from_gemini(reason: str | None, saw_tool_call: bool) -> FinishReason:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    if reason in _ERRORED:
        return "error"
    return "tool_calls" if saw_tool_call else "stop"


def finish_to_gemini(reason: str) -> str:
    return _TO_GEMINI.get(reason, "STOP")


# ---------------------------------------------------------------- decoder


class StreamDecoder:
    """Gemini upstream chunks -> neutral events (see the module docstring)."""

    __slots__ = (
        "_block",
        "_block_kind",
        "_done",
        "_finish",
        "_next",
        "_saw_tool",
        "_started",
        "_usage",
        "model",
    )

    def __init__(self, model: str) -> None:
        self.model = model
        self._started = False
        self._done = False
        self._next = 0
        self._block = -1  # index of the open text/thinking block, -1 when none
        self._block_kind = ""
        self._usage: Usage | None = None
        self._finish: str | None = None  # upstream finishReason waiting for EOF / next chunk
        self._saw_tool = False

    def feed(self, ev: SSEEvent) -> list[Event]:
        if self._done:
            return []
        data = ev.data.strip()
        if not data or data == b"[DONE]":
            return []
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._fail(502, f"invalid JSON in upstream stream: {data[:200]!r}", None)
        out: list[Event] = []
        for chunk in obj if isinstance(obj, list) else (obj,):
            if isinstance(chunk, dict):
                self._chunk(chunk, out)
            if self._done:
                break
        return out

    def close(self) -> list[Event]:
        if self._done:
            return []
        if not self._started:
            return self._fail(502, "upstream stream ended without any response chunk", None)
        out: list[Event] = []
        self._stop_block(out)
        self._emit_finish(out)
        return out

    # -- internals

    def _fail(self, status: int, message: str, google_status: str | None) -> list[Event]:
        self._done = True
        return [Error(status=status, message=message, error_type=google_status, code=google_status)]

    def _chunk(self, chunk: dict[str, Any], out: list[Event]) -> None:
        err = chunk.get("error")
        if isinstance(err, dict):
            code = err.get("code")
            status = code if isinstance(code, int) and 400 <= code <= 599 else 502
            gstat = err.get("status") if isinstance(err.get("status"), str) else None
            self._stop_block(out)
            out.extend(self._fail(status, str(err.get("message") or "upstream error"), gstat))
            return
        meta = gget(chunk, "usageMetadata")
        u = usage_from_gemini(meta) if isinstance(meta, dict) else None
        if not self._started:
            # the first chunk's usage (the prompt count) rides on Start, as Claude reports it
            self._started = True
            self._usage = u
            rid = gget(chunk, "responseId")
            out.append(Start(id=rid if isinstance(rid, str) and rid else new_call_id()[5:], model=self.model, usage=u))
        elif u is not None and u != self._usage:
            self._usage = u
            out.append(UsageUpdate(usage=u))
        cands = chunk.get("candidates")
        cand = cands[0] if isinstance(cands, list) and cands and isinstance(cands[0], dict) else None
        if cand is not None:
            content = cand.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            if isinstance(parts, list):
                for part in parts:
                    if isinstance(part, dict):
                        self._part(part, out)
            reason = gget(cand, "finishReason")
            if isinstance(reason, str) and reason:
                self._stop_block(out)
                if self._finish is None:
                    self._finish = reason
                    return  # the Finish waits for the next chunk or EOF
        else:
            fb = gget(chunk, "promptFeedback")
            if isinstance(fb, dict) and gget(fb, "blockReason") and self._finish is None:
                self._finish = "SAFETY"
                return
        if self._finish is not None:
            self._stop_block(out)
            self._emit_finish(out)

    def _part(self, part: dict[str, Any], out: list[Event]) -> None:
        sig = gget(part, "thoughtSignature")
        fc = gget(part, "functionCall")
        if isinstance(fc, dict):
            self._stop_block(out)
            self._saw_tool = True
            idx = self._next
            self._next += 1
            cid = fc.get("id")
            args = fc.get("args")
            out.append(
                BlockStart(
                    index=idx,
                    block="tool_call",
                    tool_call_id=cid if isinstance(cid, str) and cid else new_call_id(),
                    tool_name=str(fc.get("name") or ""),
                )
            )
            out.append(BlockDelta(index=idx, arguments=orjson.dumps(args if isinstance(args, dict) else {}).decode()))
            if isinstance(sig, str) and sig:
                out.append(BlockDelta(index=idx, signature=sig))
            out.append(BlockStop(index=idx))
            return
        text = part.get("text")
        thought = part.get("thought") is True
        if not isinstance(text, str):
            code = gget(part, "executableCode")
            result = gget(part, "codeExecutionResult")
            if isinstance(code, dict):
                text = f"\n```{str(code.get('language') or '').lower()}\n{code.get('code') or ''}\n```\n"
            elif isinstance(result, dict):
                text = f"\n```\n{result.get('output') or ''}\n```\n"
            else:
                text = ""  # inlineData output and other parts have no stream block
        # A signature on a non-thought part has no neutral stream field (no other family can
        # carry it, and Gemini-to-Gemini traffic is passed through): only thinking keeps it.
        if not thought:
            sig = None
        if not text and not (isinstance(sig, str) and sig):
            return
        kind = "thinking" if thought else "text"
        if self._block < 0 or self._block_kind != kind:
            self._stop_block(out)
            self._block = self._next
            self._block_kind = kind
            self._next += 1
            out.append(BlockStart(index=self._block, block=kind))  # type: ignore[arg-type]
        if text:
            if thought:
                out.append(BlockDelta(index=self._block, thinking=text))
            else:
                out.append(BlockDelta(index=self._block, text=text))
        if isinstance(sig, str) and sig:
            out.append(BlockDelta(index=self._block, signature=sig))

    def _stop_block(self, out: list[Event]) -> None:
        if self._block >= 0:
            out.append(BlockStop(index=self._block))
            self._block = -1
            self._block_kind = ""

    def _emit_finish(self, out: list[Event]) -> None:
        self._done = True
        out.append(Finish(reason=finish_from_gemini(self._finish, self._saw_tool), usage=self._usage or Usage()))


# ---------------------------------------------------------------- encoder


class StreamEncoder:
    """Neutral events -> Gemini stream bytes for the client.

    Options: ``sse`` (default True): ``data: <json>\\r\\n\\r\\n`` frames; ``sse=False``: the
    JSON-array stream (``[`` before the first chunk, ``,`` between chunks, ``]`` at close).
    Signatures from other families are not sent (the client could not use them, and
    google-genai decodes thoughtSignature as base64 bytes)."""

    __slots__ = ("_closed", "_first", "_id", "_kinds", "_model", "_sse", "_tools", "_usage")

    def __init__(self, model: str, *, sse: bool = True) -> None:
        self._model = model
        self._sse = sse
        self._id = ""
        self._first = True
        self._closed = False
        self._kinds: dict[int, str] = {}
        self._tools: dict[int, list[Any]] = {}  # index -> [id, name, [arg fragments]]
        self._usage: Usage | None = None

    def encode(self, ev: Event) -> bytes:
        if self._closed:
            return b""
        t = ev.type
        if t == "block_delta":
            kind = self._kinds.get(ev.index)  # type: ignore[union-attr]
            if kind == "text":
                return self._part({"text": ev.text}) if ev.text else b""  # type: ignore[union-attr]
            if kind == "thinking":
                th = ev.thinking  # type: ignore[union-attr]
                return self._part({"text": th, "thought": True}) if th else b""
            if kind == "tool_call" and ev.arguments:  # type: ignore[union-attr]
                self._tools[ev.index][2].append(ev.arguments)  # type: ignore[union-attr]
            return b""
        if t == "block_start":
            self._kinds[ev.index] = ev.block  # type: ignore[union-attr]
            if ev.block == "tool_call":  # type: ignore[union-attr]
                self._tools[ev.index] = [ev.tool_call_id, ev.tool_name, []]  # type: ignore[union-attr]
            return b""
        if t == "block_stop":
            kind = self._kinds.pop(ev.index, None)  # type: ignore[union-attr]
            tool = self._tools.pop(ev.index, None)  # type: ignore[union-attr]
            if kind == "tool_call" and tool is not None:
                return self._part(self._function_call(tool))
            return b""
        if t == "usage":
            self._usage = ev.usage  # type: ignore[union-attr]
            return b""
        if t == "start":
            self._id = ev.id  # type: ignore[union-attr]
            if ev.usage is not None:  # type: ignore[union-attr]
                self._usage = ev.usage  # type: ignore[union-attr]
            return b""
        if t == "finish":
            return self._finish(ev)  # type: ignore[arg-type]
        if t == "error":
            return self.error(ev.status, ev.message, ev.error_type)  # type: ignore[union-attr]
        return b""

    def error(self, status: int, message: str, error_type: str | None = None) -> bytes:
        if self._closed:
            return b""
        gstat = error_type if error_type and error_type.isupper() else None
        body = orjson.dumps(gemini_error(status, message, google_status=gstat))
        self._closed = True
        if self._sse:
            return b"data: " + body + b"\r\n\r\n"
        return (b"[" if self._first else b",\r\n") + body + b"]"

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        if self._sse:
            return b""
        return b"[]" if self._first else b"]"

    # -- internals

    @staticmethod
    def _function_call(tool: list[Any]) -> dict[str, Any]:
        raw = "".join(tool[2])
        try:
            args = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            args = {}
        if not isinstance(args, dict):
            args = {}
        fc: dict[str, Any] = {"name": tool[1] or "", "args": args}
        if tool[0]:
            fc["id"] = tool[0]
        return {"functionCall": fc}

    def _frame(self, obj: dict[str, Any]) -> bytes:
        body = orjson.dumps(obj)
        if self._sse:
            return b"data: " + body + b"\r\n\r\n"
        if self._first:
            self._first = False
            return b"[" + body
        return b",\r\n" + body

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish is not None:
            cand["finishReason"] = finish
        obj: dict[str, Any] = {"candidates": [cand]}
        if self._usage is not None:
            obj["usageMetadata"] = usage_to_gemini(self._usage)
        obj["modelVersion"] = self._model
        if self._id:
            obj["responseId"] = self._id
        return obj

    def _part(self, part: dict[str, Any]) -> bytes:
        return self._frame(self._chunk([part]))

    def _finish(self, ev: Finish) -> bytes:
        out = b""
        for idx in list(self._tools):  # tool blocks never stopped: flush them first
            self._kinds.pop(idx, None)
            out += self._part(self._function_call(self._tools.pop(idx)))
        if ev.usage is not None:
            self._usage = ev.usage
        if self._usage is None:
            self._usage = Usage()
        return out + self._frame(self._chunk([{"text": ""}], finish_to_gemini(ev.reason)))
