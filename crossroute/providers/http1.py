"""A lean HTTP/1.1 client for the upstream calls of every request (direct connections, no proxy).

aiohttp's ``ClientSession.post`` cost about 90 µs of CPU per request here (URL objects, header
multidicts, the payload registry, cookie filtering, trace hooks, per-read timers): more than the
rest of crossroute's pipeline. This client does what ``HttpExecutor`` needs and no more:

- ``POST`` of a body held in memory, on keep-alive connections pooled per origin (LIFO; an idle
  connection is closed after ``KEEPALIVE`` seconds, one closed by the server is dropped). A reused
  connection that fails before any byte of its answer (the server closed it while idle) is
  retried once on a new one; any other failure is the caller's.
- Host names resolved once per ``DNS_TTL`` for new connections (each address tried in turn).
- A connect deadline and a read deadline (time without a byte while waiting), as aiohttp's
  ``sock_connect`` and ``sock_read``: ``TimeoutError``.
- Answers parsed by llhttp (``httptools``): content length, chunked, or until the connection
  closes; header block bounded (``MAX_HEADER_BYTES``). A reply that is not HTTP is ``Http1Error``.
- Bodies read whole or chunk by chunk with back-pressure: past ``HIGH_WATER`` buffered bytes the
  socket is paused until the reader catches up, so a slow client holds at most that much here
  (plus one socket read).
- ``Content-Encoding`` gzip, deflate, br and zstd decoded incrementally, asked for or not, each
  network read expanding to at most ``MAX_EXPANSION`` bytes (a decompression bomb is an error).

Proxied entries (HTTP or SOCKS proxies) and everything else (OAuth, WebSockets) use aiohttp.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httptools

from .. import __version__
from ..bodies import deflate_wbits
from .failures import BadAnswer

__all__ = ["HIGH_WATER", "KEEPALIVE", "Headers", "Http1Error", "Http1Pool", "Response"]

KEEPALIVE = 15.0  # seconds an idle connection is kept (aiohttp's default too)
DNS_TTL = 300.0  # seconds a host name's addresses are reused for new connections (as aiohttp's connector did)
_DNS_MAX = 1024
HIGH_WATER = 128 * 1024  # buffered answer bytes past which the socket is paused
LOW_WATER = 32 * 1024
MAX_HEADER_BYTES = 256 * 1024
USER_AGENT = f"User-Agent: crossroute/{__version__}\r\n"
MAX_EXPANSION = 8 * 1024 * 1024  # decoded bytes one network read may become
ACCEPT_ENCODING = "identity"  # asked for when the request names none (why: gateway.py, bench_decompress.py)


class Http1Error(Exception):
    """No usable HTTP answer: the connection was refused, reset or cut, or what came back is not
    HTTP/1.1 (or not decodable)."""


class _NothingBack(Http1Error):
    """An Http1Error before any byte of the answer arrived (a reused connection may be retried)."""


class Headers(dict):  # type: ignore[type-arg]
    """An answer's headers: names lower-cased, looked up in any case. Repeated fields are joined
    with ", " (RFC 9110); ``Set-Cookie`` is not kept (no cookie ever goes anywhere)."""

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


@lru_cache(maxsize=1024)
def _target(url: str) -> tuple[tuple[str, int, bool], str, str]:
    """((host, port, tls), request target, Host header) of ``url``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Http1Error(f"unsupported URL scheme {scheme!r}")
    host = parts.hostname
    if not host:
        raise Http1Error(f"no host in the URL {url!r}")
    try:
        host = host.encode("idna").decode("ascii")
        port = parts.port or (443 if scheme == "https" else 80)
    except (UnicodeError, ValueError) as exc:
        raise Http1Error(f"bad host or port in the URL: {exc}") from None
    netloc = parts.netloc.rpartition("@")[2]
    host_header = netloc if netloc.isascii() else (f"[{host}]" if ":" in host else host) + (
        f":{parts.port}" if parts.port else "")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (host, port, scheme == "https"), target, host_header


