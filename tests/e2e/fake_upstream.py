"""A fake upstream of all four kinds that replays the recorded provider transcripts and behaves
like the real services do on the wire.

Every answer (JSON, error and stream alike) is compressed when the request allows it, as
CDN-fronted provider APIs do: the first of gzip, zstd, deflate, br that ``Accept-Encoding``
accepts (``q=0`` refuses; ``*`` accepts all), with ``Vary: Accept-Encoding``; streams are flushed
per write, so they stay incremental. Every answer carries rate-limit headers (``x-ratelimit-*``;
for the Anthropic kind ``anthropic-ratelimit-*``).

The upstream model name (its last ``/`` part) picks the scenario:

* ``text``, ``tools``, ``parallel``, ``thinking``, ``refusal``: recorded answers, stream or not
  (any unknown name serves ``text``).
* ``midstream``: an error event after the first events (streams).
* ``cut``: the connection drops mid stream. ``hang``: never answers (30 s).
* ``trickle``: the first event, then keep-alive comments every 50 ms for 20 s, then the rest
  (client disconnects mid stream).
* ``err<status>``: an HTTP error in the provider's shape; ``err429`` carries ``Retry-After: 1``.
* ``html``: a web page with status 200, as a server behind a wrong base-url answers.
* ``htmlerr``: an HTML error page with status 502, as a CDN or load balancer answers.
* ``compressed-unasked``: gzip even when the request did not allow it;
  ``compressed-unasked-zstd``, ``-deflate``, ``-br`` the same with that encoding.
* ``ok-error``: status 200 whose body is an error object in the provider's shape.
* ``empty``: status 200, body ``{}``.
* ``nocontent``: status 200, valid JSON of the right kind without any content.
* ``badjson``: status 200, the recorded answer cut in the middle (broken JSON).
  (``ok-error``, ``empty``, ``nocontent`` and ``badjson`` answer stream requests with the same
  ``application/json`` body: a stream request answered with something that is not a stream.)
* ``stream-badjson``: a stream whose first event's data is not valid JSON, then the recorded one.
* ``stream-error-first``: a stream whose first event is an error event of the provider's kind
  (rate limit, ``429``), then the connection closes.
* ``slow``: the answer starts after 1 s; ``slow<ms>`` after that many milliseconds.
* ``stream-huge-event``: a stream whose first event is 12 MiB of data without its blank line
  (an upstream that buffers nothing and never ends the event).

Streams are written in small uneven chunks so the gateway must reassemble events split at any
byte. ``fail_next[key]`` queues statuses to answer first for one credential (0 = say nothing).

``force_encoding`` (default: the environment variable ``CROSSROUTE_FAKE_COMPRESS``, e.g. ``gzip``
or ``zstd``) compresses every answer with that encoding whatever the request says, so the whole
suite can be run against an upstream that compresses unasked:
``CROSSROUTE_FAKE_COMPRESS=gzip python -m pytest tests/e2e``.
"""

from __future__ import annotations

import asyncio
import os
import random
import zlib
from pathlib import Path
from typing import Any

import orjson
import zstandard
from aiohttp import web

from ..loopback import ThreadedApp

try:
    import brotli
