"""Whole upstream answers: every recorded real answer is one; a 200 that is not is named."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from crossroute.call import ParsedUsage, RawUsage
from crossroute.formats.answers import USAGE_FIELD, check, passthrough, problem

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WIRE = {"openai_chat": "openai", "anthropic": "claude", "gemini": "gemini", "openai_responses": "responses"}
RECORDED = sorted(p for d in WIRE for p in (FIXTURES / d).glob("nonstream_*.json"))


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_answers_are_answers(path: Path) -> None:
    raw = path.read_bytes()
    what, obj = problem(WIRE[path.parent.name], raw)
    assert what is None and obj == orjson.loads(raw)


@pytest.mark.parametrize("wire", list(WIRE.values()))
@pytest.mark.parametrize(("raw", "words"), [
    (b"", "empty"),
    (b"   ", "empty"),
    (b"{}", "empty JSON object"),
    (b"[]", "not a JSON object"),
    (b"null", "not a JSON object"),
    (b"<!doctype html><html></html>", "web page"),
    (b'  \n<html>', "web page"),
    (b'{"id": "x", "choices": [', "not valid JSON"),
    (b'{"error": {"message": "quota exhausted", "type": "insufficient_quota"}}', "quota exhausted"),
    (b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}', "Overloaded"),
    (b'{"id": "x", "object": "whatever"}', "without"),
])
def test_not_answers(wire: str, raw: bytes, words: str) -> None:
    what = check(wire, raw)
    assert what is not None and words in what


@pytest.mark.parametrize(("wire", "raw"), [
    ("openai", b'{"id": "x", "choices": []}'),
    ("claude", b'{"id": "x", "type": "message", "role": "assistant"}'),
    ("gemini", b'{"candidates": [], "usageMetadata": {}}'),
    ("responses", b'{"id": "x", "object": "response", "status": "completed"}'),
])
def test_json_without_content_per_format(wire: str, raw: bytes) -> None:
    assert check(wire, raw) is not None


def test_edge_answers_that_are_answers() -> None:
    assert check("gemini", b'{"promptFeedback": {"blockReason": "SAFETY"}}') is None  # a blocked prompt
    assert check("responses", b'{"id": "r", "object": "response", "output": [], "error": null}') is None
    assert check("claude", b'{"type": "message", "content": [], "stop_reason": "max_tokens"}') is None


# ---------------------------------------------------------------- passthrough (same-format fast path)
NOT_ANSWERS = [
    b"", b"   ", b"{}", b"[]", b"null", b"<!doctype html><html></html>", b'  \n<html>', b'{"id": "x", "choices": [',
    b'{"error": {"message": "quota exhausted", "type": "insufficient_quota"}}',
    b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
    b'{"id": "x", "object": "whatever"}',
    b'{"choices": [{}], "content": [], "candidates": [{}], "output": [], "error": {"message": "late"}}',
    b'{"choices": [{}], "content": [], "candidates": [{}], "output": [], "type": "error"}',
    b'{"choices": [{}], "content": [], "candidates": [{}], "output": [], "x": [1, 2,]}',  # broken past the fields
    b'{"choices": [{}], "content": [], "candidates": [{}], "output": [], "x": "\xff\xfe"}',  # not UTF-8
    b'{"choices": [{}], "content": [], "candidates": [{}], "output": [], "x": "\xed\xa0\x80"}',  # a surrogate
    b'{"choices": [{"a": "\xc0\xaf"}], "content": [{"a": "\xc0\xaf"}], "candidates": [{}], "output": [{}]}',
    b'{"choices": [{}], "content": [], "candidates": [{}], "output": [], "x": NaN}',
    b'{"choices": [{}], "content": [], "candidates": [{}], "output": []} trailing',
    b'{"choices": {"0": {}}, "content": "text", "candidates": {}, "output": "x"}',
    b'{"choices": [], "content": null, "candidates": [], "output": null}',
]


@pytest.mark.parametrize("wire", list(WIRE.values()))
@pytest.mark.parametrize("raw", NOT_ANSWERS)
def test_passthrough_refuses_what_problem_refuses(wire: str, raw: bytes) -> None:
    what, usage = passthrough(wire, raw)
    assert what is not None and what == problem(wire, raw)[0] and usage is None


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_passthrough_of_recorded_answers_keeps_their_usage(path: Path) -> None:
    wire = WIRE[path.parent.name]
    raw = path.read_bytes()
    what, usage = passthrough(wire, raw)
    assert what is None
    expected = orjson.loads(raw).get(USAGE_FIELD[wire])
    assert (None if usage is None else orjson.loads(memoryview(usage))) == expected
    assert RawUsage(wire, usage).resolve() == ParsedUsage(wire, orjson.loads(raw)).resolve()


@pytest.mark.parametrize(("wire", "raw"), [
    ("openai", '{"choices": [{"message": {"content": "Grüße, 你好 🙂"}}], "usage": {"prompt_tokens": 3}}'.encode()),
    ("gemini", b'{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}'),
    ("responses", b'{"id": "r", "object": "response", "output": [], "error": null, "usage": {"input_tokens": 2}}'),
    ("claude", b'{"type": "message", "content": [], "stop_reason": "max_tokens", "usage": {"input_tokens": 1}}'),
    ("openai", b'{"choices": [{}], "error": {}}'),  # an empty error object is no error (as in problem)
    ("openai", b'{"choices": [{}], "x": [' + b"[" * 1000 + b"]" * 1000 + b"]}"),  # deeper than msgspec reads
])
def test_passthrough_answers_as_problem_does(wire: str, raw: bytes) -> None:
    what, usage = passthrough(wire, raw)
    assert what is None and problem(wire, raw)[0] is None
    expected = orjson.loads(raw).get(USAGE_FIELD[wire])
    assert (None if usage is None else orjson.loads(memoryview(usage))) == expected


def test_passthrough_answer_without_usage() -> None:
    what, usage = passthrough("openai", b'{"choices": [{"index": 0}]}')
    assert what is None and usage is None
    assert RawUsage("openai", None).resolve() == ParsedUsage("openai", {"choices": [{}]}).resolve()
