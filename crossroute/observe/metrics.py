"""Prometheus metrics of one gateway (``GET /metrics``, api/metrics.py).

Counted once per finished call, after its reply was written (``call_ended``): requests by client
format, provider, model and status; upstream attempts, their latency and time to first token
(histograms, per provider; see ``TTFT_HELP``); tokens by kind; retries (another attempt on the same credential) and
failovers (another credential). Read at scrape time: open client streams and WebSocket sessions,
cooldowns and bound sessions per credential (in-process state only), quota remaining per credential
(when the quota book reports it), and the usage store's and request log's queues and drops.

A model label is the client's model name only for calls that reached an upstream (anything else is
``-``), so unknown names sent by clients cannot grow the label set.

The request path does as little as it can: a call with one attempt (nearly all of them) is one
tuple of its label values, one dictionary look-up and list appends of its attempt's latency and
time to first output (and of its token counts); no Attempt is kept. Those lists are folded into
the settled counts (metrics_counts.py) in batches — at a scrape and every ``_BATCH`` calls of one
label set — with C-level helpers (``sort`` and ``bisect`` for the histogram buckets, slices and
``sum`` for the tokens, kept flat). Calls with no attempt or several are counted at once (rare).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from ..call import Attempt
from ..usage.records import provider_of
from .metrics_counts import KINDS, LATENCY, TTFT, Counts, observe
from .metrics_state import RedisReading, StateCollector

if TYPE_CHECKING:
    from ..call import Call
    from ..gateway import Gateway
    from .events import CallEnded

__all__ = ["Metrics"]

_NOT_COUNTED = ("/metrics", "/v0/management", "/management")
_BATCH = 256  # calls of one label set waiting to be folded, at most
# time to first token: when the first output reached the client (``Attempt.first_token``: a
# stream's first write, a whole answer's end)
TTFT_HELP = "Time to the first output written to the client"

# the label values of a call with one attempt:
# (client format, call's credential id or None, model, status, transport, attempt's credential id, attempt status)
_Key = tuple[str, "str | None", str, int, str, str, int]
# a label set's calls not folded yet: their latencies and times to first output (seconds, None
# when the attempt has no end / gave no output), and the token counts of those with usage (flat,
# ``len(KINDS)`` per call)
_Pending = tuple[list["float | None"], list["float | None"], list[int]]


class Metrics:
    """Observer and gateway component; ``registry`` is this gateway's own (not the global one).

    Updated and scraped on the gateway's loop (no lock). ``counts``: the settled counts;
    ``open``: the single-attempt calls not folded into them yet, by label values, as
    ``[attempts, usages]``. ``workers``: set by observe/metrics_share.py in a worker of
    ``crossroute serve --workers N``, to add the other workers' counts at scrape time."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.counts = Counts()
        self.open: dict[_Key, _Pending] = {}
        self.workers: Any = None
        self.redis: RedisReading | None = None  # read by api/metrics.py before each scrape
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_CountCollector(self))
        self.registry.register(StateCollector(self))

    def reconfigure(self, gw: Gateway, removed: set[str]) -> None:
        self.gw = gw  # the open calls need no settling: a provider is its credential id's prefix

    async def stop(self) -> None:
        return None

    # it counts attempts from ``call_ended``: a hub may skip telling it of each attempt
    wants_attempts = False

    def attempt_ended(self, call: Call, attempt: Attempt) -> None:
        return None

    def call_ended(self, event: CallEnded) -> None:
        call = event.call
        if call is not None:
            attempts = call.attempts
            if len(attempts) == 1:
                a = attempts[0]
                key = (call.client_format, call.credential_id, call.model, event.status, call.transport,
                       a.credential_id, a.status)
                try:
                    pending = self.open[key]
                except KeyError:
                    pending = self.open[key] = ([], [], [])
                start = a.start
                end = a.end
                first = a.first_token
                done = pending[0]
                done.append(None if end is None else end - start)
                pending[1].append(None if first is None else first - start)
                u = call.tokens
                if u is not None:
                    pending[2].extend(u)  # flat: ints, nothing for the garbage collector to walk
                if len(done) >= _BATCH:
                    self._fold(key, pending)
                return
        self._other(event)

    def settle(self) -> Counts:
        """Fold every open call into ``counts`` and return them."""
        for key, pending in list(self.open.items()):
            if pending[0]:
                self._fold(key, pending)
        return self.counts

    def _provider(self, credential_id: str | None) -> str:
        return provider_of(credential_id) or "-"

    def _fold(self, key: _Key, pending: _Pending) -> None:
        latencies, ttfts, usages = pending
        fmt, cred, model, status, transport, acred, astatus = key
        c = self.counts
        n = len(latencies)
        provider = self._provider(cred)
        ap = provider if acred == cred else self._provider(acred)
        rkey = (fmt, provider, model, status, transport)
        c.requests[rkey] = c.requests.get(rkey, 0) + n
        akey = (ap, astatus)
        c.attempts[akey] = c.attempts.get(akey, 0) + n
        for table, bounds, values in ((c.latency, LATENCY, latencies), (c.ttft, TTFT, ttfts)):
            try:
                values.sort()  # observe() sorts them too; a None (no end, no output) among others raises
                if values and values[0] is None:  # the one value: None
                    values = []
            except TypeError:
                values = [v for v in values if v is not None]
            observe(table, ap, bounds, values)
        if usages:
            tok = c.tokens.get((provider, model))
            if tok is None:
                tok = c.tokens[(provider, model)] = [0] * len(KINDS)
            width = len(KINDS)
            for i in range(width):
                tok[i] += sum(usages[i::width])
        latencies.clear()
        ttfts.clear()
        usages.clear()

    def _other(self, event: CallEnded) -> None:
        """A call with no attempt (refused before any upstream) or with several."""
        call = event.call
        c = self.counts
        if call is None or not call.attempts:
            if event.path.startswith(_NOT_COUNTED):
                return
            key: tuple[Any, ...] = (event.client_format, "-", "-", event.status, event.transport)
            c.requests[key] = c.requests.get(key, 0) + 1
            return
        cred = call.credential_id
        provider = self._provider(cred)
        model = call.model
        key = (call.client_format, provider, model, event.status, call.transport)
        c.requests[key] = c.requests.get(key, 0) + 1
        prev: str | None = None
        for a in call.attempts:
            aid = a.credential_id
            p = provider if aid == cred else self._provider(aid)
            akey = (p, a.status)
            c.attempts[akey] = c.attempts.get(akey, 0) + 1
            if a.end is not None:
                observe(c.latency, p, LATENCY, [a.end - a.start])
            first = a.first_token
            if first is not None:
                observe(c.ttft, p, TTFT, [first - a.start])
            if prev is not None:
                table = c.retries if prev == aid else c.failovers
                table[p] = table.get(p, 0) + 1
            prev = aid
        u = call.tokens
        if u is not None:
            tok = c.tokens.get((provider, model))
            if tok is None:
                tok = c.tokens[(provider, model)] = [0] * len(KINDS)
            for i, n in enumerate(u):
                tok[i] += n


