"""Session affinity through the Router with MemoryState and a fake clock."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from crossroute.routing.affinity import SessionAffinitySelector, binding_key
from crossroute.routing.router import Router, RoutingSettings
from crossroute.routing.selectors import RoundRobinSelector
from crossroute.routing.session_ids import SessionIds
from crossroute.state.memory import MemoryState

from .routing_fakes import Cand, Clock

MODEL = "claude-sonnet-4-5"
CANDS = [Cand("a"), Cand("b"), Cand("c")]


def make(strategy: str = "round-robin", ttl: float = 3600.0) -> tuple[Router, MemoryState, Clock]:
    clock = Clock()
    state = MemoryState(clock=clock)
    settings = RoutingSettings(strategy=strategy, session_affinity=True, session_affinity_ttl=ttl)
    return Router(settings, state, clock=clock), state, clock


async def serve(router: Router, cands: list[Cand], session: SessionIds | None, model: str = MODEL) -> str:
    c = await router.pick(cands, model, session)
    await router.report_success(c, model, session)
    return c.credential_id


async def test_first_request_placed_by_wrapped_selector_and_sessions_spread() -> None:
    router, _, _ = make()
    first = [await serve(router, CANDS, SessionIds(f"s{i}")) for i in range(3)]
    assert first == ["a", "b", "c"]  # round-robin placed them
    counts = Counter([await serve(router, CANDS, SessionIds(f"new{i}")) for i in range(300)])
    assert counts == {"a": 100, "b": 100, "c": 100}


async def test_session_sticks_while_others_rotate() -> None:
    router, _, _ = make()
    s = SessionIds("claude:s1")
    bound = await serve(router, CANDS, s)
    for i in range(10):
        await serve(router, CANDS, None)  # requests without a session move the cursor
        await serve(router, CANDS, SessionIds(f"other{i}"))
        assert await serve(router, CANDS, s) == bound


async def test_binding_is_per_model() -> None:
    router, _, _ = make()
    s = SessionIds("x")
    assert await serve(router, CANDS, s, "m1") == "a"
    assert await serve(router, CANDS, s, "m2") == "a"  # fresh cursor for m2 as well
    assert await serve(router, CANDS, SessionIds("y"), "m2") == "b"
    assert await serve(router, CANDS, s, "m2") == "a"


async def test_binding_outranks_priority() -> None:
    router, _, _ = make()
    hi, lo = Cand("hi", priority=10), Cand("lo", priority=0)
    s = SessionIds("s")
    await router.report_failure(hi, MODEL, None, 500, None)  # hi cools down for 60 s
    assert await serve(router, [hi, lo], s) == "lo"
    # hi recovers (cooldowns reset by a success of another request); the session stays on lo
    await router.report_success(hi, MODEL, None)
    assert await serve(router, [hi, lo], SessionIds("fresh")) == "hi"
    assert await serve(router, [hi, lo], s) == "lo"


async def test_fallback_id_inherits_first_turn_binding() -> None:
    router, state, _ = make()
    await serve(router, CANDS, SessionIds("warmup"))  # moves the cursor: next new session -> b
    turn1 = SessionIds("msg:aaaa")
    assert await serve(router, CANDS, turn1) == "b"
    turn2 = SessionIds("msg:bbbb", "msg:aaaa")
    assert await serve(router, CANDS, turn2) == "b"
    # the primary is now bound too: later turns find it directly
    assert state.peek_binding(binding_key("claude", "msg:bbbb", MODEL)) is not None
    assert await serve(router, CANDS, SessionIds("msg:bbbb", "msg:gone")) == "b"


async def test_rebind_when_bound_credential_cools_down_and_it_stays_moved() -> None:
    router, _, clock = make()
    s = SessionIds("s")
    first = await serve(router, CANDS, s)
    c = await router.pick(CANDS, MODEL, s)
    assert c.credential_id == first
    await router.report_failure(c, MODEL, s, 429, None)  # 1 s cooldown
    moved = await serve(router, CANDS, s)
    assert moved != first
    clock.t += 5  # the cooldown is over; the session stays on its new credential
    assert await serve(router, CANDS, s) == moved


async def test_rebind_when_bound_credential_disabled_removed_or_excluded() -> None:
    router, _, _ = make()
    s = SessionIds("s")
    assert await serve(router, CANDS, s) == "a"
    disabled = [Cand("a", disabled=True), Cand("b"), Cand("c")]
    moved = await serve(router, disabled, s)
    assert moved in {"b", "c"}
    assert await serve(router, CANDS, s) == moved  # rebound; a coming back does not move it
    removed = [c for c in CANDS if c.credential_id != moved]
    again = await serve(router, removed, s)
    assert again != moved
    assert await serve(router, CANDS, s) == again
    s2 = SessionIds("s2")
    bound = await serve(router, CANDS, s2)
    # already tried in this request: another credential serves, and the session follows it
    other = await router.pick(CANDS, MODEL, s2, exclude=(bound,))
    assert other.credential_id != bound
    await router.report_success(other, MODEL, s2)
    assert await serve(router, CANDS, s2) == other.credential_id


async def test_invalidate_credential_drops_its_bindings() -> None:
    router, state, _ = make()
    sessions = [SessionIds(f"s{i}") for i in range(6)]
    placed = {s.primary: await serve(router, CANDS, s) for s in sessions}
    assert state.binding_count() == 6
    await router.invalidate_credential("a")
    assert state.binding_count() == 4
    for s in sessions:
        if placed[s.primary] == "a":
            # bindings gone: placed anew (possibly on "a" again if still a candidate)
            assert state.peek_binding(binding_key("claude", s.primary, MODEL)) is None
    for s in sessions:
        got = await serve(router, [Cand("b"), Cand("c")], s)
        if placed[s.primary] != "a":
            assert got == placed[s.primary]


async def test_request_error_keeps_binding_other_failures_drop_it() -> None:
    router, state, _ = make()
    s = SessionIds("s", "fb")
    c = await router.pick(CANDS, MODEL, s)
    await router.report_success(c, MODEL, s)
    key = binding_key("claude", "s", MODEL)
    await router.report_failure(c, MODEL, s, 400, None)
    assert state.peek_binding(key) is not None
    await router.report_failure(c, MODEL, s, 503, None)
    assert state.peek_binding(key) is None


async def test_compare_and_delete_keeps_a_newer_binding() -> None:
    router, state, _ = make()
    s = SessionIds("s")
    assert await serve(router, CANDS, s) == "a"
    await state.set_binding(binding_key("claude", "s", MODEL), "b", 3600)  # another request rebound it
    await router.report_failure(Cand("a"), MODEL, s, 500, None)  # a late failure on a
    assert state.peek_binding(binding_key("claude", "s", MODEL))[0] == "b"


async def test_ttl_expiry_and_refresh_on_use() -> None:
    router, state, clock = make(ttl=100.0)
    s = SessionIds("s")
    assert await serve(router, CANDS, s) == "a"
    clock.t += 60
    assert await serve(router, CANDS, s) == "a"  # refreshed: lives until +160
    clock.t += 60
    assert await serve(router, CANDS, s) == "a"
    clock.t += 101
    # expired: placed again by round-robin (cursor at b now)
    assert await serve(router, CANDS, s) == "b"
    clock.t += 101
    assert state.sweep() == 1
    assert state.binding_count() == 0


async def test_cleanup_task_sweeps_and_is_stopped_by_stop() -> None:
    clock = Clock()
    state = MemoryState(clock=clock, sweep_interval=0.01)
    router = Router(RoutingSettings(session_affinity=True, session_affinity_ttl=10.0), state, clock=clock)
    await router.start()
    assert state.running
    await serve(router, CANDS, SessionIds("s1"))
    await serve(router, CANDS, SessionIds("s2"))
    assert state.binding_count() == 2
    clock.t += 11
    for _ in range(100):
        await asyncio.sleep(0.01)
        if state.binding_count() == 0:
            break
    assert state.binding_count() == 0
    task = state._sweeper.task
    assert task is not None
    await router.stop()
    assert not state.running
    assert task.cancelled() or task.done()


async def test_apply_settings_rebuilds_and_stops_old_selector() -> None:
    router, _, _ = make()
    await router.start()
    old = router.selector
    assert isinstance(old, SessionAffinitySelector)
    stopped: list[str] = []

    async def spy_stop() -> None:
        stopped.append("old")

    old.stop = spy_stop  # type: ignore[method-assign]
    s = SessionIds("s")
    bound = await serve(router, CANDS, s)
    # same values: no rebuild
    await router.apply_settings(RoutingSettings(session_affinity=True))
    assert router.selector is old and not stopped
    # affinity TTL changed: rebuilt, old stopped, bindings (in the State) survive
    await router.apply_settings(RoutingSettings(session_affinity=True, session_affinity_ttl=60))
    assert router.selector is not old and stopped == ["old"]
    assert await serve(router, CANDS, s) == bound
    # affinity off: plain selector
    await router.apply_settings(RoutingSettings(session_affinity=False))
    assert isinstance(router.selector, RoundRobinSelector)
    with pytest.raises(ValueError):
        await router.apply_settings(RoutingSettings(strategy="nope"))
    assert isinstance(router.selector, RoundRobinSelector)
    await router.stop()


async def test_affinity_off_ignores_sessions() -> None:
    clock = Clock()
    router = Router(RoutingSettings(), MemoryState(clock=clock), clock=clock)
    s = SessionIds("s")
    assert [await serve(router, CANDS, s) for _ in range(3)] == ["a", "b", "c"]


async def test_bindings_are_keyed_by_provider_session_and_model() -> None:
    router, state, _ = make()
    s = SessionIds("codex:s1")
    claude = [Cand("a"), Cand("b")]
    gemini = [Cand("g1", provider="gemini"), Cand("g2", provider="gemini")]
    assert await serve(router, claude, s) == "a"
    assert await serve(router, gemini, s) == "g1"
    assert state.peek_binding(binding_key("claude", "codex:s1", MODEL))[0] == "a"
    assert state.peek_binding(binding_key("gemini", "codex:s1", MODEL))[0] == "g1"
    # several providers for one model: the scope is their sorted set
    mixed = [Cand("g2", provider="gemini"), Cand("b")]
    bound = await serve(router, mixed, s)
    assert state.peek_binding(binding_key("claude,gemini", "codex:s1", MODEL))[0] == bound
    # a failure drops the binding of the scope it was made in, and only that one
    await router.report_failure(next(c for c in mixed if c.credential_id == bound), MODEL, s, 500, None,
                                provider="claude,gemini")
    assert state.peek_binding(binding_key("claude,gemini", "codex:s1", MODEL)) is None
    assert state.peek_binding(binding_key("claude", "codex:s1", MODEL)) is not None


async def test_invalidate_session_forgets_both_ids_and_only_that_session() -> None:
    router, state, _ = make()
    turn1 = SessionIds("msg:aaaa")
    other = SessionIds("msg:cccc")
    assert await serve(router, CANDS, turn1) == "a"
    assert await serve(router, CANDS, other) == "b"
    turn2 = SessionIds("msg:bbbb", "msg:aaaa")
    assert await serve(router, CANDS, turn2) == "a"  # inherited: both ids bound now
    assert await router.invalidate_session(turn2, MODEL, "claude") == 2
    assert state.peek_binding(binding_key("claude", "msg:aaaa", MODEL)) is None
    assert state.peek_binding(binding_key("claude", "msg:bbbb", MODEL)) is None
    assert state.peek_binding(binding_key("claude", "msg:cccc", MODEL))[0] == "b"
    assert await router.invalidate_session(turn2, MODEL, "claude") == 0
    # placed anew by the selector (the cursor is at c)
    assert await serve(router, CANDS, turn2) == "c"