except ImportError:  # pragma: no cover - optional
    brotli = None

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# kind -> scenario -> (stream fixture, non-stream fixture)
FILES: dict[str, dict[str, tuple[str | None, str | None]]] = {
    "openai": {
        "text": ("openai_chat/stream_text_usage_2025.sse", "openai_chat/nonstream_text_reasoning_tokens.json"),
        "tools": ("openai_chat/stream_tool_call_usage.sse", "openai_chat/nonstream_tool_calls.json"),
        "parallel": ("openai_chat/stream_parallel_tool_calls_usage.sse", "openai_chat/nonstream_tool_calls.json"),
        "refusal": ("openai_chat/stream_refusal_usage.sse", None),
        "thinking": (
            "openai_chat/stream_deepseek_reasoning_content.sse",
            "openai_chat/nonstream_text_reasoning_tokens.json",
        ),
        "midstream": ("openai_chat/stream_error_midstream.SYNTHETIC.sse", None),
    },
    "claude": {
        "text": ("anthropic/stream_request_fallback_text.sse", "anthropic/nonstream_cache_read.json"),
        "tools": ("anthropic/stream_text_tool_use.sse", "anthropic/nonstream_parallel_tool_use.json"),
        "parallel": ("anthropic/stream_text_tool_use.sse", "anthropic/nonstream_parallel_tool_use.json"),
        "thinking": ("anthropic/stream_thinking_signature_text.sse", "anthropic/nonstream_thinking_tool_use.json"),
        "midstream": ("anthropic/stream_error_overloaded.SYNTHETIC.sse", None),
    },
    "gemini": {
        "text": ("gemini/stream_text.sse", "gemini/nonstream_cached_content.json"),
        "tools": ("gemini/stream_function_call_thought_signature.sse", "gemini/nonstream_function_call.json"),
        "parallel": ("gemini/stream_function_call_args_empty.sse", "gemini/nonstream_function_call.json"),
        "thinking": ("gemini/stream_thought_parts.sse", "gemini/nonstream_thinking_thought_signature.json"),
        "midstream": ("gemini/stream_error_midstream.SYNTHETIC.sse", None),
    },
    "responses": {
        "text": ("openai_responses/stream_text_2025.sse", "openai_responses/nonstream_text.json"),
        "tools": (
            "openai_responses/stream_function_call.sse",
            "openai_responses/nonstream_reasoning_function_call.json",
        ),
        "parallel": (
            "openai_responses/stream_function_call.sse",
            "openai_responses/nonstream_reasoning_function_call.json",
        ),
        "thinking": (
            "openai_responses/stream_reasoning_summary_text.sse",
            "openai_responses/nonstream_reasoning_summary.json",
        ),
        "midstream": ("openai_responses/stream_failed.SYNTHETIC.sse", None),
    },
}


def error_body(kind: str, status: int) -> bytes:
    msg = f"synthetic upstream error {status}"
    if kind == "claude":
        etype = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}.get(
            status, "api_error"
        )
        return orjson.dumps({"type": "error", "error": {"type": etype, "message": msg}})
    if kind == "gemini":
        return orjson.dumps({"error": {"code": status, "message": msg, "status": "RESOURCE_EXHAUSTED"}})
    return orjson.dumps(
        {
            "error": {
                "message": msg,
                "type": "rate_limit_error" if status == 429 else "server_error",
                "param": None,
                "code": None,
            }
        }
    )


NO_CONTENT: dict[str, bytes] = {
    "openai": b'{"id":"chatcmpl-empty","object":"chat.completion","created":1,"model":"m","choices":[]}',
    "claude": b'{"id":"msg_empty","type":"message","role":"assistant","model":"m","content":[],'
    b'"stop_reason":null,"usage":{"input_tokens":1,"output_tokens":0}}',
    "gemini": b'{"candidates":[],"usageMetadata":{"promptTokenCount":1,"totalTokenCount":1}}',
    "responses": b'{"id":"resp_empty","object":"response","status":"completed","model":"m","output":[]}',
}

# The first event of a stream that fails at once: a rate limit in each provider's own stream shape.
ERROR_FIRST: dict[str, bytes] = {
    "openai": b'data: {"error":{"message":"Rate limit reached (synthetic)","type":"rate_limit_error",'
    b'"param":null,"code":"rate_limit_exceeded"}}\n\n',
    "claude": b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error",'
    b'"message":"Rate limit reached (synthetic)"}}\n\n',
    "gemini": b'data: {"error":{"code":429,"message":"Rate limit reached (synthetic)",'
    b'"status":"RESOURCE_EXHAUSTED"}}\r\n\r\n',
    "responses": b'event: response.failed\ndata: {"type":"response.failed","sequence_number":0,"response":'
    b'{"id":"resp_fail","object":"response","status":"failed","output":[],"error":'
    b'{"code":"rate_limit_exceeded","message":"Rate limit reached (synthetic)"}}}\n\n',
}

BAD_EVENT: dict[str, bytes] = {
    "openai": b'data: {"id":"chatcmpl-x","choices":[{"delta":{"content":"Hel\n\n',
    "claude": b'event: message_start\ndata: {"type":"message_start","message":{"id":\n\n',
    "gemini": b'data: {"candidates": [{"content": {"parts": [{"text": \r\n\r\n',
    "responses": b'event: response.created\ndata: {"type":"response.created","response":{\n\n',
}

HTML_502 = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>\n"
)


def rate_limit_headers(kind: str) -> dict[str, str]:
    if kind == "claude":
        return {
            "anthropic-ratelimit-requests-limit": "4000",
            "anthropic-ratelimit-requests-remaining": "3999",
            "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:01Z",
            "anthropic-ratelimit-tokens-limit": "400000",
            "anthropic-ratelimit-tokens-remaining": "399000",
            "anthropic-ratelimit-tokens-reset": "2026-01-01T00:00:01Z",
        }
    return {
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-tokens": "29999000",
        "x-ratelimit-reset-tokens": "2ms",
    }