def _head(target: str, host: str, headers: Mapping[str, str], length: int) -> bytes:
    lines = [f"POST {target} HTTP/1.1\r\nHost: {host}\r\n"]
    have_ae = have_accept = have_ua = False
    for name, value in headers.items():
        low = name.lower()
        if low in ("host", "content-length", "transfer-encoding", "connection"):
            continue  # (this client frames the message itself)
        if low == "accept-encoding":
            have_ae = True
        elif low == "accept":
            have_accept = True
        elif low == "user-agent":
            have_ua = True
        lines.append(f"{name}: {value}\r\n")
    if not have_ae:
        lines.append(f"Accept-Encoding: {ACCEPT_ENCODING}\r\n")
    if not have_accept:
        lines.append("Accept: */*\r\n")
    if not have_ua:  # the client's own when it sent one (executors pass it on), else crossroute's: never forged
        lines.append(USER_AGENT)
    lines.append(f"Content-Length: {length}\r\n\r\n")
    text = "".join(lines)
    if text.count("\n") != len(lines) + 2 or text.count("\r") != len(lines) + 2:  # CR or LF in a name or value
        raise Http1Error("a request header holds a line break")
    return text.encode("utf-8")


# ------------------------------------------------------------------ decoding
def _decoder(encoding: str) -> Callable[[bytes, bool], bytes] | None:
    """A function (data, last) -> decoded bytes for a Content-Encoding, None for identity."""
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return _ZlibDecoder(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return _ZlibDecoder(0)  # zlib-wrapped or raw, told apart by the first bytes
    if enc == "br":
        return _BrotliDecoder()
    if enc == "zstd":
        return _ZstdDecoder()
    raise Http1Error(f"the upstream sent an unsupported Content-Encoding {encoding!r}")


def _too_big() -> Http1Error:
    return Http1Error(f"a compressed answer expands past {MAX_EXPANSION} bytes per read")


class _ZlibDecoder:
    __slots__ = ("_d", "_wbits")

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._d: Any = None if wbits == 0 else zlib.decompressobj(wbits)

    def __call__(self, data: bytes, last: bool) -> bytes:
        d = self._d
        if d is None:
            if not data:
                return b""
            d = self._d = zlib.decompressobj(deflate_wbits(data))
        try:
            out: bytes = d.decompress(data, MAX_EXPANSION)
            if d.unconsumed_tail:
                raise _too_big()
            if last:
                out += d.flush()
        except zlib.error as exc:
            raise Http1Error(f"the upstream's compressed answer is corrupt ({exc})") from None
        return out


class _BrotliDecoder:
    __slots__ = ("_d",)

    def __init__(self) -> None:
        import brotli

        self._d = brotli.Decompressor()

    def __call__(self, data: bytes, last: bool) -> bytes:
        if not data:
            return b""
        try:
            out: bytes = self._d.process(data, output_buffer_limit=MAX_EXPANSION)
            if not self._d.can_accept_more_data():
                raise _too_big()
        except Http1Error:
            raise
        except Exception as exc:  # brotli.error
            raise Http1Error(f"the upstream's compressed answer is corrupt ({exc})") from None
        return out


class _ZstdDecoder:
    __slots__ = ("_d", "_error")

    def __init__(self) -> None:
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd  # type: ignore[import-not-found,no-redef]
        self._d = zstd.ZstdDecompressor()
        self._error = zstd.ZstdError

    def __call__(self, data: bytes, last: bool) -> bytes:
        if not data or self._d.eof:
            return b""
        try:
            out: bytes = self._d.decompress(data, max_length=MAX_EXPANSION)
        except Exception as exc:  # ZstdError
            raise Http1Error(f"the upstream's compressed answer is corrupt ({exc})") from None
        if not self._d.needs_input and not self._d.eof:
            raise _too_big()
        return out


# ------------------------------------------------------------------ one answer
class Response:
    """One answer: ``status`` and ``headers`` once they came; its body read whole (``body``) or in
    chunks (``read_chunk``, ``b""`` at the end). Satisfies ``providers.base.Upstream``."""

    __slots__ = ("_buffered", "_chunks", "_conn", "_decode", "_error", "_header_bytes", "_raw_headers",
                 "_read_timeout", "_waiter", "complete", "got_bytes", "headers", "keep_alive", "status")
    io_errors: tuple[type[BaseException], ...] = (Http1Error,)

    def __init__(self, conn: _Conn, read_timeout: float | None) -> None:
        self._conn = conn
        self._read_timeout = read_timeout
        self.status = 0
        self.headers: Headers = Headers()
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._decode: Callable[[bytes, bool], bytes] | None = None
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False  # any byte of this answer arrived (a reused connection is not retried then)

    # -------------------------------------------------- fed by the connection
    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    def _header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise Http1Error(f"the upstream's header block is larger than {MAX_HEADER_BYTES} bytes")
        self._raw_headers.append((name, value))

    def _headers_done(self, status: int) -> None:
        headers = self.headers
        for raw_name, raw_value in self._raw_headers:
            name = raw_name.decode("latin-1").lower()
            if name == "set-cookie":
                continue
            value = raw_value.decode("latin-1")
            old = dict.get(headers, name)
            dict.__setitem__(headers, name, value if old is None else f"{old}, {value}")
        self._raw_headers = []
        self.status = status
        encoding = dict.get(headers, "content-encoding")
        if encoding is not None:
            self._decode = _decoder(encoding)
        self._wake()

    def _data(self, data: bytes) -> None:
        if self._decode is not None:
            data = self._decode(data, False)
            if not data:
                return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER:
            self._conn.pause()
        self._wake()

    def _complete(self, keep_alive: bool) -> None:
        if self._decode is not None:
            tail = self._decode(b"", True)
            if tail:
                self._chunks.append(tail)
                self._buffered += len(tail)
        self.complete = True
        self.keep_alive = keep_alive
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None and not self.complete:
            self._error = exc
        self._wake()

    # -------------------------------------------------- read by the caller
    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiter = fut
        timeout = self._read_timeout
        timer = loop.call_later(timeout, _expire, fut) if timeout else None
        try:
            await fut
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def wait_headers(self) -> None:
        while not self.status:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def readany(self) -> bytes:
        """The bytes buffered so far (waiting for some), ``b""`` once the answer is complete."""
        chunks = self._chunks
        while not chunks:
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            await self._wait()
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._conn.resume()
        return data

    read_chunk = readany  # (a class attribute: an instance attribute bound to itself would be a cycle)

    async def body(self, limit: int) -> bytes:
        """The whole body; ``BadAnswer`` past ``limit`` bytes (decoded)."""
        length = dict.get(self.headers, "content-length")
        if length is not None and self._decode is None and length.isdigit() and int(length) > limit:
            raise BadAnswer(f"an answer larger than the limit ({length} > {limit} bytes)")
        while not self.complete:
            if self._error is not None:
                raise self._error
            if self._buffered > limit:
                raise BadAnswer(f"an answer larger than the limit ({limit} bytes)")
            self._conn.resume()  # a whole body is wanted: read past the high-water mark
            await self._wait()
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if len(data) > limit:
            raise BadAnswer(f"an answer larger than the limit ({limit} bytes)")
        return data

    async def read_upto(self, n: int) -> bytes:
        """At most ``n`` bytes of the body (an error answer's), whatever is there by its end."""
        parts: list[bytes] = []
        size = 0
        while size < n:
            chunk = await self.readany()
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)[:n]

    def at_eof(self) -> bool:
        return self.complete and not self._chunks

    def close(self, reuse: bool) -> None:
        """Done with the answer: the connection goes back to the pool when it was read to its end
        and may be kept, else it is closed."""
        conn = self._conn
        if conn.response is not self:
            return
        conn.response = None
        if reuse and self.complete and self.keep_alive and self._error is None and not self._chunks:
            conn.pool.release(conn)
        else:
            conn.close()

    def release(self) -> None:
        """``close``, keeping the connection when the answer was read to its end (aiohttp's name)."""
        self.close(self.complete)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("the upstream sent nothing within the read timeout"))


