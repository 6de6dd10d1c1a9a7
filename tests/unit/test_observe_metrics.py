"""Metrics and routing-trace observers in process: the Prometheus text parses, histogram buckets
are cumulative and correct, retries and failovers are told apart, unknown client models do not grow
the label set, and the trace ring keeps the newest calls without their bodies."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
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
    _first_out(a, first)
    return a


def _first_out(a: Attempt, t: float | None) -> None:
    """In these fixtures the first output reaches the client with the upstream's first byte."""
    if "first_token" in Attempt.__slots__:
        a.first_token = t  # type: ignore[attr-defined]


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


# ------------------------------------------------------------------ exact text for a known set of calls

_CFG2 = CFG + "claude-api-key:\n  - api-key: sk-ant-x\n    models: [{name: c, alias: cl}]\n"


def _known_calls(gw: Gateway) -> list[CallEnded]:
    """Single-attempt calls on both keys, a claude 529, a WebSocket turn with a retry and a failover,
    a 400 before any upstream, a 401 from the edge and a scrape (not counted)."""
    ids = [p.id for p in gw.settings.providers]

    def att(cred: str, status: int, first: float | None, end: float) -> Attempt:
        a = Attempt(cred, "m", "openai", 1000.0)
        a.first_byte = None if first is None else 1000.0 + first
        a.end, a.status = 1000.0 + end, status
        _first_out(a, a.first_byte)
        return a

    def call(fmt: str, model: str, attempts: list[Attempt], usage: Usage | None = None,
             transport: str = "http") -> Call:
        c = Call(fmt, model, {}, {}, transport=transport)
        c.attempts = attempts
        c.credential_id = attempts[-1].credential_id if attempts else None
        c.usage = usage
        return c

    evs = [CallEnded("POST", "/v1/chat/completions", "openai", 200,
                     call("openai", "local", [att(ids[i % 2], 200, 0.125 * i, 0.5 * i)], Usage(10, 2, i, 0, 1)), 0, 1)
           for i in range(6)]
    evs.append(CallEnded("POST", "/v1/messages", "claude", 529, call("claude", "cl", [att(ids[2], 529, None, 0.25)]),
                         0, 1))
    ws = call("openai", "local", [att(ids[0], 503, 0.015625, 0.03125), att(ids[0], 429, 0.25, 0.375),
                                  att(ids[1], 200, 0.0625, 0.75)], Usage(100, 7, 60, 5, 3), transport="ws")
    evs.append(CallEnded("WS", "/v1/responses", "openai", 200, ws, 0, 1, transport="ws"))
    evs.append(CallEnded("POST", "/v1/chat/completions", "openai", 400, call("openai", "unknown", []), 0, 0))
    evs.append(CallEnded("POST", "/v1/messages", "claude", 401, None, 0, 0))
    evs.append(CallEnded("GET", "/metrics", "openai", 200, None, 0, 0))
    return evs


_COUNTED = ("crossroute_requests", "crossroute_upstream", "crossroute_tokens", "crossroute_retries",
            "crossroute_failovers")


def _counted_text(body: bytes) -> str:
    return "\n".join(line for line in body.decode().splitlines() if line.startswith(_COUNTED))


