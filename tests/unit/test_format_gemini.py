"""Gemini wire format (crossroute.formats.gemini / gemini_stream): requests, responses, streams,
fixtures from tests/fixtures/gemini and the google-genai SDK's own stream parser."""

from __future__ import annotations

import asyncio
import base64
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from crossroute.formats import gemini
from crossroute.formats.gemini import (
    SKIP_SIGNATURE,
    StreamDecoder,
    StreamEncoder,
    request_from_neutral,
    request_to_neutral,
    response_from_neutral,
    response_to_neutral,
    usage_from_gemini,
)
from crossroute.formats.neutral import (
    Audio,
    BadRequest,
    BlockDelta,
    BlockStart,
    BlockStop,
    Error,
    Event,
    File,
    Finish,
    Image,
    Message,
    Reasoning,
    Request,
    Response,
    ResponseFormat,
    Start,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Unsupported,
    Usage,
    UsageUpdate,
)
from crossroute.formats.sse import SSEEvent, SSEParser

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "gemini"
SIG = base64.b64encode(b"gemini-signature-bytes").decode()


# ---------------------------------------------------------------- helpers


def decode_bytes(raw: bytes, seed: int = 0, model: str = "gemini-x") -> list[Event]:
    """Feed ``raw`` in random-sized chunks through SSEParser, then the decoder."""
    rng = random.Random(seed)
    parser = SSEParser()
    dec = StreamDecoder(model)
    events: list[Event] = []
    pos = 0
    while pos < len(raw):
        n = rng.randint(1, 64)
        for ev in parser.feed(raw[pos : pos + n]):
            events.extend(dec.feed(ev))
        pos += n
    tail = parser.flush()
    if tail is not None:
        events.extend(dec.feed(tail))
    events.extend(dec.close())
    return events


def decode_fixture(name: str, seed: int = 0) -> list[Event]:
    return decode_bytes((FIX / name).read_bytes(), seed)


def summarize(events: list[Event]) -> dict[str, Any]:
    """Text/thinking joined per block, tool args reassembled, the final Finish."""
    blocks: dict[int, dict[str, Any]] = {}
    order: list[int] = []
    for ev in events:
        if isinstance(ev, BlockStart):
            blocks[ev.index] = {
                "kind": ev.block,
                "text": "",
                "args": "",
                "sig": None,
                "id": ev.tool_call_id,
                "name": ev.tool_name,
                "stopped": False,
            }
            order.append(ev.index)
        elif isinstance(ev, BlockDelta):
            b = blocks[ev.index]
            assert not b["stopped"]
            b["text"] += ev.text or ev.thinking or ""
            b["args"] += ev.arguments or ""
            if ev.signature:
                b["sig"] = ev.signature
        elif isinstance(ev, BlockStop):
            blocks[ev.index]["stopped"] = True
    return {"blocks": [blocks[i] for i in order], "last": events[-1]}


def check_order(events: list[Event]) -> None:
    """Contract: Start first; blocks start/delta/stop with increasing indexes; one terminal last."""
    assert isinstance(events[0], Start)
    terminal = [i for i, ev in enumerate(events) if isinstance(ev, (Finish, Error))]
    assert terminal == [len(events) - 1]
    open_: set[int] = set()
    seen = -1
    for ev in events[1:-1]:
        if isinstance(ev, BlockStart):
            assert ev.index > seen
            seen = ev.index
            open_.add(ev.index)
        elif isinstance(ev, BlockDelta):
            assert ev.index in open_
        elif isinstance(ev, BlockStop):
            open_.remove(ev.index)
    assert not open_


def frames(raw: bytes) -> list[dict[str, Any]]:
    """Parse SSE-encoder output strictly the way google-genai does: data: lines only."""
    assert raw.endswith(b"\r\n\r\n")
    out = []
    for block in raw.split(b"\r\n\r\n")[:-1]:
        assert block.startswith(b"data: "), block
        assert b"\n" not in block
        out.append(orjson.loads(block[6:]))
    return out


# ---------------------------------------------------------------- stream fixtures


@pytest.mark.parametrize("seed", range(5))
def test_stream_text_fixture(seed: int) -> None:
    events = decode_fixture("stream_text.sse", seed)
    check_order(events)
    s = summarize(events)
    assert events[0] == Start(id="w1peaMz6INOvnvgPgYfPiQY", model="gemini-x", usage=Usage(input_tokens=15))
    assert [b["kind"] for b in s["blocks"]] == ["text"]
    assert s["blocks"][0]["text"] == "The capital of France is Paris.\n"
    assert s["last"] == Finish(reason="stop", usage=Usage(input_tokens=13, output_tokens=8))
    # usage is reported live as it changes
    updates = [ev.usage for ev in events if isinstance(ev, UsageUpdate)]
    assert updates == [Usage(input_tokens=13, output_tokens=8)]


@pytest.mark.parametrize("seed", range(3))
def test_stream_thought_parts_fixture(seed: int) -> None:
    events = decode_fixture("stream_thought_parts.sse", seed)
    check_order(events)
    s = summarize(events)
    kinds = [b["kind"] for b in s["blocks"]]
    assert kinds == ["thinking", "text"]
    thinking, text = s["blocks"]
    assert thinking["text"].startswith("**Clarifying User Goals**")
    assert "**Crafting Safe Instructions**" in thinking["text"]
    assert text["text"].startswith("This is a great question! Safely crossing")
    assert text["text"].endswith("Always assume a driver might not see you.")
    # the thoughtSignature on the first text part has no stream field (only thinking/tool calls)
    assert text["sig"] is None
    fin = s["last"]
    assert isinstance(fin, Finish) and fin.reason == "stop"
    assert fin.usage == Usage(input_tokens=34, output_tokens=469 + 787, reasoning_tokens=787)


