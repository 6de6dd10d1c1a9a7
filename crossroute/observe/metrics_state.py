"""The gauges of ``GET /metrics`` read at scrape time (observe/metrics.py counts the calls).

- this process: open client streams and WebSocket sessions, the usage store's queue, writes and
  drops, the request log's drops (``local_gauges``; summed over the workers of ``crossroute serve
  --workers N`` by observe/metrics_share.py);
- routing state: cooldowns and bound sessions per credential. In-process state is read directly.
  With ``state.redis-url``, ``read_redis`` asks Redis before the scrape renders — one pipeline of
  ``SCARD`` (bindings per credential) and ``SMEMBERS`` (models cooling per credential), one
  ``MGET`` of at most ``MAX_COOLDOWNS`` cooldown entries, within ``REDIS_WAIT`` seconds — and
  ``crossroute_state_redis_up`` says whether Redis answered (else the local mirror is shown);
- quota remaining per credential, as the quota book last heard it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["REDIS_WAIT", "RedisReading", "StateCollector", "local_gauges", "read_redis"]

REDIS_WAIT = 1.0  # seconds a scrape waits for Redis at most
MAX_COOLDOWNS = 2000  # cooldown entries read per scrape at most
MAX_CREDENTIALS = 2000


def local_gauges(gw: Gateway) -> dict[str, float]:
    """This process's share of the summable gauges."""
    hub = gw.observers
    store = hub.named.get("usage")
    rlog = hub.named.get("request_log")
    return {
        "active_streams": hub.count_streams() if hub.count_streams is not None else 0,
        "active_websockets": hub.count_websockets() if hub.count_websockets is not None else 0,
        "usage_queued": store.queued if store is not None else 0,
        "usage_written": store.written if store is not None else 0,
        "dropped_usage": store.dropped if store is not None else 0,
        "dropped_request_log": rlog.writer.dropped if rlog is not None else 0,
    }


class RedisReading:
    """What Redis said at the last scrape: ``up``, bindings and cooldowns (until) per credential."""

    __slots__ = ("bound", "cooling", "up")

    def __init__(self, up: bool, bound: dict[str, int], cooling: list[tuple[str, str, float]]) -> None:
        self.up = up
        self.bound = bound
        self.cooling = cooling


def _is_redis(state: Any) -> bool:
    return hasattr(state, "_redis") and hasattr(state, "mirror")


async def read_redis(gw: Gateway) -> RedisReading | None:
    """Read the routing gauges from Redis (None when the state is not Redis)."""
    state: Any = gw.state
    if not _is_redis(state):
        return None
    if not state.available:
        return RedisReading(False, {}, [])
    try:
        return await asyncio.wait_for(_read(state, sorted(gw.registry.credential_ids())[:MAX_CREDENTIALS]),
                                      REDIS_WAIT)
    except Exception as exc:
        from redis.exceptions import RedisError

        if isinstance(exc, RedisError | OSError | TimeoutError | ValueError):
            return RedisReading(False, {}, [])
        raise


async def _read(state: Any, creds: list[str]) -> RedisReading:
    r = state._redis
    pipe = r.pipeline(transaction=False)
    for cred in creds:
        pipe.scard(state._ck(cred))  # the binding keys made for it (an expired one may linger a while)
        pipe.smembers(state._cd_keys(cred, "")[1])  # the models it has a cooldown entry for
    answers = await pipe.execute()
    bound: dict[str, int] = {}
    keys: list[tuple[str, str]] = []
    for i, cred in enumerate(creds):
        n, models = answers[2 * i], answers[2 * i + 1]
        if n:
            bound[cred] = int(n)
        for model in sorted(models or ()):
            if len(keys) < MAX_COOLDOWNS:
                keys.append((cred, model))
    cooling: list[tuple[str, str, float]] = []
    if keys:
        values = await r.mget([state._dk(c, m) for c, m in keys])
        for (cred, model), value in zip(keys, values, strict=True):
            if value:
                try:
                    cooling.append((cred, model, float(str(value).split()[0])))
                except ValueError:
                    continue
    return RedisReading(True, bound, cooling)


