"""Translations across formats of features one format names and another carries differently:
json_schema descriptions, tool cache_control, mid-conversation system messages."""

from __future__ import annotations

from typing import Any

import pytest

from crossroute.formats.translate import Prepared

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
          "additionalProperties": False}
DESC = "The city the user asked about."


def upstream_body(client: str, body: dict[str, Any], wire: str, stream: bool = False) -> dict[str, Any]:
    opts = {"model": "m"} if client == "gemini" else {}
    return Prepared(client, body, None, opts).body_dict(wire, "up", stream)


# ---------------------------------------------------------------- json_schema description

RESPONSES_JSON = {"model": "m", "input": "Where?", "text": {"format": {
    "type": "json_schema", "name": "place", "description": DESC, "schema": SCHEMA, "strict": True}}}
CHAT_JSON = {"model": "m", "messages": [{"role": "user", "content": "Where?"}], "response_format": {
    "type": "json_schema", "json_schema": {"name": "place", "description": DESC, "schema": SCHEMA, "strict": True}}}


@pytest.mark.parametrize(("client", "body"), [("responses", RESPONSES_JSON), ("openai", CHAT_JSON)])
def test_json_schema_description_reaches_every_format(client: str, body: dict[str, Any]) -> None:
    if client != "openai":
        js = upstream_body(client, body, "openai")["response_format"]["json_schema"]
        assert js["description"] == DESC and js["name"] == "place"
    if client != "responses":
        fmt = upstream_body(client, body, "responses")["text"]["format"]
        assert fmt["description"] == DESC and fmt["name"] == "place"
    gemini = upstream_body(client, body, "gemini")["generationConfig"]["responseJsonSchema"]
    assert gemini["description"] == DESC and gemini["properties"] == SCHEMA["properties"]
    claude = upstream_body(client, body, "claude")["output_config"]["format"]["schema"]
    assert claude["description"] == DESC and claude["required"] == ["city"]


def test_schema_description_of_its_own_wins() -> None:
    body = {**CHAT_JSON, "response_format": {"type": "json_schema", "json_schema": {
        "name": "place", "description": DESC, "schema": {**SCHEMA, "description": "own"}}}}
    assert upstream_body("openai", body, "gemini")["generationConfig"]["responseJsonSchema"]["description"] == "own"


# ---------------------------------------------------------------- cache_control on chat tool definitions

TOOL_FN = {"name": "lookup", "description": "Look up a city", "parameters": SCHEMA}


@pytest.mark.parametrize("where", ["beside-function", "inside-function"])
def test_chat_tool_cache_control_reaches_anthropic(where: str) -> None:
    cc = {"type": "ephemeral", "ttl": "1h"}
    tool: dict[str, Any] = {"type": "function", "function": dict(TOOL_FN)}
    if where == "beside-function":
        tool["cache_control"] = cc
    else:
        tool["function"]["cache_control"] = cc
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    tools = upstream_body("openai", body, "claude")["tools"]
    assert tools == [{"name": "lookup", "description": "Look up a city", "input_schema": SCHEMA, "cache_control": cc}]
    # formats without prompt-cache breakpoints do not get the key
    assert "cache_control" not in str(upstream_body("openai", body, "gemini")["tools"])
    assert "cache_control" not in str(upstream_body("openai", body, "responses")["tools"])


# ---------------------------------------------------------------- mid-conversation system messages

REMINDER = "The user switched to plan mode: do not edit files."


def claude_code_body(content: Any) -> dict[str, Any]:
    """A Claude Code turn (beta mid-conversation-system-2026-04-07): after a tool result, a
    system message with the new instruction, cache breakpoint and all."""
    return {
        "model": "claude-opus-4-8", "max_tokens": 32000, "stream": True,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Read", "description": "Read a file", "input_schema": SCHEMA}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is in a.txt?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"city": "a.txt"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "hello"}]},
            {"role": "system", "content": content},
        ],
    }


SYSTEM_CONTENTS = [
    [{"type": "text", "text": REMINDER, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    REMINDER,
]


@pytest.mark.parametrize("content", SYSTEM_CONTENTS, ids=["blocks", "string"])
def test_mid_conversation_system_to_chat(content: Any) -> None:
    msgs = upstream_body("claude", claude_code_body(content), "openai", stream=True)["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "system"]
    assert msgs[0]["content"] == "You are Claude Code."
    assert msgs[-1] == {"role": "system", "content": REMINDER}


@pytest.mark.parametrize("content", SYSTEM_CONTENTS, ids=["blocks", "string"])
def test_mid_conversation_system_to_responses(content: Any) -> None:
    body = upstream_body("claude", claude_code_body(content), "responses", stream=True)
    assert body["instructions"] == "You are Claude Code."
    assert [i["type"] for i in body["input"]] == ["message", "function_call", "function_call_output", "message"]
    assert body["input"][-1] == {"type": "message", "role": "developer",
                                 "content": [{"type": "input_text", "text": REMINDER}]}


@pytest.mark.parametrize("content", SYSTEM_CONTENTS, ids=["blocks", "string"])
def test_mid_conversation_system_to_gemini(content: Any) -> None:
    body = upstream_body("claude", claude_code_body(content), "gemini", stream=True)
    assert body["systemInstruction"] == {"parts": [{"text": "You are Claude Code."}]}
    contents = body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    last = contents[-1]["parts"]
    assert "functionResponse" in last[0]
    assert last[1] == {"text": f"<system-instruction>\n{REMINDER}\n</system-instruction>"}


def test_mid_conversation_system_followed_by_assistant_keeps_its_place() -> None:
    body = claude_code_body(REMINDER)
    body["messages"] += [{"role": "assistant", "content": "Understood."}, {"role": "user", "content": "go on"}]
    chat = upstream_body("claude", body, "openai")["messages"]
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "tool", "system", "assistant", "user"]
    gemini = upstream_body("claude", body, "gemini")["contents"]
    assert [c["role"] for c in gemini] == ["user", "model", "user", "model", "user"]


def test_mid_conversation_system_passes_to_anthropic_unchanged() -> None:
    body = claude_code_body(SYSTEM_CONTENTS[0])
    assert upstream_body("claude", body, "claude", stream=True) == {**body, "model": "up"}


def test_mid_conversation_system_holds_text_only() -> None:
    from crossroute.formats.neutral import BadRequest

    body = claude_code_body([{"type": "image", "source": {"type": "url", "url": "http://x/a.png"}}])
    with pytest.raises(BadRequest) as exc:
        upstream_body("claude", body, "openai")
    assert exc.value.param == "messages[3].content[0]"
