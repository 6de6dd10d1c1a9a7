"""The built-in mock upstream: deterministic chat answers, through the translators to every format."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from crossroute.config import parse
from crossroute.formats.translate import Prepared
from crossroute.providers import executor_for
from crossroute.providers.base import Outbound, UpstreamError
from crossroute.providers.mock import MockExecutor, answer_text, completion, stream_chunks, usage

Q = "What is the capital of Mexico, and how big is it today?"
CHAT = {"model": "local", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": Q}]}

CLIENT_BODIES: dict[str, dict[str, Any]] = {
    "openai": CHAT,
    "responses": {"model": "local", "instructions": "Be brief.", "input": Q},
    "claude": {"model": "local", "max_tokens": 100, "system": "Be brief.",
               "messages": [{"role": "user", "content": Q}]},
    "gemini": {"systemInstruction": {"parts": [{"text": "Be brief."}]},
               "contents": [{"role": "user", "parts": [{"text": Q}]}]},
}


def test_text_is_derived_from_the_last_user_message() -> None:
    assert answer_text(CHAT) == "mock answer to: What is the capital of Mexico, and how ..."
    assert answer_text({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]},
                                     {"role": "assistant", "content": "x"}]}) == "mock answer to: hi there"
    assert answer_text({"messages": []}) == "mock answer to: (no user message)"
    assert answer_text({"messages": "nonsense"}) == "mock answer to: (no user message)"


def test_usage_is_counted_from_text_lengths() -> None:
    text = answer_text(CHAT)
    u = usage(CHAT, text)
    assert u == {"prompt_tokens": -(-len("Be brief." + Q) // 4), "completion_tokens": -(-len(text) // 4),
                 "total_tokens": u["prompt_tokens"] + u["completion_tokens"]}
    assert completion(CHAT, "m")["usage"] == u  # same request, same numbers


def test_stream_chunks_spell_the_same_text() -> None:
    chunks = stream_chunks({**CHAT, "stream_options": {"include_usage": True}}, "m")
    assert chunks[-1] == b"data: [DONE]\n\n"
    events = [orjson.loads(c[6:]) for c in chunks[:-1]]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == answer_text(CHAT)
    assert events[-1]["usage"] == usage(CHAT, text) and events[-2]["choices"][0]["finish_reason"] == "stop"
    assert not any("usage" in orjson.loads(c[6:]) for c in stream_chunks(CHAT, "m")[:-1])


def _run(client_format: str, stream: bool) -> bytes:
    entry = parse("mock: [{name: m, models: [{name: mock-model, alias: local}]}]\n").providers[0]
    ex = executor_for("mock")
    assert isinstance(ex, MockExecutor)
    wire = ex.wire_format(entry, client_format)
    prepared = Prepared(client_format, CLIENT_BODIES[client_format], None, {"model": "local"})

    async def go() -> bytes:
        body = prepared.body_for(wire, "mock-model", stream)
        up = await ex.send(entry, Outbound("generate", wire, "mock-model", body, stream, {}), None)  # type: ignore[arg-type]
        assert up.status == 200
        if not stream:
            raw = await up.body(1 << 20)
            return prepared.response(wire, raw, "local", "generate")[0]
        pipe = prepared.pipe(wire, "local")
        out = b""
        while chunk := await up.read_chunk():
            out += pipe.feed(chunk)
        return out + pipe.finish()

    return asyncio.run(go())


@pytest.mark.parametrize("client_format", ["openai", "responses", "claude", "gemini"])
@pytest.mark.parametrize("stream", [False, True])
def test_every_client_format_gets_the_answer(client_format: str, stream: bool) -> None:
    out = _run(client_format, stream)
    if stream:
        # deltas carry one word each; the words all arrive
        for word in ("mock ", "answer ", "What ", "Mexico, "):
            assert word.encode() in out, out
    else:
        assert answer_text(CHAT).encode() in out, out


def test_a_body_that_is_not_json_is_a_request_error() -> None:
    entry = parse("mock: [{name: m, models: [x]}]\n").providers[0]
    with pytest.raises(UpstreamError) as exc:
        asyncio.run(MockExecutor().send(entry, Outbound("generate", "openai", "x", b"[1]", False, {}), None))  # type: ignore[arg-type]
    assert exc.value.status == 400 and exc.value.scope == "request"