EXACT = """\
crossroute_requests_total{format="claude",model="-",provider="-",status="401",transport="http"} 1.0
crossroute_requests_total{format="claude",model="cl",provider="claude",status="529",transport="http"} 1.0
crossroute_requests_total{format="openai",model="-",provider="-",status="400",transport="http"} 1.0
crossroute_requests_total{format="openai",model="local",provider="{oai}",status="200",transport="http"} 6.0
crossroute_requests_total{format="openai",model="local",provider="{oai}",status="200",transport="ws"} 1.0
crossroute_upstream_attempts_total{provider="claude",status="529"} 1.0
crossroute_upstream_attempts_total{provider="{oai}",status="200"} 7.0
crossroute_upstream_attempts_total{provider="{oai}",status="429"} 1.0
crossroute_upstream_attempts_total{provider="{oai}",status="503"} 1.0
crossroute_upstream_latency_seconds_bucket{le="0.05",provider="claude"} 0.0
crossroute_upstream_latency_seconds_bucket{le="0.1",provider="claude"} 0.0
crossroute_upstream_latency_seconds_bucket{le="0.25",provider="claude"} 1.0
crossroute_upstream_latency_seconds_bucket{le="0.5",provider="claude"} 1.0
crossroute_upstream_latency_seconds_bucket{le="1.0",provider="claude"} 1.0
crossroute_upstream_latency_seconds_bucket{le="2.5",provider="claude"} 1.0
crossroute_upstream_latency_seconds_bucket{le="5.0",provider="claude"} 1.0
crossroute_upstream_latency_seconds_bucket{le="10.0",provider="claude"} 1.0
crossroute_upstream_latency_seconds_bucket{le="30.0",provider="claude"} 1.0
crossroute_upstream_latency_seconds_bucket{le="60.0",provider="claude"} 1.0
crossroute_upstream_latency_seconds_bucket{le="120.0",provider="claude"} 1.0
crossroute_upstream_latency_seconds_bucket{le="300.0",provider="claude"} 1.0
crossroute_upstream_latency_seconds_bucket{le="+Inf",provider="claude"} 1.0
crossroute_upstream_latency_seconds_count{provider="claude"} 1.0
crossroute_upstream_latency_seconds_sum{provider="claude"} 0.25
crossroute_upstream_latency_seconds_bucket{le="0.05",provider="{oai}"} 2.0
crossroute_upstream_latency_seconds_bucket{le="0.1",provider="{oai}"} 2.0
crossroute_upstream_latency_seconds_bucket{le="0.25",provider="{oai}"} 2.0
crossroute_upstream_latency_seconds_bucket{le="0.5",provider="{oai}"} 4.0
crossroute_upstream_latency_seconds_bucket{le="1.0",provider="{oai}"} 6.0
crossroute_upstream_latency_seconds_bucket{le="2.5",provider="{oai}"} 9.0
crossroute_upstream_latency_seconds_bucket{le="5.0",provider="{oai}"} 9.0
crossroute_upstream_latency_seconds_bucket{le="10.0",provider="{oai}"} 9.0
crossroute_upstream_latency_seconds_bucket{le="30.0",provider="{oai}"} 9.0
crossroute_upstream_latency_seconds_bucket{le="60.0",provider="{oai}"} 9.0
crossroute_upstream_latency_seconds_bucket{le="120.0",provider="{oai}"} 9.0
crossroute_upstream_latency_seconds_bucket{le="300.0",provider="{oai}"} 9.0
crossroute_upstream_latency_seconds_bucket{le="+Inf",provider="{oai}"} 9.0
crossroute_upstream_latency_seconds_count{provider="{oai}"} 9.0
crossroute_upstream_latency_seconds_sum{provider="{oai}"} 8.65625
crossroute_upstream_ttft_seconds_bucket{le="0.01",provider="{oai}"} 1.0
crossroute_upstream_ttft_seconds_bucket{le="0.025",provider="{oai}"} 2.0
crossroute_upstream_ttft_seconds_bucket{le="0.05",provider="{oai}"} 2.0
crossroute_upstream_ttft_seconds_bucket{le="0.1",provider="{oai}"} 3.0
crossroute_upstream_ttft_seconds_bucket{le="0.25",provider="{oai}"} 6.0
crossroute_upstream_ttft_seconds_bucket{le="0.5",provider="{oai}"} 8.0
crossroute_upstream_ttft_seconds_bucket{le="1.0",provider="{oai}"} 9.0
crossroute_upstream_ttft_seconds_bucket{le="2.5",provider="{oai}"} 9.0
crossroute_upstream_ttft_seconds_bucket{le="5.0",provider="{oai}"} 9.0
crossroute_upstream_ttft_seconds_bucket{le="10.0",provider="{oai}"} 9.0
crossroute_upstream_ttft_seconds_bucket{le="30.0",provider="{oai}"} 9.0
crossroute_upstream_ttft_seconds_bucket{le="+Inf",provider="{oai}"} 9.0
crossroute_upstream_ttft_seconds_count{provider="{oai}"} 9.0
crossroute_upstream_ttft_seconds_sum{provider="{oai}"} 2.203125
crossroute_tokens_total{kind="input",model="local",provider="{oai}"} 160.0
crossroute_tokens_total{kind="output",model="local",provider="{oai}"} 19.0
crossroute_tokens_total{kind="cached",model="local",provider="{oai}"} 75.0
crossroute_tokens_total{kind="cache_creation",model="local",provider="{oai}"} 5.0
crossroute_tokens_total{kind="reasoning",model="local",provider="{oai}"} 9.0
crossroute_retries_total{provider="{oai}"} 1.0
crossroute_failovers_total{provider="{oai}"} 1.0
"""


def test_exact_text_for_known_calls(tmp_path: Path) -> None:
    gw = _gw(tmp_path, _CFG2.removeprefix(CFG))
    m = metrics_of(gw)
    for ev in _known_calls(gw):
        m.call_ended(ev)
    got = _counted_text(asyncio.run(scrape(gw, None)).body)
    assert got == EXACT.replace("{oai}", "openai-compatibility:up").rstrip("\n")
    assert _counted_text(asyncio.run(scrape(gw, None)).body) == got  # a second scrape: the same


