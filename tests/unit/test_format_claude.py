"""Anthropic Messages format: fixtures decoded, encoder output fed to the anthropic SDK,
request/response translation both ways."""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from crossroute.formats import claude
from crossroute.formats.claude import (
    StreamDecoder,
    StreamEncoder,
    request_from_neutral,
    request_to_neutral,
    response_from_neutral,
    response_to_neutral,
    usage_from_claude,
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

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "anthropic"


# ---------------------------------------------------------------- helpers


def decode_bytes(raw: bytes, seed: int = 0, model: str = "m") -> list[Event]:
    """Feed bytes in random-sized chunks through SSEParser and the decoder, like the gateway:
    feed..., then parser.flush() (fixtures may lack the final blank line), then close()."""
    rng = random.Random(seed)
    parser = SSEParser()
    dec = StreamDecoder(model)
    out: list[Event] = []
    i = 0
    while i < len(raw):
        n = rng.randint(1, 40)
        for ev in parser.feed(raw[i : i + n]):
            out.extend(dec.feed(ev))
        i += n
    tail = parser.flush()
    if tail is not None:
        out.extend(dec.feed(tail))
    out.extend(dec.close())
    return out


def decode_fixture(name: str, seed: int = 0) -> list[Event]:
    return decode_bytes((FIX / name).read_bytes(), seed)


def check_order(events: list[Event]) -> None:
    """The neutral stream contract: Start first; per block start/deltas/stop; one Finish or an
    Error last."""
    assert events and isinstance(events[0], Start)
    assert isinstance(events[-1], (Finish, Error))
    assert sum(isinstance(e, (Finish, Error)) for e in events) == 1
    open_: set[int] = set()
    seen: set[int] = set()
    last = -1
    for e in events[1:-1]:
        if isinstance(e, BlockStart):
            assert e.index not in seen and e.index > last
            seen.add(e.index)
            open_.add(e.index)
            last = e.index
        elif isinstance(e, BlockDelta):
            assert e.index in open_
        elif isinstance(e, BlockStop):
            assert e.index in open_
            open_.remove(e.index)
        else:
            assert isinstance(e, UsageUpdate)
    if isinstance(events[-1], Finish):
        assert not open_


def joined(events: list[Event], attr: str, index: int | None = None) -> str:
    return "".join(
        getattr(e, attr) or ""
        for e in events
        if isinstance(e, BlockDelta) and (index is None or e.index == index)
    )


def fixture_deltas(name: str, dtype: str, key: str) -> str:
    """Independent reading of a fixture: concatenation of one delta type's values."""
    out = []
    for line in (FIX / name).read_bytes().split(b"\n"):
        if line.startswith(b"data: "):
            obj = orjson.loads(line[6:])
            if obj.get("type") == "content_block_delta" and obj["delta"]["type"] == dtype:
                out.append(obj["delta"][key])
    return "".join(out)


def sse_frames(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    parser = SSEParser()
    evs = parser.feed(raw)
    assert parser.pending == b"", "encoder output must end with a blank line"
    return [(e.event, orjson.loads(e.data)) for e in evs]


def encode_all(events: list[Event], model: str = "claude-x", **options: Any) -> bytes:
    enc = StreamEncoder(model, **options)
    out = b"".join(enc.encode(e) for e in events)
    return out + enc.close()


def sdk_client(body: bytes) -> anthropic.Anthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return anthropic.Anthropic(
        api_key="k",
        base_url="http://gateway.test",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


def sdk_final(body: bytes) -> Any:
    client = sdk_client(body)
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
        return s.get_final_message()


# ---------------------------------------------------------------- fixtures: stream decoding

STREAM_FIXTURES = sorted(p.name for p in FIX.glob("*.sse"))


@pytest.mark.parametrize("name", STREAM_FIXTURES)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_fixture_decodes_in_order(name: str, seed: int) -> None:
    events = decode_fixture(name, seed)
    check_order(events)
    assert events == decode_fixture(name, seed + 100)  # chunking never changes the result


def test_text_basic() -> None:
    ev = decode_fixture("stream_text_basic.sse")
    assert ev[0] == Start(id="msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK", model="claude-3-opus-latest",
                          usage=Usage(input_tokens=11, output_tokens=1))
    assert ev[1] == BlockStart(index=0, block="text")
    assert joined(ev, "text") == "Hello there!"
    # the file has no trailing blank line: message_stop arrives through parser.flush()
    assert ev[-1] == Finish(reason="stop", usage=Usage(input_tokens=11, output_tokens=6))


def test_text_basic_without_flush_finishes_at_close() -> None:
    parser = SSEParser()
    dec = StreamDecoder("m")
    out: list[Event] = []
    for e in parser.feed((FIX / "stream_text_basic.sse").read_bytes()):
        out.extend(dec.feed(e))
    assert not any(isinstance(e, Finish) for e in out)  # message_stop still pending in the parser
    out.extend(dec.close())
    assert out[-1] == Finish(reason="stop", usage=Usage(input_tokens=11, output_tokens=6))
    assert dec.close() == []


def test_text_tool_use() -> None:
    ev = decode_fixture("stream_text_tool_use.sse", seed=7)
    assert joined(ev, "text") == "I'll check the current weather in Paris for you."
    starts = [e for e in ev if isinstance(e, BlockStart)]
    assert starts[1] == BlockStart(index=1, block="tool_call", tool_call_id="toolu_01NRLabsLyVHZPKxbKvkfSMn",
                                   tool_name="get_weather")
    assert joined(ev, "arguments", 1) == '{"location": "Paris"}'
    assert orjson.loads(joined(ev, "arguments", 1)) == {"location": "Paris"}
    assert ev[-1] == Finish(reason="tool_calls", usage=Usage(input_tokens=377, output_tokens=65))


def test_thinking_signature_text() -> None:
    name = "stream_thinking_signature_text.sse"
    ev = decode_fixture(name, seed=3)
    assert ev[1] == BlockStart(index=0, block="thinking")
    thinking = joined(ev, "thinking", 0)
    assert thinking == fixture_deltas(name, "thinking_delta", "thinking")
    assert thinking.startswith("This is a straightforward question about pedestrian safety")
    sig = joined(ev, "signature", 0)
    assert sig == fixture_deltas(name, "signature_delta", "signature")
    assert sig.startswith("EvMCCkYICxgCKkCHP2c")
    text = joined(ev, "text", 1)
    assert text == fixture_deltas(name, "text_delta", "text")
    assert text.endswith("prioritize safety over speed when crossing streets.")
    assert ev[-1] == Finish(reason="stop", usage=Usage(input_tokens=43, output_tokens=282))


def test_tool_use_cut_by_max_tokens_is_closed() -> None:
    name = "stream_tool_use_max_tokens_padded.sse"
    ev = decode_fixture(name, seed=5)
    assert joined(ev, "text", 0).startswith("I'll create a comprehensive tax guide")
    args = joined(ev, "arguments", 1)
    assert args == fixture_deltas(name, "input_json_delta", "partial_json")
    assert args.startswith('{"filename": "taxes.txt", "lines_of_text": [')
    # no content_block_stop upstream: the decoder closes the tool block before Finish
    assert ev[-2] == BlockStop(index=1)
    assert ev[-1] == Finish(reason="length", usage=Usage(input_tokens=450, output_tokens=124))


def test_cache_usage_and_skipped_compaction_block() -> None:
    ev = decode_fixture("stream_cache_usage.sse", seed=11)
    assert ev[0].usage == Usage(input_tokens=100 + 55096, output_tokens=7, cached_tokens=55096)
    # the compaction block (index 0) has no neutral form; only the text block (index 1) appears
    assert [e for e in ev if isinstance(e, BlockStart)] == [BlockStart(index=1, block="text")]
    assert joined(ev, "text") == "Hello! 👋"
    # message_delta counts are cumulative and overwrite message_start's (as the SDK does)
    assert ev[-1] == Finish(reason="stop", usage=Usage(input_tokens=181, output_tokens=8))


def test_fallback_text() -> None:
    ev = decode_fixture("stream_request_fallback_text.sse")
    assert joined(ev, "text") == "2"
    assert ev[-1] == Finish(reason="stop", usage=Usage(input_tokens=20, output_tokens=5))


def test_error_event_mid_stream() -> None:
    ev = decode_fixture("stream_error_overloaded.SYNTHETIC.sse")
    assert joined(ev, "text") == "Hello"
    assert ev[-1] == Error(status=529, message="Overloaded", error_type="overloaded_error")
    assert not any(isinstance(e, (Finish, BlockStop)) for e in ev)


@pytest.mark.parametrize(
    ("etype", "status"),
    [
        ("overloaded_error", 529),
        ("rate_limit_error", 429),
        ("api_error", 500),
        ("invalid_request_error", 400),
        ("authentication_error", 401),
        ("permission_error", 403),
        ("not_found_error", 404),
        ("request_too_large", 413),
        ("timeout_error", 504),
        ("billing_error", 402),
        ("something_new", 502),
    ],
)
def test_error_status_from_type(etype: str, status: int) -> None:
    dec = StreamDecoder("m")
    data = orjson.dumps({"type": "error", "error": {"type": etype, "message": "boom"}})
    out = dec.feed(SSEEvent("error", data))
    assert out == [Error(status=status, message="boom", error_type=etype)]
    assert dec.feed(SSEEvent("message_stop", b'{"type":"message_stop"}')) == []
    assert dec.close() == []


def test_non_json_error_event() -> None:
    dec = StreamDecoder("m")
    assert dec.feed(SSEEvent("error", b"upstream exploded")) == [Error(status=502, message="upstream exploded")]


def test_truncated_stream_is_an_error() -> None:
    raw = (FIX / "stream_text_basic.sse").read_bytes()
    cut = raw[: raw.index(b"event: content_block_stop")]
    ev = decode_bytes(cut)
    assert joined(ev, "text") == "Hello there!"
    assert isinstance(ev[-1], Error) and ev[-1].status == 502


def test_empty_stream_is_an_error() -> None:
    dec = StreamDecoder("m")
    out = dec.close()
    assert isinstance(out[0], Start) and isinstance(out[-1], Error)


def test_delta_without_block_start_and_empty_deltas() -> None:
    dec = StreamDecoder("m")
    out: list[Event] = []
    for etype, obj in [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "c",
                                                                "usage": {"input_tokens": 5}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "hi"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("content_block_start", {"type": "content_block_start", "index": 2,
                                 "content_block": {"type": "redacted_thinking", "data": "REDACTED"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "stop_sequence",
                                                              "stop_sequence": "END"},
                           "usage": {"output_tokens": 3}}),
        ("message_stop", {"type": "message_stop"}),
    ]:
        out.extend(dec.feed(SSEEvent(etype, orjson.dumps(obj))))
    check_order(out)
    assert out[1:] == [
        BlockStart(index=0, block="text"),
        BlockDelta(index=0, text="hi"),
        BlockStop(index=0),
        BlockStart(index=1, block="tool_call", tool_call_id="t1", tool_name="f"),
        BlockDelta(index=1, arguments="{}"),  # a tool with no input deltas still gets "{}"
        BlockStop(index=1),
        BlockStart(index=2, block="thinking"),
        BlockDelta(index=2, redacted="REDACTED"),
        BlockStop(index=2),
        Finish(reason="stop_sequence", usage=Usage(input_tokens=5, output_tokens=3), stop_sequence="END"),
    ]


# ---------------------------------------------------------------- non-stream responses


def load(name: str) -> dict[str, Any]:
    return orjson.loads((FIX / name).read_bytes())


def test_response_cache_read() -> None:
    resp = response_to_neutral(load("nonstream_cache_read.json"))
    assert resp.id == "msg_01KPaKTJSqAKoZri7Ujrny58"
    assert resp.usage == Usage(input_tokens=3 + 1111 + 418, output_tokens=33, cached_tokens=1111,
                               cache_creation_tokens=418)
    assert resp.finish_reason == "stop"
    assert resp.content == [Text("Python is a beginner-friendly, versatile programming language widely used for "
                                 "web development, data science, machine learning, automation, and scientific "
                                 "computing.")]
    back = response_from_neutral(resp, "alias")
    assert back["usage"] == {"input_tokens": 3, "output_tokens": 33, "cache_creation_input_tokens": 418,
                             "cache_read_input_tokens": 1111}
    assert back["model"] == "alias" and back["id"] == "msg_01KPaKTJSqAKoZri7Ujrny58"
    assert back["stop_reason"] == "end_turn" and back["stop_sequence"] is None


def test_response_cache_creation_fixture() -> None:
    resp = response_to_neutral(load("nonstream_cache_creation.json"))
    assert resp.usage == Usage(input_tokens=1114, output_tokens=406, cached_tokens=1111)
    assert usage_from_claude(load("nonstream_cache_creation.json")["usage"]) == resp.usage


def test_response_parallel_tool_use() -> None:
    body = load("nonstream_parallel_tool_use.json")
    resp = response_to_neutral(body)
    calls = [p for p in resp.content if isinstance(p, ToolCall)]
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("toolu_0167cfEnoQaPviGdVXA95zcu", "retrieve_entity_info", '{"name":"Alice"}'),
        ("toolu_01EEe2V5HD1Ac4rKiUR4HD2T", "retrieve_entity_info", '{"name":"Bob"}'),
        ("toolu_01XFyAjstT3966qvRynZyVPo", "retrieve_entity_info", '{"name":"Charlie"}'),
        ("toolu_013mnQZbgtK2oe3Mo3XKJsx3", "retrieve_entity_info", '{"name":"Daisy"}'),
    ]
    assert resp.finish_reason == "tool_calls"
    back = response_from_neutral(resp, body["model"])
    assert back["content"] == body["content"]
    assert back["stop_reason"] == "tool_use"


def test_response_thinking_tool_use_round_trip() -> None:
    body = load("nonstream_thinking_tool_use.json")
    resp = response_to_neutral(body)
    th = resp.content[0]
    assert isinstance(th, Thinking) and th.source == "claude" and th.signature.startswith("EqEECkYICxgCKkAo3UA4")
    assert isinstance(resp.content[2], ToolCall) and resp.content[2].arguments == "{}"
    back = response_from_neutral(resp, body["model"])
    for key in ("id", "content", "model", "role", "stop_reason", "stop_sequence", "type"):
        assert back[key] == body[key], key
    assert back["usage"]["input_tokens"] == 398 and back["usage"]["output_tokens"] == 155


@pytest.mark.parametrize(
    ("claude_reason", "neutral", "back"),
    [
        ("end_turn", "stop", "end_turn"),
        ("max_tokens", "length", "max_tokens"),
        ("tool_use", "tool_calls", "tool_use"),
        ("stop_sequence", "stop_sequence", "stop_sequence"),
        ("refusal", "content_filter", "refusal"),
        ("model_context_window_exceeded", "length", "max_tokens"),
        ("pause_turn", "stop", "end_turn"),
        (None, "stop", "end_turn"),
    ],
)
def test_stop_reason_mapping(claude_reason: str | None, neutral: str, back: str) -> None:
    body = {"id": "msg_x", "model": "c", "content": [], "stop_reason": claude_reason,
            "stop_sequence": "##" if claude_reason == "stop_sequence" else None, "usage": {}}
    resp = response_to_neutral(body)
    assert resp.finish_reason == neutral
    out = response_from_neutral(resp, "c")
    assert out["stop_reason"] == back
    assert out["stop_sequence"] == ("##" if claude_reason == "stop_sequence" else None)


def test_response_from_foreign_neutral() -> None:
    resp = Response(
        id="",
        model="gpt",
        content=[
            Thinking(text="hmm", signature="gsig", source="gemini"),
            Thinking(redacted="enc", source="openai"),
            Text("hello"),
            ToolCall(id="call.1:x", name="f", arguments='{"a":1}'),
            ToolCall(id="call_2", name="g", arguments="not json"),
        ],
        finish_reason="tool_calls",
        usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=4),
    )
    out = response_from_neutral(resp, "alias")
    assert out["id"].startswith("msg_")
    assert out["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "gemini:gsig"},
        {"type": "redacted_thinking", "data": "openai:enc"},
        {"type": "text", "text": "hello"},
        {"type": "tool_use", "id": "call_1_x", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {"raw_arguments": "not json"}},
    ]
    assert out["usage"] == {"input_tokens": 6, "output_tokens": 5, "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 4}
    # the tagged signatures come back to their family on the next request
    req = request_to_neutral({"model": "c", "max_tokens": 5, "messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": out["content"]}]})
    parts = req.messages[1].content
    assert parts[0] == Thinking(text="hmm", signature="gsig", source="gemini")
    assert parts[1] == Thinking(redacted="enc", source="openai")
    # ... and Claude never receives them
    body = request_from_neutral(req, "claude-x")
    assert [b["type"] for b in body["messages"][1]["content"]] == ["text", "tool_use", "tool_use"]


