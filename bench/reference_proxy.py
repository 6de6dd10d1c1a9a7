"""The minimal reference pass-through proxy: the practical speed limit of crossroute's stack.

Same stack as crossroute: granian's RSGI interface at the edge, one shared aiohttp ClientSession
(``TCPConnector(limit=0)``, ``auto_decompress=False``) to the upstream, orjson. It forwards the
body and the ``Authorization`` (or ``x-api-key``) header of every POST to ``<upstream><path>``;
streams are read with ``iter_any()``, split into SSE events, and each event's JSON is parsed and
re-serialised with orjson (the work any gateway must do per event), then the re-framed events of
one read are written to the client in one write. ``GET /healthz`` answers 200. Nothing else: no
auth, no routing, no usage, no logs.

    python bench/reference_proxy.py --port 18001 --upstream http://127.0.0.1:18000 [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import aiohttp
import orjson

JSON_HEADERS = [("content-type", "application/json")]
SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
FORWARD = ("authorization", "x-api-key", "anthropic-version", "content-type")


def reframe(buf: bytes) -> tuple[bytes, bytes]:
    """Splits complete SSE events off ``buf``; each ``data:`` JSON is parsed and re-serialised.

    Returns (bytes to write, unfinished remainder). Events are separated by a blank line; ``\\n``
    line endings (what OpenAI-compatible upstreams send) are assumed.
    """
    out: list[bytes] = []
    start = 0
    while True:
        end = buf.find(b"\n\n", start)
        if end < 0:
            break
        event = buf[start:end]
        start = end + 2
        lines = event.split(b"\n")
        for line in lines:
            if line.startswith(b"data: "):
                payload = line[6:]
                if payload == b"[DONE]":
                    out.append(b"data: [DONE]\n")
                else:
                    out.append(b"data: " + orjson.dumps(orjson.loads(payload)) + b"\n")
            elif line:
                out.append(line + b"\n")
        out.append(b"\n")
    return b"".join(out), buf[start:]


class ReferenceProxy:
    """RSGI app; the aiohttp session lives for the worker's lifetime."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.session is not None:  # embedded mode: made in the running loop already
            return

        async def make() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )

        self.session = loop.run_until_complete(make())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.session is not None and not loop.is_running():
            loop.run_until_complete(self.session.close())

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        if scope.method == "GET" and scope.path == "/healthz":
            proto.response_bytes(200, JSON_HEADERS, b'{"ok":true}')
            return
        if scope.method != "POST":
            proto.response_bytes(405, JSON_HEADERS, b'{"error":{"message":"method not allowed"}}')
            return
        body = await proto()
        h = scope.headers
        headers = {}
        for name in FORWARD:
            value = h.get(name)
            if value is not None:
                headers[name] = value
        session = self.session
        assert session is not None
        try:
            stream = bool(orjson.loads(body).get("stream")) if body else False
        except (orjson.JSONDecodeError, AttributeError):
            stream = False
        url = self.upstream + scope.path
        async with session.post(url, data=body, headers=headers) as resp:
            if not stream or resp.status != 200:
                data = await resp.read()
                ctype = resp.headers.get("content-type", "application/json")
                proto.response_bytes(resp.status, [("content-type", ctype)], data)
                return
            transport = proto.response_stream(200, SSE_HEADERS)
            rest = b""
            async for chunk in resp.content.iter_any():
                out, rest = reframe(rest + chunk if rest else chunk)
                if out:
                    await transport.send_bytes(out)


async def serve_embedded(host: str, port: int, upstream: str) -> None:
    """One process: granian's embedded server in the running loop (no worker subprocess)."""
    import signal

    from granian.constants import Interfaces
    from granian.server.embed import Server

    app = ReferenceProxy(upstream)
    app.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    )
    server = Server(app, address=host, port=port, interface=Interfaces.RSGI, log_enabled=False, backlog=4096)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.stop)
    try:
        await server.serve()
    finally:
        await app.session.close()


def _target() -> ReferenceProxy:
    return ReferenceProxy(os.environ["REFPROXY_UPSTREAM"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="minimal reference pass-through proxy (bench)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18001)
    p.add_argument("--upstream", default="http://127.0.0.1:18000")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--embed",
        action="store_true",
        help="run granian's embedded server inside this process's asyncio loop (as crossroute serve does)",
    )
    args = p.parse_args(argv)
    if args.embed:
        import uvloop

        uvloop.run(serve_embedded(args.host, args.port, args.upstream))
        return

    from granian.constants import Interfaces, Loops
    from granian.server import Server

    os.environ["REFPROXY_UPSTREAM"] = args.upstream
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    Server(
        "reference_proxy:_target",
        address=args.host,
        port=args.port,
        interface=Interfaces.RSGI,
        workers=args.workers,
        factory=True,
        loop=Loops.uvloop,
        log_enabled=False,
        backlog=4096,
    ).serve()


if __name__ == "__main__":
    main()