class StateCollector:
    """Gauges read from the gateway at scrape time; ``metrics`` is the Metrics observer (its
    ``workers`` adds the other workers' summable gauges, its ``redis`` the last Redis reading)."""

    def __init__(self, metrics: Any) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        gw = self.m.gw
        g = local_gauges(gw)
        if self.m.workers is not None:
            for name, value in self.m.workers.gauges().items():
                g[name] = g.get(name, 0) + value
        streams = GaugeMetricFamily("crossroute_active_streams", "Client streams being written")
        streams.add_metric([], g["active_streams"])
        yield streams
        ws = GaugeMetricFamily("crossroute_active_websockets", "Open client WebSocket sessions")
        ws.add_metric([], g["active_websockets"])
        yield ws
        yield from self._routing(gw)
        yield from self._quota(gw)
        yield from self._stores(g)

    def _routing(self, gw: Gateway) -> Iterator[Metric]:
        state: Any = gw.state
        cooling = GaugeMetricFamily("crossroute_cooldown_seconds", "Seconds left of a credential's cooldown",
                                    labels=("credential", "model"))
        bound = GaugeMetricFamily("crossroute_bound_sessions", "Session bindings per credential",
                                  labels=("credential",))
        now = getattr(state, "_clock", time.time)()
        redis: RedisReading | None = getattr(self.m, "redis", None)
        if _is_redis(state):
            up = GaugeMetricFamily("crossroute_state_redis_up", "Whether Redis answered (0: serving from the "
                                   "local mirror)")
            up.add_metric([], 1 if redis is not None and redis.up else 0)
            yield up
        if redis is not None and redis.up:
            entries = [(c, m, until) for c, m, until in redis.cooling]
            counts = dict(redis.bound)
        else:
            local = state.mirror if _is_redis(state) else state
            iter_cd = getattr(local, "iter_cooldowns", None)
            iter_b = getattr(local, "iter_bindings", None)
            entries = [(c, m, cd.until) for c, m, cd, _keep in iter_cd()] if iter_cd is not None else []
            counts = {}
            if iter_b is not None:
                for _key, cred, _exp in iter_b():
                    counts[cred] = counts.get(cred, 0) + 1
        for cred, model, until in sorted(entries):
            if until > now:
                cooling.add_metric([cred, model], round(until - now, 3))
        for cred, n in sorted(counts.items()):
            bound.add_metric([cred], n)
        yield cooling
        yield bound

    def _quota(self, gw: Gateway) -> Iterator[Metric]:
        remaining = GaugeMetricFamily("crossroute_quota_remaining", "Quota left per credential, as last reported",
                                      labels=("credential", "kind"))
        snap = getattr(gw.quota, "snapshot", None)
        if snap is not None:
            try:
                table = snap() or {}
            except Exception:
                table = {}
            for cred, values in sorted(table.items()):
                for kind, value in sorted((values or {}).items()):
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        remaining.add_metric([str(cred), str(kind)], float(value))
        yield remaining

    @staticmethod
    def _stores(g: dict[str, float]) -> Iterator[Metric]:
        drops = CounterMetricFamily("crossroute_observer_dropped", "Records or log writes dropped (queue full or "
                                    "store failing)", labels=("observer",))
        queued = GaugeMetricFamily("crossroute_usage_queued", "Usage records waiting to be written")
        written = CounterMetricFamily("crossroute_usage_written", "Usage records written")
        drops.add_metric(["usage"], g["dropped_usage"])
        drops.add_metric(["request_log"], g["dropped_request_log"])
        queued.add_metric([], g["usage_queued"])
        written.add_metric([], g["usage_written"])
        yield drops
        yield queued
        yield written
