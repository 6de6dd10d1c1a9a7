"""Failover and cooldowns against an upstream that misbehaves the way real ones do, through a real
``crossroute serve`` process.

The upstream here is a small aiohttp server whose behaviour is chosen by the upstream model name:
a 200 that is not an answer, a stream that fails before its first event, request-dependent 404s,
a 401 that echoes the key, a model that fails once. Two credentials serve the client model ``m``:
``bad`` (preferred: higher priority) and ``good``; which one answered is in the answer's text.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from .conftest import CLIENT_KEY
from .gateway_process import GatewayProcess, free_port

BAD_KEY = "sk-bad-0123456789abcdefSECRET"
GOOD_KEY = "sk-good-0123456789abcdef"


# ------------------------------------------------------------------ the upstream
def _chat(text: str, model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}


def _claude(text: str, model: str) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 2}}


def _responses(text: str, model: str) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": model,
            "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}}


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode()) + b"\n\n"


def _chat_stream(text: str, model: str) -> list[bytes]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    return [
        _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}),
        _sse({**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}),
        _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        _sse(b"[DONE]"),
    ]


def _claude_stream(text: str, model: str) -> list[bytes]:
    start = {"type": "message_start", "message": {**_claude("", model), "content": [], "stop_reason": None}}
    return [
        _sse(start, "message_start"),
        _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
             "content_block_start"),
        _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
             "content_block_delta"),
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
              "usage": {"output_tokens": 2}}, "message_delta"),
        _sse({"type": "message_stop"}, "message_stop"),
    ]


NO_CONTENT = {"openai": {"id": "x", "object": "chat.completion", "choices": []},
              "claude": {"id": "x", "type": "message", "role": "assistant"},
              "responses": {"id": "x", "object": "response", "status": "completed"}}


class Upstream:
    """The upstream: ``/v1/chat/completions`` (OpenAI), ``/v1/messages`` (Anthropic),
    ``/v1/responses`` (Responses); the model name picks the behaviour."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.seen: list[tuple[str, str]] = []  # (key, model) per request
        self.counts: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._handler("openai"))
            app.router.add_post("/v1/messages", self._handler("claude"))
            app.router.add_post("/v1/responses", self._handler("responses"))
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def _handler(self, kind: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            key = (request.headers.get("Authorization", "").removeprefix("Bearer ")
                   or request.headers.get("x-api-key", ""))
            body = await request.json()
            model = body.get("model", "")
            self.seen.append((key, model))
            self.counts[model] = self.counts.get(model, 0) + 1
            return await self._serve(request, kind, model, key, bool(body.get("stream")))
        return handle

    async def _serve(self, request: web.Request, kind: str, model: str, key: str, stream: bool
                     ) -> web.StreamResponse:
        who = "bad" if key == BAD_KEY else "good"
        text = f"answered by {who} ({model})"
        if model == "flaky" and self.counts[model] == 1:
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=503)
        if model == "nf-prev":
            return web.json_response({"error": {"message": "Previous response with id 'resp_x' not found.",
                                                "type": "invalid_request_error", "param": "previous_response_id"}},
                                     status=404)
        if model == "nf-model":
            return web.json_response({"error": {"message": f"The model '{model}' does not exist",
                                                "type": "invalid_request_error", "code": "model_not_found"}},
                                     status=404)
        if model == "echo401":
            return web.json_response({"error": {"message": f"Incorrect API key provided: {key}.",
                                                "type": "invalid_request_error", "code": "invalid_api_key"}},
                                     status=401)
        if not stream:
            if model == "empty":
                return web.Response(body=b"{}", content_type="application/json")
            if model == "okerror":
                return web.json_response({"error": {"message": "internal failure", "type": "server_error"}})
            if model == "nocontent":
                return web.json_response(NO_CONTENT[kind])
            if model == "html":
                return web.Response(text="<!doctype html><html><body>Welcome</body></html>", content_type="text/html")
            if model == "badjson":
                return web.Response(body=b'{"id": "x", "choices": [{"index": 0, "mess', content_type="application/json")
            if model == "big":
                answer = _chat("x" * (2 * 1024 * 1024), model) if kind == "openai" else _claude("x" * 2_100_000, model)
                return web.json_response(answer)
            make = {"openai": _chat, "claude": _claude, "responses": _responses}[kind]
            return web.json_response(make(text, model))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        if model == "s-html":
            resp.content_type = "text/html"
            await resp.prepare(request)
            await resp.write(b"<!doctype html><html><body>Welcome</body></html>")
            await resp.write_eof()
            return resp
        await resp.prepare(request)
        if model == "s-eof":
            await resp.write_eof()
            return resp
        if model == "s-comments":
            await resp.write(b": keep-alive\n\n")
            await resp.write_eof()
            return resp
        if model == "s-reset":
            await resp.write(b": starting\n\n")
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.abort()
            return resp
        if model == "s-errfirst":
            if kind == "claude":
                await resp.write(_sse({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
                                      "error"))
            else:
                await resp.write(_sse({"error": {"message": "busy", "type": "server_error"}}))
            await resp.write_eof()
            return resp
        events = (_claude_stream if kind == "claude" else _chat_stream)(text, model)
        if model == "s-cutlate":
            events = events[:2]
        for ev in events:
            await resp.write(ev)
        if model == "s-cutlate":
            assert request.transport is not None
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    u = Upstream().start()
    yield u
    u.stop()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(cfg: dict[str, Any]) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(started)}"
        workdir.mkdir()
        gw = GatewayProcess({"api-keys": [CLIENT_KEY], "read-timeout-seconds": 3, "connect-timeout-seconds": 2,
                             "routing": {"strategy": "fill-first"}, **cfg}, workdir)
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.stop()