def test_stream_function_call_thought_signature_fixture() -> None:
    events = decode_fixture("stream_function_call_thought_signature.sse")
    check_order(events)
    s = summarize(events)
    assert len(s["blocks"]) == 1  # the trailing {"text": ""} part opens no block
    call = s["blocks"][0]
    assert call["kind"] == "tool_call" and call["name"] == "get_country"
    assert call["id"].startswith("call_")
    assert orjson.loads(call["args"]) == {}
    assert call["sig"].startswith("EpwICpkIAXLI2nxlU6gsWZaZ")
    assert s["last"] == Finish(
        reason="tool_calls", usage=Usage(input_tokens=29, output_tokens=212, reasoning_tokens=202)
    )


def test_stream_function_call_single_chunk_fixture() -> None:
    events = decode_fixture("stream_function_call_args_empty.sse")
    check_order(events)
    s = summarize(events)
    call = s["blocks"][0]
    assert (call["kind"], call["name"]) == ("tool_call", "get_capital")
    assert orjson.loads(call["args"]) == {"country": "France"}
    # the whole args arrive as one arguments delta
    assert sum(1 for ev in events if isinstance(ev, BlockDelta) and ev.arguments) == 1
    assert s["last"] == Finish(reason="tool_calls", usage=Usage(input_tokens=52, output_tokens=5))


def test_stream_usage_thoughts_tokens_fixture() -> None:
    events = decode_fixture("stream_usage_thoughts_tokens.sse", seed=7)
    check_order(events)
    s = summarize(events)
    assert s["blocks"][0]["text"] == "\n".join(str(i) for i in range(1, 31))
    assert s["last"] == Finish(reason="stop", usage=Usage(input_tokens=18, output_tokens=115, reasoning_tokens=35))


def test_stream_error_midstream_fixture() -> None:
    events = decode_fixture("stream_error_midstream.SYNTHETIC.sse", seed=3)
    check_order(events)
    s = summarize(events)
    assert s["blocks"][0]["text"] == "The capital of France is Paris.\n"
    err = s["last"]
    assert isinstance(err, Error)
    assert err.status == 500 and err.error_type == "INTERNAL" and err.code == "INTERNAL"
    assert err.message.startswith("An internal error has occurred")
    assert not any(isinstance(ev, Finish) for ev in events)


def test_error_429_body_as_stream_chunk() -> None:
    events = decode_bytes(b"data: " + orjson.dumps(orjson.loads((FIX / "error_429.SYNTHETIC.json").read_bytes())))
    assert events == [
        Error(
            status=429,
            message="Resource has been exhausted (e.g. check quota).",
            error_type="RESOURCE_EXHAUSTED",
            code="RESOURCE_EXHAUSTED",
        )
    ]


# ---------------------------------------------------------------- decoder edge cases


def _ev(obj: Any) -> SSEEvent:
    return SSEEvent(None, orjson.dumps(obj))


def _chunk(parts: list[dict[str, Any]] | None = None, finish: str | None = None, usage: Any = None) -> Any:
    obj: dict[str, Any] = {"responseId": "r1", "modelVersion": "gemini-2.5-pro"}
    if parts is not None or finish is not None:
        cand: dict[str, Any] = {"content": {"role": "model", "parts": parts or []}}
        if finish:
            cand["finishReason"] = finish
        obj["candidates"] = [cand]
    if usage is not None:
        obj["usageMetadata"] = usage
    return obj


