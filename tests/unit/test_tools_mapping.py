"""Codex's non-function Responses tools over chat, Anthropic and Gemini upstreams: custom
(freeform) tools as a one-string-argument function, namespaces flattened, hosted tools mapped or
dropped, and every call restored to the Responses item Codex expects, whole and streamed."""

from __future__ import annotations

import copy
import logging
from typing import Any

import orjson
import pytest

from crossroute.formats.responses_tools import flat_name
from crossroute.formats.sse import SSEParser
from crossroute.formats.translate import Prepared

PATCH = "*** Begin Patch\n*** Add File: README.md\n+# Demo \"quoted\" \\ back\n*** End Patch\n"
GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
SPAWN_PARAMS = {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"],
                "additionalProperties": False}

# What Codex sends (codex-rs/tools: ToolSpec serialized for the Responses API), trimmed.
CODEX_TOOLS = [
    {"type": "function", "name": "exec_command", "description": "Runs a command in a PTY.", "strict": False,
     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"],
                    "additionalProperties": False}},
    {"type": "custom", "name": "apply_patch",
     "description": "Use the `apply_patch` tool to edit files. This is a FREEFORM tool, so do not wrap the patch "
                    "in JSON.",
     "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR}},
    {"type": "namespace", "name": "multi_agent_v1", "description": "Tools in the multi_agent_v1 namespace.",
     "tools": [{"type": "function", "name": "spawn_agent", "description": "Spawn a sub-agent.", "strict": False,
                "parameters": SPAWN_PARAMS}]},
    {"type": "web_search", "external_web_access": False},
    {"type": "tool_search", "execution": "client", "description": "# Tool discovery",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
]
CODEX_INPUT = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions instructions>"}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Add a README"}]},
    {"type": "custom_tool_call", "status": "completed", "call_id": "call_p1", "name": "apply_patch", "input": PATCH},
    {"type": "custom_tool_call_output", "call_id": "call_p1",
     "output": "Success. Updated the following files:\nA README.md\n"},
    {"type": "function_call", "name": "spawn_agent", "namespace": "multi_agent_v1",
     "arguments": '{"message":"review it"}', "call_id": "call_s1"},
    {"type": "function_call_output", "call_id": "call_s1", "output": "agent started"},
    {"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "readme style"}},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Now fix the title"}]},
]
CODEX_BODY = {
    "model": "gpt-5.1-codex", "instructions": "You are Codex, a coding agent.", "input": CODEX_INPUT,
    "tools": CODEX_TOOLS, "tool_choice": "auto", "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"}, "store": False, "stream": True,
    "include": ["reasoning.encrypted_content"], "prompt_cache_key": "019a-session",
}
SPAWN = flat_name("multi_agent_v1", "spawn_agent")


def prepared(body: dict[str, Any] | None = None) -> Prepared:
    return Prepared("responses", copy.deepcopy(body or CODEX_BODY), None, {"codex_client": True})


# ---------------------------------------------------------------- requests


def test_flat_names_are_stable_and_short() -> None:
    assert SPAWN == "multi_agent_v1__spawn_agent"
    assert flat_name("mcp__github__", "create_issue") == "mcp__github__create_issue"
    long = flat_name("n" * 50, "tool_with_a_long_name")
    assert len(long) == 64 and long == flat_name("n" * 50, "tool_with_a_long_name")
    assert long != flat_name("n" * 50, "tool_with_a_long_name2")


