"""A fake upstream of all four kinds that replays the recorded provider transcripts.

The upstream model name picks the scenario: ``text``, ``tools``, ``parallel``, ``thinking``,
``refusal``, ``midstream`` (an error after the first bytes), ``cut`` (the connection drops mid
stream), ``err<status>`` (an HTTP error in that provider's shape), ``hang`` (never answers),
``trickle`` (one event per 50 ms, to test client disconnects), ``html`` (a web page with 200, as
a server behind a wrong base-url answers). Streams are written in small
uneven chunks so the gateway must reassemble events split at any byte.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

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


class FakeUpstream:
    """Runs in its own thread and loop so sync SDK clients in tests cannot block it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self.active_streams = 0
        self.cancelled_streams = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        # credential key -> statuses to answer first; 0 = say nothing (the gateway's read timeout fires)
        self.fail_next: dict[str, list[int]] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle("openai"))
        app.router.add_post("/v1/responses", self._handle("responses"))
        app.router.add_post("/v1/responses/compact", self._compact)
        app.router.add_post("/v1/messages", self._handle("claude"))
        app.router.add_post("/v1/messages/count_tokens", self._count_claude)
        app.router.add_post("/v1beta/models/{tail}", self._gemini)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    def stop(self) -> None:
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)  # type: ignore[union-attr]
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

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

    async def _serve(
        self, request: web.Request, kind: str, model: str | None, stream: bool | None
    ) -> web.StreamResponse:
        body = await self._record(request, kind, model)
        if not isinstance(body, dict):
            return web.Response(status=400, body=error_body(kind, 400), content_type="application/json")
        if model is None:
            model = str(body.get("model", ""))
        if stream is None:
            stream = bool(body.get("stream"))
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
            return web.Response(
                status=status,
                body=error_body(kind, status),
                content_type="application/json",
                headers={"Retry-After": "1"} if status == 429 else None,
            )
        scenario = model.split("/")[-1]
        if scenario.startswith("err") and scenario[3:].isdigit():
            status = int(scenario[3:])
            return web.Response(status=status, body=error_body(kind, status), content_type="application/json")
        if scenario == "hang":
            await asyncio.sleep(30)
        if scenario == "html":
            return web.Response(body=b"<!doctype html><html><body>Welcome</body></html>", content_type="text/html")
        stream_file, json_file = FILES[kind].get(scenario, FILES[kind]["text"])
        if scenario in ("cut", "trickle"):
            stream_file = FILES[kind]["text"][0]
        if not stream:
            if json_file is None:
                json_file = FILES[kind]["text"][1]
            return web.Response(
                body=(FIXTURES / json_file).read_bytes(),
                content_type="application/json",
                headers={"x-upstream-id": "fake-1"},
            )
        assert stream_file is not None
        data = (FIXTURES / stream_file).read_bytes()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "x-upstream-id": "fake-1"})
        await resp.prepare(request)
        self.active_streams += 1
        rng = random.Random(len(data))
        try:
            if scenario == "trickle":
                for _ in range(400):
                    await resp.write(b": ping\n\n" if kind != "gemini" else b"\r\n")
                    await asyncio.sleep(0.05)
            pos = 0
            n = 0
            while pos < len(data):
                size = rng.randint(3, 97)
                await resp.write(data[pos : pos + size])
                pos += size
                n += 1
                if scenario == "cut" and pos > len(data) // 2:
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
                if n % 8 == 0:
                    await asyncio.sleep(0.0005)
            await resp.write_eof()
        except asyncio.CancelledError:
            self.cancelled_streams += 1
            raise
        except ConnectionResetError:
            self.cancelled_streams += 1
        finally:
            self.active_streams -= 1
        return resp
