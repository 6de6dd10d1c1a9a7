from __future__ import annotations

from pathlib import Path

import orjson

from crossroute.formats.pipes import ChatPassthrough, ClaudePassthrough, GeminiPassthrough
from crossroute.formats.sse import SSEParser

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def run(pipe: object, data: bytes, size: int = 7) -> bytes:
    out = b"".join(pipe.feed(data[i:i + size]) for i in range(0, len(data), size))  # type: ignore[attr-defined]
    return out + pipe.finish()  # type: ignore[attr-defined]


def datas(raw: bytes) -> list[bytes]:
    return [e.data for e in SSEParser().feed(raw)]


def test_chat_passthrough_drops_the_usage_chunk_it_asked_for() -> None:
    data = (FIXTURES / "openai_chat/stream_text_usage.sse").read_bytes()
    pipe = ChatPassthrough(client_wants_usage=False)
    out = datas(run(pipe, data))
    assert out[-1] == b"[DONE]"
    assert all(orjson.loads(d)["choices"] for d in out[:-1])
    assert pipe.usage is not None and pipe.usage.input_tokens > 0 and pipe.usage.output_tokens > 0


def test_chat_passthrough_keeps_usage_when_asked_and_events_unchanged() -> None:
    data = (FIXTURES / "openai_chat/stream_text_usage_2025.sse").read_bytes()
    out = datas(run(ChatPassthrough(client_wants_usage=True), data))
    assert out == datas(data)  # the same event bytes, re-framed


def test_chat_passthrough_usage_has_cached_and_reasoning() -> None:
    body = (b'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,'
            b'"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":3}}}\n\n'
            b"data: [DONE]\n\n")
    pipe = ChatPassthrough(client_wants_usage=True)
    run(pipe, body)
    u = pipe.usage
    assert u is not None and (u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) == (10, 5, 4, 3)


def test_chat_midstream_error_ends_with_done() -> None:
    data = (FIXTURES / "openai_chat/stream_error_midstream.SYNTHETIC.sse").read_bytes()
    out = datas(run(ChatPassthrough(False), data))
    assert b'"error"' in out[-2] and out[-1] == b"[DONE]"


def test_chat_early_eof_becomes_error_event() -> None:
    data = (FIXTURES / "openai_chat/stream_text_usage.sse").read_bytes()[:500]
    out = datas(run(ChatPassthrough(False), data))
    assert b"closed before completion" in out[-2] and out[-1] == b"[DONE]"


def test_claude_passthrough_usage_and_missing_final_newline() -> None:
    data = (FIXTURES / "anthropic/stream_text_basic.sse").read_bytes()
    pipe = ClaudePassthrough()
    raw = run(pipe, data)
    events = SSEParser().feed(raw)
    assert events[-1].event == "message_stop"
    assert all(e.event for e in events)
    assert pipe.usage is not None and pipe.usage.output_tokens > 0


def test_gemini_passthrough_json_array() -> None:
    data = (FIXTURES / "gemini/stream_text.sse").read_bytes()
    pipe = GeminiPassthrough(sse=False)
    chunks = orjson.loads(run(pipe, data))
    assert len(chunks) == 3 and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert pipe.usage is not None and pipe.usage.input_tokens > 0
