"""Fuzzing the four client APIs of a real gateway process with hypothesis.

Bodies are well-formed-ish requests whose known fields sometimes hold any JSON value (wrong types,
nulls, odd unicode, huge numbers, deep nesting), posted to each endpoint for models served by each
upstream kind (so both same-format passthrough and translation run). Whatever the body, the
gateway never answers with a 5xx of its own (the fake upstream does not fail here, so a 502 must at
least name the upstream) and an error body is in the client's own format.

Bounded: ``FUZZ_EXAMPLES`` examples per endpoint (default 150), no deadline; derandomized when
``CI`` is set so a failure there reproduces.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import CLIENT_KEY
from .gateway_process import GatewayProcess

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
MODELS = ["openai-text", "claude-text", "gemini-text", "responses-text"]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------- values

ODD_TEXT = st.sampled_from(["", " ", "\u0000", "\ufeff", "\u202e rtl", "😀" * 3, "\ud7ff\ue000", "a\r\nb", "\\u0000",
                            "<|im_end|>", "data: [DONE]\n\n", "\U0010ffff", "é" * 50])
TEXT = st.text(max_size=20) | ODD_TEXT
NUMBERS = (st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**64, 1e308, -0.0, 1e-300]))
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
WILD = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    depth = draw(st.integers(min_value=100, max_value=400))
    leaf: Any = draw(SCALARS)
    as_dict = draw(st.booleans())
    for _ in range(depth):
        leaf = {"a": leaf} if as_dict else [leaf]
    return leaf


def sometimes(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a well-formed value, sometimes anything at all."""
    return st.one_of(good, good, good, good, good, WILD)


def body_of(required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
            ) -> st.SearchStrategy[dict[str, Any]]:
    """A body of the known fields, a few unknown ones, and now and then one field nested deep."""
    extra = st.dictionaries(TEXT, WILD, max_size=2)
    fixed = st.fixed_dictionaries({k: sometimes(v) for k, v in required.items()},
                                  optional={k: sometimes(v) for k, v in optional.items()})
    keys = sorted(required) + sorted(optional)
    nested = st.one_of(*[st.none()] * 9, st.tuples(st.sampled_from(keys), deep()))

    def build(a: dict[str, Any], b: dict[str, Any], n: tuple[str, Any] | None) -> dict[str, Any]:
        body = {**b, **a}
        if n is not None:
            body[n[0]] = n[1]
        return body

    return st.builds(build, fixed, extra, nested)


def obj(required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]] | None = None
        ) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({k: sometimes(v) for k, v in required.items()},
                                 optional={k: sometimes(v) for k, v in (optional or {}).items()})


SCHEMA = st.just({"type": "object", "properties": {"q": {"type": "string"}}}) | WILD

# ---------------------------------------------------------------- OpenAI chat + completions

CHAT_PART = obj({"type": st.sampled_from(["text", "image_url", "input_audio", "file", "refusal", "x"])},
                {"text": TEXT, "image_url": obj({"url": st.just("data:image/png;base64,iVBORw0KGgo=") | TEXT}),
                 "file": obj({"file_data": TEXT}), "input_audio": obj({"data": TEXT, "format": TEXT})})
CHAT_MSG = obj(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]),
     "content": TEXT | st.lists(CHAT_PART, max_size=3)},
    {"tool_calls": st.lists(obj({"id": TEXT, "type": st.just("function"),
                                 "function": obj({"name": TEXT, "arguments": TEXT})}), max_size=2),
     "tool_call_id": TEXT, "name": TEXT},
)
CHAT_TOOL = obj({"type": st.sampled_from(["function", "custom", "web_search"]),
                 "function": obj({"name": st.sampled_from(["f", "g_1"]) | TEXT}, {"parameters": SCHEMA})})
CHAT = body_of(
    {"messages": st.lists(CHAT_MSG, min_size=1, max_size=4)},
    {"stream": st.booleans(), "max_tokens": st.integers(1, 100), "temperature": st.floats(0, 2),
     "tools": st.lists(CHAT_TOOL, max_size=2), "tool_choice": st.sampled_from(["auto", "none", "required"]),
     "response_format": obj({"type": st.sampled_from(["text", "json_object", "json_schema"])},
                            {"json_schema": obj({"name": TEXT, "schema": SCHEMA})}),
     "stop": TEXT | st.lists(TEXT, max_size=2), "stream_options": obj({"include_usage": st.booleans()}),
     "reasoning_effort": st.sampled_from(["low", "high"]), "n": st.integers(1, 2), "user": TEXT,
     "metadata": st.dictionaries(TEXT, TEXT, max_size=2)},
)
COMPLETIONS = body_of({"prompt": TEXT | st.lists(TEXT, max_size=2)},
                      {"stream": st.booleans(), "max_tokens": st.integers(1, 50), "stop": TEXT, "echo": st.booleans()})