def test_codex_request_to_chat(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="crossroute"):
        body = prepared().body_dict("openai", "gpt-oss", True)
    tools = {t["function"]["name"]: t["function"] for t in body["tools"]}
    assert list(tools) == ["exec_command", "apply_patch", SPAWN]
    assert tools[SPAWN]["parameters"] == SPAWN_PARAMS
    patch_params = tools["apply_patch"]["parameters"]
    assert patch_params["required"] == ["input"] and patch_params["properties"]["input"]["type"] == "string"
    assert GRAMMAR in patch_params["properties"]["input"]["description"]
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert warnings == ["tools tool_search, web_search dropped: openai-compatible upstreams have no equivalent"]
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant", "tool", "user"]
    call = msgs[2]["tool_calls"][0]
    assert call["id"] == "call_p1" and call["function"]["name"] == "apply_patch"
    assert orjson.loads(call["function"]["arguments"]) == {"input": PATCH}
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_p1",
                       "content": "Success. Updated the following files:\nA README.md\n"}
    assert msgs[4]["tool_calls"][0]["function"] == {"name": SPAWN, "arguments": '{"message":"review it"}'}


@pytest.mark.parametrize("live", [True, None])
def test_live_web_search_becomes_anthropic_web_search(live: bool | None) -> None:
    search = {"type": "web_search"} if live is None else {"type": "web_search", "external_web_access": live}
    body = prepared({**CODEX_BODY, "tools": [*CODEX_TOOLS[:3], search]}).body_dict("claude", "claude-sonnet-4-5", True)
    assert [t["name"] for t in body["tools"]] == ["exec_command", "apply_patch", SPAWN, "web_search"]
    assert body["tools"][3] == {"type": "web_search_20250305", "name": "web_search"}  # Anthropic's server tool


def test_codex_request_to_anthropic(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="crossroute"):
        body = prepared().body_dict("claude", "claude-sonnet-4-5", True)
    # Codex's default web_search is cached-only: no live search stands in for it
    assert [t["name"] for t in body["tools"]] == ["exec_command", "apply_patch", SPAWN]
    assert any("tool_search, web_search dropped: anthropic" in r.getMessage() for r in caplog.records)
    uses = [b for m in body["messages"] for b in m["content"] if b["type"] == "tool_use"]
    assert uses[0]["name"] == "apply_patch" and uses[0]["input"] == {"input": PATCH}
    assert uses[1]["name"] == SPAWN


def test_codex_request_to_gemini() -> None:
    body = prepared().body_dict("gemini", "gemini-2.5-pro", True)
    assert len(body["tools"]) == 1  # Gemini takes no built-in tool beside functions: web_search dropped
    names = [d["name"] for d in body["tools"][0]["functionDeclarations"]]
    assert names == ["exec_command", "apply_patch", SPAWN]
    calls = [p["functionCall"] for c in body["contents"] for p in c["parts"] if "functionCall" in p]
    assert calls[0] == {"name": "apply_patch", "args": {"input": PATCH}}


def test_web_search_alone_becomes_google_search_on_gemini() -> None:
    body = prepared({"model": "m", "input": "news?", "tools": [{"type": "web_search"}]}).body_dict("gemini", "g", False)
    assert body["tools"] == [{"googleSearch": {}}]
    cached = {"model": "m", "input": "news?", "tools": [{"type": "web_search", "external_web_access": False}]}
    assert "tools" not in prepared(cached).body_dict("gemini", "g", False)


def test_custom_tool_choice_names_the_function() -> None:
    body = prepared({**CODEX_BODY, "tool_choice": {"type": "custom", "name": "apply_patch"}}).body_dict(
        "openai", "m", False)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}


# ---------------------------------------------------------------- whole answers


def chat_answer() -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
                     "tool_calls": [
                         {"id": "call_a", "type": "function",
                          "function": {"name": "apply_patch", "arguments": orjson.dumps({"input": PATCH}).decode()}},
                         {"id": "call_b", "type": "function",
                          "function": {"name": SPAWN, "arguments": '{"message":"go"}'}},
                         {"id": "call_c", "type": "function",
                          "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


def claude_answer() -> bytes:
    return orjson.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "up", "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "call_a", "name": "apply_patch", "input": {"input": PATCH}},
                    {"type": "tool_use", "id": "call_b", "name": SPAWN, "input": {"message": "go"}},
                    {"type": "tool_use", "id": "call_c", "name": "exec_command", "input": {"cmd": "ls"}}],
        "usage": {"input_tokens": 10, "output_tokens": 5}})


