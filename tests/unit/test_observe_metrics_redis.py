"""``GET /metrics`` with ``state.redis-url``: bound sessions and cooldowns per credential are read
from Redis at scrape time (so one replica shows what another one set), and
``crossroute_state_redis_up`` turns 0 when Redis stops answering (the local mirror is shown then)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crossroute.api.metrics import scrape
from crossroute.config import parse
from crossroute.gateway import Gateway
from tests.redis_fixture import server as server  # the fixture
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

CFG = ("openai-compatibility:\n  - name: up\n    base-url: http://127.0.0.1:9/v1\n"
       "    api-key-entries: [{api-key: sk-aaaaaaaa}, {api-key: sk-bbbbbbbb}]\n"
       "    models: [{name: m, alias: local}]\n")


def _gw(tmp: Path, url: str) -> Gateway:
    return Gateway(parse(f"logs-dir: {tmp}/logs\nerror-logs-max-files: 0\nstate:\n  redis-url: {url}\n{CFG}"))


async def _gauges(gw: Gateway) -> dict[str, list[tuple[dict[str, str], float]]]:
    reply = await scrape(gw, None)
    assert reply.status == 200
    fams = text_string_to_metric_families(reply.body.decode())
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in fams}


def test_routing_gauges_from_redis(server: RedisServer, tmp_path: Path) -> None:
    async def go() -> None:
        a, b = _gw(tmp_path, server.url), _gw(tmp_path, server.url)
        await a.start()
        await b.start()
        try:
            ids = [p.id for p in a.settings.providers]
            now = time.time()
            await a.state.set_binding("s1::m", ids[1], 600)
            await a.state.set_binding("s2::m", ids[1], 600)
            await a.state.set_binding("s3::m", ids[0], 600)
            await a.state.set_cooldown(ids[0], "m", now + 30, 1, now + 60)
            for gw in (a, b):  # b never saw these: it reads them from Redis
                g = await _gauges(gw)
                assert g["crossroute_state_redis_up"] == [({}, 1.0)]
                assert g["crossroute_bound_sessions"] == [({"credential": ids[0]}, 1.0), ({"credential": ids[1]}, 2.0)]
                cd = g["crossroute_cooldown_seconds"]
                assert [ls for ls, _ in cd] == [{"credential": ids[0], "model": "m"}] and 25 < cd[0][1] <= 30
            assert not b.state.mirror.iter_bindings()  # type: ignore[attr-defined]
            server.stop()
            g = await _gauges(a)
            g = await _gauges(a)  # the first failed call marks Redis down
            assert g["crossroute_state_redis_up"] == [({}, 0.0)]
            assert [ls for ls, _ in g["crossroute_bound_sessions"]] == [{"credential": ids[0]}, {"credential": ids[1]}]
            assert (await _gauges(b))["crossroute_bound_sessions"] == []  # its mirror holds none
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(go())
