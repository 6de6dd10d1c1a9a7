"""OpenAI Responses translator: requests, whole responses, stream decoder and encoder."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types.responses import Response as SDKResponse

from crossroute.formats import responses as R
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
from crossroute.formats.responses_framer import ResponsesFramer
from crossroute.formats.sse import SSEEvent, SSEParser

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "openai_responses"


def load(name: str) -> Any:
    return json.loads((FIX / name).read_text())


def test_module_contract() -> None:
    assert R.FORMAT == "responses"
    for name in ("request_to_neutral", "request_from_neutral", "response_to_neutral", "response_from_neutral"):
        assert callable(getattr(R, name))
    assert R.StreamDecoder.__module__.endswith("responses_stream")
    assert R.StreamEncoder.__module__.endswith("responses_stream")


# ================================================================ request -> neutral


def test_string_input_and_instructions() -> None:
    req = R.request_to_neutral({"model": "gpt-5", "input": "hello", "instructions": "be brief"})
    assert req.model == "gpt-5"
    assert req.system == [Text("be brief")]
    assert req.messages == [Message("user", [Text("hello")])]
    assert req.stream is False


def test_model_argument_used_when_body_has_none() -> None:
    assert R.request_to_neutral({"input": "x"}, model="m").model == "m"
    with pytest.raises(BadRequest) as e:
        R.request_to_neutral({"input": "x"})
    assert e.value.param == "model"


def test_message_items_roles_and_parts() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "system", "content": "sys A"},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev B"}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "high"},
                    {"type": "input_image", "image_url": "data:image/jpeg;base64,QUJD"},
                    {"type": "input_image", "file_id": "file-img"},
                    {"type": "input_file", "file_data": "data:application/pdf;base64,UERG", "filename": "a.pdf"},
                    {"type": "input_file", "file_id": "file-1"},
                    {"type": "input_file", "file_url": "https://x/doc.pdf"},
                    {"type": "input_audio", "input_audio": {"data": "V0FW", "format": "mp3"}},
                ],
            },
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "seen"}]},
        ],
    }
    req = R.request_to_neutral(body)
    assert req.system == [Text("sys A"), Text("dev B")]
    assert len(req.messages) == 2
    user, asst = req.messages
    assert user.role == "user"
    assert user.content == [
        Text("look"),
        Image(url="https://x/y.png", detail="high"),
        Image(data="QUJD", mime_type="image/jpeg"),
        File(file_id="file-img", mime_type="image/*"),
        File(data="UERG", mime_type="application/pdf", filename="a.pdf"),
        File(file_id="file-1"),
        File(url="https://x/doc.pdf"),
        Audio(data="V0FW", format="mp3"),
    ]
    assert asst == Message("assistant", [Text("seen")])


def test_function_calls_join_one_assistant_message_with_reasoning() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "a"}, {"type": "summary_text", "text": "b"}],
                "encrypted_content": "ENC",
            },
            {"type": "function_call", "call_id": "c1", "name": "wx", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "c2", "name": "wx", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
            {"role": "user", "content": "thanks"},
        ],
    }
    req = R.request_to_neutral(body)
    assert [m.role for m in req.messages] == ["user", "assistant", "user", "user"]
    asst = req.messages[1]
    assert asst.content == [
        Thinking(text="a\n\nb", redacted="ENC", source="openai"),
        ToolCall(id="c1", name="wx", arguments='{"city":"Paris"}'),
        ToolCall(id="c2", name="wx", arguments='{"city":"Rome"}'),
    ]
    assert req.messages[2].content == [
        ToolResult(call_id="c1", content="sunny"),
        ToolResult(call_id="c2", content=[Text("rain")]),
    ]
    assert req.messages[3].content == [Text("thanks")]


def test_parameters_and_extras() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "tools": [
            {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True},
            {"type": "web_search_preview"},
        ],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "max_output_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "reasoning": {"effort": "high", "summary": "auto"},
        "text": {
            "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True},
            "verbosity": "low",
        },
        "stream": True,
        "user": "u1",
        "metadata": {"k": "v"},
        "previous_response_id": "resp_prev",
        "store": True,
        "include": ["reasoning.encrypted_content"],
        "truncation": "auto",
        "prompt_cache_key": "pck",
    }
    req = R.request_to_neutral(body)
    assert req.tools[0] == Tool(name="f", description="d", parameters={"type": "object"}, strict=True)
    assert req.tools[1].raw == {"type": "web_search_preview"} and req.tools[1].raw_format == "responses"
    assert req.tool_choice == ToolChoice(mode="tool", name="f")
    assert req.parallel_tool_calls is False
    assert (req.max_tokens, req.temperature, req.top_p) == (100, 0.5, 0.9)
    assert req.reasoning == Reasoning(effort="high", summary="auto", include_thoughts=True)
    assert req.response_format == ResponseFormat(type="json_schema", schema={"type": "object"}, name="out", strict=True)
    assert req.stream is True and req.user == "u1" and req.metadata == {"k": "v"}
    assert req.extra["responses"] == {
        "previous_response_id": "resp_prev",
        "store": True,
        "include": ["reasoning.encrypted_content"],
        "truncation": "auto",
        "prompt_cache_key": "pck",
        "text": {"verbosity": "low"},
    }


@pytest.mark.parametrize(
    ("fmt", "want"),
    [({"type": "json_object"}, ResponseFormat(type="json_object")), ({"type": "text"}, ResponseFormat(type="text"))],
)
def test_text_formats(fmt: dict, want: ResponseFormat) -> None:
    assert R.request_to_neutral({"model": "m", "input": "x", "text": {"format": fmt}}).response_format == want


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_tool_choice_strings(choice: str) -> None:
    assert R.request_to_neutral({"model": "m", "input": "x", "tool_choice": choice}).tool_choice == ToolChoice(choice)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 5}, "input"),
        ({"input": {"role": "user", "content": "x"}}, "input"),
        ({"input": ["hello"]}, "input[0]"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": 3}]}, "input[0].content"),
        ({"input": "x", "tools": [{"type": "function", "name": "f", "parameters": "nope"}]}, "tools[0].parameters"),
        (
            {
                "input": "x",
                "tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "g", "parameters": []}],
            },
            "tools[1].parameters",
        ),
        ({"input": "x", "tools": {"type": "function"}}, "tools"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "x", "text": {"format": {"type": "json_schema", "schema": 1}}}, "text.format.schema"),
    ],
)
def test_bad_requests_name_the_field(body: dict, param: str) -> None:
    with pytest.raises(BadRequest) as e:
        R.request_to_neutral({"model": "m", **body})
    assert e.value.param == param
    assert e.value.status == 400


def test_unknown_item_type_is_refused_not_dropped() -> None:
    with pytest.raises(Unsupported) as e:
        R.request_to_neutral({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]})
    assert e.value.param == "input[0].type"


# ================================================================ neutral -> request


def _sdk_accepts_body(body: dict) -> dict:
    """Send the body through the openai SDK (its keyword arguments must exist) and return what
    went over the wire."""
    seen: dict = {}

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.update(json.loads(request.content))
        return httpx2.Response(200, json=load("nonstream_text.json"))

    client = openai.OpenAI(
        api_key="k",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    kwargs = dict(body)
    kwargs.pop("stream", None)
    client.responses.create(**kwargs)
    return seen


def test_round_trip_responses_body() -> None:
    body = {
        "model": "client-model",
        "instructions": "sys",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "plan"}], "encrypted_content": "E1"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "done", "annotations": []}],
            },
        ],
        "tools": [
            {
                "type": "function",
                "name": "f",
                "description": "d",
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            }
        ],
        "tool_choice": "auto",
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}, "strict": True}},
        "max_output_tokens": 64,
        "stream": True,
        "previous_response_id": "resp_x",
        "prompt_cache_key": "k",
    }
    out = R.request_from_neutral(R.request_to_neutral(body), "upstream-model")
    assert out["model"] == "upstream-model"
    for key in (
        "instructions",
        "input",
        "tools",
        "tool_choice",
        "text",
        "max_output_tokens",
        "stream",
        "previous_response_id",
        "prompt_cache_key",
    ):
        assert out[key] == body[key], key
    assert out["reasoning"] == {"effort": "low", "summary": "auto"}
    assert out["store"] is False
    assert out["include"] == ["reasoning.encrypted_content"]
    _sdk_accepts_body(out)


def test_store_from_extra_wins() -> None:
    req = R.request_to_neutral({"model": "m", "input": "x", "store": True})
    out = R.request_from_neutral(req, "m")
    assert out["store"] is True and "include" not in out


def test_neutral_from_other_family_builds_valid_body() -> None:
    req = Request(
        model="claude-like",
        system=[Text("s1"), Text("s2")],
        messages=[
            Message(
                "user",
                [
                    Text("what is this?"),
                    Image(data="QUJD", mime_type="image/png"),
                    File(data="UERG", mime_type="application/pdf"),
                ],
            ),
            Message(
                "assistant",
                [
                    Thinking(text="claude thoughts", signature="sig", source="claude"),
                    Thinking(text="gemini", signature="tsig", source="gemini"),
                    Text("let me check"),
                    ToolCall(id="toolu_1", name="lookup", arguments='{"q":1}'),
                ],
            ),
            Message(
                "user",
                [ToolResult(call_id="toolu_1", content=[Text("r1"), Image(url="https://i/x.png")]), Text("and?")],
            ),
            Message("user", [Audio(data="QQ==", format="wav")]),
        ],
        tools=[Tool(name="lookup", parameters={"type": "object", "properties": {"q": {"type": "integer"}}})],
        tool_choice=ToolChoice(mode="required"),
        reasoning=Reasoning(budget=24576),
        response_format=ResponseFormat(type="json_object"),
        max_tokens=1000,
        temperature=0.2,
        stop=["END"],
        stream=False,
    )
    out = R.request_from_neutral(req, "gpt-5")
    assert out["instructions"] == "s1\n\ns2"
    assert out["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "what is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,QUJD", "detail": "auto"},
                {"type": "input_file", "file_data": "data:application/pdf;base64,UERG", "filename": "file.pdf"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "let me check", "annotations": []}],
        },
        {"type": "function_call", "call_id": "toolu_1", "name": "lookup", "arguments": '{"q":1}'},
        {
            "type": "function_call_output",
            "call_id": "toolu_1",
            "output": [
                {"type": "input_text", "text": "r1"},
                {"type": "input_image", "image_url": "https://i/x.png", "detail": "auto"},
            ],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "and?"}]},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_audio", "input_audio": {"data": "QQ==", "format": "wav"}}],
        },
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "name": "lookup",
            "description": None,
            "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}},
            "strict": False,
        }
    ]
    assert out["tool_choice"] == "required"
    assert out["reasoning"] == {"effort": "high"}
    assert out["text"] == {"format": {"type": "json_object"}}
    assert (out["max_output_tokens"], out["temperature"], out["stream"], out["store"]) == (1000, 0.2, False, False)
    _sdk_accepts_body(out)


def test_openai_thinking_without_encrypted_content_is_dropped() -> None:
    req = Request(model="m", messages=[Message("assistant", [Thinking(text="t", source="openai"), Text("a")])])
    assert [i["type"] for i in R.request_from_neutral(req, "m")["input"]] == ["message"]


def test_foreign_builtin_tool_is_refused() -> None:
    req = Request(model="m", tools=[Tool(name="web_search", raw={"type": "web_search_20250305"}, raw_format="claude")])
    with pytest.raises(Unsupported) as e:
        R.request_from_neutral(req, "m")
    assert e.value.param == "tools[0]"


def test_effort_budget_and_max_mapping() -> None:
    assert R.request_from_neutral(Request(model="m", reasoning=Reasoning(effort="max")), "m")["reasoning"] == {
        "effort": "xhigh"
    }
    assert R.request_from_neutral(Request(model="m", reasoning=Reasoning(budget=512)), "m")["reasoning"] == {
        "effort": "minimal"
    }
    assert "reasoning" not in R.request_from_neutral(Request(model="m", reasoning=Reasoning(effort="auto")), "m")


def test_tool_choice_named_and_json_schema_out() -> None:
    req = Request(
        model="m",
        tool_choice=ToolChoice(mode="tool", name="f"),
        response_format=ResponseFormat(type="json_schema", schema={"type": "object"}, name=None, strict=None),
    )
    out = R.request_from_neutral(req, "m")
    assert out["tool_choice"] == {"type": "function", "name": "f"}
    assert out["text"] == {"format": {"type": "json_schema", "name": "response", "schema": {"type": "object"}}}


# ================================================================ whole responses


def test_response_to_neutral_text() -> None:
    resp = R.response_to_neutral(load("nonstream_text.json"))
    assert resp.id == "resp_689a0b2545288193953c892439b42e2800b2e36c65a1fd4b"
    assert resp.model == "gpt-4o-mini-2024-07-18"
    assert len(resp.content) == 1 and isinstance(resp.content[0], Text)
    assert resp.content[0].text.startswith("I can't provide real-time updates")
    assert resp.finish_reason == "stop"
    assert resp.usage == Usage(input_tokens=14, output_tokens=50)
    assert resp.created == 1754925861


def test_response_to_neutral_reasoning_function_call() -> None:
    body = load("nonstream_reasoning_function_call.json")
    resp = R.response_to_neutral(body)
    thinking, call = resp.content
    assert isinstance(thinking, Thinking) and thinking.source == "openai"
    assert thinking.redacted == body["output"][0]["encrypted_content"] and thinking.text == ""
    assert call == ToolCall(id="call_1w9YRdMtRTRucwZShoZYlLJp", name="get_country", arguments="{}")
    assert resp.finish_reason == "tool_calls"
    assert resp.usage == Usage(input_tokens=37, output_tokens=272, reasoning_tokens=256)


def test_response_to_neutral_reasoning_summary_parts_joined() -> None:
    body = load("nonstream_reasoning_summary.json")
    resp = R.response_to_neutral(body)
    thinking = resp.content[0]
    assert isinstance(thinking, Thinking)
    parts = [p["text"] for p in body["output"][0]["summary"]]
    assert thinking.text == "\n\n".join(parts)
    assert resp.usage.reasoning_tokens == 1600


@pytest.mark.parametrize(("reason", "want"), [("max_output_tokens", "length"), ("content_filter", "content_filter")])
def test_response_incomplete_reasons(reason: str, want: str) -> None:
    body = dict(load("nonstream_text.json"), status="incomplete", incomplete_details={"reason": reason})
    assert R.response_to_neutral(body).finish_reason == want


def test_response_from_neutral_is_a_valid_sdk_response() -> None:
    resp = Response(
        id="msg_abc",
        model="ignored",
        content=[
            Thinking(text="why", signature="s", source="claude"),
            Text("Hello "),
            Text("world"),
            ToolCall(id="toolu_9", name="f", arguments='{"a":1}'),
        ],
        finish_reason="tool_calls",
        usage=Usage(input_tokens=20, output_tokens=9, cached_tokens=4, reasoning_tokens=3),
        created=1700000000,
    )
    body = R.response_from_neutral(resp, "client-model")
    assert body["id"].startswith("resp_") and body["object"] == "response"
    assert body["model"] == "client-model" and body["status"] == "completed"
    assert body["created_at"] == 1700000000
    assert [o["type"] for o in body["output"]] == ["reasoning", "message", "function_call"]
    assert "encrypted_content" not in body["output"][0]  # claude signatures are not replayed as OpenAI's
    assert body["usage"] == {
        "input_tokens": 20,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 29,
    }
    parsed = SDKResponse.model_validate(body)  # strict pydantic validation of the SDK model
    assert parsed.output_text == "Hello world"

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=body)

    client = openai.OpenAI(
        api_key="k",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    got = client.responses.create(model="client-model", input="hi")
    assert got.output_text == "Hello world"
    assert got.output[2].type == "function_call" and got.output[2].arguments == '{"a":1}'


def test_response_from_neutral_length_is_incomplete() -> None:
    body = R.response_from_neutral(Response(id="x", model="m", content=[Text("cut")], finish_reason="length"), "m")
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    SDKResponse.model_validate(body)


@pytest.mark.parametrize(
    "name", ["nonstream_text.json", "nonstream_reasoning_function_call.json", "nonstream_reasoning_summary.json"]
)
def test_nonstream_round_trip(name: str) -> None:
    first = R.response_to_neutral(load(name))
    again = R.response_to_neutral(R.response_from_neutral(first, "m"))
    assert again.content == first.content
    assert again.usage == first.usage
    assert again.finish_reason == first.finish_reason


# ================================================================ stream decoder


def decode(data: bytes, seed: int = 0) -> list[Event]:
    rnd = random.Random(seed)
    parser, dec = SSEParser(), R.StreamDecoder("fallback-model")
    out: list[Event] = []
    pos = 0
    while pos < len(data):
        n = rnd.randint(1, 200)
        for ev in parser.feed(data[pos : pos + n]):
            out += dec.feed(ev)
        pos += n
    tail = parser.flush()
    if tail is not None:
        out += dec.feed(tail)
    return out + dec.close()


def check_order(events: list[Event]) -> None:
    assert isinstance(events[0], Start)
    assert sum(isinstance(e, Start) for e in events) == 1
    open_: set[int] = set()
    seen: set[int] = set()
    for e in events[1:-1]:
        assert not isinstance(e, Start | Finish | Error)
        if isinstance(e, BlockStart):
            assert e.index not in seen
            seen.add(e.index)
            open_.add(e.index)
        elif isinstance(e, BlockDelta):
            assert e.index in open_
        elif isinstance(e, BlockStop):
            open_.remove(e.index)
    assert not open_
    assert isinstance(events[-1], Finish | Error)


def blocks(events: list[Event]) -> list[tuple[str, str, dict]]:
    """(kind, joined payload, start info) per block, in start order."""
    info: dict[int, list] = {}
    for e in events:
        if isinstance(e, BlockStart):
            info[e.index] = [e.block, "", {"id": e.tool_call_id, "name": e.tool_name, "redacted": None}]
        elif isinstance(e, BlockDelta):
            b = info[e.index]
            b[1] += e.text or e.thinking or e.arguments or ""
            if e.redacted:
                b[2]["redacted"] = e.redacted
    return [tuple(v) for v in info.values()]  # type: ignore[misc]


def final_response(name: str) -> dict:
    last = [e for e in SSEParser().feed((FIX / name).read_bytes())][-1]
    return orjson.loads(last.data)["response"]


@pytest.mark.parametrize("seed", range(5))
def test_decode_function_call_stream(seed: int) -> None:
    events = decode((FIX / "stream_function_call.sse").read_bytes(), seed)
    check_order(events)
    final = final_response("stream_function_call.sse")
    start = events[0]
    assert isinstance(start, Start)
    assert start.id == final["id"] and start.model == "gpt-5.5-2026-04-23" and start.created == 1785273853
    (k0, t0, i0), (k1, t1, _), (k2, t2, i2) = blocks(events)
    assert (k0, t0) == ("thinking", "")
    done = [orjson.loads(e.data) for e in SSEParser().feed((FIX / "stream_function_call.sse").read_bytes())]
    done = [d for d in done if d["type"] == "response.output_item.done"]
    # the item's own done event carries the final encrypted content (each event re-encrypts it)
    assert i0["redacted"] == done[0]["item"]["encrypted_content"]
    assert (k1, t1) == ("text", "I\u2019ll check the capital lookup tool for \u201cPotatoLand.\u201d")
    assert (k2, t2) == ("tool_call", '{"country":"PotatoLand"}')
    assert json.loads(t2) == {"country": "PotatoLand"}
    assert (i2["id"], i2["name"]) == ("call_LabG58Uhrq9kZvR52BYKjToD", "get_capital")
    fin = events[-1]
    assert isinstance(fin, Finish) and fin.reason == "tool_calls"
    assert fin.usage == Usage(input_tokens=63, output_tokens=69, reasoning_tokens=26)


@pytest.mark.parametrize(
    ("name", "usage"),
    [
        ("stream_reasoning_summary_text.sse", Usage(input_tokens=13, output_tokens=1680, reasoning_tokens=1408)),
        (
            "stream_reasoning_summary_code_interpreter_cached.sse",
            Usage(input_tokens=3727, output_tokens=347, cached_tokens=3200, reasoning_tokens=128),
        ),
    ],
)
def test_decode_reasoning_summary_streams(name: str, usage: Usage) -> None:
    events = decode((FIX / name).read_bytes(), 3)
    check_order(events)
    final = final_response(name)
    reasoning = next(o for o in final["output"] if o["type"] == "reasoning")
    message = next(o for o in final["output"] if o["type"] == "message")
    got = blocks(events)
    assert [k for k, _, _ in got] == ["thinking", "text"]  # code_interpreter items are not neutral blocks
    assert got[0][1] == "\n\n".join(p["text"] for p in reasoning["summary"])
    assert got[0][2]["redacted"].startswith("gAAAAA")
    assert got[1][1] == message["content"][0]["text"]
    fin = events[-1]
    assert isinstance(fin, Finish) and fin.reason == "stop" and fin.usage == usage


def test_decode_text_stream() -> None:
    events = decode((FIX / "stream_text_2025.sse").read_bytes())
    check_order(events)
    assert [(k, t) for k, t, _ in blocks(events)] == [("text", "streamed")]
    assert events[-1] == Finish(reason="stop", usage=Usage(input_tokens=21, output_tokens=3))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("stream_failed.SYNTHETIC.sse", "An error occurred while processing your request."),
        ("stream_error_event.SYNTHETIC.sse", "The server had an error while processing your request."),
    ],
)
def test_decode_error_streams(name: str, message: str) -> None:
    events = decode((FIX / name).read_bytes())
    assert isinstance(events[0], Start)
    err = events[-1]
    assert isinstance(err, Error)
    assert (err.status, err.message, err.code) == (500, message, "server_error")
    assert sum(isinstance(e, Error) for e in events) == 1


def test_decode_eof_without_terminal_is_an_error() -> None:
    data = (FIX / "stream_text_2025.sse").read_bytes()
    events = decode(data[: data.index(b"event: response.output_text.done")])
    assert isinstance(events[-1], Error) and events[-1].status == 502
    assert [(k, t) for k, t, _ in blocks(events)] == [("text", "streamed")]


def _sse(payload: dict) -> SSEEvent:
    return SSEEvent(payload.get("type"), orjson.dumps(payload))


def test_decode_incomplete_and_unknown_events() -> None:
    dec = R.StreamDecoder("m")
    out: list[Event] = []
    for p in [
        {"type": "response.created", "response": {"id": "resp_1", "model": "x"}},
        {"type": "response.something_new", "foo": 1},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"id": "msg_1", "type": "message", "content": []},
        },
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "ab"},  # lazy part
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": ""},
        {
            "type": "response.incomplete",
            "response": {
                "id": "resp_1",
                "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
                "usage": {"input_tokens": 1, "output_tokens": 2},
            },
        },
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "late"},
    ]:
        out += dec.feed(_sse(p))
    out += dec.close()
    check_order(out)
    assert [(k, t) for k, t, _ in blocks(out)] == [("text", "ab")]
    assert out[-1] == Finish(reason="length", usage=Usage(input_tokens=1, output_tokens=2))


def test_decode_final_output_only_upstream() -> None:
    dec = R.StreamDecoder("m")
    final = final_response("stream_function_call.sse")
    out = dec.feed(_sse({"type": "response.completed", "response": final}))
    check_order(out)
    assert [(k, t) for k, t, _ in blocks(out)] == [
        ("thinking", ""),
        ("text", "I\u2019ll check the capital lookup tool for \u201cPotatoLand.\u201d"),
        ("tool_call", '{"country":"PotatoLand"}'),
    ]
    assert isinstance(out[-1], Finish) and out[-1].reason == "tool_calls"


def test_decode_function_call_without_added_event_and_args_only_in_done() -> None:
    dec = R.StreamDecoder("m")
    out: list[Event] = []
    item = {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x":1}'}
    for p in [
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": {"status": "completed", "output": [item]}},
    ]:
        out += dec.feed(_sse(p))
    check_order(out)
    assert blocks(out) == [("tool_call", '{"x":1}', {"id": "c1", "name": "f", "redacted": None})]


def test_decode_invalid_json_is_error() -> None:
    dec = R.StreamDecoder("m")
    out = dec.feed(SSEEvent("response.output_text.delta", b"{oops"))
    assert isinstance(out[-1], Error) and out[-1].status == 502
    assert dec.feed(_sse({"type": "response.completed", "response": {}})) == []


# ================================================================ stream encoder


SCRIPT: list[Event] = [
    Start(id="msg_upstream", model="claude-x", created=1700000000),
    BlockStart(0, "thinking"),
    BlockDelta(0, thinking="Let me "),
    BlockDelta(0, thinking="think."),
    BlockDelta(0, signature="claude-sig"),
    BlockStop(0),
    BlockStart(1, "text"),
    BlockDelta(1, text="Hel"),
    BlockDelta(1, text=""),
    BlockDelta(1, text="lo"),
    BlockStop(1),
    BlockStart(2, "tool_call", tool_call_id="call_a", tool_name="f"),
    BlockStart(3, "tool_call", tool_call_id="call_b", tool_name="g"),
    BlockDelta(2, arguments='{"a":'),
    BlockDelta(3, arguments='{"b":2}'),
    BlockDelta(2, arguments="1}"),
    BlockStop(3),
    BlockStop(2),
    UsageUpdate(Usage(input_tokens=1, output_tokens=1)),
    Finish("tool_calls", Usage(input_tokens=30, output_tokens=12, cached_tokens=10, reasoning_tokens=4)),
]


def encode(events: list[Event], **opts: Any) -> bytes:
    enc = R.StreamEncoder("client-model", **opts)
    return b"".join(enc.encode(e) for e in events) + enc.close()


def parsed(data: bytes) -> list[tuple[str | None, dict]]:
    return [(e.event, orjson.loads(e.data)) for e in SSEParser().feed(data)]


def _client(body: bytes) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return openai.OpenAI(
        api_key="k",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def test_encoder_frames_and_sequence_numbers() -> None:
    data = encode(SCRIPT)
    assert data.endswith(b"\n\n")
    evs = parsed(data)
    for i, (name, payload) in enumerate(evs):
        assert name == payload["type"]
        assert payload["sequence_number"] == i
    types = [p["type"] for _, p in evs]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert types[2:9] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    assert types[9:15] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",  # the empty delta is not sent
        "response.output_text.done",
        "response.content_part.done",
    ]
    created = evs[0][1]["response"]
    assert created["id"].startswith("resp_") and created["status"] == "in_progress"
    assert created["model"] == "client-model" and created["created_at"] == 1700000000
    # item ids and output indexes stay consistent within each item
    by_index: dict[int, set[str]] = {}
    for _, p in evs:
        if "output_index" in p:
            iid = p.get("item_id") or p["item"]["id"]
            by_index.setdefault(p["output_index"], set()).add(iid)
    assert all(len(v) == 1 for v in by_index.values())
    prefixes = [next(iter(by_index[i]))[:3] for i in sorted(by_index)]
    assert prefixes == ["rs_", "msg", "fc_", "fc_"]
    final = evs[-1][1]["response"]
    assert final["status"] == "completed"
    assert [o["type"] for o in final["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert final["output"][0] == {
        "id": final["output"][0]["id"],
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "Let me think."}],
    }
    assert final["output"][1]["content"][0]["text"] == "Hello"
    assert final["output"][2]["arguments"] == '{"a":1}' and final["output"][2]["call_id"] == "call_a"
    assert final["output"][3]["arguments"] == '{"b":2}' and final["output"][3]["name"] == "g"
    assert final["usage"] == {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 0},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 42,
    }


def test_encoder_output_parses_in_openai_sdk() -> None:
    data = encode(SCRIPT)
    events = list(_client(data).responses.create(model="client-model", input="hi", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    with _client(data).responses.stream(model="client-model", input="hi") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert texts == ["Hel", "lo"]
    assert final.output_text == "Hello"
    calls = [o for o in final.output if o.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [("call_a", "f", '{"a":1}'), ("call_b", "g", '{"b":2}')]
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 4


def test_encoder_length_finish_is_response_incomplete() -> None:
    data = encode([Start(id="x", model="m"), BlockStart(0, "text"), BlockDelta(0, text="cut"), Finish("length")])
    name, payload = parsed(data)[-1]
    assert name == "response.incomplete"
    assert payload["response"]["status"] == "incomplete"
    assert payload["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert payload["response"]["output"][0]["content"][0]["text"] == "cut"  # open block closed first
    events = list(_client(data).responses.create(model="m", input="x", stream=True))
    assert events[-1].type == "response.incomplete"


def test_encoder_error_event_and_nothing_after() -> None:
    enc = R.StreamEncoder("m")
    data = enc.encode(Start(id="x", model="m")) + enc.encode(BlockStart(0, "text"))
    data += enc.error(429, "slow down, api_key=sk-secret")
    assert enc.encode(BlockDelta(0, text="late")) == b"" and enc.error(500, "again") == b""
    name, payload = parsed(data)[-1]
    assert name == "error"
    assert payload == {
        "type": "error",
        "code": "rate_limit_exceeded",
        "message": "slow down, api_key=[REDACTED]",
        "param": None,
        "sequence_number": 4,
    }
    events = list(_client(data).responses.create(model="m", input="x", stream=True))
    assert events[-1].type == "error" and events[-1].code == "rate_limit_exceeded"


def test_encoder_error_from_neutral_error_event() -> None:
    data = encode([Start(id="x", model="m"), Error(status=503, message="overloaded", code="server_error")])
    assert parsed(data)[-1][1]["code"] == "server_error"


def test_encoder_codex_error_is_response_failed() -> None:
    enc = R.StreamEncoder("m", codex_client=True)
    data = enc.encode(Start(id="resp_keep", model="m")) + enc.error(500, "boom")
    name, payload = parsed(data)[-1]
    assert name == "response.failed" and payload["sequence_number"] == 2
    assert payload["response"]["id"] == "resp_keep"
    assert payload["response"]["status"] == "failed"
    assert payload["response"]["error"] == {"code": "server_error", "message": "boom"}
    events = list(_client(data).responses.create(model="m", input="x", stream=True))
    assert events[-1].type == "response.failed" and events[-1].response.error.message == "boom"


def test_encoder_error_before_start_is_still_a_valid_stream() -> None:
    enc = R.StreamEncoder("m")
    data = enc.error(502, "upstream down")
    assert parsed(data) == [
        (
            "error",
            {"type": "error", "code": "server_error", "message": "upstream down", "param": None, "sequence_number": 0},
        )
    ]


@pytest.mark.parametrize(
    "name",
    [
        "stream_function_call.sse",
        "stream_reasoning_summary_text.sse",
        "stream_text_2025.sse",
        "stream_reasoning_summary_code_interpreter_cached.sse",
    ],
)
def test_decode_then_encode_round_trip_through_sdk(name: str) -> None:
    events = decode((FIX / name).read_bytes(), 11)
    data = encode(events)
    # well-formed for the passthrough framer too
    framer = ResponsesFramer()
    assert framer.feed(data) + framer.finish() == data
    with _client(data).responses.stream(model="m", input="x") as stream:
        final = stream.get_final_response()
    original = final_response(name)
    want_text = "".join(c["text"] for o in original["output"] if o["type"] == "message" for c in o["content"])
    assert final.output_text == want_text
    want_calls = [(o["call_id"], o["name"], o["arguments"]) for o in original["output"] if o["type"] == "function_call"]
    got_calls = [(o.call_id, o.name, o.arguments) for o in final.output if o.type == "function_call"]
    assert got_calls == want_calls
    assert final.usage is not None
    assert final.usage.input_tokens == original["usage"]["input_tokens"]
    assert final.usage.output_tokens == original["usage"]["output_tokens"]
    # and the encoder's bytes decode back to the same neutral blocks
    again = decode(data, 5)
    assert [(k, t) for k, t, _ in blocks(again)] == [(k, t) for k, t, _ in blocks(events)]
    assert again[-1] == events[-1]
