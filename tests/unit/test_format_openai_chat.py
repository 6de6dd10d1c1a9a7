"""OpenAI chat translator: requests, responses, stream decoding of recorded fixtures, and the
encoder's output read back by the official openai SDK."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest

from crossroute.formats import openai_chat as oc
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

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "openai_chat"


# ---------------------------------------------------------------- helpers


def decode_bytes(raw: bytes, seed: int = 0, model: str = "m") -> list[Event]:
    """Feed ``raw`` in random-sized chunks through SSEParser and the decoder."""
    rng = random.Random(seed)
    parser = SSEParser()
    dec = oc.StreamDecoder(model)
    out: list[Event] = []
    pos = 0
    while pos < len(raw):
        n = rng.randint(1, 97)
        for ev in parser.feed(raw[pos : pos + n]):
            out.extend(dec.feed(ev))
        pos += n
    tail = parser.flush()
    if tail is not None:
        out.extend(dec.feed(tail))
    out.extend(dec.close())
    return out


def summarize(events: list[Event]) -> dict[str, Any]:
    """Blocks by index with their joined deltas, plus the terminal event; checks ordering rules."""
    assert events, "no events"
    blocks: dict[int, dict[str, Any]] = {}
    open_: set[int] = set()
    terminal: Event | None = None
    for k, ev in enumerate(events):
        assert terminal is None, f"event after terminal: {ev}"
        if isinstance(ev, Start):
            assert k == 0
        elif isinstance(ev, BlockStart):
            assert ev.index not in blocks, "block index reused"
            assert all(ev.index > i for i in blocks), "block indexes must increase"
            blocks[ev.index] = {"kind": ev.block, "id": ev.tool_call_id, "name": ev.tool_name, "data": ""}
            open_.add(ev.index)
        elif isinstance(ev, BlockDelta):
            assert ev.index in open_, f"delta for closed block {ev.index}"
            blocks[ev.index]["data"] += ev.text or ev.thinking or ev.arguments or ""
        elif isinstance(ev, BlockStop):
            assert ev.index in open_
            open_.discard(ev.index)
        elif isinstance(ev, Finish | Error):
            terminal = ev
    if isinstance(terminal, Finish):
        assert not open_, "blocks left open at Finish"
    return {"blocks": [blocks[i] for i in sorted(blocks)], "terminal": terminal, "start": events[0]}


def fixture_events(name: str, seed: int) -> dict[str, Any]:
    return summarize(decode_bytes((FIX / name).read_bytes(), seed))


# ---------------------------------------------------------------- fixtures through the decoder

SEEDS = [0, 1, 7, 42]


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_text_usage(seed: int) -> None:
    s = fixture_events("stream_text_usage.sse", seed)
    assert s["start"].id == "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL"
    assert s["start"].model == "gpt-4o-2024-08-06"
    assert s["start"].created == 1727346168
    assert [b["kind"] for b in s["blocks"]] == ["text"]
    assert s["blocks"][0]["data"] == (
        "I'm unable to provide real-time weather updates. To get the current weather in San Francisco,"
        " I recommend checking a reliable weather website or a weather app."
    )
    fin = s["terminal"]
    assert isinstance(fin, Finish) and fin.reason == "stop"
    assert fin.usage == Usage(input_tokens=14, output_tokens=30)


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_text_usage_2025(seed: int) -> None:
    s = fixture_events("stream_text_usage_2025.sse", seed)
    assert s["blocks"][0]["data"] == "The capital of the UK is London."
    assert s["terminal"].reason == "stop"
    assert s["terminal"].usage == Usage(input_tokens=78, output_tokens=9)


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_tool_call(seed: int) -> None:
    s = fixture_events("stream_tool_call_usage.sse", seed)
    [b] = s["blocks"]
    assert (b["kind"], b["id"], b["name"]) == ("tool_call", "call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather")
    assert b["data"] == '{"city":"New York City"}'
    assert s["terminal"].reason == "tool_calls"
    assert s["terminal"].usage == Usage(input_tokens=44, output_tokens=16)


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_tool_call_2025(seed: int) -> None:
    s = fixture_events("stream_tool_call_usage_2025.sse", seed)
    [b] = s["blocks"]
    assert (b["id"], b["name"], b["data"]) == (
        "call_ZR5UUuTt3pf61kjwAJIYdVMj",
        "get_capital",
        '{"country":"UK"}',
    )
    assert s["terminal"].usage == Usage(input_tokens=53, output_tokens=15)


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_parallel_tool_calls(seed: int) -> None:
    s = fixture_events("stream_parallel_tool_calls_usage.sse", seed)
    a, b = s["blocks"]
    assert (a["id"], a["name"]) == ("call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs")
    assert orjson.loads(a["data"]) == {"city": "Edinburgh", "country": "GB", "units": "c"}
    assert a["data"] == '{"city": "Edinburgh", "country": "GB", "units": "c"}'
    assert (b["id"], b["name"]) == ("call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price")
    assert b["data"] == '{"ticker": "AAPL", "exchange": "NASDAQ"}'
    assert s["terminal"].reason == "tool_calls"
    assert s["terminal"].usage == Usage(input_tokens=149, output_tokens=60)


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_refusal(seed: int) -> None:
    s = fixture_events("stream_refusal_usage.sse", seed)
    assert [b["kind"] for b in s["blocks"]] == ["text"]
    assert s["blocks"][0]["data"] == "I'm sorry, I can't assist with that request."
    assert s["terminal"].reason == "stop"  # kept as the upstream gave it
    assert s["terminal"].usage == Usage(input_tokens=79, output_tokens=11)


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_deepseek_reasoning(seed: int) -> None:
    s = fixture_events("stream_deepseek_reasoning_content.sse", seed)
    think, text = s["blocks"]
    assert think["kind"] == "thinking" and text["kind"] == "text"
    assert think["data"].startswith('Hmm, the user just said "Hello".')
    assert len(think["data"]) > 500
    assert text["data"] == "Hello there! 😊 How can I help you today?"
    assert s["terminal"].reason == "stop"
    assert s["terminal"].usage == Usage(input_tokens=6, output_tokens=212, reasoning_tokens=198)


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_error_midstream(seed: int) -> None:
    events = decode_bytes((FIX / "stream_error_midstream.SYNTHETIC.sse").read_bytes(), seed)
    s = summarize(events)
    assert s["blocks"][0]["data"] == "I'm unable"
    err = s["terminal"]
    assert isinstance(err, Error) and events[-1] is err
    assert err.status == 500 and err.error_type == "server_error"
    assert err.message == "The server had an error while processing your request. Sorry about that!"


def test_every_fixture_is_covered() -> None:
    covered = {
        "stream_text_usage.sse",
        "stream_text_usage_2025.sse",
        "stream_tool_call_usage.sse",
        "stream_tool_call_usage_2025.sse",
        "stream_parallel_tool_calls_usage.sse",
        "stream_refusal_usage.sse",
        "stream_deepseek_reasoning_content.sse",
        "stream_error_midstream.SYNTHETIC.sse",
        "nonstream_text_reasoning_tokens.json",
        "nonstream_tool_calls.json",
        "error_400.json",
        "error_429.SYNTHETIC.json",
    }
    assert {p.name for p in FIX.iterdir()} == covered


# ---------------------------------------------------------------- decoder edge cases


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> bytes:
    obj: dict[str, Any] = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "up"}
    obj["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    obj.update(top)
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def test_decoder_late_tool_name_and_id() -> None:
    raw = (
        _chunk({"role": "assistant"})
        + _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]})
        + _chunk({"tool_calls": [{"index": 0, "id": "call_late", "function": {"name": "f", "arguments": "1}"}}]})
        + _chunk({}, "tool_calls")
        + b"data: [DONE]\n\n"
    )
    s = summarize(decode_bytes(raw))
    assert s["blocks"] == [{"kind": "tool_call", "id": "call_late", "name": "f", "data": '{"a":1}'}]
    assert s["terminal"].reason == "tool_calls"


def test_decoder_tool_without_name_until_finish_and_no_index() -> None:
    raw = (
        _chunk({"role": "assistant", "content": "hi"})
        + _chunk({"tool_calls": [{"id": "c1", "function": {"name": "a", "arguments": "{}"}}]})
        + _chunk({"tool_calls": [{"id": "c2", "function": {"name": "b", "arguments": '{"x":'}}]})
        + _chunk({"tool_calls": [{"function": {"arguments": "2}"}}]})
        + _chunk({}, "function_call")
        + b"data: [DONE]\n\n"
    )
    s = summarize(decode_bytes(raw))
    assert [(b["kind"], b["id"], b["name"], b["data"]) for b in s["blocks"]] == [
        ("text", None, None, "hi"),
        ("tool_call", "c1", "a", "{}"),
        ("tool_call", "c2", "b", '{"x":2}'),
    ]
    assert s["terminal"].reason == "tool_calls"


def test_decoder_reasoning_field_usage_late_and_no_done() -> None:
    raw = (
        _chunk({"role": "assistant", "reasoning": "think"}, usage=None)
        + _chunk({"content": "ok"})
        + _chunk({}, "length")
        + _chunk(
            None,
            usage={"prompt_tokens": 5, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 2}},
        )
    )
    events = decode_bytes(raw[:-2])  # no [DONE], no final blank line: close() must flush
    s = summarize(events)
    assert [(b["kind"], b["data"]) for b in s["blocks"]] == [("thinking", "think"), ("text", "ok")]
    assert s["terminal"] == Finish("length", usage=Usage(input_tokens=5, output_tokens=7, cached_tokens=2))


def test_decoder_eof_without_finish_is_error() -> None:
    events = decode_bytes(_chunk({"role": "assistant", "content": "par"}))
    assert isinstance(events[-1], Error) and events[-1].status == 502


def test_decoder_ignores_comments_empty_and_garbage() -> None:
    dec = oc.StreamDecoder("m")
    assert dec.feed(SSEEvent(None, b"")) == []
    assert dec.feed(SSEEvent(None, b"not json")) == []
    evs = dec.feed(SSEEvent(None, b'  {"id":"x","choices":[{"index":0,"delta":{"content":""}}]}  '))
    assert [type(e) for e in evs] == [Start]
    evs = dec.feed(SSEEvent(None, b"[DONE]"))
    assert evs == [Finish("stop", usage=None)]
    assert dec.feed(SSEEvent(None, b'{"choices":[]}')) == [] and dec.close() == []


@pytest.mark.parametrize(
    ("err", "status", "etype", "code"),
    [
        (
            {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"},
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
        ),
        ({"message": "bad", "code": 400}, 400, None, None),
        ({"message": "x", "type": "weird"}, 500, "weird", None),
        ("plain string", 500, None, None),
    ],
)
def test_decoder_error_status(err: Any, status: int, etype: str | None, code: str | None) -> None:
    dec = oc.StreamDecoder("m")
    [ev] = dec.feed(SSEEvent(None, orjson.dumps({"error": err})))
    assert isinstance(ev, Error)
    assert (ev.status, ev.error_type, ev.code) == (status, etype, code)
    assert dec.feed(SSEEvent(None, b"[DONE]")) == [] and dec.close() == []


# ---------------------------------------------------------------- non-stream responses


def test_response_to_neutral_reasoning_tokens() -> None:
    r = oc.response_to_neutral(orjson.loads((FIX / "nonstream_text_reasoning_tokens.json").read_bytes()))
    assert r.id == "chatcmpl-BgzadlOEkRTXYim8s2TzQfnSpaZ4u" and r.model == "o3-mini-2025-01-31"
    assert r.created == 1749586227
    assert r.content == [
        Text(
            "The capital of Mexico is Mexico City. It is not only the seat of the federal government"
            " but also a major cultural, political, and economic center in the country."
        )
    ]
    assert r.finish_reason == "stop"
    assert r.usage == Usage(input_tokens=13, output_tokens=238, reasoning_tokens=192)


def test_response_to_neutral_tool_calls() -> None:
    r = oc.response_to_neutral(orjson.loads((FIX / "nonstream_tool_calls.json").read_bytes()))
    assert r.content == [ToolCall(id="call_iXFttys57ap0o16JSlC8yhYo", name="get_user_country", arguments="{}")]
    assert r.finish_reason == "tool_calls"
    assert r.usage == Usage(input_tokens=68, output_tokens=12)


def test_response_to_neutral_compat_shapes() -> None:
    r = oc.response_to_neutral(
        {
            "id": "x",
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "reasoning": "because",
                        "content": None,
                        "refusal": "no",
                        "function_call": {"name": "f", "arguments": {"a": 1}},
                    },
                    "finish_reason": "function_call",
                }
            ],
        }
    )
    assert r.content[0] == Thinking(text="because", source="openai")
    assert r.content[1] == Text("no")
    assert isinstance(r.content[2], ToolCall) and r.content[2].arguments == '{"a":1}'
    assert r.finish_reason == "tool_calls"
    assert r.usage == Usage()


def test_response_from_neutral_full_object() -> None:
    resp = Response(
        id="msg_01",
        model="claude-x",
        content=[
            Thinking(text="hm", signature="sig", source="claude"),
            Text("Hello "),
            Text("world"),
            ToolCall(id="toolu_1", name="get", arguments='{"q":"a"}'),
        ],
        finish_reason="tool_calls",
        usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=3, reasoning_tokens=2),
        created=123,
    )
    out = oc.response_from_neutral(resp, "gpt-alias")
    assert out == {
        "id": "chatcmpl-msg_01",
        "object": "chat.completion",
        "created": 123,
        "model": "gpt-alias",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello world",
                    "reasoning_content": "hm",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get", "arguments": '{"q":"a"}'},
                        }
                    ],
                    "refusal": None,
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }
    # the SDK's own model accepts it
    cc = openai.types.chat.ChatCompletion.model_validate(out)
    assert cc.choices[0].message.tool_calls[0].function.arguments == '{"q":"a"}'


@pytest.mark.parametrize(
    ("neutral", "chat"),
    [
        ("stop", "stop"),
        ("stop_sequence", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
    ],
)
def test_response_finish_mapping(neutral: str, chat: str) -> None:
    out = oc.response_from_neutral(Response(id="chatcmpl-1", model="m", finish_reason=neutral), "m")  # type: ignore[arg-type]
    assert out["id"] == "chatcmpl-1"
    assert out["choices"][0]["finish_reason"] == chat
    assert out["choices"][0]["message"]["content"] is None


def test_response_round_trip() -> None:
    body = orjson.loads((FIX / "nonstream_tool_calls.json").read_bytes())
    again = oc.response_from_neutral(oc.response_to_neutral(body), "gpt-4o-2024-08-06")
    assert again["id"] == body["id"] and again["created"] == body["created"]
    assert again["choices"][0]["message"]["tool_calls"] == body["choices"][0]["message"]["tool_calls"]
    assert again["usage"]["prompt_tokens"] == 68 and again["usage"]["total_tokens"] == 80


# ---------------------------------------------------------------- requests: chat -> neutral


def full_request() -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"},
                    },
                    {"type": "file", "file": {"file_id": "file-abc"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "let me check",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"c":"P"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "thanks", "name": "bob"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "weather",
                    "parameters": {"type": "object", "properties": {"c": {"type": "string"}}},
                    "strict": True,
                },
            },
            {"type": "function", "function": {"name": "get_time"}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "max_tokens": 100,
        "max_completion_tokens": 200,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": "END",
        "reasoning_effort": "high",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
        },
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u1",
        "metadata": {"k": "v"},
        "n": 2,
        "seed": 7,
        "logprobs": True,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "logit_bias": {"50256": -100},
        "service_tier": "flex",
        "store": False,
        "prompt_cache_key": "pck",
    }


def test_request_to_neutral_full() -> None:
    req = oc.request_to_neutral(full_request())
    assert req.model == "gpt-4o"
    assert req.system == [Text("Be brief."), Text("Use tools.")]
    user, asst, tools, last = req.messages
    assert user.role == "user" and user.content == [
        Text("Look:"),
        Image(data="iVBORw0K", mime_type="image/png", detail="low"),
        Image(url="https://x.test/a.jpg"),
        Audio(data="UklGR", format="wav"),
        File(data="JVBER", mime_type="application/pdf", filename="a.pdf"),
        File(file_id="file-abc"),
    ]
    assert asst.role == "assistant" and asst.content == [
        Thinking(text="let me check", source="openai"),
        ToolCall(id="call_1", name="get_weather", arguments='{"c":"P"}'),
        ToolCall(id="call_2", name="get_time", arguments="{}"),
    ]
    assert tools.role == "user" and tools.content == [
        ToolResult(call_id="call_1", content="sunny"),
        ToolResult(call_id="call_2", content=[Text("noon")]),
    ]
    assert tools.extra == {}
    assert last.content == [Text("thanks")] and last.extra == {"openai": {"name": "bob"}}
    assert req.tools == [
        Tool(
            name="get_weather",
            description="weather",
            parameters={"type": "object", "properties": {"c": {"type": "string"}}},
            strict=True,
        ),
        Tool(name="get_time"),
    ]
    assert req.tool_choice == ToolChoice(mode="tool", name="get_weather")
    assert req.parallel_tool_calls is False
    assert req.max_tokens == 100  # max_tokens wins over max_completion_tokens
    assert (req.temperature, req.top_p, req.stop) == (0.5, 0.9, ["END"])
    assert req.reasoning == Reasoning(effort="high")
    assert req.response_format == ResponseFormat(type="json_schema", schema={"type": "object"}, name="out", strict=True)
    assert req.stream is True and req.include_usage is True
    assert req.user == "u1" and req.metadata == {"k": "v"}
    extra = req.extra["openai"]
    for k in (
        "n",
        "seed",
        "logprobs",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "service_tier",
        "store",
        "prompt_cache_key",
    ):
        assert k in extra, k


def test_request_max_completion_tokens_alone() -> None:
    req = oc.request_to_neutral(
        {"model": "o3", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 64}
    )
    assert req.max_tokens == 64
    body = oc.request_from_neutral(req, "o3")
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body


def test_request_legacy_functions() -> None:
    req = oc.request_to_neutral(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "f", "arguments": '{"a":1}'},
                },
                {"role": "function", "name": "f", "content": "done"},
            ],
            "functions": [{"name": "f", "parameters": {"type": "object"}}],
            "function_call": {"name": "f"},
        }
    )
    call = req.messages[1].content[0]
    result = req.messages[2].content[0]
    assert isinstance(call, ToolCall) and call.name == "f" and call.arguments == '{"a":1}'
    assert isinstance(result, ToolResult) and result.call_id == call.id and result.name == "f"
    assert req.tools == [Tool(name="f", parameters={"type": "object"})]
    assert req.tool_choice == ToolChoice(mode="tool", name="f")


def test_request_misc_choices() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    for mode in ("auto", "none", "required"):
        assert oc.request_to_neutral({**base, "tool_choice": mode}).tool_choice == ToolChoice(mode=mode)  # type: ignore[arg-type]
    req = oc.request_to_neutral(
        {
            **base,
            "stop": ["a", "b"],
            "response_format": {"type": "json_object"},
            "tools": [{"type": "web_search_preview"}],
        }
    )
    assert req.stop == ["a", "b"] and req.response_format == ResponseFormat(type="json_object")
    assert req.tools == [Tool(name="web_search_preview", raw={"type": "web_search_preview"}, raw_format="openai")]
    assert oc.request_to_neutral(base, model="from-url").model == "m"
    assert oc.request_to_neutral({"messages": base["messages"]}, model="from-url").model == "from-url"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]},
            "messages[1].role",
        ),
        ({"model": "m", "messages": [{"content": "a"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": "a"}], "stream": "yes"}, "stream"),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "a"}],
                "tools": [
                    {"type": "function", "function": {"name": "f"}},
                    {"type": "function", "function": {"name": "g", "parameters": "nope"}},
                ],
            },
            "tools[1].function.parameters",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "a"}], "tool_choice": "sometimes"},
            "tool_choice",
        ),
    ],
)
def test_request_validation(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as ei:
        oc.request_to_neutral(body)
    assert ei.value.param == param
    assert ei.value.status == 400


# ---------------------------------------------------------------- requests: neutral -> chat


def test_request_round_trip_chat_neutral_chat() -> None:
    src = full_request()
    body = oc.request_from_neutral(oc.request_to_neutral(src), "upstream-model")
    assert body["model"] == "upstream-model"
    msgs = body["messages"]
    assert msgs[0] == {
        "role": "system",
        "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
    }
    assert msgs[1]["role"] == "user"
    assert msgs[1]["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_id": "file-abc"}},
    ]
    assert msgs[2] == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "let me check",
        "tool_calls": src["messages"][3]["tool_calls"],
    }
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert msgs[4] == {"role": "tool", "tool_call_id": "call_2", "content": "noon"}
    assert msgs[5] == {"role": "user", "content": "thanks", "name": "bob"}
    assert body["tools"][0] == src["tools"][0]
    assert body["tools"][1] == {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    }
    for k in (
        "tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "temperature",
        "top_p",
        "reasoning_effort",
        "response_format",
        "user",
        "metadata",
        "n",
        "seed",
        "logprobs",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "service_tier",
        "store",
        "prompt_cache_key",
    ):
        assert body[k] == src[k], k
    assert "max_completion_tokens" not in body
    assert body["stop"] == ["END"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    # the rebuilt body is accepted by the SDK's own request types (TypedDict keys)
    params = openai.types.chat.completion_create_params
    allowed = set(params.CompletionCreateParamsBase.__annotations__) | {"stream"}
    assert set(body) <= allowed


def test_request_from_neutral_claude_like() -> None:
    """A neutral request as the Claude translator would build it."""
    req = Request(
        model="claude-sonnet",
        system=[Text("sys A", cache_control={"type": "ephemeral"}), Text("sys B")],
        messages=[
            Message("user", [Text("what is in this?"), Image(data="AAAA", mime_type="image/jpeg")]),
            Message(
                "assistant",
                [
                    Thinking(text="private", signature="EqQBCkgIAR", source="claude"),
                    Thinking(redacted="xyz", source="claude"),
                    Text("Checking."),
                    ToolCall(id="toolu_01", name="lookup", arguments='{"q": "x"}'),
                ],
            ),
            Message(
                "user",
                [
                    ToolResult(call_id="toolu_01", content=[Text("found"), Image(url="https://i.test/p.png")]),
                    Text("and now?"),
                ],
            ),
        ],
        tools=[Tool(name="lookup", description="d", parameters={"type": "object"})],
        tool_choice=ToolChoice(mode="required"),
        max_tokens=1024,
        top_k=40,
        stop=["\n\nHuman:"],
        reasoning=Reasoning(budget=8192),
        stream=True,
        metadata={"user_id": "abc"},
        extra={"claude": {"service_tier": "auto"}},
    )
    body = oc.request_from_neutral(req, "gpt-4.1")
    assert body["messages"] == [
        {
            "role": "system",
            "content": [{"type": "text", "text": "sys A"}, {"type": "text", "text": "sys B"}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is in this?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "found"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://i.test/p.png"}},
                {"type": "text", "text": "and now?"},
            ],
        },
    ]
    assert body["tool_choice"] == "required"
    assert body["reasoning_effort"] == "medium"
    assert body["max_tokens"] == 1024 and body["stop"] == ["\n\nHuman:"]
    assert body["stream_options"] == {"include_usage": True}
    assert body["user"] == "abc"
    assert "top_k" not in body and "metadata" not in body and "service_tier" not in body


def test_request_from_neutral_gemini_like_and_effort() -> None:
    req = Request(
        model="gemini",
        messages=[
            Message("user", [Text("hi")]),
            Message("assistant", [Thinking(text="t", signature="sig", source="gemini"), Text("yo")]),
            Message("user", [Text("more")]),
        ],
        response_format=ResponseFormat(type="json_schema", schema={"type": "object"}),
    )
    body = oc.request_from_neutral(req, "m")
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "more"},
    ]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": {"type": "object"}},
    }
    assert "stream" not in body and "stream_options" not in body
    for r, expect in [
        (Reasoning(effort="none"), "none"),
        (Reasoning(budget=0), "none"),
        (Reasoning(budget=512), "minimal"),
        (Reasoning(effort="low"), "low"),
        (Reasoning(budget=30000), "xhigh"),
        (Reasoning(effort="max"), "xhigh"),
        (Reasoning(effort="auto"), None),
        (Reasoning(budget=-1), None),
    ]:
        req.reasoning = r
        assert oc.request_from_neutral(req, "m").get("reasoning_effort") == expect, r


def test_request_from_neutral_unsupported() -> None:
    bad_file = Request(model="m", messages=[Message("user", [File(url="https://x.test/a.pdf")])])
    with pytest.raises(Unsupported) as ei:
        oc.request_from_neutral(bad_file, "m")
    assert ei.value.param == "messages[0].content[0]"
    raw_tool = Request(
        model="m",
        messages=[Message("user", [Text("x")])],
        tools=[Tool(name="web_search", raw={"type": "web_search_20250305"}, raw_format="claude")],
    )
    with pytest.raises(Unsupported) as ei:
        oc.request_from_neutral(raw_tool, "m")
    assert ei.value.param == "tools[0]"


# ---------------------------------------------------------------- encoder


def encode_all(events: list[Event], include_usage: bool = False, model: str = "alias") -> bytes:
    enc = oc.StreamEncoder(model, include_usage=include_usage)
    out = b"".join(enc.encode(ev) for ev in events)
    if not any(isinstance(ev, Error) for ev in events):
        out += enc.close()
    return out


TEXT_TOOL_EVENTS: list[Event] = [
    Start(id="msg_1", model="claude", created=1700000000),
    BlockStart(0, "thinking"),
    BlockDelta(0, thinking="pondering "),
    BlockDelta(0, signature="sig"),
    BlockDelta(0, thinking="more"),
    BlockStop(0),
    BlockStart(1, "text"),
    BlockDelta(1, text="Hé"),
    BlockDelta(1, text='llo "quoted"\n'),
    BlockStop(1),
    BlockStart(2, "tool_call", tool_call_id="toolu_A", tool_name="get_weather"),
    BlockStart(3, "tool_call", tool_call_id="toolu_B", tool_name="get_time"),
    BlockDelta(2, arguments='{"city": '),
    BlockDelta(3, arguments='{"tz": "UTC"}'),
    BlockDelta(2, arguments='"Paris"}'),
    BlockStop(2),
    BlockStop(3),
    UsageUpdate(Usage(input_tokens=1, output_tokens=1)),
    Finish("tool_calls", usage=Usage(input_tokens=20, output_tokens=9, cached_tokens=4, reasoning_tokens=3)),
]


def frames(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n")
    parts = raw[:-2].split(b"\n\n")
    for p in parts:
        assert p.startswith(b"data: ") and b"\n" not in p
    return [p[6:] for p in parts]


def test_encoder_frames() -> None:
    raw = encode_all(TEXT_TOOL_EVENTS, include_usage=True)
    fs = frames(raw)
    assert fs[-1] == b"[DONE]"
    chunks = [orjson.loads(f) for f in fs[:-1]]
    assert {c["id"] for c in chunks} == {"chatcmpl-msg_1"}
    assert {c["created"] for c in chunks} == {1700000000}
    assert {c["model"] for c in chunks} == {"alias"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-2]]
    assert deltas == [
        {"reasoning_content": "pondering "},
        {"reasoning_content": "more"},
        {"content": "Hé"},
        {"content": 'llo "quoted"\n'},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_B",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "UTC"}'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
    ]
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 9,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


def test_encoder_output_decodes_back() -> None:
    s = summarize(decode_bytes(encode_all(TEXT_TOOL_EVENTS, include_usage=True), seed=3))
    assert [(b["kind"], b["data"]) for b in s["blocks"]] == [
        ("thinking", "pondering more"),
        ("text", 'Héllo "quoted"\n'),
        ("tool_call", '{"city": "Paris"}'),
        ("tool_call", '{"tz": "UTC"}'),
    ]
    assert s["terminal"] == Finish(
        "tool_calls", usage=Usage(input_tokens=20, output_tokens=9, cached_tokens=4, reasoning_tokens=3)
    )


def test_encoder_without_include_usage_and_close_idempotent() -> None:
    enc = oc.StreamEncoder("m")
    out = enc.encode(Start(id="", model="x")) + enc.encode(BlockStart(0, "text"))
    out += enc.encode(BlockDelta(0, text="a")) + enc.encode(BlockStop(0)) + enc.encode(Finish("length"))
    out += enc.close()
    fs = frames(out)
    assert fs[-1] == b"[DONE]" and all(b'"usage"' not in f for f in fs)
    assert orjson.loads(fs[0])["id"].startswith("chatcmpl-")
    assert orjson.loads(fs[-2])["choices"][0]["finish_reason"] == "length"
    assert enc.close() == b"" and enc.encode(BlockDelta(0, text="late")) == b""


def test_encoder_error_ends_stream() -> None:
    enc = oc.StreamEncoder("m")
    out = enc.encode(Start(id="chatcmpl-q", model="x"))
    err = enc.encode(Error(429, "slow down", error_type="rate_limit_error"))
    assert err.endswith(b"data: [DONE]\n\n")
    body = orjson.loads(frames(err)[0])
    assert body == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert enc.close() == b"" and enc.error(500, "again") == b""
    assert out.startswith(b"data: ")


# ---------------------------------------------------------------- the official SDK reads the encoder's output


def sdk_client(payload: bytes, seen: list[dict[str, Any]] | None = None) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(orjson.loads(request.content))
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=payload)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", http_client=http, max_retries=0)


@pytest.mark.parametrize("include_usage", [True, False])
def test_sdk_reads_encoder_stream(include_usage: bool) -> None:
    seen: list[dict[str, Any]] = []
    client = sdk_client(encode_all(TEXT_TOOL_EVENTS, include_usage=include_usage), seen)
    kwargs: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = client.chat.completions.create(
        model="alias", messages=[{"role": "user", "content": "hi"}], stream=True, **kwargs
    )
    text, reasoning, finish = "", "", None
    calls: dict[int, dict[str, str]] = {}
    usage_chunks = []
    ids = set()
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage_chunks.append(chunk)
        for choice in chunk.choices:
            d = choice.delta
            text += d.content or ""
            reasoning += getattr(d, "reasoning_content", None) or (d.model_extra or {}).get("reasoning_content") or ""
            for tc in d.tool_calls or ():
                c = calls.setdefault(tc.index, {"id": "", "name": "", "args": ""})
                if tc.id:
                    c["id"] = tc.id
                if tc.function and tc.function.name:
                    c["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    c["args"] += tc.function.arguments
            finish = choice.finish_reason or finish
    assert seen[0]["stream"] is True
    assert ids == {"chatcmpl-msg_1"}
    assert text == 'Héllo "quoted"\n'
    assert reasoning == "pondering more"
    assert calls == {
        0: {"id": "toolu_A", "name": "get_weather", "args": '{"city": "Paris"}'},
        1: {"id": "toolu_B", "name": "get_time", "args": '{"tz": "UTC"}'},
    }
    assert finish == "tool_calls"
    if include_usage:
        [u] = usage_chunks
        assert u.choices == [] and u.usage.prompt_tokens == 20 and u.usage.completion_tokens == 9
        assert u.usage.prompt_tokens_details.cached_tokens == 4
    else:
        assert usage_chunks == []


def test_sdk_stream_helper_accumulates() -> None:
    client = sdk_client(encode_all(TEXT_TOOL_EVENTS, include_usage=True))
    with client.chat.completions.stream(model="alias", messages=[{"role": "user", "content": "hi"}]) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == 'Héllo "quoted"\n'
    assert [(t.id, t.function.name, t.function.arguments) for t in msg.tool_calls or ()] == [
        ("toolu_A", "get_weather", '{"city": "Paris"}'),
        ("toolu_B", "get_time", '{"tz": "UTC"}'),
    ]
    assert final.usage is not None and final.usage.total_tokens == 29


def test_sdk_raises_on_encoder_error() -> None:
    events: list[Event] = [
        Start(id="x", model="y"),
        BlockStart(0, "text"),
        BlockDelta(0, text="par"),
        Error(503, "upstream overloaded", error_type="server_error"),
    ]
    client = sdk_client(encode_all(events))
    got = ""
    with pytest.raises(openai.APIError) as ei:
        for chunk in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            for c in chunk.choices:
                got += c.delta.content or ""
    assert got == "par"
    assert ei.value.message == "upstream overloaded"
    assert ei.value.body == {
        "message": "upstream overloaded",
        "type": "server_error",
        "param": None,
        "code": "internal_server_error",
    }


def test_fixture_relay_decoder_to_encoder_sdk() -> None:
    """A recorded upstream stream, decoded and re-encoded, reads the same through the SDK."""
    events = decode_bytes((FIX / "stream_parallel_tool_calls_usage.sse").read_bytes(), seed=5)
    client = sdk_client(encode_all(events, include_usage=True))
    with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "x"}]) as s:
        final = s.get_final_completion()
    args = [t.function.arguments for t in final.choices[0].message.tool_calls or ()]
    assert args == [
        '{"city": "Edinburgh", "country": "GB", "units": "c"}',
        '{"ticker": "AAPL", "exchange": "NASDAQ"}',
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and (final.usage.prompt_tokens, final.usage.completion_tokens) == (149, 60)


def test_single_system_text_is_a_string() -> None:
    req = Request(model="m", system=[Text("only")], messages=[Message("user", [Text("q")])])
    assert oc.request_from_neutral(req, "m")["messages"][0] == {"role": "system", "content": "only"}


def test_cross_claude_request_to_chat_body() -> None:
    """A Claude Messages body (docs shape) through the claude translator, then to a chat body."""
    claude = pytest.importorskip("crossroute.formats.claude")
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "need tool", "signature": "EqQBCkgIARAB"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "15C"}]},
                    {"type": "text", "text": "thanks"},
                ],
            },
        ],
        "tools": [{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
        "stop_sequences": ["STOP"],
        "stream": True,
    }
    chat = oc.request_from_neutral(claude.request_to_neutral(body), "gpt-4.1")
    assert chat["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "15C"},
        {"role": "user", "content": "thanks"},
    ]
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "w", "parameters": {"type": "object"}}}
    ]
    assert chat["tool_choice"] == "required"
    assert chat["reasoning_effort"] == "medium"  # 2048-token budget
    assert (chat["max_tokens"], chat["stop"], chat["stream"]) == (1024, ["STOP"], True)
    assert chat["stream_options"] == {"include_usage": True}


def _reused_index_stream() -> bytes:
    """Two calls both numbered index 0, told apart only by their ids (as some OpenAI-compatible
    servers stream parallel calls)."""
    return (
        _chunk({"role": "assistant", "content": None})
        + _chunk({"tool_calls": [{"index": 0, "id": "call_w", "type": "function",
                                  "function": {"name": "get_weather", "arguments": ""}}]})
        + _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]})
        + _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]})
        + _chunk({"tool_calls": [{"index": 0, "id": "call_t", "type": "function",
                                  "function": {"name": "get_time", "arguments": '{"tz": '}}]})
        + _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"CET"}'}}]})
        + _chunk({}, "tool_calls")
        + _chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14})
        + b"data: [DONE]\n\n"
    )


@pytest.mark.parametrize("seed", range(4))
def test_decoder_new_id_at_a_used_index_starts_a_new_call(seed: int) -> None:
    s = summarize(decode_bytes(_reused_index_stream(), seed))
    assert [(b["kind"], b["id"], b["name"], b["data"]) for b in s["blocks"]] == [
        ("tool_call", "call_w", "get_weather", '{"city": "Paris"}'),
        ("tool_call", "call_t", "get_time", '{"tz": "CET"}'),
    ]


def test_reused_index_reaches_an_anthropic_client_as_two_valid_tool_uses() -> None:
    from crossroute.formats.translate import Prepared

    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    pipe = Prepared("claude", body, None, {}).pipe("openai", "m")
    out = pipe.feed(_reused_index_stream()) + pipe.finish()
    events = [orjson.loads(ev.data) for ev in SSEParser().feed(out) if ev.data]
    starts = {e["index"]: e["content_block"] for e in events if e["type"] == "content_block_start"}
    args: dict[int, str] = {}
    for e in events:
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta":
            args[e["index"]] = args.get(e["index"], "") + e["delta"]["partial_json"]
    assert [(b["id"], b["name"]) for b in starts.values()] == [("call_w", "get_weather"), ("call_t", "get_time")]
    assert [orjson.loads(a) for a in args.values()] == [{"city": "Paris"}, {"tz": "CET"}]


@pytest.mark.parametrize("raw", [
    b'{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}',
    b'{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},'
    b'"completion_tokens_details":{"reasoning_tokens":2,"accepted_prediction_tokens":0}}',
    b'{"prompt_tokens":"7","completion_tokens":2.0,"prompt_tokens_details":{"cached_tokens":true}}',
    b'{"prompt_tokens":null,"prompt_tokens_details":null}', b'[]', b'{}', b'3',
])
def test_usage_from_raw_json_matches_the_dict_reader(raw: bytes) -> None:
    from crossroute.formats.openai_chat import usage_from_chat_json

    assert usage_from_chat_json(memoryview(raw)) == oc.usage_from_chat(orjson.loads(raw))
    assert usage_from_chat_json(b"not json") is None
