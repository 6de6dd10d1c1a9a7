"""A fast fake OpenAI-compatible (and Anthropic-shaped) upstream for the benchmark.

Two implementations of the same behaviour, chosen with ``--impl``:

* ``protocol`` (default): a raw ``asyncio.Protocol`` HTTP/1.1 server on uvloop. Measured faster
  than granian here for tiny fixed answers (see bench/README.md), so it is the default.
* ``granian``: the same answers from a granian RSGI app, for comparison.

Endpoints (POST, keep-alive, Content-Length or chunked request bodies):

* ``/v1/chat/completions``: a fixed small ``chat.completion``; with ``"stream": true``, N
  ``chat.completion.chunk`` events (role chunk, content chunks, a finish chunk), a usage chunk when
  ``stream_options.include_usage`` is true, then ``data: [DONE]``.
* ``/v1/messages``: an Anthropic ``message``; streamed: message_start, content_block_start, ping,
  content_block_delta events, content_block_stop, message_delta, message_stop (N events in all).
* ``GET /healthz``: 200.

N is ``--events`` (default 50) or the ``x-fake-events`` request header. ``--flush each`` (default)
writes every event separately and yields to the loop between them, as a real token stream arrives;
``--flush batch`` writes the whole stream at once (or the ``x-fake-flush`` header). Answers are
rendered once per (path, model, N, usage) and cached, so the server spends its time on I/O only.

The ``Authorization: Bearer <key>`` (or ``x-api-key``) must equal ``--key`` (default ``sk-fake``),
so a proxy that fails to forward credentials gets a 401 rather than a fast wrong figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

import orjson

CREATED = 1_727_346_168
CHAT_ID = "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL"
MSG_ID = "msg_01BenchFakeUpstream0000000"
FINGERPRINT = "fp_5050236cbd"
WORDS = (" The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")
MAX_EVENTS = 100_000


# ---------------------------------------------------------------------------------------------
# Answer rendering (pure functions, cached by the servers)


def chat_completion(model: str) -> bytes:
    """A small non-streaming chat.completion body."""
    return orjson.dumps(
        {
            "id": CHAT_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": 7,
                "total_tokens": 19,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        }
    )


def _chunk(model: str, delta: dict[str, Any], finish: str | None, with_usage: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage:
        obj["usage"] = None
    return obj


def chat_stream_events(model: str, n: int, include_usage: bool) -> list[bytes]:
    """The SSE events of a chat stream: N chunks, [usage chunk], [DONE]. Each item is one event."""
    n = max(n, 2)
    chunks = [_chunk(model, {"role": "assistant", "content": "", "refusal": None}, None, include_usage)]
    for i in range(n - 2):
        chunks.append(_chunk(model, {"content": WORDS[i % len(WORDS)]}, None, include_usage))
    chunks.append(_chunk(model, {}, "stop", include_usage))
    if include_usage:
        chunks.append(
            {
                "id": CHAT_ID,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": [],
                "usage": {
                    "prompt_tokens": 12,
                    "completion_tokens": n - 2,
                    "total_tokens": 12 + n - 2,
                    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
                },
            }
        )
    events = [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_message(model: str) -> bytes:
    """A small non-streaming Anthropic Messages body."""
    return orjson.dumps(
        {
            "id": MSG_ID,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "Hello! How can I help?"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 12,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 7,
            },
        }
    )


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_stream_events(model: str, n: int) -> list[bytes]:
    """message_start, content_block_start, ping, deltas, content_block_stop, message_delta,
    message_stop: N events in all (at least one delta)."""
    deltas = max(n - 6, 1)
    events = [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": MSG_ID,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        ),
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        _sse("ping", {"type": "ping"}),
    ]
    for i in range(deltas):
        events.append(
            _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": WORDS[i % len(WORDS)]},
                },
            )
        )
    events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": deltas},
            },
        )
    )
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


def _error(status: int, message: str) -> tuple[int, bytes]:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})
    return status, body


class Answers:
    """Decides and caches what to answer; shared by both server implementations."""

    def __init__(self, events: int, flush_each: bool, key: str) -> None:
        self.events = events
        self.flush_each = flush_each
        self.key = key
        self._bearer = ("Bearer " + key).encode() if key else b""
        self._whole: dict[tuple[str, str], bytes] = {}
        self._streams: dict[tuple[str, str, int, bool], list[bytes]] = {}

    def authorised(self, authorization: bytes | None, x_api_key: bytes | None) -> bool:
        if not self.key:
            return True
        return authorization == self._bearer or x_api_key == self.key.encode()

    def answer(
        self, path: str, body: bytes, events_header: bytes | None, flush_header: bytes | None
    ) -> tuple[int, bytes | None, list[bytes] | None, bool]:
        """Returns (status, whole body or None, stream events or None, flush each event)."""
        if path not in ("/v1/chat/completions", "/v1/messages"):
            status, err = _error(404, f"no route {path}")
            return status, err, None, False
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            status, err = _error(400, "body is not JSON")
            return status, err, None, False
        if not isinstance(req, dict):
            status, err = _error(400, "body is not an object")
            return status, err, None, False
        model = req.get("model")
        if not isinstance(model, str):
            model = "fake-model"
        if not req.get("stream"):
            key = (path, model)
            whole = self._whole.get(key)
            if whole is None:
                whole = chat_completion(model) if path == "/v1/chat/completions" else anthropic_message(model)
                self._whole[key] = whole
            return 200, whole, None, False
        n = self.events
        if events_header:
            try:
                n = min(max(int(events_header), 2), MAX_EVENTS)
            except ValueError:
                pass
        flush_each = self.flush_each if flush_header is None else flush_header == b"each"
        opts = req.get("stream_options")
        usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        skey = (path, model, n, usage)
        events = self._streams.get(skey)
        if events is None:
            if path == "/v1/chat/completions":
                events = chat_stream_events(model, n, usage)
            else:
                events = anthropic_stream_events(model, n)
            self._streams[skey] = events
        return 200, None, events, flush_each


# ---------------------------------------------------------------------------------------------
# Raw asyncio protocol server

_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found"}
_JSON_HEAD = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class HTTPProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server for the bench: enough for wrk, aiohttp and the SDKs."""

    __slots__ = ("answers", "buf", "busy", "closed", "next_index", "pending", "transport")

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.next_index = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()

    def _process(self) -> None:
        while not self.busy and not self.closed:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).split(b"\r\n")
            try:
                method, target, _ = head[0].split(b" ", 2)
            except ValueError:
                self._fail()
                return
            headers: dict[bytes, bytes] = {}
            for line in head[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            start = end + 4
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                parsed = _dechunk(buf, start)
                if parsed is None:
                    return
                body, consumed = parsed
            else:
                length = int(headers.get(b"content-length", b"0"))
                if len(buf) < start + length:
                    return
                body = bytes(buf[start : start + length])
                consumed = start + length
            del buf[:consumed]
            self._handle(method, target.decode("latin-1"), headers, body)

    def _fail(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def _send_whole(self, status: int, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(_JSON_HEAD % (status, _REASONS.get(status, b"X"), len(body)) + body)

    def _handle(self, method: bytes, path: str, headers: dict[bytes, bytes], body: bytes) -> None:
        path = path.split("?", 1)[0]
        if method == b"GET":
            if path == "/healthz":
                self._send_whole(200, b'{"ok":true}')
            else:
                self._send_whole(*_error(404, f"no route {path}"))
            return
        if not self.answers.authorised(headers.get(b"authorization"), headers.get(b"x-api-key")):
            self._send_whole(*_error(401, "bad key"))
            return
        status, whole, events, each = self.answers.answer(
            path, body, headers.get(b"x-fake-events"), headers.get(b"x-fake-flush")
        )
        if events is None:
            assert whole is not None
            self._send_whole(status, whole)
            return
        assert self.transport is not None
        if not each:
            self.transport.write(_SSE_HEAD + b"".join(_chunked(e) for e in events) + b"0\r\n\r\n")
            return
        self.busy = True
        self.pending = events
        self.next_index = 1
        self.transport.write(_SSE_HEAD + _chunked(events[0]))
        asyncio.get_running_loop().call_soon(self._stream_step)

    def _stream_step(self) -> None:
        """Writes one event per loop iteration (a callback chain: cheaper than a task)."""
        transport = self.transport
        if self.closed or transport is None:
            return
        events = self.pending
        i = self.next_index
        if i < len(events):
            transport.write(_chunked(events[i]))
            self.next_index = i + 1
            asyncio.get_running_loop().call_soon(self._stream_step)
            return
        transport.write(b"0\r\n\r\n")
        self.pending = []
        self.busy = False
        if self.buf:
            self._process()


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decodes a chunked body starting at ``pos``; None until it is complete."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            return bytes(out), end + 2
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2


async def serve_protocol(host: str, port: int, answers: Answers) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HTTPProtocol(answers), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream (protocol) on http://{host}:{port}", flush=True)
    await stop.wait()
    server.close()


# ---------------------------------------------------------------------------------------------
# granian RSGI app (comparison)


class RSGIApp:
    """The same answers through granian's RSGI interface."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        path = scope.path
        if scope.method == "GET":
            if path == "/healthz":
                proto.response_bytes(200, [("content-type", "application/json")], b'{"ok":true}')
            else:
                proto.response_bytes(404, [("content-type", "application/json")], _error(404, "no route")[1])
            return
        body = await proto()
        h = scope.headers
        auth = h.get("authorization")
        xkey = h.get("x-api-key")
        if not self.answers.authorised(auth.encode() if auth else None, xkey.encode() if xkey else None):
            proto.response_bytes(401, [("content-type", "application/json")], _error(401, "bad key")[1])
            return
        ev = h.get("x-fake-events")
        fl = h.get("x-fake-flush")
        status, whole, events, each = self.answers.answer(
            path, body, ev.encode() if ev else None, fl.encode() if fl else None
        )
        if events is None:
            proto.response_bytes(status, [("content-type", "application/json")], whole or b"")
            return
        transport = proto.response_stream(200, [("content-type", "text/event-stream")])
        if each:
            for event in events:
                await transport.send_bytes(event)
        else:
            await transport.send_bytes(b"".join(events))


def _granian_target() -> RSGIApp:
    """Factory used by granian (reads the options from the environment)."""
    return RSGIApp(
        Answers(
            int(os.environ.get("FAKE_EVENTS", "50")),
            os.environ.get("FAKE_FLUSH", "each") == "each",
            os.environ.get("FAKE_KEY", "sk-fake"),
        )
    )


def serve_granian(host: str, port: int, args: argparse.Namespace) -> None:
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    os.environ["FAKE_EVENTS"] = str(args.events)
    os.environ["FAKE_FLUSH"] = args.flush
    os.environ["FAKE_KEY"] = args.key
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    print(f"fake upstream (granian) on http://{host}:{port}", flush=True)
    Server(
        "fake_upstream:_granian_target",
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        factory=True,
        loop=Loops.uvloop,
        log_enabled=False,
        backlog=4096,
    ).serve()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18000)
    p.add_argument("--impl", choices=("protocol", "granian"), default="protocol")
    p.add_argument("--events", type=int, default=50, help="chunk events per stream (default 50)")
    p.add_argument("--flush", choices=("each", "batch"), default="each")
    p.add_argument("--key", default="sk-fake", help="expected upstream key ('' accepts any)")
    args = p.parse_args(argv)
    if args.impl == "granian":
        serve_granian(args.host, args.port, args)
        return
    import uvloop

    answers = Answers(args.events, args.flush == "each", args.key)
    uvloop.run(serve_protocol(args.host, args.port, answers))


if __name__ == "__main__":
    main()
