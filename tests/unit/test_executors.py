"""The executor seam: declared operations, requests built per kind, HTTP I/O against a real
loopback server (401 -> refresh -> one resend, error scopes, body limits), and dispatch driving
executors that do no I/O (failover by scope, until the first client output of a stream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from crossroute import redaction
from crossroute.call import Call
from crossroute.config import ProviderEntry, parse
from crossroute.dispatch import execute
from crossroute.gateway import Gateway
from crossroute.providers import EXECUTORS, Outbound, UpstreamError, executor_for
from crossroute.providers.base import BadAnswer, HttpExecutor, HttpUpstream, StaticKey, scope_for
from crossroute.providers.openai_compat import OpenAICompatExecutor
from crossroute.replies import Reply, StreamReply
from crossroute.routing.cooldown import ANY_MODEL
from tests.upstream_io import LoopbackIO


def entry(kind: str = "openai", base: str = "http://127.0.0.1:9/v1", key: str = "sk-test-key-123456",
          **kw: Any) -> ProviderEntry:
    return ProviderEntry(kind=kind, provider=kind, name=f"{kind}-entry", api_key=key, base_url=base, **kw)


def out(op: str = "generate", wire: str = "openai", stream: bool = False, model: str = "m",
        headers: dict[str, str] | None = None) -> Outbound:
    return Outbound(op, wire, model, b"{}", stream, headers or {})


# ------------------------------------------------------------------ declared operations, built requests
def test_operations_are_declared_per_kind() -> None:
    assert EXECUTORS["openai"].supports == {"generate", "compact"}
    assert EXECUTORS["codex"].supports == {"generate", "compact"}
    assert EXECUTORS["claude"].supports == {"generate", "count_tokens"}
    assert EXECUTORS["gemini"].supports == {"generate", "count_tokens"}
    with pytest.raises(ValueError, match="no executor"):
        executor_for("nope")


def test_requests_are_built_per_kind_and_operation() -> None:
    ex = EXECUTORS["openai"]
    assert isinstance(ex, HttpExecutor)
    e = entry()
    r = ex.build(e, out())
    assert r.url == "http://127.0.0.1:9/v1/chat/completions"
    assert r.headers["Authorization"] == "Bearer sk-test-key-123456"
    assert ex.build(e, out("compact", "responses")).url == "http://127.0.0.1:9/v1/responses/compact"
    assert ex.build(e, out(wire="responses", stream=True)).headers["Accept"] == "text/event-stream"
    claude = EXECUTORS["claude"]
    assert isinstance(claude, HttpExecutor)
    official = claude.build(entry("claude", "https://api.anthropic.com"), out("count_tokens", "claude"))
    assert official.url == "https://api.anthropic.com/v1/messages/count_tokens"
    assert official.headers["x-api-key"] == "sk-test-key-123456" and "Authorization" not in official.headers
    custom = claude.build(entry("claude", "http://127.0.0.1:9"), out(wire="claude", headers={"anthropic-beta": "b1"}))
    assert custom.headers["Authorization"] == "Bearer sk-test-key-123456" and custom.headers["anthropic-beta"] == "b1"
    gemini = EXECUTORS["gemini"]
    assert isinstance(gemini, HttpExecutor)
    g = entry("gemini", "http://127.0.0.1:9")
    assert gemini.build(g, out(wire="gemini", stream=True, model="gemini-x")).url.endswith(
        "/v1beta/models/gemini-x:streamGenerateContent?alt=sse")
    assert gemini.build(g, out("count_tokens", "gemini", model="gemini-x")).url.endswith(":countTokens")
    codex = EXECUTORS["codex"]
    assert isinstance(codex, HttpExecutor)
    assert codex.build(entry("codex"), out("compact", "responses")).url == "http://127.0.0.1:9/v1/responses/compact"


@pytest.mark.parametrize(("status", "body", "scope"), [
    (0, None, "credential"), (400, None, "request"), (413, None, "request"), (422, None, "request"),
    (401, None, "credential"), (402, None, "credential"), (403, None, "model"), (429, None, "model"),
    (500, None, "model"), (503, None, "model"), (404, b'{"error":{"message":"model x not found"}}', "model"),
    (404, b'{"error":"model file not found, try pulling it first"}', "model"),
    (404, b'{"error":{"message":"No such File object: file-abc","param":"file_id"}}', "request"),
    (404, b'{"error":{"message":"Previous response with id \'resp_1\' not found.",'
          b'"param":"previous_response_id"}}', "request"),
])
def test_failure_scopes(status: int, body: bytes | None, scope: str) -> None:
    assert scope_for(status, body) == scope
    assert UpstreamError(status, "x", body=body).scope == scope


# ------------------------------------------------------------------ HTTP I/O on loopback
IO = LoopbackIO


class Refreshing(StaticKey):
    """A token source that can refresh once (an OAuth token would)."""

    def __init__(self) -> None:
        super().__init__("old-token-123456")
        self.refreshes = 0

    async def refresh(self) -> bool:
        self.refreshes += 1
        self._key = "new-token-123456"
        return True


class Server:
    def __init__(self) -> None:
        self.auth: list[str] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.auth.append(auth)
        model = (await request.json()).get("model")
        if model == "needs-new" and auth != "Bearer new-token-123456":
            return web.json_response({"error": {"message": f"Incorrect API key provided: {auth[7:]}"}}, status=401)
        if model == "busy":
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "7"})
        if model == "chunked":
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(4):
                await resp.write(b"x" * 1000)
            await resp.write_eof()
            return resp
        return web.json_response({"ok": True, "pad": "y" * 3000})


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, aiohttp.ClientSession]]:
    srv = Server()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    session = aiohttp.ClientSession()
    yield srv, session
    await session.close()
    await runner.cleanup()


class RefreshingOpenAI(OpenAICompatExecutor):
    def __init__(self, tokens: Refreshing) -> None:
        self.tokens = tokens

    def token_source(self, entry: ProviderEntry) -> Refreshing:
        return self.tokens

    def build(self, entry: ProviderEntry, o: Outbound) -> Any:
        entry.derived.clear()  # headers carry the current token
        return super().build(entry, o)


async def test_401_refreshes_and_resends_once(server: tuple[Server, aiohttp.ClientSession]) -> None:
    srv, session = server
    tokens = Refreshing()
    ex = RefreshingOpenAI(tokens)
    e = entry(base=f"http://127.0.0.1:{srv.port}/v1")
    o = Outbound("generate", "openai", "needs-new", b'{"model":"needs-new"}', False, {})
    up = await ex.send(e, o, IO(session))
    assert up.status == 200 and orjson.loads(await up.body(1 << 20))["ok"]
    up.close(True)
    assert srv.auth == ["Bearer old-token-123456", "Bearer new-token-123456"] and tokens.refreshes == 1


async def test_401_with_a_static_key_is_a_credential_failure_with_the_key_masked(
        server: tuple[Server, aiohttp.ClientSession]) -> None:
    srv, session = server
    key = "sk-static-abcdef-0123456789"
    redaction.set_secrets([key])
    try:
        e = entry(base=f"http://127.0.0.1:{srv.port}/v1", key=key)
        with pytest.raises(UpstreamError) as err:
            await EXECUTORS["openai"].send(e, Outbound("generate", "openai", "needs-new", b'{"model":"needs-new"}',
                                                       False, {}), IO(session))
    finally:
        redaction.set_secrets([])
    assert err.value.status == 401 and err.value.scope == "credential"
    assert err.value.body is not None and key.encode() not in err.value.body and key not in err.value.message
    assert b"Incorrect API key provided: sk-...6789" in err.value.body
    assert len(srv.auth) == 1  # a static key cannot refresh: no resend


async def test_429_carries_retry_after(server: tuple[Server, aiohttp.ClientSession]) -> None:
    srv, session = server
    e = entry(base=f"http://127.0.0.1:{srv.port}/v1")
    with pytest.raises(UpstreamError) as err:
        await EXECUTORS["openai"].send(e, Outbound("generate", "openai", "busy", b'{"model":"busy"}', False, {}),
                                       IO(session))
    assert (err.value.status, err.value.retry_after, err.value.scope) == (429, 7.0, "model")
    assert "slow down" in err.value.message


async def test_unreachable_is_status_0_for_the_whole_credential() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UpstreamError) as err:
            await EXECUTORS["openai"].send(entry(base="http://127.0.0.1:9/v1"), out(), IO(session))
    assert err.value.status == 0 and err.value.scope == "credential" and "unreachable" in err.value.message


@pytest.mark.parametrize("model", ["whole", "chunked"])  # with and without Content-Length
async def test_a_body_over_the_limit_is_a_bad_answer(server: tuple[Server, aiohttp.ClientSession], model: str
                                                     ) -> None:
    srv, session = server
    e = entry(base=f"http://127.0.0.1:{srv.port}/v1")
    o = Outbound("generate", "openai", model, orjson.dumps({"model": model}), False, {})
    up = await EXECUTORS["openai"].send(e, o, IO(session))
    assert isinstance(up, HttpUpstream)
    with pytest.raises(BadAnswer):
        await up.body(2000)
    up.close(False)
    up = await EXECUTORS["openai"].send(e, o, IO(session))
    assert len(await up.body(10_000)) > 2000
    up.close(True)


# ------------------------------------------------------------------ dispatch over executors without I/O
class Canned:
    """An Upstream held in memory."""

    io_errors: tuple[type[BaseException], ...] = (ConnectionError,)

    def __init__(self, chunks: list[bytes]) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self._chunks = list(chunks)
        self.closed: bool | None = None

    async def read_chunk(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    async def body(self, limit: int) -> bytes:
        return b"".join(self._chunks)

    def at_eof(self) -> bool:
        return not self._chunks

    def close(self, reuse: bool) -> None:
        self.closed = reuse


class Scripted:
    """An executor that answers from a script per credential: an UpstreamError or chunks."""

    kind = "openai"
    supports = frozenset({"generate"})

    def __init__(self, script: dict[str, UpstreamError | list[bytes]]) -> None:
        self.script = script
        self.sent: list[str] = []

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return "openai"

    def token_source(self, entry: ProviderEntry) -> StaticKey:
        return StaticKey(entry.api_key)

    async def send(self, entry: ProviderEntry, o: Outbound, io: Any) -> Canned:
        self.sent.append(entry.api_key)
        got = self.script[entry.api_key]
        if isinstance(got, UpstreamError):
            raise got
        return Canned(got)


CONFIG = """
openai-compatibility:
  - name: first
    base-url: http://127.0.0.1:9/v1
    priority: 10
    api-key-entries: [{api-key: sk-first-000000}]
    models: [{name: up-first, alias: m}]
  - name: second
    base-url: http://127.0.0.1:9/v1
    api-key-entries: [{api-key: sk-second-00000}]
    models: [{name: up-second, alias: m}]