# ---------------------------------------------------------------- stream encoding + the SDK


@pytest.mark.parametrize("name", [n for n in STREAM_FIXTURES if "error" not in n])
def test_encoder_replays_fixture_through_sdk(name: str) -> None:
    events = decode_fixture(name, seed=2)
    raw = encode_all(events, model="alias")
    frames = sse_frames(raw)
    # every frame names its type; indexes run 0.. in start order
    assert all(ev == obj["type"] for ev, obj in frames)
    starts = [obj["index"] for _, obj in frames if obj["type"] == "content_block_start"]
    assert starts == list(range(len(starts)))
    assert frames[0][1]["message"]["model"] == "alias"
    assert frames[-1][1] == {"type": "message_stop"}
    # decoding our own output gives the same neutral stream (indexes renumbered)
    again = decode_bytes(raw, seed=9)
    assert joined(again, "text") == joined(events, "text")
    assert joined(again, "thinking") == joined(events, "thinking")
    assert joined(again, "arguments") == joined(events, "arguments")
    assert again[-1] == events[-1]
    # the official accumulator agrees
    msg = sdk_final(raw)
    fin = events[-1]
    assert isinstance(fin, Finish) and fin.usage is not None
    assert msg.id == events[0].id
    assert msg.model == "alias"
    assert msg.usage.input_tokens == fin.usage.input_tokens - fin.usage.cached_tokens - fin.usage.cache_creation_tokens
    assert msg.usage.output_tokens == fin.usage.output_tokens
    assert msg.usage.cache_read_input_tokens == fin.usage.cached_tokens
    assert msg.stop_reason == {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}[fin.reason]
    texts = "".join(b.text for b in msg.content if b.type == "text")
    assert texts == joined(events, "text")
    thinking = [b for b in msg.content if b.type == "thinking"]
    if thinking:
        assert thinking[0].thinking == joined(events, "thinking")
        assert thinking[0].signature == joined(events, "signature")


