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
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from ..usage.records import provider_of

if TYPE_CHECKING:
    from ..call import Attempt, Call
    from ..gateway import Gateway
    from .events import CallEnded

__all__ = ["Metrics"]

_LATENCY = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_TTFT = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_KINDS = ("input", "output", "cached", "cache_creation", "reasoning")
_NOT_COUNTED = ("/metrics", "/v0/management", "/management")


class Metrics:
    """Observer and gateway component; ``registry`` is this gateway's own (not the global one).

    The counts are plain dictionaries updated on the gateway's loop (no lock, no ``labels()``
    look-up per request) and turned into Prometheus metric families at scrape time, which runs on
    the same loop."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.requests: dict[tuple[str, ...], int] = {}  # (format, provider, model, status, transport)
        self.attempts: dict[tuple[str, str], int] = {}  # (provider, status)
        self.latency: dict[str, list[float]] = {}  # provider -> bucket counts + [sum]
        self.ttft: dict[str, list[float]] = {}
        self.tokens: dict[tuple[str, str], list[int]] = {}  # (provider, model) -> counts in _KINDS order
        self.retries: dict[str, int] = {}
        self.failovers: dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_CountCollector(self))
        self.registry.register(_StateCollector(self))

    def reconfigure(self, gw: Gateway, removed: set[str]) -> None:
        self.gw = gw

    async def stop(self) -> None:
        return None

    def attempt_ended(self, call: Call, attempt: Attempt) -> None:
        return None

    def call_ended(self, event: CallEnded) -> None:
        if event.path.startswith(_NOT_COUNTED):
            return
        call = event.call
        requests = self.requests
        if call is None or not call.attempts:
            key: tuple[Any, ...] = (event.client_format, "-", "-", event.status, event.transport)
            requests[key] = requests.get(key, 0) + 1
            return
        gw = self.gw
        cred = call.credential_id
        provider = provider_of(gw, cred) or "-"
        model = call.model
        key = (call.client_format, provider, model, event.status, call.transport)
        requests[key] = requests.get(key, 0) + 1
        attempts = self.attempts
        latency, ttft = self.latency, self.ttft
        prev: str | None = None
        for a in call.attempts:
            aid = a.credential_id
            p = provider if aid == cred else (provider_of(gw, aid) or "-")
            akey = (p, a.status)
            attempts[akey] = attempts.get(akey, 0) + 1
            start = a.start
            if a.end is not None:
                counts = latency.get(p) or _counts(latency, p, _LATENCY)
                v = a.end - start
                counts[bisect_left(_LATENCY, v)] += 1
                counts[-1] += v
            if a.first_byte is not None:
                counts = ttft.get(p) or _counts(ttft, p, _TTFT)
                v = a.first_byte - start
                counts[bisect_left(_TTFT, v)] += 1
                counts[-1] += v
            if prev is not None:
                table = self.retries if prev == aid else self.failovers
                table[p] = table.get(p, 0) + 1
            prev = aid
        u = call.usage
        if u is not None:
            tok = self.tokens.get((provider, model))
            if tok is None:
                tok = self.tokens[(provider, model)] = [0, 0, 0, 0, 0]
            tok[0] += u.input_tokens
            tok[1] += u.output_tokens
            tok[2] += u.cached_tokens
            tok[3] += u.cache_creation_tokens
            tok[4] += u.reasoning_tokens


def _counts(table: dict[str, list[float]], key: str, bounds: tuple[float, ...]) -> list[float]:
    counts = table[key] = [0.0] * (len(bounds) + 2)  # per bucket (+Inf last), then the sum
    return counts


class _CountCollector:
    """The counts of ``Metrics`` as metric families."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self.m
        req = CounterMetricFamily("crossroute_requests", "Finished client requests",
                                  labels=("format", "provider", "model", "status", "transport"))
        for labels, n in list(m.requests.items()):
            req.add_metric([str(v) for v in labels], n)
        yield req
        att = CounterMetricFamily("crossroute_upstream_attempts", "Upstream attempts", labels=("provider", "status"))
        for labels, n in list(m.attempts.items()):
            att.add_metric([str(v) for v in labels], n)
        yield att
        for name, doc, table, bounds in (
                ("crossroute_upstream_latency_seconds", "Upstream attempt duration (to its end)", m.latency, _LATENCY),
                ("crossroute_upstream_ttft_seconds", "Time to the upstream's first byte", m.ttft, _TTFT)):
            fam = HistogramMetricFamily(name, doc, labels=("provider",))
            for provider, counts in list(table.items()):
                running = 0.0
                buckets = []
                for bound, n in zip((*bounds, float("inf")), counts[:-1], strict=True):
                    running += n
                    buckets.append((floatToGoString(bound), running))
                fam.add_metric([provider], buckets, counts[-1])
            yield fam
        tok = CounterMetricFamily("crossroute_tokens", "Tokens by kind", labels=("kind", "provider", "model"))
        for (provider, model), counts in list(m.tokens.items()):
            for kind, n in zip(_KINDS, counts, strict=True):
                if n:
                    tok.add_metric([kind, provider, model], n)
        yield tok
        for name, doc, table in (("crossroute_retries", "Further attempts on the credential tried before",
                                  m.retries),
                                 ("crossroute_failovers", "Attempts moved to another credential", m.failovers)):
            fam = CounterMetricFamily(name, doc, labels=("provider",))
            for provider, n in list(table.items()):
                fam.add_metric([provider], n)
            yield fam


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