def test_finish_deferred_to_usage_only_chunk() -> None:
    dec = StreamDecoder("m")
    out = dec.feed(_ev(_chunk([{"text": "hi"}], finish="STOP", usage={"promptTokenCount": 3})))
    assert not any(isinstance(e, Finish) for e in out)
    assert isinstance(out[-1], BlockStop)  # the block closes at once
    out = dec.feed(_ev(_chunk(usage={"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 4})))
    assert out[-1] == Finish(reason="stop", usage=Usage(input_tokens=3, output_tokens=6, reasoning_tokens=4))
    assert dec.close() == []
    assert dec.feed(_ev(_chunk([{"text": "late"}]))) == []


def test_finish_reasons() -> None:
    cases = {
        "MAX_TOKENS": "length",
        "SAFETY": "content_filter",
        "RECITATION": "content_filter",
        "BLOCKLIST": "content_filter",
        "PROHIBITED_CONTENT": "content_filter",
        "SPII": "content_filter",
        "STOP": "stop",
        "OTHER": "stop",
        "MALFORMED_FUNCTION_CALL": "error",
    }
    for upstream, neutral in cases.items():
        dec = StreamDecoder("m")
        out = dec.feed(_ev(_chunk([{"text": "x"}], finish=upstream)))
        out += dec.close()
        assert isinstance(out[-1], Finish) and out[-1].reason == neutral, upstream


def test_decoder_text_thinking_interleave_and_parallel_calls() -> None:
    dec = StreamDecoder("m")
    out: list[Event] = []
    out += dec.feed(_ev(_chunk([{"text": "plan", "thought": True}])))
    out += dec.feed(_ev(_chunk([{"text": " more", "thought": True}, {"text": "Answer"}])))
    out += dec.feed(_ev(_chunk([{"text": " continues"}])))
    out += dec.feed(
        _ev(
            _chunk(
                [
                    {"functionCall": {"id": "fc1", "name": "a", "args": {"x": 1}}, "thoughtSignature": SIG},
                    {"functionCall": {"name": "b"}},
                ],
                finish="STOP",
            )
        )
    )
    out += dec.close()
    check_order(out)
    s = summarize(out)
    assert [(b["kind"], b["text"]) for b in s["blocks"][:2]] == [
        ("thinking", "plan more"),
        ("text", "Answer continues"),
    ]
    a, b = s["blocks"][2:]
    assert (a["id"], a["name"], a["args"], a["sig"]) == ("fc1", "a", '{"x":1}', SIG)
    assert b["name"] == "b" and b["args"] == "{}" and b["id"].startswith("call_") and b["sig"] is None
    assert s["last"].reason == "tool_calls"


def test_decoder_tolerates_padding_empty_and_array_chunks() -> None:
    dec = StreamDecoder("m")
    assert dec.feed(SSEEvent(None, b"  ")) == []
    assert dec.feed(SSEEvent(None, b"[DONE]")) == []
    out = dec.feed(SSEEvent(None, b'  [{"candidates": [{"content": {"parts": [{"text": "a"}]}}]}]  '))
    assert [type(e).__name__ for e in out] == ["Start", "BlockStart", "BlockDelta"]
    out = dec.feed(_ev({"promptFeedback": {"blockReason": "SAFETY"}}))
    out += dec.close()
    assert out[-1].reason == "content_filter"  # type: ignore[union-attr]


def test_decoder_eof_without_chunks_or_finish() -> None:
    assert StreamDecoder("m").close()[0].status == 502  # type: ignore[union-attr]
    dec = StreamDecoder("m")
    dec.feed(_ev(_chunk([{"text": "cut"}])))
    out = dec.close()
    assert isinstance(out[0], BlockStop) and isinstance(out[-1], Finish)
    bad = StreamDecoder("m")
    assert isinstance(bad.feed(SSEEvent(None, b"{not json"))[0], Error)


# ---------------------------------------------------------------- encoder


def _neutral_stream(with_tools: bool = True) -> list[Event]:
    evs: list[Event] = [
        Start(id="resp-1", model="upstream"),
        BlockStart(index=0, block="thinking"),
        BlockDelta(index=0, thinking="Let me think."),
        BlockDelta(index=0, signature="foreign-claude-signature"),
        BlockStop(index=0),
        BlockStart(index=1, block="text"),
        BlockDelta(index=1, text="Hello"),
        BlockDelta(index=1, text=""),
        BlockDelta(index=1, text=", world"),
        BlockStop(index=1),
    ]
    if with_tools:
        evs += [
            BlockStart(index=2, block="tool_call", tool_call_id="call_A", tool_name="get_weather"),
            BlockStart(index=3, block="tool_call", tool_call_id="call_B", tool_name="broken"),
            BlockDelta(index=2, arguments='{"city": '),
            BlockDelta(index=3, arguments='{"oops'),
            BlockDelta(index=2, arguments='"Paris"}'),
            BlockStop(index=2),
            BlockStop(index=3),
        ]
    evs += [
        UsageUpdate(usage=Usage(input_tokens=10, output_tokens=5)),
        Finish(
            reason="tool_calls" if with_tools else "stop",
            usage=Usage(input_tokens=100, output_tokens=30, cached_tokens=40, reasoning_tokens=12),
        ),
    ]
    return evs


def _encode_all(enc: StreamEncoder, evs: list[Event]) -> bytes:
    return b"".join(enc.encode(e) for e in evs) + enc.close()


def test_encoder_sse_frames() -> None:
    raw = _encode_all(StreamEncoder("gemini-2.5-pro"), _neutral_stream())
    chunks = frames(raw)
    parts = [c["candidates"][0]["content"]["parts"] for c in chunks]
    assert parts[0] == [{"text": "Let me think.", "thought": True}]  # foreign signature not sent
    assert parts[1] == [{"text": "Hello"}]
    assert parts[2] == [{"text": ", world"}]
    assert parts[3] == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_A"}}]
    assert parts[4] == [{"functionCall": {"name": "broken", "args": {}, "id": "call_B"}}]
    last = chunks[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == {
        "promptTokenCount": 100,
        "candidatesTokenCount": 18,
        "totalTokenCount": 130,
        "thoughtsTokenCount": 12,
        "cachedContentTokenCount": 40,
    }
    assert all(c["modelVersion"] == "gemini-2.5-pro" and c["responseId"] == "resp-1" for c in chunks)
    assert all(c["candidates"][0]["content"]["role"] == "model" for c in chunks)
    assert "finishReason" not in chunks[0]["candidates"][0]


def test_encoder_finish_reason_mapping() -> None:
    for neutral, upstream in {
        "stop": "STOP",
        "length": "MAX_TOKENS",
        "content_filter": "SAFETY",
        "stop_sequence": "STOP",
        "tool_calls": "STOP",
    }.items():
        enc = StreamEncoder("m")
        raw = enc.encode(Start(id="x", model="m")) + enc.encode(Finish(reason=neutral))  # type: ignore[arg-type]
        assert frames(raw)[-1]["candidates"][0]["finishReason"] == upstream


def test_encoder_json_array_form() -> None:
    enc = StreamEncoder("m", sse=False)
    raw = _encode_all(enc, _neutral_stream(with_tools=False))
    assert raw.startswith(b"[") and raw.endswith(b"]")
    arr = orjson.loads(raw)
    assert [c["candidates"][0]["content"]["parts"][0].get("text") for c in arr] == [
        "Let me think.",
        "Hello",
        ", world",
        "",
    ]
    assert arr[-1]["candidates"][0]["finishReason"] == "STOP"
    assert StreamEncoder("m", sse=False).close() == b"[]"
    enc = StreamEncoder("m", sse=False)
    raw = enc.encode(Start(id="x", model="m")) + enc.encode(BlockStart(index=0, block="text"))
    raw += enc.encode(BlockDelta(index=0, text="a")) + enc.error(503, "overloaded")
    assert enc.close() == b""
    arr = orjson.loads(raw)
    assert arr[-1] == {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}


def test_encoder_error_chunk() -> None:
    enc = StreamEncoder("m")
    raw = enc.encode(Start(id="x", model="m")) + enc.encode(BlockStart(index=0, block="text"))
    raw += enc.encode(BlockDelta(index=0, text="partial"))
    raw += enc.encode(Error(status=429, message="slow down", error_type="rate_limit_error"))
    assert frames(raw)[-1] == {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}
    assert enc.encode(BlockDelta(index=0, text="more")) == b""
    assert enc.close() == b""
    assert frames(StreamEncoder("m").error(500, "boom", "INTERNAL")) == [
        {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}
    ]


def test_encoder_flushes_unstopped_tool_call_at_finish() -> None:
    enc = StreamEncoder("m")
    raw = _encode_all(
        enc,
        [
            Start(id="x", model="m"),
            BlockStart(index=0, block="tool_call", tool_call_id="c", tool_name="f"),
            BlockDelta(index=0, arguments='{"a": [1, 2]}'),
            Finish(reason="length", usage=Usage(input_tokens=1, output_tokens=2)),
        ],
    )
    chunks = frames(raw)
    assert chunks[0]["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "f", "args": {"a": [1, 2]}, "id": "c"}}
    ]
    assert chunks[1]["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_encode_then_decode_round_trip() -> None:
    raw = _encode_all(StreamEncoder("m"), _neutral_stream())
    events = decode_bytes(raw, seed=11)
    check_order(events)
    s = summarize(events)
    assert [(b["kind"], b["text"] or b["args"]) for b in s["blocks"]] == [
        ("thinking", "Let me think."),
        ("text", "Hello, world"),
        ("tool_call", '{"city":"Paris"}'),
        ("tool_call", "{}"),
    ]
    assert [b["id"] for b in s["blocks"][2:]] == ["call_A", "call_B"]
    assert s["last"] == Finish(
        reason="tool_calls", usage=Usage(input_tokens=100, output_tokens=30, cached_tokens=40, reasoning_tokens=12)
    )


# ---------------------------------------------------------------- google-genai parses our stream


class _Server:
    """A tiny aiohttp server on 127.0.0.1 (own thread and loop) replaying given bytes."""

    def __init__(self) -> None:
        self.body = b""
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from aiohttp import web

        async def handler(request: web.Request) -> web.StreamResponse:
            self.requests.append({"path": request.path_qs, "body": await request.json()})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for i in range(0, len(self.body), 37):  # several writes, cut anywhere
                await resp.write(self.body[i : i + 37])
            await resp.write_eof()
            return resp

        async def start() -> web.AppRunner:
            app = web.Application()
            app.router.add_post("/{tail:.*}", handler)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return runner

        asyncio.set_event_loop(self._loop)
        self._runner = self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def fake_gemini() -> Iterator[_Server]:
    srv = _Server()
    srv.start()
    yield srv
    srv.stop()


def _client(port: int) -> Any:
    from google import genai
    from google.genai import types

    return genai.Client(
        api_key="k", http_options=types.HttpOptions(base_url=f"http://127.0.0.1:{port}", api_version="v1beta")
    )


def test_google_genai_parses_encoder_output(fake_gemini: _Server) -> None:
    fake_gemini.body = _encode_all(StreamEncoder("gemini-2.5-pro"), _neutral_stream())
    client = _client(fake_gemini.port)
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-pro", contents="hi"))
    assert fake_gemini.requests[0]["path"] == "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    parts = [p for c in chunks for p in (c.candidates[0].content.parts or [])]
    text = "".join(p.text for p in parts if p.text and not p.thought)
    thoughts = "".join(p.text for p in parts if p.text and p.thought)
    assert text == "Hello, world"
    assert thoughts == "Let me think."
    calls = [c.function_calls for c in chunks if c.function_calls]
    flat = [fc for group in calls for fc in group]
    assert [(fc.name, fc.args, fc.id) for fc in flat] == [
        ("get_weather", {"city": "Paris"}, "call_A"),
        ("broken", {}, "call_B"),
    ]
    last = chunks[-1]
    assert last.candidates[0].finish_reason.value == "STOP"
    um = last.usage_metadata
    assert (um.prompt_token_count, um.candidates_token_count, um.thoughts_token_count) == (100, 18, 12)
    assert (um.cached_content_token_count, um.total_token_count) == (40, 130)
    assert last.response_id == "resp-1" and last.model_version == "gemini-2.5-pro"


def test_google_genai_raises_on_error_chunk(fake_gemini: _Server) -> None:
    from google.genai import errors

    enc = StreamEncoder("gemini-2.5-pro")
    body = enc.encode(Start(id="r", model="m")) + enc.encode(BlockStart(index=0, block="text"))
    body += enc.encode(BlockDelta(index=0, text="partial"))
    body += enc.error(500, "upstream exploded")
    fake_gemini.body = body
    client = _client(fake_gemini.port)
    seen: list[str] = []
    with pytest.raises(errors.ServerError) as info:
        for chunk in client.models.generate_content_stream(model="gemini-2.5-pro", contents="hi"):
            seen.append(chunk.text or "")
    assert seen == ["partial"]
    assert info.value.code == 500 and "upstream exploded" in str(info.value)


# ---------------------------------------------------------------- usage


def test_usage_from_gemini() -> None:
    meta = orjson.loads((FIX / "nonstream_cached_content.json").read_bytes())["usageMetadata"]
    assert usage_from_gemini(meta) == Usage(
        input_tokens=3520, output_tokens=44, cached_tokens=3512, reasoning_tokens=42
    )
    assert usage_from_gemini({"prompt_token_count": 5, "candidates_token_count": 1}) == Usage(
        input_tokens=5, output_tokens=1
    )
    assert usage_from_gemini(None) == Usage()


# ---------------------------------------------------------------- non-stream responses


def _load(name: str) -> dict[str, Any]:
    return orjson.loads((FIX / name).read_bytes())


def test_response_cached_content_fixture() -> None:
    resp = response_to_neutral(_load("nonstream_cached_content.json"))
    assert (resp.id, resp.model, resp.finish_reason) == ("_VQYaqvRGbW6qtsPg4TDoAg", "gemini-2.5-flash", "stop")
    assert resp.content == [Text(text="Paris.")]
    assert resp.usage == Usage(input_tokens=3520, output_tokens=44, cached_tokens=3512, reasoning_tokens=42)


def test_response_function_call_fixtures() -> None:
    resp = response_to_neutral(_load("nonstream_function_call.json"))
    assert resp.finish_reason == "tool_calls"
    (call,) = resp.content
    assert isinstance(call, ToolCall) and call.name == "get_user_country" and call.arguments == "{}"
    assert call.id.startswith("call_") and call.signature is None
    assert resp.usage == Usage(input_tokens=33, output_tokens=5)

    resp = response_to_neutral(_load("nonstream_function_call_thought_signature.json"))
    (call,) = resp.content
    assert isinstance(call, ToolCall)
    assert orjson.loads(call.arguments) == {"city": "Mexico City", "country": "Mexico"}
    assert call.signature is not None and call.signature.startswith("EpwECpkEAdHtim86")
    assert resp.usage == Usage(input_tokens=107, output_tokens=146, reasoning_tokens=123)
    assert resp.extra["gemini"]["finishMessage"] == "Model generated function call(s)."


def test_response_thinking_signature_fixture_round_trip() -> None:
    body = _load("nonstream_thinking_thought_signature.json")
    resp = response_to_neutral(body)
    thinking, text = resp.content
    assert isinstance(thinking, Thinking) and thinking.source == "gemini" and thinking.signature is None
    assert thinking.text.startswith("**A Safe Street-Crossing Guide")
    assert isinstance(text, Text) and text.text.startswith("Crossing the street safely")
    src_parts = body["candidates"][0]["content"]["parts"]
    out = response_from_neutral(resp, "gemini-3-pro-preview")
    assert out["candidates"][0]["content"]["parts"] == src_parts  # text signature kept
    assert out["usageMetadata"]["thoughtsTokenCount"] == body["usageMetadata"]["thoughtsTokenCount"]
    assert out["usageMetadata"]["candidatesTokenCount"] == body["usageMetadata"]["candidatesTokenCount"]
    assert out["usageMetadata"]["promptTokenCount"] == body["usageMetadata"]["promptTokenCount"]
    assert out["usageMetadata"]["totalTokenCount"] == body["usageMetadata"]["totalTokenCount"]
    assert out["responseId"] == body["responseId"] and out["modelVersion"] == "gemini-3-pro-preview"


def test_response_from_neutral_foreign_content() -> None:
    resp = Response(
        id="msg_1",
        model="claude-x",
        content=[
            Thinking(text="hmm", signature="claude-sig", source="claude"),
            Text(text="Let me check."),
            ToolCall(id="toolu_1", name="lookup", arguments='{"q": "x"}'),
        ],
        finish_reason="tool_calls",
        usage=Usage(input_tokens=50, output_tokens=20, cached_tokens=30),
    )
    out = response_from_neutral(resp, "my-alias")
    assert out["candidates"][0]["content"]["parts"] == [
        {"text": "hmm", "thought": True},
        {"text": "Let me check."},
        {"functionCall": {"name": "lookup", "args": {"q": "x"}, "id": "toolu_1"}},
    ]
    assert out["candidates"][0]["finishReason"] == "STOP"
    assert out["modelVersion"] == "my-alias"
    assert out["usageMetadata"] == {
        "promptTokenCount": 50,
        "candidatesTokenCount": 20,
        "totalTokenCount": 70,
        "cachedContentTokenCount": 30,
    }
    assert (
        response_from_neutral(Response(id="r", model="m", finish_reason="length"), "m")["candidates"][0]["finishReason"]
        == "MAX_TOKENS"
    )


def test_response_blocked_prompt_and_safety() -> None:
    resp = response_to_neutral({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}})
    assert resp.finish_reason == "content_filter" and resp.content == [] and resp.usage.input_tokens == 4
    resp = response_to_neutral({"candidates": [{"finishReason": "SAFETY"}]})
    assert resp.finish_reason == "content_filter"
    resp = response_to_neutral({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "MAX_TOKENS"}]})
    assert resp.finish_reason == "length"


# ---------------------------------------------------------------- requests: Gemini -> neutral


FULL_REQUEST: dict[str, Any] = {
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "What is in this picture, and the weather in Paris?"},
                {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}},
                {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/a.pdf"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "thinking about it", "thought": True, "thoughtSignature": SIG},
                {"text": "A cat.", "thoughtSignature": SIG},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
            ],
        },
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"city": {"type": "STRING"}},
                        "required": ["city"],
                    },
                },
                {
                    "name": "get_time",
                    "parametersJsonSchema": {"type": "object", "properties": {}},
                },
            ]
        },
        {"googleSearch": {}},
        {"codeExecution": {}},
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    "generationConfig": {
        "maxOutputTokens": 256,
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "stopSequences": ["END"],
        "candidateCount": 1,
        "seed": 7,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object", "properties": {"answer": {"type": "string"}}},
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    "cachedContent": "cachedContents/abc",
}


