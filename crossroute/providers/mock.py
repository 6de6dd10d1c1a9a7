"""The built-in ``mock`` upstream: answers at once, with no network and no key.

It speaks OpenAI chat completions; the translators turn its answers into every client format, so a
Claude, Gemini or Responses client exercises the same cross-format path it would against a real
chat upstream. Everything is deterministic: the text is ``mock answer to: <the first words of the
last user message>`` and the usage is computed from text lengths (about four characters a token),
so tests and client integrations can assert on it without spending tokens.

The content functions (``answer_text``, ``usage``, ``completion``, ``stream_chunks``) are pure;
``MockExecutor`` wraps them in the executor seam.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import orjson

from ..config import ProviderEntry
from .base import REQUEST, Outbound, StaticKey, TokenSource, UpstreamError, UpstreamIO

__all__ = ["MockExecutor", "MockUpstream", "answer_text", "completion", "stream_chunks", "usage"]

PREFIX = "mock answer to: "
MAX_WORDS = 8  # words of the question repeated in the answer
_SILENT = "(no user message)"


def _text_of(content: Any) -> str:
    """The text of a chat message's ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content
                        if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def answer_text(body: dict[str, Any]) -> str:
    """``mock answer to: <first words of the last user message>`` (``...`` when cut)."""
    question = ""
    for message in reversed(_messages(body)):
        if message.get("role") == "user":
            question = _text_of(message.get("content"))
            break
    words = question.split()
    if not words:
        return PREFIX + _SILENT
    shown = " ".join(words[:MAX_WORDS])
    return PREFIX + shown + (" ..." if len(words) > MAX_WORDS else "")


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def usage(body: dict[str, Any], text: str) -> dict[str, int]:
    """Chat usage from text lengths: every message's text (and the tools' JSON) in, ``text`` out."""
    prompt = "".join(_text_of(m.get("content")) for m in _messages(body))
    tools = body.get("tools")
    if tools:
        prompt += orjson.dumps(tools).decode()
    p, c = _tokens(prompt), _tokens(text)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _id(text: str) -> str:
    return "chatcmpl-mock-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def completion(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A whole chat completion answering ``body``."""
    text = answer_text(body)
    return {
        "id": _id(text),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage(body, text),
    }


def stream_chunks(body: dict[str, Any], model: str) -> list[bytes]:
    """The SSE events of a streamed chat completion answering ``body``: the role, one delta per
    word, the finish reason, the usage (when ``stream_options.include_usage``), ``[DONE]``."""
    text = answer_text(body)
    base = {"id": _id(text), "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    words = text.split(" ")
    out = [event({"role": "assistant", "content": ""})]
    out.extend(event({"content": w if i == len(words) - 1 else w + " "}) for i, w in enumerate(words))
    out.append(event({}, "stop"))
    opts = body.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage"):
        out.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage(body, text)}) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


# ------------------------------------------------------------------ the executor
class MockUpstream:
    """A 2xx answer held in memory, read like an HTTP one."""

    __slots__ = ("_chunks", "_next", "headers", "status")
    io_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, chunks: list[bytes], content_type: str) -> None:
        self._chunks = chunks
        self._next = 0
        self.status = 200
        self.headers = {"Content-Type": content_type}

    async def read_chunk(self) -> bytes:
        if self._next >= len(self._chunks):
            return b""
        self._next += 1
        return self._chunks[self._next - 1]

    async def body(self, limit: int) -> bytes:
        data = b"".join(self._chunks[self._next:])
        self._next = len(self._chunks)
        return data

    def at_eof(self) -> bool:
        return self._next >= len(self._chunks)

    def close(self, reuse: bool) -> None:
        self._next = len(self._chunks)


class MockExecutor:
    """Kind ``mock``: every model it lists answers with ``completion`` / ``stream_chunks``."""

    kind = "mock"
    supports = frozenset({"generate"})
    models: tuple[str, ...] = ()  # the config entry lists its models
    default_base_url = ""

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "openai"

    def token_source(self, entry: ProviderEntry) -> TokenSource:
        return StaticKey("")

    async def send(self, entry: ProviderEntry, out: Outbound, io: UpstreamIO) -> MockUpstream:
        if out.operation != "generate":
            raise UpstreamError(400, f"upstream {entry.name} (mock) does not support {out.operation}", scope=REQUEST)
        try:
            body = orjson.loads(out.body)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise UpstreamError(400, f"upstream {entry.name} (mock) got a body that is not a JSON object",
                                scope=REQUEST)
        if out.stream:
            return MockUpstream(stream_chunks(body, out.model), "text/event-stream")
        return MockUpstream([orjson.dumps(completion(body, out.model))], "application/json")
