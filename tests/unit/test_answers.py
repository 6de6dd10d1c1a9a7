"""Whole upstream answers: every recorded real answer is one; a 200 that is not is named."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from crossroute.formats.answers import check, problem

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