def gemini_answer() -> bytes:
    return orjson.dumps({
        "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"id": "call_a", "name": "apply_patch", "args": {"input": PATCH}}},
            {"functionCall": {"id": "call_b", "name": SPAWN, "args": {"message": "go"}}},
            {"functionCall": {"id": "call_c", "name": "exec_command", "args": {"cmd": "ls"}}}]},
            "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}})


def check_restored(output: list[dict[str, Any]]) -> None:
    calls = [o for o in output if o["type"] != "reasoning"]
    assert [o["type"] for o in calls] == ["custom_tool_call", "function_call", "function_call"]
    custom, spawn, plain = calls
    assert custom["name"] == "apply_patch" and custom["input"] == PATCH and custom["call_id"]
    assert "arguments" not in custom
    assert (spawn["name"], spawn["namespace"], orjson.loads(spawn["arguments"])) == (
        "spawn_agent", "multi_agent_v1", {"message": "go"})
    assert plain["name"] == "exec_command" and "namespace" not in plain


@pytest.mark.parametrize(("wire", "raw"), [("openai", chat_answer()), ("claude", claude_answer()),
                                           ("gemini", gemini_answer())])
def test_calls_come_back_as_codex_items(wire: str, raw: bytes) -> None:
    out, _ = prepared({**CODEX_BODY, "stream": False}).response(wire, raw, "gpt-5.1-codex", "generate")
    check_restored(orjson.loads(out)["output"])


# ---------------------------------------------------------------- streams


def sse(obj: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def chat_stream() -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    args = orjson.dumps({"input": PATCH}).decode()
    return (chunk({"role": "assistant", "content": None})
            + chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                     "function": {"name": "apply_patch", "arguments": ""}}]})
            + b"".join(chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 7]}}]})
                       for i in range(0, len(args), 7))
            + chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                     "function": {"name": SPAWN, "arguments": '{"message":"go"}'}}]})
            + chunk({"tool_calls": [{"index": 2, "id": "call_c", "type": "function",
                                     "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'}}]})
            + chunk({}, "tool_calls") + b"data: [DONE]\n\n")


def claude_stream() -> bytes:
    out = sse({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                    "model": "up", "content": [], "stop_reason": None,
                                                    "usage": {"input_tokens": 10, "output_tokens": 1}}},
              "message_start")
    calls = [("call_a", "apply_patch", orjson.dumps({"input": PATCH}).decode()),
             ("call_b", SPAWN, '{"message":"go"}'), ("call_c", "exec_command", '{"cmd":"ls"}')]
    for i, (cid, name, args) in enumerate(calls):
        out += sse({"type": "content_block_start", "index": i,
                    "content_block": {"type": "tool_use", "id": cid, "name": name, "input": {}}},
                   "content_block_start")
        for j in range(0, len(args), 9):
            out += sse({"type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": args[j:j + 9]}}, "content_block_delta")
        out += sse({"type": "content_block_stop", "index": i}, "content_block_stop")
    out += sse({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 20}}, "message_delta")
    return out + sse({"type": "message_stop"}, "message_stop")


def gemini_stream() -> bytes:
    return sse(orjson.loads(gemini_answer()))


@pytest.mark.parametrize(("wire", "raw"), [("openai", chat_stream()), ("claude", claude_stream()),
                                           ("gemini", gemini_stream())])