routing: {strategy: fill-first}
"""

CHAT_OK = orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "x",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"},
                                     "finish_reason": "stop"}]})


def chunk(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else orjson.dumps(obj)) + b"\n\n"


DELTA = chunk({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "x",
               "choices": [{"index": 0, "delta": {"content": "fine"}, "finish_reason": None}]})
STOP = chunk({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "x",
              "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
ERROR_EVENT = chunk({"error": {"message": "overloaded", "type": "server_error"}})


@pytest.fixture
def gw_with() -> Iterator[Any]:
    def make(script: dict[str, UpstreamError | list[bytes]]) -> tuple[Gateway, Scripted]:
        gw = Gateway(parse(CONFIG))
        ex = Scripted(script)
        for c in gw.registry.resolve("m"):
            c.executor = ex
        return gw, ex
    yield make


def call(stream: bool = False) -> Call:
    return Call("openai", "m", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
                {}, stream=stream)


async def drain(reply: StreamReply) -> bytes:
    return b"".join([c async for c in reply.chunks])


async def test_a_request_scoped_failure_is_answered_at_once_and_cools_nothing(gw_with: Any) -> None:
    gw, ex = gw_with({"sk-first-000000": UpstreamError(404, "no such response", scope="request",
                                                        body=b'{"error":{"message":"no such response"}}'),
                      "sk-second-00000": [CHAT_OK]})
    c = call()
    reply = await execute(gw, c)
    assert isinstance(reply, Reply) and reply.status == 404 and reply.call is c
    assert ex.sent == ["sk-first-000000"]
    assert not gw.router.state.cooldowns  # type: ignore[attr-defined]


async def test_failover_cools_the_upstream_model_and_records_attempts(gw_with: Any) -> None:
    gw, _ = gw_with({"sk-first-000000": UpstreamError(503, "busy"), "sk-second-00000": [CHAT_OK]})
    c = call()
    reply = await execute(gw, c)
    assert isinstance(reply, Reply) and reply.status == 200 and b"fine" in reply.body
    first = gw.registry.resolve("m")[0]
    assert set(gw.router.state.cooldowns) == {(first.credential_id, "up-first")}  # type: ignore[attr-defined]
    assert [(a.upstream_model, a.status, a.error is None) for a in c.attempts] == [
        ("up-first", 503, False), ("up-second", 200, True)]
    assert c.credential_id == gw.registry.resolve("m")[1].credential_id and c.id > 0 and c.transport == "http"


async def test_unreachable_cools_the_whole_credential_for_a_second(gw_with: Any) -> None:
    gw, _ = gw_with({"sk-first-000000": UpstreamError(0, "refused"), "sk-second-00000": [CHAT_OK]})
    reply = await execute(gw, call())
    assert reply.status == 200
    first = gw.registry.resolve("m")[0]
    (key, (cd, _)), = gw.router.state.cooldowns.items()  # type: ignore[attr-defined]
    assert key == (first.credential_id, ANY_MODEL) and cd.level == 1


@pytest.mark.parametrize("bad", [CHAT_OK.replace(b'"choices"', b'"nothing"'), b"{}", b"<html></html>", b'{"a":'])
async def test_a_200_that_is_not_an_answer_fails_over(gw_with: Any, bad: bytes) -> None:
    gw, ex = gw_with({"sk-first-000000": [bad], "sk-second-00000": [CHAT_OK]})
    reply = await execute(gw, call())
    assert reply.status == 200 and ex.sent == ["sk-first-000000", "sk-second-00000"]


async def test_a_stream_failing_before_its_first_output_fails_over(gw_with: Any) -> None:
    gw, ex = gw_with({"sk-first-000000": [b": ping\n\n", ERROR_EVENT],
                      "sk-second-00000": [DELTA, STOP, chunk(b"[DONE]")]})
    reply = await execute(gw, call(stream=True))
    assert isinstance(reply, StreamReply) and reply.terminal is not None and reply.call is not None
    body = await drain(reply)
    assert b"fine" in body and b"overloaded" not in body
    assert ex.sent == ["sk-first-000000", "sk-second-00000"]


async def test_after_the_first_output_a_failure_is_the_terminal_event(gw_with: Any) -> None:
    gw, ex = gw_with({"sk-first-000000": [DELTA, b'data: {"broken\n\n'], "sk-second-00000": [DELTA, STOP]})
    reply = await execute(gw, call(stream=True))
    assert isinstance(reply, StreamReply)
    body = await drain(reply)
    assert body.startswith(DELTA) and b'"error"' in body and body.endswith(b"data: [DONE]\n\n")
    assert b"broken" not in body
    assert ex.sent == ["sk-first-000000"]


async def test_nothing_waits_on_the_event_loop_between_attempts(gw_with: Any) -> None:
    gw, _ = gw_with({"sk-first-000000": UpstreamError(500, "x"), "sk-second-00000": UpstreamError(502, "y")})
    reply = await asyncio.wait_for(execute(gw, call()), 5)
    assert reply.status == 502 and ("retry-after", "60") in reply.headers
