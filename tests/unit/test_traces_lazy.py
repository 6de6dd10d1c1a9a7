"""Routing traces are recorded raw on the request path and rendered when read: a trace read after
the state changed (a cooldown ended or was cleared, the quota moved, the session was rebound, the
tried set grew) must still show the state at pick time, in ``Trace.steps``, the ring of kept
traces and the ``x-crossroute-trace`` header alike."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from crossroute.call import Attempt, Call, Trace
from crossroute.config import ProviderEntry
from crossroute.observe.events import CallEnded
from crossroute.observe.traces import TraceRing, find_trace, header_value, recent_traces
from crossroute.routing.quota import QuotaBook
from crossroute.routing.router import Router, RoutingSettings
from crossroute.routing.session_ids import SessionIds
from crossroute.state.memory import MemoryState

from .routing_fakes import Cand, Clock
from .test_router import SharedState


def _skips(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["credential"]: s for s in steps if s["step"] == "skip"}


def _ring_gw(ring: TraceRing) -> Any:
    return SimpleNamespace(observers=SimpleNamespace(named={"traces": ring}))


def _ended(call: Call, cand: str, clock_start: float) -> CallEnded:
    a = Attempt(cand, "m", "openai", clock_start)
    a.end, a.status = clock_start + 0.25, 200
    call.attempts = [a]
    return CallEnded("POST", "/v1/chat/completions", "openai", 200, call, call.started, call.started + 0.5)


@pytest.mark.parametrize("shared", [False, True])
async def test_a_trace_read_after_the_cooldown_ended_still_says_it_was_cooling(shared: bool) -> None:
    clock = Clock()
    state = SharedState(clock) if shared else MemoryState(clock=clock)
    router = Router(RoutingSettings(strategy="fill-first"), state, clock=clock)
    a, b = Cand("a", upstream_model="x"), Cand("b")
    await router.report_failure(a, "m", None, 503, None)  # a cools for its model "x", 60 s
    until = clock.t + 60
    call = Call("openai", "m", {}, {})
    call.trace = Trace()
    tried: set[str] = set()
    assert (await router.pick([a, b], "m", None, tried, None, call.trace)).credential_id == "b"
    tried.add("b")  # dispatch adds what it tried after the pick: not part of that pick's story
    ring = TraceRing()
    ev = _ended(call, "b", call.started)
    ring.call_ended(ev)

    clock.t += 120  # the cooldown is over ...
    await router.report_success(a, "m", None)  # ... and cleared
    assert (await router.pick([a, b], "m", None)).credential_id == "a"

    for steps in (call.trace.steps,
                  orjson.loads(header_value(call))["steps"],
                  find_trace(_ring_gw(ring), ev.request_id)["trace"]["steps"],  # type: ignore[index]
                  recent_traces(_ring_gw(ring))[0]["trace"]["steps"]):
        skip = _skips(steps)
        assert set(skip) == {"a"}, steps  # b was not "already tried" when it was picked
        assert skip["a"]["reason"] == "cooling" and skip["a"]["scope"] == "model x"
        assert skip["a"]["until"] == pytest.approx(until)
        assert steps[-1]["step"] == "chose" and steps[-1]["credential"] == "b" and steps[-1]["by"] == "only"


def test_quota_and_session_binding_as_they_were_at_pick_time() -> None:
    clock = Clock()
    router = Router(RoutingSettings(strategy="round-robin", session_affinity=True, quota_aware=True),
                    MemoryState(clock=clock), clock=clock)
    book = QuotaBook(clock=clock)
    book.attach(router, None)

    def entry(name: str) -> ProviderEntry:
        return ProviderEntry(kind="codex-oauth", provider="codex", name=name, api_key="", base_url="",
                             cred_id=f"auth:{name}")

    def used(e: ProviderEntry, percent: float) -> None:
        book.note(e, 200, {"x-codex-primary-used-percent": str(percent), "x-codex-primary-window-minutes": "300",
                           "x-codex-primary-reset-at": str(int(clock.t + 3600))})

    ea, eb = entry("a.json"), entry("b.json")
    a, b = Cand(ea.id, provider="codex"), Cand(eb.id, provider="codex")
    used(ea, 10)
    used(eb, 60)
    s = SessionIds("sess")
    assert router.pick_now([a, b], "gpt-5", s).credential_id == ea.id  # most headroom; the session binds
    tr = Trace()
    assert router.pick_now([a, b], "gpt-5", s, (), None, tr).credential_id == ea.id
    before = tr.steps
    headroom = next(x for x in before if x["step"] == "quota")["headroom"]
    assert before[-1]["by"] == "session"

    used(ea, 99)  # a is now nearly exhausted: the next pick moves the session to b
    assert router.pick_now([a, b], "gpt-5", s).credential_id == eb.id
    after = tr.steps
    assert after == before  # the same story: the binding and the figures of that moment
    assert next(x for x in after if x["step"] == "quota")["headroom"] == headroom
    assert not any(x.get("reason") == "quota low" for x in after)


def test_kept_traces_hold_no_live_objects() -> None:
    """The ring keeps one tuple per call (no Call, Trace or Attempt), and renders it when read."""
    router = Router(RoutingSettings(), MemoryState())
    ring = TraceRing(size=3)
    rids = []
    for i in range(4):
        call = Call("openai", "m", {"messages": ["x" * 1000]}, {}, client_key="secret-key")
        call.trace = Trace()
        call.credential_id = router.pick_now([Cand(f"c{i}")], "m", None, (), None, call.trace).credential_id
        ev = _ended(call, f"c{i}", call.started)
        ring.call_ended(ev)
        rids.append(ev.request_id)
    assert len(ring.ring) == 3
    for item in ring.ring:
        assert not any(isinstance(x, (Call, Trace, Attempt, dict)) for x in item)
    got = find_trace(_ring_gw(ring), rids[-1])
    assert got is not None and got["credential"] == "c3" and "secret-key" not in str(got)
    assert got["trace"]["steps"][-1] == {**got["trace"]["steps"][-1], "step": "chose", "credential": "c3",
                                         "by": "only"}
    assert got["trace"]["attempts"] == [{"credential": "c3", "upstream_model": "m", "wire": "openai",
                                         "status": 200, "error": None, "ms": 250.0}]
    assert got["duration_ms"] == 500.0


def test_a_kept_pick_is_nothing_for_the_garbage_collector() -> None:
    """A flat ring entry holds only atomic values (the pick's candidates and selector by handle),
    so the collector stops tracking it at its first pass, and it still renders the candidates."""
    import gc

    router = Router(RoutingSettings(), MemoryState())
    ring = TraceRing(size=3)
    call = Call("openai", "m", {}, {})
    call.trace = Trace()
    cands = [Cand("c1"), Cand("c2")]
    call.credential_id = router.pick_now(cands, "m", None, (), None, call.trace).credential_id
    ev = _ended(call, call.credential_id, call.started)
    ring.call_ended(ev)
    gc.collect()
    assert not gc.is_tracked(ring.ring[0])
    steps = find_trace(_ring_gw(ring), ev.request_id)["trace"]["steps"]  # type: ignore[index]
    assert steps[0]["step"] == "candidates" and steps[0]["credentials"] == ["c1", "c2"]


def test_a_kept_pick_whose_candidates_were_let_go_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound of held candidate lists all are let go: an older entry renders a note, never
    another pick's candidates (an id may be reused once its object is gone)."""
    from crossroute.observe import traces

    monkeypatch.setattr(traces, "_HOLD", 2)
    router = Router(RoutingSettings(), MemoryState())
    ring = TraceRing()
    rids = []
    for i in range(3):
        call = Call("openai", "m", {}, {})
        call.trace = Trace()
        call.credential_id = router.pick_now([Cand(f"c{i}")], "m", None, (), None, call.trace).credential_id
        ev = _ended(call, f"c{i}", call.started)
        ring.call_ended(ev)
        rids.append(ev.request_id)
    gw = _ring_gw(ring)
    first = find_trace(gw, rids[0])["trace"]["steps"]  # type: ignore[index]
    assert [s["step"] for s in first] == ["note"] and "no longer kept" in first[0]["message"]
    assert find_trace(gw, rids[0])["trace"]["attempts"][0]["credential"] == "c0"  # type: ignore[index]
    last = find_trace(gw, rids[-1])["trace"]["steps"]  # type: ignore[index]
    assert last[0]["credentials"] == ["c2"] and last[-1]["credential"] == "c2"