@pytest.mark.parametrize("split", [1, 13, 10**6])
def test_streamed_calls_come_back_as_codex_items(wire: str, raw: bytes, split: int) -> None:
    pipe = prepared().pipe(wire, "gpt-5.1-codex")
    out = b"".join(pipe.feed(raw[i:i + split]) for i in range(0, len(raw), split)) + pipe.finish()
    events = [orjson.loads(ev.data) for ev in SSEParser().feed(out) if ev.data]
    types = [e["type"] for e in events]
    done_events = sorted((e for e in events if e["type"] == "response.output_item.done"),
                         key=lambda e: e["output_index"])  # parallel calls may complete in any order
    done = [e["item"] for e in done_events]
    check_restored(done)
    check_restored(events[-1]["response"]["output"])
    assert types[-1] == "response.completed"
    # the custom call: added (empty input), its input in one delta, done; no function-call events
    ctc = done[0]["id"]
    mine = [e for e in events if e.get("item_id") == ctc or e.get("item", {}).get("id") == ctc]
    assert [e["type"] for e in mine] == ["response.output_item.added", "response.custom_tool_call_input.delta",
                                         "response.custom_tool_call_input.done", "response.output_item.done"]
    assert mine[0]["item"]["input"] == "" and mine[2]["input"] == PATCH
    added = {e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.added"}
    assert added[1]["name"] == "spawn_agent" and added[1]["namespace"] == "multi_agent_v1"
    seq = [e["sequence_number"] for e in events]
    assert seq == list(range(len(seq)))
    assert sorted(e["output_index"] for e in events if e["type"] == "response.output_item.done") == [0, 1, 2]


# ---------------------------------------------------------------- local_shell


def test_local_shell_round_trip() -> None:
    body = {"model": "m", "stream": False, "tools": [{"type": "local_shell"}], "input": [
        {"type": "message", "role": "user", "content": "list files"},
        {"type": "local_shell_call", "call_id": "call_l0", "status": "completed",
         "action": {"type": "exec", "command": ["ls"], "working_directory": "/w", "timeout_ms": 1000}},
        {"type": "local_shell_call_output", "call_id": "call_l0", "output": "a.txt"}]}
    up = prepared(body).body_dict("openai", "m", False)
    assert up["tools"][0]["function"]["name"] == "local_shell"
    call = up["messages"][1]["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == {"command": ["ls"], "workdir": "/w", "timeout_ms": 1000}
    assert up["messages"][2] == {"role": "tool", "tool_call_id": "call_l0", "content": "a.txt"}
    answer = orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "up", "choices": [
        {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_l1", "type": "function",
             "function": {"name": "local_shell", "arguments": '{"command":["cat","a.txt"],"workdir":"/w"}'}}]}}]})
    out, _ = prepared(body).response("openai", answer, "m", "generate")
    item = orjson.loads(out)["output"][0]
    assert item["type"] == "local_shell_call" and item["call_id"] == "call_l1"
    assert item["action"] == {"type": "exec", "command": ["cat", "a.txt"], "working_directory": "/w"}


def test_responses_lite_additional_tools() -> None:
    """Codex's Responses Lite mode sends the tools inside ``input``, freeform ones in a namespace."""
    body = {"model": "m", "stream": False, "input": [
        {"type": "additional_tools", "role": "developer", "tools": [
            {"type": "namespace", "name": "functions", "description": "Tools in the functions namespace.", "tools": [
                {"type": "custom", "name": "exec", "description": "Run JavaScript code",
                 "format": {"type": "grammar", "syntax": "lark", "definition": "start: /[^]+/"}},
                {"type": "function", "name": "wait", "parameters": {"type": "object", "properties": {}}}]}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ls"}]}]}
    up = prepared(body).body_dict("openai", "m", False)
    assert [t["function"]["name"] for t in up["tools"]] == ["functions__exec", "functions__wait"]
    assert [m["role"] for m in up["messages"]] == ["user"]
    answer = orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "up", "choices": [
        {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_x", "type": "function",
             "function": {"name": "functions__exec", "arguments": '{"input":"console.log(1)"}'}}]}}]})
    out, _ = prepared(body).response("openai", answer, "m", "generate")
    item = orjson.loads(out)["output"][0]
    assert (item["type"], item["name"], item["namespace"], item["input"]) == (
        "custom_tool_call", "exec", "functions", "console.log(1)")
