"""Set-up shared by the quota tests across processes (test_quota_share, test_quota_redis): a real
``redis-server`` (fixture ``server``, from ``tests/redis_fixture.py``; a test module imports it by
name), account entries, and "replicas": a Router with its QuotaBook attached, each on its own State,
started and stopped together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from crossroute.config import ProviderEntry
from crossroute.routing.quota import QuotaBook
from crossroute.routing.router import Router, RoutingSettings
from crossroute.state.base import State
from crossroute.state.redis_state import RedisState
from tests.redis_fixture import server

__all__ = ["Replica", "oauth_entry", "redis_replicas", "replica", "server", "started"]

Replica = tuple[Router, QuotaBook]


def oauth_entry(name: str, provider: str) -> ProviderEntry:
    """The entry of account file ``name`` of ``provider`` (credential id ``auth:<name>``)."""
    return ProviderEntry(kind=f"{provider}-oauth", provider=provider, name=name, api_key="", base_url="",
                         cred_id=f"auth:{name}")


def replica(state: State, settings: RoutingSettings) -> Replica:
    router = Router(settings, state)
    book = QuotaBook()
    book.attach(router, None)
    return router, book


@contextlib.asynccontextmanager
async def started(replicas: list[Replica]) -> AsyncIterator[list[Replica]]:
    """The replicas' routers started; the ones started are stopped at the end."""
    running: list[Router] = []
    try:
        for router, _ in replicas:
            await router.start()
            running.append(router)
        yield replicas
    finally:
        for router in running:
            await router.stop()


@contextlib.asynccontextmanager
async def redis_replicas(url: str, settings: RoutingSettings, n: int = 2) -> AsyncIterator[list[Replica]]:
    """``n`` started replicas sharing the Redis at ``url``."""
    async with started([replica(RedisState(url), settings) for _ in range(n)]) as replicas:
        yield replicas