def test_request_to_neutral_full() -> None:
    req = request_to_neutral(FULL_REQUEST, "gemini-2.5-pro")
    assert req.model == "gemini-2.5-pro"
    assert req.system == [Text(text="Be brief."), Text(text="Be kind.")]
    u1, m1, u2 = req.messages
    assert u1.role == "user" and m1.role == "assistant" and u2.role == "user"
    assert u1.content == [
        Text(text="What is in this picture, and the weather in Paris?"),
        Image(data="AAAA", mime_type="image/jpeg"),
        File(url="https://example.com/a.pdf", mime_type="application/pdf"),
        Audio(data="UklGRg==", format="wav"),
    ]
    assert m1.content[0] == Thinking(text="thinking about it", signature=SIG, source="gemini")
    assert m1.content[1] == Text(text="A cat.")
    assert m1.extra["gemini_text_signatures"] == {1: SIG}
    assert m1.content[2] == ToolCall(id="call_0", name="get_weather", arguments='{"city":"Paris"}', signature=SIG)
    assert m1.content[3] == ToolCall(id="call_1", name="get_time", arguments="{}")
    assert u2.content == [
        ToolResult(call_id="call_0", content='{"temp":21}', name="get_weather"),
        ToolResult(call_id="call_1", content='{"result":"noon"}', name="get_time"),
    ]
    weather, time_, search, code = req.tools
    assert weather == Tool(
        name="get_weather",
        description="Weather for a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
    assert time_.parameters == {"type": "object", "properties": {}}
    assert search == Tool(name="googleSearch", raw={"googleSearch": {}}, raw_format="gemini")
    assert code.raw == {"codeExecution": {}}
    assert req.tool_choice == ToolChoice(mode="tool", name="get_weather")
    assert (req.max_tokens, req.temperature, req.top_p, req.top_k, req.stop) == (256, 0.2, 0.9, 40, ["END"])
    assert req.response_format == ResponseFormat(
        type="json_schema", schema={"type": "object", "properties": {"answer": {"type": "string"}}}
    )
    assert req.reasoning == Reasoning(budget=2048, include_thoughts=True)
    assert req.extra["gemini"] == {
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "cachedContent": "cachedContents/abc",
        "generationConfig": {"candidateCount": 1, "seed": 7},
    }


def test_request_to_neutral_snake_case() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": "QQ=="}}]},
            {"role": "model", "parts": [{"function_call": {"id": "x1", "name": "f", "args": {"a": 1}}}]},
            {"role": "user", "parts": [{"function_response": {"id": "x1", "name": "f", "response": {"ok": True}}}]},
        ],
        "system_instruction": {"parts": [{"text": "sys"}]},
        "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": {"type": "object"}}]}],
        "tool_config": {"function_calling_config": {"mode": "NONE"}},
        "generation_config": {
            "max_output_tokens": 9,
            "top_p": 0.5,
            "stop_sequences": ["x"],
            "response_mime_type": "application/json",
            "thinking_config": {"thinking_level": "HIGH", "include_thoughts": False},
        },
    }
    req = request_to_neutral(body, "m")
    assert req.messages[0].content == [Image(data="QQ==", mime_type="image/png")]
    assert req.messages[1].content == [ToolCall(id="x1", name="f", arguments='{"a":1}')]
    assert req.messages[2].content == [ToolResult(call_id="x1", content='{"ok":true}', name="f")]
    assert req.system == [Text(text="sys")]
    assert req.tools == [Tool(name="f", parameters={"type": "object"})]
    assert req.tool_choice == ToolChoice(mode="none")
    assert (req.max_tokens, req.top_p, req.stop) == (9, 0.5, ["x"])
    assert req.response_format == ResponseFormat(type="json_object")
    assert req.reasoning == Reasoning(effort="high", include_thoughts=False)
    assert req.extra == {}


