"""crossroute's own upstream HTTP/1.1 client (providers/http1.py) against real servers on 127.0.0.1
that answer byte by byte what a test tells them: keep-alive, chunked and close-delimited answers,
compression asked for or not, cut and idle connections, a server that closes idle connections, bad
HTTP, oversized headers, decompression bombs, back-pressure, TLS."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import brotli
import pytest

from crossroute.providers import http1
from crossroute.providers.failures import BadAnswer
from crossroute.providers.http1 import Http1Error, Http1Pool

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd  # type: ignore[import-not-found,no-redef]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0].encode(), headers, body


class Server:
    """A TCP server on 127.0.0.1 running ``handler`` per connection; counts connections."""

    def __init__(self, handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_ctx = ssl_ctx
        self.connections = 0
        self.requests: list[tuple[bytes, dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_ctx)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.ssl_ctx else 'http'}://127.0.0.1:{port}/v1/chat/completions"


def answers(*replies: bytes, record: list[Any] | None = None, close_after: bool = False) -> Handler:
    """A handler answering the requests of one connection with ``replies`` in turn."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in replies:
            req = await read_request(reader)
            if record is not None:
                record.append(req)
            writer.write(reply)
            await writer.drain()
        if not close_after:
            await reader.read()  # keep the connection until the client closes it

    return handler


def ok(body: bytes = b'{"ok":true}', extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


@pytest.fixture
async def pool() -> AsyncIterator[Http1Pool]:
    p = Http1Pool()
    yield p
    await p.close()


async def post(pool: Http1Pool, url: str, headers: dict[str, str] | None = None, body: bytes = b"{}",
               read: float | None = 5.0) -> http1.Response:
    return await pool.post(url, headers or {"Content-Type": "application/json"}, body, 5.0, read)


async def test_keep_alive_reuses_one_connection(pool: Http1Pool) -> None:
    record: list[Any] = []
    async with Server(answers(ok(), ok(b'{"n":2}'), ok(b'{"n":3}'), record=record)) as srv:
        for expect in (b'{"ok":true}', b'{"n":2}', b'{"n":3}'):
            resp = await post(pool, srv.url, {"Authorization": "Bearer k", "Content-Type": "application/json"},
                              b'{"model":"m"}')
            assert resp.status == 200 and await resp.body(1 << 20) == expect
            resp.close(True)
        assert srv.connections == 1
    line, headers, body = record[0]
    assert line == b"POST /v1/chat/completions HTTP/1.1" and body == b'{"model":"m"}'
    assert headers["host"].startswith("127.0.0.1:") and headers["authorization"] == "Bearer k"
    assert headers["accept-encoding"] == "identity" and headers["content-length"] == "13"
    assert headers["user-agent"].startswith("crossroute/")  # none given: crossroute's own, nothing forged


async def test_a_connection_not_read_to_its_end_is_not_reused(pool: Http1Pool) -> None:
    async with Server(answers(ok(), ok())) as srv:
        resp = await post(pool, srv.url)
        resp.close(False)
        resp = await post(pool, srv.url)
        assert await resp.body(1 << 20) == b'{"ok":true}'
        resp.close(True)
        assert srv.connections == 2


async def test_chunked_and_close_delimited_answers(pool: Http1Pool) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
               b"7\r\ndata: 1\r\n2\r\n\n\n\r\n0\r\n\r\n")
    async with Server(answers(chunked)) as srv:
        resp = await post(pool, srv.url)
        got = b""
        while chunk := await resp.read_chunk():
            got += chunk
        assert got == b"data: 1\n\n" and resp.at_eof()
        resp.close(True)
    async with Server(answers(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}",
                              close_after=True)) as srv:
        resp = await post(pool, srv.url)
        assert await resp.body(1 << 20) == b'{"a":1}'  # complete at the connection's end
        resp.close(True)  # (not kept: the server closed it)


async def test_a_cut_answer_is_an_error_not_a_short_success(pool: Http1Pool) -> None:
    async with Server(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\"", close_after=True)) as srv:
        resp = await post(pool, srv.url)
        with pytest.raises(Http1Error, match="before the answer was complete"):
            await resp.body(1 << 20)
    cut_stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ndata:\r\n"
    async with Server(answers(cut_stream, close_after=True)) as srv:
        resp = await post(pool, srv.url)
        assert await resp.read_chunk() == b"data:"
        with pytest.raises(Http1Error):
            await resp.read_chunk()


async def test_a_connection_the_server_closed_while_idle_is_retried_once(pool: Http1Pool) -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok())
        await writer.drain()
        await asyncio.sleep(0.05)  # then the server drops the idle keep-alive connection

    async with Server(one_then_close) as srv:
        resp = await post(pool, srv.url)
        assert await resp.body(1 << 20) == b'{"ok":true}'
        resp.close(True)
        await asyncio.sleep(0.2)
        resp = await post(pool, srv.url)  # the pooled one is dead: a new connection, no error
        assert resp.status == 200 and await resp.body(1 << 20) == b'{"ok":true}'
        resp.close(True)
        assert srv.connections == 2