def test_exact_text_in_batches(tmp_path: Path) -> None:
    """Calls folded at every batch of one label set count the same as calls folded at the scrape."""
    gw = _gw(tmp_path, _CFG2.removeprefix(CFG))
    m = metrics_of(gw)
    ref = _gw(tmp_path, _CFG2.removeprefix(CFG))
    r = metrics_of(ref)
    evs = _known_calls(gw)
    for i in range(3 * 256 + 5):
        m.call_ended(evs[i % 6])
        r.call_ended(evs[i % 6])
        if i % 100 == 0:
            r.settle()
    assert not any(len(p[0]) >= 256 for p in m.open.values())
    assert _counted_text(asyncio.run(scrape(gw, None)).body) == _counted_text(asyncio.run(scrape(ref, None)).body)
    assert "crossroute_requests_total{format=\"openai\",model=\"local\",provider=\"openai-compatibility:up\"," \
        "status=\"200\",transport=\"http\"} 773.0" in _counted_text(asyncio.run(scrape(gw, None)).body)


def test_a_call_costs_one_look_up(tmp_path: Path) -> None:
    """The request path of a call with one attempt calls no Python function but the tokens property
    (no provider look-up, no histogram search, nothing of prometheus_client; the counts parsed by the
    first look are kept on the call)."""
    gw = _gw(tmp_path)
    m = metrics_of(gw)
    ev = _known_calls(_gw(tmp_path, _CFG2.removeprefix(CFG)))[0]
    m.call_ended(ev)  # the label set's first call makes its lists
    seen: list[str] = []

    def prof(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            seen.append(frame.f_code.co_name)
        elif event == "c_call":
            seen.append(f"c:{arg.__qualname__}")

    sys.setprofile(prof)
    try:
        m.call_ended(ev)
    finally:
        sys.setprofile(None)
    assert [s for s in seen if not s.startswith("c:")] == ["call_ended", "tokens"], seen
    assert sorted(s for s in seen if s.startswith("c:") and s != "c:setprofile") == [
        "c:len", "c:len", "c:list.append", "c:list.append", "c:list.extend"], seen


def test_provider_as_when_counted(tmp_path: Path) -> None:
    """A reload that gives a credential id another provider: the calls before it keep the old one."""
    gw = _gw(tmp_path)
    m = metrics_of(gw)
    cred = gw.settings.providers[0].id
    for ev in _known_calls(_gw(tmp_path, _CFG2.removeprefix(CFG)))[:1]:
        ev.call.attempts[0].credential_id = ev.call.credential_id = cred  # type: ignore[union-attr]
        m.call_ended(ev)
    gw.settings = parse(f"logs-dir: {tmp_path}/logs\nerror-logs-max-files: 0\n")  # the id is unknown now
    m.reconfigure(gw, set())
    text = _counted_text(asyncio.run(scrape(gw, None)).body)
    assert 'provider="openai-compatibility:up"' in text


def test_ttft_is_the_first_output_to_the_client(tmp_path: Path) -> None:
    """The TTFT histogram measures to the first output written to the client (``first_token``),
    not to the upstream's first byte (its answer headers)."""
    if "first_token" not in Attempt.__slots__:
        pytest.skip("Attempt.first_token (call.py, set by dispatch.py) is requested from the lead")
    gw = _gw(tmp_path)
    m = metrics_of(gw)
    ev = _known_calls(_gw(tmp_path, _CFG2.removeprefix(CFG)))[1]
    a = ev.call.attempts[0]  # type: ignore[union-attr]
    a.first_byte, a.first_token, a.end = 1000.01, 1000.3, 1000.5  # type: ignore[attr-defined]
    m.call_ended(ev)
    multi = _known_calls(_gw(tmp_path, _CFG2.removeprefix(CFG)))[7]
    for b in multi.call.attempts:  # type: ignore[union-attr]
        b.first_byte, b.first_token = b.start + 0.01, b.start + 0.3  # type: ignore[attr-defined]
    m.call_ended(multi)
    text = _counted_text(asyncio.run(scrape(gw, None)).body)
    oai = "openai-compatibility:up"
    assert f'crossroute_upstream_ttft_seconds_bucket{{le="0.25",provider="{oai}"}} 0.0' in text
    assert f'crossroute_upstream_ttft_seconds_bucket{{le="0.5",provider="{oai}"}} 4.0' in text