def test_sdk_tool_use_input() -> None:
    msg = sdk_final(encode_all(decode_fixture("stream_text_tool_use.sse", seed=4)))
    tool = msg.content[1]
    assert tool.type == "tool_use" and tool.id == "toolu_01NRLabsLyVHZPKxbKvkfSMn" and tool.name == "get_weather"
    assert tool.input == {"location": "Paris"}


def test_sdk_raises_on_error_event() -> None:
    events = decode_fixture("stream_error_overloaded.SYNTHETIC.sse")
    raw = encode_all(events)
    frames = sse_frames(raw)
    assert frames[-1] == ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk_final(raw)
    assert info.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


@pytest.mark.parametrize(
    ("status", "etype", "expected"),
    [(429, None, "rate_limit_error"), (500, None, "api_error"), (503, "server_error", "api_error"),
     (529, None, "overloaded_error"), (400, None, "invalid_request_error"), (502, "rate_limit_error",
                                                                             "rate_limit_error")],
)
def test_encoder_error_types(status: int, etype: str | None, expected: str) -> None:
    enc = StreamEncoder("m")
    head = enc.encode(Start(id="msg_1", model="x"))
    raw = head + enc.error(status, "nope", etype)
    assert sse_frames(raw)[-1] == ("error", {"type": "error", "error": {"type": expected, "message": "nope"}})
    with pytest.raises(anthropic.APIStatusError):
        sdk_final(raw)
    assert enc.encode(Finish(reason="stop")) == b""


