"""providers/envelope.py: Cloud Code's ``{"response": ...}`` envelope taken off whole answers and off
every stream event, whatever the line ends (mixed, split anywhere) and however the bytes are cut."""

from __future__ import annotations

import itertools
import random

import orjson
import pytest

from crossroute.formats.sse import SSEEvent, SSEParser
from crossroute.providers.envelope import Unwrapped, unwrap_body, unwrap_event

INNER = [
    {"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}}]},
    {"candidates": [{"content": {"parts": [{"text": "lo \"there\"\n{}"}], "role": "model"}}],
     "usageMetadata": {"promptTokenCount": 3}},
    {"candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP"}],
     "modelVersion": "gemini-3-flash", "responseId": "r-1"},
]


class Chunked:
    """An Upstream handing out ``data`` cut at ``cuts``."""

    io_errors = (OSError,)
    status = 200
    headers: dict[str, str] = {}

    def __init__(self, data: bytes, cuts: list[int]) -> None:
        bounds = [0, *cuts, len(data)]
        self.pieces = [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    async def read_chunk(self) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    async def body(self, limit: int) -> bytes:
        return b"".join(self.pieces)

    def at_eof(self) -> bool:
        return not self.pieces

    def close(self, reuse: bool) -> None:
        pass


def wrapped_stream(boundary: bytes, line_end: bytes = b"\r\n") -> bytes:
    out = []
    for i, inner in enumerate(INNER):
        event = b"event: chunk" + line_end if i == 1 else b""
        out.append(event + b'data: {"response": ' + orjson.dumps(inner) + b', "traceId": "t-' + b"%d" % i
                   + b'"}' + boundary)
    return b"".join(out)


async def unwrapped(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    up = Unwrapped(Chunked(data, cuts))  # type: ignore[arg-type]
    out = b""
    while chunk := await up.read_chunk():
        out += chunk
    assert up.at_eof()
    p = SSEParser()
    events = p.feed(out)
    tail = p.flush()
    return events + ([tail] if tail else [])


def check(events: list[SSEEvent]) -> None:
    assert [orjson.loads(e.data) for e in events] == INNER
    assert [e.event for e in events] == [None, "chunk", None]


# LF then CRLF, CRLF then LF, LF then CR, ...: each is a line end then an empty line
MIXED = [b"\n\r\n", b"\r\n\n", b"\n\r", b"\r\n\r", b"\r\n\r\n", b"\n\n", b"\r\r"]


@pytest.mark.parametrize("boundary", MIXED)
async def test_events_end_at_an_empty_line_whatever_its_line_ends(boundary: bytes) -> None:
    data = wrapped_stream(boundary, line_end=b"\n" if boundary.startswith(b"\n") else b"\r\n")
    check(await unwrapped(data, []))
    for cut in range(1, len(data)):  # the boundary (and a CR LF pair) split at every byte
        check(await unwrapped(data, [cut]))


async def test_random_line_ends_and_random_cuts() -> None:
    rng = random.Random(7)
    for _ in range(40):
        data = wrapped_stream(rng.choice(MIXED), rng.choice([b"\n", b"\r\n", b"\r"]))
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 20)))
        check(await unwrapped(data, cuts))


async def test_an_event_without_its_closing_empty_line_at_the_end_is_unwrapped() -> None:
    data = wrapped_stream(b"\n\r\n").rstrip(b"\r\n")
    check(await unwrapped(data, [len(data) // 2]))


# ------------------------------------------------------------------ the response cut out, not re-rendered
EXACT = b'{"b": 1.50, "a": "caf\\u00e9", "n": [1e3,  2]}'  # spacing, number and escape spellings kept


def event_data(block: bytes) -> list[bytes]:
    return [e.data for e in SSEParser().feed(block)]


async def test_stream_events_carry_the_upstreams_own_bytes_of_the_response() -> None:
    data = b'data: {"response": ' + EXACT + b', "traceId": "t", "metadata": {"x": {"y": 1}}}\r\n\r\n'
    for cut in range(1, len(data)):
        up = Unwrapped(Chunked(data, [cut]))  # type: ignore[arg-type]
        out = b""
        while chunk := await up.read_chunk():
            out += chunk
        assert event_data(out) == [EXACT], cut


def test_whole_answers_are_the_upstreams_own_bytes_of_the_response() -> None:
    assert unwrap_body(b'{"traceId": "t", "response": ' + EXACT + b"}") == EXACT
    assert unwrap_body(b'{"response":' + EXACT + b',"metadata":{"a":{}}}') == EXACT


def test_a_pretty_printed_event_becomes_data_lines_of_its_response() -> None:
    block = b'event: x\ndata: {\ndata:   "response": {\ndata:     "a": 1\ndata:   },\ndata:   "traceId": "t"\ndata: }'
    out = unwrap_event(block)
    events = SSEParser().feed(out + b"\n\n")
    assert len(events) == 1 and events[0].event == "x" and orjson.loads(events[0].data) == {"a": 1}


@pytest.mark.parametrize("payload", [
    b'{"error": {"code": 500, "message": "boom"}}',  # not enveloped
    b'{"response": "text"}', b'{"response": [1]}', b'{"response": null}',  # not an object
    b'[{"response": {"a": 1}}]',  # not an object at the top
    b'{"response": {"a": 1}',  # broken JSON: the parser downstream names it
    b'{"response": {"a": 1}} trailing',
    b'{"response": {"a": 1}, "response": 2}',  # the last one counts (as for orjson)
])
def test_anything_else_passes_unchanged(payload: bytes) -> None:
    for block in (b"data: " + payload, b"data:" + payload, b"id: 1\ndata: " + payload):
        assert unwrap_event(block) is block
    assert unwrap_body(payload) is payload