ENCODINGS = ("gzip", "zstd", "deflate", "br")


def pick_encoding(accept: str | None) -> str | None:
    """The encoding an answer is sent with for this Accept-Encoding (None: identity)."""
    if not accept:
        return None
    allowed: dict[str, float] = {}
    for part in accept.split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        allowed[name.strip().lower()] = q
    for enc in ENCODINGS:
        if enc == "br" and brotli is None:
            continue
        if allowed.get(enc, allowed.get("*", 0.0)) > 0:
            return enc
    return None


class Encoder:
    """Incremental compression for one answer; ``write`` output decodes on its own (flushed)."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._z: Any
        if encoding == "gzip":
            self._z = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif encoding == "deflate":
            self._z = zlib.compressobj(6, zlib.DEFLATED, 15)
        elif encoding == "zstd":
            self._z = zstandard.ZstdCompressor().compressobj()
        elif encoding == "br":
            assert brotli is not None
            self._z = brotli.Compressor()
        else:
            raise ValueError(encoding)

    def write(self, data: bytes) -> bytes:
        if self.encoding == "br":
            return self._z.process(data) + self._z.flush()
        if self.encoding == "zstd":
            return self._z.compress(data) + self._z.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def end(self) -> bytes:
        if self.encoding == "br":
            return self._z.finish()
        return self._z.flush()

    def whole(self, data: bytes) -> bytes:
        return self.write(data) + self.end()


class FakeUpstream(ThreadedApp):
    """Runs in its own thread and loop so sync SDK clients in tests cannot block it."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.active_streams = 0
        self.cancelled_streams = 0
        # credential key -> statuses to answer first; 0 = say nothing (the gateway's read timeout fires)
        self.fail_next: dict[str, list[int]] = {}
        # compress every answer with this encoding, asked for or not (None: honour Accept-Encoding)
        self.force_encoding: str | None = os.environ.get("CROSSROUTE_FAKE_COMPRESS") or None

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle("openai"))
        app.router.add_post("/v1/responses", self._handle("responses"))
        app.router.add_post("/v1/responses/compact", self._compact)
        app.router.add_post("/v1/messages", self._handle("claude"))
        app.router.add_post("/v1/messages/count_tokens", self._count_claude)
        app.router.add_post("/v1beta/models/{tail}", self._gemini)
        return app

    def clear(self) -> None:
        self.requests.clear()
        self.fail_next.clear()

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        model, _, action = tail.partition(":")
        if action == "countTokens":
            await self._record(request, "gemini", model)
            return web.json_response({"totalTokens": 42})
        return await self._serve(request, "gemini", model, stream=action.startswith("streamGenerateContent"))

    async def _count_claude(self, request: web.Request) -> web.Response:
        await self._record(request, "claude", None)
        return web.json_response({"input_tokens": 42})

    async def _compact(self, request: web.Request) -> web.Response:
        body = await self._record(request, "responses", None)
        return web.json_response(
            {
                "id": "resp_compact",
                "object": "response.compaction",
                "output": body.get("input", []) if isinstance(body, dict) else [],
            }
        )

    def _handle(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, kind, None, stream=None)

        return handler

    async def _record(self, request: web.Request, kind: str, model: str | None) -> Any:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(
            {
                "kind": kind,
                "path": request.path,
                "query": request.query_string,
                "headers": dict(request.headers),
                "body": body,
                "raw": raw,
                "model": model,
            }
        )
        return body

    def _encoding(self, request: web.Request, scenario: str) -> str | None:
        if scenario.startswith("compressed-unasked"):
            return scenario.removeprefix("compressed-unasked").lstrip("-") or "gzip"
        if self.force_encoding:
            return self.force_encoding
        return pick_encoding(request.headers.get("Accept-Encoding"))

    def _answer(
        self, request: web.Request, kind: str, scenario: str, status: int, body: bytes,
        content_type: str = "application/json", headers: dict[str, str] | None = None,
    ) -> web.Response:
        """A whole answer, compressed as the request (or the scenario) says."""
        h = {**rate_limit_headers(kind), **(headers or {}), "Content-Type": content_type}
        enc = self._encoding(request, scenario)
        if enc is not None:
            body = Encoder(enc).whole(body)
            h["Content-Encoding"] = enc
            h["Vary"] = "Accept-Encoding"
        return web.Response(status=status, body=body, headers=h)

    async def _serve(
        self, request: web.Request, kind: str, model: str | None, stream: bool | None
    ) -> web.StreamResponse:
        body = await self._record(request, kind, model)
        if not isinstance(body, dict):
            return self._answer(request, kind, "", 400, error_body(kind, 400))
        if model is None:
            model = str(body.get("model", ""))
        if stream is None:
            stream = bool(body.get("stream"))
        scenario = model.split("/")[-1]
        key = (
            request.headers.get("authorization")
            or request.headers.get("x-api-key")
            or request.headers.get("x-goog-api-key")
            or ""
        )
        queued = self.fail_next.get(key.removeprefix("Bearer "))
        if queued:
            status = queued.pop(0)
            if status == 0:
                await asyncio.sleep(30)
            return self._answer(request, kind, scenario, status, error_body(kind, status),
                                headers={"Retry-After": "1"} if status == 429 else None)
        if scenario.startswith("slow"):
            ms = int(scenario[4:]) if scenario[4:].isdigit() else 1000
            await asyncio.sleep(ms / 1000)
        if scenario.startswith("err") and scenario[3:].isdigit():
            status = int(scenario[3:])
            return self._answer(request, kind, scenario, status, error_body(kind, status),
                                headers={"Retry-After": "1"} if status == 429 else None)
        if scenario == "hang":
            await asyncio.sleep(30)
        if scenario == "html":
            return self._answer(request, kind, scenario, 200, b"<!doctype html><html><body>Welcome</body></html>",
                                "text/html")
        if scenario == "htmlerr":
            return self._answer(request, kind, scenario, 502, HTML_502, "text/html")
        if scenario == "ok-error":
            return self._answer(request, kind, scenario, 200, error_body(kind, 500))
        if scenario == "empty":
            return self._answer(request, kind, scenario, 200, b"{}")
        if scenario == "nocontent":
            return self._answer(request, kind, scenario, 200, NO_CONTENT[kind])
        stream_file, json_file = FILES[kind].get(scenario, FILES[kind]["text"])
        if scenario in ("cut", "trickle", "stream-badjson"):
            stream_file = FILES[kind]["text"][0]
        if scenario == "badjson":
            whole = (FIXTURES / FILES[kind]["text"][1]).read_bytes()  # type: ignore[operator]
            return self._answer(request, kind, scenario, 200, whole[: len(whole) // 2])
        if not stream:
            if json_file is None:
                json_file = FILES[kind]["text"][1]
            return self._answer(request, kind, scenario, 200, (FIXTURES / json_file).read_bytes(),
                                headers={"x-upstream-id": "fake-1"})
        assert stream_file is not None
        data = (FIXTURES / stream_file).read_bytes()
        if scenario == "stream-huge-event":
            data = b'data: {"x":"' + b"a" * (12 * 1024 * 1024) + b'"}\n\n'
        elif scenario == "stream-badjson":
            data = BAD_EVENT[kind] + data
        elif scenario == "stream-error-first":
            data = ERROR_FIRST[kind]
        headers = {**rate_limit_headers(kind), "content-type": "text/event-stream", "x-upstream-id": "fake-1"}
        enc = self._encoding(request, scenario)
        encoder = Encoder(enc) if enc is not None else None
        if encoder is not None:
            headers["Content-Encoding"] = encoder.encoding
            headers["Vary"] = "Accept-Encoding"
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)

        async def write(chunk: bytes) -> None:
            await resp.write(encoder.write(chunk) if encoder is not None else chunk)

        self.active_streams += 1
        rng = random.Random(len(data))
        try:
            if scenario == "trickle":
                # the first event, so the gateway has client output and commits the stream, then
                # keep-alives: the client can go away while the upstream is still sending
                cut = min(i + n for i, n in ((data.find(b"\n\n"), 2), (data.find(b"\r\n\r\n"), 4)) if i >= 0)
                await write(data[:cut])
                data = data[cut:]
                for _ in range(400):
                    await write(b": ping\n\n" if kind != "gemini" else b"\r\n")
                    await asyncio.sleep(0.05)
            pos = 0
            n = 0
            while pos < len(data):
                size = rng.randint(3, 97) if scenario != "stream-huge-event" else 65536
                await write(data[pos : pos + size])
                pos += size
                n += 1
                if scenario == "cut" and pos > len(data) // 2:
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
                if n % 8 == 0:
                    await asyncio.sleep(0.0005)
            if encoder is not None:
                await resp.write(encoder.end())
            await resp.write_eof()
        except asyncio.CancelledError:
            self.cancelled_streams += 1
            raise
        except ConnectionResetError:
            self.cancelled_streams += 1
        finally:
            self.active_streams -= 1
        return resp