# ---------------------------------------------------------------- Responses

RESP_PART = obj({"type": st.sampled_from(["input_text", "output_text", "input_image", "input_file", "refusal"])},
                {"text": TEXT, "image_url": TEXT, "file_data": TEXT})
RESP_ITEM = st.one_of(
    obj({"type": st.just("message"), "role": st.sampled_from(["user", "assistant", "system", "developer"]),
         "content": TEXT | st.lists(RESP_PART, max_size=2)}),
    obj({"type": st.sampled_from(["function_call", "custom_tool_call"]), "call_id": TEXT, "name": TEXT},
        {"arguments": TEXT, "input": TEXT, "namespace": TEXT}),
    obj({"type": st.sampled_from(["function_call_output", "custom_tool_call_output"]), "call_id": TEXT,
         "output": TEXT}),
    obj({"type": st.sampled_from(["reasoning", "web_search_call", "local_shell_call", "tool_search_call", "x"])},
        {"summary": st.lists(obj({"type": st.just("summary_text"), "text": TEXT}), max_size=2),
         "encrypted_content": TEXT, "action": WILD, "call_id": TEXT}),
)
RESP_TOOL = st.one_of(
    obj({"type": st.just("function"), "name": st.sampled_from(["f", "shell"]) | TEXT}, {"parameters": SCHEMA}),
    obj({"type": st.just("custom"), "name": st.just("apply_patch") | TEXT},
        {"format": obj({"type": st.just("grammar"), "syntax": st.just("lark"), "definition": TEXT})}),
    obj({"type": st.just("namespace"), "name": TEXT,
         "tools": st.lists(obj({"type": st.just("function"), "name": TEXT}), max_size=2)}),
    obj({"type": st.sampled_from(["web_search", "tool_search", "local_shell", "image_generation", "mcp"])}),
)
RESPONSES = body_of(
    {"input": TEXT | st.lists(RESP_ITEM, min_size=1, max_size=4)},
    {"stream": st.booleans(), "instructions": TEXT, "max_output_tokens": st.integers(16, 100),
     "tools": st.lists(RESP_TOOL, max_size=3), "tool_choice": st.sampled_from(["auto", "none", "required"]),
     "reasoning": obj({}, {"effort": st.sampled_from(["low", "high"]), "summary": st.just("auto")}),
     "text": obj({}, {"format": obj({"type": st.sampled_from(["text", "json_schema"])},
                                    {"name": TEXT, "schema": SCHEMA, "description": TEXT})}),
     "store": st.booleans(), "include": st.lists(TEXT, max_size=2), "parallel_tool_calls": st.booleans()},
)

# ---------------------------------------------------------------- Anthropic Messages

CLAUDE_BLOCK = obj({"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "document",
                                             "server_tool_use", "x"])},
                   {"text": TEXT, "id": TEXT, "name": TEXT, "input": WILD, "tool_use_id": TEXT, "content": WILD,
                    "thinking": TEXT, "signature": TEXT, "source": WILD,
                    "cache_control": st.just({"type": "ephemeral"})})
CLAUDE_MSG = obj({"role": st.sampled_from(["user", "assistant", "system"]),
                  "content": TEXT | st.lists(CLAUDE_BLOCK, max_size=3)})
CLAUDE = body_of(
    {"messages": st.lists(CLAUDE_MSG, min_size=1, max_size=4), "max_tokens": st.integers(1, 100)},
    {"stream": st.booleans(), "system": TEXT | st.lists(obj({"type": st.just("text"), "text": TEXT}), max_size=2),
     "tools": st.lists(obj({"name": TEXT, "input_schema": SCHEMA},
                           {"type": st.sampled_from(["custom", "bash_20250124"])}), max_size=2),
     "tool_choice": obj({"type": st.sampled_from(["auto", "any", "tool", "none"])}, {"name": TEXT}),
     "thinking": obj({"type": st.sampled_from(["enabled", "adaptive", "disabled"])},
                     {"budget_tokens": st.integers(0, 5000)}),
     "temperature": st.floats(0, 1), "top_k": st.integers(1, 10), "stop_sequences": st.lists(TEXT, max_size=2),
     "metadata": obj({}, {"user_id": TEXT}), "output_config": obj({}, {"effort": st.just("high")})},
)