def test_encoder_openai_like_stream_late_tool_name_and_interleaving() -> None:
    """A stream as an OpenAI-chat decoder may produce: no input usage at Start, usage only in
    Finish, two parallel tool calls interleaved, the second one's name arriving late."""
    events: list[Event] = [
        Start(id="chatcmpl-1", model="gpt"),
        BlockStart(index=0, block="text"),
        BlockDelta(index=0, text="Let me look."),
        BlockStop(index=0),
        BlockStart(index=1, block="tool_call", tool_call_id="call_a", tool_name="lookup"),
        BlockStart(index=2, block="tool_call", tool_call_id="call.b"),  # no name yet
        BlockDelta(index=1, arguments='{"q":'),
        BlockDelta(index=2, arguments='{"city"'),
        BlockStart(index=2, block="tool_call", tool_name="weather"),  # the name, late
        BlockDelta(index=1, arguments='"x"}'),
        BlockDelta(index=2, arguments=':"Paris"}'),
        BlockStop(index=2),
        BlockStop(index=1),
        UsageUpdate(Usage(input_tokens=30, output_tokens=9, cached_tokens=10)),
        Finish(reason="tool_calls"),
    ]
    raw = encode_all(events)
    frames = sse_frames(raw)
    kinds = [(o["type"], o.get("index")) for _, o in frames]
    assert kinds == [
        ("message_start", None),
        ("content_block_start", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2), ("content_block_delta", 2), ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None), ("message_stop", None),
    ]
    assert frames[8][1]["content_block"] == {"type": "tool_use", "id": "call_b", "name": "weather", "input": {}}
    msg = sdk_final(raw)
    assert [b.type for b in msg.content] == ["text", "tool_use", "tool_use"]
    assert msg.content[1].input == {"q": "x"} and msg.content[2].input == {"city": "Paris"}
    assert msg.usage.input_tokens == 20 and msg.usage.cache_read_input_tokens == 10
    assert msg.usage.output_tokens == 9 and msg.stop_reason == "tool_use"