def test_request_to_neutral_validation() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "contents"),
        ({"contents": {"role": "user"}}, "contents"),
        ({"contents": ["hi"]}, "contents.0"),
        ({"contents": [{"role": "user", "parts": "hi"}]}, "contents.0.parts"),
        ({"contents": [{"role": "user", "parts": ["hi"]}]}, "contents.0.parts.0"),
        (
            {"contents": [], "tools": [{"functionDeclarations": [{"name": "f", "parameters": "x"}]}]},
            "tools.0.functionDeclarations.0.parameters",
        ),
        (
            {"contents": [], "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": []}]}]},
            "tools.0.functionDeclarations.0.parametersJsonSchema",
        ),
        ({"contents": [], "generationConfig": []}, "generationConfig"),
    ]
    for body, param in cases:
        with pytest.raises(BadRequest) as info:
            request_to_neutral(body, "m")
        assert info.value.param == param, body
    with pytest.raises(BadRequest, match="'contents' is required"):
        request_to_neutral({"generationConfig": {}}, "m")


def test_request_to_neutral_other_parts_and_tool_config() -> None:
    body = {
        "contents": [
            {
                "role": "model",
                "parts": [
                    {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
                    {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "1"}},
                    {"text": "done"},
                ],
            },
            {"role": "user", "parts": [{"text": "ok"}]},
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["a", "b"]},
            "retrievalConfig": {"languageCode": "en"},
        },
        "generationConfig": {"responseMimeType": "text/x.enum"},
    }
    req = request_to_neutral(body, "m")
    m = req.messages[0]
    assert m.content == [Text(text="done")]
    assert m.extra["gemini_raw_parts"] == [
        [0, {"executableCode": {"language": "PYTHON", "code": "print(1)"}}],
        [0, {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "1"}}],
    ]
    assert req.tool_choice == ToolChoice(mode="required")
    assert req.extra["gemini"]["toolConfig"] == body["toolConfig"]
    assert req.extra["gemini"]["generationConfig"] == {"responseMimeType": "text/x.enum"}
    out = request_from_neutral(req, "gemini-2.5-flash")
    assert out["contents"][0]["parts"] == body["contents"][0]["parts"]
    assert out["toolConfig"] == body["toolConfig"]
    assert out["generationConfig"] == {"responseMimeType": "text/x.enum"}


