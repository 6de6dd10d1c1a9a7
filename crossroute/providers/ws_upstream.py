"""A Responses upstream reached over WebSocket (``websockets: true`` on the entry or account).

``websocket_executor(inner)`` wraps a Responses executor: ``inner.build()`` gives the URL and the
headers (https -> wss, http -> ws), the handshake adds the beta header the service requires
(``OpenAI-Beta: responses_websockets=…``; a client's own ``responses_websockets=`` value is kept),
and every turn is one ``response.create`` message on a pooled connection (``ws_pool.py``).

The upstream keeps the last response of a connection in memory, so a turn whose input starts with
everything that connection has already seen (its last input and output) sends only the new items
with ``previous_response_id``; anything else (a new connection, a replaced transcript, another
credential) goes out in full without it. What comes back is framed as SSE
(``event: <type>\\ndata: <json>\\n\\n``) so ``dispatch`` reads it exactly like an HTTP stream.

Failures: a handshake refused with a status is an ``UpstreamError`` with that status (404, 405 and
426 fall back to the inner HTTP executor for a while); an ``error`` event before any output is an
``UpstreamError`` with the event's status (the service's connection-limit error and an unknown
``previous_response_id`` on a reused connection are retried once in full on a new connection); a
connection that closes mid-turn raises ``UpstreamClosed`` (one of ``io_errors``), and the connection
is evicted. Compaction, non-Responses wire formats and fallbacks go to the inner executor.

A downstream WebSocket session whose turn continues a response its connection may hold sends only
the new items (``SUFFIX_HEADER``: ``"<response id> <n>"``, the input follows that response's n
history items, which the session registers in ``CONTEXTS``): on a connection that holds exactly
that history they go as they are, with ``previous_response_id``, and nothing reads or writes the
history; anything else (a new connection, an HTTP fallback) gets the input in full, rebuilt from the
session's history. So a warm turn costs the same at turn 5 and at turn 500.

Quota: the ``codex.rate_limits`` events the service sends on a turn (before ``response.created``,
and before an error event too) go to the quota book (``io.quota.note_event``) and on to the client;
a usage-limit failure (``usage_limit_reached`` in an ``error`` or ``response.failed`` event) goes to
``io.quota.note_error``. Leading ``codex.rate_limits`` events are read past when deciding whether the
turn's first event is an error (at most ``MAX_LEADING`` of them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from .. import redaction
from ..config import ProviderEntry
from ..formats.responses_turns import extends
from .base import BadAnswer, Executor, Outbound, TokenSource, Upstream, UpstreamError, UpstreamIO, retry_after_of
from .ws_pool import PooledWs, WsPool, pool_key, pool_of

__all__ = ["BASE_HEADER", "BETA_HEADER", "BETA_VALUE", "CONTEXTS", "SESSION_HEADER", "SUFFIX_HEADER", "UpstreamClosed",
           "WsExecutor", "websocket_executor", "ws_url"]

log = logging.getLogger("crossroute")

# internal headers from the downstream WebSocket session to the executor; never sent upstream: the
# session id (it keys the pool), and "<response id> <n>" when the input's first n items are exactly
# the history of that response (then they are not compared again)
SESSION_HEADER = "x-crossroute-ws-session"
BASE_HEADER = "x-crossroute-ws-base"
# "<response id> <n>": the body's input is only what follows the n items of that response's history,
# which CONTEXTS[<session header>][<response id>] holds
SUFFIX_HEADER = "x-crossroute-ws-suffix"
# the conversations of the open downstream sessions (per session header value: response id -> its
# history, None when not known), registered by api/responses_ws.py while a session lives
CONTEXTS: dict[str, Mapping[str, list[Any] | None]] = {}
BETA_HEADER = "OpenAI-Beta"
BETA_VALUE = "responses_websockets=2026-02-06"
LIMIT_CODES = frozenset({"websocket_connection_limit_reached"})
STALE_CODES = frozenset({"previous_response_not_found"})
FALLBACK_STATUSES = frozenset({404, 405, 426})
FALLBACK_FOR = 300.0  # seconds an upstream that refused the upgrade is reached over HTTP
_DROP_HEADERS = frozenset({"content-type", "accept", "content-length", "accept-encoding"})
_NOT_SENT = frozenset({"type", "stream", "background"})
_OK_END = frozenset({"response.completed", "response.incomplete"})
_BAD_END = frozenset({"response.failed", "error"})
RATE_LIMITS = "codex.rate_limits"
MAX_LEADING = 8  # codex.rate_limits events read past before a turn's first event

_NO_HEADERS: Mapping[str, str] = {}


class UpstreamClosed(aiohttp.ClientConnectionError):
    """The upstream closed its WebSocket in the middle of a turn."""


def ws_url(url: str) -> str:
    if url.startswith("https://"):
        return "wss://" + url[8:]
    if url.startswith("http://"):
        return "ws://" + url[7:]
    return url


def _based_on(hint: str | None, conn: PooledWs, items: list[Any]) -> bool:
    """The session says the input starts with exactly the history this connection holds."""
    if not hint:
        return False
    rid, _, count = hint.partition(" ")
    memory = conn.memory
    return (memory is not None and rid == conn.last_response_id and count.isdigit()
            and int(count) == len(memory) <= len(items))


def _error_parts(ev: dict[str, Any]) -> tuple[int, str | None, str]:
    """(status, code, message) of an ``error`` or ``response.failed`` event."""
    err = ev.get("error")
    if ev.get("type") == "response.failed":
        resp = ev.get("response")
        err = resp.get("error") if isinstance(resp, dict) else None
    if not isinstance(err, dict):
        err = {"code": ev.get("code"), "message": ev.get("message")}
    status = ev.get("status")
    code = err.get("code")
    message = str(err.get("message") or code or "upstream error")
    if not isinstance(status, int) or not 400 <= status <= 599:
        status = 429 if code in ("rate_limit_exceeded", "insufficient_quota") else (
            400 if code in STALE_CODES or code in LIMIT_CODES else 502)
    return status, code if isinstance(code, str) else None, message


class QuotaFeed:
    """What a WebSocket turn of ``entry`` tells the quota book (``routing/quota.py``).

    Called with ``(event, its text)``: a ``codex.rate_limits`` event goes to ``note_event``, a
    usage-limit failure to ``note_error``. ``turn()`` counts one more answer (``note`` with no
    headers) for a turn on a connection already counted when it was dialled, so the book measures
    what a turn costs of each window as it does over HTTP. Headers the book holds unread (the
    handshake's) are read first, so they never override a newer event. A failure of the book never
    breaks the turn."""

    __slots__ = ("_book", "_entry", "_id")

    def __init__(self, book: Any, entry: ProviderEntry, cred_id: str) -> None:
        self._book = book
        self._entry = entry
        self._id = cred_id

    def _flush(self) -> None:
        account = getattr(self._book, "account", None)
        if account is not None:
            account(self._id)

    def turn(self) -> None:
        note = getattr(self._book, "note", None)
        if note is None:
            return
        try:
            self._flush()
            note(self._entry, 200, _NO_HEADERS)
        except Exception:
            log.exception("the quota book failed on a WebSocket turn of %s", self._entry.name)

    def __call__(self, event: dict[str, Any], data: str) -> None:
        book = self._book
        try:
            if event.get("type") == RATE_LIMITS:
                note_event = getattr(book, "note_event", None)
                if note_event is not None:
                    self._flush()
                    note_event(self._entry, event)
            elif "usage_limit_reached" in data and (note_error := getattr(book, "note_error", None)) is not None:
                self._flush()
                note_error(self._entry, 429, data.encode())
        except Exception:
            log.exception("the quota book failed on a WebSocket event of %s", self._entry.name)


def _rate_limits_of(data: str) -> dict[str, Any] | None:
    """``data`` parsed when it is a ``codex.rate_limits`` event, else None."""
    if '"codex.rate_limits"' not in data:
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if obj.__class__ is dict and obj.get("type") == RATE_LIMITS else None


class WsUpstream:
    """One turn's answer on a pooled connection, read as SSE bytes.

    Each read waits at most ``timeout`` seconds for the next message. One timer per turn watches
    that (``_check``), not a timeout context per message (about 4 µs each, for every event)."""

    __slots__ = ("_clean", "_conn", "_done", "_evict", "_last", "_limit", "_loop", "_name", "_output", "_pending",
                 "_pool", "_quota", "_reader", "_sent", "_since", "_stalled", "_timeout", "_watch", "headers",
                 "read_chunk", "status")
    io_errors: tuple[type[BaseException], ...] = (aiohttp.ClientError,)

    def __init__(self, pool: WsPool, conn: PooledWs, sent: list[Any] | None, first: list[str], name: str,
                 timeout: float, limit: int, headers: Mapping[str, str], quota: QuotaFeed | None = None) -> None:
        self._pool = pool
        self._conn = conn
        self._sent = sent  # the full input the upstream holds for this turn (None: not known)
        self._pending = first  # the messages already received (the first event, and any before it)
        self._quota = quota
        self._done = False
        self._clean = False
        self._evict = False
        self._output: list[Any] = []
        self._last: Any = None  # the event _frame read last (body() looks at it without parsing again)
        self._name = name
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._reader: asyncio.Task[Any] | None = None  # the task waiting for a message, while it waits
        self._since = 0.0  # when it began to wait
        self._watch: asyncio.TimerHandle | None = None
        self._stalled = False
        self._limit = limit
        self.status = 200
        self.headers = headers
        self.read_chunk = self._read

    async def _read(self) -> bytes:
        pending = self._pending
        if pending:
            data = pending.pop(0)
            return self._frame(data, not pending)  # those before the last went to the quota book already
        if self._done:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            return b""
        ws = self._conn.ws
        self._since = since = self._loop.time()
        # (no local keeps the task: a cancelled turn's traceback would hold it, a cycle that keeps
        # the downstream session, and so granian's close frame, until a garbage collection)
        self._reader = asyncio.current_task()
        if self._watch is None:
            self._watch = self._loop.call_at(since + self._timeout, self._check)
        try:
            msg = await ws.receive()  # (the connection's own receive timeout is off: _check is it)
        except asyncio.CancelledError:
            if not self._stalled or self._reader is None:
                raise
            self._reader.uncancel()
            self._evict = True
            raise TimeoutError(f"upstream {self._name} sent nothing for {self._timeout:g} s") from None
        finally:
            self._reader = None
        if msg.type is aiohttp.WSMsgType.TEXT:
            return self._frame(msg.data)
        if msg.type is aiohttp.WSMsgType.BINARY:
            return self._frame(msg.data.decode("utf-8", "replace"))
        self._evict = True
        code = ws.close_code
        raise UpstreamClosed(f"upstream {self._name} closed the WebSocket mid-turn"
                             + (f" (close code {code})" if code else ""))

    def _check(self) -> None:
        """The read timer: a read waiting ``timeout`` seconds is cancelled (a TimeoutError for it)."""
        self._watch = None
        task = self._reader
        if task is None or self._done:
            return  # not waiting now: the next read sets the timer again
        due = self._since + self._timeout
        if self._loop.time() >= due:
            self._stalled = True
            task.cancel()
        else:
            self._watch = self._loop.call_at(due, self._check)

    def _frame(self, data: str, note: bool = True) -> bytes:
        try:
            obj = self._last = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._last = None
            self._evict = True
            return b"data: " + data.replace("\n", " ").encode() + b"\n\n"
        kind = obj.get("type") if obj.__class__ is dict else None
        if kind.__class__ is not str:
            return b"data: " + orjson.dumps(obj) + b"\n\n"
        if kind == "response.output_item.done":
            item = obj.get("item")
            if item.__class__ is dict:
                self._output.append(item)
        elif kind in _OK_END:
            self._done = True
            self._clean = True
            self._remember(obj.get("response"))
        elif kind == RATE_LIMITS:
            if note and self._quota is not None:
                self._quota(obj, data)
        elif kind in _BAD_END:
            self._done = True
            self._evict = True
            if self._quota is not None and "usage_limit_reached" in data:
                self._quota(obj, data)
            if kind == "error":
                _, code, _ = _error_parts(obj)
                if code in LIMIT_CODES:
                    log.info("upstream %s: WebSocket connection limit reached; reconnecting next turn", self._name)
        raw = data.encode() if "\n" not in data else orjson.dumps(obj)
        return b"event: " + kind.encode() + b"\ndata: " + raw + b"\n\n"

    def _remember(self, resp: Any) -> None:
        conn = self._conn
        rid = resp.get("id") if resp.__class__ is dict else None
        if self._sent is None or rid.__class__ is not str:
            conn.memory = conn.last_response_id = None
            return
        output = resp.get("output")
        if output.__class__ is not list or not output:
            output = self._output
        conn.memory = [*self._sent, *output]
        conn.last_response_id = rid

    async def body(self, limit: int) -> bytes:
        """The whole answer (a Response object) for a client that did not ask for a stream."""
        size = 0
        while True:
            chunk = await self._read()
            if not chunk:
                raise BadAnswer("an answer that ended without response.completed")
            size += len(chunk)
            if size > limit:
                raise BadAnswer(f"an answer larger than the limit ({limit} bytes)")
            obj = self._last
            if obj.__class__ is not dict:
                raise BadAnswer("an answer with a WebSocket message that is not a JSON object")
            kind = obj.get("type")
            if kind in _OK_END:
                return orjson.dumps(obj.get("response"))
            if kind in _BAD_END:
                status, _, message = _error_parts(obj)
                self.close(False)
                raise UpstreamError(status, redaction.scrub(f"upstream {self._name} failed: {message}"),
                                    body=orjson.dumps({"error": {"message": redaction.scrub(message)}}))

    def at_eof(self) -> bool:
        return self._done and not self._pending

    def close(self, reuse: bool) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        # a turn that ended with response.completed/incomplete leaves the connection clean, whether or
        # not the caller read past it (a wrapper's at_eof may not know); anything else closes it
        self._pool.release(self._conn, self._clean and not self._evict)


class WsExecutor:
    """A Responses executor reached over WebSocket; everything else goes to ``inner``."""

    websocket = True

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.supports = inner.supports
        self.models = getattr(inner, "models", ())
        self.default_base_url = getattr(inner, "default_base_url", "")
        # an executor that rewrites bodies and answers (codex_account.py) lends its steps: ``prepare``
        # gives what the service must receive, ``wrap`` the answer as the client asked for it
        prepare, wrap = getattr(inner, "prepare", None), getattr(inner, "wrap", None)
        self._prepare = prepare if wrap is not None else None
        self._wrap = wrap if prepare is not None else None
        self._builds = hasattr(inner, "build")

    def wire_format(self, entry: ProviderEntry, client_format: str) -> str:
        return self.inner.wire_format(entry, client_format)

    def token_source(self, entry: ProviderEntry) -> TokenSource:
        return self.inner.token_source(entry)

    async def send(self, entry: ProviderEntry, out: Outbound, io: UpstreamIO) -> Upstream:
        suffix = _suffix_of(out.client_headers)
        if out.operation != "generate" or out.wire != "responses" or not self._builds:
            return await self.inner.send(entry, _in_full(out, suffix), io)
        fallback_until = entry.derived.get("ws_http_until")
        if fallback_until is not None and time.monotonic() < fallback_until:
            return await self.inner.send(entry, _in_full(out, suffix), io)
        prepare, wrap = self._prepare, self._wrap
        turn = await self._turn(entry, out, io, suffix, prepare)
        if turn is None:  # the upstream does not take WebSockets: HTTP, with the full body
            return await self.inner.send(entry, _in_full(out, suffix), io)
        up, names = turn
        if prepare is not None and wrap is not None:
            # no event hook: the turn hands its quota events to the book itself (``QuotaFeed``)
            return wrap(entry, out, up, names, None)  # type: ignore[no-any-return]
        return up

    def _handshake(self, entry: ProviderEntry, out: Outbound) -> tuple[str, dict[str, str]]:
        client = out.client_headers
        inner_out = Outbound(out.operation, out.wire, out.model, b"", True,
                             {k: v for k, v in client.items() if not k.startswith("x-crossroute-ws-")})
        req = self.inner.build(entry, inner_out)  # type: ignore[attr-defined]
        headers = {k: v for k, v in req.headers.items() if k.lower() not in _DROP_HEADERS}
        beta = client.get("openai-beta")
        if beta and "responses_websockets=" in beta:
            headers[BETA_HEADER] = beta
        else:
            configured = next((v for k, v in headers.items() if k.lower() == "openai-beta"), None)
            headers = {k: v for k, v in headers.items() if k.lower() != "openai-beta"}
            headers[BETA_HEADER] = f"{configured},{BETA_VALUE}" if configured else BETA_VALUE
        return ws_url(req.url), headers

    async def _dial(self, entry: ProviderEntry, io: UpstreamIO, url: str, headers: dict[str, str],
                    out: Outbound) -> aiohttp.ClientWebSocketResponse:
        proxy_url = entry.proxy_url or io.settings.proxy_url
        session = io.client_for(proxy_url) if proxy_url else io.http
        proxy = io.proxy_arg(proxy_url) if proxy_url else None
        refreshed = False
        while True:
            try:
                async with asyncio.timeout(max(1.0, io.settings.connect_timeout) * 2):
                    ws = await session.ws_connect(
                        url, headers=headers, proxy=proxy, autoping=True, compress=0,
                        max_msg_size=io.settings.max_upstream_body,
                        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0))
            except aiohttp.WSServerHandshakeError as exc:
                status = exc.status or 502
                hdrs = exc.headers or {}
                io.quota.note(entry, status, hdrs)  # type: ignore[arg-type]
                if status == 401 and not refreshed and await self.token_source(entry).refresh():
                    refreshed = True
                    url, headers = self._handshake(entry, out)
                    continue
                raise UpstreamError(status, f"upstream {entry.name} refused the WebSocket upgrade ({status})",
                                    retry_after=retry_after_of(hdrs)) from None  # type: ignore[arg-type]
            except TimeoutError:
                raise UpstreamError(504, f"upstream {entry.name} did not accept the WebSocket in time",
                                    scope="model") from None
            except aiohttp.ClientError as exc:
                detail = redaction.scrub(f"{type(exc).__name__}: {exc}")
                raise UpstreamError(0, f"upstream {entry.name} is unreachable ({detail})") from None
            io.quota.note(entry, 101, ws._response.headers)
            return ws

    async def _turn(self, entry: ProviderEntry, out: Outbound, io: UpstreamIO, suffix: tuple[str, int] | None,
                    prepare: Any) -> tuple[WsUpstream, Any] | None:
        """The turn sent on a pooled connection: (its answer, the tool names ``prepare`` shortened), or
        None when the upstream refused the upgrade (then HTTP)."""
        url, headers = self._handshake(entry, out)
        session = out.client_headers.get(SESSION_HEADER) or ""
        pool = pool_of(io)
        cred_id = entry.derived.get("ws_cred_id")
        if cred_id is None:  # ProviderEntry.id hashes the key on every read
            cred_id = entry.derived["ws_cred_id"] = entry.id
        key = pool_key(url, session, cred_id, headers)
        quota = QuotaFeed(io.quota, entry, cred_id) if io.quota is not None else None
        bodies: dict[bool, tuple[dict[str, Any], Any]] = {}  # in full or not: (what goes upstream, names)
        for attempt in range(2):
            try:
                conn = await pool.acquire(key, cred_id, lambda: self._dial(entry, io, url, headers, out))
            except UpstreamError as exc:
                if exc.status in FALLBACK_STATUSES:
                    log.warning("upstream %s refused the WebSocket upgrade (%s); using HTTP for %g s",
                                entry.name, exc.status, FALLBACK_FOR)
                    entry.derived["ws_http_until"] = time.monotonic() + FALLBACK_FOR
                    return None
                raise
            memory = conn.memory
            if suffix is not None and memory is not None and conn.last_response_id == suffix[0] \
                    and len(memory) == suffix[1]:
                # the connection holds the history the new items follow: they go as they are
                body, names = _body(entry, out, None, prepare, bodies)
                new = body.get("input")
                new = new if new.__class__ is list else []
                msg = {k: v for k, v in body.items() if k not in _NOT_SENT}
                msg["input"] = new
                msg["previous_response_id"] = conn.last_response_id
                full_items: list[Any] | None = [*memory, *new]
                incremental = True
            else:
                body, names = _body(entry, out, suffix, prepare, bodies)
                items = body.get("input")
                full_items = items if isinstance(items, list) else None
                if "previous_response_id" in body:
                    full_items = None  # the client chains to a response this gateway does not know in full
                msg = {k: v for k, v in body.items() if k not in _NOT_SENT}
                incremental = False
                if (full_items is not None and memory is not None and conn.last_response_id
                        and (_based_on(out.client_headers.get(BASE_HEADER) or _base_of(suffix), conn, full_items)
                             or extends(memory, full_items))):
                    msg["input"] = full_items[len(memory):]
                    msg["previous_response_id"] = conn.last_response_id
                    incremental = True
            conn.memory = conn.last_response_id = None  # until this turn completes
            reused = conn.turns > 0
            conn.turns += 1
            if reused and quota is not None:
                quota.turn()  # the dial counted the connection's first turn
            try:
                await conn.ws.send_str('{"type":"response.create",' + orjson.dumps(msg).decode()[1:]
                                       if msg else '{"type":"response.create"}')
                first = await self._first(conn, io, quota)
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                pool.release(conn, False)
                if reused and attempt == 0:
                    continue  # a pooled connection that was gone: the turn in full on a new one
                raise UpstreamError(502, f"upstream {entry.name} closed the WebSocket before answering "
                                         f"({type(exc).__name__})", scope="model") from None
            except TimeoutError:
                pool.release(conn, False)
                raise UpstreamError(504, f"upstream {entry.name} sent nothing in time", scope="model") from None
            except BaseException:
                pool.release(conn, False)
                raise
            ev = _first_event(first[-1])
            if ev is not None and ev.get("type") == "error":
                status, code, message = _error_parts(ev)
                pool.release(conn, False)
                if quota is not None:
                    quota(ev, first[-1])
                if attempt == 0 and (code in LIMIT_CODES or (code in STALE_CODES and incremental)):
                    log.info("upstream %s: %s; sending the turn in full on a new connection", entry.name, code)
                    continue
                masked = redaction.scrub(message)
                err = ev.get("error") if isinstance(ev.get("error"), dict) else {"message": masked, "code": code}
                raise UpstreamError(status, f"upstream {entry.name} answered {status}: {masked}",
                                    body=redaction.scrub_bytes(orjson.dumps({"error": err})))
            return WsUpstream(pool, conn, full_items, first, entry.name, io.settings.read_timeout,
                              io.settings.max_upstream_body, conn.ws._response.headers, quota), names
        raise UpstreamError(502, f"upstream {entry.name} failed twice on WebSocket", scope="model")

    @staticmethod
    async def _first(conn: PooledWs, io: UpstreamIO, quota: QuotaFeed | None) -> list[str]:
        """The turn's messages up to its first event that is not ``codex.rate_limits`` (the last one);
        those before it have been handed to the quota book."""
        received: list[str] = []
        while True:
            msg = await conn.ws.receive(timeout=io.settings.read_timeout)
            if msg.type is aiohttp.WSMsgType.TEXT:
                data = str(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                data = bytes(msg.data).decode("utf-8", "replace")
            else:
                raise UpstreamClosed(f"closed (code {conn.ws.close_code})")
            received.append(data)
            limits = _rate_limits_of(data) if len(received) <= MAX_LEADING else None
            if limits is None:
                return received
            if quota is not None:
                quota(limits, data)


def _suffix_of(headers: Mapping[str, str]) -> tuple[str, int] | None:
    """``SUFFIX_HEADER`` read: (response id, n), or None."""
    value = headers.get(SUFFIX_HEADER)
    if not value:
        return None
    rid, _, count = value.partition(" ")
    return (rid, int(count)) if rid and count.isdigit() else None


def _base_of(suffix: tuple[str, int] | None) -> str | None:
    return None if suffix is None else f"{suffix[0]} {suffix[1]}"


def _in_full(out: Outbound, suffix: tuple[str, int] | None) -> Outbound:
    """``out`` with its input in full: the session's history of the suffix's response, then the
    input ``out`` holds (``out`` itself without a suffix)."""
    if suffix is None:
        return out
    rid, count = suffix
    contexts = CONTEXTS.get(out.client_headers.get(SESSION_HEADER) or "")
    known = contexts.get(rid) if contexts is not None else None
    if known is None or len(known) != count:  # the session ended (or a bug): never a partial history
        raise UpstreamError(500, "the WebSocket session's conversation is gone; send the turn again in full",
                            scope="request")
    try:
        body = orjson.loads(out.body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(400, f"request body is not JSON: {exc}") from None
    new = body.get("input") if isinstance(body, dict) else None
    body["input"] = [*known, *(new if isinstance(new, list) else [])]
    headers = {k: v for k, v in out.client_headers.items() if k != SUFFIX_HEADER}
    headers[BASE_HEADER] = f"{rid} {count}"
    return Outbound(out.operation, out.wire, out.model, orjson.dumps(body), out.stream, headers)


def _body(entry: ProviderEntry, out: Outbound, suffix: tuple[str, int] | None, prepare: Any,
          cache: dict[bool, tuple[dict[str, Any], Any]]) -> tuple[dict[str, Any], Any]:
    """What goes upstream for ``out`` (in full when ``suffix`` is given), parsed, and the tool names
    ``prepare`` shortened; made once per turn for each of the two."""
    full = suffix is not None
    done = cache.get(full)
    if done is not None:
        return done
    sent = _in_full(out, suffix)
    names: Any = None
    if prepare is not None:
        sent, names = prepare(sent)
    try:
        body = orjson.loads(sent.body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(400, f"request body for upstream {entry.name} is not JSON: {exc}") from None
    if body.__class__ is not dict:
        raise UpstreamError(400, f"request body for upstream {entry.name} is not a JSON object")
    cache[full] = (body, names)
    return body, names


def _first_event(data: str) -> dict[str, Any] | None:
    if '"error"' not in data:
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def websocket_executor(inner: Executor) -> Executor:
    """``inner`` reached over WebSocket for Responses turns (see the module docstring)."""
    return WsExecutor(inner)  # type: ignore[return-value]