def test_encoder_text_deltas_are_not_delayed() -> None:
    enc = StreamEncoder("m")
    assert b"message_start" in enc.encode(Start(id="msg_1", model="x"))
    out = enc.encode(BlockStart(index=0, block="text"))
    assert b"content_block_start" in out
    out = enc.encode(BlockDelta(index=0, text="Hi"))
    assert sse_frames(out) == [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                        "delta": {"type": "text_delta", "text": "Hi"}})]


def test_encoder_starts_blocks_and_message_when_upstream_skips_them() -> None:
    events: list[Event] = [
        BlockDelta(index=3, thinking="pondering"),
        BlockDelta(index=3, signature="sig"),
        BlockDelta(index=5, text="answer"),
        Finish(reason="stop", usage=Usage(input_tokens=2, output_tokens=3)),
    ]
    raw = encode_all(events)
    frames = sse_frames(raw)
    assert frames[0][0] == "message_start"
    msg = sdk_final(raw)
    assert msg.content[0].type == "thinking" and msg.content[0].thinking == "pondering"
    assert msg.content[0].signature == "sig"
    assert msg.content[1].type == "text" and msg.content[1].text == "answer"
    stops = [o["index"] for _, o in frames if o["type"] == "content_block_stop"]
    assert stops == [0, 1]


def test_encoder_redacted_thinking_and_family_tag() -> None:
    events: list[Event] = [
        Start(id="resp_1", model="o3", usage=Usage(input_tokens=7)),
        BlockStart(index=0, block="thinking"),
        BlockDelta(index=0, redacted="ENC"),
        BlockStop(index=0),
        BlockStart(index=1, block="thinking"),
        BlockDelta(index=1, thinking="t"),
        BlockDelta(index=1, signature="s"),
        BlockStop(index=1),
        Finish(reason="stop"),
    ]
    msg = sdk_final(encode_all(events, upstream_family="openai"))
    assert msg.content[0].type == "redacted_thinking" and msg.content[0].data == "openai:ENC"
    assert msg.content[1].signature == "openai:s"
    assert msg.usage.input_tokens == 7
    msg = sdk_final(encode_all(events))
    assert msg.content[0].data == "ENC" and msg.content[1].signature == "s"


