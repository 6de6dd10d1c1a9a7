"""OpenAI Chat Completions through a running crossroute, with the official openai SDK."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import openai
import orjson
import pytest

from .conftest import CLIENT_KEY
from .fake_upstream import FIXTURES, FakeUpstream
from .gateway_process import GatewayProcess

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def fixture_events(name: str) -> list[dict[str, Any]]:
    out = []
    for block in (FIXTURES / name).read_text().split("\n\n"):
        block = block.strip()
        if block.startswith("data: ") and block != "data: [DONE]":
            out.append(json.loads(block[6:]))
    return out


def post(
    gateway: GatewayProcess, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    h = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(gateway.url + path, data=body, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def test_non_streaming_text_and_usage(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    r = client.chat.completions.create(model="openai-text", messages=MSG)
    assert r.choices[0].message.content.startswith("The capital of Mexico is Mexico City.")
    assert r.usage.prompt_tokens == 13 and r.usage.completion_tokens == 238
    assert r.usage.completion_tokens_details.reasoning_tokens == 192
    sent = upstream.requests[-1]
    assert sent["body"]["model"] == "text"  # the upstream name, not the alias
    assert sent["headers"]["Authorization"] == "Bearer sk-openai-0"


def test_model_matching_is_case_insensitive(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="OpenAI-Text", messages=MSG)
    assert upstream.requests[-1]["body"]["model"] == "text"


def test_streaming_text_reassembled_without_extra_usage_chunk(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    chunks = list(client.chat.completions.create(model="openai-text", messages=MSG, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = "".join(
        (e["choices"][0]["delta"].get("content") or "")
        for e in fixture_events("openai_chat/stream_text_usage_2025.sse")
        if e["choices"]
    )
    assert text == expected and text
    assert all(c.choices for c in chunks), "usage-only chunk leaked to a client that did not ask for it"
    # The gateway asked the upstream for usage anyway, for its own accounting.
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}


def test_streaming_usage_when_client_asks(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="openai-text", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].prompt_tokens > 0
    assert usage[-1].prompt_tokens_details.cached_tokens is not None


@pytest.mark.parametrize(
    "scenario,fixture",
    [
        ("tools", "openai_chat/stream_tool_call_usage.sse"),
        ("parallel", "openai_chat/stream_parallel_tool_calls_usage.sse"),
    ],
)
def test_streamed_tool_call_arguments_are_exact(client: openai.OpenAI, scenario: str, fixture: str) -> None:
    expected: dict[int, str] = {}
    for e in fixture_events(fixture):
        for ch in e.get("choices", []):
            for tc in ch["delta"].get("tool_calls") or []:
                expected[tc["index"]] = expected.get(tc["index"], "") + tc["function"].get("arguments", "")
    got: dict[int, str] = {}
    names: dict[int, str] = {}
    for c in client.chat.completions.create(model=f"openai-{scenario}", messages=MSG, stream=True):
        for ch in c.choices:
            for tc in ch.delta.tool_calls or []:
                got[tc.index] = got.get(tc.index, "") + (tc.function.arguments or "")
                if tc.function.name:
                    names[tc.index] = tc.function.name
    assert got == expected
    assert all(json.loads(v) is not None for v in got.values())
    assert len(names) == len(expected)


def test_non_streaming_tool_calls(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="openai-tools", messages=MSG)
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) is not None


def test_refusal_stream(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="openai-refusal", messages=MSG, stream=True))
    refusal = "".join(getattr(c.choices[0].delta, "refusal", None) or "" for c in chunks if c.choices)
    expected = "".join(
        e["choices"][0]["delta"].get("refusal") or ""
        for e in fixture_events("openai_chat/stream_refusal_usage.sse")
        if e["choices"]
    )
    assert refusal == expected and refusal


def test_reasoning_content_passes_through(gateway: GatewayProcess) -> None:
    # reasoning_content is not in the SDK's types; read the raw stream.
    body = orjson.dumps({"model": "openai-thinking", "messages": MSG, "stream": True})
    req = urllib.request.Request(
        gateway.url + "/v1/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        raw = r.read().decode()
    assert '"reasoning_content"' in raw and raw.rstrip().endswith("data: [DONE]")


def test_midstream_error_becomes_error_event(client: openai.OpenAI) -> None:
    got = []
    with pytest.raises(openai.APIError) as exc:
        for c in client.chat.completions.create(model="openai-midstream", messages=MSG, stream=True):
            got.append(c)
    assert got, "the chunks before the failure reach the client"
    assert "server had an error" in str(exc.value)


def test_connection_cut_mid_stream_is_a_clean_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="openai-cut", messages=MSG, stream=True))


@pytest.mark.parametrize(
    "status,exc_type",
    [
        (400, openai.BadRequestError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
def test_upstream_errors_pass_through(client: openai.OpenAI, status: int, exc_type: type) -> None:
    with pytest.raises(exc_type) as exc:
        client.chat.completions.create(model=f"openai-err{status}", messages=MSG)
    assert exc.value.status_code == status
    assert f"synthetic upstream error {status}" in str(exc.value)


def test_upstream_timeout_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="openai-hang", messages=MSG)
    assert exc.value.status_code == 504


def test_unknown_model_is_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="no-such-model", messages=MSG)
    assert "no-such-model" in str(exc.value)
    assert exc.value.body["param"] == "model"


def test_unknown_fields_forwarded_in_order(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    body = b'{"zeta":1,"model":"openai-text","messages":[{"role":"user","content":"x","custom":true}],"alpha":{"b":2}}'
    status, _, _ = post(gateway, "/v1/chat/completions", body)
    assert status == 200
    sent = upstream.requests[-1]["body"]
    assert list(sent) == ["zeta", "model", "messages", "alpha"]
    assert sent["alpha"] == {"b": 2} and sent["messages"][0]["custom"] is True


@pytest.mark.parametrize(
    "body,needle,param",
    [
        (b"{not json", "not valid JSON", None),
        (b"[1,2]", "must be a JSON object", None),
        (b'{"model":"openai-text"}', "'messages' is required", "messages"),
        (b'{"model":"openai-text","messages":"hi"}', "'messages' must be", "messages"),
        (b'{"model":"openai-text","messages":[{"role":"user","content":"x"}],"stream":"yes"}', "'stream'", "stream"),
        (b'{"messages":[{"role":"user","content":"x"}]}', "'model' is required", "model"),
        (b"", "empty", None),
    ],
)
def test_bad_input_gets_openai_shaped_4xx(gateway: GatewayProcess, body: bytes, needle: str, param: str | None) -> None:
    status, err, _ = post(gateway, "/v1/chat/completions", body)
    assert status == 400
    assert needle in err["error"]["message"]
    assert err["error"]["type"] == "invalid_request_error"
    assert err["error"]["param"] == param


def test_client_keys_in_every_form(gateway: GatewayProcess) -> None:
    body = orjson.dumps({"model": "openai-text", "messages": MSG})
    for headers, path in [
        ({"Authorization": f"Bearer {CLIENT_KEY}"}, "/v1/chat/completions"),
        ({"Authorization": "", "x-api-key": CLIENT_KEY}, "/v1/chat/completions"),
        ({"Authorization": "", "x-goog-api-key": CLIENT_KEY}, "/v1/chat/completions"),
        ({"Authorization": ""}, f"/v1/chat/completions?key={CLIENT_KEY}"),
    ]:
        h = {k: v for k, v in headers.items() if v}
        req = urllib.request.Request(gateway.url + path, data=body, headers=h, method="POST")
        with urllib.request.urlopen(req, timeout=20) as r:
            assert r.status == 200


def test_missing_and_wrong_key_are_401(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="wrong", max_retries=0).models.list()
    req = urllib.request.Request(gateway.url + "/v1/models")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=5)
    assert exc.value.code == 401
    assert json.loads(exc.value.read())["error"]["type"] == "authentication_error"


def test_browser_origin_and_foreign_host_refused(gateway: GatewayProcess) -> None:
    body = orjson.dumps({"model": "openai-text", "messages": MSG})
    status, err, headers = post(gateway, "/v1/chat/completions", body, {"Origin": "https://evil.example"})
    assert status == 403 and "Origin" in err["error"]["message"]
    assert "access-control-allow-origin" not in {k.lower() for k in headers}
    status, err, _ = post(gateway, "/v1/chat/completions", body, {"Host": "attacker.example:8317"})
    assert status == 403 and "Host" in err["error"]["message"]
    status, _, _ = post(gateway, "/v1/chat/completions", body, {"Host": "localhost:8317"})
    assert status == 200


def test_models_list(client: openai.OpenAI) -> None:
    models = {m.id: m.owned_by for m in client.models.list()}
    assert models["openai-text"] == "fake-openai"
    assert "claude-text" in models


def test_client_disconnect_cancels_upstream(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    before = upstream.cancelled_streams
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    stream = client.chat.completions.create(model="openai-trickle", messages=MSG, stream=True)
    stream.response.close()  # the client goes away while the upstream is still sending
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and upstream.cancelled_streams == before:
        time.sleep(0.05)
    assert upstream.cancelled_streams > before


def test_healthz_needs_no_key(gateway: GatewayProcess) -> None:
    with urllib.request.urlopen(gateway.url + "/healthz", timeout=5) as r:
        assert json.loads(r.read()) == {"status": "ok"}


def test_a_web_page_answered_with_200_is_a_502_not_a_reply(gateway: GatewayProcess) -> None:
    # same format (chat over chat): the answer passes through unparsed, but only a JSON object does
    status, body, _ = post(gateway, "/v1/chat/completions", orjson.dumps({"model": "openai-html", "messages": MSG}))
    assert status == 502
    assert "could not be read" in body["error"]["message"] and "fake-openai" in body["error"]["message"]
