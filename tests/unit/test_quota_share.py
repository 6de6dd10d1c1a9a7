"""Quota readings shared between processes: replicas on one real Redis, and the workers of one
serve over their peer links. What one process read from an answer steers the others' choice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from crossroute.routing.quota_share import QuotaSharing, share_once
from crossroute.routing.router import RoutingSettings
from crossroute.routing.session_ids import SessionIds
from crossroute.state.memory import MemoryState
from tests.redis_server import RedisServer

from .quota_replicas import Replica, oauth_entry, redis_replicas, replica
from .quota_replicas import server as server  # the fixture
from .routing_fakes import Cand


def codex(used: float, reset_in: float = 4 * 3600) -> dict[str, str]:
    now = time.time()
    return {
        "x-codex-primary-used-percent": str(used), "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(int(now + reset_in)),
        "x-codex-secondary-used-percent": "10", "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-at": str(int(now + 6 * 86400)),
    }


LOW, ROOM = oauth_entry("codex-low.json", "codex"), oauth_entry("codex-room.json", "codex")
CANDS = [Cand(LOW.id, provider="codex"), Cand(ROOM.id, provider="codex")]
SETTINGS = RoutingSettings(strategy="fill-first", quota_aware=True, session_affinity=True)


async def check_sharing(a: Replica, b: Replica) -> None:
    (router_a, book_a), (router_b, book_b) = a, b
    book_a.note(LOW, 200, codex(97))  # a learns that LOW is nearly spent, ROOM is not
    book_a.note(ROOM, 200, codex(10))
    assert await share_once(book_a, router_a.state) == 0
    assert await share_once(book_b, router_b.state) == 2
    assert book_b.nearly_exhausted(LOW.id) and not book_b.nearly_exhausted(ROOM.id)
    for i in range(4):  # b never heard from either, yet places new sessions by a's readings
        assert (await router_b.pick(CANDS, "gpt-5", SessionIds(f"new-{i}"))).credential_id == ROOM.id
    assert await share_once(book_a, router_a.state) == 0  # nothing new: a's own records are not taken back
    # a newer reading of b's own is not replaced by an older record; b's is published in turn
    book_b.note(LOW, 200, codex(20, reset_in=600))  # LOW's window refilled, as b sees it
    await share_once(book_b, router_b.state)
    assert await share_once(book_a, router_a.state) == 1
    assert book_a.account(LOW.id).windows["primary"].used == 0.2  # type: ignore[union-attr]


# ------------------------------------------------------------------ replicas on one Redis
@pytest.fixture
async def two_replicas(server: RedisServer) -> AsyncIterator[list[Replica]]:
    async with redis_replicas(server.url, SETTINGS) as replicas:
        yield replicas


@pytest.mark.redis
async def test_replicas_share_readings_through_redis(two_replicas: list[Replica],
                                                     server: RedisServer) -> None:
    a, b = two_replicas
    await check_sharing(a, b)
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        assert set(await client.hkeys("crossroute:qh")) == {LOW.id, ROOM.id}
        assert 0 < await client.pttl("crossroute:qh") <= 6 * 3600_000
        # an expired record is dropped by the next reader
        await client.hset("crossroute:qh", "auth:gone.json", f"{time.time() - 1!r} {{}}")
        await client.incr("crossroute:qv")
        await share_once(b[1], b[0].state)
        assert "auth:gone.json" not in await client.hkeys("crossroute:qh")
        assert "auth:gone.json" not in b[1].accounts
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_the_background_round_shares_without_a_call(two_replicas: list[Replica]) -> None:
    (_, book_a), (_, book_b) = two_replicas
    book_a.note(LOW, 200, codex(97))
    for _ in range(50):  # the rounds run every second
        await asyncio.sleep(0.1)
        if book_b.nearly_exhausted(LOW.id):
            break
    assert book_b.nearly_exhausted(LOW.id)


# ------------------------------------------------------------------ workers of one serve


class Link:
    """Stands in for two workers' Peers: what one sends, the other applies."""

    def __init__(self) -> None:
        self.to: MemoryState | None = None

    def send(self, op: list) -> None:
        assert self.to is not None
        self.to.apply_peer(op)


async def test_workers_share_readings_over_their_links() -> None:
    s1, s2 = MemoryState(), MemoryState()
    assert not s1.shares_quota  # alone: nothing to share, the round stays idle
    l1, l2 = Link(), Link()
    l1.to, l2.to = s2, s1
    s1.peers, s2.peers = l1, l2  # type: ignore[assignment]
    await check_sharing(replica(s1, SETTINGS), replica(s2, SETTINGS))
    assert await s2.get_quota() is None  # nothing new since the last round


async def test_the_round_is_idle_without_sharing() -> None:
    state = MemoryState()
    _, book = replica(state, SETTINGS)
    sharing = QuotaSharing(state, lambda: book, every=0.01)
    sharing.start()
    book.note(LOW, 200, codex(97))
    await asyncio.sleep(0.05)
    await sharing.stop()
    assert book.accounts[LOW.id].raw is not None  # not even read: no round ran


@pytest.mark.redis
async def test_a_reset_on_one_replica_clears_cooldowns_and_spent_marks_on_both(
    two_replicas: list[Replica],
) -> None:
    (router_a, book_a), (router_b, book_b) = two_replicas
    book_a.note(LOW, 429, codex(100))
    await router_a.report_failure(CANDS[0], "gpt-5", None, 429, None)  # until the announced reset
    await share_once(book_a, router_a.state)
    await share_once(book_b, router_b.state)
    assert book_b.reset_hint(LOW.id) is not None
    assert (await router_b.pick(CANDS, "gpt-5", None)).credential_id == ROOM.id
    assert await router_b.reset_cooldowns(LOW.id) == 1  # POST /reset-quota on b
    await share_once(book_b, router_b.state)
    await share_once(book_a, router_a.state)
    for router, book in two_replicas:
        assert book.reset_hint(LOW.id) is None and not book.nearly_exhausted(LOW.id)
        assert (await router.pick(CANDS[:1], "gpt-5", None)).credential_id == LOW.id