# ---------------------------------------------------------------- Gemini

GEMINI_PART = obj({}, {"text": TEXT, "thought": st.booleans(), "thoughtSignature": TEXT,
                       "inlineData": obj({"mimeType": TEXT, "data": TEXT}),
                       "functionCall": obj({"name": TEXT}, {"args": WILD}),
                       "functionResponse": obj({"name": TEXT}, {"response": WILD})})
GEMINI_CONTENT = obj({"parts": st.lists(GEMINI_PART, max_size=3)}, {"role": st.sampled_from(["user", "model"])})
GEMINI = body_of(
    {"contents": st.lists(GEMINI_CONTENT, min_size=1, max_size=3)},
    {"systemInstruction": obj({"parts": st.lists(obj({"text": TEXT}), max_size=2)}),
     "generationConfig": obj({}, {"maxOutputTokens": st.integers(1, 100), "temperature": st.floats(0, 2),
                                  "stopSequences": st.lists(TEXT, max_size=2), "responseMimeType": TEXT,
                                  "thinkingConfig": obj({}, {"thinkingBudget": st.integers(-1, 2000),
                                                             "includeThoughts": st.booleans()})}),
     "tools": st.lists(obj({}, {"functionDeclarations": st.lists(obj({"name": TEXT}, {"parameters": SCHEMA}),
                                                                max_size=2),
                               "googleSearch": st.just({})}), max_size=2),
     "toolConfig": obj({"functionCallingConfig": obj({"mode": st.sampled_from(["AUTO", "ANY", "NONE"])})}),
     "safetySettings": st.lists(WILD, max_size=1)},
)

# ---------------------------------------------------------------- the checks


def error_shape_ok(fmt: str, obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    err = obj.get("error")
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return False
    if fmt == "claude":
        return obj.get("type") == "error" and isinstance(err.get("type"), str)
    if fmt == "gemini":
        return isinstance(err.get("code"), int) and isinstance(err.get("status"), str)
    return "type" in err


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}",
                   "x-api-key": CLIENT_KEY}
        for attempt in range(2):
            try:
                self.conn.request("POST", path, body=data, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[Client]:
    c = Client(gateway.port)
    yield c
    c.conn.close()


def check(gateway: GatewayProcess, client: Client, fmt: str, path: str, body: dict[str, Any]) -> None:
    status, raw = client.post(path, body)
    assert gateway.proc is not None and gateway.proc.poll() is None, "the gateway died"
    if status == 200:
        return
    text = raw.decode("utf-8", "replace")
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    assert error_shape_ok(fmt, answer), f"{status} {path}: error body not in {fmt} shape: {text[:500]}"
    message = answer["error"]["message"]
    if status >= 500:
        assert status in (502, 503, 504) and "upstream" in message, (
            f"crossroute answered {status} to {path} {json.dumps(body)[:1500]}: {text[:500]}"
        )


@FUZZ
@given(body=CHAT, model=st.sampled_from(MODELS))
def test_fuzz_chat(gateway: GatewayProcess, client: Client, body: dict[str, Any], model: str) -> None:
    check(gateway, client, "openai", "/v1/chat/completions", {**body, "model": model})


@FUZZ
@given(body=COMPLETIONS, model=st.sampled_from(MODELS))
def test_fuzz_completions(gateway: GatewayProcess, client: Client, body: dict[str, Any], model: str) -> None:
    check(gateway, client, "openai", "/v1/completions", {**body, "model": model})


@FUZZ
@given(body=RESPONSES, model=st.sampled_from(MODELS))
def test_fuzz_responses(gateway: GatewayProcess, client: Client, body: dict[str, Any], model: str) -> None:
    check(gateway, client, "responses", "/v1/responses", {**body, "model": model})


@FUZZ
@given(body=CLAUDE, model=st.sampled_from(MODELS), count=st.booleans())
def test_fuzz_claude(gateway: GatewayProcess, client: Client, body: dict[str, Any], model: str, count: bool) -> None:
    path = "/v1/messages/count_tokens" if count else "/v1/messages"
    check(gateway, client, "claude", path, {**body, "model": model})


@FUZZ
@given(body=GEMINI, model=st.sampled_from(MODELS),
       method=st.sampled_from(["generateContent", "streamGenerateContent?alt=sse", "streamGenerateContent",
                               "countTokens"]))
def test_fuzz_gemini(gateway: GatewayProcess, client: Client, body: dict[str, Any], model: str, method: str) -> None:
    check(gateway, client, "gemini", f"/v1beta/models/{model}:{method}", body)
