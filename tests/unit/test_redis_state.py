"""RedisState against a real redis-server: shared bindings, cooldowns and cursors between two
Routers, and serving through an outage (fallback, one warning, reconnect on the same port)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from crossroute.routing.router import AllCoolingDown, Router, RoutingSettings
from crossroute.routing.session_ids import SessionIds
from crossroute.state.redis_state import RedisState
from tests.redis_fixture import server as server  # the fixture
from tests.redis_server import RedisServer, require_redis_server

from .routing_fakes import Cand

pytestmark = pytest.mark.redis

MODEL = "gpt-5"
CANDS_SPEC = ["a", "b", "c"]


CANDS = [Cand(x) for x in CANDS_SPEC]


def affinity_settings() -> RoutingSettings:
    return RoutingSettings(session_affinity=True, session_affinity_ttl=600)


@pytest.fixture
async def two_routers(server: RedisServer) -> AsyncIterator[tuple[Router, Router]]:
    r1 = Router(affinity_settings(), RedisState(server.url, retry_interval=0.05))
    r2 = Router(affinity_settings(), RedisState(server.url, retry_interval=0.05))
    await r1.start()
    await r2.start()
    try:
        yield r1, r2
    finally:
        await r1.stop()
        await r2.stop()


async def serve(router: Router, session: SessionIds | None, cands: list[Cand] = CANDS) -> str:
    c = await router.pick(cands, MODEL, session)
    await router.report_success(c, MODEL, session)
    return c.credential_id


async def test_two_routers_agree_on_bindings(two_routers: tuple[Router, Router]) -> None:
    r1, r2 = two_routers
    sessions = [SessionIds(f"codex:s{i}") for i in range(12)]
    placed = {}
    for i, s in enumerate(sessions):
        # new sessions arrive alternately at either process
        placed[s.primary] = await serve(r1 if i % 2 else r2, s)
    # spread evenly by the shared round-robin cursor
    assert sorted(placed.values()) == sorted(CANDS_SPEC * 4)
    for s in sessions:
        assert await serve(r1, s) == placed[s.primary]
        assert await serve(r2, s) == placed[s.primary]


async def test_invalidated_session_is_placed_anew_by_either_process(
    two_routers: tuple[Router, Router], server: RedisServer
) -> None:
    r1, r2 = two_routers
    s = SessionIds("claude:gone")
    first = await serve(r1, s)
    assert await serve(r2, s) == first
    assert await r2.invalidate_session(s, MODEL, "claude") == 1
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        assert await client.exists("crossroute:b:claude::claude:gone::gpt-5") == 0
    finally:
        await client.aclose()
    # r1 still has the binding in its local mirror, but Redis (the shared truth) wins: the next
    # request through r1 reads Redis first and is placed anew by the shared cursor
    again = await serve(r1, s)
    assert await serve(r2, s) == again


async def test_keys_are_prefixed(two_routers: tuple[Router, Router], server: RedisServer) -> None:
    r1, _ = two_routers
    await serve(r1, SessionIds("claude:k"))
    await r1.report_failure(CANDS[1], MODEL, None, 500, None)
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        keys = sorted(await client.keys("*"))
        assert keys and all(k.startswith("crossroute:") for k in keys)
        assert "crossroute:b:claude::claude:k::gpt-5" in keys
        assert "crossroute:cd:b|gpt-5" in keys
        assert 0 < await client.pttl("crossroute:b:claude::claude:k::gpt-5") <= 600_000
    finally:
        await client.aclose()


async def test_two_routers_agree_on_cooldowns_and_moves(two_routers: tuple[Router, Router]) -> None:
    r1, r2 = two_routers
    s = SessionIds("claude:sess")
    bound = await serve(r1, s)
    c = await r2.pick(CANDS, MODEL, s)
    assert c.credential_id == bound
    await r2.report_failure(c, MODEL, s, 429, 30.0)
    # the other process sees the cooldown and moves the session; both then agree on the new one
    moved = await serve(r1, s)
    assert moved != bound
    assert await serve(r2, s) == moved
    # cooldown seen by fresh picks too
    for _ in range(6):
        assert (await r2.pick(CANDS, MODEL, None)).credential_id != bound
    rest = [x for x in CANDS if x.credential_id != bound]
    for x in rest:
        await r1.report_failure(x, MODEL, None, 503, None)
    with pytest.raises(AllCoolingDown) as err:
        await r2.pick(CANDS, MODEL, None)
    assert 29.0 < err.value.retry_after <= 30.0


async def test_429_ladder_is_shared(two_routers: tuple[Router, Router]) -> None:
    r1, r2 = two_routers
    a = CANDS[0]
    await r1.report_failure(a, MODEL, None, 429, None)  # level 1: 1 s
    await asyncio.sleep(1.05)
    assert (await r2.pick([a], MODEL, None)) is a
    await r2.report_failure(a, MODEL, None, 429, None)  # level 2: 2 s
    with pytest.raises(AllCoolingDown) as err:
        await r1.pick([a], MODEL, None)
    assert 1.5 < err.value.retry_after <= 2.0
    await r1.report_success(a, MODEL, None)  # resets for everyone
    assert (await r2.pick([a], MODEL, None)) is a


async def test_invalidate_credential_drops_shared_bindings(
    two_routers: tuple[Router, Router], server: RedisServer
) -> None:
    r1, r2 = two_routers
    sessions = [SessionIds(f"s{i}") for i in range(6)]
    placed = {s.primary: await serve(r1, s) for s in sessions}
    # one process invalidating is enough for the shared bindings
    assert await r2.state.delete_bindings_for("a") == 2
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        left = {k: await client.get(k) for k in await client.keys("crossroute:b:*")}
        assert len(left) == 4 and "a" not in left.values()
    finally:
        await client.aclose()
    # a config reload removes "a": every process drops the bindings
    await r1.invalidate_credential("a")
    await r2.invalidate_credential("a")
    remaining = [Cand("b"), Cand("c")]
    for s in sessions:
        got = await serve(r2, s, remaining)
        if placed[s.primary] != "a":
            assert got == placed[s.primary]
        assert await serve(r1, s, remaining) == got


async def test_a_credentials_cooldowns_are_cleared_whichever_process_set_them(
    two_routers: tuple[Router, Router], server: RedisServer
) -> None:
    r1, r2 = two_routers
    a_x, a_y, b_x = Cand("a", upstream_model="x"), Cand("a", upstream_model="y"), Cand("b", upstream_model="x")
    await r1.report_failure(a_x, MODEL, None, 403, None)  # model x, 30 min
    await r1.report_failure(a_y, MODEL, None, 429, None)  # model y, a ladder level
    await r1.report_failure(a_y, MODEL, None, 401, None)  # every model
    await r1.report_failure(b_x, MODEL, None, 403, None)
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        assert sorted(await client.keys("crossroute:cd:a|*")) == ["crossroute:cd:a|*", "crossroute:cd:a|x",
                                                                  "crossroute:cd:a|y"]
        # r2 never read those entries (its mirror knows nothing): it still clears every one
        await r2.invalidate_credential("a")
        assert await client.keys("crossroute:cd:a|*") == [] and not await client.exists("crossroute:cm:a")
        assert await client.smembers("crossroute:cc") == {"b"}
        assert 0 < await client.pttl("crossroute:cm:b") <= 30 * 60_000 + 1000
        assert (await r1.pick([a_x, b_x], MODEL, None)) is a_x  # r1's mirror follows Redis
        assert (await r1.pick([a_y], MODEL, None)) is a_y
        assert await r1.state.get_cooldowns(["a"], "y") == {}  # the ladder went too
        with pytest.raises(AllCoolingDown):
            await r1.pick([b_x], MODEL, None)
        assert await r2.state.clear_cooldowns_for(None) == 1  # everyone's
        assert [k for k in await client.keys("crossroute:c*")] == []
        assert (await r1.pick([b_x], MODEL, None)) is b_x
    finally:
        await client.aclose()


async def test_a_clearing_while_redis_is_unreachable_is_done_on_reconnect(server: RedisServer) -> None:
    r1 = Router(affinity_settings(), RedisState(server.url, retry_interval=0.05))
    state = RedisState(server.url, retry_interval=0.05)
    r2 = Router(affinity_settings(), state)
    await r1.start()
    await r2.start()
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        a = Cand("a", upstream_model="x")
        await r1.report_failure(a, MODEL, None, 403, None)
        await client.execute_command("CLIENT", "PAUSE", "600", "ALL")  # r2's calls time out meanwhile
        await r2.invalidate_credential("a")
        assert not state.available
        assert await wait_until(lambda: state.available)  # the same server: no full resync
        assert await client.keys("crossroute:cd:*") == []
        assert (await r1.pick([a], MODEL, None)) is a
    finally:
        await client.aclose()
        await r1.stop()
        await r2.stop()


async def wait_until(cond: Callable[[], bool], limit: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_outage_falls_back_logs_once_and_reconnects(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crossroute.state")
    state = RedisState(server.url, retry_interval=0.1)
    router = Router(affinity_settings(), state)
    await router.start()
    try:
        s_before = SessionIds("claude:before")
        bound_before = await serve(router, s_before)

        server.stop()  # crash
        # nothing raises; the session keeps its credential from the local mirror
        for _ in range(20):
            assert await serve(router, s_before) == bound_before
        assert not state.available
        s_during = SessionIds("claude:during")
        bound_during = await serve(router, s_during)
        c = await router.pick(CANDS, MODEL, None)
        await router.report_failure(c, MODEL, None, 503, None)
        await router.invalidate_credential("zzz")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.message]
        assert len(warnings) == 1

        server.start()  # same port, empty: it restarted without persistence
        assert await wait_until(lambda: state.available)
        assert any("reachable again" in r.message for r in caplog.records)

        # what this process knew was pushed back: another process sees both sessions' bindings
        other = Router(affinity_settings(), RedisState(server.url))
        await other.start()
        try:
            assert await serve(other, s_before) == bound_before
            assert await serve(other, s_during) == bound_during
            # and the cooldown set during the outage
            with pytest.raises(AllCoolingDown):
                await other.pick([c], MODEL, None)
        finally:
            await other.stop()
        # the state writes to Redis again
        await serve(router, SessionIds("claude:after"))
        client = Redis.from_url(server.url, decode_responses=True)
        try:
            assert await client.exists("crossroute:b:claude::claude:after::gpt-5") == 1
        finally:
            await client.aclose()
    finally:
        await router.stop()


async def test_redis_down_at_start_serves_locally(caplog: pytest.LogCaptureFixture) -> None:
    require_redis_server()
    from tests.redis_server import free_port

    caplog.set_level(logging.WARNING, logger="crossroute.state")
    port = free_port()
    state = RedisState(f"redis://127.0.0.1:{port}/0", retry_interval=0.05)
    router = Router(affinity_settings(), state)
    await router.start()
    try:
        s = SessionIds("x")
        first = await serve(router, s)
        assert [await serve(router, s) for _ in range(5)] == [first] * 5
        assert not state.available
        srv = RedisServer(port=port)
        srv.start()
        try:
            assert await wait_until(lambda: state.available)
            client = Redis.from_url(srv.url, decode_responses=True)
            try:
                assert await client.get("crossroute:b:claude::x::gpt-5") == first
            finally:
                await client.aclose()
        finally:
            srv.close()
    finally:
        await router.stop()
    assert len([r for r in caplog.records if "unreachable" in r.message]) == 1
