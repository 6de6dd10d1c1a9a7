from __future__ import annotations

import random
from pathlib import Path

import pytest

from crossroute.formats.sse import SSEEvent, SSEParser, encode_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def parse_all(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    p = SSEParser()
    out: list[SSEEvent] = []
    prev = 0
    for c in [*cuts, len(data)]:
        out += p.feed(data[prev:c])
        prev = c
    tail = p.flush()
    return out + ([tail] if tail else [])


def test_fields_and_comments() -> None:
    data = b': keep-alive\n\nevent: a\ndata: {"x":1}\nid: 7\nretry: 5\n\ndata:no-space\n\ndata: l1\ndata: l2\n\n'
    assert parse_all(data, []) == [SSEEvent("a", b'{"x":1}'), SSEEvent(None, b"no-space"), SSEEvent(None, b"l1\nl2")]


@pytest.mark.parametrize("sep", [b"\n", b"\r\n", b"\r"])
def test_line_endings(sep: bytes) -> None:
    data = b"event: e" + sep + b"data: 1" + sep + sep + b"data: 2" + sep + sep
    assert parse_all(data, []) == [SSEEvent("e", b"1"), SSEEvent(None, b"2")]


@pytest.mark.parametrize(
    "name",
    [
        "gemini/stream_text.sse",
        "anthropic/stream_thinking_signature_text.sse",
        "openai_responses/stream_function_call.sse",
        "openai_chat/stream_tool_call_usage.sse",
    ],
)
def test_split_at_every_byte_gives_the_same_events(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    whole = parse_all(data, [])
    assert whole
    for cut in range(1, min(len(data), 600)):
        assert parse_all(data, [cut]) == whole
    rng = random.Random(1)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), min(40, len(data) - 1)))
        assert parse_all(data, cuts) == whole


def test_crlf_split_between_cr_and_lf() -> None:
    p = SSEParser()
    assert p.feed(b"data: 1\r") == []
    assert p.feed(b"\n\r") == [SSEEvent(None, b"1")]
    assert p.feed(b"\ndata: 2\r\n\r\n") == [SSEEvent(None, b"2")]


def test_unterminated_event_is_held_then_flushed() -> None:
    p = SSEParser()
    assert p.feed(b"event: message_stop\ndata: {}") == []
    assert p.flush() == SSEEvent("message_stop", b"{}")
    assert p.flush() is None


def test_encode_round_trip() -> None:
    raw = encode_event(b"a\nb", "x") + encode_event(b"{}")
    assert parse_all(raw, []) == [SSEEvent("x", b"a\nb"), SSEEvent(None, b"{}")]