async def test_idle_connections_expire(pool: Http1Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "KEEPALIVE", 0.05)
    async with Server(answers(ok(), ok())) as srv:
        resp = await post(pool, srv.url)
        await resp.body(1 << 20)
        resp.close(True)
        await asyncio.sleep(0.1)
        resp = await post(pool, srv.url)
        await resp.body(1 << 20)
        resp.close(True)
        assert srv.connections == 2


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw", "br", "zstd"])
async def test_compressed_answers_are_decoded_asked_or_not(pool: Http1Pool, encoding: str) -> None:
    plain = b'{"choices":[{"message":{"content":"' + b"hello " * 2000 + b'"}}]}'
    if encoding == "gzip":
        packed = gzip.compress(plain)
    elif encoding == "deflate":
        packed = zlib.compress(plain)
    elif encoding == "deflate-raw":
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = c.compress(plain) + c.flush()
    elif encoding == "br":
        packed = brotli.compress(plain)
    else:
        packed = zstd.compress(plain)
    name = encoding.removesuffix("-raw")
    async with Server(answers(ok(packed, f"Content-Encoding: {name}\r\n"), ok(packed, f"Content-Encoding: {name}\r\n")
                              )) as srv:
        resp = await post(pool, srv.url)
        assert await resp.body(1 << 20) == plain
        resp.close(True)
        resp = await post(pool, srv.url)  # in chunks too
        got = b""
        while chunk := await resp.read_chunk():
            got += chunk
        assert got == plain
        resp.close(True)
        assert srv.connections == 1


async def test_a_decompression_bomb_is_refused(pool: Http1Pool) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    async with Server(answers(ok(bomb, "Content-Encoding: gzip\r\n"))) as srv:
        resp = await post(pool, srv.url)
        with pytest.raises((Http1Error, BadAnswer)):
            await resp.body(10 * 1024 * 1024)


async def test_the_body_limit_holds_for_declared_and_undeclared_lengths(pool: Http1Pool) -> None:
    big = b"x" * 5000
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"3e8\r\n" + b"y" * 1000 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"
    async with Server(answers(ok(big), chunked)) as srv:
        resp = await post(pool, srv.url)
        with pytest.raises(BadAnswer, match="larger than the limit"):
            await resp.body(4000)
        resp.close(False)
        resp = await post(pool, srv.url)
        with pytest.raises(BadAnswer, match="larger than the limit"):
            await resp.body(4000)


async def test_not_http_and_oversized_headers_are_errors(pool: Http1Pool) -> None:
    async with Server(answers(b"SSH-2.0-OpenSSH_9.2\r\n", close_after=True)) as srv:
        with pytest.raises(Http1Error, match="not valid HTTP"):
            await post(pool, srv.url)
    huge = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(300)) + b"\r\n"
    async with Server(answers(huge, close_after=True)) as srv:
        with pytest.raises(Http1Error, match="header block"):
            await post(pool, srv.url)


async def test_headers_are_case_insensitive_and_cookies_dropped(pool: Http1Pool) -> None:
    reply = ok(extra="Retry-After: 7\r\nX-Multi: a\r\nX-Multi: b\r\nSet-Cookie: __cf_bm=x; Path=/\r\n")
    async with Server(answers(reply)) as srv:
        resp = await post(pool, srv.url)
        assert resp.headers.get("Retry-After") == resp.headers.get("retry-after") == "7"
        assert resp.headers["X-MULTI"] == "a, b" and "x-multi" in resp.headers
        assert "set-cookie" not in resp.headers
        resp.close(False)


async def test_interim_answers_are_skipped(pool: Http1Pool) -> None:
    async with Server(answers(b"HTTP/1.1 100 Continue\r\n\r\n" + ok())) as srv:
        resp = await post(pool, srv.url)
        assert resp.status == 200 and await resp.body(1 << 20) == b'{"ok":true}'
        resp.close(True)


async def test_timeouts_and_unreachable(pool: Http1Pool) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with Server(silent) as srv:
        with pytest.raises(TimeoutError):
            await post(pool, srv.url, read=0.2)

    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with Server(stalls) as srv:
        resp = await post(pool, srv.url, read=0.2)
        assert await resp.read_chunk() == b"hello"
        with pytest.raises(TimeoutError):
            await resp.read_chunk()
        resp.close(False)
    srv2 = Server(answers())
    async with srv2:
        url = srv2.url
    await asyncio.sleep(0.05)
    with pytest.raises(Http1Error, match="cannot connect"):
        await post(pool, url)


async def test_a_line_break_in_a_header_is_refused(pool: Http1Pool) -> None:
    async with Server(answers(ok())) as srv:
        with pytest.raises(Http1Error, match="line break"):
            await post(pool, srv.url, {"X-Evil": "a\r\nX-Injected: 1"})
        assert srv.connections == 0


