"""formats/sse.py EventSplitter: an event stream cut into its raw events' blocks, by the same rules
as SSEParser (any line ends, mixed, split at any byte), for callers that rewrite events."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from crossroute.formats.sse import EventSplitter, SSEEvent, SSEParser

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ENDS = (b"\n", b"\r\n", b"\r")


def split_all(data: bytes, cuts: list[int]) -> tuple[list[bytes], bytes]:
    s = EventSplitter()
    out: list[bytes] = []
    prev = 0
    for c in [*cuts, len(data)]:
        out += s.feed(data[prev:c])
        prev = c
    return out, s.take()


def events(data: bytes) -> list[SSEEvent]:
    p = SSEParser()
    out = p.feed(data)
    tail = p.flush()
    return out + ([tail] if tail else [])


def mixed_stream(rng: random.Random, n: int = 6) -> bytes:
    """Events of one to three lines, every line end and every blank line picked at random."""
    parts: list[bytes] = []
    for i in range(n):
        lines = [b"event: e%d" % i] if rng.random() < 0.5 else []
        lines += [b'data: {"i": %d, "part": %d}' % (i, k) for k in range(rng.randint(1, 2))]
        for line in lines:
            parts += [line, rng.choice(ENDS)]
        parts += [rng.choice(ENDS)] * rng.randint(1, 2)  # the blank line (sometimes two)
    return b"".join(parts)


@pytest.mark.parametrize("boundary", [b"\n\r\n", b"\r\n\n", b"\n\r", b"\r\n\r", b"\r\n\r\n", b"\n\n", b"\r\r"])
def test_every_mix_of_line_ends_is_a_boundary(boundary: bytes) -> None:
    data = b"data: 1" + boundary + b"event: x\r\ndata: 2" + boundary + b"data: 3"
    for cut in range(len(data) + 1):
        blocks, rest = split_all(data, [cut])
        assert blocks == [b"data: 1", b"event: x\ndata: 2"], (boundary, cut)
        assert rest == b"data: 3"


def test_a_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    s = EventSplitter()
    assert s.feed(b"data: 1\r") == []
    assert s.feed(b"\n\r") == [b"data: 1"]  # CRLF then CR: the empty line
    assert s.feed(b"\ndata: 2\r\n") == []  # that CR's LF is not another empty line
    assert s.pending == len(b"data: 2\n")
    assert s.feed(b"\r\n") == [b"data: 2"]


@pytest.mark.parametrize("seed", range(8))
def test_blocks_are_the_events_the_parser_reads_at_any_split(seed: int) -> None:
    rng = random.Random(seed)
    data = mixed_stream(rng)
    want = events(data)
    whole, rest = split_all(data, [])
    assert rest == b"" and events(b"".join(b + b"\n\n" for b in whole)) == want
    assert all(b and b"\r" not in b and not b.startswith(b"\n") and not b.endswith(b"\n") for b in whole)
    for cut in range(1, len(data)):
        assert split_all(data, [cut]) == (whole, b"")
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(data)), min(12, len(data) - 1)))
        assert split_all(data, cuts) == (whole, b"")


def test_fixture_streams_split_like_the_parser_reads_them() -> None:
    for name in ("gemini/stream_text.sse", "anthropic/stream_thinking_signature_text.sse"):
        data = (FIXTURES / name).read_bytes()
        blocks, rest = split_all(data, list(range(7, len(data), 13)))
        assert events(b"".join(b + b"\n\n" for b in blocks) + rest) == events(data)


def test_pending_is_what_an_unfinished_event_holds_and_take_hands_it_over() -> None:
    s = EventSplitter()
    for _ in range(100):
        assert s.feed(b"x" * 10) == []
    assert s.pending == 1000
    assert s.take() == b"x" * 1000 and s.pending == 0
    assert s.feed(b"data: y\n\n") == [b"data: y"] and s.pending == 0
