"""Metrics and routing-trace observers in process: the Prometheus text parses, histogram buckets
are cumulative and correct, retries and failovers are told apart, unknown client models do not grow
the label set, and the trace ring keeps the newest calls without their bodies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from crossroute.api.metrics import metrics_of, scrape
from crossroute.call import Attempt, Call, Trace
from crossroute.config import parse
from crossroute.formats.neutral import Usage
from crossroute.gateway import Gateway
from crossroute.observe import CallEnded
from crossroute.observe.traces import RING, TraceRing, allowed, find_trace, recent_traces

CFG = ("openai-compatibility:\n  - name: up\n    base-url: http://127.0.0.1:9/v1\n"
       "    api-key-entries: [{api-key: sk-aaaaaaaa}, {api-key: sk-bbbbbbbb}]\n"
       "    models: [{name: m, alias: local}]\n")


def _gw(tmp: Path, extra: str = "") -> Gateway:
    return Gateway(parse(f"logs-dir: {tmp}/logs\nerror-logs-max-files: 0\n{extra}{CFG}"))


def _attempt(cred: str, status: int, start: float, first: float, end: float, error: str | None = None) -> Attempt:
    a = Attempt(cred, "m", "openai", start)
    a.first_byte, a.end, a.status, a.error = first, end, status, error
    return a


def _families(gw: Gateway) -> dict[str, object]:
    return _parse(asyncio.run(scrape(gw, None)))


def _parse(reply: object) -> dict[str, object]:
    assert reply.status == 200  # type: ignore[attr-defined]
    return {f.name: f for f in text_string_to_metric_families(reply.body.decode())}  # type: ignore[attr-defined]


def test_counts_and_histograms(tmp_path: Path) -> None:
    gw = _gw(tmp_path)
    m = metrics_of(gw)
    ids = [p.id for p in gw.settings.providers]
    t = time.monotonic()
    call = Call("openai", "local", {}, {}, client_key="k")
    call.attempts = [_attempt(ids[0], 503, t, t + 0.02, t + 0.03, "down"), _attempt(ids[0], 429, t, t + 0.2, t + 0.3),
                     _attempt(ids[1], 200, t, t + 0.04, t + 0.7)]
    call.credential_id = ids[1]
    call.usage = Usage(input_tokens=100, output_tokens=7, cached_tokens=60, reasoning_tokens=3)
    m.call_ended(CallEnded("POST", "/v1/chat/completions", "openai", 200, call, t, t + 1))
    for i in range(3):  # models nobody serves: one label set for all of them
        bad = Call("openai", f"unknown-{i}", {}, {})
        m.call_ended(CallEnded("POST", "/v1/chat/completions", "openai", 400, bad, t, t))
    m.call_ended(CallEnded("GET", "/metrics", "openai", 200, None, t, t))  # not counted
    fams = _families(gw)

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        return [(s.name, s.labels, s.value) for s in fams[name].samples]  # type: ignore[attr-defined]

    req = {(ls["model"], ls["status"]): v for _, ls, v in samples("crossroute_requests")}
    assert req == {("local", "200"): 1.0, ("-", "400"): 3.0}
    assert {ls["status"]: v for _, ls, v in samples("crossroute_upstream_attempts")} == {"503": 1, "429": 1, "200": 1}
    assert [v for n, _, v in samples("crossroute_retries") if n.endswith("_total")] == [1.0]
    assert [v for n, _, v in samples("crossroute_failovers") if n.endswith("_total")] == [1.0]
    lat = {ls["le"]: v for n, ls, v in samples("crossroute_upstream_latency_seconds") if n.endswith("_bucket")}
    assert lat["0.05"] == 1 and lat["0.25"] == 1 and lat["0.5"] == 2 and lat["1.0"] == 3 and lat["+Inf"] == 3
    total = next(v for n, _, v in samples("crossroute_upstream_latency_seconds") if n.endswith("_sum"))
    assert abs(total - 1.03) < 1e-6
    ttft = {ls["le"]: v for n, ls, v in samples("crossroute_upstream_ttft_seconds") if n.endswith("_bucket")}
    assert ttft["0.025"] == 1 and ttft["0.05"] == 2 and ttft["0.25"] == 3
    tok = {ls["kind"]: v for n, ls, v in samples("crossroute_tokens") if n.endswith("_total")}
    assert tok == {"input": 100, "output": 7, "cached": 60, "reasoning": 3}
    assert "sk-aaaaaaaa" not in str(fams)


def test_state_gauges(tmp_path: Path) -> None:
    async def go() -> None:
        gw = _gw(tmp_path)
        await gw.start()
        try:
            ids = [p.id for p in gw.settings.providers]
            state = gw.state
            state.set_cooldown_now(ids[0], "m", time.time() + 30, 1, time.time() + 60)  # type: ignore[attr-defined]
            state.set_binding_now("s1", ids[1], 60)  # type: ignore[attr-defined]
            state.set_binding_now("s2", ids[1], 60)  # type: ignore[attr-defined]
            gw.observers.count_streams = lambda: 3
            fams = _parse(await scrape(gw, None))

            def one(name: str) -> list[tuple[dict[str, str], float]]:
                return [(s.labels, s.value) for s in fams[name].samples]  # type: ignore[attr-defined]

            cd = one("crossroute_cooldown_seconds")
            assert len(cd) == 1 and cd[0][0]["credential"] == ids[0] and 25 < cd[0][1] <= 30
            assert one("crossroute_bound_sessions") == [({"credential": ids[1]}, 2.0)]
            assert one("crossroute_active_streams") == [({}, 3.0)]
            assert one("crossroute_active_websockets") == [({}, 0.0)]
        finally:
            await gw.stop()

    asyncio.run(go())


def test_trace_ring_keeps_the_newest(tmp_path: Path) -> None:
    ring = TraceRing(size=5)
    t = time.monotonic()
    rids = []
    for i in range(8):
        call = Call("openai", "local", {"messages": ["x" * 1000]}, {}, client_key="secret-client-key")
        call.trace = Trace()
        call.trace.add("candidates", n=2)
        call.trace.add("chose", credential=f"c{i}")
        call.attempts = [_attempt(f"c{i}", 200, t, t, t + 0.01)]
        ev = CallEnded("POST", "/v1/chat/completions", "openai", 200, call, t, t + 0.02)
        ring.call_ended(ev)
        rids.append(ev.request_id)
    assert len(ring.ring) == 5 and all(not any(isinstance(x, Call) for x in item) for item in ring.ring)
    gw = _gw(tmp_path)
    gw.observers.named["traces"] = ring
    got = recent_traces(gw, 3)
    assert [g["request_id"] for g in got] == rids[::-1][:3]
    assert got[0]["trace"]["steps"][1]["credential"] == "c7" and got[0]["client_key"].startswith("key-")
    assert "secret-client-key" not in str(got)
    assert find_trace(gw, rids[-2])["trace"]["attempts"][0]["credential"] == "c6"  # type: ignore[index]
    assert find_trace(gw, rids[0]) is None  # fell out of the ring
    assert RING >= 100


def test_traces_kept_when_asked(tmp_path: Path) -> None:
    gw = _gw(tmp_path, "request-log: true\n")
    asyncio.run(gw.start())
    try:
        assert gw.observers.tracing and "traces" in gw.observers.named
        call = Call("openai", "local", {}, {}, client_key="k1")
        assert allowed(gw, call)  # every key unless routing-trace-keys restricts
    finally:
        asyncio.run(gw.stop())
    gw2 = _gw(tmp_path)
    asyncio.run(gw2.start())
    try:
        assert not gw2.observers.tracing and recent_traces(gw2) == []
    finally:
        asyncio.run(gw2.stop())
