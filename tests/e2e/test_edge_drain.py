"""Shutdown support of the edge, in process: ``App.begin_drain`` and ``App.drain`` with a real
granian server, a real upstream and real HTTP clients (the signals are wired in cli.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from granian.constants import Interfaces
from granian.server.embed import Server

from crossroute.app import App, Route, register
from crossroute.config import load
from crossroute.edge_server import server_options
from crossroute.gateway import Gateway
from crossroute.replies import StreamReply

from .edge_support import EdgeUpstream, gateway_config
from .gateway_process import free_port

AUTH = {"Authorization": "Bearer edge-key"}


@pytest.fixture(scope="module")
def up() -> Iterator[EdgeUpstream]:
    upstream = EdgeUpstream().start()
    yield upstream
    upstream.stop()


async def _endless(gw: Any, req: Any) -> StreamReply:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(1000):
            yield f"event: tick\ndata: {i}\n\n".encode()
            await asyncio.sleep(0.05)

    reply = StreamReply(200, chunks())
    reply.terminal = lambda status, message: f"event: end\ndata: {status} {message}\n\n".encode()
    return reply


register("POST", "/test/edge-endless", Route(_endless, "responses", auth=False))


class Running:
    def __init__(self, app: App, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
async def running(up: EdgeUpstream, tmp_path: Path) -> AsyncIterator[Running]:
    port = free_port()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"host": "127.0.0.1", "port": port, **gateway_config(up)}))
    settings = load(path)
    gateway = Gateway(settings)
    await gateway.start()
    app = App(gateway)
    server = Server(app, address="127.0.0.1", port=port, interface=Interfaces.RSGI, log_enabled=False,
                    **server_options(settings))
    serving = asyncio.create_task(server.serve())
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    try:
        yield Running(app, port)
    finally:
        server.stop()
        try:
            await asyncio.wait_for(serving, 10)
        finally:
            await gateway.stop()


def _chat(model: str) -> bytes:
    return orjson.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]})


async def test_drain_ends_open_streams_with_the_formats_terminal_event(running: Running) -> None:
    async with aiohttp.ClientSession() as http, aiohttp.ClientSession() as other:
        resp = await http.post(running.url + "/v1/chat/completions", data=_chat("slow"), headers=AUTH)
        assert resp.status == 200
        first = await resp.content.readuntil(b"\n\n")
        assert b"t0" in first
        running.app.begin_drain()
        # a new request while draining: 503 in the client's format, and the connection closes
        async with other.post(running.url + "/v1/messages", data=b"{}", headers=AUTH) as r:
            assert r.status == 503
            assert r.headers["connection"] == "close"
            body = await r.json()
            assert body["type"] == "error" and "shutting down" in body["error"]["message"]
        t0 = time.monotonic()
        await running.app.drain(0.5)
        took = time.monotonic() - t0
        rest = await asyncio.wait_for(resp.content.read(), 5)
        assert 0.4 < took < 3
        # OpenAI chat: an error data event, then [DONE]; the stream is closed
        events = [e for e in rest.split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]"
        error = orjson.loads(events[-2].removeprefix(b"data: "))
        assert error["error"]["message"].startswith("crossroute is shutting down")
        assert resp.content.at_eof()
        assert running.app.in_flight == 0


async def test_drain_waits_for_streams_that_finish_in_time(running: Running) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(running.url + "/v1/chat/completions", data=_chat("brief"), headers=AUTH)
        assert resp.status == 200
        drained = asyncio.create_task(running.app.drain(10))
        text = await asyncio.wait_for(resp.content.read(), 10)
        await asyncio.wait_for(drained, 5)
        assert b"shutting down" not in text
        assert text.rstrip().endswith(b"data: [DONE]")
        assert b"t4" in text  # every event of the answer arrived


async def test_drain_uses_the_replys_terminal_when_it_has_one(running: Running) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(running.url + "/test/edge-endless", data=b"{}")
        assert resp.status == 200
        await resp.content.readuntil(b"\n\n")
        await running.app.drain(0.2)
        rest = await asyncio.wait_for(resp.content.read(), 5)
        assert rest.endswith(b"event: end\ndata: 503 crossroute is shutting down; retry the request\n\n")
