"""Client input of the wrong shape gets a 400 in the client's format naming the field, in all
four APIs, for translated and same-format (passthrough) upstreams alike, and never reaches the
upstream. A real gateway process in front of the fake upstream."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from .conftest import CLIENT_KEY
from .fake_upstream import FakeUpstream
from .gateway_process import GatewayProcess

HEADERS = {"Authorization": f"Bearer {CLIENT_KEY}"}
KINDS = ["openai", "claude", "gemini", "responses"]

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"input": [{"type": "message", "role": "user", "content": "hi"}]}
CLAUDE = {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def endpoint(api: str, kind: str) -> tuple[str, dict[str, Any]]:
    model = f"{kind}-text"
    if api == "chat":
        return "/v1/chat/completions", {"model": model, **CHAT}
    if api == "completions":
        return "/v1/completions", {"model": model, "prompt": "hi"}
    if api == "responses":
        return "/v1/responses", {"model": model, **RESPONSES}
    if api == "claude":
        return "/v1/messages", {"model": model, **CLAUDE}
    if api == "claude-count":
        return "/v1/messages/count_tokens", {"model": model, **CLAUDE}
    method = {"gemini": "generateContent", "gemini-stream": "streamGenerateContent?alt=sse",
              "gemini-count": "countTokens"}[api]
    return f"/v1beta/models/{model}:{method}", dict(GEMINI)


def fmt_of(api: str) -> str:
    head = api.split("-")[0]
    return {"chat": "openai", "completions": "openai"}.get(head, head)


@dataclass
class Answer:
    status_code: int
    text: str


def post(gateway: GatewayProcess, path: str, body: Any) -> Answer:
    req = urllib.request.Request(gateway.url + path, data=json.dumps(body).encode(),
                                 headers={**HEADERS, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return Answer(r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.read().decode())


def assert_error(resp: Answer, api: str, status: int = 400) -> str:
    """The error message, after checking status and the client format's error shape."""
    assert resp.status_code == status, resp.text
    obj = orjson.loads(resp.text)
    fmt = fmt_of(api)
    if fmt == "claude":
        assert obj["type"] == "error" and obj["error"]["type"] == "invalid_request_error"
    elif fmt == "gemini":
        assert obj["error"]["code"] == status and obj["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert obj["error"]["type"] == "invalid_request_error"
    return obj["error"]["message"]


def deep(n: int) -> Any:
    v: Any = "x"
    for _ in range(n):
        v = [v]
    return v


# (api, path in the body to replace, value, what the error must name)
WRONG_TYPES = [
    ("chat", ("messages",), {"role": "user"}, "messages"),
    ("chat", ("messages", 0, "content"), 42, "messages[0].content"),
    ("chat", ("tools",), {"type": "function"}, "tools"),
    ("chat", ("max_tokens",), "100", "max_tokens"),
    ("chat", ("temperature",), "hot", "temperature"),
    ("chat", ("stream",), "yes", "stream"),
    ("chat", ("stream_options",), "include_usage", "stream_options"),
    ("completions", ("max_tokens",), "100", "max_tokens"),
    ("completions", ("temperature",), [1], "temperature"),
    ("responses", ("input",), 7, "input"),
    ("responses", ("input", 0, "content"), 3.5, "input[0].content"),
    ("responses", ("tools",), {"type": "function"}, "tools"),
    ("responses", ("max_output_tokens",), "10", "max_output_tokens"),
    ("responses", ("text",), "json", "text"),
    ("responses", ("stream",), "true", "stream"),
    ("responses", ("instructions",), ["be brief"], "instructions"),
    ("claude", ("messages",), "hi", "messages"),
    ("claude", ("messages", 0, "content"), 5, "messages[0].content"),
    ("claude", ("system",), 5, "system"),
    ("claude", ("max_tokens",), "16", "max_tokens"),
    ("claude", ("tools",), {"name": "t"}, "tools"),
    ("claude", ("stream",), 1, "stream"),
    ("claude", ("thinking",), "on", "thinking"),
    ("claude-count", ("system",), 5, "system"),
    ("gemini", ("contents",), {"parts": []}, "contents"),
    ("gemini", ("contents", 0), "hi", "contents[0]"),
    ("gemini", ("contents", 0, "parts"), "hi", "contents[0].parts"),
    ("gemini", ("generationConfig",), "fast", "generationConfig"),
    ("gemini", ("generationConfig",), {"maxOutputTokens": "5"}, "generationConfig.maxOutputTokens"),
    ("gemini", ("systemInstruction",), 3, "systemInstruction"),
    ("gemini", ("tools",), {"functionDeclarations": []}, "tools"),
    ("gemini-stream", ("generationConfig",), "fast", "generationConfig"),
    ("gemini-count", ("contents", 0), "hi", "contents[0]"),
]


def replaced(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(body)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("api", "path", "value", "named"), WRONG_TYPES,
                         ids=[f"{a}-{'.'.join(map(str, p))}" for a, p, _, _ in WRONG_TYPES])
def test_wrong_type_is_a_400_naming_the_field(gateway: GatewayProcess, upstream: FakeUpstream, kind: str, api: str,
                                              path: tuple[Any, ...], value: Any, named: str) -> None:
    url, body = endpoint(api, kind)
    before = len(upstream.requests)
    message = assert_error(post(gateway, url, replaced(body, path, value)), api)
    assert named in message
    assert len(upstream.requests) == before, "a malformed body was relayed to the upstream"


ROLE_PATHS = {"chat": ("messages", 0, "role"), "responses": ("input", 0, "role"), "claude": ("messages", 0, "role"),
              "claude-count": ("messages", 0, "role"), "gemini": ("contents", 0, "role")}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", [{"name": "user"}, ["user"], 1, None], ids=["object", "list", "number", "null"])
@pytest.mark.parametrize("api", list(ROLE_PATHS))
def test_role_of_the_wrong_type(gateway: GatewayProcess, kind: str, api: str, role: Any) -> None:
    if role is None and api == "gemini":
        pytest.skip("a Gemini content without a role is a user turn")
    url, body = endpoint(api, kind)
    path = ROLE_PATHS[api]
    message = assert_error(post(gateway, url, replaced(body, path, role)), api)
    assert ".".join(map(str, path[:1])) in message and "role" in message


APIS = ["chat", "completions", "responses", "claude", "claude-count", "gemini", "gemini-stream", "gemini-count"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", APIS)
def test_deep_nesting_is_refused_naming_the_limit(gateway: GatewayProcess, upstream: FakeUpstream, kind: str,
                                                  api: str) -> None:
    url, body = endpoint(api, kind)
    body["metadata" if fmt_of(api) != "gemini" else "labels"] = {"x": deep(300)}
    before = len(upstream.requests)
    message = assert_error(post(gateway, url, body), api)
    assert "254" in message and "nested" in message
    assert len(upstream.requests) == before


@pytest.mark.parametrize("api", ["chat", "claude", "gemini", "responses"])
def test_nesting_within_the_limit_is_served(gateway: GatewayProcess, api: str) -> None:
    url, body = endpoint(api, {"chat": "openai"}.get(api, api))
    body["metadata" if api != "gemini" else "labels"] = {"x": deep(250)}
    assert post(gateway, url, body).status_code == 200


def test_gemini_generation_config_string_is_not_relayed(gateway: GatewayProcess, upstream: FakeUpstream) -> None:
    """The issue's case: same format in and out, so the body would pass through unchanged."""
    before = len(upstream.requests)
    resp = post(gateway, "/v1beta/models/gemini-text:generateContent", {**GEMINI, "generationConfig": "x"})
    assert "generationConfig" in assert_error(resp, "gemini")
    assert len(upstream.requests) == before