# ---------------------------------------------------------------- requests: neutral -> Gemini


def test_round_trip_gemini_neutral_gemini() -> None:
    req = request_to_neutral(FULL_REQUEST, "gemini-2.5-pro")
    out = request_from_neutral(req, "gemini-2.5-pro")
    assert "model" not in out
    assert out["contents"][0] == {
        "role": "user",
        "parts": [
            {"text": "What is in this picture, and the weather in Paris?"},
            {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/a.pdf"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        ],
    }
    # signatures are replayed as received; the second (unsigned) call of the step needs none
    assert out["contents"][1] == FULL_REQUEST["contents"][1]
    assert out["contents"][2] == FULL_REQUEST["contents"][2]
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Be kind."}]}
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parametersJsonSchema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
                {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {}}},
            ]
        },
        {"googleSearch": {}},
        {"codeExecution": {}},
    ]
    assert out["toolConfig"] == FULL_REQUEST["toolConfig"]
    assert out["generationConfig"] == FULL_REQUEST["generationConfig"]
    assert out["safetySettings"] == FULL_REQUEST["safetySettings"]
    assert out["cachedContent"] == "cachedContents/abc"


def _openai_like_request() -> Request:
    """What an OpenAI chat client's request looks like in neutral form."""
    return Request(
        model="gpt-4o",
        system=[Text(text="You are terse.")],
        messages=[
            Message(
                role="user",
                content=[
                    Text(text="Describe these"),
                    Image(url="https://example.com/cat.webp?size=large"),
                    Image(url="data:image/gif;base64,R0lGOD=="),
                    Image(data="iVBOR", mime_type="image/png"),
                    Image(url="https://example.com/noext"),
                    Audio(data="SUQz", format="mp3"),
                ],
            ),
            Message(
                role="assistant",
                content=[
                    Thinking(text="claude thoughts", signature="c-sig", source="claude"),
                    Thinking(text="", redacted="enc", source="openai"),
                    Text(text="Calling tools"),
                    ToolCall(id="call_abc", name="lookup", arguments='{"q": "cats"}'),
                    ToolCall(id="call_def", name="count", arguments=""),
                ],
            ),
            Message(role="user", content=[ToolResult(call_id="call_abc", content='{"found": 3}')]),
            Message(role="user", content=[ToolResult(call_id="call_def", content="42")]),
            Message(role="user", content=[Text(text="and now?")]),
            Message(role="assistant", content=[Text(text="Well,")]),  # prefill
        ],
        tools=[
            Tool(
                name="lookup",
                description="search",
                parameters={
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "title": "LookupArgs",
                    "properties": {"q": {"type": "string", "title": "Q"}, "n": {"type": ["integer", "null"]}},
                    "required": ["q", "missing"],
                    "additionalProperties": False,
                },
            ),
            Tool(name="count"),
        ],
        tool_choice=ToolChoice(mode="required"),
        max_tokens=100,
        temperature=0.5,
        stop=["\n\n"],
        response_format=ResponseFormat(
            type="json_schema",
            name="out",
            schema={"type": "object", "title": "Out", "properties": {"a": {"const": 1}}},
        ),
        reasoning=Reasoning(effort="high"),
    )


