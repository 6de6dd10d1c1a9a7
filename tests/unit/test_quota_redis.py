"""Two replicas sharing Redis: a 429 one of them saw cools the account on both, exactly until the
reset it announced (and a success on either clears it)."""

from __future__ import annotations

import time

import pytest

from crossroute.call import Trace
from crossroute.routing.router import AllCoolingDown, RoutingSettings
from tests.redis_server import RedisServer

from .quota_replicas import oauth_entry, redis_replicas
from .quota_replicas import server as server  # the fixture
from .routing_fakes import Cand

pytestmark = pytest.mark.redis


async def test_announced_reset_is_shared(server: RedisServer) -> None:
    settings = RoutingSettings(strategy="fill-first", quota_aware=True)
    async with redis_replicas(server.url, settings) as [(r1, b1), (r2, _)]:
        a = oauth_entry("claude-a.json", "claude")
        b = oauth_entry("claude-b.json", "claude")
        cands = [Cand(a.id), Cand(b.id)]
        reset = int(time.time()) + 120
        b1.note(a, 429, {"anthropic-ratelimit-unified-status": "rejected",
                         "anthropic-ratelimit-unified-reset": str(reset),
                         "anthropic-ratelimit-unified-representative-claim": "five_hour",
                         "anthropic-ratelimit-unified-5h-status": "rejected",
                         "anthropic-ratelimit-unified-5h-reset": str(reset), "retry-after": "7200"})
        await r1.report_failure(cands[0], "claude-sonnet", None, 429, 7200.0, kind="model")
        # the other replica never saw that answer, yet skips the account for every model
        tr = Trace()
        assert (await r2.pick(cands, "claude-opus", None, (), None, tr)).credential_id == b.id
        skip = next(s for s in tr.steps if s["step"] == "skip")
        assert skip["reason"] == "cooling" and skip["scope"] == "credential" and skip["until"] == reset
        with pytest.raises(AllCoolingDown) as exc:
            await r2.pick(cands[:1], "claude-opus", None)
        assert 110 < exc.value.retry_after <= 120
        await r2.report_success(cands[0], "claude-sonnet", None)  # it served on the second replica
        assert (await r1.pick(cands[:1], "claude-opus", None)).credential_id == a.id  # cooling cleared on both
