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