def test_request_from_neutral_cross_format() -> None:
    out = request_from_neutral(_openai_like_request(), "gemini-2.5-flash")
    assert out["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    contents = out["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]  # prefill stripped
    assert contents[0]["parts"] == [
        {"text": "Describe these"},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=large"}},
        {"inlineData": {"mimeType": "image/gif", "data": "R0lGOD=="}},
        {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/noext"}},
        {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}},
    ]
    # foreign thinking dropped; first foreign call gets the documented placeholder signature
    assert contents[1]["parts"] == [
        {"text": "Calling tools"},
        {"functionCall": {"name": "lookup", "args": {"q": "cats"}}, "thoughtSignature": SKIP_SIGNATURE},
        {"functionCall": {"name": "count", "args": {}}},
    ]
    # the tool results of one step are one user turn, named after their calls; then the text
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "lookup", "response": {"found": 3}}},
        {"functionResponse": {"name": "count", "response": {"result": 42}}},
        {"text": "and now?"},
    ]
    decl = out["tools"][0]["functionDeclarations"]
    assert decl[0] == {
        "name": "lookup",
        "description": "search",
        "parametersJsonSchema": {
            "type": "object",
            "properties": {"q": {"type": "string"}, "n": {"type": "integer", "nullable": True}},
            "required": ["q"],
            "additionalProperties": False,
        },
    }
    assert decl[1] == {"name": "count"}
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert out["generationConfig"] == {
        "maxOutputTokens": 100,
        "temperature": 0.5,
        "stopSequences": ["\n\n"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object", "properties": {"a": {"enum": ["1"], "type": "string"}}},
        "thinkingConfig": {"thinkingBudget": 24576, "includeThoughts": True},
    }


def test_request_from_neutral_thinking_levels() -> None:
    def cfg(r: Reasoning, model: str) -> Any:
        return request_from_neutral(Request(model=model, reasoning=r), model)["generationConfig"].get("thinkingConfig")

    assert cfg(Reasoning(effort="low"), "gemini-3-pro-preview") == {"thinkingLevel": "low", "includeThoughts": True}
    assert cfg(Reasoning(effort="xhigh"), "gemini-3-flash") == {"thinkingLevel": "high", "includeThoughts": True}
    assert cfg(Reasoning(budget=30000), "gemini-3-pro") == {"thinkingLevel": "high", "includeThoughts": True}
    assert cfg(Reasoning(effort="auto"), "gemini-3-pro") == {"includeThoughts": True}
    assert cfg(Reasoning(effort="none"), "gemini-2.5-flash") == {"thinkingBudget": 0}
    assert cfg(Reasoning(effort="auto"), "gemini-2.5-pro") == {"thinkingBudget": -1, "includeThoughts": True}
    assert cfg(Reasoning(budget=512, include_thoughts=False), "gemini-2.5-pro") == {
        "thinkingBudget": 512,
        "includeThoughts": False,
    }
    assert "generationConfig" not in request_from_neutral(Request(model="m"), "gemini-2.5-pro")


def test_request_from_neutral_tool_results_and_choice() -> None:
    req = Request(
        model="m",
        messages=[
            Message(role="user", content=[Text(text="go")]),
            Message(
                role="assistant",
                content=[ToolCall(id="t1", name="shot", arguments="{}", signature=SIG)],
            ),
            Message(
                role="user",
                content=[
                    ToolResult(
                        call_id="t1", content=[Text(text="see image"), Image(data="iVBOR", mime_type="image/png")]
                    ),
                    ToolResult(call_id="orphan", content="not json {", is_error=True),
                    ToolResult(call_id="t1", content='["a", "b"]', name="explicit"),
                ],
            ),
        ],
        tool_choice=ToolChoice(mode="tool", name="shot"),
    )
    out = request_from_neutral(req, "gemini-3-pro-preview")
    assert out["contents"][1]["parts"] == [{"functionCall": {"name": "shot", "args": {}}, "thoughtSignature": SIG}]
    assert out["contents"][2]["parts"] == [
        {"functionResponse": {"name": "shot", "response": {"result": "see image"}}},
        {"functionResponse": {"name": "orphan", "response": {"error": "not json {"}}},
        {"functionResponse": {"name": "explicit", "response": {"result": ["a", "b"]}}},
        {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
    ]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["shot"]}}
    for mode, g in (("auto", "AUTO"), ("none", "NONE")):
        body = request_from_neutral(Request(model="m", tool_choice=ToolChoice(mode=mode)), "m")  # type: ignore[arg-type]
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": g}}


