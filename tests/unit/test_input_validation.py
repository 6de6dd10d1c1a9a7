"""formats/validate.py: the structural check every client body passes before it is read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crossroute.formats import validate
from crossroute.formats.neutral import BadRequest


def nested(levels: int) -> Any:
    v: Any = 1
    for i in range(levels):
        v = {"k": v} if i % 2 else [v]
    return v


@pytest.mark.parametrize("levels", [1, 200, 254])
def test_depth_within_the_limit(levels: int) -> None:
    obj = nested(levels)
    validate.check_depth(json.dumps(obj).encode(), obj)


@pytest.mark.parametrize("levels", [255, 300, 600])
def test_depth_beyond_the_limit(levels: int) -> None:
    obj = nested(levels)
    with pytest.raises(BadRequest, match="254 levels"):
        validate.check_depth(json.dumps(obj).encode(), obj)


def test_brackets_inside_strings_do_not_count() -> None:
    obj = {"text": "[" * 5000 + "{" * 5000}
    validate.check_depth(json.dumps(obj).encode(), obj)


@pytest.mark.parametrize(("fmt", "body", "param"), [
    ("openai", {"messages": [{"role": {"r": 1}, "content": "x"}]}, "messages[0].role"),
    ("openai", {"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
    ("openai", {"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ("openai", {"messages": [{"role": "user", "content": "x", "tool_calls": {}}]}, "messages[0].tool_calls"),
    ("openai", {"messages": [{"role": "user", "content": "x"}], "n": "2"}, "n"),
    ("openai", {"messages": [{"role": "user", "content": "x"}], "max_tokens": True}, "max_tokens"),
    ("openai", {"messages": [{"role": "user", "content": "x"}], "tools": ["f"]}, "tools[0]"),
    ("responses", {"input": [{"type": "message", "content": "x"}]}, "input[0].role"),
    ("responses", {"input": "x", "text": {"format": {"type": "json_schema", "schema": "s"}}}, "text.format.schema"),
    ("responses", {"input": "x", "reasoning": {"effort": 3}}, "reasoning.effort"),
    ("claude", {"messages": [{"role": "user"}]}, "messages[0].content"),
    ("claude", {"messages": [{"role": "user", "content": "x", "cache_control": "e"}]}, "messages[0].cache_control"),
    ("claude", {"messages": [], "system": [1]}, "system[0]"),
    ("gemini", {"contents": [{"parts": [{"text": "x"}], "role": 1}]}, "contents[0].role"),
    ("gemini", {"contents": [{"parts": ["x"]}]}, "contents[0].parts[0]"),
    ("gemini", {"contents": [], "generation_config": {"max_output_tokens": "9"}},
     "generation_config.max_output_tokens"),
    ("gemini", {"contents": [], "generationConfig": {"thinkingConfig": {"thinkingBudget": "x"}}},
     "generationConfig.thinkingConfig.thinkingBudget"),
    ("gemini", {"contents": [], "systemInstruction": {"parts": "x"}}, "systemInstruction.parts"),
])
def test_wrong_types_name_the_field(fmt: str, body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as exc:
        validate.check(fmt, body)
    assert exc.value.param == param
    assert param.rsplit(".", 1)[-1].split("[")[0] in exc.value.message  # Anthropic spells paths its own way


@pytest.mark.parametrize(("fmt", "body"), [
    ("openai", {"messages": [{"role": "assistant", "content": None, "tool_calls": []}], "temperature": None}),
    ("openai", {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}], "temperature": 1}),
    ("responses", {"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}], "top_p": 0.5}),
    ("claude", {"messages": [{"role": "system", "content": [{"type": "text", "text": "x"}]}], "unknown": {}}),
    ("gemini", {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"topK": 40.0}}),
])
def test_well_formed_bodies_pass(fmt: str, body: dict[str, Any]) -> None:
    validate.check(fmt, body)