def test_encoder_stop_sequence_and_closing_unstopped_blocks() -> None:
    events: list[Event] = [
        Start(id="msg_9", model="x"),
        BlockStart(index=0, block="text"),
        BlockDelta(index=0, text="a"),
        Finish(reason="stop_sequence", stop_sequence="STOP", usage=Usage(input_tokens=1, output_tokens=1)),
    ]
    raw = encode_all(events)
    frames = sse_frames(raw)
    assert [o["type"] for _, o in frames][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    msg = sdk_final(raw)
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "STOP"


# ---------------------------------------------------------------- requests: client -> neutral


FULL_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 2048,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Look:"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                            "data": "JVBERi0x"}, "title": "doc.pdf"},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should call.", "signature": "c2ln"},
            {"type": "redacted_thinking", "data": "cmVk"},
            {"type": "text", "text": "Calling."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "no clock"}]},
            {"type": "text", "text": "And tomorrow?", "cache_control": {"type": "ephemeral"}},
        ]},
    ],
    "tools": [
        {"name": "get_weather", "description": "Weather", "input_schema": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "temperature": 0.5,
    "top_k": 40,
    "stop_sequences": ["###"],
    "stream": True,
    "metadata": {"user_id": "u-1"},
    "service_tier": "auto",
}


def test_request_to_neutral_full() -> None:
    req = request_to_neutral(FULL_BODY)
    assert req.model == "claude-sonnet-4-5" and req.max_tokens == 2048 and req.stream is True
    assert req.system == [Text("Be brief.", cache_control={"type": "ephemeral"})]
    u0, a1, u2 = req.messages
    assert u0.content == [
        Text("Look:"),
        Image(data="iVBORw0KGgo=", mime_type="image/png"),
        Image(url="https://example.com/a.jpg"),
        File(data="JVBERi0x", mime_type="application/pdf", filename="doc.pdf"),
    ]
    assert a1.content == [
        Thinking(text="I should call.", signature="c2ln", source="claude"),
        Thinking(redacted="cmVk", source="claude"),
        Text("Calling."),
        ToolCall(id="toolu_1", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCall(id="toolu_2", name="get_time", arguments="{}"),
    ]
    assert u2.content == [
        ToolResult(call_id="toolu_1", content="18C"),
        ToolResult(call_id="toolu_2", content=[Text("no clock")], is_error=True),
        Text("And tomorrow?", cache_control={"type": "ephemeral"}),
    ]
    assert req.tools[0] == Tool(name="get_weather", description="Weather",
                                parameters=FULL_BODY["tools"][0]["input_schema"])
    assert req.tools[2] == Tool(name="web_search", raw=FULL_BODY["tools"][2], raw_format="claude")
    assert req.tool_choice == ToolChoice("auto") and req.parallel_tool_calls is False
    assert (req.temperature, req.top_p, req.top_k, req.stop) == (0.5, None, 40, ["###"])
    assert req.metadata == {"user_id": "u-1"} and req.user == "u-1"
    assert req.extra == {"claude": {"service_tier": "auto"}}
    assert req.reasoning is None


def test_request_round_trip() -> None:
    body = request_from_neutral(request_to_neutral(FULL_BODY), "claude-sonnet-4-5")
    assert body == FULL_BODY


@pytest.mark.parametrize(
    ("extra", "reasoning"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}},
         Reasoning(budget=4096, include_thoughts=True)),
        ({"thinking": {"type": "adaptive"}}, Reasoning(effort="auto", include_thoughts=True)),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}},
         Reasoning(effort="high", include_thoughts=True)),
        ({"thinking": {"type": "disabled"}}, Reasoning(effort="none", budget=0, include_thoughts=False)),
        ({"output_config": {"effort": "low"}}, Reasoning(effort="low")),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000, "display": "omitted"}},
         Reasoning(budget=2000, include_thoughts=False)),
    ],
)
def test_request_thinking_to_neutral(extra: dict[str, Any], reasoning: Reasoning) -> None:
    body = {"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], **extra}
    assert request_to_neutral(body).reasoning == reasoning


def test_request_output_format_and_model_argument() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    body = {"max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}}}
    req = request_to_neutral(body, "from-url")
    assert req.model == "from-url"
    assert req.response_format == ResponseFormat(type="json_schema", schema=schema, strict=True)
    beta = {"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
            "output_format": {"type": "json_schema", "schema": schema}}
    assert request_to_neutral(beta).response_format == req.response_format


def test_request_tool_choice_variants() -> None:
    def choice(tc: dict[str, Any]) -> tuple[ToolChoice | None, bool | None]:
        req = request_to_neutral({"model": "c", "max_tokens": 1, "tool_choice": tc,
                                  "messages": [{"role": "user", "content": "x"}]})
        return req.tool_choice, req.parallel_tool_calls

    assert choice({"type": "any"}) == (ToolChoice("required"), None)
    assert choice({"type": "none"}) == (ToolChoice("none"), None)
    assert choice({"type": "tool", "name": "f", "disable_parallel_tool_use": False}) == (
        ToolChoice("tool", name="f"), True)


def test_max_tokens_required_unless_defaulted() -> None:
    body = {"model": "c", "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(BadRequest) as info:
        request_to_neutral(body)
    assert info.value.param == "max_tokens"
    assert request_to_neutral(body, default_max_tokens=32000).max_tokens == 32000


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "c", "max_tokens": 1}, "messages"),
        ({"model": "c", "max_tokens": 1, "messages": []}, "messages"),
        ({"model": "c", "max_tokens": 1, "messages": "hi"}, "messages"),
        ({"model": "c", "max_tokens": 1, "messages": ["hi"]}, "messages[0]"),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
         "messages[0].content[0].text"),
        ({"model": "c", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
          "tools": [{"name": "a", "input_schema": {"type": "object"}}, {"name": "b", "input_schema": "str"}]},
         "tools[1].input_schema"),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
          "tools": [{"name": "b"}]}, "tools[0].input_schema"),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
          "system": 5}, "system"),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
          "thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
          "tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "content": "x"}]}]}, "messages[0].content[0].tool_use_id"),
    ],
)
def test_request_validation(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        request_to_neutral(body)
    assert info.value.param == param
    assert info.value.status == 400


def test_server_tool_blocks_kept_in_place() -> None:
    blocks = [
        {"type": "text", "text": "searching"},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        {"type": "text", "text": "found"},
    ]
    body = {"model": "c", "max_tokens": 5, "messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": blocks}]}
    req = request_to_neutral(body)
    assert req.messages[1].content == [Text("searching"), Text("found")]
    assert request_from_neutral(req, "c")["messages"][1]["content"] == blocks


# ---------------------------------------------------------------- requests: neutral -> Claude upstream


