"""Every client format over every upstream format, streamed and not, with the official SDKs.

Clients: openai (chat), openai (Responses), anthropic, google-genai. Upstreams: a fake
OpenAI-compatible server, a Responses server, an Anthropic server and a Gemini server replaying
recorded transcripts. Expected values come from the recordings themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes

from crossroute.formats import translate
from crossroute.formats.neutral import BlockDelta, BlockStart, Finish, Start, Text, Thinking, ToolCall, UsageUpdate
from crossroute.formats.sse import SSEParser

from .conftest import CLIENT_KEY
from .fake_upstream import FILES, FIXTURES
from .gateway_process import GatewayProcess

CLIENTS = ["openai", "responses", "claude", "gemini"]
UPSTREAMS = ["openai", "responses", "claude", "gemini"]


@dataclass
class Result:
    text: str = ""
    tools: list[tuple[str, Any]] = field(default_factory=list)
    thinking: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None


def expected(kind: str, scenario: str, stream: bool) -> Result:
    """What the recording of ``kind`` says, read through the neutral form."""
    stream_file, json_file = FILES[kind][scenario]
    mod = translate.module(kind)
    r = Result()
    if not stream:
        resp = mod.response_to_neutral(orjson.loads((FIXTURES / json_file).read_bytes()))
        for p in resp.content:
            if isinstance(p, Text):
                r.text += p.text
            elif isinstance(p, ToolCall):
                r.tools.append((p.name, json.loads(p.arguments or "{}")))
            elif isinstance(p, Thinking):
                r.thinking += p.text
        r.input_tokens, r.output_tokens = resp.usage.input_tokens, resp.usage.output_tokens
        return r
    parser, dec = SSEParser(), mod.StreamDecoder("m")
    events = []
    for sse in parser.feed((FIXTURES / stream_file).read_bytes()):
        events += dec.feed(sse)
    tail = parser.flush()
    if tail is not None:
        events += dec.feed(tail)
    events += dec.close()
    blocks: dict[int, str] = {}
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    for ev in events:
        if isinstance(ev, BlockStart):
            blocks[ev.index] = ev.block
            if ev.block == "tool_call":
                names[ev.index] = ev.tool_name or ""
                args[ev.index] = ""
        elif isinstance(ev, BlockDelta):
            if ev.text:
                r.text += ev.text
            if ev.thinking:
                r.thinking += ev.thinking
            if ev.arguments:
                args[ev.index] += ev.arguments
        elif isinstance(ev, Start | UsageUpdate | Finish) and getattr(ev, "usage", None) is not None:
            r.input_tokens, r.output_tokens = ev.usage.input_tokens, ev.usage.output_tokens
    r.tools = [(names[i], json.loads(args[i] or "{}")) for i in sorted(args)]
    return r


# ---------------------------------------------------------------- one call per client format


def call_openai(gw: GatewayProcess, model: str, stream: bool) -> Result:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    msgs = [{"role": "user", "content": "hi"}]
    r = Result()
    if not stream:
        resp = c.chat.completions.create(model=model, messages=msgs)
        m = resp.choices[0].message
        r.text = m.content or ""
        r.tools = [(t.function.name, json.loads(t.function.arguments or "{}")) for t in m.tool_calls or []]
        r.input_tokens, r.output_tokens = resp.usage.prompt_tokens, resp.usage.completion_tokens
        return r
    args: dict[int, list[str]] = {}
    for chunk in c.chat.completions.create(model=model, messages=msgs, stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.usage:
            r.input_tokens, r.output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
        for ch in chunk.choices:
            r.text += ch.delta.content or ""
            for tc in ch.delta.tool_calls or []:
                slot = args.setdefault(tc.index, ["", ""])
                slot[0] = tc.function.name or slot[0] if tc.function else slot[0]
                slot[1] += (tc.function.arguments or "") if tc.function else ""
    r.tools = [(n, json.loads(a or "{}")) for n, a in (args[i] for i in sorted(args))]
    return r


class StreamFailed(Exception):
    """A Responses stream that reported ``error`` or ``response.failed`` (the SDK yields these as events)."""


def call_responses(gw: GatewayProcess, model: str, stream: bool) -> Result:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    if stream:
        events = list(c.responses.create(model=model, input="hi", stream=True))
        types = [e.type for e in events]
        errors = [e for e in events if e.type in ("error", "response.failed")]
        if errors:
            raise StreamFailed(str(errors[0]))
        assert types[0] == "response.created" and types[-1] in ("response.completed", "response.incomplete")
        seqs = [e.sequence_number for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        resp = events[-1].response
    else:
        resp = c.responses.create(model=model, input="hi")
    r = Result(text=resp.output_text or "")
    for item in resp.output:
        if item.type == "function_call":
            r.tools.append((item.name, json.loads(item.arguments or "{}")))
    if resp.usage:
        r.input_tokens, r.output_tokens = resp.usage.input_tokens, resp.usage.output_tokens
    return r


def call_claude(gw: GatewayProcess, model: str, stream: bool) -> Result:
    c = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
    msgs = [{"role": "user", "content": "hi"}]
    if stream:
        with c.messages.stream(model=model, max_tokens=1024, messages=msgs) as s:
            msg = s.get_final_message()
    else:
        msg = c.messages.create(model=model, max_tokens=1024, messages=msgs)
    r = Result()
    for block in msg.content:
        if block.type == "text":
            r.text += block.text
        elif block.type == "tool_use":
            r.tools.append((block.name, block.input))
        elif block.type == "thinking":
            r.thinking += block.thinking
    u = msg.usage
    r.input_tokens = u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
    r.output_tokens = u.output_tokens
    return r


def call_gemini(gw: GatewayProcess, model: str, stream: bool) -> Result:
    c = genai.Client(api_key=CLIENT_KEY, http_options=gtypes.HttpOptions(base_url=gw.url, api_version="v1beta"))
    chunks = list(c.models.generate_content_stream(model=model, contents="hi")) if stream else \
        [c.models.generate_content(model=model, contents="hi")]
    r = Result()
    for ch in chunks:
        for cand in ch.candidates or []:
            for p in (cand.content.parts if cand.content and cand.content.parts else []):
                if p.function_call:
                    r.tools.append((p.function_call.name, dict(p.function_call.args or {})))
                elif p.thought:
                    r.thinking += p.text or ""
                elif p.text:
                    r.text += p.text
        if ch.usage_metadata and ch.usage_metadata.prompt_token_count is not None:
            r.input_tokens = ch.usage_metadata.prompt_token_count
            r.output_tokens = (ch.usage_metadata.candidates_token_count or 0) + \
                (ch.usage_metadata.thoughts_token_count or 0)
    return r


CALL = {"openai": call_openai, "responses": call_responses, "claude": call_claude, "gemini": call_gemini}
STATUS_ERRORS = (openai.APIStatusError, anthropic.APIStatusError, genai_errors.APIError)
STREAM_ERRORS = (openai.APIError, anthropic.APIError, genai_errors.APIError, StreamFailed)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("upstream_kind", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
def test_text(gateway: GatewayProcess, client: str, upstream_kind: str, stream: bool) -> None:
    got = CALL[client](gateway, f"{upstream_kind}-text", stream)
    want = expected(upstream_kind, "text", stream)
    assert got.text == want.text and got.text
    assert got.input_tokens == want.input_tokens
    assert got.output_tokens == want.output_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("upstream_kind", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
def test_tool_calls(gateway: GatewayProcess, client: str, upstream_kind: str, stream: bool) -> None:
    got = CALL[client](gateway, f"{upstream_kind}-tools", stream)
    want = expected(upstream_kind, "tools", stream)
    assert want.tools, "the recording has tool calls"
    assert got.tools == want.tools
    assert got.text == want.text


@pytest.mark.parametrize("upstream_kind", ["claude", "gemini", "openai", "responses"])
@pytest.mark.parametrize("client", ["claude", "gemini"])
def test_thinking_reaches_clients_that_show_it(gateway: GatewayProcess, client: str, upstream_kind: str) -> None:
    got = CALL[client](gateway, f"{upstream_kind}-thinking", True)
    want = expected(upstream_kind, "thinking", True)
    assert want.thinking
    assert got.thinking == want.thinking
    assert got.text == want.text


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("upstream_kind", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
def test_error_before_first_byte(gateway: GatewayProcess, client: str, upstream_kind: str, stream: bool) -> None:
    with pytest.raises(STATUS_ERRORS) as exc:
        CALL[client](gateway, f"{upstream_kind}-err429", stream)
    status = getattr(exc.value, "status_code", None) or getattr(exc.value, "code", None)
    assert status == 429
    assert "synthetic upstream error 429" in str(exc.value)


@pytest.mark.parametrize("upstream_kind", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("scenario", ["midstream", "cut"])
def test_error_after_first_byte(gateway: GatewayProcess, client: str, upstream_kind: str, scenario: str) -> None:
    with pytest.raises(STREAM_ERRORS):
        CALL[client](gateway, f"{upstream_kind}-{scenario}", True)
