"""An OpenAI-compatible upstream for the edge tests, and small raw-HTTP helpers.

Models: ``text`` (a short answer, streamed or not), ``slow`` (one stream event every 100 ms for
``SLOW_EVENTS`` events; ``brief``: 5 of them), ``big`` (a stream of ``BIG_EVENTS`` events of 16 KiB text each, written
as fast as the gateway reads; ``written`` counts the bytes it handed to its socket).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import orjson
from aiohttp import web

from ..loopback import ThreadedApp

SLOW_EVENTS = 100
BIG_EVENT_TEXT = 16 * 1024
BIG_EVENTS = 8000  # ~130 MB


def chunk(content: str, finish: str | None = None) -> bytes:
    obj = {"id": "chatcmpl-edge", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(obj) + b"\n\n"


ANSWER = {
    "id": "chatcmpl-edge", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from upstream"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}


class EdgeUpstream(ThreadedApp):
    """Runs in its own thread and loop."""

    runner_options = {"access_log": None}

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.bodies: list[bytes] = []

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.bodies.append(raw)
        body = orjson.loads(raw)
        model = body.get("model")
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(ANSWER), content_type="application/json")
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        if model == "big":
            sock = request.transport.get_extra_info("socket") if request.transport else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            self.written = 0
            event = chunk("x" * BIG_EVENT_TEXT)
            for _ in range(BIG_EVENTS):
                await resp.write(event)
                self.written += len(event)
        elif model in ("slow", "brief"):
            for i in range(SLOW_EVENTS if model == "slow" else 5):
                await resp.write(chunk(f"t{i} "))
                await asyncio.sleep(0.1)
        else:
            await resp.write(chunk("hello ") + chunk("world"))
        await resp.write(chunk("", "stop") + b"data: [DONE]\n\n")
        return resp


def gateway_config(up: EdgeUpstream, **extra: Any) -> dict[str, Any]:
    return {
        "api-keys": ["edge-key"],
        "read-timeout-seconds": 30,
        "disable-cooling": True,
        "openai-compatibility": [{
            "name": "edge-up", "base-url": up.base + "/v1", "api-key-entries": [{"api-key": "sk-edge-upstream-secret"}],
            "models": [{"name": m, "alias": m} for m in ("text", "slow", "brief", "big")],
        }],
        "claude-api-key": [{"api-key": "sk-claude-edge", "base-url": up.base, "models": [{"name": "c", "alias": "c"}]}],
        **extra,
    }


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection; read until the server closes it or the body is complete."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + body)
        return read_response(s, timeout)


def read_response(s: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        got = s.recv(65536)
        if not got:
            raise ConnectionError(f"closed before headers: {data!r}")
        data += got
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = headers.get("content-length")
    if length is not None:
        while len(rest) < int(length):
            got = s.recv(65536)
            if not got:
                break
            rest += got
        return status, headers, rest
    if headers.get("transfer-encoding") == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            got = s.recv(65536)
            if not got:
                break
            rest += got
    return status, headers, rest


def post_head(path: str, length: int, *extra: str, key: str = "edge-key") -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Authorization: Bearer {key}", f"Content-Length: {length}", *extra]
    return "\r\n".join(lines) + "\r\n\r\n"


def vm_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_until(cond: Any, timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())