class _CountCollector:
    """The counts of ``Metrics`` (and of the other workers, when there are) as metric families."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self.m
        c = m.settle()
        if m.workers is not None:
            c = c.merged(m.workers.others())
        req = CounterMetricFamily("crossroute_requests", "Finished client requests",
                                  labels=("format", "provider", "model", "status", "transport"))
        for labels, n in sorted(c.requests.items(), key=_by_labels):
            req.add_metric([str(v) for v in labels], n)
        yield req
        att = CounterMetricFamily("crossroute_upstream_attempts", "Upstream attempts", labels=("provider", "status"))
        for labels, n in sorted(c.attempts.items(), key=_by_labels):
            att.add_metric([str(v) for v in labels], n)
        yield att
        for name, doc, table, bounds in (
                ("crossroute_upstream_latency_seconds", "Upstream attempt duration (to its end)", c.latency, LATENCY),
                ("crossroute_upstream_ttft_seconds", TTFT_HELP, c.ttft, TTFT)):
            fam = HistogramMetricFamily(name, doc, labels=("provider",))
            for provider, counts in sorted(table.items()):
                buckets = [(floatToGoString(b), n) for b, n in zip((*bounds, float("inf")), counts, strict=False)]
                fam.add_metric([provider], buckets, counts[-1])
            yield fam
        tok = CounterMetricFamily("crossroute_tokens", "Tokens by kind", labels=("kind", "provider", "model"))
        for (provider, model), counts in sorted(c.tokens.items()):
            for kind, n in zip(KINDS, counts, strict=True):
                if n:
                    tok.add_metric([kind, provider, model], n)
        yield tok
        for name, doc, table in (("crossroute_retries", "Further attempts on the credential tried before",
                                  c.retries),
                                 ("crossroute_failovers", "Attempts moved to another credential", c.failovers)):
            fam = CounterMetricFamily(name, doc, labels=("provider",))
            for provider, n in sorted(table.items()):
                fam.add_metric([provider], n)
            yield fam


def _by_labels(item: tuple[tuple[Any, ...], Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in item[0])