# ------------------------------------------------------------------ one connection
class _Conn(asyncio.Protocol):
    __slots__ = ("closed", "idle_since", "key", "parser", "paused", "pool", "response", "transport")

    def __init__(self, pool: Http1Pool, key: tuple[str, int, bool]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None
        self.response: Response | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0

    def start(self, response: Response) -> None:
        self.response = response
        self.parser = httptools.HttpResponseParser(self)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        resp = self.response
        if resp is None or self.parser is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        resp.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            resp._fail(Http1Error("the upstream switched protocols"))
            self.close()
        except httptools.HttpParserError as exc:
            inner = exc.__context__  # a callback's own error (a header block too large, a corrupt encoding)
            resp._fail(inner if isinstance(inner, Http1Error) else
                       Http1Error(f"the upstream's answer is not valid HTTP/1.1 ({exc})"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        resp = self.response
        if resp is not None and not resp.complete:
            headers = resp.headers
            if resp.status and "content-length" not in headers and "chunked" not in headers.get(
                    "transfer-encoding", "").lower():
                try:  # an answer delimited by the connection's end (no length, not chunked) is complete now
                    resp._complete(False)
                except Http1Error as err:
                    resp._fail(err)
            if not resp.complete:
                detail = f": {exc}" if exc else ""
                resp._fail(Http1Error(f"the upstream closed the connection before the answer was complete{detail}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.response._header(name, value)  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self.response._raw_headers = []  # type: ignore[union-attr]
            return
        self.response._headers_done(status)  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self.response._data(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        resp = self.response
        if resp is None or not resp.status:  # the end of an interim answer: the parser reads on
            return
        resp._complete(self.parser.should_keep_alive())

    # flow control
    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


# ------------------------------------------------------------------ the pool
class Http1Pool:
    """Keep-alive connections per (host, port, TLS), unlimited in number, as the gateway's
    aiohttp connector was (``limit=0``)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple[str, int, bool], list[_Conn]] = {}
        self._ssl = ssl_context
        self._all: set[_Conn] = set()
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self.closed = False

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, connect_timeout: float | None,
                   read_timeout: float | None) -> Response:
        """Send ``POST url`` and return once the answer's status and headers are in. Raises
        ``TimeoutError`` (connect or read deadline) or ``Http1Error``."""
        if self.closed:
            raise Http1Error("the HTTP client is closed")
        key, target, host = _target(url)
        data = [_head(target, host, headers, len(body)), body]
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._exchange(conn, data, read_timeout)
            except _NothingBack:
                pass  # closed by the server while idle: once more on a new connection
        return await self._exchange(await self._connect(key, connect_timeout), data, read_timeout)

    @staticmethod
    async def _exchange(conn: _Conn, data: list[bytes], read_timeout: float | None) -> Response:
        """Write the request on ``conn`` and wait for the answer's head; on any failure the
        connection is closed (an ``Http1Error`` before any byte came back is a ``_NothingBack``)."""
        resp = Response(conn, read_timeout)
        conn.start(resp)
        conn.transport.writelines(data)  # type: ignore[union-attr]
        try:
            await resp.wait_headers()
        except BaseException as exc:
            conn.response = None
            conn.close()
            if isinstance(exc, Http1Error) and not isinstance(exc, _NothingBack) and not resp.got_bytes:
                raise _NothingBack(*exc.args) from None
            raise
        return resp

    def _take(self, key: tuple[str, int, bool]) -> _Conn | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_ok = time.monotonic() - KEEPALIVE
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since > oldest_ok:
                return conn
            conn.close()
        return None

    async def _connect(self, key: tuple[str, int, bool], within: float | None) -> _Conn:
        host, port, tls = key
        loop = asyncio.get_running_loop()
        ctx = self._context() if tls else None
        try:
            async with asyncio.timeout(within):
                last: OSError | None = None
                for address in await self._addresses(host, port):
                    try:
                        _, conn = await loop.create_connection(
                            lambda: _Conn(self, key), address, port, ssl=ctx, server_hostname=host if tls else None)
                        break
                    except ssl.SSLError:
                        raise  # (a certificate problem is the same on every address)
                    except OSError as exc:  # refused or unreachable there: the next address
                        last = exc
                else:
                    self._dns.pop((host, port), None)  # none answered: look the name up again next time
                    raise last or OSError(f"no address for {host}")
        except TimeoutError:
            raise TimeoutError(f"connecting to {host}:{port} took longer than {within:g} s") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS
            raise Http1Error(f"cannot connect to {host}:{port}: {exc}") from None
        self._all.add(conn)
        return conn

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The addresses to try for ``host``, looked up once per ``DNS_TTL`` (an address literal as it is)."""
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        now = time.monotonic()
        known = self._dns.get((host, port))
        if known is not None and known[0] > now:
            return known[1]
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if len(self._dns) >= _DNS_MAX:
            self._dns.clear()
        self._dns[(host, port)] = (now + DNS_TTL, addresses)
        return addresses

    def release(self, conn: _Conn) -> None:
        if self.closed or conn.closed:
            conn.close()
            return
        conn.parser = None
        conn.resume()
        now = time.monotonic()
        conn.idle_since = now
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        while idle and idle[0].idle_since <= now - KEEPALIVE:  # the oldest ones, expired
            idle.pop(0).close()
        idle.append(conn)

    def forget(self, conn: _Conn) -> None:
        self._all.discard(conn)

    async def close(self) -> None:
        """Close every connection (idle or in use)."""
        self.closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        await asyncio.sleep(0)
