"""A soak of new conversations through a real gateway: with the session-binding cap, the
process's memory stays flat however many conversations arrive within the affinity TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from .lifecycle_support import CLIENT_KEY, Gateway, PacedUpstream, gateway_config, rss_kb

CAP = 2000
WARM = 8000  # past the cap (and past every other warm-up: pools, caches, allocator arenas)
TOTAL = 30000


@pytest.fixture(scope="module")
def paced() -> Iterator[PacedUpstream]:
    up = PacedUpstream().start()
    yield up
    up.stop()


async def _conversations(port: int, start: int, end: int, concurrency: int = 16) -> int:
    ok = 0
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    next_id = iter(range(start, end))

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for i in next_id:
            body = {"model": "fast", "messages": [{"role": "user", "content": f"conversation {i}"}]}
            async with session.post(url, json=body, headers={**headers, "X-Session-ID": f"conv-{i}"}) as r:
                await r.read()
                ok += r.status == 200

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(one(session) for _ in range(concurrency)))
    return ok


def test_rss_stays_flat_over_30000_new_conversations(paced: PacedUpstream, tmp_path: Path) -> None:
    cfg = gateway_config(paced, **{"max-session-bindings": CAP,
                                   "routing": {"session-affinity": True, "session-affinity-ttl": "1h"}})
    gw = Gateway(cfg, tmp_path).start()
    try:
        assert gw.proc is not None
        assert asyncio.run(_conversations(gw.port, 0, WARM)) == WARM
        before = rss_kb(gw.proc.pid)
        assert asyncio.run(_conversations(gw.port, WARM, TOTAL)) == TOTAL - WARM
        grown = rss_kb(gw.proc.pid) - before
        print(f"RSS {before} KB after {WARM} conversations, +{grown} KB after {TOTAL}")
        # without the cap each binding stays for the TTL: about 0.4 KB each, ~9 MB for these 22,000
        assert grown < 3 * 1024, f"RSS grew {grown} KB over {TOTAL - WARM} new conversations"
    finally:
        gw.stop()