def openai_like_request(**kw: Any) -> Request:
    """What a chat-completions client's conversation looks like in neutral form."""
    base = dict(
        model="gpt-4o",
        system=[Text("sys one"), Text("sys two")],
        messages=[
            Message("user", [Text("What's the weather?"),
                             Image(url="data:image/jpeg;base64,/9j/4AAQ"),
                             Image(url="https://example.com/cat.png")]),
            Message("assistant", [Thinking(text="foreign thought", signature="x", source="openai"),
                                  Text(""),
                                  ToolCall(id="call|1", name="weather", arguments='{"city":"Paris"}'),
                                  ToolCall(id="call|2", name="weather", arguments='{"city":"Rome"}')]),
            Message("user", [ToolResult(call_id="call|1", content="sunny")]),
            Message("user", [ToolResult(call_id="call|2", content=[Text("rain"), Image(data="iVBORxx")])]),
            Message("user", [Text("Thanks")]),
        ],
        tools=[Tool(name="weather", description="w", parameters={"properties": {"city": {"type": "string"}}})],
        stream=True,
    )
    base.update(kw)
    return Request(**base)  # type: ignore[arg-type]


def test_temperature_wins_over_top_p() -> None:
    body = request_from_neutral(openai_like_request(temperature=0.3, top_p=0.8), "c")
    assert body["temperature"] == 0.3 and "top_p" not in body
    body = request_from_neutral(openai_like_request(top_p=0.8), "c")
    assert body["top_p"] == 0.8 and "temperature" not in body


def test_request_from_neutral_openai_shaped() -> None:
    body = request_from_neutral(openai_like_request(temperature=0.2, stop=["x"], user="alice"), "claude-up")
    assert body["model"] == "claude-up" and body["max_tokens"] == 32000 and body["stream"] is True
    assert body["system"] == [{"type": "text", "text": "sys one"}, {"type": "text", "text": "sys two"}]
    assert body["temperature"] == 0.2 and body["stop_sequences"] == ["x"]
    assert body["metadata"] == {"user_id": "alice"}
    assert body["tools"] == [{"name": "weather", "description": "w", "input_schema": {
        "properties": {"city": {"type": "string"}}, "type": "object"}}]
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[0]["content"] == [
        {"type": "text", "text": "What's the weather?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]
    # foreign thinking and empty text dropped; ids sanitised
    assert msgs[1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Rome"}},
    ]
    # both results grouped into one user turn right after the assistant turn, before the text
    assert msgs[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [
            {"type": "text", "text": "rain"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORxx"}}]},
        {"type": "text", "text": "Thanks"},
    ]


def test_duplicate_tool_results_dropped() -> None:
    req = openai_like_request()
    req.messages.insert(4, Message("user", [ToolResult(call_id="call|1", content="again")]))
    msgs = request_from_neutral(req, "c")["messages"]
    ids = [b["tool_use_id"] for b in msgs[2]["content"] if b["type"] == "tool_result"]
    assert ids == ["call_1", "call_2"]


@pytest.mark.parametrize(
    ("reasoning", "max_tokens", "thinking", "out_max"),
    [
        (Reasoning(effort="high"), None, {"type": "enabled", "budget_tokens": 24576}, 32000),
        (Reasoning(effort="minimal"), None, {"type": "enabled", "budget_tokens": 1024}, 32000),
        (Reasoning(budget=100), 4000, {"type": "enabled", "budget_tokens": 1024}, 4000),
        (Reasoning(effort="auto"), None, {"type": "enabled", "budget_tokens": 8192}, 32000),
        (Reasoning(budget=-1), 500, {"type": "enabled", "budget_tokens": 8192}, 8692),
        (Reasoning(effort="medium"), 1000, {"type": "enabled", "budget_tokens": 8192}, 9192),
        (Reasoning(effort="max"), None, {"type": "enabled", "budget_tokens": 128000}, 132096),
        (Reasoning(effort="none"), None, {"type": "disabled"}, 32000),
        (Reasoning(budget=0), 10, {"type": "disabled"}, 10),
    ],
)
def test_reasoning_to_claude_thinking(reasoning: Reasoning, max_tokens: int | None,
                                      thinking: dict[str, Any], out_max: int) -> None:
    req = Request(model="x", messages=[Message("user", [Text("hi")])], reasoning=reasoning,
                  max_tokens=max_tokens, temperature=0.7, top_k=5, top_p=0.5)
    body = request_from_neutral(req, "c")
    assert body["thinking"] == thinking
    assert body["max_tokens"] == out_max
    assert body["thinking"]["type"] == "disabled" or body["max_tokens"] > body["thinking"]["budget_tokens"]
    if thinking["type"] == "enabled":
        # Anthropic rejects temperature/top_k (and top_p < 0.95) with thinking
        assert "temperature" not in body and "top_k" not in body and "top_p" not in body
    else:
        assert body["temperature"] == 0.7 and body["top_k"] == 5 and "top_p" not in body


def test_forced_tool_choice_disables_thinking() -> None:
    req = openai_like_request(reasoning=Reasoning(effort="high"), tool_choice=ToolChoice("required"),
                              parallel_tool_calls=False)
    body = request_from_neutral(req, "c")
    assert "thinking" not in body
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    body = request_from_neutral(openai_like_request(tool_choice=ToolChoice("tool", name="weather")), "c")
    assert body["tool_choice"] == {"type": "tool", "name": "weather"}
    body = request_from_neutral(openai_like_request(parallel_tool_calls=False), "c")
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    body = request_from_neutral(openai_like_request(tool_choice=ToolChoice("none")), "c")
    assert body["tool_choice"] == {"type": "none"}
    no_tools = request_from_neutral(openai_like_request(tools=[], tool_choice=ToolChoice("required")), "c")
    assert "tool_choice" not in no_tools and "tools" not in no_tools


def test_response_format_to_output_config() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    req = openai_like_request(response_format=ResponseFormat(type="json_schema", schema=schema, name="x"))
    body = request_from_neutral(req, "c")
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_claude_thinking_replayed_only_when_signed() -> None:
    req = Request(model="x", messages=[
        Message("user", [Text("q")]),
        Message("assistant", [Thinking(text="mine", signature="SIG", source="claude"),
                              Thinking(text="unsigned", source="claude"),
                              Thinking(redacted="R", source="claude"),
                              Thinking(text="gem", signature="G", source="gemini"),
                              Text("answer")]),
    ])
    content = request_from_neutral(req, "c")["messages"][1]["content"]
    assert content == [
        {"type": "thinking", "thinking": "mine", "signature": "SIG"},
        {"type": "redacted_thinking", "data": "R"},
        {"type": "text", "text": "answer"},
    ]


def test_files_and_unsupported_parts() -> None:
    pdf = File(data="JVBERi0xLjQ=", mime_type="application/pdf", filename="a.pdf")
    txt = File(data=base64.b64encode(b"plain words").decode(), mime_type="text/plain")
    by_id = File(file_id="file_123")
    by_url = File(url="https://example.com/x.pdf")
    img_file = File(url="data:image/gif;base64,R0lGODlh")
    req = Request(model="x", messages=[Message("user", [pdf, txt, by_id, by_url, img_file])])
    content = request_from_neutral(req, "c")["messages"][0]["content"]
    assert content == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": "JVBERi0xLjQ="}, "title": "a.pdf"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
        {"type": "document", "source": {"type": "file", "file_id": "file_123"}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/x.pdf"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lGODlh"}},
    ]
    with pytest.raises(Unsupported) as info:
        request_from_neutral(Request(model="x", messages=[
            Message("user", [Text("hi")]), Message("assistant", [Text("yo")]),
            Message("user", [Text("listen"), Audio(data="AAAA", format="wav")])]), "c")
    assert info.value.param == "messages[2].content[1]" and "audio" in info.value.message
    with pytest.raises(Unsupported) as info:
        request_from_neutral(Request(model="x", messages=[Message("user", [
            File(data="UEsDBA==", mime_type="application/zip")])]), "c")
    assert "application/zip" in info.value.message
    with pytest.raises(Unsupported) as info:
        request_from_neutral(Request(model="x", messages=[Message("user", [Text("x")])], tools=[
            Tool(name="code_interpreter", raw={"type": "code_interpreter"}, raw_format="openai")]), "c")
    assert info.value.param == "tools[0]"


def test_extra_fields_and_empty_conversation() -> None:
    req = Request(model="x", extra={"claude": {"service_tier": "auto", "output_config": {"task_budget": 5}},
                                    "openai": {"seed": 1}},
                  response_format=ResponseFormat(type="json_schema", schema={"type": "object"}))
    body = request_from_neutral(req, "c")
    assert body["service_tier"] == "auto" and "seed" not in body
    assert body["output_config"] == {"task_budget": 5, "format": {"type": "json_schema",
                                                                  "schema": {"type": "object"}}}
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "."}]}]


