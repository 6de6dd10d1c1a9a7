"""Pooled upstream WebSocket connections for the Responses API (a gateway component, ``ws_pool``).

A connection is keyed by upstream URL + session + credential + a fingerprint of the handshake
headers, so a conversation keeps talking to the connection that holds its last response in memory
(``memory``: the items the upstream has seen on it, and that response's id). A connection is lent
to one turn at a time (``acquire`` / ``release``); idle ones are kept for reuse and closed:

- on an error, a ``response.failed`` or the service's connection-limit error (``release(reuse=False)``);
- when its turn was cancelled (the client went away): ``release(reuse=False)`` too;
- after ``ws_idle_ttl`` seconds unused and at ``ws_max_age`` seconds old (a reaper task);
- when the upstream closes it (or sends anything) while it is idle: each connection idle for
  ``watch_after`` seconds is read by a small task (which also answers the upstream's pings),
  cancelled when a turn takes it (a turn that comes sooner, as an agent's next turn usually does,
  finds a timer to cancel instead: no task made and cancelled per turn);
- when its downstream session ends (``close_session``), its credential is removed by a reload
  (``reconfigure``), and at shutdown (``stop``).

A connection that is gone when a turn starts is never used: the turn goes out in full on a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from ..background import Background

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["COMPONENT", "PoolKey", "PooledWs", "WsPool", "pool_key", "pool_of"]

log = logging.getLogger("crossroute")

COMPONENT = "ws_pool"
MAX_IDLE_PER_KEY = 4  # idle connections kept per key (HTTP clients without a session share one key)
MAX_IDLE_TOTAL = 4096
REAP_EVERY_MAX = 5.0
WATCH_AFTER = 0.5  # seconds a connection is idle before a task reads it

PoolKey = tuple[str, str, str, str]


def pool_key(url: str, session: str, credential_id: str, headers: Mapping[str, str]) -> PoolKey:
    """URL + session + credential + a fingerprint of the handshake headers (secrets hashed, never kept)."""
    digest = hashlib.sha256()
    for name in sorted(headers, key=str.lower):
        digest.update(name.lower().encode() + b"\0" + str(headers[name]).encode() + b"\0")
    return (url, session, credential_id, digest.hexdigest()[:16])


class PooledWs:
    """One upstream WebSocket. ``memory``: the input and output items of the last response the
    upstream holds on this connection (None: nothing usable), ``last_response_id`` its id."""

    __slots__ = ("busy", "created", "credential_id", "key", "last_response_id", "last_used", "memory", "turns", "watch",
                 "watch_timer", "ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, key: PoolKey, credential_id: str) -> None:
        self.ws = ws
        self.key = key
        self.credential_id = credential_id
        self.created = self.last_used = time.monotonic()
        self.memory: list[Any] | None = None
        self.last_response_id: str | None = None
        self.busy = False
        self.turns = 0
        self.watch: asyncio.Task[None] | None = None  # the read of an idle connection (pings, a close)
        self.watch_timer: asyncio.TimerHandle | None = None  # when that read starts

    @property
    def closed(self) -> bool:
        return self.ws.closed


class WsPool:
    """The gateway's pooled upstream WebSocket connections (``Gateway.component`` protocol)."""

    def __init__(self, gw: Gateway) -> None:
        self.watch_after = WATCH_AFTER
        self.idle_ttl = gw.settings.ws_idle_ttl
        self.max_age = gw.settings.ws_max_age
        self._idle: dict[PoolKey, list[PooledWs]] = {}
        self._busy: set[PooledWs] = set()
        self._reaper = Background("crossroute-ws-reaper")  # runs while connections are held
        self._closing: set[asyncio.Task[None]] = set()
        self.dialed = 0  # connections opened (tests and bench read it)
        self.stopped = False

    # ------------------------------------------------------------ lending
    async def acquire(self, key: PoolKey, credential_id: str,
                      dial: Callable[[], Awaitable[aiohttp.ClientWebSocketResponse]]) -> PooledWs:
        """An idle connection for ``key`` that is still usable, else a new one from ``dial()``."""
        now = time.monotonic()
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not idle:
                self._idle.pop(key, None)
            timer, conn.watch_timer = conn.watch_timer, None
            if timer is not None:
                timer.cancel()
            watch, conn.watch = conn.watch, None
            if watch is not None and not watch.done():
                watch.cancel()  # the turn reads it from now on
                await asyncio.gather(watch, return_exceptions=True)
            if conn.closed or now - conn.created >= self.max_age or now - conn.last_used >= self.idle_ttl:
                self._close(conn)
                continue
            conn.busy = True
            self._busy.add(conn)
            return conn
        ws = await dial()
        self.dialed += 1
        conn = PooledWs(ws, key, credential_id)
        conn.busy = True
        self._busy.add(conn)
        self._reaper.start(self._reap)
        return conn

    def release(self, conn: PooledWs, reuse: bool) -> None:
        """The turn on ``conn`` is over: keep it for the next one, or close it."""
        if not conn.busy:
            return
        conn.busy = False
        self._busy.discard(conn)
        conn.last_used = time.monotonic()
        if (not reuse or self.stopped or conn.closed or conn.last_used - conn.created >= self.max_age
                or sum(len(v) for v in self._idle.values()) >= MAX_IDLE_TOTAL):
            self._close(conn)
            return
        idle = self._idle.setdefault(conn.key, [])
        idle.append(conn)
        conn.watch_timer = asyncio.get_running_loop().call_later(self.watch_after, self._start_watch, conn)
        while len(idle) > MAX_IDLE_PER_KEY:
            self._close(idle.pop(0))

    def _start_watch(self, conn: PooledWs) -> None:
        conn.watch_timer = None
        if not conn.busy and conn.watch is None and not self.stopped:
            conn.watch = asyncio.get_running_loop().create_task(self._watch(conn))

    async def _watch(self, conn: PooledWs) -> None:
        """Read an idle connection: pings are answered while it waits; anything it returns (the
        upstream's close, an error, a stray event) means it is not reusable."""
        try:
            msg = await conn.ws.receive()
            log.debug("idle upstream WebSocket ended: %s", getattr(msg, "type", msg))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("idle upstream WebSocket failed: %r", exc)
        conn.watch = None
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]
        self._close(conn)

    def close_session(self, session: str) -> int:
        """Close the idle connections of a downstream session that ended (and of its stream_id lanes,
        ``<session>:<id>``); busy ones close when their turn ends (their session's turns are cancelled)."""
        lane = session + ":"
        return self._close_where(lambda c: c.key[1] == session or c.key[1].startswith(lane))

    def busy_for_session(self, session: str) -> PooledWs | None:
        """The connection a turn of ``session`` runs on now, if any."""
        return next((c for c in self._busy if c.key[1] == session and not c.closed), None)

    def connections(self) -> int:
        return sum(len(v) for v in self._idle.values()) + len(self._busy)

    # ------------------------------------------------------------ lifecycle
    def reconfigure(self, gw: Gateway, removed: set[str]) -> None:
        self.idle_ttl = gw.settings.ws_idle_ttl
        self.max_age = gw.settings.ws_max_age
        if removed:
            closed = self._close_where(lambda c: c.credential_id in removed)
            for conn in list(self._busy):
                if conn.credential_id in removed:
                    self._close(conn)
                    closed += 1
            if closed:
                log.info("closed %d upstream WebSocket connection%s of removed credentials", closed,
                         "" if closed == 1 else "s")

    async def stop(self) -> None:
        self.stopped = True
        await self._reaper.stop()
        conns = [c for v in self._idle.values() for c in v] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        watches = [w for c in conns if (w := c.watch) is not None and not w.done()]
        for c in conns:
            c.watch = None
            if c.watch_timer is not None:
                c.watch_timer.cancel()
                c.watch_timer = None
        for w in watches:
            w.cancel()
        if watches:
            await asyncio.gather(*watches, return_exceptions=True)
        await asyncio.gather(*(self._close_now(c) for c in conns), return_exceptions=True)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    # ------------------------------------------------------------ internals
    def _close_where(self, pred: Callable[[PooledWs], bool]) -> int:
        closed = 0
        for key in list(self._idle):
            keep = []
            for conn in self._idle[key]:
                if pred(conn):
                    self._close(conn)
                    closed += 1
                else:
                    keep.append(conn)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return closed

    def _close(self, conn: PooledWs) -> None:
        self._busy.discard(conn)
        conn.memory = None
        timer, conn.watch_timer = conn.watch_timer, None
        if timer is not None:
            timer.cancel()
        watch, conn.watch = conn.watch, None
        if watch is not None and not watch.done() and watch is not asyncio.current_task():
            watch.cancel()
        if conn.ws.closed:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._close_now(conn))
        except RuntimeError:
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_now(conn: PooledWs) -> None:
        try:
            await asyncio.wait_for(conn.ws.close(), 5.0)
        except (TimeoutError, aiohttp.ClientError, OSError, RuntimeError) as exc:
            log.debug("upstream WebSocket close: %r", exc)

    async def _reap(self) -> None:
        while not self.stopped:
            await asyncio.sleep(max(0.05, min(REAP_EVERY_MAX, self.idle_ttl / 4, self.max_age / 4)))
            now = time.monotonic()
            self._close_where(lambda c, now=now: c.closed or now - c.last_used >= self.idle_ttl  # type: ignore[misc]
                              or now - c.created >= self.max_age)
            if not self._idle and not self._busy:
                return  # ended: the next connection dialled starts it again


def pool_of(io: Any) -> WsPool:
    """The gateway's pool, made on first use."""
    pool: WsPool = io.component(COMPONENT, WsPool)
    return pool