def test_request_from_neutral_gemini_thinking_replayed() -> None:
    req = Request(
        model="m",
        messages=[
            Message(role="user", content=[Text(text="q")]),
            Message(
                role="assistant",
                content=[Thinking(text="t", signature=SIG, source="gemini"), Text(text="a")],
            ),
            Message(role="user", content=[Text(text="q2")]),
        ],
    )
    out = request_from_neutral(req, "gemini-2.5-pro")
    assert out["contents"][1]["parts"] == [{"text": "t", "thought": True, "thoughtSignature": SIG}, {"text": "a"}]


def test_request_from_neutral_unsupported_and_bad() -> None:
    with pytest.raises(Unsupported) as info:
        request_from_neutral(
            Request(model="m", messages=[Message(role="user", content=[File(file_id="file-abc")])]), "m"
        )
    assert info.value.param == "messages.0.content.0"
    with pytest.raises(BadRequest) as info:
        request_from_neutral(
            Request(
                model="m",
                messages=[
                    Message(role="assistant", content=[ToolCall(id="a", name="f", arguments="[1]")]),
                    Message(role="user", content=[Text(text="x")]),
                ],
            ),
            "m",
        )
    assert info.value.param == "messages.0.content.0"
    with pytest.raises(Unsupported):
        request_from_neutral(
            Request(model="m", tools=[Tool(name="computer", raw={"type": "computer_20250124"}, raw_format="claude")]),
            "m",
        )
    body = request_from_neutral(
        Request(model="m", tools=[Tool(name="web_search", raw={"type": "web_search_20250305"}, raw_format="claude")]),
        "m",
    )
    assert body["tools"] == [{"googleSearch": {}}]
    body = request_from_neutral(
        Request(
            model="m",
            messages=[
                Message(role="user", content=[File(data="JVBER", mime_type="application/pdf", filename="a.pdf")])
            ],
            response_format=ResponseFormat(type="json_object"),
        ),
        "m",
    )
    assert body["contents"][0]["parts"] == [{"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}}]
    assert body["generationConfig"] == {"responseMimeType": "application/json"}


def test_format_module_contract() -> None:
    assert gemini.FORMAT == "gemini"
    for name in (
        "request_to_neutral",
        "request_from_neutral",
        "response_to_neutral",
        "response_from_neutral",
        "StreamDecoder",
        "StreamEncoder",
        "usage_from_gemini",
    ):
        assert hasattr(gemini, name)


def test_decoder_signature_only_parts() -> None:
    dec = StreamDecoder("m")
    out: list[Event] = []
    out += dec.feed(_ev(_chunk([{"text": "deep thought", "thought": True}])))
    out += dec.feed(_ev(_chunk([{"text": "", "thought": True, "thoughtSignature": SIG}])))
    out += dec.feed(_ev(_chunk([{"text": "", "thoughtSignature": SIG}])))  # plain part: nothing
    out += dec.feed(_ev(_chunk([{"text": "answer"}], finish="STOP")))
    out += dec.close()
    check_order(out)
    s = summarize(out)
    assert [(b["kind"], b["text"], b["sig"]) for b in s["blocks"]] == [
        ("thinking", "deep thought", SIG),
        ("text", "answer", None),
    ]


# ---------------------------------------------------------------- across the real sibling translators


def test_openai_chat_client_to_gemini_upstream() -> None:
    from crossroute.formats import openai_chat

    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "title": "F"}}}],
        "max_tokens": 50,
    }
    out = request_from_neutral(openai_chat.request_to_neutral(body), "gemini-3-pro-preview")
    assert out["systemInstruction"] == {"parts": [{"text": "sys"}]}
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": SKIP_SIGNATURE}],
        },
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": "ok"}}}]},
    ]
    assert out["tools"] == [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}]
    assert out["generationConfig"]["maxOutputTokens"] == 50


def test_gemini_thinking_signature_survives_a_claude_client() -> None:
    """Gemini upstream -> Claude client (signature tagged) -> next turn -> Gemini upstream."""
    from crossroute.formats import claude

    dec = StreamDecoder("g")
    enc = claude.StreamEncoder("g", upstream_family="gemini")
    evs = dec.feed(_ev(_chunk([{"text": "hmm", "thought": True, "thoughtSignature": SIG}])))
    evs += dec.feed(_ev(_chunk([{"text": "Hi!"}], finish="STOP", usage={"promptTokenCount": 2})))
    evs += dec.close()
    raw = b"".join(enc.encode(e) for e in evs)
    sig = None
    for block in raw.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: ") and b"signature_delta" in line:
                sig = orjson.loads(line[6:])["delta"]["signature"]
    assert sig == "gemini:" + SIG
    claude_body = {
        "model": "claude-x",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": "hmm", "signature": sig}, {"type": "text", "text": "Hi!"}],
            },
            {"role": "user", "content": "again"},
        ],
    }
    out = request_from_neutral(claude.request_to_neutral(claude_body), "gemini-2.5-pro")
    assert out["contents"][1]["parts"] == [
        {"text": "hmm", "thought": True, "thoughtSignature": SIG},
        {"text": "Hi!"},
    ]
