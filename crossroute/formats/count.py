"""Token counting: the count endpoints' request and answer shapes, and a local estimate for
upstreams that have no count endpoint (labelled as an estimate by the API layer)."""

from __future__ import annotations

from typing import Any

import orjson

from .neutral import Image, Request, Text, Thinking, ToolCall, ToolResult

# Fields a count endpoint accepts, per upstream format (anything else is rejected by Anthropic).
_CLAUDE_COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers")


def count_body(wire: str, generate_body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """The upstream count request, from the body the upstream would get for generation."""
    if wire == "claude":
        return {k: generate_body[k] for k in _CLAUDE_COUNT_FIELDS if k in generate_body}
    if wire == "gemini":
        if set(generate_body) <= {"contents"}:
            return generate_body
        return {"generateContentRequest": {"model": f"models/{upstream_model}", **generate_body}}
    raise ValueError(f"{wire} upstreams have no count endpoint")


def total_from(wire: str, answer: dict[str, Any]) -> int:
    if wire == "claude":
        return int(answer["input_tokens"])
    if wire == "gemini":
        return int(answer.get("totalTokens", 0))
    raise ValueError(f"{wire} upstreams have no count endpoint")


def answer_for(client: str, total: int) -> dict[str, Any]:
    if client == "claude":
        return {"input_tokens": total}
    if client == "gemini":
        return {"totalTokens": total}
    return {"input_tokens": total, "object": "response.input_tokens"}


def _text_len(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    return len(orjson.dumps(value))


def estimate(req: Request) -> int:
    """Roughly four characters a token, plus per-message and per-tool overheads."""
    chars = sum(len(t.text) for t in req.system)
    tokens = 0
    for msg in req.messages:
        tokens += 4
        for part in msg.content:
            if isinstance(part, Text):
                chars += len(part.text)
            elif isinstance(part, Thinking):
                chars += len(part.text)
            elif isinstance(part, ToolCall):
                chars += len(part.name) + len(part.arguments)
            elif isinstance(part, ToolResult):
                chars += _text_len(part.content if isinstance(part.content, str) else
                                   [p.text for p in part.content if isinstance(p, Text)])
            elif isinstance(part, Image):
                tokens += 768
            else:
                tokens += 256
    for tool in req.tools:
        chars += len(tool.name) + len(tool.description or "") + _text_len(tool.parameters or {})
    return max(1, tokens + (chars + 3) // 4)
