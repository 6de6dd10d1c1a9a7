"""Usage of whole answers: read from a same-format answer only when asked for, and right then."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from crossroute.config import parse
from crossroute.dispatch import Call
from crossroute.formats.neutral import Usage
from crossroute.formats.translate import PendingUsage, Prepared
from crossroute.gateway import Gateway

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(
    ("fmt", "fixture", "want"),
    [
        ("openai", "openai_chat/nonstream_text_reasoning_tokens.json",
         Usage(input_tokens=13, output_tokens=238, reasoning_tokens=192)),
        # Anthropic counts cache reads and writes apart from input_tokens; the neutral form adds them
        ("claude", "anthropic/nonstream_cache_read.json",
         Usage(input_tokens=3 + 1111 + 418, output_tokens=33, cached_tokens=1111, cache_creation_tokens=418)),
    ],
)
def test_same_format_answer_passes_unchanged_and_its_usage_is_read_on_demand(
    fmt: str, fixture: str, want: Usage
) -> None:
    raw = (FIXTURES / fixture).read_bytes()
    out, usage = Prepared(fmt, {"model": "m"}, None, {}).response(fmt, raw, "m", "generate")
    assert out is raw
    assert isinstance(usage, PendingUsage)
    call = Call(fmt, "m", {}, {})
    call.usage = usage
    assert call.usage == want
    assert call.usage is call.usage  # resolved once


@pytest.mark.parametrize("raw", [b"<!doctype html><html></html>", b"", b"[1, 2]", b'  "text"'])
def test_same_format_answer_that_is_not_an_object_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        Prepared("openai", {"model": "m"}, None, {}).response("openai", raw, "m", "generate")


def test_usage_log_line_carries_the_counts_of_a_passed_through_answer(caplog: pytest.LogCaptureFixture) -> None:
    gw = Gateway(parse("openai-compatibility: []\n"))
    raw = (FIXTURES / "openai_chat/nonstream_text_reasoning_tokens.json").read_bytes()
    call = Call("openai", "m", {}, {})
    call.usage = PendingUsage("openai", raw)
    caplog.set_level(logging.INFO, logger="crossroute.usage")
    assert gw.recording
    gw.record(call)
    assert "in=13 out=238 cached=0 reasoning=192" in caplog.text