def two_credentials(base: str, bad_model: str, kind: str = "openai", good_model: str = "good",
                    **extra: Any) -> dict[str, Any]:
    """``m`` served first by the bad credential (as ``bad_model``), then by the good one."""
    def models(name: str) -> list[dict[str, str]]:
        return [{"name": name, "alias": "m"}]

    if kind == "openai":
        return {"openai-compatibility": [
            {"name": "bad", "base-url": base + "/v1", "priority": 10, "api-key-entries": [{"api-key": BAD_KEY}],
             "models": models(bad_model)},
            {"name": "good", "base-url": base + "/v1", "api-key-entries": [{"api-key": GOOD_KEY}],
             "models": models(good_model)},
        ], **extra}
    return {"claude-api-key": [
        {"api-key": BAD_KEY, "base-url": base, "priority": 10, "models": models(bad_model)},
        {"api-key": GOOD_KEY, "base-url": base, "models": models(good_model)},
    ], **extra}


def post(gw: GatewayProcess, path: str, body: dict[str, Any], fmt: str = "openai"
         ) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if fmt == "claude":
        headers |= {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    else:
        headers["Authorization"] = f"Bearer {CLIENT_KEY}"
    req = urllib.request.Request(gw.url + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
CLAUDE = {"model": "m", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


def chat(gw: GatewayProcess, stream: bool = False, model: str = "m") -> tuple[int, bytes, dict[str, str]]:
    return post(gw, "/v1/chat/completions", {**CHAT, "model": model, "stream": stream})


def claude(gw: GatewayProcess, stream: bool = False) -> tuple[int, bytes, dict[str, str]]:
    return post(gw, "/v1/messages", {**CLAUDE, "stream": stream}, fmt="claude")


# ------------------------------------------------------------------ a 200 that is not an answer
NOT_ANSWERS = ["empty", "okerror", "nocontent", "html", "badjson", "big"]


@pytest.mark.parametrize("bad", NOT_ANSWERS)
@pytest.mark.parametrize(("upstream_kind", "client"), [("openai", "openai"), ("claude", "claude"),
                                                       ("claude", "openai"), ("openai", "claude")])
def test_a_200_that_is_not_an_answer_fails_over(upstream: Upstream, start_gateway: Callable[..., GatewayProcess],
                                                bad: str, upstream_kind: str, client: str) -> None:
    gw = start_gateway(two_credentials(upstream.base, bad, upstream_kind, **{"max-upstream-body-mb": 1}))
    status, raw, _ = chat(gw) if client == "openai" else claude(gw)
    assert status == 200, raw
    assert b"answered by good" in raw


@pytest.mark.parametrize("bad", NOT_ANSWERS)
def test_a_200_that_is_not_an_answer_is_a_502_in_the_clients_format(
        upstream: Upstream, start_gateway: Callable[..., GatewayProcess], bad: str) -> None:
    gw = start_gateway({"openai-compatibility": [
        {"name": "only", "base-url": upstream.base + "/v1", "api-key-entries": [{"api-key": GOOD_KEY}],
         "models": [{"name": bad, "alias": "m"}]}], "max-upstream-body-mb": 1})
    status, raw, _ = chat(gw)
    assert status == 502, raw
    body = json.loads(raw)  # never the upstream's invalid JSON or web page
    assert "only" in body["error"]["message"]
    status, raw, _ = claude(gw)
    assert status == 502 and json.loads(raw)["type"] == "error"


# ------------------------------------------------------------------ streams that fail before any output
EARLY_STREAM_FAILURES = ["s-eof", "s-html", "s-comments", "s-reset"]


@pytest.mark.parametrize("bad", EARLY_STREAM_FAILURES)
@pytest.mark.parametrize(("upstream_kind", "client"), [("openai", "openai"), ("claude", "claude"),
                                                       ("claude", "openai"), ("openai", "claude")])
def test_a_stream_that_fails_before_any_output_fails_over(
        upstream: Upstream, start_gateway: Callable[..., GatewayProcess], bad: str, upstream_kind: str,
        client: str) -> None:
    gw = start_gateway(two_credentials(upstream.base, bad, upstream_kind))
    status, raw, headers = chat(gw, stream=True) if client == "openai" else claude(gw, stream=True)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert b"answered by good" in raw, raw
    assert b"error" not in raw


@pytest.mark.parametrize(("upstream_kind", "client"), [("openai", "openai"), ("claude", "claude"),
                                                       ("claude", "openai"), ("openai", "claude")])
def test_an_error_event_before_any_output_fails_over(
        upstream: Upstream, start_gateway: Callable[..., GatewayProcess], upstream_kind: str, client: str) -> None:
    gw = start_gateway(two_credentials(upstream.base, "s-errfirst", upstream_kind))
    status, raw, _ = chat(gw, stream=True) if client == "openai" else claude(gw, stream=True)
    assert status == 200 and b"answered by good" in raw, raw


def test_a_stream_that_fails_before_any_output_alone_is_an_error_status(
        upstream: Upstream, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway({"openai-compatibility": [
        {"name": "only", "base-url": upstream.base + "/v1", "api-key-entries": [{"api-key": GOOD_KEY}],
         "models": [{"name": "s-eof", "alias": "m"}]}]})
    status, raw, _ = chat(gw, stream=True)
    assert status == 502, raw
    assert "before any output" in json.loads(raw)["error"]["message"]


def test_a_stream_cut_after_output_ends_with_the_clients_error_event(
        upstream: Upstream, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(two_credentials(upstream.base, "s-cutlate", "claude"))
    upstream.seen.clear()
    status, raw, _ = claude(gw, stream=True)
    assert status == 200
    assert b"event: message_start" in raw and b"event: error" in raw
    assert [k for k, _ in upstream.seen] == [BAD_KEY]  # no failover once the client has bytes


# ------------------------------------------------------------------ cooldowns that lock nothing out
def test_a_request_dependent_404_cools_nothing(upstream: Upstream,
                                               start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway({"codex-api-key": [
        {"api-key": GOOD_KEY, "base-url": upstream.base + "/v1",
         "models": [{"name": "nf-prev", "alias": "m"}, {"name": "good", "alias": "ok"}]}]})
    body = {"model": "m", "input": "hi", "previous_response_id": "resp_x"}
    for _ in range(3):  # each one reaches the upstream and gets its 404, never a cooldown
        status, raw, headers = post(gw, "/v1/responses", body)
        assert status == 404, raw
        assert "retry-after" not in headers
        assert "previous_response_id" in raw.decode() or "Previous response" in raw.decode()
    assert upstream.counts.get("nf-prev", 0) >= 3


def test_an_unknown_model_on_one_upstream_fails_over_and_cools_briefly(
        upstream: Upstream, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(two_credentials(upstream.base, "nf-model"))
    status, raw, _ = chat(gw)
    assert status == 200 and b"answered by good" in raw
    gw2 = start_gateway({"openai-compatibility": [
        {"name": "only", "base-url": upstream.base + "/v1", "api-key-entries": [{"api-key": GOOD_KEY}],
         "models": [{"name": "nf-model", "alias": "m"}, {"name": "good", "alias": "other"}]}]})
    status, raw, _ = chat(gw2)
    assert status == 404
    status, raw, headers = chat(gw2)  # the model now rests briefly, never for 12 hours
    assert status in (404, 429, 502)
    if "retry-after" in headers:
        assert int(headers["retry-after"]) <= 60
    status, raw, _ = chat(gw2, model="other")  # the same credential's other models still work
    assert status == 200 and b"answered by good" in raw


def test_cooldowns_follow_the_upstream_model_not_the_clients_name(
        upstream: Upstream, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway({"openai-compatibility": [
        {"name": "local", "base-url": upstream.base + "/v1", "api-key-entries": [{"api-key": GOOD_KEY}],
         "models": [{"name": "flaky", "alias": "local"}]}]})
    upstream.counts.pop("flaky", None)
    status, _, _ = chat(gw, model="local")  # the upstream model fails once: it cools down
    assert status == 503
    status, _, _ = chat(gw, model="flaky")  # the same upstream model by its own name: cooling too
    assert status in (429, 503)


def test_an_unreachable_upstream_is_used_again_within_seconds(
        start_gateway: Callable[..., GatewayProcess]) -> None:
    later = Upstream()  # not started yet: connection refused
    gw = start_gateway({"openai-compatibility": [
        {"name": "restarting", "base-url": later.base + "/v1", "api-key-entries": [{"api-key": GOOD_KEY}],
         "models": [{"name": "good", "alias": "m"}]}]})
    status, raw, headers = chat(gw)
    assert status == 502, raw
    assert int(headers.get("retry-after", "1")) <= 2
    later.start()
    try:
        deadline = time.monotonic() + 5
        while True:
            status, raw, _ = chat(gw)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert status == 200 and b"answered by good" in raw
    finally:
        later.stop()


# ------------------------------------------------------------------ secrets by value
@pytest.mark.parametrize(("upstream_kind", "client"), [("openai", "openai"), ("openai", "claude")])
def test_an_upstream_error_echoing_the_key_reaches_the_client_masked(
        upstream: Upstream, start_gateway: Callable[..., GatewayProcess], upstream_kind: str, client: str) -> None:
    gw = start_gateway({"openai-compatibility": [
        {"name": "only", "base-url": upstream.base + "/v1", "api-key-entries": [{"api-key": BAD_KEY}],
         "models": [{"name": "echo401", "alias": "m"}]}]})
    status, raw, _ = chat(gw) if client == "openai" else claude(gw)
    assert status == 401, raw
    assert BAD_KEY.encode() not in raw and b"Incorrect API key provided" in raw
    assert BAD_KEY[-4:].encode() in raw  # masked, not removed: the user can tell which key
    assert BAD_KEY not in gw.log()