def test_module_surface() -> None:
    assert claude.FORMAT == "claude"
    for name in ("request_to_neutral", "request_from_neutral", "response_to_neutral", "response_from_neutral",
                 "StreamDecoder", "StreamEncoder", "usage_from_claude"):
        assert hasattr(claude, name)
    assert usage_from_claude({"input_tokens": 1, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 3,
                              "output_tokens": 4}) == Usage(input_tokens=6, output_tokens=4, cached_tokens=2,
                                                            cache_creation_tokens=3)
    assert usage_from_claude({}) == Usage()


def test_response_from_neutral_is_a_valid_sdk_message() -> None:
    for name in ("nonstream_thinking_tool_use.json", "nonstream_parallel_tool_use.json"):
        out = response_from_neutral(response_to_neutral(load(name)), "alias")
        msg = anthropic.types.Message.model_validate(out)
        assert msg.model == "alias" and msg.content[-1].type == "tool_use"


def test_cross_translation_with_openai_chat_module() -> None:
    """An OpenAI chat conversation (tool round trip) read by the openai_chat translator and written
    for a Claude upstream, and a Claude conversation written for an OpenAI upstream."""
    openai_chat = pytest.importorskip("crossroute.formats.openai_chat")
    if not hasattr(openai_chat, "request_to_neutral"):
        pytest.skip("openai_chat translator not available")
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
                {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "r1"},
            {"role": "tool", "tool_call_id": "call_2", "content": "r2"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    }
    out = request_from_neutral(openai_chat.request_to_neutral(body), "claude-x")
    assert out["system"] == [{"type": "text", "text": "sys"}]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in out["messages"][2]["content"]] == ["call_1", "call_2"]
    back = openai_chat.request_from_neutral(request_to_neutral({
        "model": "c", "max_tokens": 100, "system": "s",
        "messages": [{"role": "user", "content": "q"},
                     {"role": "assistant", "content": [
                         {"type": "thinking", "thinking": "t", "signature": "S"},
                         {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                   "content": "ok"}]}]}), "gpt")
    roles = [m["role"] for m in back["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
    assert back["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'
