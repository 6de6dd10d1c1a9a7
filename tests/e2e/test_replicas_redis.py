"""Two crossroute processes sharing one real redis-server: session bindings, round-robin cursors
and cooldowns agree across them; a Redis outage does not fail requests, and they reconnect."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.redis_server import RedisServer, require_redis_server

from . import routing_support
from .gateway_process import GatewayProcess
from .routing_support import (
    KEYS,
    RoutingUpstream,
    ask,
    config,
    keys_since,
    last_key,
    pool,
    reload_to,
    wait_log,
)

up = routing_support.up
fresh = routing_support.fresh
start_gateway = routing_support.start_gateway

Start = Callable[..., GatewayProcess]


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server())
    server.start()
    yield server
    server.close()


def pair(start: Start, cfg: dict[str, Any]) -> tuple[GatewayProcess, GatewayProcess]:
    """Two gateway processes with the same config, started side by side."""
    with ThreadPoolExecutor(2) as ex:
        a, b = ex.map(lambda name: start(cfg, name), ("gw-a", "gw-b"))
    return a, b


def shared(up: RoutingUpstream, redis: RedisServer, **kw: Any) -> dict[str, Any]:
    return {**config(up, **kw), "state": {"redis-url": redis.url}}


def test_sessions_and_cursor_are_shared(fresh: RoutingUpstream, redis: RedisServer, start_gateway: Start) -> None:
    gws = pair(start_gateway, shared(fresh, redis))
    placed: dict[str, list[str]] = {f"s{i}": [] for i in range(6)}
    for turn in range(4):
        for i, s in enumerate(placed):
            ask(gws[(i + turn) % 2], f"turn {turn}", headers={"X-Session-ID": s})  # alternate processes
            placed[s].append(last_key(fresh))
    for s, keys in placed.items():
        assert len(set(keys)) == 1, f"session {s} moved between processes: {keys}"
    # new sessions were placed alternately by the two processes, from one shared cursor
    assert Counter(k[0] for k in placed.values()) == Counter({k: 2 for k in KEYS})

    # a growing conversation (message-hash ids): turn 1 on one process, later turns on the other
    messages: list[dict[str, Any]] = [{"role": "user", "content": "a conversation across replicas"}]
    answer = ask(gws[0], messages=messages)
    first = last_key(fresh)
    for turn in range(2):
        messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": f"more {turn}"}]
        answer = ask(gws[1], messages=messages)
        assert last_key(fresh) == first


def test_cooldowns_are_shared(fresh: RoutingUpstream, redis: RedisServer, start_gateway: Start) -> None:
    a, b = pair(start_gateway, shared(fresh, redis, strategy="fill-first", affinity=False))
    ask(a)
    first = last_key(fresh)
    ask(b)
    assert last_key(fresh) == first  # both processes agree on the fill-first order
    fresh.fail_next[first] = [429]  # Retry-After: 1
    ask(a)
    other = last_key(fresh)
    assert other != first
    n = len(fresh.requests)
    ask(b)
    assert keys_since(fresh, n) == [other]  # b knows the first credential is cooling down
    time.sleep(1.1)
    ask(b)
    assert last_key(fresh) == first  # and that the cooldown is over


def test_a_credential_put_back_on_one_replica_is_clean_on_both(fresh: RoutingUpstream, redis: RedisServer,
                                                                 start_gateway: Start) -> None:
    cfg = shared(fresh, redis, strategy="fill-first", affinity=False)
    a, b = pair(start_gateway, cfg)
    ask(a, model="cut")
    first = last_key(fresh)
    fresh.fail_next[first] = [403]  # on a: this model rests 30 min, in Redis
    ask(a, model="cut")
    assert last_key(fresh) != first
    # b's operator takes the credential out and puts it back (b never read that cooldown)
    reload_to(b, shared(fresh, redis, strategy="fill-first", affinity=False,
                        entries=[pool(fresh, tuple(k for k in KEYS if k != first))]))
    reload_to(b, cfg)
    n = len(fresh.requests)
    ask(b, model="cut")
    ask(a, model="cut")
    assert keys_since(fresh, n) == [first, first]  # no replica keeps it cooling


def test_redis_outage_does_not_fail_requests_and_it_reconnects(fresh: RoutingUpstream, redis: RedisServer,
                                                                start_gateway: Start) -> None:
    a, b = pair(start_gateway, shared(fresh, redis))
    h = {"X-Session-ID": "steady"}
    ask(a, headers=h)
    bound = last_key(fresh)
    ask(b, headers=h)
    assert last_key(fresh) == bound

    redis.stop()
    t0 = time.monotonic()
    for i in range(6):
        gw = (a, b)[i % 2]
        assert ask(gw, headers=h)  # served from local state
        assert last_key(fresh) == bound
        assert ask(gw, headers={"X-Session-ID": f"outage-{i}"})
    assert time.monotonic() - t0 < 5, "requests slowed down by the outage"
    for gw in (a, b):
        wait_log(gw, "unreachable")
        assert "serving from local state" in gw.log()

    redis.start()  # same port, empty: the processes push their state back
    for gw in (a, b):
        deadline = time.monotonic() + 6
        while "reachable again" not in gw.log() and time.monotonic() < deadline:
            ask(gw, headers=h)
            time.sleep(0.2)
        wait_log(gw, "reachable again", timeout=0.1)
    for gw in (a, b, a):
        ask(gw, headers=h)
        assert last_key(fresh) == bound
    # shared again: a session placed by one process is found by the other
    placed = {}
    for i in range(3):
        ask(a, headers={"X-Session-ID": f"after-{i}"})
        placed[i] = last_key(fresh)
    for i in range(3):
        ask(b, headers={"X-Session-ID": f"after-{i}"})
        assert last_key(fresh) == placed[i]
