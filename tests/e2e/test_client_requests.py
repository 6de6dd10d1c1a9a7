"""Real client requests through a real gateway to every upstream kind: Claude Code's
mid-conversation system message and Codex's non-function tools, which other formats refused."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.unit.test_format_crossings import REMINDER, claude_code_body
from tests.unit.test_tools_mapping import CODEX_BODY, PATCH, SPAWN

from .conftest import CLIENT_KEY
from .fake_upstream import FakeUpstream
from .gateway_process import GatewayProcess


def post(gateway: GatewayProcess, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(gateway.url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def last_upstream_body(upstream: FakeUpstream) -> dict[str, Any]:
    return upstream.requests[-1]["body"]


@pytest.mark.parametrize("kind", ["openai", "responses", "gemini", "claude"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_claude_code_mid_conversation_system(gateway: GatewayProcess, upstream: FakeUpstream, kind: str,
                                             stream: bool) -> None:
    body = {**claude_code_body(REMINDER), "model": f"{kind}-text", "stream": stream}
    status, raw = post(gateway, "/v1/messages", body, {
        "x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,mid-conversation-system-2026-04-07"})
    assert status == 200, raw[:500]
    sent = last_upstream_body(upstream)
    if kind == "openai":
        assert sent["messages"][-1] == {"role": "system", "content": REMINDER}
    elif kind == "responses":
        assert sent["input"][-1]["role"] == "developer"
    elif kind == "gemini":
        assert REMINDER in sent["contents"][-1]["parts"][-1]["text"]
    else:
        assert sent["messages"][-1] == {"role": "system", "content": REMINDER}


@pytest.mark.parametrize("kind", ["openai", "claude", "gemini", "responses"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_codex_tools_reach_every_upstream(gateway: GatewayProcess, upstream: FakeUpstream, kind: str,
                                          stream: bool) -> None:
    body = {**copy.deepcopy(CODEX_BODY), "model": f"{kind}-tools", "stream": stream}
    status, raw = post(gateway, "/v1/responses", body, {
        "Authorization": f"Bearer {CLIENT_KEY}", "originator": "codex_cli_rs",
        "User-Agent": "codex_cli_rs/0.77.0 (Linux; x86_64) xterm"})
    assert status == 200, raw[:500]
    sent = last_upstream_body(upstream)
    if kind == "openai":
        names = [t["function"]["name"] for t in sent["tools"]]
        args = [json.loads(c["function"]["arguments"]) for m in sent["messages"] for c in m.get("tool_calls") or ()]
        assert args[0] == {"input": PATCH}
    elif kind == "claude":
        names = [t["name"] for t in sent["tools"]]
    elif kind == "gemini":
        names = [d["name"] for t in sent["tools"] for d in t.get("functionDeclarations", ())]
    else:
        assert sent["tools"] == CODEX_BODY["tools"]  # same format: passed through as Codex sent them
        return
    assert {"exec_command", "apply_patch", SPAWN} <= set(names)
    assert "tool_search" not in names
