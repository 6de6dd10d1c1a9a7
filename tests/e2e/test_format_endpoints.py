"""The per-format endpoints beyond generation: counting, model lists, legacy completions,
compaction, Gemini's JSON-array stream, client keys as each SDK sends them, and bad input."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import anthropic
import openai
import orjson
import pytest
from google import genai
from google.genai import types as gtypes

from .conftest import CLIENT_KEY
from .fake_upstream import FakeUpstream
from .gateway_process import GatewayProcess


def http(gw: GatewayProcess, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes, dict[str, str]]:
    h = {"Authorization": f"Bearer {CLIENT_KEY}", **(headers or {})}
    data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    req = urllib.request.Request(gw.url + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


def claude_client(gw: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0)


def gemini_client(gw: GatewayProcess) -> genai.Client:
    return genai.Client(api_key=CLIENT_KEY, http_options=gtypes.HttpOptions(base_url=gw.url, api_version="v1beta"))


# ---------------------------------------------------------------- token counting


def test_claude_count_tokens_on_claude_upstream_uses_its_endpoint(gateway: GatewayProcess,
                                                                  upstream: FakeUpstream) -> None:
    r = claude_client(gateway).messages.count_tokens(model="claude-text",
                                                     messages=[{"role": "user", "content": "hello"}])
    assert r.input_tokens == 42
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/messages/count_tokens" and sent["body"]["model"] == "text"


def test_claude_count_tokens_on_gemini_upstream_is_translated(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    r = claude_client(gateway).messages.count_tokens(
        model="gemini-text", system="be brief", messages=[{"role": "user", "content": "hello"}])
    assert r.input_tokens == 42
    sent = upstream.requests[-1]
    assert sent["path"].endswith(":countTokens")
    assert sent["body"]["generateContentRequest"]["contents"][0]["parts"][0]["text"] == "hello"


def test_count_tokens_without_upstream_endpoint_is_a_labelled_estimate(gateway: GatewayProcess) -> None:
    status, body, headers = http(gateway, "POST", "/v1/messages/count_tokens", {
        "model": "openai-text", "messages": [{"role": "user", "content": "hello " * 100}]})
    assert status == 200
    assert headers["x-crossroute-token-count"] == "estimate"
    assert 100 <= json.loads(body)["input_tokens"] <= 400


def test_gemini_count_tokens(gateway: GatewayProcess) -> None:
    c = gemini_client(gateway)
    assert c.models.count_tokens(model="gemini-text", contents="hello").total_tokens == 42
    assert c.models.count_tokens(model="claude-text", contents="hello").total_tokens == 42
    status, _, headers = http(gateway, "POST", "/v1beta/models/openai-text:countTokens",
                              {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert status == 200 and headers["x-crossroute-token-count"] == "estimate"


# ---------------------------------------------------------------- model lists


def test_models_lists_in_each_shape(gateway: GatewayProcess) -> None:
    status, body, _ = http(gateway, "GET", "/v1/models", headers={"anthropic-version": "2023-06-01"})
    data = json.loads(body)
    assert status == 200 and data["has_more"] is False and data["data"][0]["type"] == "model"
    ids = {m.id for m in claude_client(gateway).models.list()}
    assert "claude-text" in ids
    gc = gemini_client(gateway)  # keep a reference: the SDK closes its HTTP client when collected
    names = {m.name for m in gc.models.list()}
    assert "models/gemini-text" in names
    status, body, _ = http(gateway, "GET", "/v1beta/models/gemini-text")
    assert status == 200 and json.loads(body)["name"] == "models/gemini-text"
    status, body, _ = http(gateway, "GET", "/v1beta/models/nope")
    assert status == 404 and json.loads(body)["error"]["status"] == "NOT_FOUND"
    oa = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    assert oa.models.retrieve("openai-text").owned_by == "fake-openai"


# ---------------------------------------------------------------- Gemini stream forms


def test_gemini_stream_without_alt_sse_is_a_json_array(gateway: GatewayProcess) -> None:
    for model in ("gemini-text", "openai-text"):
        status, body, headers = http(gateway, "POST", f"/v1beta/models/{model}:streamGenerateContent",
                                     {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        assert status == 200 and headers["content-type"].startswith("application/json")
        chunks = json.loads(body)
        assert isinstance(chunks, list) and chunks
        assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_gemini_sse_has_only_data_lines(gateway: GatewayProcess) -> None:
    status, body, _ = http(gateway, "POST", "/v1beta/models/claude-text:streamGenerateContent?alt=sse",
                           {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert status == 200
    lines = [ln for ln in body.decode().splitlines() if ln.strip()]
    assert lines and all(ln.startswith("data: ") for ln in lines)


def test_gemini_v1_path_and_query_key(gateway: GatewayProcess) -> None:
    status, body, _ = http(gateway, "POST", f"/v1/models/gemini-text:generateContent?key={CLIENT_KEY}",
                           {"contents": [{"parts": [{"text": "hi"}]}]}, headers={"Authorization": ""})
    assert status == 200 and json.loads(body)["candidates"]


# ---------------------------------------------------------------- legacy completions, compaction


@pytest.mark.parametrize("model", ["openai-text", "claude-text", "gemini-text"])
def test_legacy_completions(gateway: GatewayProcess, model: str) -> None:
    oa = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    r = oa.completions.create(model=model, prompt="Say hi")
    assert r.object == "text_completion" and r.choices[0].text
    text = "".join(c.choices[0].text for c in oa.completions.create(model=model, prompt="Say hi", stream=True)
                   if c.choices)
    assert text == r.choices[0].text or text


def test_responses_compact_passes_to_responses_upstreams(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    status, body, _ = http(gateway, "POST", "/v1/responses/compact", {"model": "responses-text", "input": []})
    assert status == 200 and json.loads(body)["object"] == "response.compaction"
    assert upstream.requests[-1]["path"] == "/v1/responses/compact"
    status, body, _ = http(gateway, "POST", "/v1/responses/compact", {"model": "claude-text", "input": []})
    assert status == 400 and "compaction" in json.loads(body)["error"]["message"]


# ---------------------------------------------------------------- client keys as the SDKs send them


def test_anthropic_key_forms(gateway: GatewayProcess) -> None:
    body = {"model": "claude-text", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    assert http(gateway, "POST", "/v1/messages", body, {"Authorization": "", "x-api-key": CLIENT_KEY})[0] == 200
    status, raw, _ = http(gateway, "POST", "/v1/messages", body, {"Authorization": "", "x-api-key": "nope"})
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
    assert json.loads(raw)["type"] == "error"


# ---------------------------------------------------------------- bad input, in each API's own shape


def test_anthropic_without_max_tokens(gateway: GatewayProcess) -> None:
    status, raw, _ = http(gateway, "POST", "/v1/messages",
                          {"model": "claude-text", "messages": [{"role": "user", "content": "hi"}]})
    err = json.loads(raw)
    assert status == 400 and err["type"] == "error" and "max_tokens" in err["error"]["message"]


@pytest.mark.parametrize("path,body,fmt,needle", [
    ("/v1beta/models/gemini-text:generateContent", {"generationConfig": {}}, "gemini", "contents"),
    ("/v1beta/models/gemini-text:generateContent", {"contents": "hi"}, "gemini", "contents"),
    ("/v1/responses", {"model": "responses-text", "input": 42}, "openai", "input"),
    ("/v1/messages", {"model": "claude-text", "max_tokens": 5, "messages": "hi"}, "claude", "messages"),
    ("/v1/messages", {"model": "openai-text", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                      "tools": [{"name": "t", "input_schema": "not-an-object"}]}, "claude", "input_schema"),
    ("/v1/responses", {"model": "claude-text", "input": "x",
                       "tools": [{"type": "function", "name": "t", "parameters": [1]}]}, "openai", "parameters"),
    ("/v1/chat/completions", {"model": "claude-text", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}, "openai", "audio"),
    ("/v1beta/models/claude-text:generateContent", {"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "audio/wav", "data": "AAAA"}}]}]}, "gemini", "audio"),
])
def test_bad_input_named_in_the_clients_shape(gateway: GatewayProcess, path: str, body: dict[str, Any], fmt: str,
                                              needle: str) -> None:
    status, raw, _ = http(gateway, "POST", path, body, {"x-goog-api-key": CLIENT_KEY})
    err = json.loads(raw)
    assert status == 400, err
    if fmt == "gemini":
        assert err["error"]["status"] == "INVALID_ARGUMENT" and needle in err["error"]["message"].lower()
    elif fmt == "claude":
        assert err["type"] == "error" and needle in err["error"]["message"].lower()
    else:
        assert needle in err["error"]["message"].lower() or needle in (err["error"]["param"] or "")


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses", "/v1beta/models/gemini-text:generateContent"])
def test_malformed_json_per_format(gateway: GatewayProcess, path: str) -> None:
    status, raw, _ = http(gateway, "POST", path, b"{oops")
    assert status == 400 and b"not valid JSON" in raw


# ---------------------------------------------------------------- thinking suffix, native Responses, Codex clients


def test_thinking_suffix_in_each_upstream_format(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    oa = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    oa.chat.completions.create(model="claude-text(high)", messages=msgs)
    sent = upstream.requests[-1]["body"]
    assert sent["model"] == "text" and sent["thinking"] == {"type": "enabled", "budget_tokens": 24576}
    assert sent["max_tokens"] > 24576
    oa.chat.completions.create(model="gemini-text(8192)", messages=msgs)
    gen = upstream.requests[-1]["body"]["generationConfig"]
    assert gen["thinkingConfig"]["thinkingBudget"] == 8192
    oa.chat.completions.create(model="openai-text(low)", messages=msgs)  # same format: only the effort changes
    assert upstream.requests[-1]["body"]["reasoning_effort"] == "low"
    assert upstream.requests[-1]["body"]["model"] == "text"


def test_openai_compatible_upstream_serving_responses_natively(gateway: GatewayProcess,
                                                               upstream: FakeUpstream) -> None:
    oa = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    r = oa.responses.create(model="native-text", input="hi")
    assert r.output_text
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/responses" and sent["body"]["input"] == "hi"  # passed through, not translated
    oa.chat.completions.create(model="native-text", messages=[{"role": "user", "content": "hi"}])
    assert upstream.requests[-1]["path"] == "/v1/chat/completions"


@pytest.mark.parametrize("user_agent,terminal", [
    ("codex_cli_rs/0.50.0 (Linux 6.1; x86_64)", "response.failed"),
    ("OpenAI/Python 3.54.0", "error"),
])
def test_responses_stream_cut_ends_with_the_clients_terminal_event(gateway: GatewayProcess, user_agent: str,
                                                                   terminal: str) -> None:
    status, raw, _ = http(gateway, "POST", "/v1/responses", {"model": "responses-cut", "input": "hi",
                                                             "stream": True}, {"User-Agent": user_agent})
    assert status == 200
    events = [ln[7:] for ln in raw.decode().splitlines() if ln.startswith("event: ")]
    assert events[0] == "response.created" and events[-1] == terminal
    last = json.loads([ln for ln in raw.decode().splitlines() if ln.startswith("data: ")][-1][6:])
    assert last["type"] == terminal
