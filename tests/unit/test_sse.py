from __future__ import annotations

import random
from pathlib import Path

import pytest

from crossroute.formats.sse import SSEError, SSEEvent, SSEParser, encode_event, looks_like_sse

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


# ------------------------------------------------------------------ guards against what is not SSE


@pytest.mark.parametrize("head", [
    b"<!DOCTYPE html><html>", b"<html>", b'{"error": {"message": "no"}}', b"[1, 2]", b"HTTP/1.1 502 Bad Gateway",
    b"\xef\xbb\xbf\r\n\r\n<html>", b"\x1f\x8b\x08\x00\x00\x00",  # gzip bytes nobody decoded
])
def test_a_stream_that_does_not_begin_like_sse_is_refused(head: bytes) -> None:
    p = SSEParser()
    with pytest.raises(SSEError, match="not an event stream"):
        for i in range(len(head)):  # byte by byte: it is refused as soon as it can be told
            p.feed(head[i:i + 1])


@pytest.mark.parametrize("head", [b"data: {}\n\n", b"event: x\ndata: {}\n\n", b": ping\n\ndata: {}\n\n",
                                  b"\xef\xbb\xbf\r\n\ndata: {}\n\n", b"id: 1\ndata: {}\n\n", b"retry: 5\n\n"])
def test_every_legal_beginning_is_accepted_split_anywhere(head: bytes) -> None:
    for cut in range(len(head)):
        p = SSEParser()
        got = p.feed(head[:cut]) + p.feed(head[cut:])
        assert got == SSEParser().feed(head)


def test_looks_like_sse_waits_for_enough_bytes() -> None:
    assert looks_like_sse(b"") is None and looks_like_sse(b"\r\n") is None and looks_like_sse(b"da") is None
    assert looks_like_sse(b"data") is True and looks_like_sse(b"dx") is False


def test_an_event_that_never_ends_is_refused_past_the_limit() -> None:
    p = SSEParser(max_event=1000)
    p.feed(b'data: {"a":"')
    with pytest.raises(SSEError, match="larger than 1000 bytes"):
        for _ in range(200):
            p.feed(b"x" * 10)


def test_a_long_event_within_the_limit_arrives_whole_from_many_pieces() -> None:
    payload = b'{"a":"' + b"y" * 100_000 + b'"}'
    raw = b"event: big\ndata: " + payload + b"\r\n\r\ndata: [DONE]\n\n"
    p = SSEParser()
    out = []
    for i in range(0, len(raw), 7):
        out += p.feed(raw[i:i + 7])
    assert out == [SSEEvent("big", payload), SSEEvent(None, b"[DONE]")]
    assert p.pending == b""


def test_an_event_end_split_across_pieces_of_a_pending_event() -> None:
    p = SSEParser()
    assert p.feed(b"data: {") == [] and p.feed(b'"k":1}\n') == []
    assert p.feed(b"\ndata: {}\r") == [SSEEvent(None, b'{"k":1}')]
    assert p.feed(b"\n\r\n") == [SSEEvent(None, b"{}")]
