"""The upstream WebSocket pool (crossroute/providers/ws_pool.py): reuse per key, eviction on error,
idle TTL, maximum age, session end, reload and stop."""

from __future__ import annotations

import asyncio
from typing import Any

from crossroute.config import Settings
from crossroute.providers.ws_pool import WsPool, pool_key


class FakeWs:
    def __init__(self) -> None:
        self.closed = False
        self.reads = 0
        self._gone = asyncio.Event()

    async def close(self) -> bool:
        self.closed = True
        self._gone.set()
        return True

    async def receive(self) -> Any:
        self.reads += 1
        await self._gone.wait()
        return "CLOSED"

    def drop(self) -> None:  # the upstream closes it
        self.closed = True
        self._gone.set()


class Gw:
    def __init__(self, idle: float = 300.0, age: float = 3300.0) -> None:
        self.settings = Settings()
        self.settings.ws_idle_ttl = idle
        self.settings.ws_max_age = age


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def key(session: str = "s1", cred: str = "c1") -> Any:
    return pool_key("wss://up/v1/responses", session, cred, {"Authorization": "Bearer k", "OpenAI-Beta": "x"})


async def dial() -> Any:
    return FakeWs()


def test_key_fingerprints_headers_without_keeping_them() -> None:
    k1 = pool_key("wss://u", "s", "c", {"Authorization": "Bearer secret-1"})
    k2 = pool_key("wss://u", "s", "c", {"authorization": "Bearer secret-2"})
    assert k1 != k2 and "secret" not in repr(k1)
    assert pool_key("wss://u", "s", "c", {"A": "1", "B": "2"}) == pool_key("wss://u", "s", "c", {"b": "2", "a": "1"})


def test_reuse_and_eviction() -> None:
    async def main() -> None:
        pool = WsPool(Gw())  # type: ignore[arg-type]
        a = await pool.acquire(key(), "c1", dial)
        pool.release(a, True)
        b = await pool.acquire(key(), "c1", dial)
        assert b is a and pool.dialed == 1, "an idle connection is reused for the same key"
        other = await pool.acquire(key("s2"), "c1", dial)
        assert other is not a, "another session gets its own connection"
        pool.release(b, False)  # an error: closed, not kept
        await asyncio.sleep(0.05)  # closes run in their own task
        assert a.ws.closed
        c = await pool.acquire(key(), "c1", dial)
        assert c is not a and pool.dialed == 3
        pool.release(c, True)
        pool.release(other, True)
        await pool.stop()
        assert c.ws.closed and other.ws.closed

    run(main())


def test_idle_ttl_and_max_age() -> None:
    async def main() -> None:
        pool = WsPool(Gw(idle=0.1))  # type: ignore[arg-type]
        a = await pool.acquire(key(), "c1", dial)
        pool.release(a, True)
        await asyncio.sleep(0.4)  # the reaper closes it
        assert a.ws.closed and pool.connections() == 0
        pool.idle_ttl, pool.max_age = 300.0, 0.1
        b = await pool.acquire(key(), "c1", dial)
        await asyncio.sleep(0.15)
        pool.release(b, True)  # past its maximum age: not kept
        await asyncio.sleep(0.05)  # closes run in their own task
        assert b.ws.closed
        await pool.stop()

    run(main())


def test_session_end_reload_and_busy_connections() -> None:
    async def main() -> None:
        pool = WsPool(Gw())  # type: ignore[arg-type]
        a = await pool.acquire(key("s1", "c1"), "c1", dial)
        b = await pool.acquire(key("s2", "c2"), "c2", dial)
        busy = await pool.acquire(key("s3", "c2"), "c2", dial)
        pool.release(a, True)
        pool.release(b, True)
        assert pool.busy_for_session("s3") is busy and pool.busy_for_session("s1") is None
        assert pool.close_session("s1") == 1
        pool.reconfigure(Gw(), {"c2"})  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # closes run in their own task
        assert a.ws.closed and b.ws.closed and busy.ws.closed, "a removed credential's connections all close"
        pool.release(busy, True)  # its turn ends later: nothing kept
        assert pool.connections() == 0
        await pool.stop()

    run(main())


def test_idle_connections_are_read_and_an_upstream_close_evicts_at_once() -> None:
    async def main() -> None:
        pool = WsPool(Gw())  # type: ignore[arg-type]
        a = await pool.acquire(key(), "c1", dial)
        pool.release(a, True)
        await asyncio.sleep(0.01)
        assert a.ws.reads == 0 and a.watch is None and a.watch_timer is not None, "read only once idle a while"
        again = await pool.acquire(key(), "c1", dial)
        assert again is a and a.watch_timer is None, "a turn that comes soon cancels the timer"
        pool.watch_after = 0.02
        pool.release(a, True)
        await asyncio.sleep(0.06)
        assert a.ws.reads == 1 and a.watch is not None, "an idle connection is read (pings answered)"
        b = await pool.acquire(key(), "c1", dial)
        assert b is a and a.watch is None, "a turn takes it over: the idle read is cancelled"
        pool.release(a, True)
        await asyncio.sleep(0.01)
        a.ws.drop()
        await asyncio.sleep(0.05)
        assert pool.connections() == 0, "the upstream's close while idle evicts it at once"
        c = await pool.acquire(key(), "c1", dial)
        assert c is not a and pool.dialed == 2
        pool.release(c, True)
        await pool.stop()
        assert c.ws.closed and c.watch is None

    run(main())