async def test_a_slow_reader_pauses_the_socket(pool: Http1Pool) -> None:
    sent = 0

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"4000\r\n" + b"z" * 0x4000 + b"\r\n"
        for _ in range(2000):  # 32 MiB if nobody stopped it
            writer.write(piece)
            sent += 0x4000
            await writer.drain()

    async with Server(firehose) as srv:
        resp = await post(pool, srv.url)
        first = await resp.read_chunk()
        assert first
        await asyncio.sleep(0.5)  # the reader does nothing for a while
        # what crossroute holds is bounded by its high-water mark and one socket read (the kernel's
        # buffers hold the rest, and then the sender waits)
        assert resp._buffered <= http1.HIGH_WATER + 256 * 1024 + 0x4000
        assert sent < 16 * 1024 * 1024, sent
        total = len(first)
        for _ in range(50):  # and it reads on once the reader does
            total += len(await resp.read_chunk())
        assert total > http1.HIGH_WATER
        resp.close(False)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_is_verified(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    async with Server(answers(ok(), ok()), ssl_ctx=server_ctx) as srv:
        untrusting = Http1Pool()  # the system's CAs: the self-signed certificate is refused
        with pytest.raises(Http1Error, match="cannot connect"):
            await post(untrusting, srv.url)
        await untrusting.close()
        trusting = Http1Pool(ssl.create_default_context(cafile=str(cert)))
        for _ in range(2):
            resp = await post(trusting, srv.url)
            assert await resp.body(1 << 20) == b'{"ok":true}'
            resp.close(True)
        await trusting.close()
        assert srv.connections == 1  # (the refused handshake never reached the handler), then one kept alive


@pytest.mark.parametrize("encoding", [None, "gzip", "br", "zstd"])
async def test_an_answer_split_at_any_byte_reads_the_same(pool: Http1Pool, encoding: str | None) -> None:
    """The same chunked (and compressed) stream, written in pieces cut at random places with pauses
    between them, reads back byte for byte."""
    import random

    plain = b"".join(b'data: {"choices":[{"delta":{"content":"piece %d"}}]}\n\n' % i for i in range(300))
    if encoding == "gzip":
        packed = gzip.compress(plain)
    elif encoding == "br":
        packed = brotli.compress(plain)
    elif encoding == "zstd":
        packed = zstd.compress(plain)
    else:
        packed = plain
    body = b"".join(b"%x\r\n%s\r\n" % (len(packed[i:i + 700]), packed[i:i + 700]) for i in range(0, len(packed), 700))
    wire = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            + (f"Content-Encoding: {encoding}\r\n".encode() if encoding else b"") + b"\r\n" + body + b"0\r\n\r\n")
    for seed in range(5):
        rng = random.Random(seed)

        async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          rng: random.Random = rng) -> None:
            await read_request(reader)
            pos = 0
            while pos < len(wire):
                step = rng.randint(1, 97)
                writer.write(wire[pos:pos + step])
                pos += step
                await writer.drain()
                if rng.random() < 0.2:
                    await asyncio.sleep(0.001)
            await reader.read()

        async with Server(dribble) as srv:
            resp = await post(pool, srv.url)
            got = b""
            while chunk := await resp.read_chunk():
                got += chunk
            assert got == plain
            resp.close(True)


async def test_a_request_leaves_no_cyclic_garbage(pool: Http1Pool) -> None:
    """Every request's objects are freed by reference counting alone (a response bound to itself
    would wait for the cycle collector, which then runs more often under load)."""
    import gc

    async with Server(answers(*[ok()] * 60)) as srv:
        for _ in range(10):  # warm: the pooled connection exists
            resp = await post(pool, srv.url)
            await resp.body(1 << 20)
            resp.close(True)
        gc.collect()
        gc.disable()
        try:
            for _ in range(50):
                resp = await post(pool, srv.url)
                await resp.body(1 << 20)
                assert resp.read_chunk is not None
                resp.close(True)
            del resp
            assert gc.collect() == 0
        finally:
            gc.enable()


async def test_host_names_are_looked_up_once_and_every_address_tried(pool: Http1Pool,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    loop = asyncio.get_running_loop()
    lookups: list[str] = []

    async def getaddrinfo(host: str, port: int, **kw: Any) -> list[Any]:
        lookups.append(host)
        # the first address refuses (nothing listens on 127.0.0.2 at that port), the second answers
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    async with Server(answers(ok(), ok(), ok())) as srv:
        url = srv.url.replace("127.0.0.1", "upstream.example")
        for _ in range(3):
            resp = await post(pool, url)
            assert await resp.body(1 << 20) == b'{"ok":true}'
            resp.close(False)  # a new connection each time
        assert lookups == ["upstream.example"]  # one lookup for three connections
        assert srv.connections == 3


async def test_a_failed_lookup_is_an_unreachable_upstream(pool: Http1Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    async def getaddrinfo(host: str, port: int, **kw: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    with pytest.raises(Http1Error, match=r"cannot connect to nowhere\.example"):
        await post(pool, "http://nowhere.example/v1/chat/completions")
