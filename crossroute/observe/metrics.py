"""Prometheus metrics of one gateway (``GET /metrics``, api/metrics.py).

Counted once per finished call, after its reply was written (``call_ended``): requests by client
format, provider, model and status; upstream attempts, their latency and time to first byte
(histograms, per provider); tokens by kind; retries (another attempt on the same credential) and
failovers (another credential). Read at scrape time: open client streams and WebSocket sessions,
cooldowns and bound sessions per credential (in-process state only), quota remaining per credential
(when the quota book reports it), and the usage store's and request log's queues and drops.

A model label is the client's model name only for calls that reached an upstream (anything else is
``-``), so unknown names sent by clients cannot grow the label set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..usage.records import provider_of

if TYPE_CHECKING:
    from ..call import Attempt, Call
    from ..gateway import Gateway
    from .events import CallEnded

__all__ = ["Metrics"]

_LATENCY = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_TTFT = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_NOT_COUNTED = ("/metrics", "/v0/management", "/management")
_KINDS = ("input", "output", "cached", "cache_creation", "reasoning")


class Metrics:
    """Observer and gateway component; ``registry`` is this gateway's own (not the global one)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("crossroute_requests", "Finished client requests",
                                ("format", "provider", "model", "status", "transport"), registry=r)
        self.attempts = Counter("crossroute_upstream_attempts", "Upstream attempts",
                                ("provider", "status"), registry=r)
        self.latency = Histogram("crossroute_upstream_latency_seconds", "Upstream attempt duration (to its end)",
                                 ("provider",), buckets=_LATENCY, registry=r)
        self.ttft = Histogram("crossroute_upstream_ttft_seconds", "Time to the upstream's first byte",
                              ("provider",), buckets=_TTFT, registry=r)
        self.tokens = Counter("crossroute_tokens", "Tokens by kind", ("kind", "provider", "model"), registry=r)
        self.retries = Counter("crossroute_retries", "Further attempts on the credential tried before",
                               ("provider",), registry=r)
        self.failovers = Counter("crossroute_failovers", "Attempts moved to another credential",
                                 ("provider",), registry=r)
        r.register(_StateCollector(self))

    def reconfigure(self, gw: Gateway, removed: set[str]) -> None:
        self.gw = gw

    async def stop(self) -> None:
        return None

    def attempt_ended(self, call: Call, attempt: Attempt) -> None:
        return None

    def call_ended(self, event: CallEnded) -> None:
        if event.path.startswith(_NOT_COUNTED):
            return
        gw = self.gw
        call = event.call
        status = str(event.status)
        if call is None or not call.attempts:
            self.requests.labels(event.client_format, "-", "-", status, event.transport).inc()
            return
        provider = provider_of(gw, call.credential_id) or "-"
        self.requests.labels(call.client_format, provider, call.model, status, call.transport).inc()
        prev: str | None = None
        for a in call.attempts:
            p = provider_of(gw, a.credential_id) or "-"
            self.attempts.labels(p, str(a.status)).inc()
            if a.end is not None:
                self.latency.labels(p).observe(a.end - a.start)
            if a.first_byte is not None:
                self.ttft.labels(p).observe(a.first_byte - a.start)
            if prev is not None:
                (self.retries if prev == a.credential_id else self.failovers).labels(p).inc()
            prev = a.credential_id
        u = call.usage
        if u is not None:
            model = call.model
            for kind, n in zip(_KINDS, (u.input_tokens, u.output_tokens, u.cached_tokens, u.cache_creation_tokens,
                                        u.reasoning_tokens), strict=True):
                if n:
                    self.tokens.labels(kind, provider, model).inc(n)


class _StateCollector:
    """Gauges read from the gateway at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        gw = self.m.gw
        hub = gw.observers
        streams = GaugeMetricFamily("crossroute_active_streams", "Client streams being written")
        streams.add_metric([], hub.count_streams() if hub.count_streams is not None else 0)
        yield streams
        ws = GaugeMetricFamily("crossroute_active_websockets", "Open client WebSocket sessions")
        ws.add_metric([], hub.count_websockets() if hub.count_websockets is not None else 0)
        yield ws
        yield from self._routing(gw)
        yield from self._quota(gw)
        yield from self._stores(gw)

    def _routing(self, gw: Gateway) -> Iterator[Metric]:
        state: Any = gw.state
        cooling = GaugeMetricFamily("crossroute_cooldown_seconds", "Seconds left of a credential's cooldown",
                                    labels=("credential", "model"))
        bound = GaugeMetricFamily("crossroute_bound_sessions", "Session bindings per credential",
                                  labels=("credential",))
        iter_cd = getattr(state, "iter_cooldowns", None)
        iter_b = getattr(state, "iter_bindings", None)
        now = getattr(state, "_clock", time.time)()
        if iter_cd is not None:
            for cred, model, cd, _keep in iter_cd():
                if cd.until > now:
                    cooling.add_metric([cred, model], round(cd.until - now, 3))
        if iter_b is not None:
            counts: dict[str, int] = {}
            for _key, cred, _exp in iter_b():
                counts[cred] = counts.get(cred, 0) + 1
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

    def _stores(self, gw: Gateway) -> Iterator[Metric]:
        named = gw.observers.named
        drops = CounterMetricFamily("crossroute_observer_dropped", "Records or log writes dropped (queue full or "
                                    "store failing)", labels=("observer",))
        queued = GaugeMetricFamily("crossroute_usage_queued", "Usage records waiting to be written")
        written = CounterMetricFamily("crossroute_usage_written", "Usage records written")
        store = named.get("usage")
        rlog = named.get("request_log")
        drops.add_metric(["usage"], store.dropped if store is not None else 0)
        drops.add_metric(["request_log"], rlog.writer.dropped if rlog is not None else 0)
        queued.add_metric([], store.queued if store is not None else 0)
        written.add_metric([], store.written if store is not None else 0)
        yield drops
        yield queued
        yield written
