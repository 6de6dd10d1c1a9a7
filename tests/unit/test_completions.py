"""Legacy /v1/completions <-> chat completions mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest

from crossroute.formats import completions as cp
from crossroute.formats.neutral import BadRequest
from crossroute.formats.sse import SSEParser

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "openai_chat"


def test_request_to_chat_copies_fields() -> None:
    body = {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Say this is a test",
        "max_tokens": 7,
        "temperature": 0,
        "top_p": 0.5,
        "stop": ["\n"],
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "n": 2,
        "seed": 3,
        "user": "u",
        "echo": True,
        "suffix": "x",
        "best_of": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert cp.request_to_chat(body) == {
        "model": "gpt-3.5-turbo-instruct",
        "messages": [{"role": "user", "content": "Say this is a test"}],
        "max_tokens": 7,
        "temperature": 0,
        "top_p": 0.5,
        "stop": ["\n"],
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "n": 2,
        "seed": 3,
        "user": "u",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("prompt", "text"),
    [(None, "Complete this:"), ("", "Complete this:"), ("hi", "hi"), (["a", "b"], "a\nb"), ([], "Complete this:")],
)
def test_request_prompt_forms(prompt: Any, text: str) -> None:
    body: dict[str, Any] = {"model": "m"}
    if prompt is not None:
        body["prompt"] = prompt
    chat = cp.request_to_chat(body)
    assert chat["messages"] == [{"role": "user", "content": text}]
    assert "stream" not in chat


@pytest.mark.parametrize(
    ("body", "param"),
    [({"model": "m", "prompt": [1, 2, 3]}, "prompt"), ({"model": "m", "prompt": "x", "stream": "1"}, "stream")],
)
def test_request_validation(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as ei:
        cp.request_to_chat(body)
    assert ei.value.param == param


def test_response_from_chat_fixture() -> None:
    chat = orjson.loads((FIX / "nonstream_text_reasoning_tokens.json").read_bytes())
    out = cp.response_from_chat(chat)
    assert out["object"] == "text_completion"
    assert out["id"] == "chatcmpl-BgzadlOEkRTXYim8s2TzQfnSpaZ4u"
    assert out["created"] == 1749586227 and out["model"] == "o3-mini-2025-01-31"
    assert out["choices"] == [
        {
            "text": chat["choices"][0]["message"]["content"],
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert out["usage"] == chat["usage"]
    # the SDK's own type accepts it
    c = openai.types.Completion.model_validate(out)
    assert c.choices[0].text.startswith("The capital of Mexico")


def test_response_from_chat_tool_only() -> None:
    chat = orjson.loads((FIX / "nonstream_tool_calls.json").read_bytes())
    out = cp.response_from_chat(chat)
    assert out["choices"][0]["text"] == "" and out["choices"][0]["finish_reason"] == "tool_calls"


def chat_chunks(name: str) -> list[dict[str, Any]]:
    p = SSEParser()
    return [orjson.loads(e.data) for e in p.feed((FIX / name).read_bytes()) if e.data != b"[DONE]"]


def test_stream_converts_fixture() -> None:
    conv = cp.CompletionsStream()
    out = [c for c in map(conv.convert, chat_chunks("stream_text_usage_2025.sse")) if c is not None]
    assert all(c["object"] == "text_completion" for c in out)
    assert "".join(ch["text"] for c in out for ch in c["choices"]) == "The capital of the UK is London."
    assert out[-2]["choices"] == [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]
    assert out[-1]["choices"] == [] and out[-1]["usage"]["total_tokens"] == 87
    assert {c["id"] for c in out} == {"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc"}
    # the role-only first chunk carries nothing for a legacy client
    assert len(out) == len(chat_chunks("stream_text_usage_2025.sse")) - 1


def test_stream_skips_reasoning_and_reports_model() -> None:
    conv = cp.CompletionsStream("alias")
    chunks = chat_chunks("stream_deepseek_reasoning_content.sse")
    out = [c for c in map(conv.convert, chunks) if c is not None]
    assert "".join(ch["text"] for c in out for ch in c["choices"]) == "Hello there! 😊 How can I help you today?"
    assert {c["model"] for c in out} == {"alias"}
    assert out[-1]["choices"][0]["finish_reason"] == "stop" and out[-1]["usage"]["completion_tokens"] == 212


def test_sdk_reads_converted_stream() -> None:
    conv = cp.CompletionsStream()
    payload = b"".join(
        b"data: " + orjson.dumps(c) + b"\n\n"
        for c in map(conv.convert, chat_chunks("stream_text_usage.sse"))
        if c is not None
    )
    payload += b"data: [DONE]\n\n"

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/completions"
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=payload)

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )
    text, finish, usage = "", None, None
    for chunk in client.completions.create(model="m", prompt="x", stream=True):
        for ch in chunk.choices:
            text += ch.text
            finish = ch.finish_reason or finish
        usage = chunk.usage or usage
    assert text.startswith("I'm unable to provide real-time weather updates.")
    assert text.endswith("a weather app.")
    assert finish == "stop" and usage is not None and usage.total_tokens == 44
