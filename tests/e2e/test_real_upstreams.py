"""Upstreams that behave like the real services: compressed answers (asked for or not), SOCKS
proxies, and streams that fail before their first event. A real crossroute process in front of
the fake upstream, and a real SOCKS4/SOCKS5 server on loopback (written here, RFC 1928/SOCKS4a)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from crossroute.config import parse
from crossroute.formats.sse import SSEParser
from crossroute.gateway import ACCEPT_ENCODING, Gateway

from .conftest import CLIENT_KEY
from .fake_upstream import FakeUpstream
from .gateway_process import GatewayProcess

KINDS = ["openai", "claude", "gemini", "responses"]
SCENARIOS = [
    "text", "compressed-unasked", "compressed-unasked-zstd", "compressed-unasked-deflate", "compressed-unasked-br",
    "err429", "midstream", "stream-badjson", "stream-error-first", "htmlerr", "html", "ok-error", "stream-huge-event",
]


# ------------------------------------------------------------------ a SOCKS server


class SocksServer:
    """SOCKS5 (no authentication, CONNECT) and SOCKS4/4a CONNECT on 127.0.0.1, in its own thread.
    ``seen`` records (version, address type, host, port) of every CONNECT it relayed."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, str, int]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SocksServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            version = (await reader.readexactly(1))[0]
            if version == 5:
                host, port = await self._socks5(reader, writer)
            elif version == 4:
                host, port = await self._socks4(reader, writer)
            else:
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except (OSError, asyncio.IncompleteReadError):
            writer.close()
            return
        if version == 5:
            writer.write(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", port))
        else:
            writer.write(b"\x00\x5a" + struct.pack(">H", port) + socket.inet_aton("127.0.0.1"))
        await writer.drain()
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _socks5(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int]:
        n = (await reader.readexactly(1))[0]
        methods = await reader.readexactly(n)
        assert 0 in methods, "the client offered no 'no authentication' method"
        writer.write(b"\x05\x00")
        await writer.drain()
        ver, cmd, _, atyp = await reader.readexactly(4)
        assert ver == 5 and cmd == 1, "only CONNECT is expected"
        if atyp == 1:
            host, kind = socket.inet_ntoa(await reader.readexactly(4)), "ipv4"
        elif atyp == 3:
            host, kind = (await reader.readexactly((await reader.readexactly(1))[0])).decode(), "name"
        else:
            host, kind = str(ipaddress.IPv6Address(await reader.readexactly(16))), "ipv6"
        (port,) = struct.unpack(">H", await reader.readexactly(2))
        self.seen.append((5, kind, host, port))
        return host, port

    async def _socks4(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int]:
        cmd, port_hi, port_lo = await reader.readexactly(3)
        assert cmd == 1
        port = port_hi << 8 | port_lo
        ip = await reader.readexactly(4)
        await reader.readuntil(b"\x00")  # user id
        if ip[:3] == b"\x00\x00\x00" and ip[3]:  # SOCKS4a: the name follows
            host, kind = (await reader.readuntil(b"\x00"))[:-1].decode(), "name"
        else:
            host, kind = socket.inet_ntoa(ip), "ipv4"
        self.seen.append((4, kind, host, port))
        return host, port

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.close()


class HttpProxy:
    """A forward HTTP proxy for http:// targets (absolute-form requests), in its own thread;
    ``seen`` records each URL it forwarded."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HttpProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        from aiohttp import ClientSession, web

        async def forward(request: web.Request) -> web.StreamResponse:
            url = str(request.url)
            self.seen.append(url)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-connection")}
            async with ClientSession(auto_decompress=False) as s, s.request(
                request.method, url, data=await request.read(), headers=headers
            ) as up:
                resp = web.StreamResponse(status=up.status, headers={
                    k: v for k, v in up.headers.items()
                    if k.lower() not in ("transfer-encoding", "content-length", "connection")})
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", forward)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            await web.SockSite(runner, sock).start()

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()


# ------------------------------------------------------------------ clients of the four formats


def request(gw: GatewayProcess, client: str, model: str, stream: bool) -> tuple[int, dict[str, str], bytes]:
    if client == "openai":
        path, body = "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    elif client == "claude":
        path, body = "/v1/messages", {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    elif client == "responses":
        path, body = "/v1/responses", {"model": model, "input": "hi"}
    else:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        path, body = f"/v1beta/models/{model}:{action}", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    if stream and client != "gemini":
        body["stream"] = True
    req = urllib.request.Request(
        gw.url + path, data=orjson.dumps(body), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}",
                 "x-api-key": CLIENT_KEY, "x-goog-api-key": CLIENT_KEY},
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def answer_text(client: str, raw: bytes, stream: bool) -> str:
    """The answer's text, whole or reassembled from the stream's deltas; every stream event must
    be valid JSON (orjson raises otherwise)."""
    if not stream:
        obj = orjson.loads(raw)
        if client == "openai":
            return obj["choices"][0]["message"]["content"] or ""
        if client == "claude":
            return "".join(b.get("text", "") for b in obj["content"] if b["type"] == "text")
        if client == "gemini":
            return "".join(p.get("text", "") for p in obj["candidates"][0]["content"]["parts"] if not p.get("thought"))
        return "".join(c.get("text", "") for item in obj["output"] if item["type"] == "message"
                       for c in item["content"])
    text = ""
    for ev in SSEParser().feed(raw):
        if ev.data == b"[DONE]":
            continue
        obj = orjson.loads(ev.data)
        if client == "openai":
            for ch in obj.get("choices") or ():
                text += ch["delta"].get("content") or ""
        elif client == "claude":
            if obj.get("type") == "content_block_delta" and obj["delta"].get("type") == "text_delta":
                text += obj["delta"]["text"]
        elif client == "gemini":
            for cand in obj.get("candidates") or ():
                for p in (cand.get("content") or {}).get("parts") or ():
                    if not p.get("thought"):
                        text += p.get("text", "")
        elif obj.get("type") == "response.output_text.delta":
            text += obj["delta"]
    return text


def stream_events(raw: bytes) -> list[Any]:
    """Every event's JSON (raises on invalid JSON: nothing invalid may reach a client)."""
    return [orjson.loads(ev.data) for ev in SSEParser().feed(raw) if ev.data != b"[DONE]"]


def config(upstream: FakeUpstream, *, extra: dict[str, Any] | None = None,
           headers: dict[str, str] | None = None) -> dict[str, Any]:
    def models(kind: str) -> list[dict[str, str]]:
        return [{"name": s, "alias": f"{kind}-{s}"} for s in SCENARIOS]

    h = {"headers": headers} if headers else {}
    return {
        "api-keys": [CLIENT_KEY],
        "read-timeout-seconds": 5,
        "connect-timeout-seconds": 2,
        "disable-cooling": True,
        "passthrough-headers": True,
        "openai-compatibility": [{"name": "fake-openai", "base-url": upstream.base + "/v1", **h,
                                  "api-key-entries": [{"api-key": "sk-openai-0"}], "models": models("openai")}],
        "codex-api-key": [{"api-key": "sk-responses-0", "base-url": upstream.base + "/v1", **h,
                           "models": models("responses")}],
        "claude-api-key": [{"api-key": "sk-claude-0", "base-url": upstream.base, **h, "models": models("claude")}],
        "gemini-api-key": [{"api-key": "sk-gemini-0", "base-url": upstream.base, **h, "models": models("gemini")}],
        **(extra or {}),
    }


@pytest.fixture(scope="module")
def up() -> Iterator[FakeUpstream]:
    u = FakeUpstream()
    u.start()
    yield u
    u.stop()


@pytest.fixture(scope="module")
def gw(up: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(config(up), tmp_path_factory.mktemp("gw-real")).start()
    yield g
    g.stop()


# ------------------------------------------------------------------ compression


def test_crossroute_asks_for_what_the_measurement_chose(gw: GatewayProcess, up: FakeUpstream) -> None:
    up.clear()
    status, _, _ = request(gw, "openai", "openai-text", False)
    assert status == 200
    assert up.requests[-1]["headers"].get("Accept-Encoding") == ACCEPT_ENCODING == "identity"


@pytest.mark.parametrize("encoding", ["", "-zstd", "-deflate", "-br"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("client", KINDS)
@pytest.mark.parametrize("kind", KINDS)
def test_answers_compressed_unasked_are_decoded(gw: GatewayProcess, kind: str, client: str, stream: bool,
                                                encoding: str) -> None:
    """Every upstream kind, every client format (same format = passthrough), stream or not: a
    compressed answer reads exactly like the plain one, and no Content-Encoding is forwarded."""
    status, _, plain = request(gw, client, f"{kind}-text", stream)
    assert status == 200
    status, headers, raw = request(gw, client, f"{kind}-compressed-unasked{encoding}", stream)
    assert status == 200, raw[:300]
    assert "content-encoding" not in headers
    assert answer_text(client, raw, stream) == answer_text(client, plain, stream) != ""


@pytest.mark.parametrize("client", KINDS)
def test_a_compressed_429_reaches_the_client_readable(up: FakeUpstream, tmp_path: Path, client: str) -> None:
    """An upstream asked for gzip (a configured header) answers its 429 compressed: the client
    gets the upstream's message in its own format, not compressed bytes."""
    g = GatewayProcess(config(up, headers={"Accept-Encoding": "gzip"}), tmp_path).start()
    try:
        up.clear()
        status, headers, raw = request(g, client, f"{client}-err429", False)
        assert up.requests[-1]["headers"].get("Accept-Encoding") == "gzip"
        assert status == 429
        assert "content-encoding" not in headers
        assert "synthetic upstream error 429" in orjson.loads(raw)["error"]["message"]
        # and a compressed success, asked for, streamed and not
        for stream in (False, True):
            status, _, raw = request(g, client, f"{client}-text", stream)
            assert status == 200 and answer_text(client, raw, stream)
    finally:
        g.stop()


# ------------------------------------------------------------------ streams that are not answers


@pytest.mark.parametrize("client", KINDS)
@pytest.mark.parametrize("kind", KINDS)
def test_invalid_json_in_a_stream_is_never_relayed(gw: GatewayProcess, kind: str, client: str) -> None:
    """The first event's data is broken JSON: nothing reached the client yet, so it is a 502 (after
    failover), never a 200 stream carrying the broken event."""
    status, _, raw = request(gw, client, f"{kind}-stream-badjson", True)
    assert status == 502, (status, raw[:300])
    assert "JSON" in orjson.loads(raw)["error"]["message"]


@pytest.mark.parametrize("client", KINDS)
@pytest.mark.parametrize("kind", KINDS)
def test_an_error_event_before_any_content_is_an_http_error(gw: GatewayProcess, kind: str, client: str) -> None:
    """A stream whose first event is a rate-limit error fails like a 429 answer would: before the
    client saw a byte, so it gets an HTTP error (and a failover could have tried another key)."""
    status, _, raw = request(gw, client, f"{kind}-stream-error-first", True)
    assert status == 429, (status, raw[:300])
    assert "Rate limit reached" in raw.decode()


@pytest.mark.parametrize("client", KINDS)
@pytest.mark.parametrize("scenario", ["html", "ok-error"])
def test_a_stream_request_answered_with_a_page_or_json_is_a_502(gw: GatewayProcess, client: str,
                                                                  scenario: str) -> None:
    status, _, raw = request(gw, client, f"{client}-{scenario}", True)
    assert status == 502, (status, raw[:300])
    assert orjson.loads(raw)


@pytest.mark.parametrize("kind", KINDS)
def test_an_event_that_never_ends_is_refused_not_buffered(gw: GatewayProcess, kind: str) -> None:
    """12 MiB of one event without its end: refused at the parser's 8 MiB bound with a 502."""
    status, _, raw = request(gw, kind, f"{kind}-stream-huge-event", True)
    assert status == 502, (status, raw[:300])
    assert "larger than" in raw.decode()


# ------------------------------------------------------------------ SOCKS proxies


def _socks_config(up: FakeUpstream, proxy: str, host: str = "127.0.0.1") -> dict[str, Any]:
    base = f"http://{host}:{up.port}"
    return {
        "api-keys": [CLIENT_KEY],
        "read-timeout-seconds": 5,
        "connect-timeout-seconds": 2,
        "proxy-url": proxy,
        "openai-compatibility": [
            {"name": "via-global", "base-url": base + "/v1", "api-key-entries": [{"api-key": "sk-a"}],
             "models": [{"name": "text", "alias": "global"}]},
            {"name": "bypass", "base-url": base + "/v1",
             "api-key-entries": [{"api-key": "sk-b", "proxy-url": "direct"}],
             "models": [{"name": "text", "alias": "direct"}]},
        ],
        "claude-api-key": [{"api-key": "sk-c", "base-url": base, "models": [{"name": "text", "alias": "claude"}]}],
    }


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4", "socks4a"])
def test_requests_go_through_a_socks_proxy(up: FakeUpstream, tmp_path: Path, scheme: str) -> None:
    with SocksServer() as socks:
        g = GatewayProcess(_socks_config(up, f"{scheme}://127.0.0.1:{socks.port}", host="localhost"), tmp_path)
        g.start()
        try:
            for stream in (False, True):
                status, _, raw = request(g, "openai", "global", stream)
                assert status == 200 and answer_text("openai", raw, stream), raw[:300]
                status, _, raw = request(g, "claude", "claude", stream)
                assert status == 200 and answer_text("claude", raw, stream), raw[:300]
            assert socks.seen, "the proxy was not used"
            version = 5 if scheme.startswith("socks5") else 4
            for seen in socks.seen:
                # socks5h/socks4a hand the proxy the name unresolved; socks5/socks4 resolve it here
                if scheme in ("socks5h", "socks4a"):
                    assert seen == (version, "name", "localhost", up.port)
                else:
                    assert seen[0] == version and seen[1:] in (("ipv4", "127.0.0.1", up.port),
                                                                ("ipv6", "::1", up.port))
            n = len(socks.seen)
            status, _, _ = request(g, "openai", "direct", False)  # proxy-url: direct bypasses it
            assert status == 200 and len(socks.seen) == n
        finally:
            g.stop()


def test_a_per_entry_socks_proxy(up: FakeUpstream, tmp_path: Path) -> None:
    with SocksServer() as a, SocksServer() as b:
        cfg = _socks_config(up, f"socks5://127.0.0.1:{a.port}")
        cfg["openai-compatibility"][1]["api-key-entries"][0]["proxy-url"] = f"socks5h://127.0.0.1:{b.port}"
        g = GatewayProcess(cfg, tmp_path).start()
        try:
            assert request(g, "openai", "direct", True)[0] == 200
            assert request(g, "openai", "global", False)[0] == 200
            assert [s[1] for s in b.seen] == ["ipv4"] and len(a.seen) == 1
        finally:
            g.stop()


async def test_client_for_makes_one_session_per_socks_url_and_closes_them() -> None:
    yaml = ("proxy-url: socks5://127.0.0.1:1080\nopenai-compatibility:\n  - name: a\n    base-url: http://h\n"
            "    api-key-entries:\n      - {api-key: k1, proxy-url: 'socks5h://127.0.0.1:1081'}\n"
            "      - {api-key: k2, proxy-url: 'http://127.0.0.1:3128'}\n      - {api-key: k3, proxy-url: direct}\n"
            "    models: [m]\n")
    gw = Gateway(parse(yaml))
    await gw.start()
    try:
        shared = gw.http
        assert gw.client_for(None) is shared and gw.proxy_arg(None) is None
        assert gw.client_for("direct") is shared and gw.proxy_arg("direct") is None
        assert gw.client_for("http://127.0.0.1:3128") is shared
        assert gw.proxy_arg("http://127.0.0.1:3128") == "http://127.0.0.1:3128"
        s5 = gw.client_for("socks5://127.0.0.1:1080")
        s5h = gw.client_for("socks5h://127.0.0.1:1081")
        assert s5 is not shared and s5h is not s5 and gw.client_for("socks5://127.0.0.1:1080") is s5
        assert gw.proxy_arg("socks5h://127.0.0.1:1081") is None
        assert s5.headers.get("Accept-Encoding") == ACCEPT_ENCODING and s5.auto_decompress
        # a reload that drops the entry's SOCKS proxy retires its session (closed after a grace)
        await gw.apply(parse("proxy-url: socks5://127.0.0.1:1080\n"))
        assert gw.client_for("socks5://127.0.0.1:1080") is s5 and not s5h.closed
        assert "socks5h://127.0.0.1:1081" not in gw._socks
    finally:
        await gw.stop()
    assert s5.closed and s5h.closed and shared.closed


def test_an_http_proxy_still_works_beside_socks(up: FakeUpstream, tmp_path: Path) -> None:
    """Global HTTP proxy, one entry on SOCKS: each request goes through its own proxy."""
    with HttpProxy() as http, SocksServer() as socks:
        cfg = _socks_config(up, f"http://127.0.0.1:{http.port}")
        cfg["openai-compatibility"][1]["api-key-entries"][0]["proxy-url"] = f"socks5://127.0.0.1:{socks.port}"
        g = GatewayProcess(cfg, tmp_path).start()
        try:
            for stream in (False, True):
                status, _, raw = request(g, "openai", "global", stream)
                assert status == 200 and answer_text("openai", raw, stream)
            assert len(http.seen) == 2 and all(u.endswith("/v1/chat/completions") for u in http.seen)
            assert request(g, "openai", "direct", False)[0] == 200
            assert len(socks.seen) == 1 and len(http.seen) == 2
        finally:
            g.stop()
