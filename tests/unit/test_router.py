"""The Router facade: filtering, keys, hot reload, lifecycle; MemoryState operations."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from crossroute.routing.router import AllCoolingDown, Router, RoutingSettings, normalize_strategy, provider_group
from crossroute.routing.selectors import FillFirstSelector, WeightedRoundRobinSelector
from crossroute.routing.session_ids import SessionIds
from crossroute.state.base import Cooldown, State
from crossroute.state.memory import MemoryState

from .routing_fakes import Cand, Clock


async def test_pick_returns_the_callers_object() -> None:
    router = Router(RoutingSettings(), MemoryState())
    cands = [Cand("a"), Cand("b")]
    got = await router.pick(cands, "m", None)
    assert any(got is c for c in cands)


async def test_exclude_accepts_any_collection() -> None:
    router = Router(RoutingSettings(strategy="fill-first"), MemoryState())
    cands = [Cand("a"), Cand("b"), Cand("c")]
    assert (await router.pick(cands, "m", None, exclude={"a"})).credential_id == "b"
    assert (await router.pick(cands, "m", None, exclude=["a", "b"])).credential_id == "c"
    assert (await router.pick(cands, "m", None, exclude=frozenset())).credential_id == "a"


def test_provider_group() -> None:
    assert provider_group([Cand("a", provider="claude"), Cand("b", provider="claude")]) == "claude"
    assert provider_group([Cand("a", provider="gemini"), Cand("b", provider="claude")]) == "claude,gemini"


async def test_mixed_provider_candidates_share_one_cursor() -> None:
    router = Router(RoutingSettings(), MemoryState())
    cands = [Cand("a", provider="claude"), Cand("b", provider="gemini")]
    got = [(await router.pick(cands, "m", None)).credential_id for _ in range(4)]
    assert got == ["a", "b", "a", "b"]


def test_normalize_strategy() -> None:
    assert normalize_strategy("Fill_First") == "fill-first"
    assert normalize_strategy("") == "round-robin"
    with pytest.raises(ValueError):
        normalize_strategy("least-busy")
    with pytest.raises(ValueError):
        Router(RoutingSettings(strategy="least-busy"), MemoryState())


async def test_hot_reload_switches_strategy_and_keeps_other_fields_live() -> None:
    clock = Clock()
    router = Router(RoutingSettings(), MemoryState(clock=clock), clock=clock)
    await router.start()
    cands = [Cand("a", weight=3), Cand("b", weight=1)]
    assert [(await router.pick(cands, "m", None)).credential_id for _ in range(2)] == ["a", "b"]
    await router.apply_settings(RoutingSettings(strategy="fill-first"))
    assert isinstance(router.selector, FillFirstSelector)
    assert [(await router.pick(cands, "m", None)).credential_id for _ in range(3)] == ["a", "a", "a"]
    await router.apply_settings(RoutingSettings(strategy="weighted-round-robin"))
    assert isinstance(router.selector, WeightedRoundRobinSelector)
    assert "".join([(await router.pick(cands, "m", None)).credential_id for _ in range(8)]) == "aabaaaba"
    # transient cooldown changes apply without a rebuild
    sel = router.selector
    await router.apply_settings(RoutingSettings(strategy="weighted-round-robin", transient_cooldown=5))
    assert router.selector is sel
    await router.report_failure(cands[0], "m", None, 503, None)
    assert (await router.pick(cands, "m", None)).credential_id == "b"
    clock.t += 5.1
    await router.stop()


async def test_success_without_affinity_still_resets_cooldown_ladder() -> None:
    clock = Clock()
    state = MemoryState(clock=clock)
    router = Router(RoutingSettings(), state, clock=clock)
    a = Cand("a")
    await router.report_failure(a, "m", None, 429, None)
    assert state.has_cooldown("a", "m")
    await router.report_success(a, "m", SessionIds("ignored"))
    assert not state.has_cooldown("a", "m")
    assert state.binding_count() == 0  # affinity off: nothing bound


async def test_memory_state_operations() -> None:
    clock = Clock()
    st = MemoryState(clock=clock)
    assert await st.incr("k") == 1
    assert await st.incr("k") == 2
    assert await st.incr("other") == 1
    await st.set_binding("s1", "a", 10)
    await st.set_binding("s2", "a", 10)
    await st.set_binding("s3", "b", 10)
    assert await st.get_binding("s1", 10) == "a"
    await st.set_binding("s2", "b", 10)  # rebinding moves it between credential indexes
    assert await st.delete_binding_if("s1", "b") is False
    assert await st.delete_binding_if("s1", "a") is True
    assert await st.get_binding("s1", 10) is None
    assert await st.delete_bindings_for("b") == 2
    assert st.binding_count() == 0
    await st.set_cooldown("a", "m", clock.t + 5, 2, clock.t + 100)
    got = await st.get_cooldowns(["a", "b"], "m")
    assert got == {"a": (clock.t + 5, 2)}
    clock.t += 50  # cooldown over, entry (and its level) kept
    assert (await st.get_cooldowns(["a"], "m"))["a"].level == 2
    clock.t += 51
    assert await st.get_cooldowns(["a"], "m") == {}
    await st.start()
    await st.start()  # idempotent
    assert st.running
    await st.stop()
    await st.stop()
    assert not st.running


class SharedState(State):
    """A State that is not in-process (as Redis is): the router takes its async paths."""

    def __init__(self, clock: Clock) -> None:
        self.mem = MemoryState(clock=clock)

    async def get_binding(self, key: str, ttl: float) -> str | None:
        return await self.mem.get_binding(key, ttl)

    async def set_binding(self, key: str, credential_id: str, ttl: float) -> None:
        await self.mem.set_binding(key, credential_id, ttl)

    async def delete_binding_if(self, key: str, credential_id: str) -> bool:
        return await self.mem.delete_binding_if(key, credential_id)

    async def delete_binding(self, key: str) -> bool:
        return await self.mem.delete_binding(key)

    async def delete_bindings_for(self, credential_id: str) -> int:
        return await self.mem.delete_bindings_for(credential_id)

    async def get_cooldowns(self, credential_ids: Sequence[str], model: str) -> dict[str, Cooldown]:
        return await self.mem.get_cooldowns(credential_ids, model)

    async def set_cooldown(self, credential_id: str, model: str, until: float, level: int, keep_until: float
                           ) -> None:
        await self.mem.set_cooldown(credential_id, model, until, level, keep_until)

    async def clear_cooldown(self, credential_id: str, model: str) -> None:
        await self.mem.clear_cooldown(credential_id, model)

    async def clear_cooldowns_for(self, credential_id: str | None) -> int:
        return await self.mem.clear_cooldowns_for(credential_id)

    async def incr(self, key: str) -> int:
        return await self.mem.incr(key)


@pytest.mark.parametrize("shared", [False, True])
async def test_cooldown_keys_upstream_model_and_credential_in_both_paths(shared: bool) -> None:
    clock = Clock()
    state: State = SharedState(clock) if shared else MemoryState(clock=clock)
    router = Router(RoutingSettings(strategy="fill-first"), state, clock=clock)
    assert router.in_process is not shared
    a_x, a_y, b_x = Cand("a", upstream_model="x"), Cand("a", upstream_model="y"), Cand("b", upstream_model="x")
    await router.report_failure(a_x, "alias", None, 503, None)
    assert (await router.pick([a_x, b_x], "alias", None)).credential_id == "b"  # a rests for "x"
    assert (await router.pick([a_y], "other", None)) is a_y  # not for "y"
    assert await router.wait_time([a_x], "alias") == pytest.approx(60)
    await router.report_failure(a_y, "other", None, None, None)  # unreachable: every model of a
    with pytest.raises(AllCoolingDown):
        await router.pick([a_y], "other", None)
    assert await router.wait_time([a_x], "alias") == pytest.approx(60)  # the longer of the two
    await router.report_success(a_x, "alias", None)  # clears a's model and credential cooldowns
    assert (await router.pick([a_x, a_y], "alias", None)).credential_id == "a"
    assert await router.wait_time([a_y], "other") == 0


@pytest.mark.parametrize("shared", [False, True])
async def test_invalidate_credential_drops_bindings_and_every_cooldown_in_both_paths(shared: bool) -> None:
    clock = Clock()
    state: State = SharedState(clock) if shared else MemoryState(clock=clock)
    router = Router(RoutingSettings(strategy="fill-first", session_affinity=True), state, clock=clock)
    a_x, a_y, b_x = Cand("a", upstream_model="x"), Cand("a", upstream_model="y"), Cand("b", upstream_model="x")
    s = SessionIds("sess")
    assert (await router.pick([a_x, b_x], "m", s)).credential_id == "a"
    await router.report_failure(a_x, "m", None, 403, None)  # model x, 30 min
    await router.report_failure(a_y, "m", None, 429, None)  # model y, a ladder level
    await router.report_failure(a_y, "m", None, 401, None)  # every model, 30 min
    await router.report_failure(b_x, "m", None, 403, None)  # another credential: stays
    with pytest.raises(AllCoolingDown):
        await router.pick([a_x, a_y], "m", None)
    await router.invalidate_credential("a")
    assert (await router.pick([a_x, b_x], "m", None)).credential_id == "a"
    assert (await router.pick([a_y], "m", None)) is a_y
    assert await router.state.get_cooldowns(["a"], "y") == {}  # the 429 ladder went too
    assert await router.state.get_cooldowns(["b"], "x") != {}
    assert await router.state.get_binding("claude::sess::m", 60) is None


@pytest.mark.parametrize("shared", [False, True])
async def test_trace_in_both_paths(shared: bool) -> None:
    from crossroute.call import Trace

    clock = Clock()
    state: State = SharedState(clock) if shared else MemoryState(clock=clock)
    router = Router(RoutingSettings(strategy="fill-first", session_affinity=True), state, clock=clock)
    a, b, c, low = Cand("a", upstream_model="x"), Cand("b"), Cand("c"), Cand("d", priority=-1)
    await router.report_failure(a, "m", None, 503, None)  # a rests for its upstream model "x"
    tr = Trace()
    s = SessionIds("sess")
    got = await router.pick([a, b, c, low], "m", s, {"b"}, None, tr)
    assert got.credential_id == "c"
    skips = {x["credential"]: x for x in tr.steps if x["step"] == "skip"}
    assert skips["a"]["reason"] == "cooling" and skips["a"]["scope"] == "model x"
    assert skips["a"]["until"] == pytest.approx(clock.t + 60)
    assert skips["b"]["reason"] == "already tried"
    assert skips["d"]["reason"] == "lower priority"
    assert tr.steps[-1] == {**tr.steps[-1], "step": "chose", "credential": "c", "by": "only"}
    tr2 = Trace()
    await router.pick([a, b, c], "m", s, (), None, tr2)
    assert tr2.steps[-1]["by"] == "session" and tr2.steps[-1]["credential"] == "c"
    tr3 = Trace()
    with pytest.raises(AllCoolingDown):
        await router.pick([a, b], "m", None, {"b"}, None, tr3)  # a cooling, b tried
    assert tr3.steps[-1] == {**tr3.steps[-1], "step": "none", "reason": "cooling", "retry_after": 60.0}


@pytest.mark.parametrize("shared", [False, True])
async def test_reset_cooldowns_of_one_credential_or_all_and_the_spent_quota_marks(shared: bool) -> None:
    from crossroute.config import ProviderEntry
    from crossroute.routing.quota import QuotaBook

    clock = Clock()
    state: State = SharedState(clock) if shared else MemoryState(clock=clock)
    router = Router(RoutingSettings(strategy="fill-first", session_affinity=True, quota_aware=True), state,
                    clock=clock)
    book = QuotaBook(clock=clock)
    book.attach(router, None)
    spent = ProviderEntry(kind="codex-oauth", provider="codex", name="codex-a.json", api_key="", base_url="",
                          cred_id="a")
    reset_at = str(int(clock.t + 3600))
    book.note(spent, 429, {"x-codex-primary-used-percent": "100", "x-codex-primary-window-minutes": "300",
                           "x-codex-primary-reset-at": reset_at, "x-codex-secondary-used-percent": "20",
                           "x-codex-secondary-window-minutes": "10080", "x-codex-secondary-reset-at": reset_at})
    a, b, c = Cand("a", upstream_model="x"), Cand("b", upstream_model="x"), Cand("c", upstream_model="x")
    assert (await router.pick([c], "m", SessionIds("kept"))) is c  # a session bound to c
    await router.report_failure(a, "m", None, 429, None)  # until the announced reset, every model
    await router.report_failure(b, "m", None, 403, None)
    await router.report_failure(c, "m", None, 503, None)
    assert book.reset_hint("a") is not None and book.headroom("a") == 0.0

    assert await router.reset_cooldowns("a") == 1
    assert book.reset_hint("a") is None and book.headroom("a") != 0.0 and not book.nearly_exhausted("a")
    assert book.account("a").windows.keys() == {"secondary"}  # type: ignore[union-attr]  # what was not spent stays
    assert (await router.pick([a, b], "m", None)) is a
    with pytest.raises(AllCoolingDown):
        await router.pick([b, c], "m", None)
    assert await router.reset_cooldowns() == 2  # everyone's
    assert (await router.pick([b], "m", None)) is b and (await router.pick([c], "m", None)) is c
    assert await router.reset_cooldowns() == 0
    assert await state.get_binding("claude::kept::m", 60) == "c"  # bindings stay
